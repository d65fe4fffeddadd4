"""Property-based checks (hypothesis): invariants over arbitrary logits, temperatures, values."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gumbel_core import CountingEstimator, gumbel_softmax, log_gumbel_softmax, total_variation

logit_lists = st.lists(
    st.floats(min_value=-1e4, max_value=1e4, allow_nan=False), min_size=2, max_size=16
)
taus = st.floats(min_value=1e-3, max_value=100.0)


@settings(max_examples=60, deadline=None)
@given(logits=logit_lists, tau=taus, hard=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_samples_are_finite_points_of_the_simplex(logits, tau, hard, seed):
    x = torch.tensor(logits).requires_grad_(True)
    y = gumbel_softmax(x, tau=tau, hard=hard, generator=torch.Generator().manual_seed(seed))
    assert torch.isfinite(y).all() and (y >= 0).all()
    assert abs(y.sum().item() - 1.0) < 1e-5
    (y * torch.arange(len(logits), dtype=torch.float32)).sum().backward()
    assert torch.isfinite(x.grad).all()
    log_y = log_gumbel_softmax(x.detach(), tau=tau, generator=torch.Generator().manual_seed(seed))
    assert torch.isfinite(log_y).all()


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.integers(0, 9), min_size=1, max_size=200))
def test_counting_is_the_empirical_distribution(values):
    est = CountingEstimator(10)
    est.learn_many(torch.tensor(values))
    empirical = torch.bincount(torch.tensor(values), minlength=10).double() / len(values)
    assert total_variation(est.estimate(), empirical).item() < 1e-12


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.integers(-5, 15), min_size=1, max_size=50))
def test_counting_accepts_exactly_the_ids_in_range(values):
    est = CountingEstimator(10)
    ok = all(0 <= v < 10 for v in values)
    try:
        est.learn_many(torch.tensor(values))
        assert ok
    except ValueError as err:
        assert not ok and "[0, 10)" in str(err)
