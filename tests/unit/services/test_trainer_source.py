"""A poll reduced to blocks: per-partition offsets, counts in pieces, piece times, bad records."""

from __future__ import annotations

from collections import namedtuple

import torch
from kafka import TopicPartition

from services.trainer.source import MAX_ROWS, decode_poll, piece_counts, piece_times

Record = namedtuple("Record", "topic partition offset key value headers timestamp")


def records(partition: int, start: int, values: list[bytes], t0: int = 1_700_000_000_000
            ) -> list[Record]:
    return [Record("n", partition, start + i, None, v, [], t0 + i) for i, v in enumerate(values)]


def test_piece_counts_cut_values_into_consecutive_pieces() -> None:
    counts = piece_counts(torch.tensor([0, 1, 1, 2, 2, 2, 0]), 3, 3)
    assert counts.tolist() == [[1, 2, 0], [0, 0, 3], [1, 0, 0]]
    assert piece_counts(torch.tensor([], dtype=torch.int64), 3, 3).shape == (0, 3)


def test_piece_times_are_each_pieces_newest_record() -> None:
    assert piece_times([1000, 3000, 2000, 4000], 2).tolist() == [3.0, 4.0]
    assert piece_times([], 2).tolist() == [0.0, 0.0]


def test_a_block_per_partition_with_its_range_counts_and_dead_letters() -> None:
    poll = decode_poll({
        TopicPartition("n", 0): records(0, 10, [b"1", b"x", b"2", b"2"]),
        TopicPartition("n", 3): records(3, 0, [b"4"]),
    }, 5, piece=2, starts={0: 8})
    assert poll is not None and poll.records == 5
    first, second = poll.blocks
    # begins where the reader was (offsets 8-9 were a gap in the log), ends after the last
    assert (first.partition, first.start, first.end) == (0, 8, 14)
    assert first.counts.tolist() == [[0, 1, 1, 0, 0], [0, 0, 1, 0, 0]]
    assert first.dead_letters == {"not_integer": 1}
    assert [b.offset for b in poll.bad] == [11]
    assert (second.start, second.end, second.values) == (0, 1, 1)
    assert second.last_time == 1_700_000_000.0


def test_a_poll_of_many_values_has_at_most_max_rows_rows_a_block() -> None:
    packed = [Record("n", 0, 0, None, bytes(range(5)) * 2000, [("gumbel-format", b"u8")],
                     1_700_000_000_000)] * 30
    packed = [r._replace(offset=i) for i, r in enumerate(packed)]
    (block,) = decode_poll({TopicPartition("n", 0): packed}, 5, piece=16).blocks
    assert block.values == 300_000 and block.counts.shape[0] <= MAX_ROWS


def test_an_empty_poll_is_none() -> None:
    assert decode_poll({}, 5) is None
