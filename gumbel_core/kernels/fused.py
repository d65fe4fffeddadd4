"""The fused Gumbel-softmax as a ``torch.autograd.Function`` over the Triton kernels.

Forward: one kernel draws the noise, computes the soft sample (or the exact one-hot) and, when
a gradient is needed, one float per row (``logsumexp`` of ``(logits + g) / tau``). Backward:
one kernel re-derives the noise and the soft sample ``y`` from the seed and that float, and
writes ``y * (grad - sum(grad * y)) / tau``; for ``hard=True`` the gradient is the soft one
(straight-through). Nothing of size ``(M, K)`` is saved besides the logits themselves.
"""

from __future__ import annotations

import os

import torch
import triton

from gumbel_core.kernels import _triton_gumbel as _k

__all__ = ["fused_gumbel_softmax", "fused_gumbel_noise", "draw_seed", "block_config"]

# Tuning knobs (to be tuned on an H100; see docs/gpu.md). Rows up to SINGLE_MAX_K
# categories are handled whole by one program; larger rows are swept in LOOP_BLOCK_K chunks.
SINGLE_MAX_K = int(os.environ.get("GUMBEL_FUSED_SINGLE_MAX_K", "8192"))
LOOP_BLOCK_K = int(os.environ.get("GUMBEL_FUSED_LOOP_BLOCK_K", "4096"))
# Elements per program for the block kernels (several short rows share one program).
TARGET_BLOCK_ELEMS = int(os.environ.get("GUMBEL_FUSED_BLOCK_ELEMS", "4096"))

_SUPPORTED = (torch.float32, torch.float16, torch.bfloat16)


