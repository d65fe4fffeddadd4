"""One trainer replica without I/O: a learner and the offsets and counts of what it learned.

The learner's state and the offsets change together in ``learn`` (the caller holds the lock),
and ``state_dict`` holds both, so a checkpoint of it resumes exactly after the last record
learned: nothing skipped, nothing learned twice.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch

from gumbel_core import CountingEstimator
from services.trainer import learner as learner_api
from services.trainer.backpressure import split
from services.trainer.ports import Learner
from services.trainer.source import PolledBatch
from services.trainer.status import ActorStatus

__all__ = ["Replica"]


class Replica:
    """``learner`` fed batch by batch, with the next offset of each partition it learned."""

    def __init__(
        self, learner: Learner, *, backpressure: str = "learn_all",
        sample_per_poll: int = 4096, seed: int = 0, window_records: float | None = None,
    ) -> None:
        self.learner = learner
        # Recent counts (a forgetting counter): the yardstick of a learner that follows drift.
        self.window: CountingEstimator | None = None
        if window_records is not None:
            k = int(learner.baseline.counts.numel())
            self.window = CountingEstimator(k, memory=max(2.0, window_records))
        self.backpressure = backpressure
        self.sample_per_poll = sample_per_poll
        # Which values `sample` backpressure learns from; the counts stay exact whatever it picks.
        self._sample_rng = torch.Generator().manual_seed(seed)
        self.offsets: dict[int, int] = {}  # partition -> next offset to learn from
        self.dead_letters = 0
        self.dead_letters_by_reason: dict[str, int] = {}
        self.records_skipped = 0  # records knowingly never learned (on_corrupt_checkpoint)
        self.gan_learned = 0  # values the GAN learned from (all of them under learn_all)
        self.steps = 0
        self.losses = (math.nan, math.nan)  # (generator, discriminator) of the last step

    def learn(self, batch: PolledBatch) -> int:
        """Learn the batch's good values, count its bad records; how many values were good."""
        for record in batch.decoded.bad:
            reason = record.reason
            self.dead_letters_by_reason[reason] = self.dead_letters_by_reason.get(reason, 0) + 1
        self.dead_letters += len(batch.decoded.bad)
        if batch.decoded.count and self.window is not None:
            self.window.learn_many(batch.decoded.values)
        if batch.decoded.count:
            learn, count_only = split(batch.decoded.values, self.backpressure,
                                      self.sample_per_poll, self._sample_rng)
            if count_only.numel():
                self.learner.count_many(count_only)
            stats = self.learner.learn_many(learn)
            self.gan_learned += int(learn.numel())
            self.losses = (float(getattr(stats, "generator_loss", math.nan)),
                           float(getattr(stats, "discriminator_loss", math.nan)))
            self.steps = int(stats.step)  # GAN steps (one per samples_per_step values)
        self.offsets.update(batch.next_offsets)
        return batch.decoded.count

    def state_dict(self) -> dict[str, Any]:
        """The learner and the offsets and counts that go with it (a checkpoint's payload)."""
        return {
            "offsets": {int(p): int(o) for p, o in self.offsets.items()},
            "dead_letters": int(self.dead_letters),
            "dead_letters_by_reason": dict(self.dead_letters_by_reason),
            "records_skipped": int(self.records_skipped),
            "gan_learned": int(self.gan_learned),
            "steps": int(self.steps),
            "learner": self.learner.state_dict(),
            **({"window": self.window.state_dict()} if self.window is not None else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.learner.load_state_dict(state["learner"])
        self.offsets = {int(p): int(o) for p, o in state["offsets"].items()}
        self.dead_letters = int(state["dead_letters"])
        self.dead_letters_by_reason = {
            str(k): int(v) for k, v in state.get("dead_letters_by_reason", {}).items()
        }
        self.records_skipped = int(state.get("records_skipped", 0))
        self.gan_learned = int(state.get("gan_learned", self.learner.samples_seen))
        self.steps = int(state["steps"])
        if self.window is not None and "window" in state:
            self.window.load_state_dict(state["window"])

    def status(self, base: ActorStatus) -> ActorStatus:
        """``base`` (the actor's runtime facts) with this replica's model and counts."""
        counts = self.learner.baseline.counts
        return replace(
            base,
            offsets={str(p): o for p, o in sorted(self.offsets.items())},
            samples_seen=int(self.learner.samples_seen),
            gan_learned=self.gan_learned,
            baseline_counts=tuple(int(round(float(c))) for c in counts.tolist()),
            estimate=tuple(self.learner.estimate().detach().cpu().tolist()),
            temperature=float(self.learner.temperature),
            generator_loss=self.losses[0],
            discriminator_loss=self.losses[1],
            steps=self.steps,
            drift_detections=int(getattr(self.learner, "drift_detections", 0)),
            schedule_steps=learner_api.schedule_steps(self.learner),
            window_counts=(tuple(self.window.counts.tolist()) if self.window is not None
                           else ()),
            dead_letters=self.dead_letters,
            dead_letters_by_reason=dict(self.dead_letters_by_reason),
            records_skipped=self.records_skipped,
        )
