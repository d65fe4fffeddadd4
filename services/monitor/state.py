"""The latest valid Estimate per model, and whether the newest one is fresh enough."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pydantic import ValidationError

from services.common.schemas import DEAD_LETTER_REASONS, MAX_CATEGORIES, ActorMetrics, Estimate
from services.monitor.categories import Ranking, rank

__all__ = ["ActorCounters", "Counters", "Health", "Latest", "LatestEstimates",
           "dead_letter_labels", "reason_label", "total_variation", "tv_baseline"]

log = logging.getLogger(__name__)

# A malformed message is logged with at most this much of its value.
_SHOWN_BYTES = 200


def total_variation(p: list[float], q: list[float]) -> float:
    return 0.5 * sum(abs(a - b) for a, b in zip(p, q, strict=True))


def tv_baseline(estimate: Estimate) -> float:
    """``gumbel_total_variation``: against the recent counts when the trainer sends them (a
    count over all history never forgets, so a learner that follows a drift would look wrong
    for good), else against the all-history baseline."""
    window = estimate.window_baseline_probabilities
    return total_variation(estimate.probabilities,
                           window if window is not None else estimate.baseline_probabilities)


@dataclass(frozen=True)
class Health:
    ok: bool
    reason: str


def reason_label(reason: str) -> str:
    """A dead-letter reason as a label value: one of ``DEAD_LETTER_REASONS`` or ``other``.

    The trainer may grow new reasons; summing them under ``other`` keeps the label set
    bounded whatever arrives on the topic.
    """
    return reason if reason in DEAD_LETTER_REASONS else "other"


def _by_reason_label(by_reason: Mapping[str, int]) -> dict[str, int]:
    labelled: dict[str, int] = {}
    for reason, count in by_reason.items():
        label = reason_label(reason)
        labelled[label] = labelled.get(label, 0) + count
    return labelled


def _increase(last: int, now: int) -> int:
    """What a count that restarts from 0 with its process grew by since ``last``."""
    return now - last if now >= last else now


@dataclass(frozen=True)
class ActorCounters:
    """One actor's counters as the monitor exports them: never falling, never counting twice.

    ``dead_letters`` is restored with the actor's checkpoint and counted again as the records
    are relearned, so it is a high-water mark like ``Counters``. ``checkpoint_failures`` (the
    actor's process) and ``restarts`` (the trainer's driver) start again from 0 with their
    process and every later one is a new event: a fall is a reset, and the total goes on from
    the count before it. ``seen_*`` are the values of the latest estimate, to tell the reset.
    """

    dead_letters: int = 0
    checkpoint_failures: int = 0
    restarts: int = 0
    seen_checkpoint_failures: int = 0
    seen_restarts: int = 0

    def raised_to(self, metrics: ActorMetrics) -> ActorCounters:
        failures = metrics.checkpoint_failures
        if metrics.restarts == self.seen_restarts:
            failures = _increase(self.seen_checkpoint_failures, failures)
        # else a new actor process: all of its failures are new, even if more than before
        return ActorCounters(
            dead_letters=max(self.dead_letters, metrics.dead_letters),
            checkpoint_failures=self.checkpoint_failures + failures,
            restarts=self.restarts + _increase(self.seen_restarts, metrics.restarts),
            seen_checkpoint_failures=metrics.checkpoint_failures,
            seen_restarts=metrics.restarts,
        )


@dataclass(frozen=True)
class Counters:
    """High-water marks of one model's counters: what the monitor exports as ``*_total``.

    An estimate's counts go back whenever the trainer is restored from a checkpoint: the
    records learned after that checkpoint are learned again. Those are not new records, so a
    Prometheus counter fed from them must not fall (``rate()`` would read the fall as a reset
    and count everything again). The monitor exports the largest count seen per model; a
    restart of the monitor itself starts from the next estimate, a genuine counter reset that
    Prometheus handles.
    """

    samples_learned: int = 0
    dead_letters: int = 0
    records_skipped: int = 0
    dead_letters_truncated: int = 0
    drift_detections: int = 0
    dead_letters_by_reason: Mapping[str, int] = field(default_factory=dict)
    # the most dead letters an estimate counted beyond its reasons (a trainer that sends none)
    dead_letters_unattributed: int = 0
    # Per actor index (fewer than MAX_ACTORS): kept when an actor leaves an estimate, so
    # its counters do not restart if it comes back.
    actors: Mapping[int, ActorCounters] = field(default_factory=dict)

    def raised_to(self, estimate: Estimate) -> Counters:
        """These marks, raised to the estimate's counts where it has more."""
        by_reason = dict(self.dead_letters_by_reason)
        for label, count in _by_reason_label(estimate.dead_letters_by_reason).items():
            by_reason[label] = max(by_reason.get(label, 0), count)
        actors = dict(self.actors)
        for metrics in estimate.actor_metrics:
            actors[metrics.index] = actors.get(metrics.index, ActorCounters()).raised_to(metrics)
        return Counters(
            samples_learned=max(self.samples_learned, estimate.samples_seen),
            dead_letters=max(self.dead_letters, estimate.dead_letters),
            records_skipped=max(self.records_skipped, estimate.records_skipped),
            drift_detections=max(self.drift_detections, estimate.drift_detections),
            dead_letters_truncated=max(self.dead_letters_truncated,
                                       estimate.dead_letters_truncated),
            dead_letters_by_reason=dict(sorted(by_reason.items())),
            dead_letters_unattributed=max(
                self.dead_letters_unattributed,
                estimate.dead_letters - sum(estimate.dead_letters_by_reason.values())),
            actors=actors,
        )


