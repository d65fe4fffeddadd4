"""One trainer actor: two threads around a ``Replica`` — one polls, one learns — and a cadence.

A plain class (``services.trainer.service`` makes it a Ray actor). The polling thread owns the
``PartitionSource`` (a consumer is not thread-safe): it polls, decodes, sends bad records to
the dead-letter topic and hands batches to the learning thread through a bounded queue
(kafka-python parses while torch learns). The learning thread changes the replica's learner
and offsets together under one lock and writes the checkpoints, so a checkpoint holds the
state and the offsets of the records *learned*, never of records merely polled; the polling
thread commits the checkpoint's offsets to the group afterwards. ``status``,
``checkpoint`` and ``stop`` answer while it learns.

Everything else has a module of its own: what the actor is built from (``bootstrap.py``),
the Kafka side (``source.py``), the model and its offsets (``replica.py``), where it resumes
(``resume.py``), which partitions it owns (``ownership.py``), its checkpoints
(``checkpointing.py``), its lag (``lag.py``), rates (``meter.py``) and status
(``reporting.py``).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from services.common.codec import EventFormat
from services.common.dead_letters import DeadLetterWriter
from services.common.settings import TrainerServiceSettings
from services.trainer import bootstrap
from services.trainer.checkpointing import actor_checkpoint_dir
from services.trainer.diagnostics import MismatchWarning
from services.trainer.fence import Fenced
from services.trainer.lag import Lag
from services.trainer.meter import LearningMeter
from services.trainer.ownership import owned_partitions, pick_up_new_partitions
from services.trainer.ports import Learner
from services.trainer.replica import Replica
from services.trainer.reporting import runtime_status
from services.trainer.resume import resume_replica
from services.trainer.source import PartitionSource, PolledBatch, decode_poll
from services.trainer.status import ActorStatus

__all__ = ["TrainerActor", "owned_partitions", "actor_checkpoint_dir"]

log = logging.getLogger(__name__)


class TrainerActor:
    """Trainer replica ``index`` of ``num_actors``; ``start()`` restores and begins consuming."""

    def __init__(
        self,
        settings: TrainerServiceSettings,
        index: int,
        num_actors: int,
        *,
        device: str | None = None,
        consumer_factory: Callable[[], Any] | None = None,
        producer_factory: Callable[[], Any] | None = None,
        learner_factory: Callable[[], Learner] | None = None,
        autostart: bool = False,
        exit_on_error: bool = False,
    ) -> None:
        if not 0 <= index < num_actors:
            raise ValueError(f"actor index {index} not in [0, {num_actors})")
        self.settings, self.index, self.num_actors = settings, index, num_actors
        cfg, kafka = settings.trainer, settings.kafka
        self.device = device or ("cuda" if cfg.gpus_per_actor > 0 else "cpu")
        # Factories: the clients are made in start(), in the process that uses them.
        self._consumer_factory = consumer_factory or bootstrap.consumer_factory(settings, index)
        self._producer_factory = producer_factory or bootstrap.producer_factory(settings, index)
        self._learner_factory = learner_factory  # None: OnlineGAN, made by the replica
        self._exit_on_error = exit_on_error
        self._lock = threading.RLock()  # the replica: learner and offsets together
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._queue: queue.Queue[PolledBatch] = queue.Queue(maxsize=cfg.queue_batches)
        self._checkpoints = bootstrap.make_checkpointer(settings, index, num_actors)
        self._store, self._fence = self._checkpoints.store, self._checkpoints.fence
        self.replica: Replica | None = None
        self._source: PartitionSource | None = None
        self._dlq: DeadLetterWriter | None = None
        self._lag = Lag(kafka.numbers_topic, index)
        self._mismatch = MismatchWarning(index, cfg.num_categories)
        self._event_format = EventFormat.of(settings.events)
        self.meter = LearningMeter()
        self.error: str | None = None
        if autostart:
            self.start()

    @property
    def offsets(self) -> dict[int, int]:
        return self.replica.offsets if self.replica is not None else {}

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, background: bool = True) -> None:
        """Restore the latest checkpoint, seek to its offsets, start polling and learning.

        ``background=False`` restores and assigns only; the caller drives ``learn_records``.
        """
        if self._threads:
            return
        cfg, kafka = self.settings.trainer, self.settings.kafka
        if self._fence is not None:
            epoch = self._fence.claim()
            log.info("actor %d claimed epoch %d of %s", self.index, epoch, self._fence.directory)
        self._source = PartitionSource(self._consumer_factory(), kafka.numbers_topic,
                                       cfg.num_categories, self._event_format)
        every_partition = self._source.topic_partitions()
        self.replica = bootstrap.make_replica(self.settings, self.index, self.num_actors,
                                              len(every_partition), self.device,
                                              self._learner_factory)
        self._source.assign(owned_partitions(every_partition, self.index, self.num_actors))
        truncated = resume_replica(self.replica, self._source, self._checkpoints,
                                   policy=cfg.on_corrupt_checkpoint, group_id=cfg.group_id)
        self._lag.verify(self.replica.offsets)
        self.replica.offsets.update(self._source.seek(self.replica.offsets))
        self._dlq = DeadLetterWriter(self._producer_factory(), kafka.dlq_topic,
                                     kafka.numbers_topic, kafka.dlq_max_value_bytes)
        self._dlq.truncated = truncated
        log.info("actor %d (pid %d, %s) owns partitions %s of %s", self.index, os.getpid(),
                 self.device, self._source.partitions, kafka.numbers_topic)
        self._checkpoints.last = time.monotonic()
        if background:
            self._start_threads()

    def _start_threads(self) -> None:
        self._stop.clear()
        name = f"trainer-{self.settings.trainer.model_id}-{self.index}"
        self._threads = [threading.Thread(target=self._guarded, args=(loop,), daemon=True,
                                          name=f"{name}-{loop.__name__.strip('_')}")
                         for loop in (self._poll_loop, self._learn_loop)]
        for thread in self._threads:
            thread.start()

    def _stop_threads(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        self._threads = []
        self._queue = queue.Queue(maxsize=self.settings.trainer.queue_batches)  # unlearned: dropped

    def stop(self, final_checkpoint: bool = True) -> ActorStatus:
        """Stop both threads, write a last checkpoint, commit, close the clients; the status."""
        self._stop_threads()
        if final_checkpoint and self.replica is not None and self.error is None:
            self.checkpoint()
            self._commit_pending()  # the polling thread is gone: the consumer is ours now
        status = self.status()
        if self._source is not None:
            self._source.close()
            self._source = None
        if self._dlq is not None:
            self._dlq.flush(timeout_s=30)
            self._dlq = None
        return status

    def _guarded(self, loop: Callable[[], None]) -> None:
        try:
            loop()
        except Fenced as exc:  # a newer instance runs: stop writing, and never restart over it
            self.error = f"fenced: {exc}"
            log.error("actor %d: %s", self.index, exc)
            self._stop.set()
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("actor %d: %s failed", self.index, loop.__name__)
            self._stop.set()
            if self._exit_on_error:
                os._exit(1)  # let Ray restart this actor from its last checkpoint

    # -- the two threads ------------------------------------------------------------------------

    def _poll_loop(self) -> None:
        cfg = self.settings.trainer
        assert self._source is not None
        next_partition_check = time.monotonic() + cfg.partition_refresh_s
        while not self._stop.is_set():
            if time.monotonic() >= next_partition_check:
                pick_up_new_partitions(self._source, self.index, self.num_actors)
                next_partition_check = time.monotonic() + cfg.partition_refresh_s
            self._commit_pending()
            batch = self._source.poll(cfg.poll_timeout_ms, cfg.max_batch)
            self._after_fetch()
            if batch is None:
                continue
            self._dead_letter(batch)
            while not self._stop.is_set():
                try:
                    self._queue.put(batch, timeout=0.1)
                    break
                except queue.Full:  # the learner is behind: lag grows, visible in the status
                    continue

    def _learn_loop(self) -> None:
        cfg = self.settings.trainer
        while not self._stop.is_set():
            if self._checkpoints.due(cfg.checkpoint_interval_s):
                self.checkpoint()
            try:
                batch = self._queue.get(timeout=0.05)
            except queue.Empty:
                self._update_data_time()
                continue
            self._learn(batch)

    def learn_records(self, records: dict[Any, list[Any]]) -> int:
        """Decode, dead-letter and learn one poll's records on the caller's thread; good count."""
        batch = decode_poll(records, self.settings.trainer.num_categories,
                            event_format=self._event_format)
        if batch is None:
            return 0
        self._dead_letter(batch)
        return self._learn(batch)

    def _dead_letter(self, batch: PolledBatch) -> None:
        if batch.decoded.bad:
            assert self._dlq is not None
            self._dlq.write(batch.decoded.bad)
            self._mismatch.check(batch)

    def _learn(self, batch: PolledBatch) -> int:
        assert self.replica is not None
        started = time.monotonic()
        with self._lock:
            good = self.replica.learn(batch)
        self.meter.learned(good, time.monotonic() - started, batch.polled_at, batch.newest_time)
        self._update_data_time()
        return good

    def _update_data_time(self) -> None:
        caught_up = self._queue.empty() and not any(self._lag.by_partition(self.offsets).values())
        self.meter.caught_up(caught_up)

    def _after_fetch(self) -> None:
        assert self._source is not None
        self._lag.fetched(self._source.highwaters())

    # -- checkpoints ----------------------------------------------------------------------------

    def checkpoint(self) -> int | None:
        """Write the replica's state and offsets atomically; the checkpoint's sequence number.

        Dead letters sent before the snapshot are flushed before the file exists, and the
        offsets are committed to Kafka only after it (by the polling thread).
        """
        if self.replica is None:
            return None
        return self._checkpoints.write(self._lock, self.replica, self._dlq)

    def _commit_pending(self) -> None:
        if self._source is not None:  # the thread that owns the consumer calls this
            self._checkpoints.commit_pending(self._source.commit)

    def restore(self) -> int | None:
        """Reload the latest checkpoint into the replica and re-seek (threads paused meanwhile)."""
        if self._store is None or self.replica is None or self._source is None:
            return None
        running = bool(self._threads)
        self._stop_threads()
        restored = self._store.load_latest()
        if restored is not None:
            with self._lock:
                self._checkpoints.read(restored.state, self.replica)
            self._source.seek(self.replica.offsets)
        if running:
            self._start_threads()
        return restored.seq if restored is not None else None

    # -- what the coordinator asks --------------------------------------------------------------

    def pid(self) -> int:
        return os.getpid()

    def status(self) -> ActorStatus:
        status = runtime_status(
            self.index, self.device, node_id=getattr(self, "node_id", ""),  # set by Ray's class
            source=self._source, dlq=self._dlq, lags=self._lag.by_partition(self.offsets),
            queue_depth=self._queue.qsize(), meter=self.meter, checkpoints=self._checkpoints,
            running=bool(self._threads) and all(t.is_alive() for t in self._threads),
            error=self.error)
        if self.replica is None:
            return status
        with self._lock:
            return self.replica.status(status)
