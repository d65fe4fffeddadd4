"""The live page at ``/``: its static files, and the JSON (``/live.json``) it polls every second.

The page itself is plain HTML, CSS and JavaScript written for it (``static/``, no framework,
nothing fetched from elsewhere); everything it shows comes from ``LivePage.view()``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib import resources
from typing import Any

from services.common.schemas import Estimate
from services.monitor.collector import total_variation
from services.monitor.history import History, Point
from services.monitor.state import Latest, LatestEstimates
from services.monitor.truth import ProducerTruth, Truth

__all__ = ["LivePage", "static_file"]

# A bar per category is readable up to a few dozen; past that the page shows the largest.
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


def _window_or_all(estimate: Estimate) -> list[float]:
    """The baseline of ``gumbel_total_variation``: the windowed count when there is one."""
    window = estimate.window_baseline_probabilities
    return window if window is not None else estimate.baseline_probabilities


def _truth_for(estimate: Estimate, truth: Truth | None) -> tuple[float, ...] | None:
    if truth is None or len(truth.probabilities) != estimate.num_categories:
        return None
    return truth.probabilities


def _shown(estimate: Estimate, truth: tuple[float, ...] | None) -> list[int]:
    """Every category, or the largest ones by any of the three distributions, in order."""
    k = estimate.num_categories
    if k <= MAX_SHOWN_CATEGORIES:
        return list(range(k))

    def size(c: int) -> float:
        p = max(estimate.probabilities[c], estimate.baseline_probabilities[c])
        return max(p, truth[c]) if truth is not None else p

    return sorted(sorted(range(k), key=size, reverse=True)[:MAX_SHOWN_CATEGORIES])


class LivePage:
    """What the page shows: the latest estimate, the truth when known, and recent history."""

    def __init__(
        self,
        state: LatestEstimates,
        history: History | None = None,
        truth: ProducerTruth | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = state
        self.history = history if history is not None else History()
        self.truth = truth
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
        truth = _truth_for(estimate, self._truth()[0])
        self.history.add(Point(
            at=latest.heard_at,
            model_id=estimate.model_id,
            learned=latest.counters.samples_learned,
            temperature=estimate.temperature,
            tv_baseline=total_variation(estimate.probabilities, _window_or_all(estimate)),
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
        probs = _truth_for(estimate, truth)
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
            "tv_baseline": total_variation(estimate.probabilities, _window_or_all(estimate)),
            "tv_truth": None if probs is None else total_variation(estimate.probabilities,
                                                                   list(probs)),
            "categories_hidden": estimate.num_categories - min(estimate.num_categories,
                                                               MAX_SHOWN_CATEGORIES),
        }
        body["categories"] = [
            {
                "category": c,
                "estimate": estimate.probabilities[c],
                "baseline": estimate.baseline_probabilities[c],
                "truth": None if probs is None else probs[c],
            }
            for c in _shown(estimate, probs)
        ]
        body["history"] = [
            {"at": p.at, "learned": p.learned, "temperature": p.temperature,
             "tv_baseline": p.tv_baseline, "tv_truth": p.tv_truth}
            for p in self.history.of_model(estimate.model_id, now)
        ]
        return body
