"""The trainer's Kafka side: its partitions of ``numbers``, polled into decoded batches.

Every kafka-python type the trainer touches stays here (bytewax's partition source is the
model): assign and seek, poll → ``PolledBatch`` (good values, bad records, next offsets),
commit, high watermarks. A ``KafkaConsumer`` is not thread-safe: one thread owns a source.
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

from services.common.codec import DecodedBatch, EventFormat, decode_values
from services.common.kafka import topic_partitions

__all__ = ["PolledBatch", "PartitionSource", "decode_poll"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PolledBatch:
    """One poll's records, decoded, with where each partition continues."""

    decoded: DecodedBatch  # every partition's good values (in poll order) and bad records
    next_offsets: dict[int, int]  # partition -> offset after the last record polled
    records: int  # records polled (good and bad)
    newest_time: float  # the newest record's timestamp, unix s (0 when unknown)
    polled_at: float  # time.monotonic() of the poll: poll-to-learn latency
    # partition -> its good values: each partition has a learner of its own (replica.py)
    by_partition: dict[int, torch.Tensor] = field(default_factory=dict)


def decode_poll(
    records: Mapping[Any, list[Any]], num_categories: int, polled_at: float | None = None,
    event_format: EventFormat | None = None,
) -> PolledBatch | None:
    """A ``consumer.poll()`` result as a ``PolledBatch`` (None when it holds no record);
    ``event_format`` says how one-value records name categories (default: ASCII ids)."""
    by_partition: dict[int, torch.Tensor] = {}
    bad: list[Any] = []
    next_offsets: dict[int, int] = {}
    count = 0
    newest = 0
    for tp, batch in records.items():
        if not batch:
            continue
        # Comprehensions, not a loop of appends: this runs once per record at Kafka's speed.
        part = decode_values([record.value for record in batch], [tp.partition] * len(batch),
                             [record.offset for record in batch], num_categories,
                             [record.headers for record in batch],
                             event_format=event_format)
        if part.count:
            by_partition[tp.partition] = part.values
        bad.extend(part.bad)
        count += len(batch)
        next_offsets[tp.partition] = batch[-1].offset + 1
        last = batch[-1].timestamp
        if isinstance(last, int) and last > newest:
            newest = last
    if not count:
        return None
    values = (torch.cat(list(by_partition.values())) if by_partition
              else torch.empty(0, dtype=torch.int64))
    decoded = DecodedBatch(values, bad)
    if decoded.bad:  # rare: only bad records need their key and timestamp, for the DLQ
        by_origin = {(tp.partition, r.offset): r for tp, b in records.items() for r in b}
        bad = [replace(b, key=by_origin[(b.partition, b.offset)].key,
                       timestamp=by_origin[(b.partition, b.offset)].timestamp)
               for b in decoded.bad]
        decoded = DecodedBatch(decoded.values, bad)
    return PolledBatch(decoded, next_offsets, count, newest / 1000.0,
                       time.monotonic() if polled_at is None else polled_at, by_partition)


class PartitionSource:
    """Actor-owned partitions of one topic, read from given offsets (no group rebalancing)."""

    def __init__(self, consumer: Any, topic: str, num_categories: int,
                 event_format: EventFormat | None = None) -> None:
        self._consumer = consumer
        self.topic = topic
        self.num_categories = num_categories
        self.event_format = event_format
        self.partitions: list[int] = []

    def _tp(self, partition: int) -> TopicPartition:
        return TopicPartition(self.topic, partition)

    def topic_partitions(self) -> list[int]:
        return [tp.partition for tp in topic_partitions(self._consumer, self.topic)]

    def assign(self, partitions: Iterable[int]) -> None:
        self.partitions = list(partitions)
        self._consumer.assign([self._tp(p) for p in self.partitions])

    def seek(self, resume: Mapping[int, int]) -> dict[int, int]:
        """Seek each partition to ``resume``, else the group's committed offset, else the
        earliest; the offsets known (resume or committed) by partition."""
        known: dict[int, int] = {}
        for partition in self.partitions:
            tp = self._tp(partition)
            if partition in resume:
                known[partition] = resume[partition]
                self._consumer.seek(tp, resume[partition])
                continue
            committed = self.committed(partition)
            if committed is not None:
                known[partition] = committed
                self._consumer.seek(tp, committed)
            else:
                self._consumer.seek_to_beginning(tp)
        return known

    def add(self, partitions: Iterable[int]) -> list[int]:
        """Start reading ``partitions`` too (added to the topic while running): the group's
        committed offset, else the beginning; the partitions read so far keep their
        positions (records already polled are not polled again). The new ones."""
        new = [p for p in partitions if p not in self.partitions]
        if not new:
            return []
        positions = {p: self._consumer.position(self._tp(p)) for p in self.partitions}
        self.assign([*self.partitions, *new])
        for partition, position in positions.items():
            self._consumer.seek(self._tp(partition), position)
        for partition in new:
            committed = self.committed(partition)
            if committed is not None:
                self._consumer.seek(self._tp(partition), committed)
            else:
                self._consumer.seek_to_beginning(self._tp(partition))
        return new

    def committed(self, partition: int) -> int | None:
        try:
            committed = self._consumer.committed(self._tp(partition))
        except Exception as exc:  # a broker without group support: start from earliest
            log.warning("cannot read the committed offset of %s[%d]: %s",
                        self.topic, partition, exc)
            return None
        return None if committed is None else int(committed)

    def beginning_offsets(self) -> dict[int, int]:
        starts = self._consumer.beginning_offsets([self._tp(p) for p in self.partitions])
        return {tp.partition: int(offset or 0) for tp, offset in starts.items()}

    def poll(self, timeout_ms: int, max_records: int) -> PolledBatch | None:
        records = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        if not records:
            return None
        return decode_poll(records, self.num_categories, event_format=self.event_format)

    def highwaters(self) -> dict[int, int]:
        """The high watermark of each partition from the last fetch (absent before one)."""
        marks = {p: self._consumer.highwater(self._tp(p)) for p in self.partitions}
        return {p: int(h) for p, h in marks.items() if h is not None}

    def commit(self, offsets: Mapping[int, int]) -> None:
        self._consumer.commit(
            {self._tp(p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()}
        )

    def close(self) -> None:
        self._consumer.close()
