"""Fused GPU kernels (Triton) for ``gumbel_core``, loaded only when asked for.

Importing this package imports neither Triton nor CUDA; :func:`fused_available` says whether
the fused path can serve a given tensor, and the functions below import the kernels on first
use. The fused path is opt-in until it has passed on a real GPU: set ``GUMBEL_FUSED=1`` to use
it. Where it is used, a kernel that fails to compile or launch falls back to the PyTorch path
with one warning (:func:`fused_or_none`), instead of failing a training step.
"""

from __future__ import annotations

import functools
import os
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = [
    "fused_enabled",
    "fused_available",
    "triton_available",
    "fused_gumbel_softmax",
    "fused_gumbel_noise",
    "fused_failed",
    "fused_or_none",
]

_DTYPES = ("torch.float32", "torch.float16", "torch.bfloat16")


@functools.cache
def triton_available() -> bool:
    """True when Triton imports (it needs no GPU to import)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


# Why the fused path failed in this process, once it has: later calls skip it. This is the
# only state the package keeps; it exists so that a broken kernel warns once, not per step.
_FAILURE: list[str] = []


def fused_enabled() -> bool:
    """Whether the fused path is switched on: ``GUMBEL_FUSED=1`` (off by default until the
    kernels have passed on a real GPU), and it has not failed in this process."""
    return os.environ.get("GUMBEL_FUSED", "0") == "1" and not _FAILURE


def fused_available(logits: torch.Tensor) -> bool:
    """Whether :func:`fused_gumbel_softmax` should serve ``logits``: the fused path is enabled
    (:func:`fused_enabled`) and ``logits`` is a CUDA tensor of fp32, fp16 or bf16 with Triton
    installed. (The kernels also run on CPU tensors under ``TRITON_INTERPRET=1``, but only
    tests call them that way.)"""
    if not fused_enabled() or str(logits.dtype) not in _DTYPES:
        return False
    return logits.is_cuda and triton_available()


def fused_failed(error: BaseException) -> None:
    """Record that the fused path failed with ``error``; warn the first time only."""
    if not _FAILURE:
        _FAILURE.append(f"{type(error).__name__}: {error}")
        warnings.warn(
            f"the fused Triton kernel failed ({_FAILURE[0]}); using the PyTorch path "
            "from now on",
            RuntimeWarning,
            stacklevel=3,
        )


def fused_or_none(*args: Any, **kwargs: Any) -> torch.Tensor | None:
    """:func:`fused_gumbel_softmax`, or ``None`` (after one warning) if it fails to compile
    or launch: the caller then takes the PyTorch path."""
    try:
        return fused_gumbel_softmax(*args, **kwargs)
    except Exception as error:  # any compile or launch error: Triton raises many kinds
        fused_failed(error)
        return None


def fused_gumbel_softmax(*args: Any, **kwargs: Any) -> torch.Tensor:
    """See :func:`gumbel_core.kernels.fused.fused_gumbel_softmax`."""
    from gumbel_core.kernels.fused import fused_gumbel_softmax as impl

    return impl(*args, **kwargs)


def fused_gumbel_noise(*args: Any, **kwargs: Any) -> torch.Tensor:
    """See :func:`gumbel_core.kernels.fused.fused_gumbel_noise`."""
    from gumbel_core.kernels.fused import fused_gumbel_noise as impl

    return impl(*args, **kwargs)
