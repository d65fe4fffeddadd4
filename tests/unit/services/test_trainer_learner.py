"""The model's one learner: blocks accepted only at their partition's next offset, learned in
event time, one step per step_size values while it keeps up, checkpointed with the offsets."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from services.common.settings import TrainerServiceSettings
from services.trainer import learner as learner_module
from services.trainer.checkpoint import CheckpointError, CheckpointStore, learner_dir
from services.trainer.learner import (
    LATENCY_BOUNDS_S,
    LearnerActor,
    StepSizer,
    _plan,
    _split_large_steps,
)
from services.trainer.source import Block, make_block

K = 5


def settings(tmp_path: Path | None, **trainer: object) -> TrainerServiceSettings:
    return TrainerServiceSettings(trainer={"num_categories": K, "model_id": "m",
                                           "checkpoint_dir": tmp_path, **trainer})


def block(partition: int, start: int, values: list[int], t0: float = 1.0,
          piece: int = 16) -> Block:
    """Records a millisecond apart from ``t0``, in rows of ``piece`` values."""
    return make_block(partition, start, start + len(values), values, K,
                      stamps_ms=[round(t0 * 1000) + i for i in range(len(values))],
                      max_rows=-(-len(values) // piece))


@pytest.fixture
def no_wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Steps decided by values alone: a slow machine must not count as a learner behind."""
    monkeypatch.setattr(learner_module, "BEHIND_S", 3600.0)
    monkeypatch.setattr(learner_module, "PARTIAL_STEP_WAIT_S", 3600.0)


def started(tmp_path: Path | None, **trainer: object) -> LearnerActor:
    actor = LearnerActor(settings(tmp_path, **trainer))
    actor.start(background=False)
    return actor


def test_a_claim_fixes_where_each_partition_begins_and_later_claims_get_the_same() -> None:
    actor = started(None)
    assert actor.claim({0: (0, None), 1: (5, None)}) == {0: 0, 1: 5}
    actor.offer([block(0, 0, [1] * 10)])
    assert actor.claim({0: (0, 3)}) == {0: 10}  # where the next block must begin now


def test_only_a_block_at_its_partitions_next_offset_is_accepted() -> None:
    """Duplicates, replays and a zombie's late blocks are refused by construction."""
    actor = started(None)
    actor.claim({0: (0, None)})
    first = actor.offer([block(0, 0, [2] * 10)])
    assert first.accepted == [0]
    again = actor.offer([block(0, 0, [2] * 10)])  # the same block twice (a replay)
    assert again.refused == {0: 10} and not again.accepted
    gap = actor.offer([block(0, 12, [2] * 3)])  # a block past a gap: never skip records
    assert gap.refused == {0: 10}
    assert actor.offer([block(3, 0, [1])]).unknown == [3]  # never claimed
    assert actor.offer([block(0, 10, [3] * 4)]).accepted == [0]


def test_a_zombie_reader_of_a_partition_is_refused_once_its_successor_moved_on() -> None:
    actor = started(None)
    actor.claim({0: (0, None)})
    zombie_next = block(0, 0, [1] * 8)  # polled by an actor that then stalled
    assert actor.offer([block(0, 0, [1] * 8)]).accepted == [0]  # its successor's, same range
    assert actor.offer([block(0, 8, [4] * 8)]).accepted == [0]
    assert actor.offer([zombie_next]).refused == {0: 16}
    while actor.learn_round(flush=True):
        pass
    assert actor.status().samples_seen == 16  # each offset once


def test_a_partition_at_its_cap_is_full_until_the_learner_makes_room() -> None:
    actor = started(None, waiting_blocks=2, idle_s=60)
    actor.claim({0: (0, None), 1: (0, None)})  # 1 holds 0 back: nothing can leave
    assert actor.offer([block(0, 0, [1] * 4)]).accepted == [0]
    assert actor.offer([block(0, 4, [1] * 4)]).accepted == [0]
    assert actor.offer([block(0, 8, [1] * 4)]).full == [0]
    assert actor.offer([block(1, 0, [2] * 4, t0=5.0)]).accepted == [1]
    actor.learn_round(flush=True)
    assert actor.offer([block(0, 8, [1] * 4)]).accepted == [0]


