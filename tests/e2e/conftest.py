"""End-to-end helpers: services and Prometheus as child process groups, always cleaned up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from kafka import KafkaConsumer

from services.brokers import free_port
from services.common.kafka import topic_partitions
from tests.conftest import require_binary

GUMBEL_STREAM = str(Path(sys.executable).parent / "gumbel-stream")
PARTITIONS = 4


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class Children:
    """Starts each child in its own session; ``stop_all`` ends every process group."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.children: dict[str, Child] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Child:
        log_path = self.workdir / f"{name}.log"
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.workdir, env={**os.environ, **(env or {})}, start_new_session=True,
            )
        child = Child(name, process, log_path)
        self.children[name] = child
        return child

    def stop_all(self, grace_s: float = 20.0) -> None:
        for child in self.children.values():
            _signal_group(child.process, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for child in self.children.values():
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(child.process, signal.SIGKILL)  # leftovers of the group, if any
            try:
                child.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def report(self) -> str:
        return "\n".join(
            f"----- {c.name} (exit {c.process.poll()}) -----\n{c.log_tail()}"
            for c in self.children.values()
        )


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)  # start_new_session: the group id is the child's pid
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture()
def children(tmp_path: Path) -> Iterator[Children]:
    kids = Children(tmp_path)
    try:
        yield kids
    finally:
        kids.stop_all()
        print(kids.report())  # shown by pytest when the test failed


class Prometheus:
    """A real Prometheus server scraping the given targets every second."""

    def __init__(self, children: Children, targets: dict[str, int]) -> None:
        binary = require_binary("prometheus")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir = children.workdir / "prometheus"
        workdir.mkdir()
        jobs = "".join(
            f"  - job_name: {job}\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{port}']\n"
            for job, port in targets.items()
        )
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n" + jobs
        )
        children.start("prometheus", [
            binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ])
        wait_until(self._ready, 60, "Prometheus ready")

    def _ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/-/ready", timeout=2).ok
        except requests.ConnectionError:
            return False

    def query(self, promql: str) -> list[dict[str, Any]]:
        reply = requests.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        reply.raise_for_status()
        body = reply.json()
        assert body["status"] == "success", body
        return body["data"]["result"]

    def scalar(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def by_category(self, promql: str) -> dict[int, float]:
        return {int(r["metric"]["category"]): float(r["value"][1]) for r in self.query(promql)}


def wait_until(check: Callable[[], Any], timeout_s: float, what: str,
               report: Callable[[], str] = lambda: "") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}\n{report()}")
        time.sleep(0.5)


def total_variation(p: dict[int, float], q: list[float]) -> float:
    return 0.5 * sum(abs(p.get(c, 0.0) - q[c]) for c in range(len(q)))


def records_on_topic(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = topic_partitions(consumer, topic)
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def start_monitor(children: Children, bootstrap: str, port: int) -> None:
    children.start("monitor", [
        GUMBEL_STREAM, "monitor", "--bootstrap-servers", bootstrap,
        "--num-partitions", str(PARTITIONS), "--host", "127.0.0.1", "--port", str(port),
    ])


def start_producer(children: Children, bootstrap: str, port: int, truth: list[float],
                   count: int, rate: int, drift: str = "") -> None:
    children.start("producer", [
        GUMBEL_STREAM, "producer", "--bootstrap-servers", bootstrap,
        "--num-partitions", str(PARTITIONS), "--probabilities", ",".join(map(str, truth)),
        "--count", str(count), "--rate", str(rate), "--seed", "5",
        "--metrics-port", str(port), *(["--drift", drift] if drift else []),
    ], env={"GUMBEL_PRODUCER__METRICS_HOST": "127.0.0.1"})


def start_metric_path(children: Children, bootstrap: str) -> tuple[Prometheus, int]:
    """Prometheus scraping a monitor it starts, and the port the producer must use."""
    monitor_port, producer_port = free_port(), free_port()
    prometheus = Prometheus(children, {"monitor": monitor_port, "producer": producer_port})
    start_monitor(children, bootstrap, monitor_port)
    return prometheus, producer_port
