"""Noise: finite in every dtype, in range, reproducible from a generator."""

import pytest
import torch

from gumbel_core import exponential_noise, gumbel_noise, gumbel_noise_like, safe_uniform


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_gumbel_noise_is_finite_in_every_dtype(dtype):
    g = gumbel_noise((200_000,), generator=torch.Generator().manual_seed(0), dtype=dtype)
    assert g.dtype == dtype
    assert torch.isfinite(g).all()


def test_safe_uniform_is_strictly_inside_the_unit_interval():
    u = safe_uniform((500_000,), generator=torch.Generator().manual_seed(0))
    assert (u > 0).all() and (u < 1).all()
    assert torch.isfinite(torch.log(u)).all() and torch.isfinite(torch.log1p(-u)).all()


def test_safe_uniform_clamps_the_extremes(monkeypatch):
    monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.tensor([0.0, 1.0]))
    u = safe_uniform((2,))
    assert torch.isfinite(-torch.log(-torch.log(u))).all()


def test_gumbel_noise_has_the_gumbel_mean_and_variance():
    """Seed 0, 400k draws: mean 0.5772 and variance pi^2/6 within 5 standard errors."""
    g = gumbel_noise((400_000,), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert abs(g.mean().item() - 0.5772) < 5 * (1.645 / 400_000) ** 0.5
    assert abs(g.var().item() - 1.6449) < 0.03


def test_same_generator_seed_same_noise():
    a = gumbel_noise_like(torch.zeros(3, 4), torch.Generator().manual_seed(7))
    b = gumbel_noise_like(torch.zeros(3, 4), torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_exponential_noise_is_positive_and_finite():
    e = exponential_noise((100_000,), torch.Generator().manual_seed(0), dtype=torch.bfloat16)
    assert (e > 0).all() and torch.isfinite(e).all()
