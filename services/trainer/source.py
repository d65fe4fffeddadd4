"""The trainer's Kafka side: partitions of ``numbers`` polled into decoded ``Block``s.

Every kafka-python type the trainer touches stays here (bytewax's partition source is the
model): assign, seek, hold, poll → ``Poll`` (one ``Block`` per partition, and the bad
records for the dead-letter topic), commit, high watermarks. A ``KafkaConsumer`` is not
thread-safe: one thread owns a source.

A ``Block`` is what the learner needs of one partition's part of a poll: where it begins and
ends in the partition, the counts of the K categories in consecutive pieces, each piece's
newest record time (the learner merges partitions in event time piece by piece), and the
dead letters by reason. A piece is one value while the block stays within ``MAX_ROWS`` rows
and ``MAX_CELLS`` counts (larger polls, packed records and a large K get longer pieces), so
a step takes the values of every partition of its moment however the partitions are keyed:
a piece longer than a step's share of its partition would put lumps of one partition's
categories in a step (with a stream keyed by category, a step's counts would vary far more
than a sample's, and the drift detector fires on a stationary stream). Whatever the number
of records, a block is at most ``MAX_CELLS`` counts, so the ingest actors send blocks,
never values, to the one learner.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

from services.common.codec import BadRecord, EventFormat, decode_values
from services.common.kafka import topic_partitions

__all__ = ["Block", "Poll", "PartitionSource", "block_rows", "decode_poll", "make_block"]

log = logging.getLogger(__name__)

MAX_ROWS = 4096  # rows (pieces) of one block at most: a default poll (max_batch) a value a row
MAX_CELLS = 1 << 20  # counts of one block at most (8 MB): rows of a large K are longer pieces


def block_rows(num_categories: int) -> int:
    """The most rows a block of ``num_categories`` categories has."""
    return max(1, min(MAX_ROWS, MAX_CELLS // num_categories))


@dataclass(frozen=True)
class Block:
    """One partition's records of one poll, reduced to what the learner learns from.

    A row is a piece of whole records: learning it moves the partition's learned offset to
    the row's end, so a checkpoint taken between any two rows names exactly the values its
    model has learned (a record is never split between rows)."""

    partition: int
    start: int  # the partition's offset the block begins at (the previous block's end)
    end: int  # the offset after its last record
    counts: torch.Tensor  # (n, K) int64: one row per consecutive piece of the block's values
    times: torch.Tensor  # (n,) float64: unix s of each piece's newest record (0: unknown)
    row_ends: torch.Tensor  # (n,) int64: the offset after each piece's last record
    # (row, bad records by reason) for rows after bad records (a block of only bad ones:
    # row 0, its one empty row); each is counted when its row is learned
    dead_rows: tuple[tuple[int, dict[str, int]], ...] = ()
    polled_at: float = 0.0  # unix s at which the ingest actor polled it (0: unknown)

    @property
    def values(self) -> int:
        return int(self.counts.sum())

    @property
    def dead_letters(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for _, by_reason in self.dead_rows:
            for reason, n in by_reason.items():
                total[reason] = total.get(reason, 0) + n
        return total


def make_block(
    partition: int, start: int, end: int, values: torch.Tensor | list[int], num_categories: int,
    *, per_record: list[int] | None = None, offsets: list[int] | None = None,
    stamps_ms: list[int] | None = None, bad: Iterable[tuple[int, str]] = (),
    max_rows: int | None = None, polled_at: float = 0.0,
) -> Block:
    """A block of records ``offsets`` (default: ``start``, ``start + 1``, ...) holding
    ``per_record`` good values each (default: one) of ``values``, and ``bad`` (offset,
    reason) records; its pieces of whole records as short as ``max_rows`` rows allow."""
    values = torch.as_tensor(values, dtype=torch.int64)
    per = torch.tensor(per_record, dtype=torch.int64) if per_record is not None \
        else torch.ones(values.numel(), dtype=torch.int64)
    offs = torch.tensor(offsets, dtype=torch.int64) if offsets is not None \
        else torch.arange(start, start + per.numel(), dtype=torch.int64)
    total = int(values.numel())
    by_row: dict[int, dict[str, int]] = {}
    if not total:  # only bad records: one empty row moves the offset on
        for _, reason in bad:
            by_row.setdefault(0, {})[reason] = by_row.get(0, {}).get(reason, 0) + 1
        return Block(partition, start, end, torch.zeros(0, num_categories, dtype=torch.int64),
                     torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.int64),
                     tuple(by_row.items()), polled_at)
    target = max(1, -(-total // (max_rows or block_rows(num_categories))))
    before = torch.cumsum(per, 0) - per  # (R,) good values before each record
    # a record's piece: where its first value falls (a bad one: with the next good value)
    piece = torch.clamp(before // target, max=(total - 1) // target)
    _, row = torch.unique_consecutive(piece, return_inverse=True)  # (R,) compact rows
    n = int(row[-1]) + 1
    value_row = torch.repeat_interleave(row, per)  # (total,)
    counts = torch.bincount(value_row * num_categories + values,
                            minlength=n * num_categories).view(n, num_categories)
    row_ends = torch.zeros(n, dtype=torch.int64).scatter_reduce(0, row, offs + 1, "amax")
    row_ends[-1] = end  # the last row takes the block to its end (trailing bad records too)
    if stamps_ms:
        stamp = torch.tensor(stamps_ms, dtype=torch.float64) / 1000.0
        newest = torch.zeros(n, dtype=torch.float64).scatter_reduce(0, row, stamp, "amax")
        times = torch.cummax(newest, 0).values  # non-decreasing along the partition
    else:
        times = torch.zeros(n, dtype=torch.float64)
    if bad:
        where = {int(o): i for i, o in enumerate(offs.tolist())}
        for offset, reason in bad:
            r = int(row[where[offset]])
            by_row.setdefault(r, {})[reason] = by_row.get(r, {}).get(reason, 0) + 1
    return Block(partition, start, end, counts, times, row_ends, tuple(sorted(by_row.items())),
                 polled_at)


@dataclass(frozen=True)
class Poll:
    """One poll: a block per partition that returned records, and its bad records."""

    blocks: list[Block]
    bad: list[BadRecord]
    records: int  # records polled (good and bad)
    polled_at: float  # time.monotonic() of the poll


def decode_poll(
    records: Mapping[Any, list[Any]], num_categories: int, *, max_rows: int | None = None,
    starts: Mapping[int, int] | None = None, polled_at: float | None = None,
    event_format: EventFormat | None = None,
) -> Poll | None:
    """A ``consumer.poll()`` result as a ``Poll`` (None when it holds no record).

    ``starts`` is where each partition's block begins (the position the caller read from,
    which may be before the first record's offset when the log has gaps); by default the
    first record's offset. ``event_format`` says how one-value records name categories.
    ``max_rows`` (default ``block_rows(num_categories)``): each block's rows at most, its
    pieces as short as that allows.
    """
    max_rows = max_rows or block_rows(num_categories)
    starts = starts or {}
    blocks: list[Block] = []
    bad: list[BadRecord] = []
    count = 0
    wall = time.time()  # the blocks' poll time: the learner, another process, measures from it
    for tp, batch in records.items():
        if not batch:
            continue
        # Comprehensions, not a loop of appends: this runs once per record at Kafka's speed.
        offsets = [record.offset for record in batch]
        part = decode_values([record.value for record in batch], [tp.partition] * len(batch),
                             offsets, num_categories,
                             [record.headers for record in batch], event_format=event_format)
        stamps = [record.timestamp for record in batch]
        if not all(isinstance(t, int) and t >= 0 for t in stamps):
            stamps = []
        if part.bad:  # rare: only bad records need their key and timestamp, for the DLQ
            origin = {r.offset: r for r in batch}
            bad.extend(replace(b, key=origin[b.offset].key, timestamp=origin[b.offset].timestamp)
                       for b in part.bad)
        # pieces of whole records as short as max_rows allows: a poll of packed records is
        # millions of values
        blocks.append(make_block(
            tp.partition, starts.get(tp.partition, batch[0].offset), batch[-1].offset + 1,
            part.values, num_categories, per_record=part.per_record,
            offsets=offsets, stamps_ms=stamps,
            bad=[(b.offset, b.reason) for b in part.bad], max_rows=max_rows, polled_at=wall))
        count += len(batch)
    if not count:
        return None
    return Poll(blocks, bad, count, time.monotonic() if polled_at is None else polled_at)


class PartitionSource:
    """Actor-owned partitions of one topic, read from given offsets (no group rebalancing)."""

    def __init__(self, consumer: Any, topic: str, num_categories: int, *,
                 event_format: EventFormat | None = None) -> None:
        self._consumer = consumer
        self.topic = topic
        self.num_categories = num_categories
        self.event_format = event_format
        self.partitions: list[int] = []
        # partition -> where its next block begins: the position read from, moved on by
        # each block polled and by every seek.
        self.positions: dict[int, int] = {}
        self._held: set[int] = set()  # partitions not read for now (the learner has no room)
        self._highwaters_held: dict[int, int] = {}

    def _tp(self, partition: int) -> TopicPartition:
        return TopicPartition(self.topic, partition)

    def topic_partitions(self) -> list[int]:
        return [tp.partition for tp in topic_partitions(self._consumer, self.topic)]

    def assign(self, partitions: Iterable[int]) -> None:
        """Read ``partitions`` (those read so far keep their positions)."""
        self.partitions = list(partitions)
        self.positions = {p: o for p, o in self.positions.items() if p in self.partitions}
        self._held &= set(self.partitions)
        self._apply()

    def _apply(self) -> None:
        """Assign the partitions not held (kafka-python keeps the position of a partition
        that stays assigned). Held partitions are unassigned rather than ``pause()``d:
        kafka-python 3.0.12 can park a paused partition's fetched data and then never fetch
        it again."""
        self._consumer.assign([self._tp(p) for p in self.partitions if p not in self._held])

    def seek(self, partition: int, offset: int) -> None:
        self.positions[partition] = offset
        if partition not in self._held:
            self._consumer.seek(self._tp(partition), offset)

    def pause(self, partition: int) -> None:
        """Poll no records of ``partition`` until ``resume``: its position stays put."""
        if partition not in self._held:
            self._held.add(partition)
            self._highwaters_held[partition] = self.highwaters().get(partition, 0)
            self._apply()

    def resume(self, partition: int) -> None:
        """Read ``partition`` again, on from its position (assigned anew, it has none)."""
        if partition in self._held:
            self._held.discard(partition)
            self._highwaters_held.pop(partition, None)
            self._apply()
            if partition in self.positions:
                self._consumer.seek(self._tp(partition), self.positions[partition])

    def committed(self, partition: int) -> int | None:
        try:
            committed = self._consumer.committed(self._tp(partition))
        except Exception as exc:  # a broker without group support: start from earliest
            log.warning("cannot read the committed offset of %s[%d]: %s",
                        self.topic, partition, exc)
            return None
        return None if committed is None else int(committed)

    def beginning_offsets(self, partitions: Iterable[int]) -> dict[int, int]:
        starts = self._consumer.beginning_offsets([self._tp(p) for p in partitions])
        return {tp.partition: int(offset or 0) for tp, offset in starts.items()}

    def poll(self, timeout_ms: int, max_records: int) -> Poll | None:
        records = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        if not records:
            return None
        poll = decode_poll(records, self.num_categories, starts=self.positions,
                           event_format=self.event_format)
        for block in poll.blocks if poll is not None else ():
            self.positions[block.partition] = block.end
        return poll

    def highwaters(self) -> dict[int, int]:
        """The high watermark of each partition from the last fetch (absent before one)."""
        marks = {p: self._consumer.highwater(self._tp(p)) for p in self.partitions
                 if p not in self._held}
        return {**self._highwaters_held, **{p: int(h) for p, h in marks.items() if h is not None}}

    def commit(self, offsets: Mapping[int, int]) -> None:
        self._consumer.commit(
            {self._tp(p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()}
        )

    def close(self) -> None:
        self._consumer.close()
