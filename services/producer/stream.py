"""A seeded stream of category ids drawn from a distribution that follows a drift schedule."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from services.common.settings import DriftStep

__all__ = ["CategoryStream"]


class CategoryStream:
    """Category ids in chunks, from ``probabilities`` and then each drift step in turn.

    A step ``at`` N records switches exactly at record N (a chunk never straddles it); a step
    ``at`` N seconds switches at the first chunk asked for at or after N seconds.

    Examples
    --------
    >>> stream = CategoryStream([0.0, 0.5, 0.5], seed=0)
    >>> chunk = stream.next_chunk(1000)
    >>> len(chunk), 0 in chunk, stream.produced
    (1000, False, 1000)
    """

    def __init__(
        self,
        probabilities: Sequence[float],
        drift: Sequence[DriftStep] = (),
        seed: int = 0,
    ) -> None:
        self._generator = torch.Generator().manual_seed(seed)
        self._by_records = sorted((s for s in drift if s.unit == "records"), key=lambda s: s.at)
        self._by_seconds = sorted((s for s in drift if s.unit == "seconds"), key=lambda s: s.at)
        self._probs = self._tensor(probabilities)
        self.probabilities: list[float] = list(probabilities)
        self.produced = 0
        self.switches = 0  # drift steps applied so far

    @staticmethod
    def _tensor(probabilities: Sequence[float]) -> torch.Tensor:
        return torch.tensor(list(probabilities), dtype=torch.float64)

    def _switch(self, step: DriftStep) -> None:
        self._probs = self._tensor(step.probabilities)
        self.probabilities = list(step.probabilities)
        self.switches += 1

    def apply_drift(self, elapsed_s: float = 0.0) -> bool:
        """Apply every step that is due; True if the distribution changed."""
        changed = False
        while self._by_seconds and self._by_seconds[0].at <= elapsed_s:
            self._switch(self._by_seconds.pop(0))
            changed = True
        while self._by_records and self._by_records[0].at <= self.produced:
            self._switch(self._by_records.pop(0))
            changed = True
        return changed

    def next_chunk(self, size: int, elapsed_s: float = 0.0) -> list[int]:
        """Up to ``size`` ids (fewer only to stop at a record-count drift step)."""
        if size < 1:
            raise ValueError(f"chunk size must be >= 1, got {size}")
        self.apply_drift(elapsed_s)
        if self._by_records:
            size = min(size, int(self._by_records[0].at) - self.produced)
            size = max(size, 1)  # a fractional `at` rounds up to the next record
        ids = torch.multinomial(self._probs, size, replacement=True, generator=self._generator)
        self.produced += size
        return ids.tolist()
