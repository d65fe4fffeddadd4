"""Rescaling across restarts (issue 14 §3): 2 -> 3 -> 1 actors on one model, real Kafka and Ray.
Each partition's learner moves with the partition (the actor that lets it go keeps it in its
checkpoint until the new owner adopts it), so after every transition the per-category counts
are exact and every offset is consumed once; the group's committed offsets never stand in for
a missing model (that would fail loudly)."""

from __future__ import annotations

import pytest

from tests.integration.trainer_helpers import (
    RunningTrainer,
    assert_every_offset_once,
    counts_of,
    estimate_counts,
    eventually,
    make_settings,
    partition_sizes,
    produce,
    stream,
)

pytestmark = [pytest.mark.cluster, pytest.mark.kafka, pytest.mark.ray, pytest.mark.slow]


def test_two_three_one_actors_keep_exactly_once(kafka_broker, ray_local, tmp_path) -> None:
    base = make_settings(kafka_broker.bootstrap_servers, tmp_path, checkpoint_interval_s=1.0)
    values = stream(6000, seed=14)
    for phase, num_actors in enumerate((2, 3, 1)):
        settings = base.model_copy(update={"trainer": base.trainer.model_copy(
            update={"num_actors": num_actors, "cpus_per_actor": 0.5})})
        upto = 2000 * (phase + 1)
        produce(settings, values[upto - 2000 : upto], start=upto - 2000)
        with RunningTrainer(settings) as running:
            eventually(lambda: running.learned() >= upto, 180,  # noqa: B023
                       f"{upto:,} learned by {num_actors} actors")
            final = running.stop()
        assert final.actors == num_actors
        assert final.samples_seen == upto, (num_actors, final.samples_seen)
        assert estimate_counts(final) == counts_of(values[:upto]), num_actors
        assert_every_offset_once(final, partition_sizes(values[:upto]))
