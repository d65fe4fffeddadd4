"""Packed records (many values each) flow from the producer to a trainer actor exactly."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from services.common.settings import ProducerServiceSettings, TrainerServiceSettings

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_packed_stream_is_learned_value_for_value(kafka_broker, tmp_path: Path) -> None:
    from services.producer.service import run as run_producer
    from services.trainer.actor import TrainerActor

    kafka = {"bootstrap_servers": kafka_broker.bootstrap_servers, "numbers_topic": "packed",
             "dlq_topic": "packed.dlq", "estimates_topic": "packed.estimates",
             "num_partitions": 2}
    count = 30_000
    producer = ProducerServiceSettings(
        kafka=kafka,
        producer={"rate": 0, "count": count, "seed": 3, "format": "packed",
                  "values_per_record": 1000},
    )
    assert run_producer(producer, serve_metrics=False) == 0

    trainer = TrainerServiceSettings(
        kafka=kafka, trainer={"checkpoint_dir": tmp_path, "num_actors": 1, "group_id": "packed"}
    )
    actor = TrainerActor(trainer, 0, 1)
    actor.start(background=True)
    try:
        deadline = time.monotonic() + 120
        while actor.status()["samples_seen"] < count and time.monotonic() < deadline:
            time.sleep(0.2)
        status = actor.status()
    finally:
        actor.stop()
    assert status["samples_seen"] == count
    assert sum(status["baseline_counts"]) == count
    assert status["dead_letters"] == 0
    # The default distribution has two zero-probability categories: none may appear.
    assert status["baseline_counts"][0] == status["baseline_counts"][1] == 0
