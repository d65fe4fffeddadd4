"""The trainer actor against in-memory fakes of its consumer, producer and learner."""

from __future__ import annotations

import time
from collections import namedtuple
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from kafka import TopicPartition

from services.common.schemas import Estimate
from services.common.settings import TrainerServiceSettings
from services.trainer.actor import TrainerActor, owned_partitions
from services.trainer.checkpoint import CheckpointError, CheckpointStore
from services.trainer.coordinator import aggregate
from services.trainer.learner import baseline_counts
from services.trainer.ports import Learner
from services.trainer.status import ActorStatus

Record = namedtuple("Record", "topic partition offset key value headers timestamp")


class FakeConsumer:
    """A consumer over fixed partitions of raw values; records commits, honours seeks."""

    def __init__(self, topic: str, partitions: dict[int, list[bytes | None]]) -> None:
        self.topic = topic
        self.data = partitions
        self.assigned: list[TopicPartition] = []
        self.position: dict[int, int] = {}
        self.committed_offsets: dict[int, int] = {}
        self.commits: list[dict[int, int]] = []
        self.closed = False

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(self.data) if topic == self.topic else set()

    def assign(self, tps: list[TopicPartition]) -> None:
        self.assigned = list(tps)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.position[tp.partition] = offset

    def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.position[tp.partition] = 0

    def committed(self, tp: TopicPartition) -> int | None:
        return self.committed_offsets.get(tp.partition)

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        done = {tp.partition: meta.offset for tp, meta in offsets.items()}
        self.committed_offsets.update(done)
        self.commits.append(done)

    def poll(self, timeout_ms: int = 0, max_records: int = 500) -> dict[TopicPartition, list]:
        out: dict[TopicPartition, list] = {}
        left = max_records
        for tp in self.assigned:
            start = self.position.get(tp.partition, 0)
            values = self.data[tp.partition][start : start + left]
            if values:
                out[tp] = [
                    Record(self.topic, tp.partition, start + j, None, v, [], 1_700_000_000_000)
                    for j, v in enumerate(values)
                ]
                self.position[tp.partition] = start + len(values)
                left -= len(values)
        return out

    def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.data[tp.partition]) for tp in tps}

    def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: 0 for tp in tps}

    def highwater(self, tp: TopicPartition) -> int:
        return len(self.data[tp.partition])

    def close(self) -> None:
        self.closed = True


class FakeFuture:
    """A send that the broker always accepts."""

    def add_errback(self, callback: Any, *args: Any) -> FakeFuture:
        return self


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, list]] = []
        self.pending = 0
        self.flushes = 0

    def send(self, topic: str, value: bytes | None = b"", key: bytes | None = None,
             headers: list | None = None, timestamp_ms: int | None = None) -> FakeFuture:
        self.sent.append((topic, value, headers or []))
        self.pending += 1
        return FakeFuture()

    def flush(self, timeout: float | None = None) -> None:
        self.pending = 0
        self.flushes += 1


@dataclass
class FakeCounts:
    counts: torch.Tensor  # the protocol's Baseline


@dataclass
class FakeSchedule:
    steps: int = 0  # the protocol's Schedule


@dataclass(frozen=True)
class FakeStats:
    generator_loss: float = 0.5
    discriminator_loss: float = 0.7


