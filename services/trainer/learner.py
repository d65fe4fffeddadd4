"""The model's one learner actor: one ``OnlineGAN`` trained on every partition's blocks.

Ingest actors ``claim`` partitions (where does each begin?) and ``offer`` blocks. A block is
accepted only if it begins at its partition's next offset: a duplicate, a replay or a zombie's
late block begins elsewhere and is refused with the offset it should have had, so nothing is
learned twice and no lock or fence is needed between ingest actors. Accepted blocks wait in
the event-time merge (``merge.py``) and are learned in the stream's order: one GAN step per
``step_size`` values while the learner keeps up; while it is behind, its steps double in size
each round (``StepSizer``) until it keeps up, so every value is learned at any rate in steps
as small as that rate allows (or, with ``backpressure=sample``, steps stay ``step_size`` and
what ``ROUND_STEPS`` of them cannot take is only counted).

The learner is the only writer of the model's checkpoint (``checkpoint.py``): the GAN and the
next offset of every partition up to which it has learned, so a restart resumes exactly there.
Its epoch fence (``fence.py``) stops a paused instance whose successor runs from writing. A
plain class: ``service.py`` makes it a Ray actor (the one that takes the GPU).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from gumbel_core import CountingEstimator, OnlineGAN
from services.common import logs
from services.common.settings import TrainerServiceSettings
from services.flags import named
from services.trainer.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    CheckpointStore,
    NoValidCheckpoint,
    encode,
    learner_dir,
    old_layout,
)
from services.trainer.fence import EpochFence, Fenced
from services.trainer.histogram import (
    FINE_EVERY,
    FINE_LATENCY_BUCKETS_S,
    LATENCY_BUCKETS_S,
    STEP_BUCKETS_S,
    SecondsHistogram,
)
from services.trainer.merge import EventTimeMerge, Pieces
from services.trainer.source import Block
from services.trainer.status import LearnerStatus

__all__ = ["LearnerActor", "OfferReply", "ROUND_STEPS", "StepSizer", "build_learner"]

_log = logging.getLogger(__name__)

# Most GAN steps one learning round takes.
ROUND_STEPS = 8
# Behind: at least one step's values wait, and they would take the learner longer than
# this to step at its current step size (at its recent seconds a step), or its oldest piece
# has waited this long. Each round behind doubles the step (StepSizer), which also bounds
# what waits; with backpressure=sample, a round behind counts what its steps cannot take
# instead. A backlog the learner clears within this keeps its steps. (What the merge still
# holds back for event time is not the learner behind, nor are readers it has paused: they
# hold one block each.)
BEHIND_S = 0.25
# The largest step, in values. The GAN's cost per step barely grows with its values (it
# draws at most max_fake_batch_size fakes), so its rate grows with its steps: at 2^20 values
# a step, one CPU thread learns far more than any number of readers here can deliver.
MAX_STEP_VALUES = 1 << 20
# A piece smaller than a step waits this long for more values before it is stepped alone.
PARTIAL_STEP_WAIT_S = 1.0
# Upper bounds of the buckets of the learn-latency histogram (seconds from a value's record
# timestamp to the step that learned it): 1 ms to 100 s, 12% apart, then the rest.
LATENCY_BOUNDS_S = (*FINE_LATENCY_BUCKETS_S, math.inf)


def build_learner(settings: TrainerServiceSettings, device: str) -> OnlineGAN:
    """The model's ``OnlineGAN`` on ``device``."""
    cfg = settings.trainer
    # The learner's tensors are tiny ((B, K) with small K): intra-op threads only add
    # synchronisation, and on a busy machine they make a step 10-30x slower (measured:
    # 60 ms vs 2.2 ms per step at batch 1,024 on 2 loaded cores).
    if device == "cpu":
        torch.set_num_threads(1)
    return OnlineGAN(num_categories=cfg.num_categories, estimator=cfg.estimator,
                     seed=cfg.seed, device=device)


