"""The monitor against a real broker: shows, survives, restarts onto the latest, goes stale."""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import requests
from kafka import KafkaProducer
from prometheus_client import CollectorRegistry

from services.brokers import free_port
from services.common.schemas import Estimate
from services.common.settings import MonitorServiceSettings
from services.monitor.service import run

pytestmark = pytest.mark.kafka


def make_estimate(**fields: object) -> Estimate:
    values: dict[str, object] = {
        "model_id": "default", "timestamp": time.time(), "step": 1, "samples_seen": 1000,
        "dead_letters": 0, "num_categories": 3, "probabilities": [0.2, 0.3, 0.5],
        "baseline_probabilities": [0.2, 0.3, 0.5], "temperature": 1.0, "generator_loss": 0.7,
        "discriminator_loss": 1.4, "estimator": "st", "actors": 1, "offsets": {"0": 1000},
    }
    values.update(fields)
    return Estimate(**values)  # type: ignore[arg-type]


def publish(bootstrap: str, topic: str, *values: bytes) -> None:
    # gzip and a large request size let a many-megabyte hostile estimate through the broker
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type="gzip",
                             max_request_size=64 * 2**20)
    for value in values:
        producer.send(topic, key=b"default", value=value)
    producer.flush()
    producer.close()


def eventually(check: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


@contextmanager
def monitor(bootstrap: str, topic: str, stale_after_s: float = 60) -> Iterator[str]:
    """Run the monitor in a thread; yields its base URL once /metrics answers."""
    port = free_port()
    settings = MonitorServiceSettings(
        kafka={"bootstrap_servers": bootstrap, "estimates_topic": topic},
        monitor={"host": "127.0.0.1", "port": port, "stale_after_s": stale_after_s},
    )
    stop = threading.Event()
    thread = threading.Thread(
        target=run, args=(settings,), kwargs={"stop": stop, "registry": CollectorRegistry()}
    )
    thread.start()
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(f"{url}/metrics", timeout=2).ok
        except requests.ConnectionError:
            return False

    try:
        eventually(up)
        yield url
    finally:
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive()


def metric(url: str, line_start: str) -> str | None:
    """A sample's value; a model's series (not the monitor's own) of model ``default``."""
    if not line_start.startswith("gumbel_monitor_"):
        name, _, labels = line_start.rstrip("}").partition("{")
        line_start = f'{name}{{{labels + "," if labels else ""}model_id="default"}}'
    for line in requests.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith(line_start + " "):
            return line.split(" ", 1)[1]
    return None


def test_shows_a_published_estimate(kafka_broker) -> None:
    bootstrap, topic = kafka_broker.bootstrap_servers, f"estimates-{uuid.uuid4().hex[:8]}"
    with monitor(bootstrap, topic) as url:
        assert metric(url, "gumbel_samples_learned_total") is None
        publish(bootstrap, topic, make_estimate(samples_seen=4321).to_bytes())
        eventually(lambda: metric(url, "gumbel_samples_learned_total") == "4321.0")
        assert metric(url, 'gumbel_estimated_probability{category="2"}') == "0.5"
        assert requests.get(f"{url}/estimate", timeout=5).json()["samples_seen"] == 4321


def test_survives_a_malformed_estimate(kafka_broker) -> None:
    bootstrap, topic = kafka_broker.bootstrap_servers, f"estimates-{uuid.uuid4().hex[:8]}"
    with monitor(bootstrap, topic) as url:
        publish(bootstrap, topic, b"{not json", b'{"schema_version": 1}',
                make_estimate(step=9).to_bytes())
        eventually(lambda: metric(url, "gumbel_monitor_invalid_estimates_total") == "2.0")
        eventually(lambda: requests.get(f"{url}/estimate", timeout=5).json().get("step") == 9)


def test_restart_shows_the_latest_estimate_already_on_the_topic(kafka_broker) -> None:
    bootstrap, topic = kafka_broker.bootstrap_servers, f"estimates-{uuid.uuid4().hex[:8]}"
    with monitor(bootstrap, topic) as url:  # creates the topic
        pass
    publish(bootstrap, topic, *[make_estimate(step=i, samples_seen=i).to_bytes()
                                for i in range(300)])
    with monitor(bootstrap, topic) as url:
        eventually(lambda: metric(url, "gumbel_samples_learned_total") == "299.0", 15)
        assert requests.get(f"{url}/healthz", timeout=5).status_code == 200


def test_healthz_goes_503_200_503(kafka_broker) -> None:
    bootstrap, topic = kafka_broker.bootstrap_servers, f"estimates-{uuid.uuid4().hex[:8]}"
    with monitor(bootstrap, topic, stale_after_s=3.0) as url:
        first = requests.get(f"{url}/healthz", timeout=5)
        assert first.status_code == 503 and "no estimate" in first.text
        publish(bootstrap, topic, make_estimate(timestamp=time.time()).to_bytes())
        eventually(lambda: requests.get(f"{url}/healthz", timeout=5).status_code == 200, 10)
        eventually(lambda: requests.get(f"{url}/healthz", timeout=5).status_code == 503, 10)
        assert "old" in requests.get(f"{url}/healthz", timeout=5).text


def test_smoke_against_tansu(tansu_broker) -> None:
    # Tansu reports a partition's end as its last batch's base offset; the lookback covers it.
    bootstrap, topic = tansu_broker.bootstrap_servers, f"estimates-{uuid.uuid4().hex[:8]}"
    with monitor(bootstrap, topic):
        pass
    publish(bootstrap, topic, *[make_estimate(step=i).to_bytes() for i in range(150)])
    with monitor(bootstrap, topic) as url:
        eventually(lambda: requests.get(f"{url}/estimate", timeout=5).json().get("step") == 149)
        publish(bootstrap, topic, make_estimate(step=500).to_bytes())
        eventually(lambda: requests.get(f"{url}/estimate", timeout=5).json().get("step") == 500)


def hostile(**changes: object) -> bytes:
    """A valid estimate's JSON with ``changes``, written as json.dumps does (NaN as ``NaN``)."""
    values = make_estimate().model_dump()
    values.update(changes)
    return json.dumps(values).encode()


@contextmanager
def scraping(url: str) -> Iterator[list[object]]:
    """Scrape /metrics every 50 ms meanwhile; yields the status codes (or errors) seen."""
    seen: list[object] = []
    stop = threading.Event()

    def scrape() -> None:
        while not stop.is_set():
            try:
                seen.append(requests.get(f"{url}/metrics", timeout=5).status_code)
            except requests.RequestException as exc:
                seen.append(exc)
            stop.wait(0.05)

    thread = threading.Thread(target=scrape)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(timeout=10)


def test_hostile_estimates_cannot_blind_the_monitor(kafka_broker) -> None:
    bootstrap, topic = kafka_broker.bootstrap_servers, f"estimates-{uuid.uuid4().hex[:8]}"
    k = 500_000
    one_hot = [0] * (k - 1) + [1]
    hostiles = [
        hostile(samples_seen=10**400),
        hostile(generator_loss=math.nan),
        hostile(num_categories=k, probabilities=one_hot, baseline_probabilities=one_hot),
        make_estimate(timestamp=time.time() + 3600).to_bytes(),
    ]
    with monitor(bootstrap, topic) as url, scraping(url) as seen:
        for count, value in enumerate(hostiles, 1):
            publish(bootstrap, topic, value)
            eventually(lambda c=count: metric(url, "gumbel_monitor_invalid_estimates_total")
                       == f"{c}.0")
        publish(bootstrap, topic, make_estimate(samples_seen=777).to_bytes())
        eventually(lambda: metric(url, "gumbel_samples_learned_total") == "777.0")
        assert metric(url, "gumbel_generator_loss") == "0.7"
        assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
        assert len(requests.get(f"{url}/metrics", timeout=5).content) < 20_000
    assert seen and all(status == 200 for status in seen), seen
