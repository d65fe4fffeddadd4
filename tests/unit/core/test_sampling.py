"""gumbel_max: exact categorical samples."""

import pytest
import torch

from gumbel_core import gumbel_max

# Chi-square critical values at alpha = 1e-3 (the false-alarm rate of each test below).
CHI2_CRITICAL_1E3 = {1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52, 7: 24.32, 9: 27.88}


def chi_square(counts: torch.Tensor, probs: torch.Tensor) -> float:
    expected = probs * counts.sum()
    keep = expected > 0
    return float((((counts - expected) ** 2)[keep] / expected[keep]).sum())


@pytest.mark.parametrize(
    "logits",
    [
        [0.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 2.0, 3.0, -1.0],
        [5.0, 0.0, -2.0, 1.0, 0.5, 0.2, -4.0, 3.0],
    ],
)
def test_gumbel_max_follows_softmax(logits):
    """Chi-square goodness of fit, seed 0, 100k samples; false-alarm rate alpha = 1e-3."""
    logits = torch.tensor(logits)
    samples = gumbel_max(logits, 100_000, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(samples, minlength=len(logits)).double()
    probs = logits.double().softmax(-1)
    assert chi_square(counts, probs) < CHI2_CRITICAL_1E3[len(logits) - 1]


def test_gumbel_max_never_picks_minus_inf():
    logits = torch.tensor([0.0, -float("inf"), 1.0])
    samples = gumbel_max(logits, 50_000, generator=torch.Generator().manual_seed(0))
    assert not (samples == 1).any()


def test_gumbel_max_shapes():
    logits = torch.zeros(4, 3)
    assert gumbel_max(logits).shape == (4,)
    assert gumbel_max(logits, 10).shape == (10, 4)
    assert gumbel_max(logits).dtype == torch.long


def test_gumbel_max_bf16_logits_are_unbiased():
    """Seed 0, 100k samples of bf16 logits; alpha = 1e-3."""
    logits = torch.tensor([0.0, 1.0, 2.0], dtype=torch.bfloat16)
    samples = gumbel_max(logits, 100_000, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(samples, minlength=3).double()
    assert chi_square(counts, logits.double().softmax(-1)) < CHI2_CRITICAL_1E3[2]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_gumbel_max_rejects_bad_num_samples(bad):
    with pytest.raises(ValueError, match="num_samples"):
        gumbel_max(torch.zeros(3), bad)


@pytest.mark.parametrize("logits", [torch.tensor(1.0), torch.zeros(3, 0), torch.tensor([1, 2])])
def test_gumbel_max_rejects_bad_logits(logits):
    with pytest.raises(ValueError, match="logits"):
        gumbel_max(logits)


def test_gumbel_max_does_not_mutate_logits():
    logits = torch.tensor([0.0, 1.0, 2.0])
    before = logits.clone()
    gumbel_max(logits, 10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(logits, before)
