"""The backpressure policy: which of a poll's values the GAN learns, which are only counted.

``learn_all`` learns every value (if the GAN is slower than the stream, the consumer lag
grows, visible as ``consumer_lag``). ``sample`` learns a uniform sample of at most
``sample_per_poll`` values per poll and counts the others in the baseline, so the trainer
keeps up and the counts stay exact.
"""

from __future__ import annotations

import torch

__all__ = ["split"]


def split(
    values: torch.Tensor, policy: str, sample_per_poll: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(values the GAN learns from, in stream order; values only counted)."""
    if policy != "sample" or values.numel() <= sample_per_poll:
        return values, values[:0]
    chosen = torch.randperm(values.numel(), generator=generator)[:sample_per_poll]
    rest = torch.ones(values.numel(), dtype=torch.bool)
    rest[chosen] = False
    return values[chosen.sort().values], values[rest]  # stream order, for the drift detector
