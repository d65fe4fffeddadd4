"""Kafka's conventions on the real broker: compressed producers, a compacted ``estimates``,
Kafka Connect-style dead letters, and the trainer's lag as ``kafka-consumer-groups.sh`` shows it.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from services.bench.compression import topic_bytes
from services.common.codec import decode_values, encode_packed, encode_value
from services.common.kafka import (
    ESTIMATES_TOPIC_CONFIG,
    ensure_topics,
    make_admin,
    make_consumer,
    make_producer,
    topic_config,
)
from services.common.settings import COMPRESSION_TYPES, KafkaSettings, codec_available
from tests.conftest import require_binary
from tests.integration.trainer_helpers import (
    NUM_PARTITIONS,
    K,
    RunningTrainer,
    eventually,
    make_settings,
    produce,
    read_topic,
    stream,
)

pytestmark = [pytest.mark.kafka]


def _apache_kafka(broker: Any) -> None:
    if broker.kind != "apache-kafka":
        pytest.skip("needs Apache Kafka (configs, log dirs and its own tools)")


def _settings(broker: Any, **options: Any) -> KafkaSettings:
    suffix = uuid.uuid4().hex[:8]
    return KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers, numbers_topic=f"numbers-{suffix}",
        estimates_topic=f"estimates-{suffix}", dlq_topic=f"numbers-{suffix}.dlq", **options)


def _write(settings: KafkaSettings, topic: str, ascii_ids: list[int], packed_ids: list[int]
           ) -> None:
    admin = make_admin(settings)
    try:
        admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        admin.close()
    producer = make_producer(settings)
    for category in ascii_ids:
        producer.send(topic, encode_value(category))
    value, headers = encode_packed(packed_ids, K)
    producer.send(topic, value, headers=headers)
    producer.flush(30)
    producer.close()


def _read_values(settings: KafkaSettings, topic: str, records: int) -> list[int]:
    consumer = make_consumer(settings)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    got: list[Any] = []
    for _ in range(300):
        for batch in consumer.poll(timeout_ms=200).values():
            got.extend(batch)
        if len(got) >= records:
            break
    consumer.close()
    decoded = decode_values([r.value for r in got], [r.partition for r in got],
                            [r.offset for r in got], K, headers=[r.headers for r in got])
    assert not decoded.bad
    return decoded.values.tolist()


@pytest.mark.parametrize("codec", COMPRESSION_TYPES)
def test_every_codec_round_trips_and_the_broker_stores_fewer_bytes(
    kafka_broker: Any, codec: str
) -> None:
    """ASCII and packed records written with ``compression_type`` read back exactly; the
    broker keeps them compressed (its log for ASCII records is under 0.75 of uncompressed:
    measured 0.23-0.48, docs/performance.md#compression)."""
    _apache_kafka(kafka_broker)
    if not codec_available(codec):
        pytest.skip(f"kafka-python has no {codec} library here")
    ascii_ids = [int(v) for v in stream(5000, seed=1)]
    packed_ids = [int(v) for v in stream(4096, seed=2)]
    plain = _settings(kafka_broker, compression_type="none")
    compressed = _settings(kafka_broker, compression_type=codec)
    for settings in (plain, compressed):
        _write(settings, f"{settings.numbers_topic}-{codec}", ascii_ids, packed_ids)
        got = _read_values(settings, f"{settings.numbers_topic}-{codec}", len(ascii_ids) + 1)
        assert got == ascii_ids + packed_ids
    ratio = (topic_bytes(compressed, f"{compressed.numbers_topic}-{codec}")
             / topic_bytes(plain, f"{plain.numbers_topic}-{codec}"))
    if codec == "none":
        assert ratio == pytest.approx(1.0, abs=0.05)
    else:
        assert ratio < 0.75, f"{codec}: {ratio:.3f} of uncompressed: not compressed?"


def test_estimates_is_created_compacted_and_numbers_is_not(kafka_broker: Any) -> None:
    _apache_kafka(kafka_broker)
    settings = _settings(kafka_broker)
    ensure_topics(settings)
    admin = make_admin(settings)
    try:
        estimates = topic_config(admin, settings.estimates_topic)
        numbers = topic_config(admin, settings.numbers_topic)
        dlq = topic_config(admin, settings.dlq_topic)
    finally:
        admin.close()
    assert {k: estimates[k] for k in ESTIMATES_TOPIC_CONFIG} == ESTIMATES_TOPIC_CONFIG
    assert estimates["cleanup.policy"] == "compact"
    assert numbers["cleanup.policy"] == dlq["cleanup.policy"] == "delete"


def test_an_existing_estimates_topic_that_is_not_compacted_is_warned_about(
    kafka_broker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _apache_kafka(kafka_broker)
    settings = _settings(kafka_broker)
    admin = make_admin(settings)
    try:
        admin.create_topics([NewTopic(settings.estimates_topic, 1, 1)])
    finally:
        admin.close()
    with caplog.at_level("WARNING", logger="services.common.kafka"):
        ensure_topics(settings)
    [warning] = [r.getMessage() for r in caplog.records if settings.estimates_topic in
                 r.getMessage()]
    assert "cleanup.policy=delete" in warning and "kafka-configs.sh --alter" in warning
    assert "cleanup.policy=compact" in warning


# -- the trainer: dead letters and committed offsets ------------------------------------------


def consumer_groups_describe(bootstrap: str, group: str) -> list[dict[str, str]]:
    """``kafka-consumer-groups.sh --describe --group`` (its class, from the jars): the rows."""
    from services.brokers import KAFKA_FILES_DIR, kafka_jars_dir

    result = subprocess.run(
        ["java", "-Xmx192m", f"-Dlog4j2.configurationFile={KAFKA_FILES_DIR / 'log4j2.yaml'}",
         "-cp", f"{kafka_jars_dir()}/*",
         "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
         "--bootstrap-server", bootstrap, "--describe", "--group", group],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line.split() for line in result.stdout.splitlines() if line.strip()]
    header = next(i for i, cols in enumerate(lines) if cols[:2] == ["GROUP", "TOPIC"])
    return [dict(zip(lines[header], cols, strict=False)) for cols in lines[header + 1:]
            if len(cols) == len(lines[header])]


def _kcat_headers(bootstrap: str, topic: str) -> list[tuple[str, str]]:
    """The one record's headers as kcat, an independent client, reads them (``-J``)."""
    kcat = require_binary("kcat")
    result = subprocess.run(
        [kcat, "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-J"],
        capture_output=True, timeout=60, check=True)
    # kcat writes the value's bytes as they are (not UTF-8 here); the headers are.
    [line] = result.stdout.decode("utf-8", "replace").splitlines()
    flat = json.loads(line)["headers"]  # [name, value, name, value, ...]
    return list(zip(flat[::2], flat[1::2], strict=True))


def _send_packed_poison(settings: Any, timestamp_ms: int) -> int:
    """A packed record with a value out of range (K=5) to partition 0; its offset."""
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    value = bytes([1, 2, 200, 3])
    future = producer.send(settings.kafka.numbers_topic, value=value, key=b"sensor-9",
                           headers=[("gumbel-format", b"u8"), ("trace-id", b"abc"),
                                    ("error", b"an upstream header of our name")],
                           partition=0, timestamp_ms=timestamp_ms)
    offset = future.get(30).offset
    producer.close()
    return offset


@pytest.mark.slow
@pytest.mark.ray
def test_dead_letters_and_the_lag_an_operator_sees(
    kafka_broker: Any, ray_local: None, tmp_path: Path
) -> None:
    """A packed poison record reaches the DLQ with its ``gumbel-format`` header, key and
    timestamp and Kafka Connect's headers; ``kafka-consumer-groups.sh`` shows the trainer's
    committed offsets (equal to the estimate's) with lag 0, then the lag of what came after."""
    _apache_kafka(kafka_broker)
    settings = make_settings(kafka_broker.bootstrap_servers, tmp_path / "checkpoints")
    kafka, group = settings.kafka, settings.trainer.group_id
    produce(settings, stream(2000, seed=5))
    # A timestamp of its own, a minute old: not one from years ago, which the topics' 7-day
    # retention may delete as soon as the broker's retention check runs (it did, in CI).
    stamp = int(time.time() * 1000) - 60_000 + 123
    poison_offset = _send_packed_poison(settings, timestamp_ms=stamp)
    ends = {p: 500 for p in range(NUM_PARTITIONS)}
    ends[0] += 1
    with RunningTrainer(settings) as trainer:
        eventually(lambda: trainer.learned() >= 2000, 120, "2,000 values learned")
        admin = make_admin(kafka)
        try:
            def committed() -> dict[int, int]:
                offsets = admin.list_group_offsets(group)[group]
                return {tp.partition: meta.offset for tp, meta in offsets.items()}

            eventually(lambda: committed() == ends, 60, f"offsets {ends} committed")
        finally:
            admin.close()
        rows = consumer_groups_describe(kafka.bootstrap_servers, group)
        assert {int(r["PARTITION"]): (int(r["CURRENT-OFFSET"]), int(r["LOG-END-OFFSET"]),
                                      int(r["LAG"])) for r in rows} == {
            p: (end, end, 0) for p, end in ends.items()}
        final = trainer.stop()
    assert final.dead_letters == 1
    assert {int(p): o for p, o in final.offsets.items()} == ends  # what the operator sees

    # Stopped, the trainer falls behind by what is written next: 100 records per partition.
    produce(settings, stream(400, seed=6))
    rows = consumer_groups_describe(kafka.bootstrap_servers, group)
    assert {r["TOPIC"] for r in rows} == {kafka.numbers_topic}
    assert {r["CONSUMER-ID"] for r in rows} == {"-"}  # actors assign; no member is listed
    assert {int(r["PARTITION"]): (int(r["CURRENT-OFFSET"]), int(r["LAG"])) for r in rows} == {
        p: (end, 100) for p, end in ends.items()}

    [dead] = read_topic(kafka.bootstrap_servers, kafka.dlq_topic, 1)
    names = [name for name, _ in dead.headers]
    assert len(names) == len(set(names)), names  # ours replaced the record's own `error`
    assert names[:2] == ["gumbel-format", "trace-id"]  # the original's others, in order
    headers = dict(dead.headers)
    assert (dead.value, dead.key) == (bytes([1, 2, 200, 3]), b"sensor-9")
    assert headers["gumbel-format"] == b"u8" and headers["trace-id"] == b"abc"
    assert dead.timestamp == stamp
    assert headers["error"].startswith(b"out_of_range: ")
    assert headers["error_reason"] == b"out_of_range"
    assert headers["__connect.errors.topic"] == kafka.numbers_topic.encode()
    assert headers["__connect.errors.partition"] == b"0"
    assert headers["__connect.errors.offset"] == str(poison_offset).encode()
    assert headers["__connect.errors.connector.name"] == settings.trainer.model_id.encode()
    assert headers["__connect.errors.task.id"] == b"0"  # the actor that owns partition 0
    assert headers["__connect.errors.stage"] == b"VALUE_CONVERTER"
    assert headers["__connect.errors.class.name"] == b"services.common.codec.decode_values"
    assert headers["__connect.errors.exception.class.name"] == (
        b"services.common.codec.MalformedRecordError")
    assert headers["__connect.errors.exception.message"].startswith(b"out_of_range: ")
    assert headers["source_timestamp"] == str(stamp).encode()
    assert _kcat_headers(kafka.bootstrap_servers, kafka.dlq_topic) == [
        (name, value.decode()) for name, value in dead.headers]
    # ... and it still decodes as the packed record it was.
    again = decode_values([dead.value], [0], [0], K, headers=[dead.headers])
    assert again.bad and again.bad[0].reason == "out_of_range"
