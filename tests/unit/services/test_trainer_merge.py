"""The learner's event-time merge: pieces of many partitions leave in the stream's order."""

from __future__ import annotations

import torch

from services.trainer.merge import EventTimeMerge, Pieces
from services.trainer.source import Block

K = 3


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def block(partition: int, start: int, times: list[float], category: int | None = None,
          dead: dict[str, int] | None = None) -> Block:
    """A block of one value per piece (of ``category``, default the partition's), at ``times``."""
    counts = torch.zeros(len(times), K, dtype=torch.int64)
    counts[:, partition % K if category is None else category] = 1
    return Block(partition, start, start + len(times), counts,
                 torch.tensor(times, dtype=torch.float64), dead or {})


def released_order(pieces: Pieces) -> list[tuple[int, float]]:
    return [(int(row.argmax()), float(t)) for row, t in zip(pieces.counts, pieces.times,
                                                           strict=True)]


def test_pieces_leave_in_time_order_across_partitions_once_all_have_data() -> None:
    clock = Clock()
    merge = EventTimeMerge(K, idle_s=5, clock=clock)
    merge.watch(0)
    merge.watch(1)
    merge.add(block(0, 0, [1.0, 2.0, 3.0, 4.0]))  # partition 0 read far ahead
    assert len(merge.release()) == 0  # partition 1 has no data yet: it holds 0 back
    merge.add(block(1, 0, [1.5, 2.5]))
    out = merge.release()
    # the watermark is partition 1's newest time, 2.5: 0's pieces up to 2.0 and 1's up to 2.5
    assert released_order(out) == [(0, 1.0), (1, 1.5), (0, 2.0), (1, 2.5)]
    assert [(p, end) for _, p, end, _, _ in out.ends] == [(1, 2)]  # partition 1's block is done
    assert merge.waiting() == 1  # the rest of 0's block waits for 1 to catch up


def test_a_silent_partition_stops_holding_the_others_back_after_idle_s() -> None:
    clock = Clock()
    merge = EventTimeMerge(K, idle_s=2, clock=clock)
    merge.watch(0)
    merge.watch(1)
    merge.add(block(0, 0, [1.0, 2.0]))
    assert len(merge.release()) == 0
    clock.now += 2.5
    assert len(merge.release()) == 2


def test_a_partition_at_its_logs_end_holds_nobody_back_until_its_next_block() -> None:
    merge = EventTimeMerge(K, idle_s=60, clock=Clock())
    merge.watch(0)
    merge.watch(1)
    merge.caught_up([1])
    merge.add(block(0, 0, [1.0, 2.0]))
    assert len(merge.release()) == 2
    merge.add(block(1, 0, [5.0]))  # data again: it holds 0 back from here on
    merge.add(block(0, 2, [6.0]))
    assert released_order(merge.release()) == [(1, 5.0)]


def test_a_partitions_pieces_keep_their_offset_order_even_when_its_clock_steps_back() -> None:
    merge = EventTimeMerge(K, idle_s=60, clock=Clock())
    merge.watch(0)
    merge.add(block(0, 0, [5.0, 6.0]))
    merge.add(block(0, 2, [1.0, 7.0]))  # a producer's clock stepped back: not before 6.0
    out = merge.release()
    assert [float(t) for t in out.times] == [5.0, 6.0, 6.0, 7.0]
    assert [end for _, _, end, _, _ in out.ends] == [2, 4]


def test_full_at_the_cap_of_waiting_blocks_and_room_again_when_released() -> None:
    merge = EventTimeMerge(K, idle_s=60, max_blocks=2, clock=Clock())
    merge.watch(0)
    merge.watch(1)
    merge.add(block(0, 0, [1.0]))
    merge.add(block(0, 1, [2.0]))
    assert merge.full(0) and not merge.full(1)
    merge.add(block(1, 0, [3.0]))
    merge.release()
    assert not merge.full(0)


def test_a_block_of_only_dead_letters_moves_its_offset_on() -> None:
    merge = EventTimeMerge(K, idle_s=60, clock=Clock())
    merge.watch(0)
    empty = Block(0, 0, 7, torch.zeros(0, K, dtype=torch.int64),
                  torch.zeros(0, dtype=torch.float64), {"not_a_number": 7})
    merge.add(empty)
    out = merge.release()
    assert len(out) == 1 and float(out.counts.sum()) == 0
    assert out.ends == [(0, 0, 7, {"not_a_number": 7}, 0)]


def test_everything_leaves_when_the_learner_stops() -> None:
    merge = EventTimeMerge(K, idle_s=60, clock=Clock())
    merge.watch(0)
    merge.watch(1)
    merge.add(block(0, 0, [1.0, 2.0, 3.0]))
    assert len(merge.release()) == 0
    assert len(merge.release(everything=True)) == 3 and merge.waiting() == 0


def test_pieces_take_keeps_the_block_ends_with_their_rows() -> None:
    merge = EventTimeMerge(K, idle_s=60, clock=Clock())
    merge.watch(0)
    merge.add(block(0, 0, [1.0, 2.0]))
    merge.add(block(0, 2, [3.0]))
    pieces = merge.release()
    head = pieces.take(2)
    assert [e[:3] for e in head.ends] == [(1, 0, 2)]
    assert [e[:3] for e in pieces.ends] == [(0, 0, 3)] and len(pieces) == 1
