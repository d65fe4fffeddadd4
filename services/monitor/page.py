"""The live page at ``/``: its static files, and the JSON (``/live.json``) it polls every second.

The page itself is plain HTML, CSS and JavaScript written for it (``static/``, no framework,
nothing fetched from elsewhere); everything it shows comes from ``LivePage.view()``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

from services.common.schemas import Estimate
from services.monitor.categories import OTHER, shown
from services.monitor.collector import category_label
from services.monitor.history import History, Point
from services.monitor.state import Latest, LatestEstimates, total_variation
from services.monitor.truth import ProducerTruth, Truth

__all__ = ["LivePage", "static_file"]

# A bar per category is readable up to a few dozen; past that the page shows the largest by
# estimate and one bar for the rest, as the metrics do past max_series_per_model.
MAX_SHOWN_CATEGORIES = 40

_CONTENT_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "live.css": "text/css; charset=utf-8",
    "live.js": "text/javascript; charset=utf-8",
}


def static_file(name: str) -> tuple[bytes, str] | None:
    """One of the page's files and its content type; None for any other name."""
    content_type = _CONTENT_TYPES.get(name)
    if content_type is None:  # a fixed list: no path from a request ever reaches the disk
        return None
    return (resources.files("services.monitor") / "static" / name).read_bytes(), content_type


def _truth_for(estimate: Estimate, truth: Truth | None,
               truth_model_id: str | None) -> tuple[float, ...] | None:
    """The truth to compare ``estimate`` with: only the model the producer feeds, when the
    monitor is told which (``truth_model_id``), and only of the same K."""
    if truth is None or len(truth.probabilities) != estimate.num_categories:
        return None
    if truth_model_id is not None and estimate.model_id != truth_model_id:
        return None
    return truth.probabilities


class LivePage:
    """What the page shows: the latest estimate, the truth when known, and recent history."""

    def __init__(
        self,
        state: LatestEstimates,
        history: History | None = None,
        truth: ProducerTruth | None = None,
        clock: Callable[[], float] = time.time,
        truth_model_id: str | None = None,
    ) -> None:
        self.state = state
        self.history = history if history is not None else History()
        self.truth = truth
        self.truth_model_id = truth_model_id  # the model the producer feeds, when known
        self._clock = clock

    def _truth(self) -> tuple[Truth | None, str | None]:
        return self.truth.latest() if self.truth is not None else (None, None)

    def record(self) -> None:
        """Add each model's latest estimate to the history, once (call after each poll)."""
        models = self.state.models()
        for latest in sorted(models.values(), key=lambda kept: kept.heard_at):
            if latest.heard_at != self.history.last_at(latest.estimate.model_id):
                self._record(latest)

    def _record(self, latest: Latest) -> None:
        estimate = latest.estimate
        truth = _truth_for(estimate, self._truth()[0], self.truth_model_id)
        self.history.add(Point(
            at=latest.heard_at,
            model_id=estimate.model_id,
            learned=latest.counters.samples_learned,
            temperature=estimate.temperature,
            tv_baseline=latest.tv_baseline,
            tv_truth=None if truth is None else total_variation(estimate.probabilities,
                                                                list(truth)),
        ))

    def view(self, model_id: str | None = None) -> dict[str, Any]:
        """The JSON the page renders: plain numbers and strings, no markup.

        It shows one model: ``model_id``, or the one heard of last. ``models`` lists every
        model the monitor keeps, so the page can offer the others.
        """
        now = self._clock()
        health = self.state.health()
        truth, truth_error = self._truth()
        body: dict[str, Any] = {
            "now": now,
            "health": {"ok": health.ok, "reason": health.reason},
            "truth_source": {
                "url": None if self.truth is None else self.truth.url,
                "error": truth_error,
                "produced": None if truth is None else truth.produced,
                "num_categories": None if truth is None else len(truth.probabilities),
                "model_id": self.truth_model_id,  # whose truth it is (None: not said)
            },
            "history_window_s": self.history.window_s,
            "estimate": None,
            "categories": [],
            "history": [],
            "models": list(self.state.models()),
        }
        latest = self.state.latest(model_id)
        if latest is None:
            return body
        estimate, counters = latest.estimate, latest.counters
        probs = _truth_for(estimate, truth, self.truth_model_id)
        categories = shown(estimate, latest.ranking,
                           min(MAX_SHOWN_CATEGORIES, self.state.max_series_per_model))
        body["estimate"] = {
            "model_id": estimate.model_id,
            "estimator": estimate.estimator,
            "actors": estimate.actors,
            "step": estimate.step,
            "timestamp": estimate.timestamp,
            "age_s": max(0.0, now - estimate.timestamp),
            "num_categories": estimate.num_categories,
            "samples_learned": counters.samples_learned,
            "dead_letters": counters.dead_letters,
            "consumer_lag": estimate.consumer_lag,
            "learned_fraction": estimate.learned_fraction,
            "drift_detections": counters.drift_detections,
            "temperature": estimate.temperature,
            "tv_baseline": latest.tv_baseline,
            "tv_truth": None if probs is None else total_variation(estimate.probabilities,
                                                                   list(probs)),
            "categories_hidden": categories.rest,
        }
        body["categories"] = [
            {
                "category": c,
                "name": category_label(estimate, c),  # the metrics' category label
                "estimate": estimate.probabilities[c],
                "baseline": estimate.baseline_probabilities[c],
                "truth": None if probs is None else probs[c],
            }
            for c in categories.categories
        ]
        if categories.rest:  # one bar for the rest, as category="_other" in the metrics
            body["categories"].append({
                "category": None,
                "name": OTHER,
                "other": categories.rest,
                "estimate": categories.rest_sums[0],
                "baseline": categories.rest_sums[1],
                "truth": None if probs is None else max(
                    0.0, math.fsum(probs) - math.fsum(probs[c] for c in categories.categories)),
            })
        body["history"] = [
            {"at": p.at, "learned": p.learned, "temperature": p.temperature,
             "tv_baseline": p.tv_baseline, "tv_truth": p.tv_truth}
            for p in self.history.of_model(estimate.model_id, now)
        ]
        return body
