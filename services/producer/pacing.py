"""Pace a loop to a target rate in chunks: how many records next, and how long to wait first."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["Pacer"]

# Chunks are sized to take about this long at the target rate: smooth enough for a
# Prometheus scrape, coarse enough that pacing costs nothing per record.
CHUNK_SECONDS = 0.05
MAX_CHUNK = 8192


class Pacer:
    """Records ``n`` is due at ``start + n / rate``; ``rate == 0`` means no waiting at all.

    Lateness is not made up in a burst beyond one chunk: after a stall (a broker hiccup) the
    schedule restarts from now, so the long-run rate never exceeds the target.
    """

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_chunk: int = MAX_CHUNK,
    ) -> None:
        if not (math.isfinite(rate) and rate >= 0):  # inf: int(inf) below, an OverflowError
            raise ValueError(f"rate must be finite and >= 0, got {rate}")
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        if rate == 0:
            self.chunk_size = max_chunk
        else:
            self.chunk_size = max(1, min(max_chunk, int(rate * CHUNK_SECONDS)))
        self._start = clock()
        self._scheduled = 0  # records the schedule has released since _start

    def wait(self, records: int, stop: Callable[[], bool] = lambda: False) -> None:
        """Block until ``records`` more may go out; returns early once ``stop()`` is true."""
        if self.rate == 0:
            return
        due = self._start + self._scheduled / self.rate
        now = self._clock()
        if now - due > max(1.0, 2 * CHUNK_SECONDS):  # far behind: do not burst to catch up
            self._start, self._scheduled = now, 0
            due = now
        while due > now and not stop():
            self._sleep(min(due - now, 0.2))
            now = self._clock()
        self._scheduled += records
