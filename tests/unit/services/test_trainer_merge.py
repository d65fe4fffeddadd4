"""The learner's event-time merge: pieces of many partitions leave in the stream's order."""

from __future__ import annotations

from services.trainer.merge import (
    LAG_MEMORY_S,
    MAX_LATENESS_S,
    MIN_LATENESS_S,
    EventTimeMerge,
    Pieces,
)
from services.trainer.source import Block, make_block

K = 3


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def block(partition: int, start: int, times: list[float], category: int | None = None
          ) -> Block:
    """A block of one value per piece (of ``category``, default the partition's), at ``times``."""
    value = partition % K if category is None else category
    return make_block(partition, start, start + len(times), [value] * len(times), K,
                      stamps_ms=[round(t * 1000) for t in times])


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
    # each row moves its partition's offset on: partition 1's block is done, 0's half
    assert list(zip(out.partitions.tolist(), out.row_ends.tolist(), strict=True)) == [
        (0, 1), (1, 1), (0, 2), (1, 2)]
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


def test_a_partition_at_its_logs_end_holds_the_others_back_only_to_its_report() -> None:
    """Its reader said it was at the end at wall time 1000: it holds the others back to the
    lateness allowance before that (MIN_LATENESS_S while nothing lags), until its next block."""
    clock = Clock()
    merge = EventTimeMerge(K, idle_s=60, clock=clock, wall_clock=lambda: 1000.0)
    merge.watch(0)
    merge.watch(1)
    merge.caught_up([1])
    assert merge.allowance() == MIN_LATENESS_S
    merge.add(block(0, 0, [999.5, 999.95]))  # both older than the report: 0.5 s, 0.05 s
    assert released_order(merge.release()) == [(0, 999.5)]  # 999.95 is within the allowance
    merge.add(block(1, 0, [1000.5]))  # data again: it holds 0 back to its newest from here on
    merge.add(block(0, 2, [1001.0]))
    assert released_order(merge.release()) == [(0, 999.95), (1, 1000.5)]


def test_the_allowance_follows_the_streams_lag_up_to_its_cap_and_forgets_it() -> None:
    clock, wall = Clock(), [1000.0]
    # the cap is its own, whatever idle_s: a long idle_s does not lengthen it
    merge = EventTimeMerge(K, idle_s=60, clock=clock, wall_clock=lambda: wall[0])
    merge.watch(0)
    merge.watch(1)
    merge.add(block(0, 0, [999.4]))  # arrived 0.6 s after it was stamped (a producer's queue)
    assert abs(merge.allowance() - 0.6) < 1e-9
    merge.add(block(1, 0, [900.0]))  # a backlog read from the past: at most the cap
    assert merge.allowance() == MAX_LATENESS_S
    clock.now += LAG_MEMORY_S + 1
    assert merge.allowance() == MIN_LATENESS_S


def test_a_record_older_than_what_has_left_is_learned_and_counted_late() -> None:
    merge = EventTimeMerge(K, idle_s=60, clock=Clock(), wall_clock=lambda: 1000.0)
    merge.watch(0)
    merge.watch(1)
    merge.caught_up([1])
    merge.add(block(0, 0, [10.0, 11.0]))
    assert len(merge.release()) == 2
    merge.add(block(1, 0, [10.5, 12.0]))  # 10.5 comes after 11.0 has left
    assert merge.late_values == 1  # learned at once all the same; 12.0 waits for partition 0
    assert released_order(merge.release()) == [(1, 10.5)]


def test_a_partitions_pieces_keep_their_offset_order_even_when_its_clock_steps_back() -> None:
    merge = EventTimeMerge(K, idle_s=60, clock=Clock())
    merge.watch(0)
    merge.add(block(0, 0, [5.0, 6.0]))
    merge.add(block(0, 2, [1.0, 7.0]))  # a producer's clock stepped back: not before 6.0
    out = merge.release()
    assert [float(t) for t in out.times] == [5.0, 6.0, 6.0, 7.0]
    assert out.row_ends.tolist() == [1, 2, 3, 4]


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
    merge.add(make_block(0, 0, 7, [], K, per_record=[0] * 7,
                         bad=[(o, "not_a_number") for o in range(7)]))
    out = merge.release()
    assert len(out) == 1 and float(out.counts.sum()) == 0
    assert out.row_ends.tolist() == [7] and out.dead == [(0, {"not_a_number": 7})]


def test_everything_leaves_when_the_learner_stops() -> None:
    merge = EventTimeMerge(K, idle_s=60, clock=Clock())
    merge.watch(0)
    merge.watch(1)
    merge.add(block(0, 0, [1.0, 2.0, 3.0]))
    assert len(merge.release()) == 0
    assert len(merge.release(everything=True)) == 3 and merge.waiting() == 0


def test_pieces_take_keeps_each_rows_partition_end_and_dead_letters() -> None:
    merge = EventTimeMerge(K, idle_s=60, clock=Clock())
    merge.watch(0)
    merge.add(block(0, 0, [1.0, 2.0]))
    merge.add(block(0, 2, [3.0]))
    pieces = merge.release()
    head = pieces.take(2)
    assert head.row_ends.tolist() == [1, 2] and head.partitions.tolist() == [0, 0]
    assert pieces.row_ends.tolist() == [3] and len(pieces) == 1


def test_an_expected_partition_holds_the_others_back_before_its_reader_claims_it() -> None:
    clock = Clock()
    merge = EventTimeMerge(K, idle_s=30, clock=clock)
    merge.watch(0)
    merge.expect(1)  # the topic's, its reader still starting
    merge.add(block(0, 0, [1.0, 2.0]))
    assert len(merge.release()) == 0  # partition 1 may still hold older records
    clock.now += 10
    merge.expect(0)  # expecting a watched partition changes nothing
    assert len(merge.release()) == 0
    merge.watch(1)
    merge.add(block(1, 0, [1.5]))
    assert released_order(merge.release()) == [(0, 1.0), (1, 1.5)]
    clock.now += 31  # a reader that never comes stops holding after idle_s
    merge.add(block(0, 2, [3.0]))
    merge.expect(2)
    clock.now += 31
    merge.add(block(0, 3, [4.0]))
    assert (0, 4.0) in released_order(merge.release())
