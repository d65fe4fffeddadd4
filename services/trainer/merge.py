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

A partition holds the others back from when an ingest actor claims it, until it has been
silent for ``idle_s`` or its reader says it is at the log's end (``caught_up``), and again
from its next block. A partition at its cap of waiting blocks is ``full``: its reader pauses
it, so a partition far ahead in event time waits without the memory growing.

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


@dataclass
class Pieces:
    """Rows of per-category counts in the order they are to be learned.

    ``ends`` marks the last row of each block: learning it moves that partition's offset to
    the block's end and counts the block's values and dead letters."""

    counts: torch.Tensor  # (m, K) float64
    times: torch.Tensor  # (m,) float64, unix s of each row's newest record
    released_at: torch.Tensor  # (m,) float64, time.monotonic() each row left the merge
    ends: list[tuple[int, int, int, dict[str, int], int]] = field(default_factory=list)
    # (row, partition, end offset, dead letters by reason, values), rows ascending

    @classmethod
    def empty(cls, num_categories: int) -> Pieces:
        none = torch.zeros(0, dtype=torch.float64)
        return cls(torch.zeros(0, num_categories, dtype=torch.float64), none, none.clone())

    def __len__(self) -> int:
        return int(self.counts.shape[0])

    def extend(self, other: Pieces) -> None:
        base = len(self)
        self.counts = torch.cat([self.counts, other.counts])
        self.times = torch.cat([self.times, other.times])
        self.released_at = torch.cat([self.released_at, other.released_at])
        self.ends.extend((base + row, *rest) for row, *rest in other.ends)

    def take(self, rows: int) -> Pieces:
        """Remove and return the first ``rows`` rows."""
        head = Pieces(self.counts[:rows], self.times[:rows], self.released_at[:rows],
                      [e for e in self.ends if e[0] < rows])
        self.counts, self.times = self.counts[rows:], self.times[rows:]
        self.released_at = self.released_at[rows:]
        self.ends = [(row - rows, *rest) for row, *rest in self.ends if row >= rows]
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
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.k, self.idle_s, self.max_blocks = num_categories, idle_s, max_blocks
        self._clock = clock
        self._waiting: dict[int, deque[_Waiting]] = {}
        self._newest: dict[int, float] = {}  # partition -> newest record time received
        self._heard: dict[int, float] = {}  # partition -> clock of its last block or claim
        self._caught_up: set[int] = set()

    def watch(self, partition: int) -> None:
        """``partition`` is read from now on: it holds the others back until it has data."""
        self._waiting.setdefault(partition, deque())
        self._heard[partition] = self._clock()

    def full(self, partition: int) -> bool:
        return len(self._waiting.get(partition, ())) >= self.max_blocks

    def add(self, block: Block) -> None:
        p = block.partition
        newest = self._newest.get(p, float("-inf"))
        times = block.times.to(torch.float64)
        if block.counts.shape[0] == 0:  # only bad records: one empty row moves the offset on
            times = torch.zeros(1, dtype=torch.float64)
        times = torch.clamp(times, min=newest) if newest > float("-inf") else times
        self._waiting.setdefault(p, deque()).append(_Waiting(block, times))
        self._heard[p] = self._clock()
        self._caught_up.discard(p)
        self._newest[p] = max(newest, float(times[-1]))

    def caught_up(self, partitions: Iterable[int]) -> None:
        """Their reader is at the log's end: they hold nobody back until their next block."""
        for p in partitions:
            if not self._waiting.get(p):
                self._caught_up.add(p)

    def all_caught_up(self) -> bool:
        """Nothing waits and every partition read is at its log's end or silent."""
        now = self._clock()
        return not self.waiting() and all(
            p in self._caught_up or now - heard >= self.idle_s for p, heard in self._heard.items())

    def waiting(self) -> int:
        """Blocks waiting (wholly or in part)."""
        return sum(len(q) for q in self._waiting.values())

    def watermark(self) -> float:
        """Pieces whose newest record is at or before this time may leave (-inf: none)."""
        now = self._clock()
        holding = [self._newest.get(p, float("-inf")) for p, queue in self._waiting.items()
                   if queue or (p not in self._caught_up
                                and now - self._heard.get(p, now) < self.idle_s)]
        return min(holding) if holding else float("inf")

    def release(self, everything: bool = False) -> Pieces:
        """The pieces that may leave, in time order (ties: by partition), each partition's in
        offset order; ``everything`` releases all (the learner stops)."""
        mark = float("inf") if everything else self.watermark()
        counts, times, ends = [], [], []
        rows = 0
        for partition in sorted(self._waiting):
            queue = self._waiting[partition]
            while queue:
                head = queue[0]
                stop = int(torch.searchsorted(head.times, mark, right=True))
                if stop <= head.next_row:
                    break
                block = head.block
                part = (block.counts[head.next_row:stop].to(torch.float64)
                        if block.counts.shape[0] else torch.zeros(1, self.k, dtype=torch.float64))
                counts.append(part)
                times.append(head.times[head.next_row:stop])
                rows += stop - head.next_row
                head.next_row = stop
                if stop < head.times.numel():
                    break
                ends.append((rows - 1, partition, block.end, block.dead_letters, block.values))
                queue.popleft()
        if not counts:
            return Pieces.empty(self.k)
        all_times = torch.cat(times)
        order = torch.sort(all_times, stable=True).indices  # partition order breaks ties
        where = torch.empty_like(order)
        where[order] = torch.arange(order.numel())
        released = torch.full((order.numel(),), self._clock(), dtype=torch.float64)
        return Pieces(torch.cat(counts)[order], all_times[order], released,
                      sorted(((int(where[row]), *rest) for row, *rest in ends),
                             key=lambda e: e[0]))
