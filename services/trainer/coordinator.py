"""The driver's side of training: gather the learner's and the ingest actors' statuses, build
and publish the ``Estimate``.

``probabilities`` is the one learner's GAN estimate: one model of the whole stream, no
mixture. Counts (the baseline, samples, dead letters) are the learner's, exact with its
offsets; the ingest actors add what only they know: their rates, the log's high watermarks
(the lag is a high watermark less the learner's offset), and dead letters the topic refused.
An actor that does not answer (restarting) is skipped for the round; its last status is used.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from services.common.schemas import MAX_ACTORS, MAX_COUNT, MAX_PARTITIONS, ActorMetrics, Estimate
from services.trainer.status import IngestStatus, LearnerStatus

__all__ = ["UNAVAILABLE", "actor_metrics", "aggregate", "lag_by_partition", "Coordinator"]

log = logging.getLogger(__name__)

UNAVAILABLE: tuple[type[BaseException], ...] = (RayActorError, GetTimeoutError)
try:  # Ray >= 2.30: an actor that is restarting raises ActorUnavailableError
    from ray.exceptions import ActorUnavailableError

    UNAVAILABLE = (*UNAVAILABLE, ActorUnavailableError)
except ImportError:  # pragma: no cover
    pass


def _normalized(values: Sequence[float], k: int) -> list[float]:
    total = float(sum(values))
    if total <= 0 or not math.isfinite(total):
        return [1.0 / k] * k
    return [float(v) / total for v in values]


def _finite(value: float, default: float = 0.0) -> float:
    return float(value) if value is not None and math.isfinite(value) else default


def _finite_non_negative(value: float) -> float:
    """A rate, duration or time fit for the Estimate: finite and not negative, else 0."""
    return float(value) if math.isfinite(value) and value > 0 else 0.0


def _count(value: int) -> int:
    return min(max(0, int(value)), MAX_COUNT)


def lag_by_partition(learner: LearnerStatus, ingest: Sequence[IngestStatus]) -> dict[int, int]:
    """Records on each partition the model has not learned: the high watermark of the last
    fetch less the learner's next offset (partitions fetched at least once)."""
    lags: dict[int, int] = {}
    for status in ingest:
        for p, high in status.highwaters.items():
            learned = learner.offsets.get(p, status.positions.get(p, high))
            lags[int(p)] = max(0, int(high) - int(learned))
    return lags


def actor_metrics(status: IngestStatus, learner: LearnerStatus, lags: Mapping[int, int],
                  restarts: int = 0) -> ActorMetrics:
    """What an operator sees of one ingest actor (and the learner it feeds), clamped into the
    schema's bounds: a status is the actor's own report, and a NaN or negative value there
    must not stop the estimate from being published."""
    mine = sorted((p, n) for p, n in lags.items() if p in status.partitions)
    seen = learner.samples_seen
    return ActorMetrics(
        index=status.index,
        records_per_s=_finite_non_negative(status.records_per_s),
        step_seconds=_finite_non_negative(learner.step_seconds),
        poll_to_learn_seconds=_finite_non_negative(learner.record_to_step_seconds),
        queue_depth=_count(status.held_blocks),
        lag=_count(sum(n for _, n in mine)),
        lag_by_partition={str(p): _count(n) for p, n in mine[:MAX_PARTITIONS]},
        checkpoint_time=_finite_non_negative(learner.checkpoint_time) or None,
        checkpoint_seconds=_finite_non_negative(learner.checkpoint_seconds),
        checkpoint_failures=_count(learner.checkpoint_failures),
        restarts=_count(restarts),
        dead_letters=_count(status.dead_letters),
        learned_fraction=min(1.0, max(0.0, learner.gan_learned / seen)) if seen > 0 else 1.0,
        records_read=_count(status.records_read),
    )


