"""A poll reduced to blocks: per-partition offsets, counts in pieces, piece times, bad records."""

from __future__ import annotations

import time
from collections import namedtuple

from kafka import TopicPartition

from services.trainer.source import (
    MAX_CELLS,
    MAX_ROWS,
    block_rows,
    decode_poll,
    make_block,
)

Record = namedtuple("Record", "topic partition offset key value headers timestamp")


def records(partition: int, start: int, values: list[bytes], t0: int = 1_700_000_000_000
            ) -> list[Record]:
    return [Record("n", partition, start + i, None, v, [], t0 + i) for i, v in enumerate(values)]


def test_a_block_cuts_whole_records_into_rows_each_with_its_end_offset() -> None:
    # records 10..14: one value, a bad one, a packed record of 3 values, one value, bad
    block = make_block(0, 10, 15, [0, 1, 1, 2, 2], 3, per_record=[1, 0, 3, 1, 0],
                       offsets=[10, 11, 12, 13, 14], stamps_ms=[3000, 1000, 2000, 4000, 5000],
                       bad=[(11, "not_integer"), (14, "out_of_range")], max_rows=2)
    # pieces of about 3 values (5 values, 2 rows), never splitting the packed record
    assert block.counts.tolist() == [[1, 2, 1], [0, 0, 1]]
    assert block.row_ends.tolist() == [13, 15]  # the last row takes the trailing bad record
    assert block.times.tolist() == [3.0, 5.0]  # each row's newest, non-decreasing
    assert block.dead_rows == ((0, {"not_integer": 1}), (1, {"out_of_range": 1}))
    assert block.dead_letters == {"not_integer": 1, "out_of_range": 1}


def test_a_block_per_partition_with_its_range_counts_and_dead_letters() -> None:
    poll = decode_poll({
        TopicPartition("n", 0): records(0, 10, [b"1", b"x", b"2", b"2"]),
        TopicPartition("n", 3): records(3, 0, [b"4"]),
    }, 5, max_rows=2, starts={0: 8})
    assert poll is not None and poll.records == 5
    first, second = poll.blocks
    # begins where the reader was (offsets 8-9 were a gap in the log), ends after the last
    assert (first.partition, first.start, first.end) == (0, 8, 14)
    assert first.counts.tolist() == [[0, 1, 1, 0, 0], [0, 0, 1, 0, 0]]
    assert first.dead_letters == {"not_integer": 1}
    assert [b.offset for b in poll.bad] == [11]
    assert (second.start, second.end, second.values) == (0, 1, 1)
    assert second.times.tolist() == [1_700_000_000.0]


def test_every_block_of_a_poll_says_when_it_was_polled_in_wall_clock_time() -> None:
    """The learner, another process, measures poll-to-step from it (issue 22 §3)."""
    before = time.time()
    poll = decode_poll({TopicPartition("n", 0): records(0, 0, [b"1"]),
                        TopicPartition("n", 1): records(1, 0, [b"x"])}, 5)
    assert poll is not None
    assert [before <= b.polled_at <= time.time() for b in poll.blocks] == [True, True]
    assert make_block(0, 0, 1, [1], 5).polled_at == 0.0  # unknown


def test_a_poll_of_many_values_has_at_most_max_rows_rows_a_block() -> None:
    packed = [Record("n", 0, 0, None, bytes(range(5)) * 2000, [("gumbel-format", b"u8")],
                     1_700_000_000_000)] * 30
    packed = [r._replace(offset=i) for i, r in enumerate(packed)]
    (block,) = decode_poll({TopicPartition("n", 0): packed}, 5).blocks
    # a record is never split between rows: its values are learned, and checkpointed, whole
    assert block.values == 300_000 and block.counts.shape[0] == 30 <= MAX_ROWS


def test_a_block_is_a_value_a_row_until_its_rows_or_counts_run_out() -> None:
    polled = [Record("n", 0, i, None, b"%d" % (i % 5), [], 1_700_000_000_000 + i)
              for i in range(100)]
    (block,) = decode_poll({TopicPartition("n", 0): polled}, 5).blocks
    assert block.counts.sum(1).tolist() == [1] * 100  # a keyed stream's steps mix partitions
    assert block_rows(65_536) == MAX_CELLS // 65_536 < MAX_ROWS  # a large K: longer pieces


def test_an_empty_poll_is_none() -> None:
    assert decode_poll({}, 5) is None


def test_many_packed_records_make_at_most_max_rows_rows() -> None:
    one = Record("n", 0, 0, None, bytes(range(5)) * 20, [("gumbel-format", b"u8")],
                 1_700_000_000_000)
    packed = [one._replace(offset=i) for i in range(10_000)]  # 1,000,000 values
    (block,) = decode_poll({TopicPartition("n", 0): packed}, 5).blocks
    assert block.values == 1_000_000 and MAX_ROWS // 2 < block.counts.shape[0] <= MAX_ROWS
    assert block.row_ends[-1] == 10_000 and bool((block.row_ends.diff() > 0).all())
