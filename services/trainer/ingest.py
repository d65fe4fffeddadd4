"""An ingest actor: the Kafka side of the trainer for the partitions it owns.

It polls (``source.py``), sends malformed records to the dead-letter topic, and offers each
poll's blocks to the model's one learner (``learner.py``). It asks the learner where each
partition begins when it (re)starts, and again whenever the learner refuses a block (a replay
after a restart, or this actor was a zombie): it then seeks to the offset the learner expects,
so the learner, not this actor, decides what is learned. A block the learner has no room for
is held and its partition paused (the backpressure: at most one poll's blocks in flight, no
memory that grows). Offsets are committed to the consumer group after the learner's checkpoint
holds them, so standard lag tools keep working. It needs CPUs only.

Actor ``i`` of ``N`` owns the partitions ``p`` with ``p mod N == i`` (assigned by hand: no
group rebalancing, which the embedded Tansu broker does not do for kafka-python); rescaling or
adding partitions moves assignments only, never learner state.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Protocol

from services.common import logs
from services.common.codec import EventFormat
from services.common.dead_letters import DeadLetterWriter
from services.common.kafka import make_consumer, make_producer
from services.common.settings import TrainerServiceSettings
from services.trainer.learner import OfferReply
from services.trainer.source import Block, PartitionSource, Poll
from services.trainer.status import IngestStatus

__all__ = ["IngestActor", "LearnerPort", "LearnerUnavailable", "owned_partitions"]

_log = logging.getLogger(__name__)

# How often an actor with nothing to offer says which partitions are at their log's end.
HEARTBEAT_S = 0.5
# How long to wait before asking a learner that did not answer again.
RETRY_S = 0.5
# Every partition held (the learner has no room): the wait before offering again.
HELD_RETRY_S = 0.005
# At most one warning this often about records outside [0, K) (another producer's K).
MISMATCH_WARNING_S = 60.0


class LearnerUnavailable(RuntimeError):
    """The learner did not answer (it is restarting): hold the blocks and ask again."""


class LearnerPort(Protocol):
    """What an ingest actor calls on the learner (the actor itself, or its Ray handle)."""

    def claim(self, partitions: dict[int, tuple[int, int | None]],
              expected: Sequence[int] = ()) -> dict[int, int]: ...

    def offer(self, blocks: list[Block], caught_up: list[int]) -> OfferReply: ...


def owned_partitions(partitions: list[int], index: int, num_actors: int) -> list[int]:
    """Actor ``index`` of ``num_actors`` owns the partitions ``p`` with ``p % N == index``."""
    return sorted(p for p in partitions if p % num_actors == index)


class IngestActor:
    """Ingest actor ``index`` of ``num_actors``; ``start()`` claims its partitions and polls."""

    def __init__(
        self, settings: TrainerServiceSettings, index: int, num_actors: int,
        learner: LearnerPort, *, consumer_factory: Callable[[], Any] | None = None,
        producer_factory: Callable[[], Any] | None = None, autostart: bool = False,
        exit_on_error: bool = False,
    ) -> None:
        if not 0 <= index < num_actors:
            raise ValueError(f"actor index {index} not in [0, {num_actors})")
        self.settings, self.index, self.num_actors = settings, index, num_actors
        cfg, kafka = settings.trainer, settings.kafka
        self.log_fields = {"model_id": cfg.model_id, "actor": f"ingest-{index}"}
        self._log = logs.FieldsAdapter(_log, **self.log_fields)
        self._learner = learner
        self._consumer_factory = consumer_factory or partial(
            make_consumer, kafka, group_id=cfg.group_id,
            client_id=f"gumbel-ingest-{cfg.model_id}-{index}",
            # metadata as fresh as the partition check, so added partitions are seen
            metadata_max_age_ms=int(cfg.partition_refresh_s * 1000))
        self._producer_factory = producer_factory or partial(
            make_producer, kafka, client_id=f"gumbel-dlq-{cfg.model_id}-{index}")
        self._exit_on_error = exit_on_error
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._source: PartitionSource | None = None
        self._dlq: DeadLetterWriter | None = None
        self._held: dict[int, Block] = {}  # partition -> the block the learner had no room for
        self._committed_seq = 0
        self._commit_warned = False
        self._refused = 0
        self._dead_letters = 0  # bad records sent to the dead-letter topic by this actor
        self._next_mismatch_warning = 0.0
        self._recent: deque[tuple[float, int]] = deque(maxlen=256)
        self._records_read = 0  # since this process started: the monitor's counter
        self._sent_caught_up: list[int] | None = None
        self._last_offer = 0.0
        self.error: str | None = None
        if autostart:
            self.start()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, background: bool = True) -> None:
        """Claim the owned partitions from the learner, seek there, and poll on a thread."""
        if self._source is not None:
            return
        cfg, kafka = self.settings.trainer, self.settings.kafka
        self._source = PartitionSource(self._consumer_factory(), kafka.numbers_topic,
                                       cfg.num_categories,
                                       event_format=EventFormat.of(self.settings.events))
        every = self._source.topic_partitions()
        owned = owned_partitions(every, self.index, self.num_actors)
        self._source.assign(owned)
        self._claim(owned, expected=every)
        self._dlq = DeadLetterWriter(self._producer_factory(), kafka.dlq_topic,
                                     kafka.numbers_topic, kafka.dlq_max_value_bytes,
                                     connector_name=cfg.model_id, task_id=self.index)
        self._log.info("ingest actor (pid %d) reads %s", os.getpid(), kafka.numbers_topic,
                       extra={"partitions": owned, "offsets": self._source.positions})
        if background:
            self._thread = threading.Thread(target=self._guarded, daemon=True,
                                            name=f"ingest-{cfg.model_id}-{self.index}")
            self._thread.start()

    def _claim(self, partitions: list[int], expected: Sequence[int] = ()) -> None:
        """Ask the learner where ``partitions`` begin (it decides) and seek there;
        ``expected``: the topic's partitions, for the learner to wait for."""
        assert self._source is not None
        if not partitions:
            return
        beginnings = self._source.beginning_offsets(partitions)
        info = {p: (beginnings.get(p, 0), self._source.committed(p)) for p in partitions}
        while True:
            try:
                starts = self._learner.claim(info, list(expected))
                break
            except LearnerUnavailable:
                if self._stop.wait(RETRY_S):
                    return
        for partition, offset in starts.items():
            self._source.seek(partition, offset)
            self._source.resume(partition)
            self._held.pop(partition, None)

    def pause(self) -> IngestStatus:
        """Stop polling and offering (the consumer stays open for the final commit)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        return self.status()

    def stop(self, committed: dict[int, int] | None = None) -> IngestStatus:
        """Pause, commit ``committed`` (the learner's final checkpoint) for the owned
        partitions, flush the dead letters and close the clients; the status."""
        self.pause()
        if committed and self._source is not None:
            self._commit(committed)
        status = self.status()
        if self._source is not None:
            self._source.close()
            self._source = None
        if self._dlq is not None:
            self._dlq.flush(timeout_s=30)
            self._dlq = None
        return status

    def _guarded(self) -> None:
        try:
            self._poll_loop()
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            self._log.exception("ingest actor failed")
            self._stop.set()
            if self._exit_on_error:
                os._exit(1)  # Ray restarts this actor; it asks the learner where to go on

    # -- the loop ---------------------------------------------------------------------------------

    def _poll_loop(self) -> None:
        cfg = self.settings.trainer
        next_partition_check = time.monotonic() + cfg.partition_refresh_s
        while not self._stop.is_set():
            if time.monotonic() >= next_partition_check:
                self._pick_up_new_partitions()
                next_partition_check = time.monotonic() + cfg.partition_refresh_s
            self.step()

    def step(self) -> int:
        """One poll, its dead letters, one offer to the learner; the records polled."""
        cfg = self.settings.trainer
        assert self._source is not None
        poll = None
        if not self._all_held():
            for partition in self._held:  # read the others; these stay where they are
                self._source.pause(partition)
            poll = self._source.poll(cfg.poll_timeout_ms, cfg.max_batch)
        if poll is not None:
            self._dead_letter(poll)
            self._recent.append((time.monotonic(), poll.records))
            self._records_read += poll.records
        blocks = [*self._held.values(), *(poll.blocks if poll is not None else [])]
        caught_up = self._caught_up()
        heartbeat = time.monotonic() - self._last_offer >= HEARTBEAT_S
        if blocks or caught_up != self._sent_caught_up or heartbeat:
            self._offer(blocks, caught_up)
        if self._all_held():
            time.sleep(HELD_RETRY_S)
        return poll.records if poll is not None else 0

    def _dead_letter(self, poll: Poll) -> None:
        """Write and flush a poll's bad records before its blocks are offered: once the learner
        has checkpointed a block, its dead letters are on the dead-letter topic."""
        if poll.bad:
            assert self._dlq is not None
            self._dlq.write(poll.bad)
            self._dlq.flush(timeout_s=60)
            self._dead_letters += len(poll.bad)
            out_of_range = [r for r in poll.bad if r.reason == "out_of_range"]
            if out_of_range and time.monotonic() >= self._next_mismatch_warning:
                self._next_mismatch_warning = time.monotonic() + MISMATCH_WARNING_S
                first = out_of_range[0]  # the example: its partition and offset are fields
                self._log.warning(
                    "%d of %d records of this poll are outside [0, %d) (e.g. %s) and go to "
                    "the dead-letter topic: does the producer's K match the trainer's "
                    "num_categories? (logged at most every %gs; counted by reason "
                    "out_of_range)", len(out_of_range), poll.records,
                    self.settings.trainer.num_categories, first.error, MISMATCH_WARNING_S,
                    extra={"partition": first.partition, "offset": first.offset})

    def _caught_up(self) -> list[int]:
        assert self._source is not None
        highwaters, positions = self._source.highwaters(), self._source.positions
        return sorted(p for p, high in highwaters.items()
                      if p not in self._held and positions.get(p, -1) >= high)

    def _offer(self, blocks: list[Block], caught_up: list[int]) -> None:
        assert self._source is not None
        self._last_offer = time.monotonic()
        try:
            reply = self._learner.offer(blocks, caught_up)
        except LearnerUnavailable:
            for block in blocks:  # hold them all; nothing more is read meanwhile
                self._hold(block)
            self._stop.wait(RETRY_S)
            return
        self._sent_caught_up = caught_up
        by_partition = {block.partition: block for block in blocks}
        for partition in reply.accepted:
            if self._held.pop(partition, None) is not None:
                self._source.resume(partition)
        for partition in reply.full:
            self._hold(by_partition[partition])
        for partition, expected in reply.refused.items():
            self._refused += 1
            self._log.info("the partition goes on at the offset where the learner is (not "
                           "%d)", by_partition[partition].start,
                           extra={"partition": partition, "offset": expected})
            self._held.pop(partition, None)
            self._source.resume(partition)
            self._source.seek(partition, expected)
        if reply.unknown:  # the learner restarted without them: ask again where they begin
            self._claim(sorted(set(reply.unknown)))
        if reply.checkpoint_seq > self._committed_seq and reply.committed:
            self._commit(reply.committed)
            self._committed_seq = reply.checkpoint_seq

    def _hold(self, block: Block) -> None:
        """Keep the block the learner had no room for, to offer again; its partition is
        paused only when another one is polled meanwhile (``step``). While every partition
        is held nothing is polled, so the consumer keeps what it has fetched ahead: pausing
        means unassigning (``PartitionSource._apply``), which throws that away, and a poll
        with nothing assigned sleeps ``retry_backoff_ms``; measured on one packed partition,
        50 holds cost 60% of the wall time."""
        self._held.setdefault(block.partition, block)

    def _all_held(self) -> bool:
        assert self._source is not None
        return bool(self._held) and all(p in self._held for p in self._source.partitions)

    def _commit(self, committed: dict[int, int]) -> None:
        """Commit the learner's checkpointed offsets of the owned partitions; a refusal is
        warned about once (the checkpoint is the truth; the group only shows the lag)."""
        assert self._source is not None
        mine = {p: o for p, o in committed.items() if p in self._source.partitions}
        if not mine:
            return
        try:
            self._source.commit(mine)
        except Exception as exc:
            if not self._commit_warned:
                self._log.warning("cannot commit offsets to group %r: %s",
                                  self.settings.trainer.group_id, exc, extra={"offsets": mine})
                self._commit_warned = True
            return
        if self._commit_warned:
            self._log.info("committing offsets again", extra={"offsets": mine})
            self._commit_warned = False

    def _pick_up_new_partitions(self) -> None:
        """Partitions added to the topic while running: read those this actor owns."""
        assert self._source is not None
        owned = owned_partitions(self._source.topic_partitions(), self.index, self.num_actors)
        new = [p for p in owned if p not in self._source.partitions]
        if new:
            self._log.info("partitions were added to %s", self._source.topic,
                           extra={"partitions": new})
            self._source.assign([*self._source.partitions, *new])
            self._claim(new)

    # -- what the driver asks -----------------------------------------------------------------

    def status(self) -> IngestStatus:
        now = time.monotonic()
        recent = [r for r in list(self._recent) if now - r[0] <= 10.0]
        span = recent[-1][0] - recent[0][0] if len(recent) > 1 else 0.0
        source, dlq = self._source, self._dlq
        return IngestStatus(
            index=self.index, pid=os.getpid(), host=socket.gethostname(),
            node_id=getattr(self, "node_id", ""),
            partitions=tuple(source.partitions) if source is not None else (),
            positions={str(p): o for p, o in sorted((source.positions if source else {}).items())},
            highwaters={str(p): h for p, h in sorted((source.highwaters() if source else {})
                                                     .items())},
            records_per_s=sum(r[1] for r in recent[1:]) / span if span > 0 else 0.0,
            records_read=self._records_read,
            held_blocks=len(self._held), refused_blocks=self._refused,
            dead_letters=self._dead_letters,
            dead_letters_truncated=dlq.truncated if dlq is not None else 0,
            dead_letters_lost=dlq.failed if dlq is not None else 0,
            running=self._thread is not None and self._thread.is_alive(), error=self.error,
            status_time=time.time(),
        )
