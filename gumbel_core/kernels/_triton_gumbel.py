"""Triton kernels for the fused Gumbel-softmax: noise, forward (soft and one-hot), backward.

Only :mod:`gumbel_core.kernels.fused` imports this module, and only when it is needed: the
rest of ``gumbel_core`` never requires Triton or CUDA.

Noise. Philox (``tl.rand4x``) yields four uniforms per counter, so the noise comes in groups
of four neighbouring categories: element ``(row, col)`` of an ``(M, K)`` problem takes output
``col % 4`` of Philox keyed by ``seed`` at counter ``offset + row * ceil(K / 4) + col // 4``.
The noise therefore depends only on ``(seed, offset, row, col, K)`` -- not on the kernel, the
block size or the strides. The forward draws it, the backward re-derives the same values
instead of storing them, and :func:`noise_kernel` writes them out for tests. ``seed`` and
``offset`` are read from a device tensor, never baked into the launch, so a CUDA graph replays
with fresh noise once that tensor changes.

Kernels come in two shapes: *block* kernels own ``ROWS`` whole rows each (``K <= BLOCK_K``:
one read, one write), *loop* kernels own one row and sweep it in ``BLOCK_K`` chunks (large K:
an online max/sum pass, then a write pass that re-reads the row, mostly from L2).
"""

from __future__ import annotations

import triton
import triton.language as tl

# Uniforms are clamped to [TINY, 1 - EPS] (fp32) so that -log(-log(u)) is finite: the noise
# then lies in about [-4.47, 16.6].
TINY = tl.constexpr(1.1754943508222875e-38)
ONE_MINUS_EPS = tl.constexpr(0.99999994039535522)
# Finite stand-in for -inf as the running maximum, so exp(m_old - m_new) is never exp(nan).
NEG_BIG = tl.constexpr(-3.4028234663852886e38)


@triton.jit
def _to_gumbel(u):
    u = tl.minimum(tl.maximum(u, TINY), ONE_MINUS_EPS)
    return -tl.log(-tl.log(u))


@triton.jit
def _gumbel_tile(seed, groups, ROWS: tl.constexpr, BLOCK_K: tl.constexpr):
    """(ROWS, BLOCK_K // 4) group counters -> (ROWS, BLOCK_K) noise; column 4j + i is output i
    of group j (one Philox call serves four elements)."""
    u0, u1, u2, u3 = tl.rand4x(seed, groups)
    u = tl.reshape(tl.join(tl.join(u0, u2), tl.join(u1, u3)), (ROWS, BLOCK_K))
    return _to_gumbel(u)


@triton.jit
def _gumbel_vec(seed, groups, BLOCK_K: tl.constexpr):
    """(BLOCK_K // 4,) group counters -> (BLOCK_K,) noise, laid out as in :func:`_gumbel_tile`."""
    u0, u1, u2, u3 = tl.rand4x(seed, groups)
    u = tl.reshape(tl.join(tl.join(u0, u2), tl.join(u1, u3)), (BLOCK_K,))
    return _to_gumbel(u)


