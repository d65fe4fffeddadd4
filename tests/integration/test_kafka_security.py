"""Kafka clients authenticate with SASL (PLAIN and SCRAM) against a real Apache Kafka broker."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from services.common.kafka import (
    BrokerUnavailable,
    ensure_topics,
    make_consumer,
    make_producer,
    topic_partitions,
    wait_for_broker,
)
from services.common.settings import KafkaSettings, ProducerServiceSettings
from tests.conftest import SASL_PASSWORD as PASSWORD
from tests.conftest import SASL_USER as USER

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

def _settings(broker, mechanism: str, password: str) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=mechanism,
        sasl_username=USER,
        sasl_password=password,
        num_partitions=2,
    )


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_right_password_round_trips(sasl_broker, mechanism: str) -> None:
    settings = _settings(sasl_broker, mechanism, PASSWORD)
    wait_for_broker(settings, timeout_s=30)
    ensure_topics(settings)
    producer = make_producer(settings)
    for value in (b"0", b"1", b"2"):
        producer.send(settings.numbers_topic, value).get(timeout=30)
    producer.close()
    consumer = make_consumer(settings)
    consumer.assign(topic_partitions(consumer, settings.numbers_topic))
    consumer.seek_to_beginning()
    seen: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(seen) < 3 * (1 + (mechanism != "PLAIN")) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            seen.extend(r.value for r in records)
        if mechanism == "PLAIN" and len(seen) >= 3:
            break
    consumer.close()
    assert sorted(set(seen)) == [b"0", b"1", b"2"]


def test_wrong_password_fails_fast_with_a_clear_error(sasl_broker) -> None:
    settings = _settings(sasl_broker, "SCRAM-SHA-256", "wrong-password")
    start = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="rejected the credentials") as info:
        wait_for_broker(settings, timeout_s=60)
    assert time.monotonic() - start < 20, "a wrong password must not be retried until timeout"
    assert "wrong-password" not in str(info.value)


def test_secrets_are_masked_in_settings_output(tmp_path: Path) -> None:
    settings = ProducerServiceSettings(
        kafka={
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "PLAIN",
            "sasl_username": USER,
            "sasl_password": PASSWORD,
        }
    )
    for text in (str(settings), repr(settings), settings.model_dump_json()):
        assert PASSWORD not in text
    assert settings.kafka.client_config()["sasl_plain_password"] == PASSWORD


def test_sasl_without_password_is_a_settings_error() -> None:
    with pytest.raises(ValueError, match="sasl_password"):
        KafkaSettings(
            security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username=USER
        )
