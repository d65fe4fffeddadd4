"""One trainer replica: consumes its partitions, learns, dead-letters bad records, checkpoints.

A plain class (``services.trainer.service`` makes it a Ray actor). The consuming loop runs in
a background thread, so ``status``, ``get_weights``/``set_weights``, ``checkpoint`` and
``stop`` answer while it learns. Learner state and consumed offsets change together under one
lock, and a checkpoint holds both, so a restart resumes exactly where the state left off:
no record is skipped or learned twice.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

from services.common.codec import decode_values
from services.common.dead_letters import DeadLetterWriter
from services.common.kafka import make_consumer, make_producer, topic_partitions
from services.common.settings import TrainerServiceSettings
from services.trainer import learner as learner_api
from services.trainer.checkpoint import CheckpointError, CheckpointStore, NoValidCheckpoint, encode

__all__ = ["TrainerActor", "owned_partitions", "actor_checkpoint_dir"]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
# A stream whose records fall outside [0, K) (a producer with another K) is warned about at
# most this often, not once per poll.
MISMATCH_WARNING_INTERVAL_S = 60.0


def owned_partitions(partitions: list[int], index: int, num_actors: int) -> list[int]:
    """Actor ``index`` of ``num_actors`` owns the partitions ``p % num_actors == index``."""
    return [p for p in partitions if p % num_actors == index]


def actor_checkpoint_dir(checkpoint_dir: Path, model_id: str, index: int) -> Path:
    return Path(checkpoint_dir) / model_id / f"actor-{index}"


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
        learner_factory: Callable[[], Any] | None = None,
        autostart: bool = False,
        exit_on_error: bool = False,
    ) -> None:
        if not 0 <= index < num_actors:
            raise ValueError(f"actor index {index} not in [0, {num_actors})")
        self.settings = settings
        self.index = index
        self.num_actors = num_actors
        cfg = settings.trainer
        self.device = device or ("cuda" if cfg.gpus_per_actor > 0 else "cpu")
        self._consumer_factory = consumer_factory or (
            lambda: make_consumer(
                settings.kafka,
                group_id=cfg.group_id,
                client_id=f"gumbel-trainer-{cfg.model_id}-{index}",
            )
        )
        self._producer_factory = producer_factory or (
            lambda: make_producer(settings.kafka, client_id=f"gumbel-dlq-{cfg.model_id}-{index}")
        )
        self._learner_factory = learner_factory or (
            lambda: learner_api.build_learner(
                cfg.num_categories, cfg.estimator, cfg.seed + index, self.device,
                # The GAN converges by steps. N replicas that each see 1/N of the stream keep
                # the single learner's steps per record by stepping N times as often; their
                # average then acts like one step on step_size records (data parallelism).
                max(1, cfg.step_size // num_actors),
            )
        )
        self._exit_on_error = exit_on_error
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._store: CheckpointStore | None = None
        if cfg.checkpoint_dir is not None:
            self._store = CheckpointStore(
                actor_checkpoint_dir(cfg.checkpoint_dir, cfg.model_id, index)
            )
        self.learner: Any = None
        self._consumer: Any = None
        self._dlq: DeadLetterWriter | None = None
        self._partitions: list[int] = []
        self.offsets: dict[int, int] = {}  # partition -> next offset to learn from
        self.dead_letters = 0
        self.dead_letters_by_reason: dict[str, int] = {}
        self.records_skipped = 0  # records knowingly never learned (on_corrupt_checkpoint)
        self._restored_truncated = 0
        self._next_mismatch_warning = 0.0
        # Unix time as of which this replica had learned everything on its partitions: now
        # when caught up, else the newest learned record's timestamp. A hung loop stops it.
        self.data_time = time.time()
        self._newest_record_time = 0.0
        self.gan_learned = 0  # values the GAN learned from (all of them under learn_all)
        self.lag = 0
        # Which values `sample` backpressure learns from; counts stay exact whatever it picks.
        self._sample_rng = torch.Generator().manual_seed(settings.trainer.seed + index)
        self.steps = 0
        self._losses = (math.nan, math.nan)
        self._checkpoint_seq = 0
        self._restored_seq: int | None = None
        self._last_checkpoint = time.monotonic()
        self._pending_commit: dict[int, int] | None = None
        self._unverified_offsets: dict[int, int] = {}  # restored, not yet checked vs the log
        self._commit_warned = False
        self.error: str | None = None
        self._sent_weights: dict[str, Any] | None = None  # read by the coordinator to average
        if autostart:
            self.start()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, background: bool = True) -> None:
        """Restore the latest checkpoint, seek to its offsets, start the consuming thread.

        ``background=False`` restores and assigns only; the caller drives ``learn_records``.
        """
        if self._thread is not None:
            return
        cfg = self.settings.trainer
        if self._store is not None:
            self._store.acquire()
        self.learner = self._learner_factory()
        restored, history_lost = self._load_checkpoint()
        if restored is not None:
            self._apply_checkpoint(restored.state)
            self._restored_seq = self._checkpoint_seq = restored.seq
            log.info("actor %d restored checkpoint %s (%d samples, offsets %s)",
                     self.index, restored.path, learner_api.samples_seen(self.learner),
                     self.offsets)
        if self._store is not None:
            existing = self._store.sequence_numbers()
            self._checkpoint_seq = max([self._checkpoint_seq, *existing])
        self._consumer = self._consumer_factory()
        kafka = self.settings.kafka
        self._dlq = DeadLetterWriter(
            self._producer_factory(), kafka.dlq_topic, kafka.numbers_topic,
            max_value_bytes=kafka.dlq_max_value_bytes,
        )
        self._dlq.truncated = self._restored_truncated
        topic = self.settings.kafka.numbers_topic
        all_partitions = [tp.partition for tp in topic_partitions(self._consumer, topic)]
        self._partitions = owned_partitions(all_partitions, self.index, self.num_actors)
        assigned = [TopicPartition(topic, p) for p in self._partitions]
        self._consumer.assign(assigned)
        if history_lost:
            self._resume_after_lost_history(assigned)
        for tp in assigned:
            self._seek(tp)
        self._check_offsets_exist(assigned)
        log.info("actor %d (pid %d, %s) owns partitions %s of %s", self.index, os.getpid(),
                 self.device, self._partitions, topic)
        self._last_checkpoint = time.monotonic()
        if not background:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"trainer-{cfg.model_id}-{self.index}", daemon=True
        )
        self._thread.start()

    def _load_checkpoint(self) -> tuple[Any, bool]:
        """(the newest valid checkpoint or None, whether a history exists but is unreadable)."""
        if self._store is None:
            return None, False
        try:
            return self._store.load_latest(), False
        except NoValidCheckpoint as exc:
            policy = self.settings.trainer.on_corrupt_checkpoint
            if policy == "fail":
                raise CheckpointError(
                    f"actor {self.index}: {exc}. Its records would be lost. Move the files "
                    "away to investigate, or set on_corrupt_checkpoint to relearn or "
                    "accept_loss (GUMBEL_TRAINER__ON_CORRUPT_CHECKPOINT)"
                ) from exc
            log.error("actor %d: %s; on_corrupt_checkpoint=%s", self.index, exc, policy)
            return None, True

    def _resume_after_lost_history(self, assigned: list[TopicPartition]) -> None:
        """After unreadable checkpoints: relearn from the log's start, or accept the loss.

        Either way the records that can no longer reach the model are logged as an ERROR and
        counted in ``records_skipped`` (in the Estimate and the monitor's metrics).
        """
        policy = self.settings.trainer.on_corrupt_checkpoint
        starts = self._consumer.beginning_offsets(assigned)
        skipped = 0
        for tp in assigned:
            start = int(starts.get(tp, 0) or 0)
            committed = None
            if policy == "accept_loss":
                try:
                    committed = self._consumer.committed(tp)
                except Exception as exc:  # no committed offset: from the log's start
                    log.warning("actor %d: cannot read committed offset of %s: %s",
                                self.index, tp, exc)
            resume = max(start, committed) if committed is not None else start
            self.offsets[tp.partition] = resume
            skipped += resume  # offsets below `resume` were deleted or are skipped now
        self.records_skipped += skipped
        log.error("actor %d: every checkpoint was corrupt; %s: %d records of partitions %s "
                  "will never reach the model (records_skipped)", self.index,
                  "relearning from the earliest offsets the topic holds" if policy == "relearn"
                  else "accepting the loss, resuming at the group's committed offsets",
                  skipped, [tp.partition for tp in assigned])

    def _seek(self, tp: TopicPartition) -> None:
        """Resume at the checkpoint's offset, else the group's committed one, else earliest."""
        if tp.partition in self.offsets:
            self._consumer.seek(tp, self.offsets[tp.partition])
            return
        committed = None
        try:
            committed = self._consumer.committed(tp)
        except Exception as exc:  # a broker without group support: start from earliest
            log.warning("actor %d: cannot read committed offset of %s: %s", self.index, tp, exc)
        if committed is not None:
            self.offsets[tp.partition] = committed
            self._consumer.seek(tp, committed)
        else:
            self._consumer.seek_to_beginning(tp)

    def _check_offsets_exist(self, assigned: list[TopicPartition]) -> None:
        """Note the restored offsets to check against the log's end after the first fetch.

        Only a fetch's high watermark is trusted: some Kafka-compatible brokers (Tansu)
        answer ListOffsets with the last batch's base offset + 1, which made a restart after
        everything was consumed look like a recreated topic.
        """
        self._unverified_offsets = {
            tp.partition: self.offsets[tp.partition]
            for tp in assigned if tp.partition in self.offsets
        }

    def _report_offsets_past_the_end(self) -> None:
        """Say once when the model has read past the log's end: the topic was recreated."""
        topic = self.settings.kafka.numbers_topic
        for partition, stored in list(self._unverified_offsets.items()):
            high = self._consumer.highwater(TopicPartition(topic, partition))
            if high is None:
                continue  # no fetch answered for this partition yet
            del self._unverified_offsets[partition]
            if stored > high:
                log.error("actor %d: the checkpoint is at offset %d of %s[%d], past its end %d: "
                          "was the topic recreated? (a fresh broker needs a fresh "
                          "--checkpoint-dir)", self.index, stored, topic, partition, high)

    def stop(self, final_checkpoint: bool = True) -> dict[str, Any]:
        """Stop consuming, write a last checkpoint, commit, close the clients; the last status."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        if final_checkpoint and self.learner is not None and self.error is None:
            self.checkpoint()
            self._commit_pending()
        status = self.status()
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        if self._dlq is not None:
            self._dlq.flush(timeout_s=30)
            self._dlq = None
        if self._store is not None:
            self._store.release()
        return status

    # -- the consuming loop -------------------------------------------------------------------

    def _run(self) -> None:
        cfg = self.settings.trainer
        try:
            while not self._stop.is_set():
                self._commit_pending()
                if time.monotonic() - self._last_checkpoint >= cfg.checkpoint_interval_s:
                    self.checkpoint()
                    self._commit_pending()
                records = self._consumer.poll(
                    timeout_ms=cfg.poll_timeout_ms, max_records=cfg.max_batch
                )
                if records:
                    self.learn_records(records)
                self._update_lag()
                self._update_data_time()
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("actor %d: consuming loop failed", self.index)
            if self._exit_on_error:
                # Let Ray restart this actor from its last checkpoint.
                os._exit(1)

    def learn_records(self, records: dict[Any, list[Any]]) -> int:
        """Decode one poll's records, dead-letter the bad ones, learn the good; good count."""
        values: list[Any] = []
        headers: list[Any] = []
        keys: list[Any] = []
        timestamps: list[Any] = []
        partitions: list[int] = []
        offsets: list[int] = []
        next_offsets: dict[int, int] = {}
        for tp, batch in records.items():
            if not batch:
                continue
            for record in batch:
                values.append(record.value)
                headers.append(record.headers)
                keys.append(record.key)
                timestamps.append(record.timestamp)
                offsets.append(record.offset)
            partitions.extend([tp.partition] * len(batch))
            next_offsets[tp.partition] = batch[-1].offset + 1
            newest = batch[-1].timestamp
            if isinstance(newest, int) and newest > 0:
                self._newest_record_time = max(self._newest_record_time, newest / 1000.0)
        if not values:
            return 0
        decoded = decode_values(
            values, partitions, offsets, self.settings.trainer.num_categories, headers,
            keys=keys, timestamps=timestamps,
        )
        with self._lock:
            if decoded.bad:
                assert self._dlq is not None
                self.dead_letters += self._dlq.write(decoded.bad)
                for record in decoded.bad:
                    reason = record.reason
                    self.dead_letters_by_reason[reason] = (
                        self.dead_letters_by_reason.get(reason, 0) + 1
                    )
                self._warn_if_mismatched(decoded.bad, len(values))
            if decoded.count:
                learn = self._apply_backpressure(decoded.values)
                stats = self.learner.learn_many(learn)
                self.gan_learned += int(learn.numel())
                self._losses = learner_api.step_losses(stats)
                self.steps = stats.step  # GAN steps (one per step_size records)
            self.offsets.update(next_offsets)
        return decoded.count

    def _apply_backpressure(self, values: torch.Tensor) -> torch.Tensor:
        """The values the GAN learns from; under ``sample`` the rest are only counted.

        ``learn_all`` learns every value (if the GAN is slower than the stream, the consumer
        lag grows, visible as ``consumer_lag``). ``sample`` learns a uniform sample of at most
        ``sample_per_poll`` values per poll and counts the others in the baseline, so the
        trainer keeps up and the counts stay exact.
        """
        cfg = self.settings.trainer
        if cfg.backpressure != "sample" or values.numel() <= cfg.sample_per_poll:
            return values
        chosen = torch.randperm(values.numel(), generator=self._sample_rng)[: cfg.sample_per_poll]
        rest = torch.ones(values.numel(), dtype=torch.bool)
        rest[chosen] = False
        self.learner.count_many(values[rest])
        return values[chosen.sort().values]  # stream order, for the drift detector

    def _warn_if_mismatched(self, bad: list[Any], polled: int) -> None:
        """Say once a minute when records fall outside [0, K): likely a producer with another K."""
        out_of_range = [r for r in bad if r.reason == "out_of_range"]
        now = time.monotonic()
        if not out_of_range or now < self._next_mismatch_warning:
            return
        self._next_mismatch_warning = now + MISMATCH_WARNING_INTERVAL_S
        log.warning("actor %d: %d of %d records of this poll are outside [0, %d) (e.g. %s) and "
                    "go to the dead-letter topic: does the producer's K match the trainer's "
                    "num_categories? (logged at most every %gs; counted by reason "
                    "out_of_range)", self.index, len(out_of_range), polled,
                    self.settings.trainer.num_categories, out_of_range[0].error,
                    MISMATCH_WARNING_INTERVAL_S)

    def _update_data_time(self) -> None:
        """Caught up: the data is fresh as of now; behind: as of the newest record learned."""
        now = time.time()
        if self.lag == 0:
            self.data_time = now
        elif self._newest_record_time > self.data_time:
            # A producer's clock may run ahead; never claim data from the future.
            self.data_time = min(now, self._newest_record_time)

    def _update_lag(self) -> None:
        """Records on the owned partitions not consumed yet (from the last fetch's high water)."""
        topic = self.settings.kafka.numbers_topic
        lag = 0
        for p in self._partitions:
            high = self._consumer.highwater(TopicPartition(topic, p))
            if high is not None:
                lag += max(0, high - self.offsets.get(p, high))
        self.lag = lag
        if self._unverified_offsets:
            self._report_offsets_past_the_end()

    # -- checkpoints ----------------------------------------------------------------------------

    def _checkpoint_state(self) -> dict[str, Any]:
        cfg = self.settings.trainer
        return {
            "format": CHECKPOINT_FORMAT,
            "model_id": cfg.model_id,
            "actor": self.index,
            "num_actors": self.num_actors,
            "topic": self.settings.kafka.numbers_topic,
            "offsets": {int(p): int(o) for p, o in self.offsets.items()},
            "dead_letters": int(self.dead_letters),
            "dead_letters_by_reason": dict(self.dead_letters_by_reason),
            "records_skipped": int(self.records_skipped),
            "dead_letters_truncated": int(self._dlq.truncated if self._dlq is not None else 0),
            "gan_learned": int(self.gan_learned),
            "steps": int(self.steps),
            "learner": self.learner.state_dict(),
            "time": time.time(),
        }

    def _apply_checkpoint(self, state: dict[str, Any]) -> None:
        if state.get("num_actors") != self.num_actors:
            log.warning("actor %d: checkpoint was written with %s actors, now %d; partitions "
                        "not in the checkpoint resume from the group's committed offset",
                        self.index, state.get("num_actors"), self.num_actors)
        self.learner.load_state_dict(state["learner"])
        self.offsets = {int(p): int(o) for p, o in state["offsets"].items()}
        self.dead_letters = int(state["dead_letters"])
        self.dead_letters_by_reason = {
            str(k): int(v) for k, v in state.get("dead_letters_by_reason", {}).items()
        }
        self.records_skipped = int(state.get("records_skipped", 0))
        self._restored_truncated = int(state.get("dead_letters_truncated", 0))
        self.gan_learned = int(state.get("gan_learned", learner_api.samples_seen(self.learner)))
        self.steps = int(state["steps"])

    def checkpoint(self) -> int | None:
        """Write model state and offsets atomically; the checkpoint's sequence number.

        Dead letters sent before the snapshot are flushed before the file exists, and the
        offsets are committed to Kafka only after it (by the consuming thread).
        """
        self._last_checkpoint = time.monotonic()
        if self.learner is None:
            return None
        with self._lock:
            state = self._checkpoint_state()
            data = encode(state)  # serialized under the lock: a consistent snapshot
            offsets = dict(state["offsets"])
            self._checkpoint_seq += 1
            seq = self._checkpoint_seq
        if self._dlq is not None:
            self._dlq.flush(timeout_s=60)
        if self._store is not None:
            self._store.save_bytes(data, state, seq)
        self._pending_commit = offsets
        return seq

    def _commit_pending(self) -> None:
        offsets, self._pending_commit = self._pending_commit, None
        if not offsets or self._consumer is None:
            return
        topic = self.settings.kafka.numbers_topic
        try:
            self._consumer.commit(
                {TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()}
            )
            if self._commit_warned:
                log.info("actor %d: committing offsets again", self.index)
                self._commit_warned = False
        except Exception as exc:  # lag visibility only; the checkpoint is the source of truth
            if not self._commit_warned:
                log.warning("actor %d: cannot commit offsets to group %r: %s",
                            self.index, self.settings.trainer.group_id, exc)
                self._commit_warned = True

    def restore(self) -> int | None:
        """Reload the latest checkpoint into the learner (the consumer re-seeks next start)."""
        if self._store is None:
            return None
        restored = self._store.load_latest()
        if restored is None:
            return None
        with self._lock:
            self._apply_checkpoint(restored.state)
            if self._consumer is not None:
                topic = self.settings.kafka.numbers_topic
                for p, o in self.offsets.items():
                    if p in self._partitions:
                        self._consumer.seek(TopicPartition(topic, p), o)
        return restored.seq

    # -- what the coordinator asks --------------------------------------------------------------

    def get_weights(self) -> dict[str, torch.Tensor]:
        with self._lock:
            self._sent_weights = learner_api.get_weights(self.learner)
            return self._sent_weights

    def set_weights(self, weights: dict[str, torch.Tensor]) -> None:
        """Take the replicas' average, keeping the steps taken since ``get_weights``."""
        with self._lock:
            if self._sent_weights is not None:
                current = learner_api.get_weights(self.learner)
                weights = learner_api.apply_average(current, self._sent_weights, weights)
                self._sent_weights = None
            learner_api.set_weights(self.learner, weights)

    def pid(self) -> int:
        return os.getpid()

    def status(self) -> dict[str, Any]:
        with self._lock:
            learner = self.learner
            ready = learner is not None
            return {
                "index": self.index,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "device": self.device,
                "partitions": list(self._partitions),
                "offsets": {str(p): o for p, o in sorted(self.offsets.items())},
                "samples_seen": learner_api.samples_seen(learner) if ready else 0,
                "baseline_counts": learner_api.baseline_counts(learner) if ready else [],
                "dead_letters": self.dead_letters,
                "dead_letters_by_reason": dict(self.dead_letters_by_reason),
                "dead_letters_truncated": self._dlq.truncated if self._dlq is not None else 0,
                "dead_letters_lost": self._dlq.failed if self._dlq is not None else 0,
                "records_skipped": self.records_skipped,
                "data_time": self.data_time,
                "status_time": time.time(),
                "gan_learned": self.gan_learned,
                "lag": self.lag,
                "steps": self.steps,
                "estimate": learner.estimate().detach().cpu().tolist() if ready else [],
                "temperature": float(learner.temperature) if ready else math.nan,
                "generator_loss": self._losses[0],
                "discriminator_loss": self._losses[1],
                "checkpoint_seq": self._checkpoint_seq,
                "restored_seq": self._restored_seq,
                "running": self._thread is not None and self._thread.is_alive(),
                "error": self.error,
            }
