"""EstimateFollower and the monitor's run() against a fake consumer."""

from __future__ import annotations

import threading
import time

import requests
from prometheus_client import CollectorRegistry

from services.brokers import free_port
from services.common.estimates_follower import EstimateFollower
from services.common.settings import MonitorServiceSettings
from services.monitor.service import run
from services.monitor.state import LatestEstimates
from tests.unit.services.monitor_fakes import FakeConsumer, make_estimate


def test_starts_at_the_last_messages_so_the_latest_shows_at_once() -> None:
    old = [make_estimate(step=i).to_bytes() for i in range(500)]
    consumer = FakeConsumer("estimates", {0: old})
    state = LatestEstimates()
    follower = EstimateFollower(consumer, "estimates", state, lookback=10)
    follower.start()
    assert follower.poll_once() == 10  # not the 490 before them
    assert state.current is not None and state.current.step == 499


def test_follows_new_messages_and_survives_bad_ones() -> None:
    consumer = FakeConsumer("estimates", {0: []})
    state = LatestEstimates()
    follower = EstimateFollower(consumer, "estimates", state)
    follower.start()
    assert follower.poll_once() == 0 and state.current is None
    consumer.log[0] += [b"{broken", make_estimate(step=7).to_bytes(), b"\x00"]
    assert follower.poll_once() == 3
    assert state.current is not None and state.current.step == 7
    assert state.invalid == 2


def test_run_serves_what_the_consumer_brings_and_stops_on_request() -> None:
    consumer = FakeConsumer("estimates", {0: [make_estimate(step=42).to_bytes()]})
    port = free_port()
    settings = MonitorServiceSettings(monitor={"host": "127.0.0.1", "port": port})
    stop = threading.Event()
    result: list[int] = []
    thread = threading.Thread(
        target=lambda: result.append(
            run(settings, consumer=consumer, registry=CollectorRegistry(), stop=stop)
        )
    )
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        assert 'gumbel_samples_learned_total{model_id="default"} 5000.0' in metrics
        assert "process_resident_memory_bytes" in metrics  # the standard collectors too
        assert "python_gc_collections_total" in metrics
    finally:
        stop.set()
        thread.join(timeout=10)
    assert result == [0]
