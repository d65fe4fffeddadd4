"""A synthetic twin of a learned stream: category ids drawn from a model's newest estimate.

``gumbel-stream producer --from-model MODEL_ID`` follows that model's Estimates on the
estimates topic and draws each chunk with the Gumbel-max trick (``gumbel_core.gumbel_max``)
from the newest one's ``probabilities``: a stream with the production stream's shape, at any
rate, that never reads a record of it. ``TwinStream`` has ``CategoryStream``'s interface, so
the producer's loop, formats and metrics are the same; each new estimate is a "drift" to it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch
from pydantic import ValidationError

from gumbel_core import gumbel_max
from services.common.estimates_follower import EstimateFollower
from services.common.schemas import Estimate

__all__ = ["NewestEstimate", "TwinStream", "POLL_INTERVAL_S", "wait_for_first"]

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.5  # how often the producer's loop looks for a newer estimate


class NewestEstimate:
    """The newest valid Estimate of one model (an ``EstimateSink``). Older ones (the
    follower's look-back re-reads the last messages), other models' and ones whose number of
    categories differs from the first are passed over; invalid messages are counted."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self.estimate: Estimate | None = None
        self.invalid = 0
        self.other_k = 0

    def offer(self, value: bytes | None, where: str = "") -> Estimate | None:
        try:
            estimate = Estimate.from_bytes(value or b"", ignore_unknown=True)
        except (ValidationError, ValueError, UnicodeDecodeError) as exc:
            self.invalid += 1
            if self.invalid == 1:
                log.warning("an invalid message on the estimates topic (%s) is passed over: %s",
                            where, str(exc).splitlines()[0])
            return None
        if estimate.model_id != self.model_id:
            return None
        current = self.estimate
        if current is not None:
            if (estimate.timestamp, estimate.step) <= (current.timestamp, current.step):
                return None
            if estimate.num_categories != current.num_categories:
                self.other_k += 1
                if self.other_k == 1:
                    log.error("model %r now has %d categories, the twin %d: it keeps drawing "
                              "from the last estimate with %d (restart it to follow the new "
                              "model)", self.model_id, estimate.num_categories,
                              current.num_categories, current.num_categories)
                return None
        self.estimate = estimate
        return estimate


class TwinStream:
    """``CategoryStream``'s interface (``probabilities``, ``switches``, ``produced``,
    ``next_chunk``), drawing from the newest estimate ``newest`` holds; ``next_chunk`` polls
    ``follower`` for a newer one at most every ``poll_interval_s``."""

    def __init__(self, follower: EstimateFollower, newest: NewestEstimate, seed: int = 0,
                 poll_interval_s: float = POLL_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if newest.estimate is None:
            raise ValueError("a twin starts from an estimate: wait_for_first() first")
        self._follower, self._newest = follower, newest
        self._generator = torch.Generator().manual_seed(seed)
        self._poll_interval_s, self._clock = poll_interval_s, clock
        self._last_poll = clock()
        self._following: Estimate = newest.estimate
        self._logits = self._logits_of(newest.estimate)
        self.produced = 0
        self.switches = 0  # newer estimates followed so far

    @staticmethod
    def _logits_of(estimate: Estimate) -> torch.Tensor:
        # log(0) = -inf: a category the model gives no mass is never drawn.
        return torch.tensor(estimate.probabilities, dtype=torch.float64).log()

    @property
    def probabilities(self) -> list[float]:
        return list(self._following.probabilities)

    @property
    def following(self) -> Estimate:
        return self._following

    def _refresh(self) -> None:
        now = self._clock()
        if now - self._last_poll < self._poll_interval_s:
            return
        self._last_poll = now
        self._follower.poll_once(timeout_ms=0)
        newest = self._newest.estimate
        if newest is not None and newest is not self._following:
            self._following, self._logits = newest, self._logits_of(newest)
            self.switches += 1

    def next_chunk(self, size: int, elapsed_s: float = 0.0) -> list[int]:
        """``size`` ids from the newest estimate (``elapsed_s``: the interface's; unused)."""
        if size < 1:
            raise ValueError(f"chunk size must be >= 1, got {size}")
        self._refresh()
        ids = gumbel_max(self._logits, size, generator=self._generator)
        self.produced += size
        return ids.tolist()


def wait_for_first(follower: EstimateFollower, newest: NewestEstimate,
                   stop: Callable[[], bool], topic: str,
                   clock: Callable[[], float] = time.monotonic,
                   every_s: float = 10.0) -> Estimate | None:
    """Poll until the model's first estimate (None: stopped first), saying so every
    ``every_s``: a twin started before its model has published waits for it."""
    started = last_said = clock()
    while newest.estimate is None and not stop():
        follower.poll_once(timeout_ms=500)
        if newest.estimate is None and clock() - last_said >= every_s:
            last_said = clock()
            log.info("waiting for the first estimate of model %r on %s (%.0fs so far)",
                     newest.model_id, topic, last_said - started)
    return newest.estimate
