"""Property, on a real broker: records of any bytes, size (up to 3 MiB), format header, key or
null never stop the trainer; every good value is learned exactly once as its own category and
every bad record reaches the dead-letter topic exactly once, as it was (or truncated, saying so).

Hypothesis runs the issue's reproductions plus 12 examples from seed 10 (the same examples
on every run and machine), each on topics of its own with one actor (no Ray). Issue 10's
defects 1, 2 and 7 in one property. On the code before the fix the 1 MiB record stops the
actor (the test times out waiting for it to consume).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, seed, settings
from hypothesis import strategies as st
from kafka import KafkaProducer
from kafka.admin import NewTopic

from services.common.codec import FORMAT_HEADER
from services.common.kafka import make_admin
from services.trainer.local import LocalTrainer
from tests.integration.trainer_helpers import eventually, make_settings, read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

K = 64
PARTITIONS = 2
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
DLQ_LIMIT = 512 * 1024  # the default dlq_max_value_bytes



@dataclass(frozen=True)
class Repeated:
    """A large value, kept short in hypothesis' report of a failing example."""

    byte: bytes
    times: int

    def materialize(self) -> bytes:
        return self.byte * self.times


Headers = list[tuple[str, bytes]]
Value = bytes | Repeated | None
Record = tuple[Value, Headers, bytes | None]  # value, headers, key


def materialize(value: Value) -> bytes | None:
    return value.materialize() if isinstance(value, Repeated) else value


def _u8(ids: list[int]) -> bytes:
    return bytes(ids)


ascii_good = st.integers(0, K - 1).map(lambda c: str(c).encode())
ascii_bad = st.one_of(
    st.binary(max_size=25), st.none(), st.integers(K, 10**30).map(lambda c: str(c).encode()),
    st.sampled_from([b"", b"-1", b" 1", b"1\n", b"0x1", b"\xff", "\u0663".encode()]),
)
packed_good = st.lists(st.integers(0, K - 1), min_size=1, max_size=300).map(_u8)
packed_bad = st.one_of(
    st.lists(st.integers(0, 255), min_size=1, max_size=300).filter(
        lambda ids: max(ids) >= K).map(_u8),
    st.just(b""),
)
huge = st.tuples(
    st.sampled_from([600_000, 1_048_450, 3 * 1024 * 1024]),
    st.sampled_from([b"5", b"\x05", b"\xff"]),
).map(lambda t: Repeated(t[1], t[0]))
extra_headers = st.lists(
    st.tuples(st.sampled_from(["trace", "x-a", "gumbel-format-ish"]), st.binary(max_size=8)),
    max_size=2,
)
keys = st.one_of(st.none(), st.binary(max_size=12))


@st.composite
def records(draw: Any) -> Record:
    kind = draw(st.sampled_from(["ascii", "ascii", "ascii_bad", "packed", "packed_bad",
                                 "format", "huge"]))
    headers: Headers = draw(extra_headers)
    if kind == "ascii":
        value = draw(ascii_good)
    elif kind == "ascii_bad":
        value = draw(ascii_bad)
    elif kind in ("packed", "packed_bad"):
        value = draw(packed_good if kind == "packed" else packed_bad)
        headers = [(FORMAT_HEADER, b"u8"), *headers]
    elif kind == "format":  # a u16le record (possibly odd-length) or an unknown format
        value = draw(st.binary(min_size=1, max_size=40))
        headers = [(FORMAT_HEADER, draw(st.sampled_from([b"u16le", b"zstd", b"U8", b""]))),
                   *headers]
    else:
        value = draw(huge)
        if draw(st.booleans()):
            headers = [(FORMAT_HEADER, b"u8"), *headers]
    key = draw(keys)
    if value is None and key is None:  # kafka-python sends no record without both
        key = b"null-value"
    return value, headers, key


def expected_values(value: bytes | None, headers: Headers) -> list[int] | None:
    """The oracle, written from the wire format (not the codec): the ids, or None if bad."""
    fmt = next((v for h, v in headers if h == FORMAT_HEADER), None)
    if fmt is None:
        ok = value is not None and 0 < len(value) <= 20 and value.isdigit() and int(value) < K
        return [int(value)] if ok else None  # type: ignore[arg-type]
    if not value or len(value) > 8 * 1024 * 1024:
        return None
    if fmt == b"u8":
        ids = list(value)
    elif fmt == b"u16le" and len(value) % 2 == 0:
        ids = [int.from_bytes(value[i:i + 2], "little") for i in range(0, len(value), 2)]
    else:
        return None
    return ids if max(ids) < K else None