class FakeLearner:
    """The ``Learner`` protocol, learning the frequencies exactly (its logits are the log
    counts); enough to test wiring."""

    def __init__(self, num_categories: int = 5, seed: int = 0) -> None:
        self.k = num_categories
        self.logits = torch.zeros(num_categories)
        self.baseline = FakeCounts(torch.zeros(num_categories, dtype=torch.float64))
        self.schedule = FakeSchedule()
        self.samples_seen = 0
        self.step = 0
        self.temperature = 1.0
        self.drift_detections = 0
        self.generator = torch.Generator().manual_seed(seed)

    def count_many(self, values: torch.Tensor) -> None:
        if values.numel() and (values.min() < 0 or values.max() >= self.k):
            raise ValueError("value out of range")
        self.baseline.counts += torch.bincount(values, minlength=self.k).double()
        self.samples_seen += int(values.numel())

    def learn_many(self, values: torch.Tensor) -> FakeStats:
        self.count_many(values)
        self.logits = torch.log(self.baseline.counts.float() + 1.0)
        self.temperature *= 0.99
        torch.rand(1, generator=self.generator)
        self.step += 1
        self.schedule.steps += 1
        return FakeStats()

    def estimate(self) -> torch.Tensor:
        return torch.softmax(self.logits, 0)

    def state_dict(self) -> dict[str, Any]:
        return {
            "logits": self.logits.clone(),
            "counts": self.baseline.counts.clone(),
            "samples_seen": self.samples_seen,
            "step": self.step,
            "schedule_steps": self.schedule.steps,
            "temperature": self.temperature,
            "rng": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.logits = state["logits"].clone()
        self.baseline.counts = state["counts"].clone()
        self.samples_seen = int(state["samples_seen"])
        self.step = int(state["step"])
        self.schedule.steps = int(state["schedule_steps"])
        self.temperature = float(state["temperature"])
        self.generator.set_state(state["rng"])


# -- tests --------------------------------------------------------------------------------------

TOPIC = "numbers"


def _settings(tmp_path: Path | None, **trainer: Any) -> TrainerServiceSettings:
    options = {"num_categories": 5, "checkpoint_interval_s": 3600.0, "poll_timeout_ms": 1}
    options.update(trainer)
    options["checkpoint_dir"] = tmp_path
    return TrainerServiceSettings(trainer=options)


def _data(seed: int = 0, partitions: int = 4, per_partition: int = 50) -> dict[int, list[bytes]]:
    gen = torch.Generator().manual_seed(seed)
    return {
        p: [str(int(v)).encode() for v in torch.randint(0, 5, (per_partition,), generator=gen)]
        for p in range(partitions)
    }


def _counts(values: list[bytes | None]) -> list[int]:
    counts = [0] * 5
    for v in values:
        counts[int(v)] += 1
    return counts


def _fake_learner() -> Learner:  # typed: mypy checks the fake against the protocol
    return FakeLearner(5)


def _actor(settings, data, index=0, num_actors=1, consumer=None, producer=None,
           learner_factory=None):
    consumer = consumer or FakeConsumer(TOPIC, data)
    producer = producer or FakeProducer()
    actor = TrainerActor(
        settings, index, num_actors,
        consumer_factory=lambda: consumer,
        producer_factory=lambda: producer,
        learner_factory=learner_factory or _fake_learner,
    )
    return actor, consumer, producer


def _drain(actor: TrainerActor, consumer: FakeConsumer, max_records: int = 1000) -> None:
    """Run the loop body by hand until the consumer has nothing more."""
    while records := consumer.poll(max_records=max_records):
        actor.learn_records(records)


def _start_without_thread(actor: TrainerActor) -> None:
    actor.start(background=False)


def test_partitions_are_split_by_modulo() -> None:
    assert owned_partitions([0, 1, 2, 3, 4], 0, 2) == [0, 2, 4]
    assert owned_partitions([0, 1, 2, 3, 4], 1, 2) == [1, 3]


def test_actor_learns_only_its_partitions_exactly_once(tmp_path: Path) -> None:
    data = _data()
    actor, consumer, _ = _actor(_settings(tmp_path), data, index=1, num_actors=2)
    actor.start()
    deadline = time.monotonic() + 10
    while actor.status().samples_seen < 100 and time.monotonic() < deadline:
        time.sleep(0.01)
    status = actor.stop()
    assert status.partitions == (1, 3)
    assert list(status.baseline_counts) == _counts(data[1] + data[3])
    assert status.offsets == {"1": 50, "3": 50}


def test_bad_records_go_to_the_dead_letter_topic_with_their_origin(tmp_path: Path) -> None:
    data = {0: [b"1", b"x", b"2", None, b"7", b"-1", b"\xff", b"3"]}
    actor, consumer, producer = _actor(_settings(tmp_path), data)
    _start_without_thread(actor)
    _drain(actor, consumer)
    assert actor.status().dead_letters == 5
    assert list(actor.status().baseline_counts) == [0, 1, 1, 1, 0]
    sent = [(topic, value, dict(headers)) for topic, value, headers in producer.sent]
    assert [s[0] for s in sent] == ["numbers.dlq"] * 5
    assert [s[2]["source_offset"] for s in sent] == [b"1", b"3", b"4", b"5", b"6"]
    assert all(s[2]["source_partition"] == b"0" for s in sent)
    assert sent[2][2]["error"].startswith(b"out_of_range")


def test_the_actor_decodes_the_events_format_and_dead_letters_unknown_names(
    tmp_path: Path,
) -> None:
    names = "a,b,c,d,e"
    data = {0: [b'{"event": "b"}', b'{"event": "z"}', b'{"event": "e"}', b"1"]}
    settings = TrainerServiceSettings(
        trainer={"num_categories": 5, "checkpoint_interval_s": 3600.0, "poll_timeout_ms": 1,
                 "checkpoint_dir": tmp_path},
        events={"format": "json", "categories": names})
    actor, consumer, producer = _actor(settings, data)
    _start_without_thread(actor)
    _drain(actor, consumer)
    assert list(actor.status().baseline_counts) == [0, 1, 0, 0, 1]
    errors = [dict(headers)["error"] for _, _, headers in producer.sent]
    # b"1" is JSON (a number), not an object with the field
    assert [e.split(b":")[0] for e in errors] == [b"unknown_category", b"missing_field"]


def test_dead_letters_are_flushed_before_the_checkpoint(tmp_path: Path) -> None:
    actor, consumer, producer = _actor(_settings(tmp_path), {0: [b"bad", b"1"]})
    _start_without_thread(actor)
    _drain(actor, consumer)
    assert producer.pending == 1
    actor.checkpoint()
    assert producer.pending == 0


def test_offsets_are_committed_only_after_a_checkpoint(tmp_path: Path) -> None:
    actor, consumer, _ = _actor(_settings(tmp_path), _data(partitions=2))
    _start_without_thread(actor)
    _drain(actor, consumer)
    actor._commit_pending()
    assert consumer.commits == []
    actor.checkpoint()
    assert consumer.commits == []  # the consuming thread commits, after the file exists
    actor._commit_pending()
    assert consumer.commits == [{0: 50, 1: 50}]
    assert len(list((tmp_path / "default" / "actor-0").glob("ckpt-*.pt"))) == 1


def test_restart_resumes_from_the_checkpoint_neither_skipping_nor_repeating(tmp_path: Path) -> None:
    data = _data(partitions=2, per_partition=100)
    settings = _settings(tmp_path)
    first, consumer, _ = _actor(settings, data)
    _start_without_thread(first)
    first.learn_records(consumer.poll(max_records=60))
    first.checkpoint()
    first.learn_records(consumer.poll(max_records=70))  # learned, never checkpointed: lost

    second, consumer2, _ = _actor(settings, data)
    _start_without_thread(second)
    assert second.status().samples_seen == 60
    _drain(second, consumer2)
    assert list(second.status().baseline_counts) == _counts(data[0] + data[1])
    assert second.status().offsets == {"0": 100, "1": 100}


def test_an_actor_that_checkpointed_before_its_first_record_restarts(tmp_path: Path) -> None:
    """A stop before any record writes a checkpoint without learners; it must read back."""
    data: dict[int, list[bytes | None]] = {0: []}
    first, _, _ = _actor(_settings(tmp_path), data)
    _start_without_thread(first)
    first.stop()
    data[0] = [b"1", b"2"]
    second, consumer, _ = _actor(_settings(tmp_path), data)
    _start_without_thread(second)
    _drain(second, consumer)
    assert second.status().samples_seen == 2 and second.status().offsets == {"0": 2}


def test_without_a_checkpoint_store_the_committed_offset_is_used() -> None:
    data = _data(partitions=1)
    consumer = FakeConsumer(TOPIC, data)
    consumer.committed_offsets[0] = 30
    actor, _, _ = _actor(_settings(None), data, consumer=consumer)
    _start_without_thread(actor)
    _drain(actor, consumer)
    assert actor.status().samples_seen == 20


def test_a_missing_checkpoint_with_committed_offsets_is_loud(tmp_path: Path) -> None:
    """Records before the group's committed offset would never reach an empty model."""
    from services.trainer.checkpoint import CheckpointError

    data = _data(partitions=1)
    consumer = FakeConsumer(TOPIC, data)
    consumer.committed_offsets[0] = 30
    actor, _, _ = _actor(_settings(tmp_path), data, consumer=consumer)
    with pytest.raises(CheckpointError, match=r"no checkpoint holds partitions \[0\].*"
                       r"GUMBEL_TRAINER__ON_CORRUPT_CHECKPOINT"):
        _start_without_thread(actor)

    accepting, consumer2, _ = _actor(_settings(tmp_path / "b", on_corrupt_checkpoint="accept_loss"),
                                     data, consumer=FakeConsumer(TOPIC, data))
    consumer2.committed_offsets[0] = 30
    _start_without_thread(accepting)
    _drain(accepting, consumer2)
    assert accepting.status().samples_seen == 20 and accepting.status().records_skipped == 30


def _run_actors(tmp_path: Path, data: dict[int, list[bytes]], num_actors: int,
                committed: dict[int, int]) -> list[Any]:
    """``num_actors`` actors on the same checkpoint directory, one after the other (the worst
    order: an actor that lets a partition go checkpoints before its new owner starts): start,
    drain, checkpoint; their final statuses. ``committed``: the group's offsets, updated."""
    statuses = []
    for index in range(num_actors):
        consumer = FakeConsumer(TOPIC, data)
        consumer.committed_offsets.update(committed)
        actor, consumer, _ = _actor(_settings(tmp_path), data, index=index,
                                    num_actors=num_actors, consumer=consumer)
        _start_without_thread(actor)
        _drain(actor, consumer)
        actor.checkpoint()
        statuses.append(actor.status())
        committed.update(actor.offsets)
    return statuses


def test_rescaling_moves_each_partition_with_its_learner(tmp_path: Path) -> None:
    """2 -> 3 -> 1 actors over 4 partitions: every partition is learned by exactly one actor
    at a time, its learner moving with it; counts exact after each transition."""
    data = _data(partitions=4, per_partition=30)
    seen: dict[int, list[bytes]] = {p: [] for p in data}
    committed: dict[int, int] = {}  # a partition learned from scratch would fail loudly
    for num_actors, grow in ((2, 10), (3, 10), (1, 10)):
        for p in data:
            seen[p] = data[p][: len(seen[p]) + grow]
        statuses = _run_actors(tmp_path, seen, num_actors, committed)
        owners = [sorted(int(p) for p in s.offsets) for s in statuses]
        assert sorted(p for o in owners for p in o) == [0, 1, 2, 3], owners
        totals = [sum(col) for col in zip(*(s.baseline_counts for s in statuses), strict=True)]
        assert totals == _counts([v for p in seen for v in seen[p]]), num_actors
        assert sum(s.samples_seen for s in statuses) == sum(len(v) for v in seen.values())
def test_a_torn_checkpoint_is_ignored_on_restart(tmp_path: Path) -> None:
    data = _data(partitions=1, per_partition=100)
    settings = _settings(tmp_path)
    first, consumer, _ = _actor(settings, data)
    _start_without_thread(first)
    first.learn_records(consumer.poll(max_records=40))
    first.checkpoint()
    first.learn_records(consumer.poll(max_records=40))
    newest = first._store.path_of(first.checkpoint())
    newest.write_bytes(newest.read_bytes()[:100])

    second, consumer2, _ = _actor(settings, data)
    _start_without_thread(second)
    assert second.status().samples_seen == 40
    _drain(second, consumer2)
    assert list(second.status().baseline_counts) == _counts(data[0])


def test_each_partition_has_its_own_learner_and_the_estimate_mixes_them(tmp_path: Path
                                                                          ) -> None:
    """Partitions that differ (keyed by category): one learner each, mixed by records. One
    learner for both would report whichever partition it read last."""
    data = {0: [b"0"] * 30, 1: [b"4"] * 10}
    actor, consumer, _ = _actor(_settings(tmp_path), data)
    _start_without_thread(actor)
    _drain(actor, consumer)
    assert sorted(actor.replica.learners) == [0, 1]
    assert [int(n) for n in actor.replica.learners[0].baseline.counts] == [30, 0, 0, 0, 0]
    status = actor.status()
    assert status.samples_seen == 40 and list(status.baseline_counts) == [30, 0, 0, 0, 10]
    fake = [actor.replica.learners[p].estimate().tolist() for p in (0, 1)]
    assert list(status.estimate) == pytest.approx(
        [0.75 * a + 0.25 * b for a, b in zip(*fake, strict=True)])


def test_a_checkpoint_of_format_1_keeps_its_one_learner_for_every_partition(tmp_path: Path
                                                                           ) -> None:
    from services.trainer.replica import ALL_PARTITIONS

    data = _data(partitions=2, per_partition=20)
    actor, consumer, _ = _actor(_settings(tmp_path), data)
    _start_without_thread(actor)
    learner = FakeLearner(5)
    old = {"offsets": {0: 0, 1: 0}, "dead_letters": 0, "steps": 0,
           "learner": learner.state_dict()}  # what format 1 wrote
    actor.replica.load_state_dict(old)
    _drain(actor, consumer)
    assert list(actor.replica.learners) == [ALL_PARTITIONS]
    assert actor.status().samples_seen == 40


def test_a_real_learner_checkpoints_and_restores_bit_identically(tmp_path: Path) -> None:
    from gumbel_core import OnlineGAN

    store = CheckpointStore(tmp_path)
    first = OnlineGAN(num_categories=5, seed=3)
    first.learn_many(torch.tensor([4, 4, 3, 2]))
    store.save({"learner": first.state_dict()})
    second = OnlineGAN(num_categories=5, seed=9)
    second.load_state_dict(store.load_latest().state["learner"])
    batch = torch.tensor([4, 3, 3, 1])
    a, b = first.learn_many(batch), second.learn_many(batch)
    assert a == b and torch.equal(first.estimate(), second.estimate())
    assert baseline_counts(second) == [0, 1, 1, 3, 3]


def test_aggregate_sums_counts_and_mixes_estimates_by_records() -> None:
    statuses = [
        ActorStatus(0, baseline_counts=(1, 3), estimate=(0.2, 0.8), samples_seen=4, steps=1,
                    dead_letters=1, offsets={"0": 4}, temperature=0.5, generator_loss=1.0,
                    schedule_steps=10, window_counts=(0.5, 1.5), drift_detections=1),
        ActorStatus(1, baseline_counts=(3, 1), estimate=(0.4, 0.6), samples_seen=4, steps=2,
                    dead_letters=0, offsets={"1": 5}, temperature=0.7, generator_loss=3.0,
                    schedule_steps=3, window_counts=(1.5, 0.5), drift_detections=2),
    ]
    est = aggregate(statuses, model_id="m", num_categories=2, estimator="st", timestamp=1.0)
    assert est.baseline_probabilities == [0.5, 0.5]
    assert est.probabilities == pytest.approx([0.3, 0.7])  # 4 records each: equal weights
    assert (est.samples_seen, est.dead_letters, est.step, est.actors) == (8, 1, 3, 2)
    assert est.offsets == {"0": 4, "1": 5}
    assert est.temperature == pytest.approx(0.6)  # weighted by records, as the estimate
    assert est.window_baseline_probabilities == [0.5, 0.5] and est.window_records == 0
    assert est.drift_detections == 3
    assert est.discriminator_loss == 0.0  # no finite value yet
    Estimate.from_bytes(est.to_bytes())


def test_aggregate_before_any_record_is_uniform() -> None:
    est = aggregate([ActorStatus(0)], model_id="m", num_categories=4, estimator="st")
    assert est.probabilities == [0.25] * 4 and est.baseline_probabilities == [0.25] * 4


def test_a_checkpoint_past_the_end_of_a_recreated_topic_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(tmp_path)
    first, consumer, _ = _actor(settings, _data(partitions=1, per_partition=50))
    _start_without_thread(first)
    _drain(first, consumer)
    first.checkpoint()
    second, consumer2, _ = _actor(settings, _data(partitions=1, per_partition=10))  # fresh
    _start_without_thread(second)
    second._after_fetch()  # after the first fetch: its high watermark is the log's end
    assert "past its end 10" in caplog.text


class ListOffsetsOffByOne(FakeConsumer):
    """Tansu: ListOffsets answers the last batch's base offset + 1, the fetch is right."""

    def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: 1 for tp in tps}


