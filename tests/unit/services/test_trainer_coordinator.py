"""The coordinator: the learner's and the ingest actors' statuses into the published Estimate."""

from __future__ import annotations

import math
from typing import Any

import pytest

from services.common.schemas import MAX_ACTORS, MAX_COUNT, Estimate, Histogram
from services.trainer import coordinator as coordinator_module
from services.trainer.coordinator import Coordinator, aggregate, lag_by_partition
from services.trainer.status import IngestStatus, LearnerStatus

LEARNER = LearnerStatus(pid=10, samples_seen=100, gan_learned=25, baseline_counts=(30, 70),
                        estimate=(0.25, 0.75), temperature=0.5, steps=4,
                        offsets={"1": 40, "3": 60}, values_by_partition={"3": 60, "1": 40},
                        step_seconds=0.02,
                        record_to_step_seconds=0.3, checkpoint_seconds=0.4,
                        checkpoint_time=990.0, checkpoint_failures=1)


def _aggregate(learner: LearnerStatus, ingest: list[IngestStatus], **kwargs: Any) -> Estimate:
    return aggregate(learner, ingest, model_id="m", num_categories=2, estimator="st",
                     timestamp=1000.0, **kwargs)


def test_the_estimate_is_the_one_learners_with_its_exact_counts() -> None:
    est = _aggregate(LEARNER, [IngestStatus(0), IngestStatus(1)])
    assert est.probabilities == [0.25, 0.75]  # the GAN's, no mixture
    assert est.baseline_probabilities == [0.3, 0.7]
    assert (est.samples_seen, est.step, est.temperature, est.actors) == (100, 4, 0.5, 2)
    assert est.offsets == {"1": 40, "3": 60}
    assert list(est.values_by_partition.items()) == [("1", 40), ("3", 60)]
    assert est.learned_fraction == 0.25


def test_lag_is_each_high_watermark_less_the_learners_offset() -> None:
    ingest = [IngestStatus(1, partitions=(1, 3), highwaters={"1": 50, "3": 60})]
    assert lag_by_partition(LEARNER, ingest) == {1: 10, 3: 0}
    # a partition the learner has not heard of yet: behind by what its reader has not read
    unheard = [IngestStatus(0, partitions=(0,), positions={"0": 5}, highwaters={"0": 9})]
    assert lag_by_partition(LEARNER, unheard) == {0: 4}
    assert _aggregate(LEARNER, ingest).consumer_lag == 10


def test_each_ingest_actor_gets_its_metrics_with_its_restarts() -> None:
    ingest = [IngestStatus(1, partitions=(1, 3), highwaters={"1": 50, "3": 80},
                           records_per_s=5e4, records_read=70_000, held_blocks=2,
                           dead_letters=6),
              IngestStatus(0)]
    est = _aggregate(LEARNER, ingest, restarts={1: 3})
    first, second = est.actor_metrics
    assert (first.index, second.index) == (0, 1)  # sorted by index
    assert first.restarts == 0
    assert second.model_dump() == {
        "index": 1, "records_per_s": 5e4, "step_seconds": 0.02, "poll_to_learn_seconds": 0.3,
        "queue_depth": 2, "lag": 30, "lag_by_partition": {"1": 10, "3": 20},
        "checkpoint_time": 990.0, "checkpoint_seconds": 0.4, "checkpoint_failures": 1,
        "restarts": 3, "dead_letters": 6, "learned_fraction": 0.25, "records_read": 70_000,
    }
    Estimate.from_bytes(est.to_bytes())


def test_the_learners_histograms_travel_in_the_estimate() -> None:
    """Issue 22 §3: cumulative, for the monitor to expose as Prometheus histograms."""
    step = Histogram(bounds=[0.001, 0.01], counts=[1, 3, 4], sum=0.05)
    latency = Histogram(bounds=[1.0], counts=[90, 100], sum=70.0)
    learner = LearnerStatus(step_duration=step, record_to_step=latency, poll_to_step=latency)
    est = Estimate.from_bytes(_aggregate(learner, [IngestStatus(0)]).to_bytes())
    assert (est.step_duration, est.record_to_step, est.poll_to_step) == (step, latency, latency)
    assert _aggregate(LEARNER, [IngestStatus(0)]).step_duration is None  # none measured


