"""SecondsHistogram: the learner's latencies, cumulative, in the Estimate's Histogram form."""

from __future__ import annotations

import pytest
import torch

from services.trainer.histogram import (
    FINE_EVERY,
    FINE_LATENCY_BUCKETS_S,
    LATENCY_BUCKETS_S,
    SecondsHistogram,
)


@pytest.mark.parametrize("bounds", [[], [0.0, 1.0], [1.0, 0.5], [0.1, float("inf")]])
def test_bounds_must_be_finite_positive_and_increasing(bounds: list[float]) -> None:
    with pytest.raises(ValueError, match="bounds must be"):
        SecondsHistogram(bounds)


def test_weights_count_each_duration_that_many_times_and_negatives_count_as_zero() -> None:
    h = SecondsHistogram([0.1, 1.0])
    h.observe(torch.tensor([-2.0, 0.5, 7.0], dtype=torch.float64),
              torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64))
    schema = h.to_schema()
    assert schema.counts == [3, 5, 6]  # le=0.1 holds the clock-skewed -2 s, as 0 s
    assert schema.sum == pytest.approx(2 * 0.5 + 7.0)


def test_the_fine_histogram_gives_the_prometheus_buckets_exactly() -> None:
    seconds = torch.logspace(-4, 3, 500, dtype=torch.float64)  # 0.1 ms to 1,000 s
    fine, coarse = SecondsHistogram(FINE_LATENCY_BUCKETS_S), SecondsHistogram(LATENCY_BUCKETS_S)
    fine.observe(seconds)
    coarse.observe(seconds)
    assert fine.to_schema(every=FINE_EVERY) == coarse.to_schema()
    assert len(coarse.to_schema().counts) == 22 and coarse.to_schema().count == 500
