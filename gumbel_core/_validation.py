"""Argument checks shared by the library: build a precise message, then raise ``ValueError``."""

from __future__ import annotations

import torch

__all__ = ["check_tau", "check_logits", "check_values", "check_counts", "check_num_categories"]


def check_tau(tau: float) -> float:
    """Return ``tau`` as a float, or raise ``ValueError`` unless it is finite and > 0."""
    try:
        value = float(tau)
    except (TypeError, ValueError):
        raise ValueError(f"tau must be a positive number, got {tau!r}") from None
    if not value > 0.0 or value == float("inf"):
        raise ValueError(f"tau must be a finite number > 0, got {value}")
    return value


def check_logits(logits: torch.Tensor, dim: int = -1) -> None:
    """Raise ``ValueError`` unless ``logits`` is a floating tensor with a non-empty ``dim``."""
    if not isinstance(logits, torch.Tensor):
        raise ValueError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be a floating-point tensor, got dtype {logits.dtype}")
    if logits.dim() == 0:
        raise ValueError("logits must have at least one dimension (the categories), got a scalar")
    if not -logits.dim() <= dim < logits.dim():
        raise ValueError(f"dim={dim} is out of range for logits of shape {tuple(logits.shape)}")
    if logits.shape[dim] == 0:
        raise ValueError(f"logits has no categories along dim={dim}: shape {tuple(logits.shape)}")


def check_num_categories(num_categories: int) -> int:
    """Return ``num_categories`` as an int, or raise ``ValueError`` unless it is an int >= 2."""
    if isinstance(num_categories, bool) or not isinstance(num_categories, int):
        raise ValueError(f"num_categories must be an int >= 2, got {num_categories!r}")
    if num_categories < 2:
        raise ValueError(f"num_categories must be >= 2, got {num_categories}")
    return num_categories


def check_values(values: torch.Tensor, num_categories: int) -> None:
    """Raise ``ValueError`` unless ``values`` is a 1-D integer tensor of ids in ``[0, K)``."""
    if not isinstance(values, torch.Tensor):
        raise ValueError(
            f"values must be a 1-D torch.LongTensor of category ids, got {type(values).__name__}"
        )
    if values.dtype.is_floating_point or values.dtype.is_complex or values.dtype == torch.bool:
        raise ValueError(f"values must be an integer tensor (torch.long), got dtype {values.dtype}")
    if values.dim() != 1:
        raise ValueError(f"values must be 1-D, got shape {tuple(values.shape)}")
    if values.numel() == 0:
        return
    low_t, high_t = torch.aminmax(values)
    low, high = int(low_t), int(high_t)
    if low < 0 or high >= num_categories:
        bad = low if low < 0 else high
        raise ValueError(
            f"values must lie in [0, {num_categories}), got {bad} (num_categories={num_categories})"
        )


def check_counts(counts: torch.Tensor, num_categories: int) -> None:
    """Raise ``ValueError`` unless ``counts`` is an ``(n, K)`` tensor of non-negative whole
    numbers (one row of per-category counts per piece of a stream)."""
    if not isinstance(counts, torch.Tensor):
        raise ValueError(f"counts must be an (n, {num_categories}) tensor, "
                         f"got {type(counts).__name__}")
    if counts.dtype.is_complex or counts.dtype == torch.bool:
        raise ValueError(f"counts must be a real tensor, got dtype {counts.dtype}")
    if counts.dim() != 2 or counts.shape[1] != num_categories:
        raise ValueError(f"counts must have shape (n, {num_categories}), got {tuple(counts.shape)}")
    if counts.numel() == 0:
        return
    as_float = counts.to(torch.float64)
    if not bool(torch.isfinite(as_float).all()):
        raise ValueError("counts must be finite")
    if float(as_float.min()) < 0:
        raise ValueError(f"counts must be >= 0, got {float(as_float.min())}")
    if not bool((as_float == as_float.round()).all()):
        raise ValueError("counts must be whole numbers (how many values of each category)")