def test_offsets_move_only_as_far_as_the_model_has_learned(no_wall_clock: None) -> None:
    actor = started(None, step_size=256)
    actor.claim({0: (0, None)})
    actor.offer([block(0, 0, [1] * 100)])
    actor.learn_round()  # 100 < step_size: the step waits for more values
    assert actor.status().offsets == {"0": 0} and actor.status().steps == 0
    actor.offer([block(0, 100, [2] * 200)])
    actor.learn_round()  # one step of 260 values (rows of 16 are never split): 40 wait
    status = actor.status()
    # row by row: the first block and 10 rows of the second, not the 40 values that wait
    assert status.steps == 1 and status.offsets == {"0": 260}
    assert status.values_by_partition == {"0": 260}
    assert status.baseline_counts == (0, 100, 160, 0, 0)
    actor.learn_round(flush=True)
    assert actor.status().offsets == {"0": 300}


def test_a_round_takes_at_most_round_steps_of_the_step_size_it_is_given() -> None:
    sizes = torch.full((64,), 16.0)  # 1,024 values waiting
    segments, learned, counted = _plan(sizes, 256, 8, count_rest=False, flush=False)
    assert (learned, counted, int(segments.max()) + 1) == (64, 0, 4)  # 4 steps of 256
    sizes = torch.full((640,), 16.0)  # 10,240 values waiting
    segments, learned, counted = _plan(sizes, 1024, 8, count_rest=False, flush=False)
    assert (learned, counted, int(segments.max()) + 1) == (512, 0, 8)  # 8 steps of 1,024
    segments, learned, counted = _plan(sizes, 256, 8, count_rest=True, flush=False)
    assert (learned, counted) == (128, 512)  # sample: 8 steps of 256, the rest counted
    _, learned, _ = _plan(torch.full((5,), 16.0), 256, 8, count_rest=False, flush=True)
    assert learned == 5  # flushed: the small last step too


def test_steps_double_while_behind_and_halve_back_once_less_than_a_step_waits() -> None:
    sizer = StepSizer(256, largest=4096)
    assert [sizer.next(behind=True, waiting=1e6) for _ in range(6)] == [
        512, 1024, 2048, 4096, 4096, 4096]  # doubled up to the largest
    assert sizer.next(behind=False, waiting=5000) == 4096  # keeps up: a step or more waits
    assert [sizer.next(behind=False, waiting=100) for _ in range(6)] == [
        2048, 1024, 512, 256, 256, 256]  # back to step_size, never below


def test_a_learner_behind_learns_every_value_in_steps_that_grow_until_it_keeps_up() -> None:
    """What waits would take longer than BEHIND_S at the recent seconds a step: the steps
    double round by round; every value is still learned, and afterwards they shrink back."""
    actor = started(None, step_size=256)
    actor.claim({0: (0, None)})
    values = torch.multinomial(torch.tensor([0.0, 0.0, 0.1, 0.3, 0.6]), 200_000, True,
                               generator=torch.Generator().manual_seed(0))
    actor.offer([block(0, 0, values.tolist(), t0=1.0, piece=1_000)])
    actor._seconds_per_step = 0.01  # as if each step took 10 ms: 200,000 values are 7.8 s
    sizes = []
    while actor.learn_round():
        sizes.append(actor.step_sizer.size)
    assert sizes[:3] == [512, 1024, 2048] and max(sizes) > 2048
    while actor.learn_round(flush=True):
        pass
    status = actor.status()
    assert status.samples_seen == 200_000 == status.gan_learned
    assert status.steps < 200_000 // 256  # fewer, larger steps than one per step_size
    actor.learn_round()  # nothing waits: the steps shrink back
    assert actor.step_sizer.size < max(sizes)


