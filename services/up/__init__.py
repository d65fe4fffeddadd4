"""``gumbel-stream up``: broker, producer, trainer and monitor on one machine, one Ctrl-C to stop.

The first line it prints is the address of the monitor's live page (port 0 is made a real
free port first); an external broker is checked before that, and one that does not answer is
one ERROR line and exit 1, with nothing started. Each service runs as its
own ``gumbel-stream <service>`` child in its own process group, with
its settings passed as ``GUMBEL_...`` environment variables. A progress line (a log line when
not on a terminal) reads the producer's ``/metrics`` and the monitor's ``/estimate``. On
SIGINT/SIGTERM the children stop in order (producer, trainer, monitor, broker); whatever they
started that is still there after that is killed by pid, so nothing is left behind.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from pydantic import BaseModel, HttpUrl, SecretStr

from services.brokers import RunningBroker, free_port, start_apache_kafka, start_tansu
from services.common.kafka import broker_ready
from services.common.settings import DriftStep, UpSettings
from services.common.signals import stop_on_signals
from services.process_tree import descendants, start_time

__all__ = ["run", "service_env", "page_address", "with_ports", "with_producer_truth", "Child"]

log = logging.getLogger(__name__)

SECTIONS = {"producer": ("kafka", "events", "producer"), "trainer": ("kafka", "events", "trainer"),
            "monitor": ("kafka", "monitor")}
PROGRESS_INTERVAL_S = 1.0
LOG_INTERVAL_S = 5.0
STOP_TIMEOUT_S = 60.0


def _env_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list) and value and isinstance(value[0], DriftStep):
        return ";".join(
            f"{int(step.at) if step.at.is_integer() else step.at}"
            f"{'s' if step.unit == 'seconds' else ''}="
            + ",".join(repr(p) for p in step.probabilities)
            for step in value
        )
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return ",".join(value)  # category names
    if isinstance(value, list):
        return ",".join(repr(v) for v in value) if value else None
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return str(value)


def service_env(settings: UpSettings, service: str) -> dict[str, str]:
    """The ``GUMBEL_...`` variables that give ``service`` the same settings as ``up``."""
    env: dict[str, str] = {}
    for section in SECTIONS[service]:
        model = getattr(settings, section)
        for name in type(model).model_fields:
            value = _env_value(getattr(model, name))
            if value is not None:
                env[f"GUMBEL_{section.upper()}__{name.upper()}"] = value
    return env


def _local_address(host: str, port: int) -> str:
    """``host:port`` as this machine reaches it: a wildcard bind is reached on loopback."""
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def page_address(settings: UpSettings) -> str:
    """The monitor's live page, as a browser on this machine opens it."""
    return f"http://{_local_address(settings.monitor.host, settings.monitor.port)}/"


def _port_for(host: str) -> int:
    return free_port("0.0.0.0" if ":" in host else host)  # free_port probes IPv4


def with_ports(settings: UpSettings) -> UpSettings:
    """Port 0 (any free port) made a real one here, before the children bind it: the page
    address ``up`` prints, its progress line and the monitor's truth URL need the number."""
    if settings.monitor.port == 0:
        monitor = settings.monitor.model_copy(update={"port": _port_for(settings.monitor.host)})
        settings = settings.model_copy(update={"monitor": monitor})
    if settings.producer.metrics_port == 0:
        port = _port_for(settings.producer.metrics_host)
        producer = settings.producer.model_copy(update={"metrics_port": port})
        settings = settings.model_copy(update={"producer": producer})
    return settings


def with_producer_truth(settings: UpSettings) -> UpSettings:
    """Point the monitor at the producer's ``/metrics``, unless set: the page shows the truth,
    for the model this producer feeds (``up``'s trainer's) only."""
    if settings.monitor.producer_metrics_url is not None:
        return settings
    producer = settings.producer
    url = f"http://{_local_address(producer.metrics_host, producer.metrics_port)}/metrics"
    monitor = settings.monitor.model_copy(update={
        "producer_metrics_url": HttpUrl(url),
        "truth_model_id": settings.monitor.truth_model_id or settings.trainer.model_id})
    return settings.model_copy(update={"monitor": monitor})