def test_a_restart_after_everything_was_consumed_is_not_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(tmp_path)
    data = _data(partitions=1, per_partition=50)
    first, consumer, _ = _actor(settings, data)
    _start_without_thread(first)
    _drain(first, consumer)
    first.checkpoint()
    consumer2 = ListOffsetsOffByOne(TOPIC, data)
    second, _, _ = _actor(settings, data, consumer=consumer2)
    _start_without_thread(second)
    second._after_fetch()
    assert "past its end" not in caplog.text


def _corrupt_every_checkpoint(tmp_path: Path, data: dict[int, list[bytes]], committed: int):
    """A first actor learns and checkpoints; then every file of it is corrupted."""
    settings = _settings(tmp_path)
    first, consumer, _ = _actor(settings, data)
    _start_without_thread(first)
    first.learn_records(consumer.poll(max_records=committed))
    first.checkpoint()
    first._commit_pending()
    for path in first._store.directory.glob("ckpt-*.pt"):
        path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    return consumer.committed_offsets


def test_corrupt_checkpoints_stop_the_actor_by_default(tmp_path: Path) -> None:
    """Issue 10: never treat a lost history like a first start (data would drop silently)."""
    data = _data(partitions=1, per_partition=100)
    committed = _corrupt_every_checkpoint(tmp_path, data, 60)
    consumer = FakeConsumer(TOPIC, data)
    consumer.committed_offsets.update(committed)
    actor, _, _ = _actor(_settings(tmp_path), data, consumer=consumer)
    with pytest.raises(CheckpointError, match="every checkpoint .* is corrupt.*ON_CORRUPT"):
        _start_without_thread(actor)