def aggregate(
    learner: LearnerStatus,
    ingest: Sequence[IngestStatus],
    *,
    model_id: str,
    num_categories: int,
    estimator: str,
    timestamp: float | None = None,
    backpressure: str = "learn_all",
    restarts: Mapping[int, int] | None = None,
    window_records: int = 0,
    category_names: Sequence[str] | None = None,
) -> Estimate:
    """One ``Estimate`` from the learner's status and the ingest actors'.

    ``restarts`` (ingest actor index → restarts seen by the driver) goes into each actor's
    metrics; ``category_names`` (the configured names, in id order) travel with the estimate.
    """
    k = num_categories
    now = time.time() if timestamp is None else timestamp
    lags = lag_by_partition(learner, ingest)
    seen = learner.samples_seen
    window = list(learner.window_counts) if len(learner.window_counts) == k else None
    status_times = [s.status_time for s in (learner, *ingest) if s.status_time > 0]
    temperature = learner.temperature if math.isfinite(learner.temperature) \
        and learner.temperature > 0 else 1.0
    return Estimate(
        model_id=model_id,
        timestamp=now,
        step=learner.steps,
        samples_seen=seen,
        dead_letters=learner.dead_letters,
        num_categories=k,
        probabilities=_normalized(learner.estimate or [1.0] * k, k),
        baseline_probabilities=_normalized(learner.baseline_counts or [0] * k, k),
        temperature=temperature,
        generator_loss=_finite(learner.generator_loss),
        discriminator_loss=_finite(learner.discriminator_loss),
        estimator=estimator,
        actors=max(1, len(ingest)),
        offsets=dict(sorted(learner.offsets.items(), key=lambda item: int(item[0]))),
        values_by_partition=dict(sorted(learner.values_by_partition.items(),
                                        key=lambda item: int(item[0]))[:MAX_PARTITIONS]),
        backpressure=backpressure,
        learned_fraction=min(1.0, learner.gan_learned / seen) if seen else 1.0,
        consumer_lag=_count(sum(lags.values())),
        window_baseline_probabilities=_normalized(window, k) if window is not None else None,
        window_records=window_records if window is not None else 0,
        drift_detections=learner.drift_detections,
        nodes=len({s.node_id for s in (learner, *ingest) if s.node_id}),
        data_timestamp=min(learner.data_time, now) if learner.data_time > 0 else None,
        max_actor_status_age_s=max([0.0, *(now - t for t in status_times)]),
        records_skipped=learner.records_skipped,
        dead_letters_by_reason=dict(sorted(learner.dead_letters_by_reason.items())),
        dead_letters_truncated=sum(s.dead_letters_truncated for s in ingest),
        category_names=list(category_names) if category_names else None,
        step_duration=learner.step_duration,
        record_to_step=learner.record_to_step,
        poll_to_step=learner.poll_to_step,
        actor_metrics=[  # one entry per index (the last status given), as the schema asks
            actor_metrics(s, learner, lags, (restarts or {}).get(i, 0))
            for i, s in sorted({s.index: s for s in ingest}.items()) if 0 <= i < MAX_ACTORS
        ],
    )


