"""One list of generic checks run over every categorical gradient estimator (river/checks style),
then estimator-specific facts."""

import pickle

import pytest
import torch

from gumbel_core import (
    ESTIMATORS,
    GappedStraightThrough,
    GumbelRao,
    ReinMax,
    conditional_gumbel,
    get_estimator,
)

CHI2_CRITICAL_1E3_DF3 = 16.27  # alpha = 1e-3, 3 degrees of freedom


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def logits_batch(n=512, k=4):
    return torch.tensor([0.5, -1.0, 1.5, 0.0][:k]).expand(n, k).clone()


def check_shape_and_simplex(est):
    y = est(logits_batch(), tau=1.0, generator=gen())
    assert y.shape == (512, 4)
    assert torch.allclose(y.sum(-1), torch.ones(512), atol=1e-5)
    assert (y >= -1e-6).all()


def check_hard_means_one_hot(est):
    y = est(logits_batch(), tau=1.0, generator=gen())
    if est.hard:
        assert set(y.unique().tolist()) <= {0.0, 1.0}
    else:
        assert (y < 1).all()


def check_gradient_is_finite_and_nonzero(est):
    x = logits_batch().requires_grad_(True)
    y = est(x, tau=1.0, generator=gen())
    (y * torch.tensor([1.0, -2.0, 0.5, 3.0])).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def check_gradient_sums_to_zero_over_categories(est):
    # Every estimator differentiates a softmax of the logits: shifting all logits changes nothing.
    x = logits_batch(8).double().requires_grad_(True)
    y = est(x, tau=1.0, generator=gen())
    (y * torch.arange(4.0, dtype=torch.float64)).sum().backward()
    assert torch.allclose(x.grad.sum(-1), torch.zeros(8, dtype=torch.float64), atol=1e-9)


def check_inputs_not_mutated(est):
    x = logits_batch()
    before = x.clone()
    est(x, tau=1.0, generator=gen())
    assert torch.equal(x, before)


def check_same_seed_same_result(est):
    a = est(logits_batch(), tau=1.0, generator=gen(3))
    b = est(logits_batch(), tau=1.0, generator=gen(3))
    assert torch.equal(a, b)


def check_pickling_round_trip(est):
    clone = pickle.loads(pickle.dumps(est))
    assert type(clone) is type(est) and repr(clone) == repr(est)
    assert torch.equal(clone(logits_batch(), 1.0, gen(4)), est(logits_batch(), 1.0, gen(4)))


def check_forward_category_follows_softmax(est):
    """Chi-square, seed 0, 40k samples; false-alarm rate alpha = 1e-3."""
    if not est.hard:
        return
    logits = logits_batch(40_000)
    y = est(logits, tau=1.0, generator=gen())
    counts = y.sum(0).double()
    expected = logits[0].double().softmax(-1) * 40_000
    assert float(((counts - expected) ** 2 / expected).sum()) < CHI2_CRITICAL_1E3_DF3


def check_bf16_finite(est):
    x = logits_batch(64).to(torch.bfloat16) * 1e3
    x.requires_grad_(True)
    y = est(x, tau=1.0, generator=gen())
    y.float().sum().backward()
    assert torch.isfinite(y.float()).all() and torch.isfinite(x.grad.float()).all()


def check_bad_tau_raises(est):
    with pytest.raises(ValueError, match="tau"):
        est(logits_batch(), tau=0.0)


CHECKS = [
    check_shape_and_simplex,
    check_hard_means_one_hot,
    check_gradient_is_finite_and_nonzero,
    check_gradient_sums_to_zero_over_categories,
    check_inputs_not_mutated,
    check_same_seed_same_result,
    check_pickling_round_trip,
    check_forward_category_follows_softmax,
    check_bf16_finite,
    check_bad_tau_raises,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_generic_checks(name, check):
    check(get_estimator(name))


def test_unknown_estimator_raises():
    with pytest.raises(ValueError, match="unknown estimator"):
        get_estimator("nope")


def test_reinmax_needs_tau_at_least_one():
    with pytest.raises(ValueError, match="tau >= 1"):
        ReinMax()(logits_batch(), tau=0.5)


def test_reinmax_gradient_matches_its_closed_form():
    # grad = 2 J(pi_1) g - J(pi_0) g / 2, with J(p) = diag(p) - p p^T (Liu et al. 2023, Alg. 2).
    x = torch.tensor([[0.3, -0.2, 1.0]], dtype=torch.float64, requires_grad=True)
    y = ReinMax()(x, tau=2.0, generator=gen(1))
    g = torch.tensor([[1.0, -1.0, 0.5]], dtype=torch.float64)
    (y * g).sum().backward()

    def jac(p):
        return torch.diag(p) - torch.outer(p, p)

    pi_0 = x.detach()[0].softmax(-1)
    pi_1 = 0.5 * (y.detach()[0] + (x.detach()[0] / 2.0).softmax(-1))
    expected = 2 * jac(pi_1) @ g[0] - 0.5 * jac(pi_0) @ g[0]
    assert torch.allclose(x.grad[0], expected)


def test_conditional_gumbel_keeps_the_argmax_and_the_marginal():
    """The top perturbed logit is Gumbel(logsumexp): its mean is logsumexp + 0.5772 (seed 0)."""
    logits = torch.tensor([0.0, 1.0, 2.0])
    y = torch.tensor([0.0, 1.0, 0.0])
    noise = conditional_gumbel(logits, y, 50_000, gen())
    perturbed = logits + noise
    assert ((perturbed).argmax(-1) == 1).all()
    top_mean = perturbed[:, 1].mean().item()
    assert abs(top_mean - (logits.logsumexp(0).item() + 0.5772)) < 0.03


def test_rao_with_many_samples_has_lower_gradient_variance_than_st():
    x = torch.tensor([0.5, -1.0, 1.5, 0.0])
    w = torch.tensor([1.0, -2.0, 0.5, 3.0])

    def grad_var(est):
        grads = []
        for seed in range(200):
            xi = x.clone().requires_grad_(True)
            (est(xi.unsqueeze(0), 1.0, gen(seed)) * w).sum().backward()
            grads.append(xi.grad)
        return torch.stack(grads).var(0).sum().item()

    assert grad_var(GumbelRao(32)) < grad_var(get_estimator("st"))


def test_gst_surrogate_points_at_the_sample_with_a_gap():
    x = torch.tensor([[3.0, 0.0, 0.0]], requires_grad=True)
    est = GappedStraightThrough(gap=1.0)
    for seed in range(20):
        y = est(x, 1.0, gen(seed))
        (y[0] * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
        assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("bad", [0, -1, True])
def test_rao_rejects_bad_num_samples(bad):
    with pytest.raises(ValueError, match="num_samples"):
        GumbelRao(bad)


def test_gst_rejects_bad_gap():
    with pytest.raises(ValueError, match="gap"):
        GappedStraightThrough(0.0)
