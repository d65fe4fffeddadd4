"""The fused Triton Gumbel-softmax against the PyTorch reference.

On a machine with CUDA the kernels run on the GPU; elsewhere they run under Triton's
interpreter (``TRITON_INTERPRET=1``, set only while the kernel module is imported, so the rest
of the test session keeps the PyTorch path) with tiny shapes. Skipped when Triton is absent.
"""

from __future__ import annotations

import importlib
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"

# Chi-square critical values at false-alarm rate 1e-3 (each statistical test below fails with
# at most this probability for a correct kernel; the seeds are fixed, so a run is reproducible).
CHI2_CRIT_1E3 = {4: 18.467}


def _interpret_random(triton_language) -> None:
    # tl.rand4x and its helpers are defined when Triton is imported; if that happened before the
    # interpreter was switched on, redefine them (Triton reads TRITON_INTERPRET at definition).
    random = importlib.reload(triton_language.random)
    triton_language.rand4x = random.rand4x


@pytest.fixture(scope="module")
def fused():
    """``gumbel_core.kernels.fused``, interpreted on a machine without CUDA.

    The interpreter is on (``TRITON_INTERPRET=1``) for this module's tests only: Triton reads
    it both when kernels are defined and when they run.
    """
    if CUDA:
        pytest.importorskip("triton")
        yield importlib.import_module("gumbel_core.kernels.fused")
        return
    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        tl = pytest.importorskip("triton.language")
        if type(tl.rand4x).__name__ != "InterpretedFunction":
            _interpret_random(tl)
        kernels = importlib.import_module("gumbel_core.kernels._triton_gumbel")
        if type(kernels.fwd_block_kernel).__name__ != "InterpretedFunction":
            importlib.reload(kernels)
        yield importlib.import_module("gumbel_core.kernels.fused")
    finally:
        if old is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = old


@pytest.fixture()
def small_loop(fused, monkeypatch):
    """Route K > 16 to the looped (large-K) kernels, in 8-wide chunks, so tiny shapes test them."""
    monkeypatch.setattr(fused, "SINGLE_MAX_K", 16)
    monkeypatch.setattr(fused, "LOOP_BLOCK_K", 8)


def reference(fused, logits, tau, seed, hard):
    """softmax((logits + g) / tau) in fp32 with the kernel's own noise g; one-hot if hard."""
    m, k = logits.shape
    g = fused.fused_gumbel_noise((m, k), seed, logits.device)
    y_soft = torch.softmax((logits.float() + g) / tau, dim=-1)
    if not hard:
        return y_soft
    y_hard = F.one_hot(y_soft.argmax(-1), k).to(y_soft.dtype)
    return y_hard - y_soft.detach() + y_soft


