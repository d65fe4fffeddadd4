"""An ingest actor against an in-memory consumer and the real learner: it offers blocks, holds
what has no room (and stops reading that partition), goes where the learner says, commits
what it checkpointed."""

from __future__ import annotations

from collections import namedtuple
from pathlib import Path
from typing import Any

import pytest
from kafka import TopicPartition

from services.common.settings import TrainerServiceSettings
from services.trainer.ingest import IngestActor, LearnerUnavailable, owned_partitions
from services.trainer.learner import LearnerActor

Record = namedtuple("Record", "topic partition offset key value headers timestamp")
TOPIC = "numbers"


class FakeConsumer:
    """A consumer over fixed partitions of raw values; honours seeks, pauses and commits."""

    def __init__(self, partitions: dict[int, list[bytes | None]]) -> None:
        self.data = partitions
        self.assigned: list[int] = []
        self.position: dict[int, int] = {}
        self.paused: set[int] = set()
        self.committed_offsets: dict[int, int] = {}
        self.closed = False
        self.polls = 0

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(self.data) if topic == TOPIC else set()

    def assign(self, tps: list[TopicPartition]) -> None:
        self.assigned = [tp.partition for tp in tps]

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(TOPIC, p) for p in self.assigned}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.position[tp.partition] = offset

    def pause(self, tp: TopicPartition) -> None:
        self.paused.add(tp.partition)

    def resume(self, tp: TopicPartition) -> None:
        self.paused.discard(tp.partition)

    def committed(self, tp: TopicPartition) -> int | None:
        return self.committed_offsets.get(tp.partition)

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.committed_offsets.update({tp.partition: m.offset for tp, m in offsets.items()})

    def poll(self, timeout_ms: int = 0, max_records: int = 500) -> dict[TopicPartition, list]:
        self.polls += 1
        out: dict[TopicPartition, list] = {}
        for p in self.assigned:
            if p in self.paused:
                continue
            start = self.position.get(p, 0)
            values = self.data[p][start:start + max_records]
            if values:
                out[TopicPartition(TOPIC, p)] = [
                    Record(TOPIC, p, start + j, None, v, [], 1_700_000_000_000 + start + j)
                    for j, v in enumerate(values)]
                self.position[p] = start + len(values)
        return out

    def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: 0 for tp in tps}

    def highwater(self, tp: TopicPartition) -> int:
        return len(self.data[tp.partition])

    def close(self) -> None:
        self.closed = True


class FakeFuture:
    def add_errback(self, callback: Any, *args: Any) -> FakeFuture:
        return self


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None]] = []

    def send(self, topic: str, value: bytes | None = b"", key: bytes | None = None,
             headers: list | None = None, timestamp_ms: int | None = None) -> FakeFuture:
        self.sent.append((topic, value))
        return FakeFuture()

    def flush(self, timeout: float | None = None) -> None:
        pass


def settings(tmp_path: Path | None = None, **trainer: Any) -> TrainerServiceSettings:
    return TrainerServiceSettings(
        kafka={"numbers_topic": TOPIC},
        trainer={"num_categories": 5, "model_id": "m", "checkpoint_dir": tmp_path,
                 "max_batch": 100, "idle_s": 0.01, **trainer})


def reader(config: TrainerServiceSettings, learner: Any, consumer: FakeConsumer,
           index: int = 0, num_actors: int = 1) -> tuple[IngestActor, FakeProducer]:
    producer = FakeProducer()
    actor = IngestActor(config, index, num_actors, learner, consumer_factory=lambda: consumer,
                        producer_factory=lambda: producer)
    actor.start(background=False)
    return actor, producer


def learned(learner: LearnerActor) -> dict[str, int]:
    while learner.learn_round(flush=True):
        pass
    return learner.status().offsets


def test_actor_i_of_n_owns_the_partitions_p_mod_n() -> None:
    assert owned_partitions([0, 1, 2, 3, 4], 1, 2) == [1, 3]
    assert owned_partitions([0, 1], 2, 3) == []


def test_every_record_reaches_the_learner_once_and_bad_ones_the_dead_letter_topic() -> None:
    config = settings()
    learner = LearnerActor(config)
    learner.start(background=False)
    data = {0: [b"1", b"2", b"x", b"3"] * 50, 1: [b"4"] * 120}
    actor, producer = reader(config, learner, FakeConsumer(data))
    for _ in range(10):
        actor.step()
    assert learned(learner) == {"0": 200, "1": 120}
    status = learner.status()
    assert status.baseline_counts == (0, 50, 50, 50, 120)
    assert status.dead_letters == 50 == len(producer.sent)
    assert status.dead_letters_by_reason == {"not_integer": 50}


def test_when_no_partition_has_room_nothing_is_polled_and_the_fetched_data_is_kept() -> None:
    """Every partition held: the actor stops polling but keeps its assignment (unassigning
    would throw away what the consumer fetched ahead) and offers again until there is room."""
    config = settings(waiting_blocks=1, idle_s=60)
    learner = LearnerActor(config)
    learner.start(background=False)
    consumer = FakeConsumer({0: [b"1"] * 300, 1: [b"2"] * 300})
    actor, _ = reader(config, learner, consumer)
    actor.step()  # one block each: accepted, and the merge now waits
    actor.step()  # the next blocks: no room
    assert actor.status().held_blocks == 2
    polls = consumer.polls
    actor.step()  # offered again, still no room: no poll
    assert consumer.polls == polls and sorted(consumer.assigned) == [0, 1]
    assert consumer.position == {0: 200, 1: 200}  # nothing read past the held blocks
    learner.learn_round(flush=True)
    actor.step()
    assert actor.status().held_blocks == 0 and sorted(consumer.assigned) == [0, 1]
    for _ in range(5):
        actor.step()
        learner.learn_round(flush=True)
    assert learned(learner) == {"0": 300, "1": 300}
    assert learner.status().samples_seen == 600


