"""What the trainer needs of a learner: the ``Learner`` protocol ``OnlineGAN`` satisfies.

Test fakes implement these members and nothing else, instead of imitating internals.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

__all__ = ["Learner", "StepStats"]


class StepStats(Protocol):
    step: int
    generator_loss: float
    discriminator_loss: float


class Baseline(Protocol):
    counts: torch.Tensor  # (K,) exact counts of the values seen


class Learner(Protocol):
    samples_seen: int
    baseline: Baseline

    @property
    def temperature(self) -> float: ...

    def learn_many(self, values: torch.Tensor) -> StepStats: ...

    def count_many(self, values: torch.Tensor) -> None: ...

    def estimate(self) -> torch.Tensor: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
