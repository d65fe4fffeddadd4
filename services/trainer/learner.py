"""The trainer's one adapter to ``gumbel_core``: build a learner, move and average its weights.

Weights are the learnable tensors that replicas average; the counting baseline, the step
counters and the random state are not weights (they are exact per replica and are summed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = [
    "build_learner",
    "get_weights",
    "set_weights",
    "average_weights",
    "baseline_counts",
    "samples_seen",
    "step_losses",
]


def build_learner(num_categories: int, estimator: str, seed: int, device: str) -> Any:
    from gumbel_core import OnlineGAN  # imported late: the services start without it

    return OnlineGAN(num_categories=num_categories, estimator=estimator, seed=seed, device=device)


def get_weights(learner: Any) -> dict[str, torch.Tensor]:
    """The learner's averaged tensors, detached and on the CPU (to ship between actors)."""
    if hasattr(learner, "get_weights"):
        weights = learner.get_weights()
    else:
        weights = {
            name: tensor
            for name, tensor in learner.state_dict().items()
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point()
        }
    return {name: t.detach().to("cpu", copy=True) for name, t in weights.items()}


def set_weights(learner: Any, weights: dict[str, torch.Tensor]) -> None:
    if hasattr(learner, "set_weights"):
        learner.set_weights(weights)
        return
    state = learner.state_dict()
    state.update(weights)
    learner.load_state_dict(state)


def average_weights(replicas: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of the replicas' weights (same names and shapes in each)."""
    if not replicas:
        raise ValueError("average_weights needs at least one replica")
    names = set(replicas[0])
    for i, replica in enumerate(replicas[1:], start=1):
        if set(replica) != names:
            message = f"replica {i} has weights {sorted(replica)}, replica 0 {sorted(names)}"
            raise ValueError(message)
    return {
        name: torch.stack([r[name].to(torch.float64) for r in replicas]).mean(0).to(
            replicas[0][name].dtype
        )
        for name in replicas[0]
    }


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
