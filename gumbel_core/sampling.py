"""Exact categorical samples with the Gumbel-max trick."""

from __future__ import annotations

import torch

from gumbel_core._validation import check_logits
from gumbel_core.noise import gumbel_noise

__all__ = ["gumbel_max"]


def gumbel_max(
    logits: torch.Tensor,
    num_samples: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Exact samples from ``Categorical(softmax(logits))``: ``argmax(logits + Gumbel noise)``.

    Parameters
    ----------
    logits
        ``(..., K)`` unnormalised log-probabilities; ``-inf`` marks an impossible category.
    num_samples
        When given, draw that many samples per row: the result has shape ``(num_samples, ...)``.
        When ``None``, one sample per row: shape ``(...)``.
    generator
        Source of randomness.

    Returns
    -------
    torch.Tensor
        Category ids (``torch.long``).

    Examples
    --------
    >>> gen = torch.Generator().manual_seed(0)
    >>> samples = gumbel_max(torch.tensor([0.0, 0.0, -float("inf")]), 1000, generator=gen)
    >>> samples.shape, bool((samples < 2).all())
    (torch.Size([1000]), True)
    """
    check_logits(logits)
    if num_samples is not None:
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive int or None, got {num_samples!r}")
        shape: tuple[int, ...] = (num_samples, *logits.shape)
    else:
        shape = tuple(logits.shape)
    # Compare in fp32 at least: bf16 rounding would create ties that bias the argmax.
    work = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    noise = gumbel_noise(shape, generator=generator, device=logits.device, dtype=work.dtype)
    return (work.detach() + noise).argmax(dim=-1)