@dataclass(frozen=True)
class OfferReply:
    """What became of an offer's blocks, by partition, and what may be committed."""

    accepted: list[int] = field(default_factory=list)
    refused: dict[int, int] = field(default_factory=dict)  # -> the next offset it expects
    full: list[int] = field(default_factory=list)  # no room yet: offer again later
    unknown: list[int] = field(default_factory=list)  # not claimed (the learner restarted)
    committed: dict[int, int] = field(default_factory=dict)  # the last checkpoint's offsets
    checkpoint_seq: int = 0


class LearnerActor:
    """The learner of ``settings.trainer.model_id``; ``start()`` restores and begins learning."""

    def __init__(self, settings: TrainerServiceSettings, *, device: str | None = None,
                 autostart: bool = False, exit_on_error: bool = False) -> None:
        self.settings = settings
        cfg = settings.trainer
        self.log_fields = {"model_id": cfg.model_id, "actor": "learner"}
        self._log = logs.FieldsAdapter(_log, **self.log_fields)
        self.device = device or ("cuda" if cfg.gpus_per_actor > 0 else "cpu")
        self._exit_on_error = exit_on_error
        # Two locks, so offers (accepted offsets, the merge) are taken while the GAN steps;
        # when both are held, the model's is taken first.
        self._offers_lock = threading.Lock()  # self.accepted, self._merge, self._stopping
        self._lock = threading.RLock()  # the model, its learned offsets and counters, _rows
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._merge = EventTimeMerge(cfg.num_categories, idle_s=cfg.idle_s,
                                     max_blocks=cfg.waiting_blocks)
        self._rows = Pieces.empty(cfg.num_categories)  # released by the merge, not stepped yet
        self.step_sizer = StepSizer(cfg.step_size)
        self._seconds_per_step = 0.0  # recent mean (0: none yet), for what waiting would take
        self.gan: Any = None
        self.accepted: dict[int, int] = {}  # partition -> offset the next block must begin at
        self.learned: dict[int, int] = {}  # partition -> offset after the last value learned
        self.dead_letters_by_reason: dict[str, int] = {}
        # partition -> values learned from it: with the offsets, every offset's account
        self.values_by_partition: dict[int, int] = {}
        self.records_skipped = 0
        self.gan_learned = 0
        self.losses = (math.nan, math.nan)
        self.window = CountingEstimator(cfg.num_categories, memory=float(cfg.window_records))
        # Latencies since this process started, for the Estimate's histograms (and the bench).
        self.record_to_step = SecondsHistogram(FINE_LATENCY_BUCKETS_S)
        self.poll_to_step = SecondsHistogram(LATENCY_BUCKETS_S)
        self.step_duration = SecondsHistogram(STEP_BUCKETS_S)
        self._history_lost: str | None = None  # the policy, when the history could not be read
        directory = None if cfg.checkpoint_dir is None else learner_dir(cfg.checkpoint_dir,
                                                                         cfg.model_id)
        self._store = None if directory is None else CheckpointStore(directory)
        self._fence = None if directory is None else EpochFence(directory)
        self._seq = 0
        self._restored_seq: int | None = None
        self._committed: dict[int, int] = {}
        self._committed_seq = 0
        self._last_checkpoint = time.monotonic()
        self._checkpoint_seconds = 0.0
        self._checkpoint_time = 0.0
        self._checkpoint_failures = 0
        # (when, values, steps, seconds) of each learning call, for the recent rates
        self._recent: deque[tuple[float, int, int, float]] = deque(maxlen=512)
        self._record_to_step = 0.0  # age of the newest record learned, at its step
        self._newest_learned = 0.0
        self.error: str | None = None
        self._stopping = False
        if autostart:
            self.start()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, background: bool = True) -> None:
        """Restore the newest checkpoint (or start fresh), then learn on a thread of its own."""
        if self.gan is not None:
            return
        self.gan = build_learner(self.settings, self.device)
        if self._fence is not None:
            epoch = self._fence.claim()
            self._log.info("learner claimed an epoch of %s", self._fence.directory,
                           extra={"epoch": epoch})
        self._restore()
        self._last_checkpoint = time.monotonic()
        if background:
            self._thread = threading.Thread(target=self._guarded, daemon=True,
                                            name=f"learner-{self.settings.trainer.model_id}")
            self._thread.start()

    def _restore(self) -> None:
        cfg = self.settings.trainer
        policy = cfg.on_corrupt_checkpoint
        if self._store is None:
            return
        old = old_layout(cfg.checkpoint_dir, cfg.model_id) if cfg.checkpoint_dir else []
        try:
            restored = self._store.load_latest()
        except NoValidCheckpoint as exc:
            if policy == "fail":
                raise CheckpointError(
                    f"{exc}. Set {named('trainer', 'trainer', 'on_corrupt_checkpoint')} to "
                    "relearn or accept_loss") from exc
            self._log.error("%s; on_corrupt_checkpoint=%s", exc, policy)
            self._history_lost = policy
            return
        if restored is None:
            if old:
                if policy == "fail":
                    raise CheckpointError(old_layout_message(cfg.model_id, old))
                self._log.error("%d checkpoints of the per-partition layout left alone in %s; "
                          "on_corrupt_checkpoint=%s: a new learner starts", len(old),
                          old[0].parent.parent, policy)
                self._history_lost = policy
            return
        state = restored.state
        self.gan.load_state_dict(state["learner"])
        self.learned = {int(p): int(o) for p, o in state["offsets"].items()}
        self.accepted = dict(self.learned)
        self.dead_letters_by_reason = {str(k): int(v) for k, v in state["dead_letters"].items()}
        self.values_by_partition = {int(p): int(n)
                                    for p, n in state["values_by_partition"].items()}
        self.records_skipped = int(state["records_skipped"])
        self.gan_learned = int(state["gan_learned"])
        self.window.load_state_dict(state["window"])
        self._restored_seq = restored.seq
        self._seq = max([restored.seq, *self._store.sequence_numbers()])  # never reuse a number
        self._committed, self._committed_seq = dict(self.learned), restored.seq
        self._checkpoint_time = float(state.get("time", 0.0))
        self._log.info("learner restored %s (%d values)", restored.path,
                       self.gan.samples_seen, extra={"offsets": self.learned})

    def _guarded(self) -> None:
        try:
            self._learn_loop()
        except Fenced as exc:  # a newer instance runs: stop writing, and never restart over it
            self.error = f"fenced: {exc}"
            self._log.error("learner: %s", exc)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            self._log.exception("learner failed")
            if self._exit_on_error:
                os._exit(1)  # Ray restarts the learner from its last checkpoint

    def stop(self, final_checkpoint: bool = True) -> LearnerStatus:
        """Learn everything accepted (the merge releases it all), write a final checkpoint;
        the status. Offers after this are answered ``full``."""
        with self._offers_lock:
            self._stopping = True
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        if self.gan is not None and self.error is None:
            while self.learn_round(flush=True):
                pass
            if final_checkpoint:
                self.checkpoint()
        return self.status()

    # -- what ingest actors call ----------------------------------------------------------------

    def claim(self, partitions: Mapping[int, tuple[int, int | None]],
              expected: Iterable[int] = ()) -> dict[int, int]:
        """Partitions an ingest actor reads from now on, each with (the log's first offset,
        the group's committed offset or None); where each one's next block must begin.
        ``expected``: every partition of the topic, which the merge waits for from now on
        (other readers may still be starting)."""
        with self._lock, self._offers_lock:
            for p in expected:
                self._merge.expect(int(p))
            for p, (beginning, committed) in partitions.items():
                p = int(p)
                if p not in self.accepted:
                    self.accepted[p] = self._first_offset(p, int(beginning), committed)
                    self.learned.setdefault(p, self.accepted[p])
                self._merge.watch(p)
            return {int(p): self.accepted[int(p)] for p in partitions}

    def _first_offset(self, partition: int, beginning: int, committed: int | None) -> int:
        """Where a partition the model has never learned begins: its first offset; after a lost
        history, or when the group committed past the start with no checkpoint to say why,
        ``on_corrupt_checkpoint`` decides, and what is skipped is counted."""
        policy = self._history_lost
        if self._store is None:  # no checkpoints at all: the group's offsets are the history
            return max(beginning, committed) if committed is not None else beginning
        if policy is None and committed is not None and committed > beginning \
                and self._restored_seq is None:
            policy = self.settings.trainer.on_corrupt_checkpoint
            if policy == "fail":
                raise CheckpointError(
                    f"no checkpoint holds partition {partition}, but the group "
                    f"{self.settings.trainer.group_id!r} committed offset {committed} for it: "
                    "the records before it would never reach the model. Set "
                    f"{named('trainer', 'trainer', 'on_corrupt_checkpoint')} to relearn "
                    "(from the earliest offsets) or accept_loss (from the committed ones)")
        if policy is None:
            return beginning
        start = max(beginning, committed) if policy == "accept_loss" and committed is not None \
            else beginning
        self.records_skipped += start
        how = ("relearning from the earliest offset the topic holds" if policy == "relearn"
               else "accepting the loss, resuming at the group's committed offset")
        self._log.error("%s; %d records will never reach the model (records_skipped)", how,
                        start, extra={"partition": partition, "offset": start})
        return start

    def offer(self, blocks: Iterable[Block], caught_up: Iterable[int] = ()) -> OfferReply:
        """Accept each block that begins at its partition's next offset (and has room);
        ``caught_up``: partitions whose reader is at the log's end."""
        reply = OfferReply(committed=dict(self._committed), checkpoint_seq=self._committed_seq)
        with self._offers_lock:  # not the model's lock: offers go on while the GAN steps
            for block in blocks:
                p = block.partition
                if self._stopping or self._merge.full(p):
                    reply.full.append(p)
                elif p not in self.accepted:
                    reply.unknown.append(p)
                elif block.start != self.accepted[p]:
                    reply.refused[p] = self.accepted[p]
                else:
                    self.accepted[p] = block.end
                    self._merge.add(block)
                    reply.accepted.append(p)
            self._merge.caught_up(caught_up)
        if reply.accepted:
            self._wake.set()
        return reply

    # -- learning -------------------------------------------------------------------------------

    def _learn_loop(self) -> None:
        interval = self.settings.trainer.checkpoint_interval_s
        while not self._stop.is_set():
            if time.monotonic() - self._last_checkpoint >= interval:
                self.checkpoint()
            if not self.learn_round():
                self._wake.wait(0.05)
                self._wake.clear()

    def learn_round(self, flush: bool = False) -> int:
        """Release what the merge lets go, take up to ``ROUND_STEPS`` steps; the rows taken
        (0: nothing to do). ``flush``: release everything, step what waits however small."""
        cfg = self.settings.trainer
        with self._lock:
            with self._offers_lock:  # the pieces leave the merge and join _rows at once
                self._rows.extend(self._merge.release(everything=flush))
            if not len(self._rows):
                self.step_sizer.next(behind=False, waiting=0.0)
                return 0
            waited = time.monotonic() - float(self._rows.released_at[0])
            sizes = self._rows.counts.sum(1)
            waiting = float(sizes.sum())
            to_clear_s = waiting / self.step_sizer.size * self._seconds_per_step
            # Behind only with a whole step waiting: a slow stream's part step waits for
            # values, not for the learner (counted as behind, it doubled the steps and so the
            # wait, until PARTIAL_STEP_WAIT_S flushed it: p99 1.08 s at 1,000 records/s).
            behind = waiting >= self.step_sizer.size and (
                waited >= BEHIND_S or to_clear_s > BEHIND_S)
            sample = cfg.backpressure == "sample"
            target = cfg.step_size if sample else self.step_sizer.next(behind=behind,
                                                                        waiting=waiting)
            steps, learned_rows, counted_rows = _plan(
                sizes, target, ROUND_STEPS, count_rest=sample and behind,
                flush=flush or waited >= PARTIAL_STEP_WAIT_S)
            taken = self._rows.take(learned_rows + counted_rows)
            if learned_rows:
                self._learn(taken.counts[:learned_rows], steps, target)
                self._note_latency(taken.times[:learned_rows], taken.polled_at[:learned_rows],
                                   taken.counts[:learned_rows])
            if counted_rows:
                self.gan.count_counts(taken.counts[learned_rows:])
            self.window.learn_counts(taken.counts.sum(0))
            self._account(taken)
            if len(taken):
                newest = float(taken.times.max())
                self._newest_learned = max(self._newest_learned, newest)
                self._record_to_step = max(0.0, time.time() - newest) if newest > 0 else 0.0
            return len(taken)

    def _note_latency(self, times: torch.Tensor, polled_at: torch.Tensor,
                      counts: torch.Tensor) -> None:
        """Each value just learned, into the histograms: now less its record's timestamp, and
        now less its poll (rows whose time is unknown, 0, are left out)."""
        now, values = time.time(), counts.sum(1)  # (m,)
        for histogram, since in ((self.record_to_step, times), (self.poll_to_step, polled_at)):
            known = since > 0
            if bool(known.any()):
                histogram.observe(now - since[known], values[known])

    def _account(self, taken: Pieces) -> None:
        """Move each partition's learned offset to the end of its last row taken, and count
        those rows' values and dead letters: the checkpoint's offsets are exact between any
        two rows, a block half learned included."""
        values = taken.counts.sum(1)
        for partition in torch.unique(taken.partitions).tolist():
            mine = taken.partitions == partition
            self.learned[partition] = max(self.learned.get(partition, 0),
                                          int(taken.row_ends[mine].max()))
            self.values_by_partition[partition] = (
                self.values_by_partition.get(partition, 0) + int(round(float(values[mine].sum()))))
        for _, dead in taken.dead:
            for reason, n in dead.items():
                self.dead_letters_by_reason[reason] = (
                    self.dead_letters_by_reason.get(reason, 0) + int(n))

    def _learn(self, rows: torch.Tensor, segments: torch.Tensor, target: int) -> None:
        """One GAN step per segment of ``rows`` (m, K); ``segments`` (m,) says which. A step
        that one large row (a packed record) makes larger than ``target`` is split into steps
        of about ``target`` within this round, so the checkpoint never sees half a row."""
        n = int(segments[-1]) + 1
        counts = torch.zeros(n, rows.shape[1], dtype=torch.float64).index_add_(0, segments, rows)
        counts = _split_large_steps(counts[counts.sum(1) > 0], target)  # (steps, K)
        if not counts.shape[0]:
            return
        started = time.monotonic()
        stats = self.gan.learn_counts(counts)
        took, steps = time.monotonic() - started, int(counts.shape[0])
        self.losses = (stats.generator_loss, stats.discriminator_loss)
        self.gan_learned += int(counts.sum())
        self._recent.append((time.monotonic(), int(counts.sum()), steps, took))
        self._seconds_per_step = took / steps if not self._seconds_per_step else (
            0.8 * self._seconds_per_step + 0.2 * took / steps)
        # learn_counts times its steps together: each is counted at their mean
        self.step_duration.observe(torch.tensor([took / steps]), torch.tensor([float(steps)]))

    # -- checkpoints ----------------------------------------------------------------------------

    def checkpoint(self) -> int | None:
        """Write the model and the learned offsets atomically; the checkpoint's number (None
        without a checkpoint_dir). Its offsets are what ingest actors commit afterwards."""
        self._last_checkpoint = started = time.monotonic()
        cfg = self.settings.trainer
        with self._lock:
            offsets = dict(self.learned)
            state = {
                "format": CHECKPOINT_FORMAT, "model_id": cfg.model_id,
                "topic": self.settings.kafka.numbers_topic, "learner": self.gan.state_dict(),
                "offsets": offsets, "dead_letters": dict(self.dead_letters_by_reason),
                "values_by_partition": dict(self.values_by_partition),
                "records_skipped": self.records_skipped, "gan_learned": self.gan_learned,
                "window": self.window.state_dict(), "time": time.time(),
                "epoch": self._fence.epoch if self._fence is not None else 0,
            }
            data = encode(state)  # serialized under the lock: a consistent snapshot
            self._seq += 1
            seq = self._seq
        if self._store is not None:
            try:
                check = self._fence.check if self._fence is not None else None
                self._store.save_bytes(data, state, seq, before_rename=check)
            except Exception:
                self._checkpoint_failures += 1
                raise
        self._committed, self._committed_seq = offsets, seq
        self._checkpoint_seconds, self._checkpoint_time = time.monotonic() - started, time.time()
        return seq if self._store is not None else None

    # -- what the driver reads ----------------------------------------------------------------

    def status(self) -> LearnerStatus:
        now = time.monotonic()
        recent = [r for r in list(self._recent) if now - r[0] <= 10.0]
        span = recent[-1][0] - recent[0][0] if len(recent) > 1 else 0.0
        steps = sum(r[2] for r in recent)
        with self._lock:
            with self._offers_lock:
                waiting, late_values = self._merge.waiting(), self._merge.late_values
                all_caught_up = self._merge.all_caught_up()
            gan = self.gan
            idle = not waiting and not len(self._rows)
            k = self.settings.trainer.num_categories
            return LearnerStatus(
                pid=os.getpid(), host=socket.gethostname(),
                node_id=getattr(self, "node_id", ""), device=self.device,
                offsets={str(p): o for p, o in sorted(self.learned.items())},
                values_by_partition={str(p): n for p, n in sorted(
                    self.values_by_partition.items())},
                samples_seen=int(gan.samples_seen) if gan is not None else 0,
                gan_learned=self.gan_learned,
                baseline_counts=tuple(int(round(float(c))) for c in gan.baseline.counts.tolist())
                if gan is not None else (0,) * k,
                window_counts=tuple(float(c) for c in self.window.counts.tolist()),
                estimate=tuple(float(p) for p in gan.estimate().tolist())
                if gan is not None else (),
                temperature=float(gan.temperature) if gan is not None else math.nan,
                generator_loss=self.losses[0], discriminator_loss=self.losses[1],
                steps=int(gan.step) if gan is not None else 0,
                drift_detections=int(gan.drift_detections) if gan is not None else 0,
                dead_letters=sum(self.dead_letters_by_reason.values()),
                dead_letters_by_reason=dict(sorted(self.dead_letters_by_reason.items())),
                records_skipped=self.records_skipped,
                waiting_blocks=waiting,
                late_values=late_values,
                learn_latency=tuple(self.record_to_step.per_bucket.tolist()),
                record_to_step=self.record_to_step.to_schema(every=FINE_EVERY),
                poll_to_step=self.poll_to_step.to_schema(),
                step_duration=self.step_duration.to_schema(),
                values_per_s=sum(r[1] for r in recent[1:]) / span if span > 0 else 0.0,
                steps_per_s=sum(r[2] for r in recent[1:]) / span if span > 0 else 0.0,
                step_seconds=sum(r[3] for r in recent) / steps if steps else 0.0,
                record_to_step_seconds=self._record_to_step,
                checkpoint_seq=self._seq, restored_seq=self._restored_seq,
                checkpoint_seconds=self._checkpoint_seconds,
                checkpoint_time=self._checkpoint_time,
                checkpoint_failures=self._checkpoint_failures,
                running=self._thread is not None and self._thread.is_alive(),
                error=self.error,
                data_time=time.time() if idle and all_caught_up
                else min(time.time(), self._newest_learned),
                status_time=time.time(),
            )