def dead_letter_labels(counters: Counters) -> dict[str, int]:
    """``gumbel_dead_letters_total`` by its ``reason`` label: every known reason (0 until one
    comes) and ``other``, which also holds the dead letters a trainer sent no reason for.

    Each value is a high-water mark or a sum of them, so none falls; the sum is at least
    ``counters.dead_letters`` (equal when every estimate's reasons add up to its count, as
    the trainer's do).
    """
    labels = dict.fromkeys((*DEAD_LETTER_REASONS, "other"), 0)
    labels.update(counters.dead_letters_by_reason)
    labels["other"] += counters.dead_letters_unattributed
    return labels


@dataclass(frozen=True)
class Latest:
    """The newest estimate of one model, its counters, when the monitor last heard of it, and
    what takes O(K) to compute from it (once on arrival, not at every request): its largest
    categories, its total variation to the baseline, and its JSON for ``/estimate(s)``."""

    estimate: Estimate
    counters: Counters
    heard_at: float  # the monitor's clock, so a trainer's wrong clock cannot keep it alive
    ranking: Ranking
    tv_baseline: float
    json: bytes


class LatestEstimates:
    """Keeps the newest Estimate of each model (of ``model_id`` only, when one is given).

    The metrics show every model kept, each under its ``model_id`` label; ``current`` is the
    most recently received estimate (``/healthz`` and the live page's default). Malformed
    messages are counted and logged, never raised, and so are valid ones the monitor cannot
    show: more than ``max_categories`` categories, a timestamp more than ``max_clock_skew_s``
    in the monitor's future (it would look fresh for that long), or a new model while
    ``max_models`` are kept. A model not heard of for ``forget_after_s`` is forgotten. Those
    bounds keep memory bounded whatever arrives on the topic; ``max_series_per_model`` (and
    the collector's total budget) keep the scrape bounded (``services.monitor.categories``).
    Fields a newer trainer added are ignored, not counted invalid. Safe across threads: the
    consumer offers, the HTTP handlers read.
    """

    def __init__(
        self,
        model_id: str | None = None,
        stale_after_s: float = 60.0,
        clock: Callable[[], float] = time.time,
        *,
        max_clock_skew_s: float = 300.0,
        forget_after_s: float = 3600.0,
        max_categories: int = MAX_CATEGORIES,
        max_models: int = 100,
        max_series_per_model: int = 200,
    ) -> None:
        self.model_id = model_id
        self.max_models = max_models
        self.max_series_per_model = max_series_per_model
        self.stale_after_s = stale_after_s
        self.max_clock_skew_s = max_clock_skew_s
        self.forget_after_s = forget_after_s
        self.max_categories = max_categories
        self._clock = clock
        self._lock = threading.Lock()
        self._models: dict[str, Latest] = {}
        self._current: str | None = None  # model id of the most recently received estimate
        self.received = 0  # valid estimates of the followed model(s)
        self.invalid = 0  # messages that are not a valid Estimate, or that cannot be shown
        self.ignored = 0  # valid estimates of another model than model_id

    def latest(self, model_id: str | None = None) -> Latest | None:
        """The newest of ``model_id`` (default: the current model), unless it was forgotten."""
        with self._lock:
            self._forget_silent(self._clock())
            key = model_id if model_id is not None else self._current
            return None if key is None else self._models.get(key)

    @property
    def current(self) -> Estimate | None:
        latest = self.latest()
        return None if latest is None else latest.estimate

    def by_model(self) -> dict[str, Estimate]:
        return {model_id: kept.estimate for model_id, kept in self.models().items()}

    def models(self) -> dict[str, Latest]:
        """Every model kept, by model id (sorted), the forgotten ones dropped first."""
        with self._lock:
            self._forget_silent(self._clock())
            return dict(sorted(self._models.items()))

    def offer(self, value: bytes | None, where: str = "") -> Estimate | None:
        """Parse one message value; keep it if valid and followed. Returns the Estimate kept."""
        try:
            estimate = Estimate.from_bytes(value or b"", ignore_unknown=True)
        except (ValidationError, ValueError, UnicodeDecodeError) as exc:
            first_error = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            self._reject(first_error, value, where)
            return None
        now = self._clock()
        problem = self._cannot_show(estimate, now)
        if problem is not None:
            self._reject(problem, value, where)
            return None
        if self.model_id is not None and estimate.model_id != self.model_id:
            with self._lock:
                self.ignored += 1
            return None
        ranking = rank(estimate, self.max_series_per_model)  # outside the lock: O(K)
        tv = tv_baseline(estimate)
        encoded = estimate.to_bytes()
        with self._lock:
            self._forget_silent(now)
            previous = self._models.get(estimate.model_id)
            full = previous is None and len(self._models) >= self.max_models
            if not full:
                counters = previous.counters if previous is not None else Counters()
                self._models[estimate.model_id] = Latest(estimate, counters.raised_to(estimate),
                                                         now, ranking, tv, encoded)
                self._current = estimate.model_id
                self.received += 1
        if full:
            self._reject(f"model {estimate.model_id!r} would be one more than max_models="
                         f"{self.max_models} (one is forgotten after forget_after_s="
                         f"{self.forget_after_s:g} of silence)", value, where)
            return None
        return estimate

    def _cannot_show(self, estimate: Estimate, now: float) -> str | None:
        """Why a valid estimate is still counted invalid here, or None when it can be shown."""
        if estimate.num_categories > self.max_categories:
            return (f"{estimate.num_categories} categories, more than "
                    f"max_categories={self.max_categories}")
        for name in ("timestamp", "data_timestamp"):
            at = getattr(estimate, name)
            if at is not None and at - now > self.max_clock_skew_s:
                return (f"{name} {at:.3f} is {at - now:.0f}s in the future, more than "
                        f"max_clock_skew_s={self.max_clock_skew_s:g}")
        return None

    def _reject(self, problem: str, value: bytes | None, where: str) -> None:
        with self._lock:
            self.invalid += 1
        log.warning("invalid estimate%s: %s; value %r", f" at {where}" if where else "",
                    problem, (value or b"")[:_SHOWN_BYTES])

    def _forget_silent(self, now: float) -> None:
        """Drop the models not heard of for ``forget_after_s`` (call with the lock held)."""
        silent = [m for m, kept in self._models.items()
                  if now - kept.heard_at > self.forget_after_s]
        for model_id in silent:
            del self._models[model_id]
            log.info("forgot model %r: no estimate for more than forget_after_s=%g",
                     model_id, self.forget_after_s)
        if self._current not in self._models:
            self._current = None

    def health(self) -> Health:
        """OK once an estimate arrived whose data is at most ``stale_after_s`` old.

        The data's age comes from ``data_timestamp`` when the trainer sends one: the trainer
        republishes its last state with a fresh ``timestamp`` even while its actors are hung,
        so only the time up to which every actor had learned tells whether learning goes on.
        """
        latest = self.latest()
        if latest is None:
            which = f" of model {self.model_id!r}" if self.model_id else ""
            return Health(False, f"no estimate{which} received yet")
        estimate = latest.estimate
        basis = "timestamp" if estimate.data_timestamp is None else "data_timestamp"
        age = self._clock() - getattr(estimate, basis)
        if age > self.stale_after_s:
            return Health(
                False,
                f"latest estimate (model {estimate.model_id!r}, step {estimate.step}) is "
                f"{age:.1f}s old ({basis}), more than stale_after_s={self.stale_after_s:g}",
            )
        return Health(True, f"ok: model {estimate.model_id!r}, step {estimate.step}, "
                            f"{age:.1f}s old ({basis})")