def _remember(seen: dict[int, int], children: dict[str, Child]) -> None:
    for child in children.values():
        for pid in descendants(child.process.pid):
            started = start_time(pid)
            if started is not None:
                seen.setdefault(pid, started)


@dataclass
class Child:
    """One service child process, in a process group of its own."""

    name: str
    process: subprocess.Popen[bytes]

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        if self.running():
            # The service alone: it stops what it started (Ray shuts its own processes down).
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %gs: killing it", self.name, timeout_s)
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # anything left in its group
        except (ProcessLookupError, PermissionError):
            pass
        return self.process.wait()


def _start_child(name: str, env: dict[str, str], log_level: str, log_dir: Path) -> Child:
    log_file = open(log_dir / f"{name}.log", "ab")  # noqa: SIM115 (the child owns it)
    command = [sys.executable, "-m", "services.cli", "--log-level", log_level, name]
    process = subprocess.Popen(
        command,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log_file.close()
    log.info("started %s (pid %d), log %s", name, process.pid, log_dir / f"{name}.log")
    return Child(name, process)


def _get(url: str, timeout: float = 1.0) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback)
            return response.read()
    except Exception:  # not up yet, or between restarts
        return None


def _samples(text: str) -> list[Sample]:
    """Every sample of a Prometheus text exposition; none if it does not parse."""
    try:
        return [s for family in text_string_to_metric_families(text) for s in family.samples]
    except ValueError:  # not a metrics page (something else on the port)
        return []


def _total_variation(p: list[float], q: list[float]) -> float:
    # Imported here, not at the top: torch costs this process about 1.5 s and 600 MB, worth
    # paying once an estimate has arrived, not before the broker and the children start.
    import torch

    from gumbel_core import total_variation

    return float(total_variation(torch.tensor(p, dtype=torch.float64),
                                 torch.tensor(q, dtype=torch.float64)))


@dataclass
class Progress:
    produced: int = 0
    learned: int = 0
    dead_letters: int = 0
    estimate: list[float] | None = None
    temperature: float | None = None
    total_variation: float | None = None

    def line(self) -> str:
        parts = [f"produced {self.produced:,}", f"learned {self.learned:,}"]
        if self.dead_letters:
            parts.append(f"dead letters {self.dead_letters:,}")
        if self.estimate is not None:
            parts.append("estimate [" + " ".join(f"{p:.3f}" for p in self.estimate) + "]")
        if self.temperature is not None:
            parts.append(f"tau {self.temperature:.3f}")
        if self.total_variation is not None:
            parts.append(f"TV vs truth {self.total_variation:.4f}")
        return " | ".join(parts)


def read_progress(producer_port: int, monitor_port: int, truth: list[float]) -> Progress:
    progress = Progress()
    metrics = _get(f"http://127.0.0.1:{producer_port}/metrics")
    if metrics is not None:
        samples = _samples(metrics.decode("utf-8", "replace"))
        for sample in samples:
            if sample.name == "gumbel_produced_total":
                progress.produced = int(sample.value)
        true_probs = {s.labels.get("category"): s.value for s in samples
                      if s.name == "gumbel_true_probability"}
        if len(true_probs) == len(truth):
            truth = [true_probs.get(str(c), 0.0) for c in range(len(truth))]
    body = _get(f"http://127.0.0.1:{monitor_port}/estimate")
    if body is not None:
        try:
            estimate = json.loads(body)
        except ValueError:
            estimate = {}
        if "probabilities" in estimate:
            progress.learned = int(estimate["samples_seen"])
            progress.dead_letters = int(estimate["dead_letters"])
            progress.estimate = [float(p) for p in estimate["probabilities"]]
            progress.temperature = float(estimate["temperature"])
            if len(progress.estimate) == len(truth):
                progress.total_variation = _total_variation(progress.estimate, truth)
    return progress


def _external(settings: UpSettings) -> bool:
    explicit = "bootstrap_servers" in settings.kafka.model_fields_set
    return settings.broker == "external" or explicit


