"""The published estimate is the mixture of the replicas' estimates weighted by their share of
the records."""

from __future__ import annotations

import pytest

from services.trainer.mixture import mixture, weighted_mean


def test_keyed_partitions_mix_to_the_stream_not_to_the_mean() -> None:
    """Actor 0 owns categories 0-1 (60% of records), actor 1 categories 2-3 (40%)."""
    estimates = {0: [0.5, 0.5, 0.0, 0.0], 1: [0.0, 0.0, 0.25, 0.75]}
    assert mixture(estimates, {0: 0.6, 1: 0.4}, 4) == pytest.approx([0.3, 0.3, 0.1, 0.3])


def test_actors_without_an_estimate_are_left_out_and_no_weight_means_equal() -> None:
    assert mixture({0: [1.0, 0.0], 1: [0.5]}, {0: 0.1, 1: 0.9}, 2) == [1.0, 0.0]
    assert mixture({0: [1.0, 0.0], 1: [0.0, 1.0]}, {}, 2) == [0.5, 0.5]
    assert mixture({}, {}, 2) is None


def test_weighted_mean_weights_each_value_by_its_records() -> None:
    assert weighted_mean([0.5, 0.7], [30.0, 10.0]) == pytest.approx(0.55)


def test_weighted_mean_counts_values_equally_when_no_weight_is_positive() -> None:
    assert weighted_mean([0.5, 0.7], [0.0, 0.0]) == pytest.approx(0.6)
    assert weighted_mean([0.5, 0.7], [-1.0, 0.0]) == pytest.approx(0.6)
    assert weighted_mean([0.5, 0.7], [-1.0, 2.0]) == pytest.approx(0.7)  # negative counts as 0


@pytest.mark.parametrize("values, weights", [([], []), ([0.5], [1.0, 2.0])])
def test_weighted_mean_rejects_no_values_or_a_weight_count_that_differs(
    values: list[float], weights: list[float]
) -> None:
    with pytest.raises(ValueError, match="one weight per value"):
        weighted_mean(values, weights)
