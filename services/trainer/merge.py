"""The stream's order, not the consumers' pace: blocks of many partitions merged in event time.

Partitions are read at different paces (a backlog, a slow node, a restarted actor), so blocks
reach the learner out of the order the stream was produced in; learning them as they come
would learn one partition after another. As a stream processor's watermark does, the merge
releases a block's pieces (rows of per-category counts) only once every partition that holds
the others back has data at least as new as the piece's newest record: the watermark is the
smallest of those partitions' newest record times. Released pieces of all partitions are
ordered by time (a partition's own stay in offset order), so a GAN step of ``step_size``
values takes pieces of every partition of that moment, as one learner on the whole stream
would see them.

A partition holds the others back from when an ingest actor claims it, until its reader has
been silent (no block, no report: readers report every 0.5 s) for ``idle_s``: a reader that
is slow, not gone (a busy node, a stalled process), holds them as long as it keeps reporting
or less than ``idle_s`` passes, because releasing past it would learn the other partitions
ahead of it. 2 s was too short: on a loaded 2-core machine readers went quiet that long, the
others raced ahead, and a keyed stream (a category per partition) was learned one category
after another. While its reader says it is at the log's end (``caught_up``) it holds
them back to a *lateness allowance* before that report (in wall-clock time): a record that
reaches the log after the report may have been stamped before it (the producer's linger and
its queue in a burst; the fetch that said the log had ended may be older than the report).
The allowance is the stream's lag: the longest time between a record's timestamp and its
block's arrival here, over the blocks of the last ``LAG_MEMORY_S``, at least
``MIN_LATENESS_S`` and at most ``MAX_LATENESS_S``. Records stamped before a report and not yet
read travel with that lag too, so they are waited for; a backlog read from the past, or a
producer whose clock runs behind, holds the others back ``MAX_LATENESS_S`` at most. Values that
still arrive older than pieces already released are learned anyway (at once, ordered among
what is released with them) and counted in ``late_values``.

A partition at its cap of waiting blocks is ``full``: its reader pauses it, so a partition
far ahead in event time waits without the memory growing.

Times are the records' Kafka timestamps (CreateTime by default: the producer's clock; or
LogAppendTime, the broker's, when the topic says so). Within a partition they are made
non-decreasing (each piece's time is at least its predecessor's). A producer whose clock runs
ahead holds its partition's pieces back until the others reach that time (at most ``idle_s``
once it stops producing); one whose clock runs behind has its pieces released at once.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from services.trainer.source import Block

__all__ = ["EventTimeMerge", "Pieces"]

MIN_LATENESS_S = 0.1  # the least lateness allowance (a producer's linger and one fetch)
# The most: a backlog read from the past must not hold the others back for long once caught
# up. Its own constant, not idle_s: a long idle_s (a stalled reader still holds the others)
# must not make every caught-up partition hold them that long after a backlog.
MAX_LATENESS_S = 2.0
LAG_MEMORY_S = 5.0  # how long a seen lag keeps the allowance up


@dataclass
class Pieces:
    """Rows of per-category counts in the order they are to be learned.

    Learning (or counting) a row moves its partition's offset to the row's end and counts
    the dead letters ``dead`` names for it: offsets move row by row, so a checkpoint between
    any two rows is exact."""

    counts: torch.Tensor  # (m, K) float64
    times: torch.Tensor  # (m,) float64, unix s of each row's newest record
    released_at: torch.Tensor  # (m,) float64, time.monotonic() each row left the merge
    partitions: torch.Tensor  # (m,) int64, each row's partition
    row_ends: torch.Tensor  # (m,) int64, the offset after each row's last record
    polled_at: torch.Tensor  # (m,) float64, unix s its block was polled (Block.polled_at)
    dead: list[tuple[int, dict[str, int]]] = field(default_factory=list)  # (row, by reason)

    @classmethod
    def empty(cls, num_categories: int) -> Pieces:
        none = torch.zeros(0, dtype=torch.float64)
        ints = torch.zeros(0, dtype=torch.int64)
        return cls(torch.zeros(0, num_categories, dtype=torch.float64), none, none.clone(),
                   ints, ints.clone(), none.clone())

    def __len__(self) -> int:
        return int(self.counts.shape[0])

    def extend(self, other: Pieces) -> None:
        base = len(self)
        self.counts = torch.cat([self.counts, other.counts])
        self.times = torch.cat([self.times, other.times])
        self.released_at = torch.cat([self.released_at, other.released_at])
        self.partitions = torch.cat([self.partitions, other.partitions])
        self.row_ends = torch.cat([self.row_ends, other.row_ends])
        self.polled_at = torch.cat([self.polled_at, other.polled_at])
        self.dead.extend((base + row, by_reason) for row, by_reason in other.dead)

    def take(self, rows: int) -> Pieces:
        """Remove and return the first ``rows`` rows."""
        head = Pieces(self.counts[:rows], self.times[:rows], self.released_at[:rows],
                      self.partitions[:rows], self.row_ends[:rows], self.polled_at[:rows],
                      [d for d in self.dead if d[0] < rows])
        self.counts, self.times = self.counts[rows:], self.times[rows:]
        self.released_at = self.released_at[rows:]
        self.partitions, self.row_ends = self.partitions[rows:], self.row_ends[rows:]
        self.polled_at = self.polled_at[rows:]
        self.dead = [(row - rows, by_reason) for row, by_reason in self.dead if row >= rows]
        return head


@dataclass
class _Waiting:
    """A block in the merge, ``next_row`` of its rows already released."""

    block: Block
    times: torch.Tensor  # (n,) non-decreasing along the partition
    next_row: int = 0


class EventTimeMerge:
    """Blocks in, pieces out in event-time order; no I/O, an injected clock."""

    def __init__(self, num_categories: int, idle_s: float = 2.0, max_blocks: int = 16,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.k, self.idle_s, self.max_blocks = num_categories, idle_s, max_blocks
        self._clock, self._wall_clock = clock, wall_clock
        self._waiting: dict[int, deque[_Waiting]] = {}
        self._newest: dict[int, float] = {}  # partition -> newest record time received
        self._heard: dict[int, float] = {}  # partition -> clock of its last block, claim, report
        self._at_end: dict[int, float] = {}  # partition -> wall time of its last at-end report
        # (whole second of the clock, the longest lag of the blocks that arrived in it)
        self._lags: deque[tuple[int, float]] = deque()
        self._released_newest = float("-inf")  # the newest time of any piece released
        self.late_values = 0  # values that came after newer pieces of others had left

    def watch(self, partition: int) -> None:
        """``partition`` is read from now on: it holds the others back until it has data."""
        self._waiting.setdefault(partition, deque())
        self._heard[partition] = self._clock()

    def expect(self, partition: int) -> None:
        """``partition`` is the stream's but not claimed yet (its reader is starting): it
        holds the others back from now, until claimed or ``idle_s`` passes. Without it, the
        first reader up would have its partitions learned alone while the others start."""
        if partition not in self._waiting:
            self.watch(partition)

    def full(self, partition: int) -> bool:
        return len(self._waiting.get(partition, ())) >= self.max_blocks

    def add(self, block: Block) -> None:
        p = block.partition
        newest = self._newest.get(p, float("-inf"))
        times = block.times.to(torch.float64)
        if block.counts.shape[0] == 0:  # only bad records: one empty row moves the offset on
            times = torch.zeros(1, dtype=torch.float64)
        times = torch.clamp(times, min=newest) if newest > float("-inf") else times
        if block.counts.shape[0]:
            late = times < self._released_newest
            self.late_values += int(block.counts[late].sum()) if bool(late.any()) else 0
        self._at_end.pop(p, None)
        if block.counts.shape[0] and float(times[0]) > 0:
            self._note_lag(self._wall_clock() - float(times[0]))
        self._waiting.setdefault(p, deque()).append(_Waiting(block, times))
        self._heard[p] = self._clock()
        self._newest[p] = max(newest, float(times[-1]))

    def caught_up(self, partitions: Iterable[int]) -> None:
        """Their reader is at the log's end now: until their next block they hold the others
        back only to ``lateness_s`` before this report."""
        now, wall = self._clock(), self._wall_clock()
        for p in partitions:
            if p in self._waiting and not self._waiting[p]:
                self._at_end[p], self._heard[p] = wall, now

    def all_caught_up(self) -> bool:
        """Nothing waits and every partition read is at its log's end or silent."""
        now = self._clock()
        return not self.waiting() and all(
            p in self._at_end or now - heard >= self.idle_s for p, heard in self._heard.items())

    def _note_lag(self, lag: float) -> None:
        second = int(self._clock())
        if self._lags and self._lags[-1][0] == second:
            lag = max(lag, self._lags.pop()[1])
        self._lags.append((second, lag))

    def allowance(self) -> float:
        """Seconds before its last at-end report that a partition at its end holds others to."""
        now = self._clock()
        while self._lags and now - self._lags[0][0] > LAG_MEMORY_S:
            self._lags.popleft()
        seen = max((lag for _, lag in self._lags), default=0.0)
        return min(MAX_LATENESS_S, max(MIN_LATENESS_S, seen))

    def waiting(self) -> int:
        """Blocks waiting (wholly or in part)."""
        return sum(len(q) for q in self._waiting.values())

    def watermark(self) -> float:
        """Pieces whose newest record is at or before this time may leave (-inf: none)."""
        now, allowance = self._clock(), self.allowance()
        holding = []
        for p, queue in self._waiting.items():
            newest = self._newest.get(p, float("-inf"))
            if queue:
                holding.append(newest)
            elif now - self._heard.get(p, now) >= self.idle_s:
                continue  # silent: its reader is gone or the partition is quiet
            elif p in self._at_end:
                holding.append(max(newest, self._at_end[p] - allowance))
            else:
                holding.append(newest)
        return min(holding) if holding else float("inf")

    def release(self, everything: bool = False) -> Pieces:
        """The pieces that may leave, in time order (ties: by partition), each partition's in
        offset order; ``everything`` releases all (the learner stops)."""
        mark = float("inf") if everything else self.watermark()
        counts, times, partitions, row_ends, polled, dead = [], [], [], [], [], []
        rows = 0
        for partition in sorted(self._waiting):
            queue = self._waiting[partition]
            while queue:
                head = queue[0]
                stop = int(torch.searchsorted(head.times, mark, right=True))
                if stop <= head.next_row:
                    break
                block = head.block
                if block.counts.shape[0]:
                    counts.append(block.counts[head.next_row:stop].to(torch.float64))
                    row_ends.append(block.row_ends[head.next_row:stop])
                else:  # only bad records: one empty row moves the offset on
                    counts.append(torch.zeros(1, self.k, dtype=torch.float64))
                    row_ends.append(torch.tensor([block.end], dtype=torch.int64))
                times.append(head.times[head.next_row:stop])
                partitions.append(torch.full((stop - head.next_row,), partition,
                                             dtype=torch.int64))
                polled.append(torch.full((stop - head.next_row,), block.polled_at,
                                         dtype=torch.float64))
                dead.extend((rows + row - head.next_row, by_reason)
                            for row, by_reason in block.dead_rows
                            if head.next_row <= row < stop)
                rows += stop - head.next_row
                head.next_row = stop
                if stop < head.times.numel():
                    break
                queue.popleft()
        if not counts:
            return Pieces.empty(self.k)
        all_times = torch.cat(times)
        self._released_newest = max(self._released_newest, float(all_times.max()))
        order = torch.sort(all_times, stable=True).indices  # partition order breaks ties
        where = torch.empty_like(order)
        where[order] = torch.arange(order.numel())
        released = torch.full((order.numel(),), self._clock(), dtype=torch.float64)
        return Pieces(torch.cat(counts)[order], all_times[order], released,
                      torch.cat(partitions)[order], torch.cat(row_ends)[order],
                      torch.cat(polled)[order],
                      sorted(((int(where[row]), by_reason) for row, by_reason in dead),
                             key=lambda d: d[0]))