def test_hostile_statuses_are_clamped_and_the_estimate_still_publishes() -> None:
    """An actor's odd report must not make the whole Estimate invalid (nothing would publish)."""
    learner = LearnerStatus(step_seconds=math.inf, record_to_step_seconds=-1.0,
                            checkpoint_time=math.nan, checkpoint_seconds=-2.0,
                            checkpoint_failures=-5, samples_seen=10, gan_learned=50,
                            temperature=math.nan, generator_loss=math.inf)
    ingest = IngestStatus(0, records_per_s=math.nan, records_read=-3, held_blocks=10**30,
                          partitions=(0,),
                          positions={"0": 0}, highwaters={"0": 10**30})
    est = _aggregate(learner, [ingest], restarts={0: 10**30})
    (m,) = est.actor_metrics
    assert (m.records_per_s, m.step_seconds, m.poll_to_learn_seconds) == (0.0, 0.0, 0.0)
    assert (m.checkpoint_time, m.checkpoint_seconds) == (None, 0.0)
    assert m.checkpoint_failures == m.records_read == 0
    assert m.queue_depth == m.restarts == m.lag_by_partition["0"] == MAX_COUNT
    assert m.learned_fraction == 1.0
    assert est.temperature == 1.0 and est.generator_loss == 0.0


def test_one_entry_per_actor_and_no_more_than_the_schema_allows() -> None:
    ingest = [IngestStatus(0, held_blocks=1), IngestStatus(0, held_blocks=2),
              IngestStatus(MAX_ACTORS)]
    est = _aggregate(LEARNER, ingest)
    assert [(m.index, m.queue_depth) for m in est.actor_metrics] == [(0, 2)]


class _Method:
    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def remote(self, *args: Any) -> Any:
        return self.answer


class _FakeActor:
    """A Ray handle whose ``status.remote()`` is the status (``ray.get`` is the identity)."""

    def __init__(self, status: Any) -> None:
        self.status = _Method(status)


def test_the_coordinator_publishes_the_restarts_it_counted(monkeypatch) -> None:
    monkeypatch.setattr(coordinator_module.ray, "get", lambda ref, timeout=None: ref)
    learner = _FakeActor(LEARNER)
    actors = [_FakeActor(IngestStatus(0, pid=100)), _FakeActor(IngestStatus(1, pid=200))]
    published: list[Estimate] = []
    coordinator = Coordinator(learner, actors, model_id="m", num_categories=2, estimator="st",
                              publish=published.append)
    coordinator.publish()
    actors[1].status = _Method(IngestStatus(1, pid=201))  # Ray restarted actor 1
    coordinator.publish()
    actors[1].status = _Method(IngestStatus(1, pid=202))  # and again
    learner.status = _Method(LearnerStatus(pid=11))  # and the learner once
    estimate = coordinator.publish()
    assert coordinator.restarts == {1: 2} and coordinator.learner_restarts == 1
    assert [m.restarts for m in estimate.actor_metrics] == [0, 2]
    assert [[m.restarts for m in e.actor_metrics] for e in published] == [[0, 0], [0, 1], [0, 2]]


def test_an_actor_that_raises_is_skipped_and_the_others_still_publish(monkeypatch, caplog) -> None:
    """One actor's method raising must not kill the publishing loop: the others' statuses
    publish, and the error is logged by name."""
    from ray.exceptions import RayTaskError

    failure = RayTaskError("status", "Traceback ...", RuntimeError("deque mutated"))

    def get(ref: Any, timeout: float | None = None) -> Any:
        if ref is failure:
            raise failure
        return ref

    monkeypatch.setattr(coordinator_module.ray, "get", get)
    actors = [_FakeActor(IngestStatus(0, pid=100)), _FakeActor(failure)]
    coordinator = Coordinator(_FakeActor(LEARNER), actors, model_id="m", num_categories=2,
                              estimator="st", publish=lambda e: None)
    estimate = coordinator.publish()
    assert estimate.samples_seen == 100 and [m.index for m in estimate.actor_metrics] == [0]
    assert "ingest actor 1 (status) raised: RuntimeError: deque mutated" in caplog.text


@pytest.mark.parametrize("names", [["click", "view"], None])
def test_category_names_travel_in_the_estimate(names: list[str] | None) -> None:
    est = _aggregate(LEARNER, [], category_names=names)
    assert est.category_names == names
    assert Estimate.from_bytes(est.to_bytes()).category_names == names
