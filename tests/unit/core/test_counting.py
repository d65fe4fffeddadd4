"""CountingEstimator (the MLE baseline) and the distances."""

import math
import pickle

import pytest
import torch

from gumbel_core import CountingEstimator, kl_divergence, total_variation


def test_exact_counts_are_the_mle():
    est = CountingEstimator(4)
    est.learn_many(torch.tensor([0, 1, 1, 3]))
    est.learn_counts(torch.tensor([0.0, 0.0, 4.0, 0.0]))
    assert est.estimate().tolist() == [0.125, 0.25, 0.5, 0.125]
    assert est.samples_seen == 8


def test_uniform_before_any_data():
    assert CountingEstimator(4).estimate().tolist() == [0.25] * 4


def test_decay_forgets_old_data():
    est = CountingEstimator(2, decay=0.99)
    est.learn_many(torch.zeros(1000, dtype=torch.long))
    est.learn_many(torch.ones(1000, dtype=torch.long))
    assert est.estimate()[1] > 0.99


def test_state_dict_and_pickle_round_trip():
    est = CountingEstimator(3, decay=0.999)
    est.learn_many(torch.tensor([0, 2, 2]))
    fresh = CountingEstimator(3)
    fresh.load_state_dict(est.state_dict())
    assert torch.equal(fresh.estimate(), est.estimate()) and fresh.decay == 0.999
    assert torch.equal(pickle.loads(pickle.dumps(est)).estimate(), est.estimate())


def test_inputs_not_mutated():
    values = torch.tensor([2, 0, 1])
    before = values.clone()
    CountingEstimator(3).learn_many(values)
    assert torch.equal(values, before)


@pytest.mark.parametrize(
    "values, match",
    [
        (torch.tensor([0, 3]), r"\[0, 3\)"),
        (torch.tensor([-1]), r"\[0, 3\)"),
        (torch.tensor([0.0, 1.0]), "integer"),
        (torch.tensor([[0, 1]]), "1-D"),
        ([0, 1], "LongTensor"),
    ],
)
def test_bad_values_raise(values, match):
    with pytest.raises(ValueError, match=match):
        CountingEstimator(3).learn_many(values)


@pytest.mark.parametrize("counts", [torch.tensor([1.0, 2.0]), torch.tensor([1.0, -1.0, 0.0])])
def test_bad_counts_raise(counts):
    with pytest.raises(ValueError, match="counts"):
        CountingEstimator(3).learn_counts(counts)


@pytest.mark.parametrize("k, decay", [(1, None), (2.5, None), (3, 1.0), (3, 0.0)])
def test_bad_arguments_raise(k, decay):
    with pytest.raises(ValueError):
        CountingEstimator(k, decay=decay)


def test_total_variation():
    p = torch.tensor([0.0, 0.0, 0.1, 0.3, 0.6])
    assert total_variation(p, p).item() == 0.0
    assert math.isclose(total_variation(p, torch.full((5,), 0.2)).item(), 0.5, rel_tol=1e-6)
    assert total_variation(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])).item() == 1.0


def test_kl_divergence():
    p = torch.tensor([0.5, 0.5, 0.0])
    assert kl_divergence(p, p).item() == 0.0
    assert math.isclose(
        kl_divergence(p, torch.tensor([0.25, 0.5, 0.25])).item(), 0.5 * math.log(2), rel_tol=1e-6
    )
    assert kl_divergence(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0])).item() == math.inf


def test_distances_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        total_variation(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="scalar"):
        kl_divergence(torch.tensor(1.0), torch.tensor(1.0))


def test_memory_is_the_decay_in_samples():
    est = CountingEstimator(3, memory=4)
    assert est.decay == 0.75 and est.memory == pytest.approx(4)
    assert CountingEstimator(3).memory is None
    for bad in ({"memory": 1}, {"memory": 0.5}, {"memory": 10, "decay": 0.9}):
        with pytest.raises(ValueError):
            CountingEstimator(3, **bad)