def test_a_partition_without_room_is_paused_while_the_others_are_read() -> None:
    config = settings(waiting_blocks=1, idle_s=60)
    learner = LearnerActor(config)
    learner.start(background=False)
    consumer = FakeConsumer({0: [b"1"] * 300, 1: [b"2"] * 100})
    actor, _ = reader(config, learner, consumer)
    actor.step()  # a block each: accepted
    actor.step()  # partition 0's next block: no room; partition 1 has nothing new
    assert actor.status().held_blocks == 1
    actor.step()  # partition 1 is still read, so partition 0 is unassigned meanwhile
    assert consumer.assigned == [1] and consumer.position[0] == 200
    learner.learn_round(flush=True)
    actor.step()  # room again: partition 0 is read from where its held block ended
    assert actor.status().held_blocks == 0 and sorted(consumer.assigned) == [0, 1]
    for _ in range(5):
        actor.step()
        learner.learn_round(flush=True)
    assert learned(learner) == {"0": 300, "1": 100}


def test_a_restarted_reader_begins_where_the_learner_is() -> None:
    config = settings()
    learner = LearnerActor(config)
    learner.start(background=False)
    data = {0: [b"3"] * 250}
    first, _ = reader(config, learner, FakeConsumer(data))
    first.step()
    first.step()  # 200 accepted; then this actor dies
    second, _ = reader(config, learner, FakeConsumer(data))
    assert second.status().positions == {"0": 200}
    second.step()
    assert learned(learner) == {"0": 250} and learner.status().samples_seen == 250


def test_a_zombie_reader_is_sent_to_where_the_learner_is() -> None:
    config = settings()
    learner = LearnerActor(config)
    learner.start(background=False)
    data = {0: [b"1"] * 300}
    zombie_consumer = FakeConsumer(data)
    zombie, _ = reader(config, learner, zombie_consumer)
    successor, _ = reader(config, learner, FakeConsumer(data))
    successor.step()
    successor.step()  # 200 accepted from the successor
    zombie.step()  # wakes up with offsets 0-99: refused, and seeks to 200
    assert zombie.status().refused_blocks == 1 and zombie_consumer.position[0] == 200
    zombie.step()
    successor.step()  # now behind the zombie's 200-299: refused, to 300
    assert learned(learner) == {"0": 300} and learner.status().samples_seen == 300


def test_offsets_are_committed_after_the_learner_checkpointed_them(tmp_path: Path) -> None:
    config = settings(tmp_path)
    learner = LearnerActor(config)
    learner.start(background=False)
    consumer = FakeConsumer({0: [b"2"] * 100})
    actor, _ = reader(config, learner, consumer)
    actor.step()
    learned(learner)
    actor.step()
    assert consumer.committed_offsets == {}  # learned, not yet in a checkpoint
    learner.checkpoint()
    actor._last_offer = 0.0  # the heartbeat is due: nothing new to offer, still an offer
    actor.step()  # its reply says what the checkpoint holds
    assert consumer.committed_offsets == {0: 100}


def test_while_the_learner_is_unavailable_the_blocks_wait_and_nothing_is_lost() -> None:
    config = settings()
    learner = LearnerActor(config)
    learner.start(background=False)

    class Flaky:
        down = False

        def claim(self, partitions: Any, expected: Any = ()) -> Any:
            return learner.claim(partitions, expected)

        def offer(self, blocks: Any, caught_up: Any) -> Any:
            if self.down:
                raise LearnerUnavailable("restarting")
            return learner.offer(blocks, caught_up)

    port = Flaky()
    consumer = FakeConsumer({0: [b"1"] * 250})
    actor, _ = reader(config, port, consumer)
    port.down = True
    actor._stop.wait = lambda timeout=None: False  # type: ignore[method-assign]
    actor.step()
    polls = consumer.polls
    actor.step()  # its only partition is held: offered again, nothing more read
    assert actor.status().held_blocks == 1 and consumer.polls == polls
    port.down = False
    for _ in range(4):
        actor.step()
    assert learned(learner) == {"0": 250}


@pytest.mark.parametrize("restored", [False, True])
def test_a_learner_that_restarted_without_a_partition_gets_it_claimed_again(
    tmp_path: Path, restored: bool
) -> None:
    config = settings(tmp_path)
    learner = LearnerActor(config)
    learner.start(background=False)
    data = {0: [b"4"] * 200}
    actor, _ = reader(config, learner, FakeConsumer(data))
    actor.step()
    if restored:
        learned(learner)
        learner.checkpoint()
    successor = LearnerActor(config)  # Ray restarted the learner from its checkpoint
    successor.start(background=False)
    actor._learner = successor
    for _ in range(4):
        actor.step()
    assert learned(successor) == {"0": 200} and successor.status().samples_seen == 200
