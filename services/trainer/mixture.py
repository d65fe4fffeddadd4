"""The published estimate as a mixture: each replica's estimate weighted by its share of the
stream.

Each actor learns the distribution of its own partitions. The stream's distribution is the
mixture of those, weighted by how many records each partition set carries:
``p = sum_i share_i * p_i``. That holds whatever the partitions hold (keyed by category, 90:10
volume, identical): the summed counting baseline is the same mixture of the per-actor counts.
Averaging the replicas' parameters instead (what the trainer did before) gives a geometric
mean of the ``p_i``, which is wrong as soon as partitions differ: keyed by category, TV 0.12
with 2 actors and 0.33 with 4 (docs/architecture.md has the measurement).

The shares are the replicas' records learned (``samples_seen``), the weights of the summed
counting baseline too. Recent learning rates would be wrong: a backlog is learned at each
actor's own pace, not at the stream's split (tried: TV 0.14 on a keyed backlog, 4 actors). A
split that changes over time moves the all-time shares slowly.

``weighted_mean`` mixes one number the same way (the temperature).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = ["mixture", "weighted_mean"]


def mixture(
    estimates: Mapping[int, Sequence[float]], shares: Mapping[int, float], k: int
) -> list[float] | None:
    """``sum_i share_i * estimate_i`` over the actors with an estimate of length ``k``; None
    when there is none. Shares of actors without an estimate are left out and the rest
    renormalized."""
    usable = {i: e for i, e in estimates.items() if len(e) == k}
    if not usable:
        return None
    weights, total = _weights([shares.get(i, 0.0) for i in usable])
    return [
        sum(w * float(e[c]) for w, e in zip(weights, usable.values(), strict=True)) / total
        for c in range(k)
    ]


def weighted_mean(values: Sequence[float], weights: Sequence[float]) -> float:
    """``sum_i weight_i * value_i / sum_i weight_i``, with ``mixture``'s weights: a negative
    weight counts as 0, and when none is positive the values count equally."""
    if not values or len(values) != len(weights):
        message = (
            f"weighted_mean needs at least one value and one weight per value, got "
            f"{len(values)} values and {len(weights)} weights"
        )
        raise ValueError(message)
    normalized, total = _weights(weights)
    return sum(w * float(v) for w, v in zip(normalized, values, strict=True)) / total


def _weights(raw: Sequence[float]) -> tuple[list[float], float]:
    """(weights, their sum): negative ones as 0, all 1 when their sum is not positive and
    finite."""
    weights = [max(0.0, float(w)) for w in raw]
    total = sum(weights)
    if total <= 0 or not math.isfinite(total):
        return [1.0] * len(weights), float(len(weights))
    return weights, total
