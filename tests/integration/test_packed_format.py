"""Packed records (many values each) flow from the producer to a trainer actor exactly."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from services.common.settings import ProducerServiceSettings, TrainerServiceSettings

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _produce_then_learn(
    broker: Any, tmp_path: Path, topic: str, count: int, values_per_record: int,
    partitions: int, **trainer: Any,
) -> dict[str, Any]:
    """Produce ``count`` packed values to a new topic, learn them with one actor; its status."""
    from services.producer.service import run as run_producer
    from services.trainer.local import LocalTrainer

    kafka = {"bootstrap_servers": broker.bootstrap_servers, "numbers_topic": topic,
             "dlq_topic": f"{topic}.dlq", "estimates_topic": f"{topic}.estimates",
             "num_partitions": partitions}
    producer = ProducerServiceSettings(
        kafka=kafka,
        producer={"rate": 0, "count": count, "seed": 3, "format": "packed",
                  "values_per_record": values_per_record},
    )
    assert run_producer(producer, serve_metrics=False) == 0
    settings = TrainerServiceSettings(
        kafka=kafka,
        trainer={"checkpoint_dir": tmp_path, "num_actors": 1, "group_id": topic, **trainer},
    )
    actor = LocalTrainer(settings, 1)
    actor.start()
    try:
        deadline = time.monotonic() + 120
        while actor.status().samples_seen < count and time.monotonic() < deadline:
            time.sleep(0.2)
        return actor.status()
    finally:
        actor.stop()


def test_packed_stream_is_learned_value_for_value(kafka_broker, tmp_path: Path) -> None:
    count = 30_000
    status = _produce_then_learn(kafka_broker, tmp_path, "packed", count, 1000, partitions=2)
    assert status.samples_seen == count
    assert sum(status.baseline_counts) == count
    assert status.dead_letters == 0
    # The default distribution has two zero-probability categories: none may appear.
    assert status.baseline_counts[0] == status.baseline_counts[1] == 0


def test_sample_backpressure_keeps_counts_exact_and_reports_the_fraction(
    kafka_broker, tmp_path: Path
) -> None:
    """A packed stream far faster than the GAN: it learns a sample, the baseline counts all."""
    from services.trainer.coordinator import aggregate

    count = 2_000_000
    status = _produce_then_learn(
        kafka_broker, tmp_path, "sampled", count, 4000, partitions=1, backpressure="sample",
    )
    assert status.samples_seen == sum(status.baseline_counts) == count
    assert 0 < status.gan_learned < count
    estimate = aggregate(status, [], model_id="m", num_categories=5, estimator="st",
                         backpressure="sample")
    assert estimate.backpressure == "sample"
    assert estimate.learned_fraction == pytest.approx(status.gan_learned / count)
    assert estimate.learned_fraction < 1
    assert estimate.consumer_lag == 0
