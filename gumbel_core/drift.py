"""``DriftDetector``: says when a categorical stream's distribution has changed, from counts.

Modelled on river's ``drift`` detectors: feed it one observation at a time with ``update``,
read ``drift_detected``; it knows nothing about any learner.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from gumbel_core._validation import check_num_categories

__all__ = ["DriftDetector"]


class DriftDetector:
    """Detect a change in the distribution of a categorical stream from per-step counts.

    Each :meth:`update` takes one step's ``(K,)`` category counts (a batch). The detector
    keeps two averages of the batches' frequencies since its last detection: a short one
    over about ``window`` steps and a long one over at most ``long_window`` steps. It fires
    when their L1 distance exceeds ``z`` times the sum over categories of the short average's
    binomial standard deviation, ``sqrt(p (1 - p) v)``, where ``v`` is the sum of the squared
    weights of the batches in the short average, each divided by its batch's size
    (``1 / (n (2 window - 1))`` for batches all of ``n``). Batches may differ in size (a
    streaming learner that falls behind takes larger steps): a large batch after small ones
    does not make the noise the small ones left look like a change. Each category's
    deviation alone has a standard deviation no larger than that term, so ``z = 5`` sits
    far out in the tail of what sampling noise produces: the stationary test (10 seeds x
    1,000,000 samples of each quality-table distribution) measures no detection at all.
    After a detection both averages restart with the next batch, and nothing fires again
    before ``2 * window`` steps.

    Parameters
    ----------
    num_categories
        ``K``.
    window
        Steps in the short average.
    z
        Threshold in standard deviations (see above).
    long_window
        At most this many steps in the long average (an exponential average beyond it).

    Examples
    --------
    >>> detector = DriftDetector(3)
    >>> gen = torch.Generator().manual_seed(0)
    >>> before, after = torch.tensor([0.2, 0.3, 0.5]), torch.tensor([0.5, 0.3, 0.2])
    >>> def counts(p):
    ...     return torch.bincount(torch.multinomial(p, 256, True, generator=gen), minlength=3)
    >>> any(detector.update(counts(before)) for _ in range(300))
    False
    >>> [detector.update(counts(after)) for _ in range(3)]  # fires on the third batch
    [False, False, True]
    >>> detector.detections
    1
    """

    def __init__(
        self,
        num_categories: int,
        window: int = 16,
        z: float = 5.0,
        long_window: int = 500,
    ) -> None:
        self.num_categories = check_num_categories(num_categories)
        for name, value in (("window", window), ("long_window", long_window)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if isinstance(z, bool) or not isinstance(z, (int, float)) or not z > 0:
            raise ValueError(f"z must be a number > 0, got {z!r}")
        self.window = window
        self.z = float(z)
        self.long_window = long_window
        self._recent = torch.zeros(num_categories, dtype=torch.float64)  # (K,) short average
        self._long = torch.zeros(num_categories, dtype=torch.float64)  # (K,) long average
        # sum of (weight^2 / batch size) over the batches in the short average: its variance
        # is p (1 - p) times this
        self._recent_var = 0.0
        self._since = 0  # steps since the start or the last detection
        self.detections = 0
        self.drift_detected = False
        self.statistic = 0.0  # the last L1 distance over its threshold (>= 1 means drift)

    def update(self, counts: torch.Tensor) -> bool:
        """Add one step's ``(K,)`` non-negative counts; return whether a drift was detected."""
        if not isinstance(counts, torch.Tensor) or counts.shape != (self.num_categories,):
            shape = tuple(counts.shape) if isinstance(counts, torch.Tensor) else type(counts)
            raise ValueError(
                f"counts must be a tensor of shape ({self.num_categories},), got {shape}"
            )
        counts = counts.detach()
        if counts.dtype != torch.float64 or counts.device.type != "cpu":
            counts = counts.to("cpu", torch.float64)
        batch = float(counts.sum())
        if not (math.isfinite(batch) and batch > 0) or float(counts.min()) < 0:
            raise ValueError(
                f"counts must be finite, non-negative and not all 0, got {counts.tolist()}"
            )
        self.drift_detected = False
        self._since += 1
        short = min(float(self.window), float(self._since))
        self._recent.mul_(1.0 - 1.0 / short).add_(counts, alpha=1.0 / (short * batch))
        self._recent_var = (1.0 - 1.0 / short) ** 2 * self._recent_var + 1.0 / (short**2 * batch)
        long = min(float(self.long_window), float(self._since))
        self._long.mul_(1.0 - 1.0 / long).add_(counts, alpha=1.0 / (long * batch))
        if self._since < 2 * self.window:
            self.statistic = 0.0
            return False
        distance = float((self._recent - self._long).abs_().sum())
        p = (self._recent + self._long).mul_(0.5)  # (K,)
        spread = float(p.sub_(p * p).sqrt_().sum())  # sum of sqrt(p (1 - p))
        threshold = self.z * spread * math.sqrt(self._recent_var)
        self.statistic = distance / threshold if threshold > 0 else 0.0
        if distance > threshold:
            self.drift_detected = True
            self.detections += 1
            self._since = 0  # both averages restart with the next batch
        return self.drift_detected

    def state_dict(self) -> dict[str, Any]:
        return {
            "num_categories": self.num_categories,
            "window": self.window,
            "z": self.z,
            "long_window": self.long_window,
            "recent": self._recent.clone(),
            "long": self._long.clone(),
            "since": self._since,
            "recent_var": self._recent_var,
            "detections": self.detections,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["num_categories"]) != self.num_categories:
            raise ValueError(
                f"state is for {state['num_categories']} categories, not {self.num_categories}"
            )
        self._recent = state["recent"].to("cpu", torch.float64).clone()
        self._long = state["long"].to("cpu", torch.float64).clone()
        self._since = int(state["since"])
        # older states lack it: the value for batches of 256 (the quality table's)
        self._recent_var = float(state.get(
            "recent_var", 1.0 / (256 * (2 * min(self.window, max(self._since, 1)) - 1))))
        self.detections = int(state["detections"])
        self.drift_detected = False
        self.statistic = 0.0

    def __repr__(self) -> str:
        return (
            f"DriftDetector(num_categories={self.num_categories}, window={self.window}, "
            f"z={self.z}, long_window={self.long_window})"
        )
