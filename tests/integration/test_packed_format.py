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


def test_sample_backpressure_keeps_counts_exact_and_reports_the_fraction(
    kafka_broker, tmp_path: Path
) -> None:
    """A packed stream far faster than the GAN: it learns a sample, the baseline counts all."""
    from services.producer.service import run as run_producer
    from services.trainer.actor import TrainerActor
    from services.trainer.coordinator import aggregate

    kafka = {"bootstrap_servers": kafka_broker.bootstrap_servers, "numbers_topic": "sampled",
             "dlq_topic": "sampled.dlq", "estimates_topic": "sampled.estimates",
             "num_partitions": 1}
    count = 200_000
    producer = ProducerServiceSettings(
        kafka=kafka,
        producer={"rate": 0, "count": count, "seed": 4, "format": "packed",
                  "values_per_record": 4000},
    )
    assert run_producer(producer, serve_metrics=False) == 0
    trainer = TrainerServiceSettings(
        kafka=kafka,
        trainer={"checkpoint_dir": tmp_path, "num_actors": 1, "group_id": "sampled",
                 "backpressure": "sample", "sample_per_poll": 2000},
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
    assert status["samples_seen"] == sum(status["baseline_counts"]) == count
    assert 0 < status["gan_learned"] < count
    estimate = aggregate([status], model_id="m", num_categories=5, estimator="st",
                         backpressure="sample")
    assert estimate.backpressure == "sample"
    assert estimate.learned_fraction == pytest.approx(status["gan_learned"] / count)
    assert estimate.learned_fraction < 1
    assert estimate.consumer_lag == 0
