"""The Gumbel-softmax (Concrete) relaxation: soft, straight-through, and its log-space form."""

from __future__ import annotations

import torch

from gumbel_core._validation import check_logits, check_tau
from gumbel_core.noise import gumbel_noise_like

__all__ = ["gumbel_softmax", "log_gumbel_softmax", "relaxed_sample", "straight_through"]


def straight_through(y_soft: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """The one-hot of ``argmax(y_soft)`` in the forward pass, the gradient of ``y_soft`` backward.

    Examples
    --------
    >>> straight_through(torch.tensor([0.2, 0.5, 0.3]))
    tensor([0., 1., 0.])
    """
    index = y_soft.argmax(dim=dim, keepdim=True)
    y_hard = torch.zeros_like(y_soft).scatter_(dim, index, 1.0)
    # Straight-through trick: the value is y_hard, the gradient is that of y_soft.
    return y_hard - y_soft.detach() + y_soft


def log_gumbel_softmax(
    logits: torch.Tensor,
    tau: float = 1.0,
    dim: int = -1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Log of a Gumbel-softmax sample (the ExpRelaxedCategorical form), stable at tiny ``tau``.

    ``log_softmax((logits + g) / tau)`` never underflows to ``-inf`` the way ``log(softmax(...))``
    does when ``tau`` is small or the logits are far apart, so losses computed on it stay finite.

    Parameters
    ----------
    logits
        ``(..., K)`` unnormalised log-probabilities.
    tau
        Temperature, ``> 0``.
    dim
        The category dimension.
    generator
        Source of randomness.

    Examples
    --------
    >>> gen = torch.Generator().manual_seed(0)
    >>> log_y = log_gumbel_softmax(torch.tensor([1e4, -1e4]), tau=1e-3, generator=gen)
    >>> bool(torch.isfinite(log_y).all()), round(log_y.exp().sum().item(), 4)
    (True, 1.0)
    """
    return _log_sample(logits, tau, dim, generator).to(logits.dtype)


def _log_sample(
    logits: torch.Tensor, tau: float, dim: int, generator: torch.Generator | None
) -> torch.Tensor:
    check_logits(logits, dim)
    return _log_sample_unchecked(logits, check_tau(tau), dim, generator)


def _log_sample_unchecked(
    logits: torch.Tensor,
    tau: float | torch.Tensor,
    dim: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    # bf16/fp16: work in fp32 (the noise is drawn in fp32 anyway); callers cast back at the end.
    work = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    gumbels = (work + gumbel_noise_like(work, generator)) / tau  # (..., K)
    return gumbels.log_softmax(dim)


def gumbel_softmax(
    logits: torch.Tensor,
    tau: float = 1.0,
    hard: bool = False,
    dim: int = -1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample from the Gumbel-softmax distribution; optionally one-hot with straight-through.

    Mirrors :func:`torch.nn.functional.gumbel_softmax`, but takes a ``generator``, rejects
    ``tau <= 0`` and never produces inf/NaN noise (also for bf16 and fp16 logits).

    Parameters
    ----------
    logits
        ``(..., K)`` unnormalised log-probabilities.
    tau
        Temperature, ``> 0``: small is close to one-hot, large is close to uniform.
    hard
        If ``True`` the result is exactly one-hot (the Gumbel-max sample, so its category follows
        ``softmax(logits)`` exactly) and its gradient is the soft sample's (straight-through).
    dim
        The category dimension.
    generator
        Source of randomness.

    Returns
    -------
    torch.Tensor
        Same shape and dtype as ``logits``; sums to 1 along ``dim``.

    Examples
    --------
    >>> gen = torch.Generator().manual_seed(0)
    >>> logits = torch.tensor([[0.0, 1.0, 2.0]], requires_grad=True)
    >>> y = gumbel_softmax(logits, tau=0.5, hard=True, generator=gen)
    >>> y.sum().item(), sorted(y.flatten().tolist())
    (1.0, [0.0, 0.0, 1.0])
    >>> y_soft = gumbel_softmax(logits, tau=0.5, generator=gen)
    >>> bool(torch.allclose(y_soft.sum(-1), torch.ones(1)))
    True
    """
    check_logits(logits, dim)
    tau = check_tau(tau)
    if logits.is_cuda:
        # Opt-in (GUMBEL_FUSED=1): one fused Triton kernel draws the noise and normalises in
        # a single pass (gumbel_core.kernels); same distribution, another random stream than
        # the PyTorch path. A kernel that fails to compile or launch falls back, with a warning.
        from gumbel_core.kernels import fused_available, fused_or_none

        if fused_available(logits):
            y = fused_or_none(logits, tau=tau, hard=hard, dim=dim, generator=generator)
            if y is not None:
                return y
    return relaxed_sample(logits, tau, hard, dim, generator)


def relaxed_sample(
    logits: torch.Tensor,
    tau: float | torch.Tensor,
    hard: bool = False,
    dim: int = -1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """:func:`gumbel_softmax` on the PyTorch path without checking its arguments.

    For callers that checked them once already, and for a step a CUDA graph captures:
    ``tau`` may be a tensor (whose value a graph reads at each replay), and nothing here reads
    a number back from the device.

    Examples
    --------
    >>> gen = torch.Generator().manual_seed(0)
    >>> relaxed_sample(torch.zeros(2, 3), torch.tensor([0.5]), hard=True, generator=gen).sum(-1)
    tensor([1., 1.])
    """
    y_soft = _log_sample_unchecked(logits, tau, dim, generator).exp()
    if hard:
        return straight_through(y_soft, dim=dim).to(logits.dtype)
    return y_soft.to(logits.dtype)