def gumbel_cdf(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(-torch.exp(-x))


# -- noise ---------------------------------------------------------------------------------


def test_noise_is_standard_gumbel_in_every_lane(fused):
    # The noise comes four categories per Philox call: test each lane separately.
    # Kolmogorov-Smirnov, n = 1024 per lane, critical value 1.95 / sqrt(n) at false-alarm 1e-3.
    g = fused.fused_gumbel_noise((64, 64), seed=1234, device=DEVICE).cpu().double()
    assert torch.isfinite(g).all()
    for lane in range(4):
        x = g[:, lane::4].flatten().sort().values
        n = x.numel()
        cdf = gumbel_cdf(x)
        ecdf_hi = torch.arange(1, n + 1, dtype=torch.float64) / n
        ecdf_lo = torch.arange(0, n, dtype=torch.float64) / n
        ks = max((ecdf_hi - cdf).abs().max().item(), (cdf - ecdf_lo).abs().max().item())
        assert ks < 1.95 / math.sqrt(n), f"lane {lane}: KS statistic {ks:.4f}"


def test_noise_lanes_and_rows_are_uncorrelated(fused):
    # |corr| of 1024 independent pairs exceeds 0.15 with probability < 1e-6.
    g = fused.fused_gumbel_noise((32, 128), seed=7, device=DEVICE).cpu().double()
    pairs = [
        (g[:, 0::4].flatten(), g[:, 1::4].flatten()),  # neighbours inside one Philox group
        (g[:, 3::4].flatten(), g[:, 4::4].flatten()[: g[:, 3::4].numel()]),  # across groups
        (g[:-1].flatten(), g[1:].flatten()),  # neighbouring rows
    ]
    for a, b in pairs:
        n = min(a.numel(), b.numel())
        corr = torch.corrcoef(torch.stack([a[:n], b[:n]]))[0, 1].item()
        assert abs(corr) < 0.15


def test_noise_depends_on_seed_and_offset(fused):
    a = fused.fused_gumbel_noise((4, 16), seed=1, device=DEVICE)
    assert torch.equal(a, fused.fused_gumbel_noise((4, 16), seed=1, device=DEVICE))
    assert not torch.equal(a, fused.fused_gumbel_noise((4, 16), seed=2, device=DEVICE))
    shifted = torch.tensor([1, 4], dtype=torch.int64)  # offset by one row (K / 4 groups)
    b = fused.fused_gumbel_noise((4, 16), seed=shifted, device=DEVICE)
    assert torch.equal(a[1:], b[:-1])


# -- forward -------------------------------------------------------------------------------

SHAPES = [(1, 2), (3, 5), (9, 7), (4, 33)]


@pytest.mark.parametrize("shape", SHAPES)
def test_soft_matches_reference_given_the_same_noise(fused, shape):
    logits = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(DEVICE)
    y = fused.fused_gumbel_softmax(logits, tau=0.7, seed=11)
    torch.testing.assert_close(y, reference(fused, logits, 0.7, 11, hard=False))
    torch.testing.assert_close(y.sum(-1), torch.ones(shape[0], device=DEVICE))


@pytest.mark.parametrize("shape", SHAPES)
def test_hard_is_exactly_the_one_hot_of_the_reference_argmax(fused, shape):
    logits = torch.randn(shape, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    y = fused.fused_gumbel_softmax(logits, tau=0.5, hard=True, seed=3)
    ref = reference(fused, logits, 0.5, 3, hard=True)
    assert set(y.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(y.sum(-1), torch.ones(shape[0], device=DEVICE))
    assert torch.equal(y.argmax(-1), ref.argmax(-1))


def test_looped_kernels_match_the_reference(fused, small_loop):
    # K = 37 > SINGLE_MAX_K = 16: swept in chunks of 8, the last one partial; a few -inf logits
    # (masked categories) must get exactly zero. The one-hot's distribution then follows from
    # the noise tests and test_argmax_follows_softmax_of_logits (same noise, same argmax).
    logits = torch.randn(8, 37, generator=torch.Generator().manual_seed(2))
    logits[:, [0, 9, 36]] = float("-inf")
    logits = logits.to(DEVICE)
    assert fused.block_config(8, 37)["loop"]
    y = fused.fused_gumbel_softmax(logits, tau=0.9, seed=5)
    ref = reference(fused, logits, 0.9, 5, hard=False)
    torch.testing.assert_close(y, ref)
    y_hard = fused.fused_gumbel_softmax(logits, tau=0.9, hard=True, seed=5)
    assert torch.equal(y_hard.argmax(-1), ref.argmax(-1))
    assert torch.equal(y_hard.sum(-1), torch.ones(8, device=DEVICE))
    assert not y_hard[:, [0, 9, 36]].any() and not y[:, [0, 9, 36]].any()


def test_argmax_follows_softmax_of_logits(fused):
    # Gumbel-max: the one-hot's category is distributed as softmax(logits). 4,000 rows of one
    # expanded (stride-0) logits row; chi-square with 4 dof at false-alarm 1e-3, seed 2024.
    probs = torch.tensor([0.05, 0.10, 0.15, 0.30, 0.40])
    n = 4000
    logits = probs.log().to(DEVICE).expand(n, -1)
    y = fused.fused_gumbel_softmax(logits, tau=1.0, hard=True, seed=2024)
    counts = y.sum(0).cpu().double()
    expected = probs.double() * n
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < CHI2_CRIT_1E3[4], f"chi-square {chi2:.2f}, counts {counts.tolist()}"


# -- backward ------------------------------------------------------------------------------


@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("shape", [(3, 5), (4, 33)])
def test_gradient_is_the_soft_samples_gradient(fused, shape, hard):
    # d/dx of sum(w * y) equals the reference's: y * (w - sum(w * y)) / tau with the same noise
    # (for hard=True the straight-through gradient, i.e. the soft one).
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(shape, generator=gen).to(DEVICE).requires_grad_()
    w = torch.randn(shape, generator=gen).to(DEVICE)
    (grad,) = torch.autograd.grad(
        (fused.fused_gumbel_softmax(logits, 0.6, hard, seed=8) * w).sum(), logits
    )
    (want,) = torch.autograd.grad((reference(fused, logits, 0.6, 8, hard) * w).sum(), logits)
    torch.testing.assert_close(grad, want)


def test_looped_backward_matches_reference(fused, small_loop):
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 29, generator=gen).to(DEVICE).requires_grad_()
    w = torch.randn(2, 29, generator=gen).to(DEVICE)
    (grad,) = torch.autograd.grad(
        (fused.fused_gumbel_softmax(logits, 1.3, True, seed=6) * w).sum(), logits
    )
    (want,) = torch.autograd.grad((reference(fused, logits, 1.3, 6, True) * w).sum(), logits)
    torch.testing.assert_close(grad, want)


def test_gradient_through_expanded_logits_sums_over_rows(fused):
    # The GAN samples from logits.expand(N, K): the kernel reads the one row N times.
    row = torch.randn(6, generator=torch.Generator().manual_seed(6)).to(DEVICE).requires_grad_()
    w = torch.randn(10, 6, generator=torch.Generator().manual_seed(7)).to(DEVICE)
    (grad,) = torch.autograd.grad(
        (fused.fused_gumbel_softmax(row.expand(10, -1), seed=1) * w).sum(), row
    )
    full = row.detach().expand(10, -1).clone().requires_grad_()
    (want,) = torch.autograd.grad((reference(fused, full, 1.0, 1, False) * w).sum(), full)
    torch.testing.assert_close(grad, want.sum(0))


# -- seeds, tau, dtypes, shapes -------------------------------------------------------------


def test_same_generator_seed_same_sample(fused):
    logits = torch.randn(4, 9).to(DEVICE)

    def sample(seed: int) -> torch.Tensor:
        gen = torch.Generator(device=DEVICE).manual_seed(seed)
        return fused.fused_gumbel_softmax(logits, tau=0.8, generator=gen)

    assert torch.equal(sample(0), sample(0))
    assert not torch.equal(sample(0), sample(1))


def test_tau_tensor_equals_tau_float(fused):
    logits = torch.randn(3, 6).to(DEVICE)
    tau = torch.tensor([0.3], device=DEVICE)
    torch.testing.assert_close(
        fused.fused_gumbel_softmax(logits, tau=tau, seed=2),
        fused.fused_gumbel_softmax(logits, tau=0.3, seed=2),
    )


@pytest.mark.parametrize("hard", [False, True])
def test_extreme_logits_and_tiny_tau_stay_finite(fused, hard):
    logits = torch.tensor([[1e4, -1e4, 0.0, 1e4], [-1e4, -1e4, -1e4, -1e4]], device=DEVICE)
    logits.requires_grad_()
    y = fused.fused_gumbel_softmax(logits, tau=1e-3, hard=hard, seed=0)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y.sum(-1), torch.ones(2, device=DEVICE))
    (grad,) = torch.autograd.grad((y * torch.arange(4.0, device=DEVICE)).sum(), logits)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("hard", [False, True])
def test_half_precision_inputs_compute_in_fp32(fused, dtype, hard):
    logits = torch.randn(5, 12, generator=torch.Generator().manual_seed(9)).to(DEVICE, dtype)
    logits.requires_grad_()
    y = fused.fused_gumbel_softmax(logits, tau=0.5, hard=hard, seed=4)
    assert y.dtype == dtype and torch.isfinite(y).all()
    ref = reference(fused, logits.detach(), 0.5, 4, hard)  # fp32 from the same half inputs
    if hard:
        assert torch.equal(y.float().argmax(-1), ref.argmax(-1))
    else:
        torch.testing.assert_close(y.float(), ref, atol=1e-2, rtol=1e-2)
    (grad,) = torch.autograd.grad(y.float().pow(2).sum(), logits)
    assert grad.dtype == dtype and torch.isfinite(grad).all()


def test_category_dim_other_than_last(fused):
    logits = torch.randn(2, 5, 3).to(DEVICE)  # categories along dim 1
    y = fused.fused_gumbel_softmax(logits, tau=1.0, hard=True, dim=1, seed=0)
    assert y.shape == logits.shape
    assert torch.equal(y.sum(1), torch.ones(2, 3, device=DEVICE))
    moved = logits.movedim(1, -1).reshape(-1, 5)
    flat = fused.fused_gumbel_softmax(moved, tau=1.0, hard=True, seed=0)
    assert torch.equal(y.movedim(1, -1).reshape(-1, 5), flat)


def test_rejects_bad_tau_and_dtype(fused):
    with pytest.raises(ValueError, match="tau"):
        fused.fused_gumbel_softmax(torch.zeros(2, 3, device=DEVICE), tau=0.0)
    with pytest.raises(ValueError, match="dtype"):
        fused.fused_gumbel_softmax(torch.zeros(2, 3, dtype=torch.float64, device=DEVICE))


# -- packaging -----------------------------------------------------------------------------


def test_importing_gumbel_core_needs_no_triton():
    code = (
        "import sys, gumbel_core, gumbel_core.kernels as k, torch;"
        "assert 'triton' not in sys.modules, 'triton imported';"
        "print(k.fused_available(torch.zeros(2)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"  # a CPU tensor: the PyTorch path
