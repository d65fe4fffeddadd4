"""Partitions added to `numbers` while the trainer runs (issue 14 §3): `kafka-topics.sh
--alter --partitions 4` on a 2-partition topic. Each actor looks for new partitions every
`partition_refresh_s`, learns those it owns from their beginning, and counts them in its lag:
learned == produced, per-category counts exact."""

from __future__ import annotations

import pytest
from kafka.admin import NewPartitions

from services.common.kafka import make_admin
from tests.integration.trainer_helpers import (
    RunningTrainer,
    counts_of,
    estimate_counts,
    eventually,
    make_settings,
    produce,
    stream,
)

pytestmark = [pytest.mark.cluster, pytest.mark.kafka, pytest.mark.ray, pytest.mark.slow]


def test_partitions_added_while_running_are_learned(kafka_broker, ray_local, tmp_path) -> None:
    settings = make_settings(kafka_broker.bootstrap_servers, tmp_path, partitions=2,
                             partition_refresh_s=1.0)
    values = stream(4000, seed=12)
    produce(settings, values[:2000], partitions=2)
    with RunningTrainer(settings) as running:
        eventually(lambda: running.learned() >= 2000, 180, "the first 2,000 learned")
        admin = make_admin(settings.kafka)
        try:
            admin.create_partitions({settings.kafka.numbers_topic: NewPartitions(4)})
        finally:
            admin.close()
        produce(settings, values[2000:], partitions=4, start=2000)  # half into the new ones
        eventually(lambda: running.learned() >= len(values), 120,
                   "the records of the added partitions learned")
        final = running.stop()
    assert final.samples_seen == len(values)
    assert estimate_counts(final) == counts_of(values)
    assert sorted(final.offsets, key=int) == ["0", "1", "2", "3"]
    assert sum(final.offsets.values()) == len(values)
    assert {m.index: sorted(m.lag_by_partition, key=int) for m in final.actor_metrics} == {
        0: ["0", "2"], 1: ["1", "3"]}  # the new partitions count in the lag too
