"""The trainer's one adapter to ``gumbel_core``: build a learner, read its counts and its
temperature schedule, and give it the replicas' common schedule."""

from __future__ import annotations

from typing import Any

__all__ = [
    "build_learner",
    "baseline_counts",
    "samples_seen",
    "step_losses",
    "schedule_steps",
]


def build_learner(
    num_categories: int, estimator: str, seed: int, device: str, samples_per_step: int = 256
) -> Any:
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


def baseline_counts(learner: Any) -> list[int]:
    """Exact per-category counts of the records this replica learned from."""
    counts = learner.baseline.counts
    return [int(round(float(c))) for c in counts.tolist()]


def samples_seen(learner: Any) -> int:
    return int(learner.samples_seen)


def step_losses(stats: Any) -> tuple[float, float]:
    """(generator loss, discriminator loss) of one ``learn_many`` result."""
    gen = getattr(stats, "generator_loss", float("nan"))
    disc = getattr(stats, "discriminator_loss", float("nan"))
    return float(gen), float(disc)


def schedule_steps(learner: Any) -> int:
    """Steps of the learner's temperature schedule since its start or last re-heat (0 if none)."""
    schedule = getattr(learner, "schedule", None)
    return int(schedule.steps) if schedule is not None else 0


