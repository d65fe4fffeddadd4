"""The producer loop and run() with a fake Kafka producer and a fresh registry."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import requests
from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from prometheus_client import CollectorRegistry

from services.cli import SERVICES, build_parser, load_settings
from services.common.codec import EventFormat
from services.common.settings import ProducerServiceSettings, parse_drift
from services.producer.metrics import ProducerMetrics
from services.producer.pacing import Pacer
from services.producer.service import produce, run
from services.producer.stream import CategoryStream
from services.trainer.source import decode_poll


class FakeFuture:
    def __init__(self, error: Exception | None) -> None:
        self._error = error

    def add_errback(self, fn: Callable[[Exception], None]) -> FakeFuture:
        if self._error is not None:
            fn(self._error)
        return self


class FakeProducer:
    """Records what was sent; fails the records whose index is in ``fail``."""

    def __init__(self, fail: set[int] | None = None, on_send: Callable[[int], None] | None = None):
        self.sent: list[tuple[str, bytes]] = []
        self.headers: list[list[tuple[str, bytes]] | None] = []  # one per record, as sent
        self.flushed = 0
        self._fail = fail or set()
        self._on_send = on_send

    def send(
        self, topic: str, value: bytes, headers: list[tuple[str, bytes]] | None = None
    ) -> FakeFuture:
        index = len(self.sent)
        self.sent.append((topic, value))
        self.headers.append(headers)
        if self._on_send is not None:
            self._on_send(index)
        return FakeFuture(RuntimeError("boom") if index in self._fail else None)

    def flush(self, timeout: float | None = None) -> None:
        self.flushed += 1


def _settings(**producer: object) -> ProducerServiceSettings:
    return ProducerServiceSettings(producer={"rate": 0, "metrics_port": 0, **producer})


def test_sends_exactly_count_ascii_records_without_key() -> None:
    registry = CollectorRegistry()
    fake = FakeProducer()
    result = produce(fake, "numbers", CategoryStream([0.2, 0.8], seed=3), Pacer(0),
                     ProducerMetrics(registry), count=20_001)
    assert result.sent == len(fake.sent) == 20_001
    assert {topic for topic, _ in fake.sent} == {"numbers"}
    assert {value for _, value in fake.sent} == {b"0", b"1"}
    assert registry.get_sample_value("gumbel_produced_total") == 20_001
    assert result.errors == 0


def test_true_probability_follows_the_drift() -> None:
    registry = CollectorRegistry()
    metrics = ProducerMetrics(registry)
    stream = CategoryStream([1.0, 0.0], parse_drift("100=0.25,0.75"))
    produce(FakeProducer(), "numbers", stream, Pacer(0), metrics, count=50)
    assert registry.get_sample_value("gumbel_true_probability", {"category": "1"}) == 0.0
    produce(FakeProducer(), "numbers", stream, Pacer(0), metrics, count=100)
    assert registry.get_sample_value("gumbel_true_probability", {"category": "0"}) == 0.25
    assert registry.get_sample_value("gumbel_true_probability", {"category": "1"}) == 0.75


def test_counts_records_the_client_gave_up_on() -> None:
    registry = CollectorRegistry()
    result = produce(FakeProducer(fail={3, 5}), "numbers", CategoryStream([0.5, 0.5]), Pacer(0),
                     ProducerMetrics(registry), count=10)
    assert result.errors == 2
    assert registry.get_sample_value("gumbel_produce_errors_total") == 2


def test_stop_ends_a_forever_stream() -> None:
    stop = threading.Event()
    fake = FakeProducer(on_send=lambda i: stop.set() if i == 30_000 else None)
    result = produce(fake, "numbers", CategoryStream([0.5, 0.5]), Pacer(0),
                     ProducerMetrics(CollectorRegistry()), count=0, stop=stop)
    assert 30_000 < result.sent <= 30_000 + Pacer(0).chunk_size  # stops at the chunk's end


def test_run_flushes_and_exits_zero() -> None:
    fake = FakeProducer()
    assert run(_settings(count=1234), producer=fake, registry=CollectorRegistry()) == 0
    assert len(fake.sent) == 1234
    assert fake.flushed == 1


def test_run_exits_one_when_records_failed() -> None:
    fake = FakeProducer(fail={0})
    assert run(_settings(count=10), producer=fake, registry=CollectorRegistry()) == 1


def test_run_serves_metrics_while_producing() -> None:
    from services.brokers import free_port

    port = free_port()
    seen: dict[str, str] = {}

    def scrape(index: int) -> None:
        if index == 100:
            seen["body"] = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text

    settings = _settings(count=200, metrics_port=port, metrics_host="127.0.0.1",
                         probabilities="0.25,0.75")
    assert run(settings, producer=FakeProducer(on_send=scrape), registry=CollectorRegistry()) == 0
    assert 'gumbel_true_probability{category="1"} 0.75' in seen["body"]
    assert "gumbel_produced_total" in seen["body"]
    assert "process_resident_memory_bytes" in seen["body"]  # the standard collectors too
    assert "python_gc_collections_total" in seen["body"]
    with pytest.raises(requests.ConnectionError):  # the server is gone after run()
        requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_run_exits_one_when_the_metrics_port_is_taken() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = _settings(count=1, metrics_port=port, metrics_host="127.0.0.1")
        assert run(settings, producer=FakeProducer(), registry=CollectorRegistry()) == 1


@pytest.mark.parametrize(("fmt", "expected"), [
    (EventFormat("json", "event", ("click", "buy")), {b'{"event":"click"}', b'{"event":"buy"}'}),
    (EventFormat("json", "payload.type"), {b'{"payload":{"type":0}}', b'{"payload":{"type":1}}'}),
    (EventFormat("string", categories=("click", "buy")), {b"click", b"buy"}),
    (EventFormat("ascii", categories=("click", "buy")), {b"0", b"1"}),
])
def test_writes_the_records_in_the_event_format(fmt: EventFormat, expected: set) -> None:
    fake = FakeProducer()
    result = produce(fake, "numbers", CategoryStream([0.5, 0.5], seed=1), Pacer(0),
                     ProducerMetrics(CollectorRegistry()), count=200, event_format=fmt)
    assert result.sent == len(fake.sent) == 200
    assert {value for _, value in fake.sent} == expected


def test_run_produces_the_format_of_the_events_settings() -> None:
    fake = FakeProducer()
    settings = ProducerServiceSettings(
        producer={"rate": 0, "metrics_port": 0, "count": 50, "probabilities": "0.5,0.5"},
        events={"format": "json", "categories": "click,view"})
    assert run(settings, producer=fake, registry=CollectorRegistry(), serve_metrics=False) == 0
    assert {value for _, value in fake.sent} <= {b'{"event":"click"}', b'{"event":"view"}'}
    assert len(fake.sent) == 50


def test_packed_one_value_records_reach_the_trainer_as_their_own_categories() -> None:
    """``producer --format packed --values-per-record 1`` with K=64, every id 0..63, read back
    by the trainer's decoder: the u8 bytes 0x30..0x39 are categories 48..57, not the ASCII
    digits 0..9 (issue 10, defect 2)."""
    k = 64

    def one_hot(category: int) -> str:
        return ",".join("1" if i == category else "0" for i in range(k))

    # A drift step at every record: the stream draws 0, 1, ..., 63, in that order.
    drift = ";".join(f"{c}={one_hot(c)}" for c in range(1, k))
    args = build_parser().parse_args([
        "producer", "--format", "packed", "--values-per-record", "1", "--count", str(k),
        "--rate", "0", "--probabilities", one_hot(0), "--drift", drift,
    ])
    settings = load_settings(ProducerServiceSettings, SERVICES["producer"].flags, args)
    fake = FakeProducer()
    assert run(settings, producer=fake, registry=CollectorRegistry(), serve_metrics=False) == 0
    assert [len(value) for _, value in fake.sent] == [1] * k  # one u8 byte per record

    polled = [
        ConsumerRecord("numbers", 0, -1, offset, 0, 0, None, value, headers or [], None, -1,
                       len(value), -1)
        for offset, ((_, value), headers) in enumerate(zip(fake.sent, fake.headers, strict=True))
    ]
    batch = decode_poll({TopicPartition("numbers", 0): polled}, k)  # a row a value
    assert batch is not None
    assert batch.bad == []
    (block,) = batch.blocks
    assert block.counts.sum(1).tolist() == [1] * k
    assert block.counts.argmax(1).tolist() == list(range(k))
