"""The monitor's composition root: settings → HTTP server (and live page), Kafka consumer →
follow loop.

``gumbel-stream monitor`` calls ``run(settings)``. The HTTP server starts first, so
``/healthz`` answers 503 with the reason while Kafka is not reachable yet.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from services.common.estimates_follower import EstimateFollower
from services.common.kafka import broker_ready, make_consumer
from services.common.process_metrics import register_process_collectors
from services.common.settings import MonitorServiceSettings
from services.common.signals import stop_on_signals
from services.flags import named
from services.monitor.collector import EstimateCollector
from services.monitor.page import LivePage
from services.monitor.server import start_server
from services.monitor.state import LatestEstimates
from services.monitor.truth import ProducerTruth

__all__ = ["run"]

log = logging.getLogger(__name__)


def run(
    settings: MonitorServiceSettings,
    *,
    consumer: Any = None,
    registry: CollectorRegistry | None = None,
    state: LatestEstimates | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Serve the latest estimate until SIGTERM/SIGINT (or ``stop``); 1 if it cannot start."""
    kafka, config = settings.kafka, settings.monitor
    registry = registry if registry is not None else CollectorRegistry()
    state = state or LatestEstimates(
        config.model_id, config.stale_after_s, max_clock_skew_s=config.max_clock_skew_s,
        forget_after_s=config.forget_after_s, max_categories=config.max_categories,
        max_models=config.max_models, max_series_per_model=config.max_series_per_model,
    )
    stop = stop or threading.Event()
    registry.register(EstimateCollector(state, config.max_category_series))
    register_process_collectors(registry)
    truth = None
    if config.producer_metrics_url is not None:
        truth = ProducerTruth(str(config.producer_metrics_url))
    page = LivePage(state, truth=truth, truth_model_id=config.truth_model_id)
    try:
        server = start_server(config.host, config.port, registry, state,
                              config.http_idle_timeout_s, page)
    except OSError as exc:
        log.error("cannot serve on %s:%d (%s): %s", config.host, config.port,
                  named("monitor", "monitor", "port"), exc)
        return 1
    log.info("monitor on http://%s:%d (live page /, /metrics, /healthz, /estimate)",
             config.host, server.server_port)
    if truth is not None:
        truth.start()
    own_consumer = consumer is None
    try:
        with stop_on_signals(stop):
            if own_consumer:
                if not broker_ready(kafka):
                    return 1
                consumer = make_consumer(kafka, client_id="gumbel-monitor")
            follower = EstimateFollower(consumer, kafka.estimates_topic, state)
            follower.start()
            while not stop.is_set():
                try:
                    follower.poll_once(timeout_ms=500)
                    page.record()
                except KafkaError as exc:  # the client reconnects by itself; keep serving
                    log.warning("polling %s failed: %s", kafka.estimates_topic, exc)
                    stop.wait(1.0)
        return 0
    finally:
        if own_consumer and consumer is not None:
            consumer.close()
        if truth is not None:
            truth.stop()
        server.shutdown()
        server.server_close()
