"""Distances between categorical distributions."""

from __future__ import annotations

import torch

__all__ = ["total_variation", "kl_divergence"]


def _check_pair(p: torch.Tensor, q: torch.Tensor) -> None:
    for name, x in (("p", p), ("q", q)):
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() == 0:
            raise ValueError(f"{name} must have a category dimension, got a scalar")
    if p.shape != q.shape:
        raise ValueError(
            f"p and q must have the same shape, got {tuple(p.shape)} and {tuple(q.shape)}"
        )


def total_variation(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Total variation distance ``0.5 * sum |p - q|`` over the last dimension (in ``[0, 1]``).

    Examples
    --------
    >>> total_variation(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0]))
    tensor(0.5000)
    """
    _check_pair(p, q)
    return 0.5 * (p - q).abs().sum(-1)


def kl_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``KL(p || q) = sum p log(p / q)`` over the last dimension, with ``0 log 0 = 0``.

    It is ``inf`` where ``q`` is 0 and ``p`` is not.

    Examples
    --------
    >>> kl_divergence(torch.tensor([0.5, 0.5, 0.0]), torch.tensor([0.25, 0.5, 0.25]))
    tensor(0.3466)
    """
    _check_pair(p, q)
    terms = torch.where(p > 0, p * (p.log() - q.log()), torch.zeros_like(p))
    return terms.sum(-1)