def block_config(num_rows: int, num_categories: int) -> dict[str, int | bool]:
    """Kernel shape for an ``(M, K)`` problem: ``loop``, ``ROWS``, ``BLOCK_K``, ``num_warps``."""
    # >= 4: the noise comes in groups of four categories (one Philox call each).
    block_k = max(4, triton.next_power_of_2(num_categories))
    if block_k <= SINGLE_MAX_K:
        rows = max(1, min(TARGET_BLOCK_ELEMS // block_k, triton.next_power_of_2(num_rows)))
        warps = min(16, max(1, rows * block_k // 256))
        return {"loop": False, "ROWS": rows, "BLOCK_K": block_k, "num_warps": warps}
    return {"loop": True, "ROWS": 1, "BLOCK_K": LOOP_BLOCK_K, "num_warps": 8}


def draw_seed(device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
    """A fresh ``(seed, offset)`` int64 pair on ``device``, drawn from ``generator``.

    Drawn on the device (no host sync; captured by a CUDA graph as an RNG op) unless the
    generator lives elsewhere, in which case it is drawn there and copied.
    """
    gen_device = generator.device if generator is not None else device
    pair = torch.randint(0, 2**62, (2,), generator=generator, device=gen_device, dtype=torch.int64)
    return pair.to(device, non_blocking=True)


def _as_seed(seed: int | torch.Tensor, device: torch.device) -> torch.Tensor:
    if isinstance(seed, torch.Tensor):
        if seed.dtype != torch.int64 or seed.numel() != 2:
            raise ValueError(
                f"seed tensor must be int64 (seed, offset), got {seed.dtype} {tuple(seed.shape)}"
            )
        return seed.to(device).contiguous()
    return torch.tensor([int(seed), 0], dtype=torch.int64, device=device)


def _tau_args(tau: float | torch.Tensor, ref: torch.Tensor) -> tuple[float, torch.Tensor, bool]:
    """(scalar tau, tau pointer, read-from-pointer?) -- a tensor tau stays on the device."""
    if isinstance(tau, torch.Tensor):
        return 1.0, tau.reshape(1).to(device=ref.device, dtype=torch.float32), True
    value = float(tau)
    if not (value > 0.0 and value != float("inf")):
        raise ValueError(f"tau must be a finite number > 0, got {value}")
    return value, ref, False


def _rows_view(x: torch.Tensor) -> torch.Tensor:
    """``(M, K)`` with unit stride along K, copying only when it must (an expanded row is kept)."""
    if x.dim() == 2 and x.stride(1) == 1:
        return x
    if x.stride(-1) != 1:
        x = x.contiguous()
    return x.reshape(-1, x.shape[-1])


def _forward(x2, tau, tau_t, tau_ptr, seed_t, hard, save_lse):
    m, k = x2.shape
    y = torch.empty((m, k), dtype=x2.dtype, device=x2.device)
    lse = torch.empty(m if save_lse else 1, dtype=torch.float32, device=x2.device)
    cfg = block_config(m, k)
    args = (x2, y, lse, seed_t, tau_t, tau, m, k, x2.stride(0), y.stride(0))
    flags = {"HARD": hard, "SAVE_LSE": save_lse, "TAU_FROM_PTR": tau_ptr}
    if cfg["loop"]:
        _k.fwd_loop_kernel[(m,)](*args, **flags, BLOCK_K=cfg["BLOCK_K"], num_warps=cfg["num_warps"])
    else:
        grid = (triton.cdiv(m, cfg["ROWS"]),)
        _k.fwd_block_kernel[grid](
            *args, **flags, ROWS=cfg["ROWS"], BLOCK_K=cfg["BLOCK_K"], num_warps=cfg["num_warps"]
        )
    return y, lse


def _backward(x2, gy, lse, seed_t, tau, tau_t, tau_ptr):
    m, k = x2.shape
    if gy.stride(-1) != 1:
        gy = gy.contiguous()
    dx = torch.empty((m, k), dtype=x2.dtype, device=x2.device)
    cfg = block_config(m, k)
    args = (x2, gy, dx, lse, seed_t, tau_t, tau, m, k, x2.stride(0), gy.stride(0), dx.stride(0))
    if cfg["loop"]:
        _k.bwd_loop_kernel[(m,)](
            *args, TAU_FROM_PTR=tau_ptr, BLOCK_K=cfg["BLOCK_K"], num_warps=cfg["num_warps"]
        )
    else:
        grid = (triton.cdiv(m, cfg["ROWS"]),)
        _k.bwd_block_kernel[grid](
            *args,
            TAU_FROM_PTR=tau_ptr,
            ROWS=cfg["ROWS"],
            BLOCK_K=cfg["BLOCK_K"],
            num_warps=cfg["num_warps"],
        )
    return dx


class FusedGumbelSoftmax(torch.autograd.Function):
    """``(M, K)`` logits -> Gumbel-softmax sample; straight-through when ``hard``."""

    @staticmethod
    def forward(ctx, x2, tau, tau_t, tau_ptr, seed_t, hard):  # type: ignore[override]
        save = bool(ctx.needs_input_grad[0])
        y, lse = _forward(x2, tau, tau_t, tau_ptr, seed_t, hard, save)
        if save:
            ctx.save_for_backward(x2, lse, seed_t, tau_t)
            ctx.tau, ctx.tau_ptr = tau, tau_ptr
        return y

    @staticmethod
    def backward(ctx, gy):  # type: ignore[override]
        x2, lse, seed_t, tau_t = ctx.saved_tensors
        dx = _backward(x2, gy, lse, seed_t, ctx.tau, tau_t, ctx.tau_ptr)
        return dx, None, None, None, None, None


def fused_gumbel_softmax(
    logits: torch.Tensor,
    tau: float | torch.Tensor = 1.0,
    hard: bool = False,
    dim: int = -1,
    generator: torch.Generator | None = None,
    seed: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """Gumbel-softmax in one fused kernel (plus one for the backward), same contract as
    :func:`gumbel_core.gumbel_softmax`.

    ``tau`` may be a 1-element device tensor (read by the kernel, so a CUDA graph sees its
    current value). ``seed`` fixes the noise: an int, or an int64 device tensor
    ``(seed, offset)`` (also graph-friendly); otherwise a seed is drawn from ``generator``.
    The noise of element ``(row, col)`` of the ``(M, K)`` view is
    :func:`fused_gumbel_noise` of the same seed.
    """
    if logits.dtype not in _SUPPORTED:
        raise ValueError(f"fused_gumbel_softmax supports {_SUPPORTED}, got dtype {logits.dtype}")
    if logits.dim() == 0 or logits.shape[dim] == 0:
        raise ValueError(
            f"logits must have a non-empty category dimension, got {tuple(logits.shape)}"
        )
    moved = logits.movedim(dim, -1)
    x2 = _rows_view(moved)
    seed_t = draw_seed(logits.device, generator) if seed is None else _as_seed(seed, logits.device)
    tau_val, tau_t, tau_ptr = _tau_args(tau, x2)
    y = FusedGumbelSoftmax.apply(x2, tau_val, tau_t, tau_ptr, seed_t, bool(hard))
    return y.reshape(moved.shape).movedim(-1, dim)


def fused_gumbel_noise(
    shape: tuple[int, int], seed: int | torch.Tensor, device: torch.device | str = "cuda"
) -> torch.Tensor:
    """The exact ``(M, K)`` fp32 Gumbel noise the fused kernels use for ``seed`` (for tests)."""
    m, k = shape
    seed_t = _as_seed(seed, torch.device(device))
    out = torch.empty((m, k), dtype=torch.float32, device=device)
    block_k = min(max(4, triton.next_power_of_2(k)), 1024)
    rows = max(1, min(1024 // block_k, triton.next_power_of_2(m)))
    grid = (triton.cdiv(m, rows), triton.cdiv(k, block_k))
    _k.noise_kernel[grid](out, seed_t, m, k, ROWS=rows, BLOCK_K=block_k)
    return out