def test_a_slow_stream_waiting_for_a_whole_step_is_not_behind() -> None:
    """Less than a step waiting past BEHIND_S is a stream slower than the steps, not a learner
    behind: the step stays step_size (doubling it only made the values wait longer)."""
    actor = started(None, step_size=256)
    actor.claim({0: (0, None)})
    actor.offer([block(0, 0, [2] * 100)])
    actor.learn_round()  # releases the 100 values; less than a step: they wait
    actor._rows.released_at[:] -= 10 * learner_module.BEHIND_S  # as if they waited long
    actor.learn_round()
    assert actor.step_sizer.size == 256


def test_a_backlog_the_learner_clears_in_time_is_learned_a_step_per_step_size(
    no_wall_clock: None,
) -> None:
    actor = started(None, step_size=256)
    actor.claim({0: (0, None)})
    values = torch.multinomial(torch.tensor([0.0, 0.0, 0.1, 0.3, 0.6]), 25_600, True,
                               generator=torch.Generator().manual_seed(0))
    for i in range(0, 25_600, 2_560):
        actor.offer([block(0, i, values[i:i + 2_560].tolist(), t0=1.0 + i)])
    while actor.learn_round():
        pass
    status = actor.status()
    assert status.steps == 100 and status.samples_seen == 25_600 == status.gan_learned


def test_the_checkpoint_holds_the_model_and_the_learned_offsets(tmp_path: Path) -> None:
    actor = started(tmp_path)
    actor.claim({0: (0, None), 1: (0, None)})
    actor.offer([block(0, 0, [1] * 300), block(1, 0, [3] * 300)])
    actor.learn_round(flush=True)
    final = actor.stop()
    again = started(tmp_path)
    status = again.status()
    assert status.offsets == final.offsets == {"0": 300, "1": 300}
    assert status.values_by_partition == {"0": 300, "1": 300}
    assert status.baseline_counts == final.baseline_counts == (0, 300, 0, 300, 0)
    assert status.estimate == final.estimate and status.restored_seq == final.checkpoint_seq
    assert again.claim({0: (0, None)}) == {0: 300}
    assert again.offer([block(0, 0, [1] * 300)]).refused == {0: 300}  # replayed after restart


def test_blocks_accepted_but_not_learned_are_not_in_the_checkpoint(tmp_path: Path) -> None:
    actor = started(tmp_path, idle_s=60)
    actor.claim({0: (0, None), 1: (0, None)})
    actor.offer([block(0, 0, [1] * 300)])  # waits for partition 1 in the merge
    actor.checkpoint()
    restored = CheckpointStore(learner_dir(tmp_path, "m")).load_latest()
    assert restored is not None and restored.state["offsets"] == {0: 0, 1: 0}


def test_checkpoints_of_the_per_partition_layout_are_refused_not_mixed(tmp_path: Path) -> None:
    old = tmp_path / "m" / "actor-0"
    CheckpointStore(old).save({"format": 2, "learners": {}, "offsets": {0: 10}})
    with pytest.raises(CheckpointError, match="per-partition layout.*relearn.*accept_loss"):
        started(tmp_path)
    relearned = started(tmp_path, on_corrupt_checkpoint="relearn")
    assert relearned.claim({0: (2, 10)}) == {0: 2}
    assert relearned.status().records_skipped == 2  # deleted by retention before the start
    accepted = started(tmp_path, on_corrupt_checkpoint="accept_loss", model_id="m")
    assert accepted.claim({0: (2, 10)}) == {0: 10}
    assert accepted.status().records_skipped == 10
    assert (old / "ckpt-000000000001.pt").exists()  # left alone


