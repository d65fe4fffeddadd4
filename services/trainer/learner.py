"""The trainer's one adapter to ``gumbel_core``: build a learner, and read its counts and its
temperature schedule through the ``Learner`` protocol (``ports.py``)."""

from __future__ import annotations

from services.trainer.ports import Learner

__all__ = ["build_learner", "baseline_counts", "schedule_steps"]


def build_learner(
    num_categories: int, estimator: str, seed: int, device: str, samples_per_step: int = 256
) -> Learner:
    import torch

    from gumbel_core import OnlineGAN  # imported late: the services start without it

    # The learner's tensors are tiny ((B, K) with small K): intra-op threads only add
    # synchronisation, and on a busy machine they make a step 10-30x slower (measured:
    # 60 ms vs 2.2 ms per step at batch 1,024 on 2 loaded cores). One thread per actor;
    # more actors, not more threads, use more cores.
    if device == "cpu":
        torch.set_num_threads(1)
    # samples_per_step: a backlog polled 4,096 at a time still takes one GAN step per
    # samples_per_step records, as the quality table does: the GAN converges by steps.
    return OnlineGAN(
        num_categories=num_categories, estimator=estimator, seed=seed, device=device,
        samples_per_step=samples_per_step,
    )


def baseline_counts(learner: Learner) -> list[int]:
    """Exact per-category counts of the records this learner counted."""
    return [int(round(float(c))) for c in learner.baseline.counts.tolist()]


def schedule_steps(learner: Learner) -> int:
    """Steps of the learner's temperature schedule since its start or last re-heat."""
    return int(learner.schedule.steps)
