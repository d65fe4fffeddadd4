"""The driver's side of training: gather the replicas' statuses, build and publish the
``Estimate``.

The published estimate is the mixture of the replicas' estimates, each weighted by its
actor's share of the records (``mixture.py``). Exact quantities (counting baselines,
samples, dead letters) are summed. An actor that is restarting is skipped and its last
status is used.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from services.common.schemas import (
    MAX_ACTORS,
    MAX_COUNT,
    MAX_PARTITIONS,
    ActorMetrics,
    Estimate,
)
from services.trainer.mixture import mixture, weighted_mean
from services.trainer.status import ActorStatus

__all__ = ["actor_metrics", "aggregate", "Coordinator"]

log = logging.getLogger(__name__)

_UNAVAILABLE: tuple[type[BaseException], ...] = (RayActorError, GetTimeoutError)
try:  # Ray >= 2.30: an actor that is restarting raises ActorUnavailableError
    from ray.exceptions import ActorUnavailableError

    _UNAVAILABLE = (*_UNAVAILABLE, ActorUnavailableError)
except ImportError:  # pragma: no cover
    pass


def _normalized(values: Sequence[float], k: int) -> list[float]:
    total = float(sum(values))
    if total <= 0 or not math.isfinite(total):
        return [1.0 / k] * k
    return [float(v) / total for v in values]


def _finite_mean(values: Sequence[float], default: float) -> float:
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else default


def _finite_non_negative(value: float) -> float:
    """A rate, duration or time fit for the Estimate: finite and not negative, else 0."""
    return float(value) if math.isfinite(value) and value > 0 else 0.0


def _count(value: int) -> int:
    return min(max(0, int(value)), MAX_COUNT)


def actor_metrics(status: ActorStatus, restarts: int = 0) -> ActorMetrics:
    """What an operator sees of one actor, from its status (clamped into the schema's bounds).

    A status is the actor's own report: a NaN rate or a negative count there must not stop
    the estimate from being published, so each value is clamped instead of validated.
    """
    lags = sorted(status.lag_by_partition.items(), key=lambda item: int(item[0]))
    seen = status.samples_seen
    return ActorMetrics(
        index=status.index,
        records_per_s=_finite_non_negative(status.records_per_s),
        step_seconds=_finite_non_negative(status.step_seconds),
        poll_to_learn_seconds=_finite_non_negative(status.poll_to_learn_seconds),
        queue_depth=_count(status.queue_depth),
        lag=_count(status.lag),
        lag_by_partition={p: _count(n) for p, n in lags[:MAX_PARTITIONS]},
        checkpoint_time=_finite_non_negative(status.checkpoint_time) or None,
        checkpoint_seconds=_finite_non_negative(status.checkpoint_seconds),
        checkpoint_failures=_count(status.checkpoint_failures),
        restarts=_count(restarts),
        dead_letters=_count(status.dead_letters),
        learned_fraction=min(1.0, max(0.0, status.gan_learned / seen)) if seen > 0 else 1.0,
    )


def mean_temperature(statuses: Sequence[ActorStatus]) -> float:
    """The published temperature: the replicas' temperatures weighted by their records (each
    partition's learner anneals and re-heats on its own: partitions may differ)."""
    finite = [s for s in statuses if math.isfinite(s.temperature) and s.temperature > 0]
    if not finite:
        return 1.0
    return weighted_mean([s.temperature for s in finite], [s.samples_seen for s in finite])


def aggregate(
    statuses: Sequence[ActorStatus],
    *,
    model_id: str,
    num_categories: int,
    estimator: str,
    timestamp: float | None = None,
    backpressure: str = "learn_all",
    restarts: Mapping[int, int] | None = None,
    window_records: int = 0,
    shares: Mapping[int, float] | None = None,
    category_names: Sequence[str] | None = None,
) -> Estimate:
    """One ``Estimate`` from the actors' statuses: the mixture of their estimates, each
    weighted by its actor's share of the records (``shares``, actor index -> share; by default
    each actor's share of ``samples_seen``), and the summed counts.

    ``restarts`` (actor index → restarts seen by the driver) goes into each actor's metrics;
    ``category_names`` (the configured names, in id order) travel with the estimate.
    """
    k = num_categories
    counts = [0] * k
    offsets: dict[str, int] = {}
    by_reason: dict[str, int] = {}
    for status in statuses:
        for c, n in enumerate(status.baseline_counts):
            counts[c] += int(n)
        offsets.update(status.offsets)
        for reason, n in status.dead_letters_by_reason.items():
            by_reason[reason] = by_reason.get(reason, 0) + int(n)
    if shares is None:
        shares = {s.index: float(max(0, s.samples_seen)) for s in statuses}
    estimate = mixture({s.index: s.estimate for s in statuses}, shares, k)
    windows = [s.window_counts for s in statuses if len(s.window_counts) == k]
    window = [sum(col) for col in zip(*windows, strict=True)] if windows else None
    seen = sum(s.samples_seen for s in statuses)
    learned = sum(s.gan_learned for s in statuses)
    now = time.time() if timestamp is None else timestamp
    # A status republished from an actor that no longer answers keeps its own times, so a
    # hung actor makes the data stale (data_timestamp) and its status old, not fresh.
    data_times = [s.data_time for s in statuses if s.data_time > 0]
    status_times = [s.status_time for s in statuses if s.status_time > 0]
    return Estimate(
        model_id=model_id,
        timestamp=now,
        step=sum(s.steps for s in statuses),
        samples_seen=seen,
        dead_letters=sum(s.dead_letters for s in statuses),
        num_categories=k,
        probabilities=_normalized(estimate or [1.0] * k, k),
        baseline_probabilities=_normalized(counts, k),
        temperature=mean_temperature(statuses),
        generator_loss=_finite_mean([s.generator_loss for s in statuses], 0.0),
        discriminator_loss=_finite_mean([s.discriminator_loss for s in statuses], 0.0),
        estimator=estimator,
        actors=max(1, len(statuses)),
        offsets=dict(sorted(offsets.items(), key=lambda item: int(item[0]))),
        backpressure=backpressure,
        learned_fraction=min(1.0, learned / seen) if seen else 1.0,
        consumer_lag=sum(s.lag for s in statuses),
        # Each replica forgets over window_records / N of its values; their sum forgets
        # over about window_records records of the whole stream.
        window_baseline_probabilities=_normalized(window, k) if window is not None else None,
        window_records=window_records if window is not None else 0,
        drift_detections=sum(s.drift_detections for s in statuses),
        nodes=len({s.node_id for s in statuses if s.node_id}),
        data_timestamp=min(min(data_times), now) if data_times else None,
        max_actor_status_age_s=max([0.0, *(now - t for t in status_times)]),
        records_skipped=sum(s.records_skipped for s in statuses),
        dead_letters_by_reason=dict(sorted(by_reason.items())),
        dead_letters_truncated=sum(s.dead_letters_truncated for s in statuses),
        category_names=list(category_names) if category_names else None,
        actor_metrics=[  # one entry per index (the last status given), as the schema asks
            actor_metrics(s, (restarts or {}).get(i, 0))
            for i, s in sorted({s.index: s for s in statuses}.items()) if 0 <= i < MAX_ACTORS
        ],
    )


class Coordinator:
    """Talks to the trainer actors (Ray handles): averages, gathers statuses, publishes."""

    def __init__(
        self,
        actors: Sequence[Any],
        *,
        model_id: str,
        num_categories: int,
        estimator: str,
        publish: Any,
        call_timeout_s: float = 30.0,
        backpressure: str = "learn_all",
        window_records: int = 0,
        category_names: Sequence[str] | None = None,
    ) -> None:
        self.actors = list(actors)
        self.category_names = list(category_names) if category_names else None
        self.window_records = window_records
        self.backpressure = backpressure
        self.model_id = model_id
        self.num_categories = num_categories
        self.estimator = estimator
        self._publish = publish
        self.call_timeout_s = call_timeout_s
        self.last_status: dict[int, ActorStatus] = {}
        self.restarts: dict[int, int] = {}  # per actor: how often its process changed
        self.last_estimate: Estimate | None = None

    def _gather(self, method: str, *args: Any) -> dict[int, Any]:
        """Call ``method`` on every actor; the answers of those that answered in time."""
        refs = {i: getattr(a, method).remote(*args) for i, a in enumerate(self.actors)}
        answers: dict[int, Any] = {}
        for i, ref in refs.items():
            try:
                answers[i] = ray.get(ref, timeout=self.call_timeout_s)
            except _UNAVAILABLE as exc:
                log.warning("actor %d did not answer %s (restarting?): %s",
                            i, method, type(exc).__name__)
            except RayTaskError as exc:
                # A bug in one actor's method must not stop the loop that publishes for all:
                # skip its answer this round and say what it raised (without Ray's traceback).
                cause = getattr(exc, "cause", None) or exc
                log.error("actor %d raised in %s: %s: %s", i, method, type(cause).__name__,
                          cause)
        return answers

    def _remember(self, answers: dict[int, ActorStatus]) -> None:
        """Keep the newest status of each actor; a new pid means Ray restarted it."""
        for i, status in answers.items():
            previous = self.last_status.get(i)
            if previous is not None and previous.pid and status.pid != previous.pid:
                self.restarts[i] = self.restarts.get(i, 0) + 1
            self.last_status[i] = status

    def statuses(self) -> list[ActorStatus]:
        self._remember(self._gather("status"))
        return [self.last_status[i] for i in sorted(self.last_status)]

    def estimate(self, statuses: Sequence[ActorStatus] | None = None) -> Estimate:
        statuses = self.statuses() if statuses is None else statuses
        estimate = aggregate(
            statuses,
            model_id=self.model_id,
            num_categories=self.num_categories,
            estimator=self.estimator,
            backpressure=self.backpressure,
            restarts=self.restarts,
            window_records=self.window_records,
            category_names=self.category_names,
        )
        self.last_estimate = estimate
        return estimate

    def publish(self, statuses: Sequence[ActorStatus] | None = None) -> Estimate:
        estimate = self.estimate(statuses)
        self._publish(estimate)
        return estimate

    def stop(self) -> list[ActorStatus]:
        """Stop every actor (each writes a final checkpoint); their final statuses."""
        self._remember(self._gather("stop"))
        return [self.last_status[i] for i in sorted(self.last_status)]

    def errors(self) -> dict[int, str]:
        return {i: s.error for i, s in self.last_status.items() if s.error}

    def pids(self) -> dict[int, int]:
        return {i: s.pid for i, s in self.last_status.items()}

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Block until every actor answers ``status`` (restored, assigned, consuming)."""
        deadline = time.monotonic() + timeout_s
        refs = [a.status.remote() for a in self.actors]
        for i, ref in enumerate(refs):
            left = max(1.0, deadline - time.monotonic())
            self.last_status[i] = ray.get(ref, timeout=left)
