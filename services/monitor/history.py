"""The last minutes of each model's estimates as a few numbers per estimate, for the live page."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

__all__ = ["History", "Point"]

WINDOW_S = 600.0
# One point per published estimate (every 2 s by default): a bound whatever the interval.
MAX_POINTS = 2_000


@dataclass(frozen=True)
class Point:
    at: float  # the monitor's clock when the estimate arrived
    model_id: str
    learned: int
    temperature: float
    tv_baseline: float
    tv_truth: float | None


class History:
    """Points of the last ``window_s`` seconds, oldest first; safe across threads."""

    def __init__(self, window_s: float = WINDOW_S, max_points: int = MAX_POINTS) -> None:
        self.window_s = window_s
        self._points: deque[Point] = deque(maxlen=max_points)
        self._lock = threading.Lock()

    def add(self, point: Point) -> None:
        with self._lock:
            last = self._last_at(point.model_id)
            if last is not None and point.at <= last:
                return  # the same estimate again (or a clock step back): keep the order
            self._points.append(point)
            while self._points and point.at - self._points[0].at > self.window_s:
                self._points.popleft()

    def _last_at(self, model_id: str | None) -> float | None:
        for p in reversed(self._points):
            if model_id is None or p.model_id == model_id:
                return p.at
        return None

    def last_at(self, model_id: str | None = None) -> float | None:
        """When the newest point (of ``model_id``, when given) arrived."""
        with self._lock:
            return self._last_at(model_id)

    def of_model(self, model_id: str, now: float) -> list[Point]:
        """The points of ``model_id`` within the window before ``now``."""
        with self._lock:
            return [p for p in self._points
                    if p.model_id == model_id and now - p.at <= self.window_s]