class Coordinator:
    """Talks to the learner and the ingest actors (Ray handles): gathers, publishes, stops."""

    def __init__(
        self,
        learner: Any,
        ingest: Sequence[Any],
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
        self.learner = learner
        self.ingest = list(ingest)
        self.category_names = list(category_names) if category_names else None
        self.window_records = window_records
        self.backpressure = backpressure
        self.model_id = model_id
        self.num_categories = num_categories
        self.estimator = estimator
        self._publish = publish
        self.call_timeout_s = call_timeout_s
        self.last_learner = LearnerStatus()
        self.last_ingest: dict[int, IngestStatus] = {}
        self.restarts: dict[int, int] = {}  # per ingest actor: how often its process changed
        self.learner_restarts = 0
        self.last_estimate: Estimate | None = None

    def _get(self, ref: Any, what: str, actor: str) -> Any:
        """``ref``'s answer, or None when ``actor`` (its log field) did not give one."""
        fields = {"actor": actor}
        try:
            return ray.get(ref, timeout=self.call_timeout_s)
        except UNAVAILABLE as exc:
            log.warning("%s did not answer (restarting?): %s", what, type(exc).__name__,
                        extra=fields)
        except RayTaskError as exc:
            # A bug in one actor's method must not stop the loop that publishes for all:
            # skip its answer this round and say what it raised (without Ray's traceback).
            cause = getattr(exc, "cause", None) or exc
            log.error("%s raised: %s: %s", what, type(cause).__name__, cause, extra=fields)
        return None

    def _gather(self, method: str, *args: Any) -> dict[int, Any]:
        refs = {i: getattr(a, method).remote(*args) for i, a in enumerate(self.ingest)}
        answers = {i: self._get(ref, f"ingest actor {i} ({method})", f"ingest-{i}")
                   for i, ref in refs.items()}
        return {i: a for i, a in answers.items() if a is not None}

    def _remember(self, learner: LearnerStatus | None, ingest: dict[int, IngestStatus]) -> None:
        """Keep the newest status of each actor; a new pid means Ray restarted it."""
        if learner is not None:
            if self.last_learner.pid and learner.pid != self.last_learner.pid:
                self.learner_restarts += 1
            self.last_learner = learner
        for i, status in ingest.items():
            previous = self.last_ingest.get(i)
            if previous is not None and previous.pid and status.pid != previous.pid:
                self.restarts[i] = self.restarts.get(i, 0) + 1
            self.last_ingest[i] = status

    def statuses(self) -> tuple[LearnerStatus, list[IngestStatus]]:
        learner_ref = self.learner.status.remote()
        ingest = self._gather("status")
        self._remember(self._get(learner_ref, "the learner (status)", "learner"), ingest)
        return self.last_learner, [self.last_ingest[i] for i in sorted(self.last_ingest)]

    def estimate(self, statuses: tuple[LearnerStatus, list[IngestStatus]] | None = None
                 ) -> Estimate:
        learner, ingest = self.statuses() if statuses is None else statuses
        estimate = aggregate(
            learner, ingest, model_id=self.model_id, num_categories=self.num_categories,
            estimator=self.estimator, backpressure=self.backpressure, restarts=self.restarts,
            window_records=self.window_records, category_names=self.category_names,
        )
        self.last_estimate = estimate
        return estimate

    def publish(self, statuses: tuple[LearnerStatus, list[IngestStatus]] | None = None
                ) -> Estimate:
        estimate = self.estimate(statuses)
        self._publish(estimate)
        return estimate

    def stop(self) -> tuple[LearnerStatus, list[IngestStatus]]:
        """Pause the ingest actors, let the learner learn what it holds and write its final
        checkpoint, then have the ingest actors commit its offsets and close."""
        self._remember(None, self._gather("pause"))
        final = self._get(self.learner.stop.remote(), "the learner (stop)", "learner")
        self._remember(final, {})
        committed = {int(p): o for p, o in self.last_learner.offsets.items()} if final else None
        self._remember(None, self._gather("stop", committed))
        return self.last_learner, [self.last_ingest[i] for i in sorted(self.last_ingest)]

    def errors(self) -> dict[str, str]:
        errors = {f"ingest actor {i}": s.error for i, s in self.last_ingest.items() if s.error}
        if self.last_learner.error:
            errors["the learner"] = self.last_learner.error
        return errors

    def pids(self) -> dict[str, int]:
        pids = {f"ingest-{i}": s.pid for i, s in self.last_ingest.items()}
        if self.last_learner.pid:
            pids["learner"] = self.last_learner.pid
        return pids

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Block until the learner and every ingest actor answer ``status`` (restored,
        claimed, polling)."""
        deadline = time.monotonic() + timeout_s
        self.last_learner = ray.get(self.learner.status.remote(),
                                    timeout=max(1.0, deadline - time.monotonic()))
        refs = [a.status.remote() for a in self.ingest]
        for i, ref in enumerate(refs):
            self.last_ingest[i] = ray.get(ref, timeout=max(1.0, deadline - time.monotonic()))
