"""The producer's composition root: settings → Kafka producer, stream, pacer, metrics → loop.

``gumbel-stream producer`` calls ``run(settings)``. It writes one record per category in
the format of ``events`` (ASCII ids ``b"3"``, JSON events or names; no key), or packed
records, to the numbers topic at ``rate`` records/s until ``count`` records (or forever), serves
``/metrics`` meanwhile, and on SIGTERM/SIGINT stops at the next chunk and flushes. The ids come
from ``probabilities`` and its drift schedule, or, with ``from_model``, from that model's
newest estimate (a synthetic twin: ``services.producer.twin``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kafka.errors import KafkaError
from prometheus_client import CollectorRegistry, start_http_server

from services.common.codec import EventFormat, encode_event, encode_packed
from services.common.estimates_follower import EstimateFollower
from services.common.kafka import broker_ready, make_consumer, make_producer
from services.common.process_metrics import register_process_collectors
from services.common.settings import ProducerServiceSettings
from services.common.signals import stop_on_signals
from services.flags import env_name, named
from services.producer.metrics import ProducerMetrics
from services.producer.pacing import Pacer
from services.producer.stream import CategoryStream
from services.producer.twin import NewestEstimate, TwinStream, wait_for_first

__all__ = ["run", "produce", "ProduceResult"]

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 5.0
FLUSH_TIMEOUT_S = 60.0


class _ErrorCount:
    """Counts failed sends; the client calls it from its I/O thread."""

    def __init__(self, metrics: ProducerMetrics) -> None:
        self.count = 0
        self._metrics = metrics
        self._lock = threading.Lock()

    def __call__(self, exc: BaseException) -> None:
        with self._lock:
            self.count += 1
            first = self.count == 1
        self._metrics.errors.inc()
        if first:
            log.error("a record was not acknowledged by Kafka: %s", exc)


@dataclass(frozen=True)
class ProduceResult:
    sent: int  # records handed to the client
    seconds: float
    failures: _ErrorCount  # filled in by the client's I/O thread, until the flush returns

    @property
    def errors(self) -> int:
        return self.failures.count


def produce(
    producer: Any,
    topic: str,
    stream: CategoryStream | TwinStream,
    pacer: Pacer,
    metrics: ProducerMetrics,
    count: int = 0,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
    values_per_record: int | None = None,
    event_format: EventFormat | None = None,
) -> ProduceResult:
    """Send chunks of the stream until ``count`` records (0 = forever) or ``stop`` is set.

    ``gumbel_produced_total`` counts records handed to the client (``send`` returned), one
    chunk at a time; the caller's flush then waits until the broker acknowledged them all.
    With ``values_per_record`` the values go packed, that many to a record (``count`` and
    the metric still count values); else each record is written as ``event_format`` says
    (ASCII ids by default).
    """
    stop = stop or threading.Event()
    event_format = event_format or EventFormat()
    values = [encode_event(c, event_format) for c in range(len(stream.probabilities))]
    on_error = _ErrorCount(metrics)
    send = producer.send
    switches = -1
    start = last_log = clock()
    last_sent = sent = 0
    while not stop.is_set() and (count == 0 or sent < count):
        size = pacer.chunk_size if count == 0 else min(pacer.chunk_size, count - sent)
        pacer.wait(size, stop.is_set)
        if stop.is_set():
            break
        ids = stream.next_chunk(size, clock() - start)
        if stream.switches != switches:
            if switches >= 0:
                log.info("drift: now drawing from %s after %d records", stream.probabilities, sent)
            switches = stream.switches
            metrics.set_distribution(stream.probabilities)
        if values_per_record is None:
            for category in ids:  # the hot loop: one lookup and one send per record
                send(topic, values[category]).add_errback(on_error)
        else:
            k = len(stream.probabilities)
            for i in range(0, len(ids), values_per_record):
                value, headers = encode_packed(ids[i : i + values_per_record], k)
                send(topic, value, headers=headers).add_errback(on_error)
        sent += len(ids)
        metrics.produced.inc(len(ids))
        now = clock()
        if now - last_log >= PROGRESS_INTERVAL_S:
            log.info(
                "produced %d records (%.0f records/s)", sent, (sent - last_sent) / (now - last_log)
            )
            last_sent, last_log = sent, now
    return ProduceResult(sent, clock() - start, on_error)


def run(
    settings: ProducerServiceSettings,
    *,
    producer: Any = None,
    consumer: Any = None,
    registry: CollectorRegistry | None = None,
    stop: threading.Event | None = None,
    serve_metrics: bool = True,
) -> int:
    """Run the producer; 0 once ``count`` records are acknowledged (or it was stopped).
    ``consumer`` reads the estimates topic for a twin (``from_model``; made here if None)."""
    kafka, config, events = settings.kafka, settings.producer, settings.events
    registry = registry if registry is not None else CollectorRegistry()
    stop = stop or threading.Event()
    metrics = ProducerMetrics(registry)
    register_process_collectors(registry)
    if config.from_model is None:  # a twin's truth is the estimate it follows, once it has one
        metrics.set_distribution(config.probabilities)
    server = None
    if serve_metrics:
        try:
            server, _ = start_http_server(config.metrics_port, config.metrics_host, registry)
        except OSError as exc:
            log.error(
                "cannot serve /metrics on %s:%d (%s): %s", config.metrics_host,
                config.metrics_port, named("producer", "producer", "metrics_port"), exc,
            )
            return 1
        log.info("producer metrics on http://%s:%d/metrics", config.metrics_host,
                 server.server_port)
    own_producer, own_consumer = producer is None, consumer is None
    try:
        with stop_on_signals(stop):
            if own_producer:
                if not broker_ready(kafka):
                    return 1
                producer = make_producer(kafka)
            stream: CategoryStream | TwinStream
            if config.from_model is None:
                stream = CategoryStream(config.probabilities, config.drift, config.seed)
                source = str(config.probabilities)
            else:
                if own_consumer:
                    consumer = make_consumer(kafka, client_id="gumbel-twin")
                twin = _twin(consumer, settings, stop)
                if isinstance(twin, int):
                    return twin
                stream, source = twin, f"model {config.from_model!r}'s newest estimate"
            log.info(
                "producing to %s at %s records/s, %s records, seed %d, from %s",
                kafka.numbers_topic, config.rate or "max", config.count or "unlimited",
                config.seed, source,
            )
            result = produce(
                producer,
                kafka.numbers_topic,
                stream,
                Pacer(config.rate),
                metrics,
                count=config.count,
                stop=stop,
                values_per_record=config.values_per_record if events.format == "packed" else None,
                event_format=EventFormat.of(events),
            )
        try:
            producer.flush(timeout=FLUSH_TIMEOUT_S)
        except KafkaError as exc:
            log.error("flush did not finish in %gs: %s", FLUSH_TIMEOUT_S, exc)
            return 1
        log.info(
            "produced %d records in %.1fs (%.0f records/s)%s",
            result.sent, result.seconds, result.sent / max(result.seconds, 1e-9),
            ", stopped early" if stop.is_set() else "",
        )
        if result.errors:
            log.error("%d records were not acknowledged by Kafka", result.errors)
            return 1
        if server is not None and config.linger_s > 0 and not stop.is_set():
            # A finished producer would vanish before Prometheus' next scrape saw its total.
            log.info("serving /metrics for %gs more (%s)", config.linger_s,
                     env_name("producer", "linger_s"))
            with stop_on_signals(stop):
                stop.wait(config.linger_s)
        return 0
    finally:
        if own_producer and producer is not None:
            producer.close(timeout=5)
        if own_consumer and consumer is not None:
            consumer.close()
        if server is not None:
            server.shutdown()
            server.server_close()


def _twin(consumer: Any, settings: ProducerServiceSettings,
          stop: threading.Event) -> TwinStream | int:
    """The twin's stream once its model has an estimate, or the exit status (stopped while
    waiting: 0; the model's categories do not match ``events.categories``: 2)."""
    kafka, config, events = settings.kafka, settings.producer, settings.events
    assert config.from_model is not None
    newest = NewestEstimate(config.from_model)
    follower = EstimateFollower(consumer, kafka.estimates_topic, newest)
    follower.start()
    first = wait_for_first(follower, newest, stop.is_set, kafka.estimates_topic)
    if first is None:
        return 0
    if events.categories and len(events.categories) != first.num_categories:
        log.error("%s: %d names, but model %r has %d categories",
                  named("producer", "events", "categories"), len(events.categories),
                  config.from_model,
                  first.num_categories)
        return 2
    log.info("following model %r: estimate of step %d, %d samples seen, %s",
             config.from_model, first.step, first.samples_seen,
             [round(p, 4) for p in first.probabilities])
    return TwinStream(follower, newest, config.seed)
