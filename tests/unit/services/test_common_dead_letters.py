"""Dead letters keep the original record, and a record of any size never stops the writer."""

from __future__ import annotations

import hashlib
import importlib
from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from services.common.codec import DEAD_LETTER_REASONS, BadRecord, MalformedRecordError
from services.common.dead_letters import DeadLetterWriter, dead_letter_headers


class Future:
    def __init__(self) -> None:
        self.errbacks: list[tuple[Any, tuple]] = []

    def add_errback(self, callback: Any, *args: Any) -> Future:
        self.errbacks.append((callback, args))
        return self

    def fail(self, exc: BaseException) -> None:
        for callback, args in self.errbacks:
            callback(exc, *args)


class Producer:
    """Takes sends up to ``max_request_size`` (as kafka-python checks in ``send``)."""

    def __init__(self, max_request_size: int = 1024 * 1024) -> None:
        self.max_request_size = max_request_size
        self.sent: list[dict[str, Any]] = []
        self.futures: list[Future] = []
        self.reject_next: BaseException | None = None

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             headers: list | None = None, timestamp_ms: int | None = None) -> Future:
        size = len(value or b"") + len(key or b"") + sum(len(k) + len(v) for k, v in headers or [])
        if size > self.max_request_size:
            raise MessageSizeTooLargeError(f"{size} bytes")
        self.sent.append({"topic": topic, "value": value, "key": key,
                          "headers": list(headers or []), "timestamp_ms": timestamp_ms})
        future = Future()
        self.futures.append(future)
        return future

    def flush(self, timeout: float | None = None) -> None:
        if self.reject_next is not None:
            exc, self.reject_next = self.reject_next, None
            self.futures[-1].fail(exc)


def _bad(value: bytes | None, **kw: Any) -> BadRecord:
    return BadRecord(value, "not_integer: value is not an ASCII decimal integer", 2, 40, **kw)


def test_value_key_and_headers_are_kept_and_origin_added() -> None:
    producer = Producer()
    record = _bad(b"x", key=b"user-7", headers=(("gumbel-format", b"u8"), ("trace", b"t")),
                  timestamp=1234)
    DeadLetterWriter(producer, "numbers.dlq", "numbers").write([record])
    [sent] = producer.sent
    assert (sent["value"], sent["key"]) == (b"x", b"user-7")
    headers = sent["headers"]
    assert headers[:2] == [("gumbel-format", b"u8"), ("trace", b"t")]
    mine = dict(headers[2:])
    assert mine["error"].startswith(b"not_integer")
    assert (mine["source_topic"], mine["source_partition"], mine["source_offset"]) == (
        b"numbers", b"2", b"40")
    assert mine["source_timestamp"] == b"1234"
    assert mine["error_reason"] == b"not_integer"
    assert mine["__connect.errors.topic"] == b"numbers"
    assert mine["__connect.errors.exception.class.name"] == (
        b"services.common.codec.MalformedRecordError")
    assert mine["__connect.errors.exception.message"].startswith(b"not_integer: ")
    assert mine["__connect.errors.stage"] == b"VALUE_CONVERTER"
    assert sent["timestamp_ms"] == 1234  # the original's, as Kafka Connect keeps it


