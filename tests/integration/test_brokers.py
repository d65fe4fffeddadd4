"""The broker launcher really starts brokers that real clients can use."""

from __future__ import annotations

import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

pytestmark = pytest.mark.kafka


def _round_trip(bootstrap: str, topic: str, count: int = 200) -> int:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 2, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i in range(count):
        producer.send(topic, str(i % 5).encode())
    producer.flush()
    producer.close()
    # Manual assignment: Tansu gives kafka-python consumer groups no partitions.
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    consumer.assign([TopicPartition(topic, p) for p in range(2)])
    consumer.seek_to_beginning()
    received = 0
    deadline = time.monotonic() + 30
    while received < count and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            received += len(records)
    consumer.close()
    return received


def test_apache_kafka_round_trip(kafka_broker) -> None:
    assert _round_trip(kafka_broker.bootstrap_servers, "broker-round-trip") == 200


def test_tansu_round_trip(tansu_broker) -> None:
    assert tansu_broker.kind == "tansu"
    assert _round_trip(tansu_broker.bootstrap_servers, "tansu-round-trip") == 200


def test_apache_kafka_survives_hard_kill(fresh_kafka_broker) -> None:
    from tests.support.brokers import restart_apache_kafka

    bootstrap = fresh_kafka_broker.bootstrap_servers
    assert _round_trip(bootstrap, "before-kill", 50) == 50
    fresh_kafka_broker.kill()
    restarted = restart_apache_kafka(fresh_kafka_broker)
    try:
        consumer = KafkaConsumer(
            "before-kill",
            bootstrap_servers=restarted.bootstrap_servers,
            auto_offset_reset="earliest",
            consumer_timeout_ms=10000,
        )
        assert sum(1 for _ in consumer) == 50
        consumer.close()
    finally:
        restarted.kill()
