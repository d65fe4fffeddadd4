"""The counting baseline: exact category frequencies (the MLE), optionally with forgetting."""

from __future__ import annotations

from typing import Any

import torch

from gumbel_core._validation import check_num_categories, check_values

__all__ = ["CountingEstimator"]


class CountingEstimator:
    """Estimate a categorical distribution by counting.

    Parameters
    ----------
    num_categories
        ``K``, the number of categories.
    decay
        ``None`` for exact counts (the maximum-likelihood estimate). A number in ``(0, 1)``
        multiplies the old counts by ``decay`` per sample seen, so old data is forgotten
        (for drifting streams); its effective memory is ``1 / (1 - decay)`` samples.
    device
        Where the counts live.
    memory
        Instead of ``decay``: the memory in samples, ``decay = 1 - 1 / memory`` (e.g.
        ``memory=10_000``, the forgetting counter of the drift benchmark).

    Examples
    --------
    >>> est = CountingEstimator(3)
    >>> est.learn_many(torch.tensor([0, 2, 2, 2]))
    >>> est.estimate()
    tensor([0.2500, 0.0000, 0.7500], dtype=torch.float64)
    >>> recent = CountingEstimator(3, memory=10_000)
    >>> recent.decay, round(recent.memory)
    (0.9999, 10000)
    """

    def __init__(
        self,
        num_categories: int,
        decay: float | None = None,
        device: torch.device | str | None = None,
        *,
        memory: float | None = None,
    ) -> None:
        self.num_categories = check_num_categories(num_categories)
        if memory is not None:
            if decay is not None:
                raise ValueError("give decay or memory, not both")
            if isinstance(memory, bool) or not isinstance(memory, (int, float)) or memory <= 1:
                raise ValueError(f"memory must be a number of samples > 1, got {memory!r}")
            decay = 1.0 - 1.0 / memory
        if decay is not None and not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be None or in (0, 1), got {decay!r}")
        self.decay = decay
        # float64: exact integer counts up to 2**53 samples.
        self.counts = torch.zeros(num_categories, dtype=torch.float64, device=device)
        self.samples_seen = 0

    @property
    def memory(self) -> float | None:
        """The effective memory in samples, ``1 / (1 - decay)`` (``None``: remembers all)."""
        return None if self.decay is None else 1.0 / (1.0 - self.decay)

    def learn_many(self, values: torch.Tensor) -> None:
        """Count a 1-D LongTensor of category ids in ``[0, K)``."""
        check_values(values, self.num_categories)
        counts = torch.bincount(values.to(self.counts.device), minlength=self.num_categories)
        self._add(counts.to(torch.float64), values.numel())

    def learn_counts(self, counts: torch.Tensor) -> None:
        """Add a ``(K,)`` vector of non-negative counts (e.g. a batch already reduced)."""
        if not isinstance(counts, torch.Tensor) or counts.shape != (self.num_categories,):
            shape = tuple(counts.shape) if isinstance(counts, torch.Tensor) else type(counts)
            raise ValueError(
                f"counts must be a tensor of shape ({self.num_categories},), got {shape}"
            )
        if bool((counts < 0).any()) or not bool(torch.isfinite(counts).all()):
            raise ValueError("counts must be finite and non-negative")
        counts = counts.to(device=self.counts.device, dtype=torch.float64)
        self._add(counts, int(round(float(counts.sum()))))

    def _add(self, counts: torch.Tensor, n: int) -> None:
        if self.decay is not None and n > 0:
            # The batch arrives at once: forget as if its n samples came one by one, but weigh
            # the batch itself in full (an approximation inside one batch only).
            self.counts.mul_(self.decay**n)
        self.counts.add_(counts)
        self.samples_seen += n

    def estimate(self) -> torch.Tensor:
        """The ``(K,)`` estimated probabilities (uniform before any data)."""
        total = self.counts.sum()
        if total <= 0:
            return torch.full_like(self.counts, 1.0 / self.num_categories)
        return self.counts / total

    def state_dict(self) -> dict[str, Any]:
        return {
            "num_categories": self.num_categories,
            "decay": self.decay,
            "counts": self.counts.clone(),
            "samples_seen": self.samples_seen,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["num_categories"]) != self.num_categories:
            raise ValueError(
                f"state is for {state['num_categories']} categories, not {self.num_categories}"
            )
        self.decay = state["decay"]
        self.counts = state["counts"].to(device=self.counts.device, dtype=torch.float64).clone()
        self.samples_seen = int(state["samples_seen"])

    def __repr__(self) -> str:
        return f"CountingEstimator(num_categories={self.num_categories}, decay={self.decay!r})"
