"""A histogram of durations that the learner fills and the Estimate carries to Prometheus.

Counts are cumulative since the process started: the monitor, another process, exposes them
as a Prometheus histogram, and Prometheus takes ``rate()`` of its buckets (a restart, back to
0, is a counter reset that ``rate()`` handles).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import torch

from services.common.schemas import HISTOGRAM_MAX_BUCKETS, Histogram

__all__ = [
    "FINE_EVERY", "FINE_LATENCY_BUCKETS_S", "LATENCY_BUCKETS_S", "STEP_BUCKETS_S",
    "SecondsHistogram",
]

# Prometheus's buckets: 10^(1/4) (1.78x) apart, so histogram_quantile's linear guess inside a
# bucket is off by at most that factor; 22 series per histogram.
LATENCY_BUCKETS_S = tuple(0.001 * 10 ** (i / 4) for i in range(21))  # 1 ms to 100 s
STEP_BUCKETS_S = tuple(0.0001 * 10 ** (i / 4) for i in range(21))  # 100 us to 10 s
# The learner's own record-to-step buckets, 12% apart, for the latency bench's quantiles: every
# FINE_EVERY-th from the first is one of LATENCY_BUCKETS_S, so one histogram serves both.
FINE_EVERY = 5
FINE_LATENCY_BUCKETS_S = tuple(0.001 * 10 ** (i / (4 * FINE_EVERY))
                               for i in range(20 * FINE_EVERY + 1))


class SecondsHistogram:
    """Observations of seconds per bucket (``bounds[i-1] < x <= bounds[i]``, then the rest).

    Examples
    --------
    >>> h = SecondsHistogram([0.1, 1.0])
    >>> h.observe(torch.tensor([0.05, 0.5, 0.5, 3.0], dtype=torch.float64))
    >>> h.to_schema().counts, h.to_schema().sum
    ([1, 3, 4], 4.05)
    """

    def __init__(self, bounds: Sequence[float]) -> None:
        if not bounds or any(b <= a for a, b in pairwise(bounds)) or bounds[0] <= 0 \
                or not math.isfinite(bounds[-1]):
            raise ValueError(f"bounds must be finite, positive and increasing: {list(bounds)}")
        self.bounds = tuple(float(b) for b in bounds)
        self._edges = torch.tensor(self.bounds, dtype=torch.float64)
        self.per_bucket = torch.zeros(len(self.bounds) + 1, dtype=torch.float64)  # (+Inf last)
        self.sum = 0.0

    def observe(self, seconds: torch.Tensor, weights: torch.Tensor | None = None) -> None:
        """Count each of ``seconds`` (n,) ``weights`` (n,) times (once without); a negative
        duration (clocks of two machines) counts as 0."""
        seconds = torch.clamp(seconds.to(torch.float64), min=0.0)
        weights = torch.ones_like(seconds) if weights is None else weights.to(torch.float64)
        self.per_bucket.index_add_(0, torch.bucketize(seconds, self._edges), weights)
        self.sum += float((seconds * weights).sum())

    def to_schema(self, every: int = 1) -> Histogram:
        """The cumulative counts at every ``every``-th bound from the first (and +Inf), as
        the Estimate carries them."""
        cumulative = torch.cumsum(self.per_bucket, 0)
        keep = list(range(0, len(self.bounds), every))
        if len(keep) + 1 > HISTOGRAM_MAX_BUCKETS:
            raise ValueError(f"{len(keep) + 1} buckets, more than {HISTOGRAM_MAX_BUCKETS}")
        counts = [int(round(float(cumulative[i]))) for i in (*keep, len(self.bounds))]
        return Histogram(bounds=[self.bounds[i] for i in keep], counts=counts,
                         sum=self.sum)
