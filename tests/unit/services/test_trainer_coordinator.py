"""The coordinator's per-actor metrics: from each ActorStatus into the published Estimate."""

from __future__ import annotations

import math
from typing import Any

import pytest

from services.common.schemas import MAX_ACTORS, MAX_COUNT, Estimate
from services.trainer import coordinator as coordinator_module
from services.trainer.coordinator import Coordinator, aggregate
from services.trainer.status import ActorStatus


def _aggregate(statuses: list[ActorStatus], **kwargs: Any) -> Estimate:
    return aggregate(statuses, model_id="m", num_categories=2, estimator="st", timestamp=1000.0,
                     **kwargs)


def test_each_actor_gets_its_metrics_with_its_restarts() -> None:
    statuses = [
        ActorStatus(1, samples_seen=100, gan_learned=25, records_per_s=5e4, step_seconds=0.02,
                    poll_to_learn_seconds=0.3, queue_depth=2, lag=30,
                    lag_by_partition={"3": 10, "1": 20}, checkpoint_seconds=0.4,
                    checkpoint_time=990.0, checkpoint_failures=1, dead_letters=6),
        ActorStatus(0),
    ]
    est = _aggregate(statuses, restarts={1: 3})
    first, second = est.actor_metrics
    assert (first.index, second.index) == (0, 1)  # sorted by index
    assert first.restarts == 0 and first.checkpoint_time is None  # never checkpointed
    assert first.learned_fraction == 1.0  # nothing seen yet
    assert second.model_dump() == {
        "index": 1, "records_per_s": 5e4, "step_seconds": 0.02, "poll_to_learn_seconds": 0.3,
        "queue_depth": 2, "lag": 30, "lag_by_partition": {"1": 20, "3": 10},
        "checkpoint_time": 990.0, "checkpoint_seconds": 0.4, "checkpoint_failures": 1,
        "restarts": 3, "dead_letters": 6, "learned_fraction": 0.25,
    }
    assert list(second.lag_by_partition) == ["1", "3"]
    Estimate.from_bytes(est.to_bytes())


def test_without_restarts_every_actor_has_none() -> None:
    est = _aggregate([ActorStatus(0), ActorStatus(1)])
    assert [m.restarts for m in est.actor_metrics] == [0, 0]


def test_a_hostile_status_is_clamped_and_the_estimate_still_publishes() -> None:
    """An actor's odd report must not make the whole Estimate invalid (nothing would publish)."""
    status = ActorStatus(0, records_per_s=math.nan, step_seconds=math.inf,
                         poll_to_learn_seconds=-1.0, checkpoint_time=math.nan,
                         checkpoint_seconds=-2.0, queue_depth=10**30,
                         lag_by_partition={"0": 10**30}, checkpoint_failures=-5,
                         samples_seen=10, gan_learned=50)
    (m,) = _aggregate([status], restarts={0: 10**30}).actor_metrics
    assert (m.records_per_s, m.step_seconds, m.poll_to_learn_seconds) == (0.0, 0.0, 0.0)
    assert (m.checkpoint_time, m.checkpoint_seconds) == (None, 0.0)
    assert m.checkpoint_failures == 0
    assert m.queue_depth == m.restarts == m.lag_by_partition["0"] == MAX_COUNT
    assert m.learned_fraction == 1.0


def test_one_entry_per_actor_and_no_more_than_the_schema_allows() -> None:
    statuses = [ActorStatus(0, lag=1), ActorStatus(0, lag=2), ActorStatus(MAX_ACTORS)]
    est = _aggregate(statuses)
    assert [(m.index, m.lag) for m in est.actor_metrics] == [(0, 2)]


class _Method:
    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def remote(self, *args: Any) -> Any:
        return self.answer


class _FakeActor:
    """A Ray handle whose ``status.remote()`` is the status (``ray.get`` is the identity)."""

    def __init__(self, status: ActorStatus) -> None:
        self.status = _Method(status)


def test_the_coordinator_publishes_the_restarts_it_counted(monkeypatch) -> None:
    monkeypatch.setattr(coordinator_module.ray, "get", lambda ref, timeout=None: ref)
    actors = [_FakeActor(ActorStatus(0, pid=100)), _FakeActor(ActorStatus(1, pid=200))]
    published: list[Estimate] = []
    coordinator = Coordinator(actors, model_id="m", num_categories=2, estimator="st",
                              publish=published.append)
    coordinator.publish()
    actors[1].status = _Method(ActorStatus(1, pid=201))  # Ray restarted actor 1
    coordinator.publish()
    actors[1].status = _Method(ActorStatus(1, pid=202))  # and again
    estimate = coordinator.publish()
    assert coordinator.restarts == {1: 2}
    assert [m.restarts for m in estimate.actor_metrics] == [0, 2]
    assert [[m.restarts for m in e.actor_metrics] for e in published] == [[0, 0], [0, 1], [0, 2]]


@pytest.mark.parametrize("lag_by_partition", [{}, {"0": 0}])
def test_an_actor_without_lag_reports_zero(lag_by_partition: dict[str, int]) -> None:
    (m,) = _aggregate([ActorStatus(0, lag_by_partition=lag_by_partition)]).actor_metrics
    assert m.lag == 0 and m.lag_by_partition == lag_by_partition


def test_an_actor_that_raises_is_skipped_and_the_others_still_publish(monkeypatch, caplog) -> None:
    """One actor's method raising (a bug: CI once saw status() fail on a race) must not kill
    the publishing loop: the others' statuses publish, and the error is logged by name."""
    from ray.exceptions import RayTaskError

    failure = RayTaskError("status", "Traceback ...", RuntimeError("deque mutated"))

    def get(ref: Any, timeout: float | None = None) -> Any:
        if ref is failure:
            raise failure
        return ref

    monkeypatch.setattr(coordinator_module.ray, "get", get)
    actors = [_FakeActor(ActorStatus(0, pid=100, samples_seen=7)), _FakeActor(ActorStatus(1))]
    actors[1].status = _Method(failure)
    coordinator = Coordinator(actors, model_id="m", num_categories=2, estimator="st",
                              publish=lambda e: None)
    estimate = coordinator.publish()
    assert estimate.samples_seen == 7 and [m.index for m in estimate.actor_metrics] == [0]
    assert "actor 1 raised in status: RuntimeError: deque mutated" in caplog.text


def test_category_names_travel_in_the_estimate() -> None:
    est = _aggregate([ActorStatus(0)], category_names=["click", "view"])
    assert est.category_names == ["click", "view"]
    assert Estimate.from_bytes(est.to_bytes()).category_names == ["click", "view"]
    assert _aggregate([ActorStatus(0)]).category_names is None