def test_a_group_committed_past_the_start_without_a_checkpoint_is_a_lost_history(
    tmp_path: Path,
) -> None:
    with pytest.raises(CheckpointError, match="committed offset 50"):
        started(tmp_path / "a").claim({0: (0, 50)})
    assert started(tmp_path / "b").claim({0: (0, None)}) == {0: 0}  # a first start
    accepted = started(tmp_path / "c", on_corrupt_checkpoint="accept_loss")
    assert accepted.claim({0: (0, 50)}) == {0: 50}
    assert accepted.status().records_skipped == 50


def test_without_a_checkpoint_dir_the_groups_committed_offsets_are_the_history() -> None:
    """No checkpoints are kept at all: the group's offsets say where the model left off."""
    assert started(None).claim({0: (0, 50), 1: (7, None)}) == {0: 50, 1: 7}
    assert started(None).status().records_skipped == 0


def test_dead_letters_count_with_the_offsets_of_the_blocks_learned() -> None:
    actor = started(None)
    actor.claim({0: (0, None)})
    dead = make_block(0, 0, 3, [], K, per_record=[0] * 3,
                      bad=[(o, "not_a_number") for o in range(3)])
    actor.offer([dead])
    actor.learn_round(flush=True)
    status = actor.status()
    assert status.dead_letters == 3 and status.offsets == {"0": 3}