@triton.jit
def noise_kernel(out_ptr, seed_ptr, M, K, ROWS: tl.constexpr, BLOCK_K: tl.constexpr):
    """out[row, col] = the Gumbel noise of element (row, col) of an (M, K) problem."""
    seed = tl.load(seed_ptr)
    base = tl.load(seed_ptr + 1)
    kg = (K + 3) // 4
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    col0 = tl.program_id(1) * BLOCK_K
    cols = col0 + tl.arange(0, BLOCK_K)
    groups = base + rows[:, None] * kg + (col0 // 4 + tl.arange(0, BLOCK_K // 4))[None, :]
    g = _gumbel_tile(seed, groups, ROWS, BLOCK_K)
    mask = (rows[:, None] < M) & (cols[None, :] < K)
    tl.store(out_ptr + rows[:, None] * K + cols[None, :], g, mask=mask)


@triton.jit
def fwd_block_kernel(
    x_ptr,
    y_ptr,
    lse_ptr,
    seed_ptr,
    tau_ptr,
    tau,
    M,
    K,
    stride_xm,
    stride_ym,
    HARD: tl.constexpr,
    SAVE_LSE: tl.constexpr,
    TAU_FROM_PTR: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    seed = tl.load(seed_ptr)
    base = tl.load(seed_ptr + 1)
    if TAU_FROM_PTR:
        tau = tl.load(tau_ptr).to(tl.float32)
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)  # (R,)
    cols = tl.arange(0, BLOCK_K)  # (C,)
    mask = (rows[:, None] < M) & (cols[None, :] < K)  # (R, C)
    x = tl.load(x_ptr + rows[:, None] * stride_xm + cols[None, :], mask=mask, other=0.0)
    groups = base + rows[:, None] * ((K + 3) // 4) + tl.arange(0, BLOCK_K // 4)[None, :]
    g = _gumbel_tile(seed, groups, ROWS, BLOCK_K)
    z = tl.where(mask, (x.to(tl.float32) + g) / tau, float("-inf"))  # (R, C)
    m = tl.maximum(tl.max(z, axis=1), NEG_BIG)  # (R,)
    if HARD:
        idx = tl.argmax(z, axis=1)  # ties go to the lowest index, as in torch.argmax
        y = tl.where(cols[None, :] == idx[:, None], 1.0, 0.0)
        if SAVE_LSE:
            s = tl.maximum(tl.sum(tl.exp(z - m[:, None]), axis=1), TINY)
            tl.store(lse_ptr + rows, m + tl.log(s), mask=rows < M)
    else:
        e = tl.exp(z - m[:, None])
        s = tl.maximum(tl.sum(e, axis=1), TINY)  # > 0 also for padding rows past M
        y = e / s[:, None]
        if SAVE_LSE:
            tl.store(lse_ptr + rows, m + tl.log(s), mask=rows < M)
    tl.store(
        y_ptr + rows[:, None] * stride_ym + cols[None, :], y.to(y_ptr.dtype.element_ty), mask=mask
    )


@triton.jit
def fwd_loop_kernel(
    x_ptr,
    y_ptr,
    lse_ptr,
    seed_ptr,
    tau_ptr,
    tau,
    M,
    K,
    stride_xm,
    stride_ym,
    HARD: tl.constexpr,
    SAVE_LSE: tl.constexpr,
    TAU_FROM_PTR: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    seed = tl.load(seed_ptr)
    base = tl.load(seed_ptr + 1)
    if TAU_FROM_PTR:
        tau = tl.load(tau_ptr).to(tl.float32)
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * stride_xm
    y_row = y_ptr + row * stride_ym
    c_row = base + row * ((K + 3) // 4)
    goffs = tl.arange(0, BLOCK_K // 4)
    offs = tl.arange(0, BLOCK_K)
    m = tl.full((), NEG_BIG, tl.float32)
    s = tl.zeros((), tl.float32)
    best = tl.full((), float("-inf"), tl.float32)
    best_idx = tl.zeros((), tl.int32)
    # Pass 1: online max and sum of exp (and the running argmax for the one-hot).
    for start in range(0, K, BLOCK_K):
        cols = start + offs
        mask = cols < K
        x = tl.load(x_row + cols, mask=mask, other=0.0)
        g = _gumbel_vec(seed, c_row + start // 4 + goffs, BLOCK_K)
        z = tl.where(mask, (x.to(tl.float32) + g) / tau, float("-inf"))
        chunk_max = tl.max(z, axis=0)
        if HARD:
            chunk_idx = tl.argmax(z, axis=0) + start
            better = chunk_max > best  # strict: an earlier chunk wins ties
            best_idx = tl.where(better, chunk_idx, best_idx)
            best = tl.where(better, chunk_max, best)
        if SAVE_LSE or not HARD:
            m_new = tl.maximum(m, chunk_max)
            s = s * tl.exp(m - m_new) + tl.sum(tl.exp(z - m_new), axis=0)
            m = m_new
    lse = m + tl.log(tl.maximum(s, TINY))
    if SAVE_LSE:
        tl.store(lse_ptr + row, lse)
    # Pass 2: write. The one-hot needs no input; the soft sample re-reads the row.
    for start in range(0, K, BLOCK_K):
        cols = start + offs
        mask = cols < K
        if HARD:
            y = tl.where(cols == best_idx, 1.0, 0.0)
        else:
            x = tl.load(x_row + cols, mask=mask, other=0.0)
            g = _gumbel_vec(seed, c_row + start // 4 + goffs, BLOCK_K)
            z = (x.to(tl.float32) + g) / tau
            y = tl.exp(z - lse)
        tl.store(y_row + cols, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def bwd_block_kernel(
    x_ptr,
    gy_ptr,
    dx_ptr,
    lse_ptr,
    seed_ptr,
    tau_ptr,
    tau,
    M,
    K,
    stride_xm,
    stride_gm,
    stride_dm,
    TAU_FROM_PTR: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    seed = tl.load(seed_ptr)
    base = tl.load(seed_ptr + 1)
    if TAU_FROM_PTR:
        tau = tl.load(tau_ptr).to(tl.float32)
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    cols = tl.arange(0, BLOCK_K)
    mask = (rows[:, None] < M) & (cols[None, :] < K)
    lse = tl.load(lse_ptr + rows, mask=rows < M, other=0.0)
    x = tl.load(x_ptr + rows[:, None] * stride_xm + cols[None, :], mask=mask, other=0.0)
    gy = tl.load(gy_ptr + rows[:, None] * stride_gm + cols[None, :], mask=mask, other=0.0)
    groups = base + rows[:, None] * ((K + 3) // 4) + tl.arange(0, BLOCK_K // 4)[None, :]
    g = _gumbel_tile(seed, groups, ROWS, BLOCK_K)
    z = tl.where(mask, (x.to(tl.float32) + g) / tau, float("-inf"))
    y = tl.exp(z - lse[:, None])  # the soft sample, re-derived
    gy = gy.to(tl.float32)
    dot = tl.sum(gy * y, axis=1)
    dx = y * (gy - dot[:, None]) / tau
    tl.store(
        dx_ptr + rows[:, None] * stride_dm + cols[None, :],
        dx.to(dx_ptr.dtype.element_ty),
        mask=mask,
    )


@triton.jit
def bwd_loop_kernel(
    x_ptr,
    gy_ptr,
    dx_ptr,
    lse_ptr,
    seed_ptr,
    tau_ptr,
    tau,
    M,
    K,
    stride_xm,
    stride_gm,
    stride_dm,
    TAU_FROM_PTR: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    seed = tl.load(seed_ptr)
    base = tl.load(seed_ptr + 1)
    if TAU_FROM_PTR:
        tau = tl.load(tau_ptr).to(tl.float32)
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * stride_xm
    gy_row = gy_ptr + row * stride_gm
    dx_row = dx_ptr + row * stride_dm
    c_row = base + row * ((K + 3) // 4)
    goffs = tl.arange(0, BLOCK_K // 4)
    lse = tl.load(lse_ptr + row)
    offs = tl.arange(0, BLOCK_K)
    dot = tl.zeros((), tl.float32)
    for start in range(0, K, BLOCK_K):
        cols = start + offs
        mask = cols < K
        x = tl.load(x_row + cols, mask=mask, other=0.0)
        gy = tl.load(gy_row + cols, mask=mask, other=0.0).to(tl.float32)
        g = _gumbel_vec(seed, c_row + start // 4 + goffs, BLOCK_K)
        z = tl.where(mask, (x.to(tl.float32) + g) / tau, float("-inf"))
        dot += tl.sum(gy * tl.exp(z - lse), axis=0)
    for start in range(0, K, BLOCK_K):
        cols = start + offs
        mask = cols < K
        x = tl.load(x_row + cols, mask=mask, other=0.0)
        gy = tl.load(gy_row + cols, mask=mask, other=0.0).to(tl.float32)
        g = _gumbel_vec(seed, c_row + start // 4 + goffs, BLOCK_K)
        y = tl.exp((x.to(tl.float32) + g) / tau - lse)
        dx = y * (gy - dot) / tau
        tl.store(dx_row + cols, dx.to(dx_ptr.dtype.element_ty), mask=mask)