def _start_broker(settings: UpSettings, workdir: Path) -> RunningBroker | None:
    if _external(settings):
        log.info("using the Kafka broker at %s", settings.kafka.bootstrap_servers)
        return None
    if settings.broker == "apache-kafka":
        return start_apache_kafka(workdir / "kafka")
    log.info("starting the embedded broker (Tansu, memory only: a demo, not production)")
    return start_tansu(workdir / "tansu")


def run(settings: UpSettings, log_level: str | None = None) -> int:
    if _external(settings):
        # Checked before anything starts: an unreachable broker is one line, as in every
        # other command, not three children failing one after the other.
        if not broker_ready(settings.kafka, create_topics=False):
            return 1
    stop = threading.Event()
    level = log_level or logging.getLevelName(logging.getLogger().getEffectiveLevel())
    workdir = Path(tempfile.mkdtemp(prefix="gumbel-up-"))
    children: dict[str, Child] = {}
    seen: dict[int, int] = {}  # pid -> start time of everything the children started
    broker: RunningBroker | None = None
    status = 0
    tty = sys.stderr.isatty()
    settings = with_producer_truth(with_ports(settings))
    # The command's own output, first and on stdout: what a person opens while it starts.
    print(f"gumbel-stream up: watch it learn at {page_address(settings)}", flush=True)
    with stop_on_signals(stop):
        try:
            broker = _start_broker(settings, workdir)
            if broker is not None:
                kafka = settings.kafka.model_copy(
                    update={"bootstrap_servers": broker.bootstrap_servers}
                )
                settings = settings.model_copy(update={"kafka": kafka})
                if "checkpoint_dir" not in settings.trainer.model_fields_set:
                    # The broker's data lives and dies with this run; so do the checkpoints.
                    trainer = settings.trainer.model_copy(
                        update={"checkpoint_dir": workdir / "checkpoints"}
                    )
                    settings = settings.model_copy(update={"trainer": trainer})
            for name in ("monitor", "trainer", "producer"):
                if stop.is_set():
                    break
                children[name] = _start_child(name, service_env(settings, name), level, workdir)
            log.info("running; logs in %s; Ctrl-C stops everything", workdir)
            status = _watch(settings, children, seen, stop, tty)
        finally:
            if tty:
                sys.stderr.write("\n")
            status = _shutdown(children, broker, seen) or status
    return status


def _watch(settings: UpSettings, children: dict[str, Child], seen: dict[int, int],
           stop: threading.Event, tty: bool) -> int:
    next_log = 0.0
    produced = 0
    while not stop.wait(PROGRESS_INTERVAL_S):
        _remember(seen, children)
        for name, child in children.items():
            code = child.process.poll()
            if name == "producer" and code == 0 and settings.producer.count:
                produced = settings.producer.count  # all sent and acknowledged
            if code is None or (name == "producer" and code == 0):
                continue  # a producer with --count ends by itself; the rest keep going
            log.error("%s exited with status %d (see its log): stopping", name, code)
            return 1
        progress = read_progress(settings.producer.metrics_port, settings.monitor.port,
                                 settings.producer.probabilities)
        # A producer with --count is gone once done: keep its last count.
        produced = progress.produced = max(produced, progress.produced)
        if tty:
            sys.stderr.write("\r\x1b[K" + progress.line())
            sys.stderr.flush()
        elif time.monotonic() >= next_log:
            log.info("%s", progress.line())
            next_log = time.monotonic() + LOG_INTERVAL_S
    return 0


def _shutdown(
    children: dict[str, Child], broker: RunningBroker | None, seen: dict[int, int]
) -> int:
    status = 0
    _remember(seen, children)
    for name in ("producer", "trainer", "monitor"):
        if name in children:
            code = children[name].stop()
            log.info("%s stopped (status %d)", name, code)
            if code not in (0, -signal.SIGTERM, 130, 143):
                status = 1
    if broker is not None:
        broker.stop()
    leftovers = [pid for pid, started in seen.items() if start_time(pid) == started]
    for pid in leftovers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if leftovers:
        log.warning("killed %d leftover processes: %s", len(leftovers), sorted(leftovers))
    return status
