"""Fused GPU kernels (Triton) for ``gumbel_core``, loaded only when asked for.

Importing this package imports neither Triton nor CUDA; :func:`fused_available` says whether
the fused path can serve a given tensor, and the functions below import the kernels on first
use. Set ``GUMBEL_FUSED=0`` to force the PyTorch path everywhere.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["fused_available", "triton_available", "fused_gumbel_softmax", "fused_gumbel_noise"]

_DTYPES = ("torch.float32", "torch.float16", "torch.bfloat16")


@functools.cache
def triton_available() -> bool:
    """True when Triton imports (it needs no GPU to import)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def fused_available(logits: torch.Tensor) -> bool:
    """Whether :func:`fused_gumbel_softmax` should serve ``logits``: a CUDA tensor of fp32,
    fp16 or bf16 with Triton installed, unless ``GUMBEL_FUSED=0``. (The kernels also run on
    CPU tensors under ``TRITON_INTERPRET=1``, but only tests call them that way.)"""
    if os.environ.get("GUMBEL_FUSED", "1") == "0" or str(logits.dtype) not in _DTYPES:
        return False
    return logits.is_cuda and triton_available()


def fused_gumbel_softmax(*args: Any, **kwargs: Any) -> torch.Tensor:
    """See :func:`gumbel_core.kernels.fused.fused_gumbel_softmax`."""
    from gumbel_core.kernels.fused import fused_gumbel_softmax as impl

    return impl(*args, **kwargs)


def fused_gumbel_noise(*args: Any, **kwargs: Any) -> torch.Tensor:
    """See :func:`gumbel_core.kernels.fused.fused_gumbel_noise`."""
    from gumbel_core.kernels.fused import fused_gumbel_noise as impl

    return impl(*args, **kwargs)