def _produce(bootstrap: str, topic: str, batch: list[Record]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all",
                             max_request_size=MAX_MESSAGE_BYTES)
    for i, (value, headers, key) in enumerate(batch):
        producer.send(topic, value=materialize(value), key=key, headers=headers,
                      partition=i % PARTITIONS)
    producer.flush(60)
    producer.close()


# An explicit seed, not derandomize (which seeds from the test's source: an edit would change
# the examples docs/reliability.md reports).
@seed(10)
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(batch=st.lists(records(), min_size=1, max_size=25))
# The reproductions, always run: a 1 MiB ASCII record (over the dead-letter producer's
# limit), 3 MiB packed records bad and good, u8 bytes that look like digits, a bad format.
@example(batch=[
    (Repeated(b"5", 1_048_450), [], None), (b"1", [], None),
    (Repeated(b"\xff", 3 * 1024 * 1024), [(FORMAT_HEADER, b"u8")], b"key"), (b"2", [], None),
    (Repeated(b"\x05", 3 * 1024 * 1024), [(FORMAT_HEADER, b"u8")], None),
    (b"3", [(FORMAT_HEADER, b"u8")], None), (b"7", [(FORMAT_HEADER, b"u16le")], None),
    (b"3", [(FORMAT_HEADER, b"zstd")], None), (None, [("trace", b"t")], b"k"),
])
def test_no_record_stops_the_trainer_and_each_is_learned_or_dead_lettered_once(
    kafka_broker, batch: list[Record]
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    with tempfile.TemporaryDirectory() as checkpoints:
        config = make_settings(bootstrap, Path(checkpoints), partitions=PARTITIONS,
                               num_actors=1, num_categories=K, max_batch=64)
        admin = make_admin(config.kafka)
        try:  # the numbers topic takes records up to 16 MiB (a topic may allow that)
            admin.delete_topics([config.kafka.numbers_topic])
            eventually(lambda: config.kafka.numbers_topic not in admin.list_topics(), 30,
                       "topic deleted")
            admin.create_topics([NewTopic(
                config.kafka.numbers_topic, PARTITIONS, 1,
                topic_configs={"max.message.bytes": str(MAX_MESSAGE_BYTES)})])
        finally:
            admin.close()
        _produce(bootstrap, config.kafka.numbers_topic, batch)
        good: list[int] = []
        bad: dict[tuple[int, int], Record] = {}
        for i, (value, headers, key) in enumerate(batch):
            ids = expected_values(materialize(value), headers)
            if ids is None:
                bad[(i % PARTITIONS, i // PARTITIONS)] = (materialize(value), headers, key)
            else:
                good.extend(ids)

        actor = LocalTrainer(config, 1)
        actor.start()
        try:
            eventually(lambda: sum(actor.offsets.values()) >= len(batch), 120, "all consumed")
            time.sleep(0.3)
            assert actor.status().running, actor.status().error
        finally:
            status = actor.stop()
    assert status.error is None
    assert status.samples_seen == len(good)
    assert list(status.baseline_counts) == [good.count(c) for c in range(K)]
    assert status.dead_letters == len(bad)

    dead = read_topic(bootstrap, config.kafka.dlq_topic, len(bad), 60)
    found: dict[tuple[int, int], Any] = {}
    for record in dead:
        ours = dict(record.headers)
        origin = (int(ours["source_partition"]), int(ours["source_offset"]))
        assert origin not in found, f"{origin} dead-lettered twice"
        found[origin] = record
    assert set(found) == set(bad)
    for origin, (value, headers, key) in bad.items():
        record = found[origin]
        ours = dict(record.headers)
        assert record.headers[: len(headers)] == headers  # the original headers, first
        assert record.key == key
        if value is not None and len(value) > DLQ_LIMIT:
            assert record.value == value[:DLQ_LIMIT]
            assert ours["gumbel-dlq-original-size"] == str(len(value)).encode()
        else:
            assert record.value == value