def test_one_gan_learns_a_keyed_backlog_as_the_whole_streams_mix(no_wall_clock: None) -> None:
    """Partition p holds the categories c with c mod 4 == p, read one after the other (each
    partition's whole backlog in one go): the merge orders the pieces by time, so the one GAN
    sees the stream's mix. Seed 0; over seeds 0-4 the TV was 0.0013-0.0047 (the issue's
    goal is 0.01, the bound); learning the blocks as they come instead gave 0.70."""
    gen = torch.Generator().manual_seed(0)
    truth = torch.tensor([0.05, 0.1, 0.15, 0.3, 0.4])
    n = 60_000
    values = torch.multinomial(truth, n, True, generator=gen)
    times = torch.arange(n, dtype=torch.float64) * 1e-3 + 1.0
    actor = started(None, idle_s=60)
    actor.claim({p: (0, None) for p in range(4)})
    for p in range(4):
        mine = values % 4 == p
        own, own_times = values[mine], times[mine]
        offset = 0
        for i in range(0, own.numel(), 4096):
            chunk, chunk_times = own[i:i + 4096], own_times[i:i + 4096]
            times_ms = (chunk_times * 1000).round().long().tolist()
            actor.offer([make_block(p, offset, offset + chunk.numel(), chunk, K,
                                    stamps_ms=times_ms, max_rows=-(-chunk.numel() // 64))])
            offset += chunk.numel()
            while actor.learn_round():
                pass
    while actor.learn_round(flush=True):
        pass
    status = actor.status()
    assert status.samples_seen == n
    empirical = torch.bincount(values, minlength=K).double() / n
    tv = 0.5 * float((torch.tensor(status.estimate, dtype=torch.float64) - empirical).abs().sum())
    assert tv < 0.01, tv


def test_round_steps_and_behind_are_the_documented_constants() -> None:
    assert learner_module.ROUND_STEPS == 8 and learner_module.BEHIND_S == 0.25


def test_a_checkpoint_inside_a_block_names_exactly_what_its_model_learned(
        tmp_path: Path, no_wall_clock: None) -> None:
    """A learner killed after stepping part of a block: the ingest actor replays from the
    checkpoint's offset, and every value is counted once (a record is never split between
    rows, and each row moves the offset). A bad record mid-block counts when its row does."""
    actor = started(tmp_path, step_size=256)
    actor.claim({0: (0, None)})
    values = [i % K for i in range(300)]
    bad = [(150, "not_a_number")]
    per_record = [0 if o == 150 else 1 for o in range(301)]
    whole = make_block(0, 0, 301, values, K, per_record=per_record, bad=bad,
                       stamps_ms=[1000 + i for i in range(301)], max_rows=301)
    actor.offer([whole])
    actor.learn_round()  # one step of 256 values; 44 wait
    actor.checkpoint()
    status = actor.status()
    assert status.offsets == {"0": 257} and status.samples_seen == 256  # 256 values + 1 bad
    assert status.dead_letters == 1
    again = started(tmp_path, step_size=256)
    assert again.claim({0: (0, None)}) == {0: 257}  # where the ingest actor replays from
    rest = make_block(0, 257, 301, values[256:], K,
                      stamps_ms=[1000 + o for o in range(257, 301)])
    assert again.offer([rest]).accepted == [0]
    again.learn_round(flush=True)
    final = again.status()
    assert final.samples_seen == 300 and final.offsets == {"0": 301}
    assert final.values_by_partition == {"0": 300} and final.dead_letters == 1
    assert final.baseline_counts == tuple(values.count(c) for c in range(K))


def test_a_packed_record_larger_than_a_step_is_learned_in_steps_of_step_size() -> None:
    """A row is a whole record (for exact offsets), but the GAN still steps ``step_size``
    values at a time: the record's counts are cut in proportion, all in one round."""
    counts = torch.tensor([[1000.0, 2000.0, 1000.0, 0.0, 0.0], [10.0, 20.0, 30.0, 40.0, 50.0]])
    split = _split_large_steps(counts, 256)
    assert split.shape[0] == 15 + 1 and torch.equal(split.sum(0), counts.sum(0))
    assert 256 <= float(split[:15].sum(1).min()) and float(split[:15].sum(1).max()) <= 2 * 256


def test_each_value_learned_counts_in_the_latency_histogram(no_wall_clock: None) -> None:
    actor = started(None, step_size=16)
    actor.claim({0: (0, None)})
    now_ms = round(time.time() * 1000)
    actor.offer([make_block(0, 0, 32, [1] * 32, K, stamps_ms=[now_ms - 2000] * 32)])
    actor.learn_round(flush=True)
    histogram = actor.status().learn_latency
    assert len(histogram) == len(LATENCY_BOUNDS_S) and sum(histogram) == 32
    (bucket,) = [i for i, n in enumerate(histogram) if n]
    assert LATENCY_BOUNDS_S[bucket - 1] < 2.0 <= LATENCY_BOUNDS_S[bucket] * 1.2  # about 2 s old


def test_the_status_carries_cumulative_latency_histograms(no_wall_clock: None) -> None:
    """Issue 22 §3: step time, record-to-step and poll-to-step, cumulative since the start."""
    actor = started(None, step_size=16)
    actor.claim({0: (0, None)})
    now = time.time()
    stamps = [round((now - 2.0) * 1000)] * 32
    actor.offer([make_block(0, 0, 32, [1] * 32, K, stamps_ms=stamps, polled_at=now - 0.5)])
    actor.learn_round(flush=True)
    status = actor.status()
    record, poll, step = status.record_to_step, status.poll_to_step, status.step_duration
    assert record is not None and poll is not None and step is not None
    assert record.count == poll.count == 32  # one observation per value learned
    assert record.sum == pytest.approx(32 * 2.0, rel=0.1)
    assert poll.sum == pytest.approx(32 * 0.5, rel=0.3)
    assert record.counts == sorted(record.counts) and len(record.bounds) <= 25
    assert record.counts[[b >= 2.0 for b in record.bounds].index(True)] == 32  # all < ~2 s
    assert step.count == status.steps > 0 and step.sum > 0
    actor.offer([make_block(0, 32, 48, [2] * 16, K)])  # no poll time known: not observed
    actor.learn_round(flush=True)
    later = actor.status()
    assert later.poll_to_step == poll and later.record_to_step.count == 48
    assert later.step_duration.count == later.steps > step.count