def old_layout_message(model_id: str, files: list[Any]) -> str:
    return (f"model {model_id!r} has {len(files)} checkpoints of the per-partition layout "
            f"(in {files[0].parent.parent}/actor-<i>/), which one learner per model cannot "
            f"continue: set {named('trainer', 'trainer', 'on_corrupt_checkpoint')} to relearn "
            "(from the earliest offsets) or "
            "accept_loss (from the group's committed ones); the old files are left alone")


class StepSizer:
    """The values a GAN step takes: ``step_size`` while the learner keeps up; doubled by each
    round that finds it behind (what waits would take it over ``BEHIND_S``), up
    to ``MAX_STEP_VALUES``; halved back towards ``step_size`` by each round that finds less
    than one step waiting. So a stream the learner cannot follow a step per ``step_size``
    values is learned whole, in steps about as small as its rate allows (within a factor of
    2): the number of steps a second is the only limit, and quality per record falls no
    further than that rate makes it."""

    def __init__(self, step_size: int, largest: int = MAX_STEP_VALUES) -> None:
        self.step_size, self.largest = step_size, max(step_size, largest)
        self.size = step_size

    def next(self, *, behind: bool, waiting: float) -> int:
        """This round's step size, given whether it is behind and the values waiting."""
        if behind:
            self.size = min(2 * self.size, self.largest)
        elif waiting < self.size:
            self.size = max(self.step_size, self.size // 2)
        return self.size


def _split_large_steps(counts: torch.Tensor, target: int) -> torch.Tensor:
    """``counts`` (steps, K) with each step of at least ``2 * target`` values cut into
    ``floor(size / target)`` steps of its categories in proportion (a stratified split: the
    values of one record are learned in any order). A step a little over ``target`` (its
    last row crossed the boundary) stays whole."""
    parts = torch.clamp(torch.floor(counts.sum(1) / target), min=1).to(torch.int64)
    if not bool((parts > 1).any()):
        return counts
    out = []
    for row, p in zip(counts, parts.tolist(), strict=True):
        if p == 1:
            out.append(row[None])
            continue
        edges = torch.floor(row[None, :] * torch.arange(p + 1, dtype=torch.float64)[:, None] / p)
        out.append(edges.diff(dim=0))
    split = torch.cat(out)
    return split[split.sum(1) > 0]


def _plan(sizes: torch.Tensor, target: int, round_steps: int, *, count_rest: bool,
          flush: bool) -> tuple[torch.Tensor, int, int]:
    """This round's steps of ``target`` values over rows of ``sizes`` (m,) values: (the step
    of each row learned, rows learned, rows after them only counted). Rows are taken in order
    and never split; a step closes once it holds ``target`` values; at most ``round_steps``
    steps. ``count_rest`` (behind with backpressure=sample): the rows after ``round_steps``
    steps are only counted. A last step smaller than ``target`` waits for more values unless
    ``flush``."""
    total = float(sizes.sum())
    before = torch.cumsum(sizes, 0) - sizes  # (m,) values before each row
    segments = (before // target).to(torch.int64)  # (m,) the step each row falls in
    full_steps = int(total // target)
    steps = min(full_steps, round_steps)
    if flush and steps < round_steps and total > steps * target:
        steps += 1  # the small last step too
    learned = int((segments < steps).sum()) if steps else 0
    counted = len(sizes) - learned if count_rest and steps >= round_steps else 0
    if flush and not steps:  # rows of no values (blocks of only dead letters)
        counted = len(sizes)
    return segments[:learned], learned, counted
