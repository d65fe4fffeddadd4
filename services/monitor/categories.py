"""Which categories get a series of their own: every one for small K, the largest and the rest
for large K, within a total budget across models (docs/services.md#large-k).

An estimate of K=65,536 categories would be 65,536 series per per-category metric, and a
hundred such models gigabytes of ``/metrics``. So each model shows at most
``max_series_per_model`` categories: when it has more, its largest by estimate and one
``category="_other"`` that sums the rest (the full distribution stays on ``/estimate`` and the
estimates topic). All models together show at most ``max_category_series`` per-category
series: past it every model shows fewer, the smallest needs served first, so a K=5 model
keeps its five. The live page shows the same: the largest and the rest.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.common.schemas import Estimate

__all__ = ["OTHER", "Ranking", "Shown", "allot", "rank", "shown"]

# The label of the series that sums the categories not shown on their own. A category that is
# itself named so is never shown on its own when there is a rest (it is summed in it).
OTHER = "_other"


@dataclass(frozen=True)
class Ranking:
    """An estimate's categories as the per-category series need them: made once, on arrival."""

    largest: tuple[int, ...]  # by estimate, largest first (ties: the lower id), at most n - 1
    totals: tuple[float, ...]  # exact sums of the estimate, the baseline and the window if any


def _distributions(estimate: Estimate) -> list[Sequence[float]]:
    window = estimate.window_baseline_probabilities
    return [estimate.probabilities, estimate.baseline_probabilities,
            *([] if window is None else [window])]


def rank(estimate: Estimate, max_series: int) -> Ranking:
    """The ``max_series - 1`` largest categories (enough for any smaller share too)."""
    probabilities = estimate.probabilities
    candidates: Sequence[int] = range(estimate.num_categories)
    names = estimate.category_names
    if names is not None and OTHER in names:
        skipped = names.index(OTHER)
        candidates = [c for c in candidates if c != skipped]
    count = min(estimate.num_categories, max_series) - 1
    largest = heapq.nlargest(count, candidates, key=probabilities.__getitem__)
    return Ranking(tuple(largest), tuple(math.fsum(d) for d in _distributions(estimate)))


@dataclass(frozen=True)
class Shown:
    """The categories with a series of their own (in id order), and what ``_other`` holds."""

    categories: list[int]
    rest: int  # categories summed in _other (0: no _other series)
    rest_sums: tuple[float, ...]  # per distribution, as ``Ranking.totals``


def shown(estimate: Estimate, ranking: Ranking, categories: int) -> Shown:
    """At most ``categories`` series: all of them if they fit, else the largest and the rest."""
    k = estimate.num_categories
    if categories >= k:
        return Shown(list(range(k)), 0, ())
    own = sorted(ranking.largest[:max(0, categories - 1)])
    rest_sums = tuple(max(0.0, total - math.fsum(d[c] for c in own))
                      for d, total in zip(_distributions(estimate), ranking.totals, strict=True))
    return Shown(own, k - len(own), rest_sums)


def allot(wants: Mapping[str, tuple[int, int]], budget: int) -> dict[str, int]:
    """Categories each model may show, from ``{model: (categories wanted, series each)}``.

    Water-filling: the models are served smallest need first, each to at most an equal share
    of what is left, so small models keep all of theirs and the large ones share the rest.
    Every model gets at least one (its ``_other``), even past the budget.
    """
    order = sorted(wants, key=lambda m: (wants[m][0] * wants[m][1], m))
    left, allotted = budget, {}
    for i, model in enumerate(order):
        wanted, each = wants[model]
        share = left // (len(order) - i)
        allotted[model] = min(wanted, max(1, share // each))
        left -= allotted[model] * each
    return allotted
