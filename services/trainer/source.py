"""The trainer's Kafka side: partitions of ``numbers`` polled into decoded ``Block``s.

Every kafka-python type the trainer touches stays here (bytewax's partition source is the
model): assign, seek, hold, poll → ``Poll`` (one ``Block`` per partition, and the bad
records for the dead-letter topic), commit, high watermarks. A ``KafkaConsumer`` is not
thread-safe: one thread owns a source.

A ``Block`` is what the learner needs of one partition's part of a poll: where it begins and
ends in the partition, the counts of the K categories in consecutive pieces of at most
``piece`` values, each piece's newest record time (the learner merges partitions in event
time piece by piece), and the dead letters by reason. It is a few kilobytes whatever the
number of records, so the ingest actors send blocks, never values, to the one learner.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

from services.common.codec import BadRecord, EventFormat, decode_values
from services.common.kafka import topic_partitions

__all__ = ["Block", "Poll", "PartitionSource", "decode_poll", "piece_counts", "piece_times"]

log = logging.getLogger(__name__)

MAX_ROWS = 1024  # rows (pieces) of one block at most


@dataclass(frozen=True)
class Block:
    """One partition's records of one poll, reduced to what the learner learns from."""

    partition: int
    start: int  # the partition's offset the block begins at (the previous block's end)
    end: int  # the offset after its last record
    counts: torch.Tensor  # (n, K) int64: one row per consecutive piece of <= piece values
    times: torch.Tensor  # (n,) float64: unix s of each piece's newest record (0: unknown)
    dead_letters: dict[str, int] = field(default_factory=dict)  # bad records by reason

    @property
    def last_time(self) -> float:
        return float(self.times.max()) if self.times.numel() else 0.0

    @property
    def values(self) -> int:
        return int(self.counts.sum())


@dataclass(frozen=True)
class Poll:
    """One poll: a block per partition that returned records, and its bad records."""

    blocks: list[Block]
    bad: list[BadRecord]
    records: int  # records polled (good and bad)
    polled_at: float  # time.monotonic() of the poll


def piece_counts(values: torch.Tensor, num_categories: int, piece: int) -> torch.Tensor:
    """``(n, K)`` counts of consecutive pieces of at most ``piece`` of ``values`` (N,)."""
    n = -(-int(values.numel()) // piece)
    if n == 0:
        return torch.zeros(0, num_categories, dtype=torch.int64)
    row = torch.arange(values.numel()) // piece  # (N,) the piece of each value
    flat = torch.bincount(row * num_categories + values, minlength=n * num_categories)
    return flat.view(n, num_categories)


def piece_times(timestamps_ms: list[int], pieces: int) -> torch.Tensor:
    """``(pieces,)`` unix s of each piece's newest record, the pieces spread evenly over the
    records (exact for one value a record with no bad ones; packed records share their
    record's time). Zeros when the records carry no timestamps."""
    if not pieces:
        return torch.zeros(0, dtype=torch.float64)
    if not timestamps_ms:
        return torch.zeros(pieces, dtype=torch.float64)
    times = torch.tensor(timestamps_ms, dtype=torch.float64) / 1000.0  # (R,)
    running = torch.cummax(times, 0).values  # a piece's newest: the max up to its last record
    last = (torch.arange(1, pieces + 1) * len(timestamps_ms) + pieces - 1) // pieces - 1
    return running[last]


def decode_poll(
    records: Mapping[Any, list[Any]], num_categories: int, *, piece: int = 256,
    starts: Mapping[int, int] | None = None, polled_at: float | None = None,
    event_format: EventFormat | None = None,
) -> Poll | None:
    """A ``consumer.poll()`` result as a ``Poll`` (None when it holds no record).

    ``starts`` is where each partition's block begins (the position the caller read from,
    which may be before the first record's offset when the log has gaps); by default the
    first record's offset. ``event_format`` says how one-value records name categories.
    """
    starts = starts or {}
    blocks: list[Block] = []
    bad: list[BadRecord] = []
    count = 0
    for tp, batch in records.items():
        if not batch:
            continue
        # Comprehensions, not a loop of appends: this runs once per record at Kafka's speed.
        part = decode_values([record.value for record in batch], [tp.partition] * len(batch),
                             [record.offset for record in batch], num_categories,
                             [record.headers for record in batch], event_format=event_format)
        stamps = [record.timestamp for record in batch]
        if not all(isinstance(t, int) and t >= 0 for t in stamps):
            stamps = []
        by_reason: dict[str, int] = {}
        for record in part.bad:
            by_reason[record.reason] = by_reason.get(record.reason, 0) + 1
        if part.bad:  # rare: only bad records need their key and timestamp, for the DLQ
            origin = {r.offset: r for r in batch}
            bad.extend(replace(b, key=origin[b.offset].key, timestamp=origin[b.offset].timestamp)
                       for b in part.bad)
        # at most MAX_ROWS rows a block: a poll of packed records is millions of values
        counts = piece_counts(part.values, num_categories,
                              max(piece, -(-part.count // MAX_ROWS)))
        blocks.append(Block(
            partition=tp.partition, start=starts.get(tp.partition, batch[0].offset),
            end=batch[-1].offset + 1, counts=counts,
            times=piece_times(stamps, counts.shape[0]), dead_letters=by_reason))
        count += len(batch)
    if not count:
        return None
    return Poll(blocks, bad, count, time.monotonic() if polled_at is None else polled_at)


class PartitionSource:
    """Actor-owned partitions of one topic, read from given offsets (no group rebalancing)."""

    def __init__(self, consumer: Any, topic: str, num_categories: int, *, piece: int = 256,
                 event_format: EventFormat | None = None) -> None:
        self._consumer = consumer
        self.topic = topic
        self.num_categories = num_categories
        self.piece = piece
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
        poll = decode_poll(records, self.num_categories, piece=self.piece,
                           starts=self.positions, event_format=self.event_format)
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