def _restart_after_corruption(tmp_path: Path, policy: str):
    """60 of 100 records learned, checkpointed and committed; every checkpoint corrupted; a
    new actor started under ``policy`` and drained."""
    data = _data(partitions=1, per_partition=100)
    committed = _corrupt_every_checkpoint(tmp_path, data, 60)
    consumer = FakeConsumer(TOPIC, data)
    consumer.committed_offsets.update(committed)
    actor, _, _ = _actor(_settings(tmp_path, on_corrupt_checkpoint=policy), data,
                         consumer=consumer)
    _start_without_thread(actor)
    _drain(actor, consumer)
    return data, actor


def test_relearn_after_corrupt_checkpoints_learns_every_record_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data, actor = _restart_after_corruption(tmp_path, "relearn")
    status = actor.status()
    assert list(status.baseline_counts) == _counts(data[0])
    assert status.records_skipped == 0
    assert "every checkpoint was corrupt" in caplog.text


def test_accept_loss_after_corrupt_checkpoints_counts_what_it_skips(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data, actor = _restart_after_corruption(tmp_path, "accept_loss")
    status = actor.status()
    assert status.samples_seen == 40
    assert status.records_skipped == 60
    assert "60 records of partitions [0] will never reach the model" in caplog.text
    actor.checkpoint()  # the count survives the next restart
    again, _, _ = _actor(_settings(tmp_path), data)
    _start_without_thread(again)
    assert again.status().records_skipped == 60


def test_dead_letters_are_counted_by_reason_and_a_k_mismatch_is_warned_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = {0: [b"7", b"x", b"9", b"1"] * 5}
    actor, consumer, _ = _actor(_settings(tmp_path), data)
    _start_without_thread(actor)
    _drain(actor, consumer, max_records=4)
    assert actor.status().dead_letters_by_reason == {"out_of_range": 10, "not_integer": 5}
    warnings = [r for r in caplog.records if "does the producer's K match" in r.getMessage()]
    assert len(warnings) == 1


def test_status_carries_its_own_time_and_the_data_time(tmp_path: Path) -> None:
    actor, consumer, _ = _actor(_settings(tmp_path), _data(partitions=1))
    _start_without_thread(actor)
    _drain(actor, consumer)
    before = time.time()
    actor._after_fetch()
    actor._update_data_time()
    status = actor.status()
    assert status.data_time >= before  # caught up: fresh as of now
    assert status.status_time >= status.data_time


def test_aggregate_reports_the_stalest_data_and_the_oldest_status() -> None:
    """A republished status of a hung actor keeps its old times: the estimate shows it."""
    fresh = ActorStatus(0, data_time=990.0, status_time=999.0,
                        dead_letters_by_reason={"empty": 1}, records_skipped=3,
                        dead_letters_truncated=1)
    hung = ActorStatus(1, data_time=700.0, status_time=705.0,
                       dead_letters_by_reason={"empty": 2, "out_of_range": 4})
    est = aggregate([fresh, hung], model_id="m", num_categories=2, estimator="st",
                    timestamp=1000.0)
    assert est.data_timestamp == 700.0
    assert est.max_actor_status_age_s == pytest.approx(295.0)
    assert est.dead_letters_by_reason == {"empty": 3, "out_of_range": 4}
    assert (est.records_skipped, est.dead_letters_truncated) == (3, 1)


def test_a_paused_instance_is_fenced_once_its_successor_starts(tmp_path: Path) -> None:
    """The zombie case, in one process: instance 1 of actor 0 stalls, Ray starts instance 2
    (which claims a newer epoch and resumes from the checkpoint), then instance 1 wakes: it
    must neither write a checkpoint nor commit offsets."""
    from services.trainer.fence import Fenced

    data = _data(partitions=1, per_partition=100)
    settings = _settings(tmp_path)
    zombie, consumer, _ = _actor(settings, data)
    _start_without_thread(zombie)
    zombie.learn_records(consumer.poll(max_records=40))
    zombie.checkpoint()
    directory = zombie._store.directory
    files_before = sorted(p.name for p in directory.glob("ckpt-*.pt"))

    successor, consumer2, _ = _actor(settings, data)
    _start_without_thread(successor)
    assert successor.status().samples_seen == 40

    zombie.learn_records(consumer.poll(max_records=40))  # it wakes and goes on learning
    with pytest.raises(Fenced):
        zombie.checkpoint()
    assert sorted(p.name for p in directory.glob("ckpt-*.pt")) == files_before
    with pytest.raises(Fenced):
        zombie._commit_pending()
    assert consumer.commits == []  # the zombie's offsets never reach the group
    successor.checkpoint()  # the successor writes on