def _import(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_connect_headers_name_classes_and_the_reason_has_its_own_header() -> None:
    record = BadRecord(b"9", "out_of_range: 9 not in [0, 5)", 1, 7, timestamp=5)
    headers = dead_letter_headers(record, "numbers", connector_name="m1", task_id=3)
    names = [name for name, _ in headers]
    assert len(names) == len(set(names))
    values = {name: value.decode() for name, value in headers}
    # Kafka Connect's DeadLetterQueueReporter names a class here, never a reason or message.
    raised = _import(values["__connect.errors.exception.class.name"])
    assert issubclass(raised, ValueError) and raised is MalformedRecordError
    assert callable(_import(values["__connect.errors.class.name"]))  # the decoder
    assert values["error_reason"] == "out_of_range" and "out_of_range" in DEAD_LETTER_REASONS
    assert values["__connect.errors.exception.message"] == "out_of_range: 9 not in [0, 5)"
    assert values["error"] == values["__connect.errors.exception.message"]
    assert (values["__connect.errors.connector.name"], values["__connect.errors.task.id"]) == (
        "m1", "3")
    assert [n for n in names if n.startswith("__connect.errors.")] == [
        f"__connect.errors.{n}" for n in ("topic", "partition", "offset", "connector.name",
                                          "task.id", "stage", "class.name",
                                          "exception.class.name", "exception.message")]


def test_a_name_we_add_replaces_the_originals_and_the_others_keep_their_order() -> None:
    producer = Producer()
    original = (("trace", b"t1"), ("error", b"theirs"), ("gumbel-format", b"u8"),
                ("__connect.errors.topic", b"older"), ("source_offset", b"1"), ("x", b"2"))
    DeadLetterWriter(producer, "numbers.dlq", "numbers").write([_bad(b"x", headers=original)])
    headers = producer.sent[0]["headers"]
    names = [name for name, _ in headers]
    assert len(names) == len(set(names)), names
    assert headers[:3] == [("trace", b"t1"), ("gumbel-format", b"u8"), ("x", b"2")]
    mine = dict(headers)
    assert mine["error"].startswith(b"not_integer: ")
    assert mine["__connect.errors.topic"] == b"numbers"
    assert mine["source_offset"] == b"40"


def test_a_record_without_a_timestamp_gets_the_producers() -> None:
    producer = Producer()
    DeadLetterWriter(producer, "dlq").write([_bad(b"x")])
    [sent] = producer.sent
    assert sent["timestamp_ms"] is None
    assert "source_timestamp" not in dict(sent["headers"])


def test_a_null_value_stays_null() -> None:
    producer = Producer()
    DeadLetterWriter(producer, "dlq").write([_bad(None)])
    assert producer.sent[0]["value"] is None


def test_a_value_over_the_limit_is_truncated_and_says_so() -> None:
    producer = Producer()
    value = b"5" * 1_048_450  # the repro: fits a default broker, not a default producer
    writer = DeadLetterWriter(producer, "dlq", max_value_bytes=1000)
    assert writer.write([_bad(value)]) == 1
    [sent] = producer.sent
    assert sent["value"] == value[:1000]
    headers = dict(sent["headers"])
    assert headers["gumbel-dlq-truncated"] == b"true"
    assert headers["gumbel-dlq-original-size"] == b"1048450"
    assert headers["gumbel-dlq-original-sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert writer.truncated == 1


def test_a_record_the_producer_refuses_is_written_without_its_value() -> None:
    producer = Producer(max_request_size=100_000)
    writer = DeadLetterWriter(producer, "dlq", max_value_bytes=512 * 1024)
    writer.write([_bad(b"7" * 300_000, key=b"k" * 70_000)])
    [sent] = producer.sent
    assert sent["value"] is None and sent["key"] is None
    assert dict(sent["headers"])["gumbel-dlq-value-dropped"] == b"300000"
    assert (writer.truncated, writer.failed) == (1, 0)


def test_oversized_keys_and_header_sets_are_dropped_not_truncated() -> None:
    producer = Producer(max_request_size=10**7)
    headers = tuple((f"h{i}", b"v" * 10_000) for i in range(10))
    DeadLetterWriter(producer, "dlq").write([_bad(b"x", key=b"k" * 70_000, headers=headers)])
    [sent] = producer.sent
    names = dict(sent["headers"])
    assert sent["key"] is None and names["gumbel-dlq-key-dropped"] == b"70000"
    assert names["gumbel-dlq-headers-dropped"] == b"10"
    assert "h0" not in names


def test_a_dead_letter_the_broker_rejects_for_size_is_rewritten_bare_on_flush() -> None:
    producer = Producer()
    writer = DeadLetterWriter(producer, "dlq")
    writer.write([_bad(b"x" * 2000)])
    producer.reject_next = MessageSizeTooLargeError("broker max.message.bytes")
    writer.flush()
    assert [s["value"] for s in producer.sent] == [b"x" * 2000, None]
    assert dict(producer.sent[1]["headers"])["gumbel-dlq-value-dropped"] == b"2000"


def test_a_dead_letter_lost_to_a_broker_outage_fails_the_flush() -> None:
    """Not stored is not "handled": the caller must not checkpoint past it."""
    producer = Producer()
    writer = DeadLetterWriter(producer, "dlq")
    writer.write([_bad(b"x")])
    producer.reject_next = KafkaTimeoutError("delivery timeout")
    with pytest.raises(Exception, match="1 dead letters not stored"):
        writer.flush()
    assert len(producer.sent) == 1
