"""``gumbel-stream up``: broker, producer, trainer and monitor on one machine, one Ctrl-C to stop.

The first line it prints is the address of the monitor's live page (port 0 is made a real
free port first); an external broker is checked before that, and one that does not answer is
one ERROR line and exit 1, with nothing started. Each service runs as its own child
(``children``) with its settings handed over as one serialised object (``plan``). A progress
line (a log line when not on a terminal) comes from ``progress``. On SIGINT/SIGTERM the
children stop in order (producer, trainer, monitor, broker); whatever they started that is
still there after that is killed by pid, so nothing is left behind.
"""

from __future__ import annotations

import logging
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from services.brokers import RunningBroker, start_apache_kafka, start_tansu
from services.common.kafka import broker_ready
from services.common.settings import UpSettings
from services.common.signals import stop_on_signals
from services.up.children import Child, kill_leftovers, remember, start_child
from services.up.plan import (
    CHILDREN,
    broker_of,
    on_broker,
    page_address,
    service_env,
    with_ports,
    with_producer_truth,
)
from services.up.progress import read_progress

__all__ = ["run", "service_env", "page_address", "with_ports", "with_producer_truth"]

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 1.0
LOG_INTERVAL_S = 5.0


def _start_broker(settings: UpSettings, workdir: Path) -> RunningBroker | None:
    broker = broker_of(settings)
    if broker == "external":
        log.info("using the Kafka broker at %s", settings.kafka.bootstrap_servers)
        return None
    if broker == "apache-kafka":
        return start_apache_kafka(workdir / "kafka")
    log.info("starting the embedded broker (Tansu, memory only: a demo, not production)")
    return start_tansu(workdir / "tansu")


def run(settings: UpSettings, log_level: str | None = None) -> int:
    # An external broker is checked before anything starts: one line, as in every command.
    if broker_of(settings) == "external" and not broker_ready(settings.kafka, False):
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
                settings = on_broker(settings, broker.bootstrap_servers, workdir / "checkpoints")
            for name in CHILDREN:
                if stop.is_set():
                    break
                children[name] = start_child(name, service_env(settings, name), level, workdir)
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
        remember(seen, children)
        for name, child in children.items():
            code = child.process.poll()
            if name == "producer" and code == 0 and settings.producer.count:
                produced = settings.producer.count  # all sent and acknowledged
            if code is None or (name == "producer" and code == 0):
                continue  # a producer with --count ends by itself; the rest keep going
            log.error("%s exited with status %d (see its log): stopping", name, code)
            return 1
        progress = read_progress(settings.producer.metrics_port, settings.monitor.port,
                                 settings.trainer.model_id, settings.producer.probabilities)
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
    remember(seen, children)
    for name in ("producer", "trainer", "monitor"):
        if name in children:
            code = children[name].stop()
            log.info("%s stopped (status %d)", name, code)
            if code not in (0, -signal.SIGTERM, 130, 143):
                status = 1
    if broker is not None:
        broker.stop()
    kill_leftovers(seen)
    return status
