"""One trainer replica without I/O: a learner per partition, and the offsets and counts of
what it learned.

The learners' state and the offsets change together in ``learn`` (the caller holds the lock),
and ``state_dict`` holds both, so a checkpoint of it resumes exactly after the last record
learned: nothing skipped, nothing learned twice.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from gumbel_core import CountingEstimator
from services.trainer import learner as learner_api
from services.trainer.backpressure import split
from services.trainer.mixture import mixture, weighted_mean
from services.trainer.ports import Learner
from services.trainer.source import PolledBatch
from services.trainer.status import ActorStatus

__all__ = ["Replica"]


# Checkpoints of format 1 hold one learner for all of an actor's partitions; it is kept under
# this key and goes on learning every partition that has no learner of its own.
ALL_PARTITIONS = -1


class Replica:
    """One learner per partition, fed batch by batch, with the next offset of each partition.

    Each partition has a learner of its own because partitions differ (a topic keyed by
    category holds some categories in each) and a poll returns mostly one partition: a single
    learner would follow each partition's burst. The replica's estimate is the mixture of its
    learners' estimates weighted by their records, as the coordinator mixes the replicas'.
    """

    def __init__(
        self, learner_factory: Callable[[], Learner], num_categories: int, *,
        backpressure: str = "learn_all", sample_per_poll: int = 4096, seed: int = 0,
        window_records: float | None = None,
    ) -> None:
        self._learner_factory = learner_factory
        self.learners: dict[int, Learner] = {}  # partition -> its learner
        self._k = num_categories
        # Recent counts (a forgetting counter): the yardstick of a learner that follows drift.
        self.window: CountingEstimator | None = None
        if window_records is not None:
            self.window = CountingEstimator(self._k, memory=max(2.0, window_records))
        self.backpressure = backpressure
        self.sample_per_poll = sample_per_poll
        # Which values `sample` backpressure learns from; the counts stay exact whatever it picks.
        self._sample_rng = torch.Generator().manual_seed(seed)
        self.offsets: dict[int, int] = {}  # partition -> next offset to learn from
        # Partitions let go when the actors were rescaled, kept (not counted) in every
        # checkpoint until their new owner has adopted them: (offset, learner state).
        self.released: dict[int, tuple[int, dict[str, Any]]] = {}
        self.dead_letters = 0
        self.dead_letters_by_reason: dict[str, int] = {}
        self.records_skipped = 0  # records knowingly never learned (on_corrupt_checkpoint)
        self.gan_learned = 0  # values the GAN learned from (all of them under learn_all)
        self.losses = (math.nan, math.nan)  # (generator, discriminator) of the last step

    def learner_of(self, partition: int) -> Learner:
        if ALL_PARTITIONS in self.learners:  # restored from a one-learner checkpoint
            return self.learners[ALL_PARTITIONS]
        if partition not in self.learners:
            self.learners[partition] = self._learner_factory()
        return self.learners[partition]

    @property
    def one_learner(self) -> bool:
        """Restored from a format-1 checkpoint: one learner for all partitions."""
        return ALL_PARTITIONS in self.learners

    def adopt(self, partition: int, learner_state: dict[str, Any], offset: int) -> None:
        """Take over ``partition``'s learner from another actor's checkpoint (rescaling)."""
        learner = self._learner_factory()
        learner.load_state_dict(learner_state)
        self.learners[partition] = learner
        self.offsets[partition] = offset

    def keep_only(self, partitions: list[int]) -> list[int]:
        """Let go of the partitions this actor no longer owns (another actor adopts them);
        which were let go."""
        gone = [p for p in set(self.learners) | set(self.offsets)
                if p != ALL_PARTITIONS and p not in partitions]
        for partition in gone:
            learner = self.learners.pop(partition, None)
            offset = self.offsets.pop(partition, None)
            if learner is not None and offset is not None:
                self.released[partition] = (offset, learner.state_dict())
        return sorted(gone)

    def forget_released(self, adopted: dict[int, int]) -> None:
        """Drop released partitions that their new owners hold (``adopted``: partition ->
        offset in an owner's checkpoint) at or past the released offset."""
        for partition, offset in adopted.items():
            if partition in self.released and offset >= self.released[partition][0]:
                del self.released[partition]

    @property
    def samples_seen(self) -> int:
        return sum(int(learner.samples_seen) for learner in self.learners.values())

    @property
    def steps(self) -> int:
        """GAN steps of all the learners."""
        return sum(int(learner.step) for learner in self.learners.values())

    def learn(self, batch: PolledBatch) -> int:
        """Learn the batch's good values, count its bad records; how many values were good."""
        for record in batch.decoded.bad:
            reason = record.reason
            self.dead_letters_by_reason[reason] = self.dead_letters_by_reason.get(reason, 0) + 1
        self.dead_letters += len(batch.decoded.bad)
        if batch.decoded.count and self.window is not None:
            self.window.learn_many(batch.decoded.values)
        by_partition = batch.by_partition or (
            {ALL_PARTITIONS: batch.decoded.values} if batch.decoded.count else {})
        for partition, values in by_partition.items():
            learner = self.learner_of(partition)
            learn, count_only = split(values, self.backpressure, self.sample_per_poll,
                                      self._sample_rng)
            if count_only.numel():
                learner.count_many(count_only)
            stats = learner.learn_many(learn)
            self.gan_learned += int(learn.numel())
            self.losses = (float(stats.generator_loss), float(stats.discriminator_loss))
        self.offsets.update(batch.next_offsets)
        return batch.decoded.count

    def state_dict(self) -> dict[str, Any]:
        """The learners and the offsets and counts that go with them (a checkpoint's payload)."""
        return {
            "offsets": {int(p): int(o) for p, o in self.offsets.items()},
            "dead_letters": int(self.dead_letters),
            "dead_letters_by_reason": dict(self.dead_letters_by_reason),
            "records_skipped": int(self.records_skipped),
            "gan_learned": int(self.gan_learned),
            "learners": {int(p): learner.state_dict() for p, learner in self.learners.items()},
            "released": {int(p): {"offset": int(o), "learner": state}
                         for p, (o, state) in self.released.items()},
            **({"window": self.window.state_dict()} if self.window is not None else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.learners = {}
        # Format 1: one learner for every partition of the actor (kept as such). Format 2 may
        # hold no learner at all (checkpointed before a first record): that is not format 1.
        saved = state["learners"] if "learners" in state else {ALL_PARTITIONS: state["learner"]}
        for partition, learner_state in saved.items():
            learner = self._learner_factory()
            learner.load_state_dict(learner_state)
            self.learners[int(partition)] = learner
        self.offsets = {int(p): int(o) for p, o in state["offsets"].items()}
        self.released = {int(p): (int(r["offset"]), r["learner"])
                         for p, r in state.get("released", {}).items()}
        self.dead_letters = int(state["dead_letters"])
        self.dead_letters_by_reason = {
            str(k): int(v) for k, v in state.get("dead_letters_by_reason", {}).items()
        }
        self.records_skipped = int(state.get("records_skipped", 0))
        self.gan_learned = int(state.get("gan_learned", self.samples_seen))
        if self.window is not None and "window" in state:
            self.window.load_state_dict(state["window"])

    def status(self, base: ActorStatus) -> ActorStatus:
        """``base`` (the actor's runtime facts) with this replica's model and counts."""
        learners = list(self.learners.values())
        counts = [0] * self._k
        for learner in learners:
            for c, n in enumerate(learner_api.baseline_counts(learner)):
                counts[c] += n
        records = [float(learner.samples_seen) for learner in learners]
        weights = dict(enumerate(records))
        estimate = mixture({i: learner.estimate().detach().cpu().tolist()
                            for i, learner in enumerate(learners)}, weights, self._k)
        temperatures = [float(learner.temperature) for learner in learners]
        temperature = weighted_mean(temperatures, records) if learners else 1.0
        return replace(
            base,
            offsets={str(p): o for p, o in sorted(self.offsets.items())},
            samples_seen=self.samples_seen,
            gan_learned=self.gan_learned,
            baseline_counts=tuple(counts),
            estimate=tuple(estimate) if estimate is not None else tuple([1.0 / self._k] * self._k),
            temperature=temperature,
            generator_loss=self.losses[0],
            discriminator_loss=self.losses[1],
            steps=self.steps,
            drift_detections=sum(int(learner.drift_detections) for learner in learners),
            schedule_steps=min((learner_api.schedule_steps(learner) for learner in learners),
                               default=0),
            window_counts=(tuple(self.window.counts.tolist()) if self.window is not None
                           else ()),
            dead_letters=self.dead_letters,
            dead_letters_by_reason=dict(self.dead_letters_by_reason),
            records_skipped=self.records_skipped,
        )
