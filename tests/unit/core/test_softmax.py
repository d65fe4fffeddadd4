"""gumbel_softmax and its log-space form: values, gradients, numerics, errors."""

import pytest
import torch

from gumbel_core import gumbel_softmax, log_gumbel_softmax, straight_through


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_soft_samples_lie_in_the_simplex():
    y = gumbel_softmax(torch.randn(64, 5, generator=gen(1)), tau=0.7, generator=gen())
    assert (y >= 0).all() and torch.allclose(y.sum(-1), torch.ones(64))


def test_hard_samples_are_exactly_one_hot():
    y = gumbel_softmax(torch.randn(256, 7, generator=gen(1)), tau=0.3, hard=True, generator=gen())
    assert set(y.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(y.sum(-1), torch.ones(256))


def test_hard_gradient_equals_the_soft_gradient():
    logits = torch.randn(32, 6, generator=gen(1))
    weights = torch.randn(32, 6, generator=gen(2))
    grads = []
    for hard in (False, True):
        x = logits.clone().requires_grad_(True)
        y = gumbel_softmax(x, tau=0.5, hard=hard, generator=gen(3))  # same noise both times
        (y * weights).sum().backward()
        grads.append(x.grad)
    assert torch.equal(grads[0], grads[1])


def test_hard_argmax_matches_soft_argmax_for_the_same_noise():
    logits = torch.randn(100, 4, generator=gen(1))
    soft = gumbel_softmax(logits, tau=2.0, generator=gen(5))
    hard = gumbel_softmax(logits, tau=2.0, hard=True, generator=gen(5))
    assert torch.equal(hard.argmax(-1), soft.argmax(-1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("tau", [1e-3, 0.1, 1.0])
@pytest.mark.parametrize("hard", [False, True])
def test_extreme_logits_and_tiny_tau_stay_finite(dtype, tau, hard):
    logits = torch.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]], dtype=dtype)
    x = logits.clone().requires_grad_(True)
    y = gumbel_softmax(x, tau=tau, hard=hard, generator=gen())
    assert y.dtype == dtype
    assert torch.isfinite(y).all()
    (y * torch.arange(3.0, dtype=dtype)).sum().backward()
    assert torch.isfinite(x.grad).all()
    log_y = log_gumbel_softmax(x, tau=tau, generator=gen())
    assert torch.isfinite(log_y.float()).all()


def test_log_form_is_the_log_of_the_sample():
    logits = torch.randn(10, 4, generator=gen(1), dtype=torch.float64)
    y = gumbel_softmax(logits, tau=0.8, generator=gen(2))
    log_y = log_gumbel_softmax(logits, tau=0.8, generator=gen(2))
    assert torch.allclose(log_y.exp(), y)


def test_other_dim():
    logits = torch.randn(3, 5, 2, generator=gen(1))
    y = gumbel_softmax(logits, tau=1.0, hard=True, dim=1, generator=gen())
    assert torch.equal(y.sum(1), torch.ones(3, 2))


def test_same_seed_same_sample_and_inputs_not_mutated():
    logits = torch.randn(8, 3, generator=gen(1))
    before = logits.clone()
    a = gumbel_softmax(logits, generator=gen(9))
    b = gumbel_softmax(logits, generator=gen(9))
    assert torch.equal(a, b) and torch.equal(logits, before)


@pytest.mark.parametrize("tau", [0.0, -1.0, float("nan"), float("inf"), "x"])
def test_bad_tau_raises(tau):
    with pytest.raises(ValueError, match="tau"):
        gumbel_softmax(torch.zeros(3), tau=tau)


@pytest.mark.parametrize(
    "logits, dim",
    [
        (torch.tensor(1.0), -1),
        (torch.zeros(2, 0), -1),
        (torch.zeros(3), 1),
        (torch.zeros(3, dtype=torch.long), -1),
    ],
)
def test_bad_shapes_raise(logits, dim):
    with pytest.raises(ValueError):
        gumbel_softmax(logits, dim=dim)


def test_straight_through_value_and_gradient():
    y_soft = torch.tensor([[0.2, 0.5, 0.3]], requires_grad=True)
    y = straight_through(y_soft)
    assert y.tolist() == [[0.0, 1.0, 0.0]]
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert y_soft.grad.tolist() == [[1.0, 2.0, 3.0]]
