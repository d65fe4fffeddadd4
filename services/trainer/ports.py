"""What the trainer needs of a learner: the ``Learner`` protocol ``OnlineGAN`` satisfies.

Test fakes implement these members and nothing else, instead of imitating internals.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

__all__ = ["Baseline", "Learner", "Schedule", "StepStats"]


class StepStats(Protocol):
    """What one ``learn_many`` call reports."""

    @property
    def generator_loss(self) -> float: ...

    @property
    def discriminator_loss(self) -> float: ...


# The trainer only reads a learner's numbers: read-only members, so a plain attribute, a
# property or a frozen dataclass field each satisfies them.


class Baseline(Protocol):
    @property
    def counts(self) -> torch.Tensor: ...  # (K,) exact counts of the values seen


class Schedule(Protocol):
    @property
    def steps(self) -> int: ...  # temperature-schedule steps since the start or last re-heat


class Learner(Protocol):
    @property
    def samples_seen(self) -> int: ...  # values counted (learned, or only counted)

    @property
    def step(self) -> int: ...  # GAN steps taken

    @property
    def baseline(self) -> Baseline: ...  # the counting baseline of the same values

    @property
    def schedule(self) -> Schedule: ...

    @property
    def temperature(self) -> float: ...

    @property
    def drift_detections(self) -> int: ...

    def learn_many(self, values: torch.Tensor) -> StepStats: ...

    def count_many(self, values: torch.Tensor) -> None: ...

    def estimate(self) -> torch.Tensor: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
