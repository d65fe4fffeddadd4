"""The trainer's consumer, dead-letter producer and offset commits over SASL/SCRAM."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from services.common.kafka import ensure_topics, make_consumer, make_producer, topic_partitions
from services.common.settings import TrainerServiceSettings
from services.trainer.local import LocalTrainer
from tests.conftest import SASL_PASSWORD as PASSWORD
from tests.conftest import SASL_USER as USER
from tests.integration.trainer_helpers import counts_of, eventually, stream

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

def test_trainer_learns_over_sasl_scram(sasl_broker, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    settings = TrainerServiceSettings(
        kafka={
            "bootstrap_servers": sasl_broker.bootstrap_servers,
            "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256",
            "sasl_username": USER, "sasl_password": PASSWORD, "num_partitions": 2,
            "numbers_topic": f"numbers-{suffix}", "dlq_topic": f"numbers-{suffix}.dlq",
        },
        trainer={"num_categories": 5, "checkpoint_dir": tmp_path, "checkpoint_interval_s": 0.3,
                 "group_id": f"trainer-{suffix}"},
    )
    ensure_topics(settings.kafka)
    values = [*stream(300, seed=6), b"bad"]
    producer = make_producer(settings.kafka)
    for value in values:
        producer.send(settings.kafka.numbers_topic, value)
    producer.flush(30)
    producer.close()

    actor = LocalTrainer(settings, 1)
    actor.start()
    try:
        eventually(lambda: actor.status().samples_seen >= 300, 60, "records learned")
        time.sleep(1.0)  # a checkpoint, then its offsets committed over SASL
    finally:
        status = actor.stop()
    assert status.error is None
    assert list(status.baseline_counts) == counts_of(values)
    assert status.dead_letters == 1

    consumer = make_consumer(settings.kafka, group_id=settings.trainer.group_id)
    partitions = topic_partitions(consumer, settings.kafka.numbers_topic)
    committed = sum(consumer.committed(tp) or 0 for tp in partitions)
    consumer.close()
    assert committed == len(values)
