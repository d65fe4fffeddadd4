"""How fast and how fresh one actor's learning is: rates over the last seconds, data time."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

__all__ = ["LearningMeter", "Rates"]


@dataclass(frozen=True)
class Rates:
    records_per_s: float  # values learned per second
    step_seconds: float  # mean seconds per learned batch
    poll_to_learn_seconds: float  # mean delay from poll to learned


class LearningMeter:
    """Records each learned batch; answers rates over the last ``window_s`` and data time."""

    def __init__(self, window_s: float = 10.0, clock=time.monotonic, wall=time.time) -> None:
        self.window_s = window_s
        self._clock, self._wall = clock, wall
        self._recent: deque[tuple[float, int, float, float]] = deque(maxlen=256)
        # The learn thread appends while status() reads on Ray's call thread: iterating a
        # deque that changes raises, so both sides hold this lock.
        self._recent_lock = threading.Lock()
        self._newest_learned = 0.0
        # Unix time as of which the replica had learned everything on its partitions: now
        # when caught up, else the newest learned record's timestamp. A hung loop stops it.
        self.data_time = wall()

    def learned(self, values: int, step_s: float, polled_at: float, newest_time: float) -> None:
        now = self._clock()
        with self._recent_lock:
            self._recent.append((now, values, step_s, now - polled_at))
        self._newest_learned = max(self._newest_learned, newest_time)

    def caught_up(self, caught_up: bool) -> None:
        """Caught up: the data is fresh as of now; behind: as of the newest record learned."""
        now = self._wall()
        if caught_up:
            self.data_time = now
        elif self._newest_learned > self.data_time:
            # A producer's clock may run ahead; never claim data from the future.
            self.data_time = min(now, self._newest_learned)

    def rates(self) -> Rates:
        clock = self._clock()
        with self._recent_lock:
            recent = [r for r in self._recent if clock - r[0] <= self.window_s]
        if not recent:
            return Rates(0.0, 0.0, 0.0)
        span = recent[-1][0] - recent[0][0]
        per_s = sum(r[1] for r in recent[1:]) / span if len(recent) > 1 and span > 0 else 0.0
        return Rates(per_s, sum(r[2] for r in recent) / len(recent),
                     sum(r[3] for r in recent) / len(recent))
