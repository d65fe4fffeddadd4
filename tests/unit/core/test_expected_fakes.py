"""``expected_fakes``: D's loss on the fakes in expectation under the generator, not drawn.

It must be the same gradient in expectation as D on drawn fakes (only less noisy): from one
state, the mean of many drawn-fake steps' D gradients matches the expected-fake step's. Adam's
first moment after a step, ``beta1 * m + (1 - beta1) * grad``, is linear in the gradient, so
its mean over draws is compared (the second moment and the update itself are not linear).
"""

from __future__ import annotations

import pytest
import torch

from gumbel_core import OnlineGAN

TRUTH = torch.tensor([0.05, 0.1, 0.15, 0.3, 0.4])
DRAWS = 400
# 4 standard errors per component: a false alarm on 6 components has probability about
# 4e-4 for an unbiased gradient (normal approximation); the seeds are fixed, so a run is
# reproducible on one CPU and the bound covers what rounding changes between CPUs.
Z = 4.0


def _warm_state(closed_form: bool) -> tuple[dict, torch.Tensor]:
    stream = torch.Generator().manual_seed(11)
    learner = OnlineGAN(5, seed=2, closed_form=closed_form)
    for _ in range(60):  # D and G away from their initial values
        learner.learn_many(torch.multinomial(TRUTH, 256, True, generator=stream))
    return learner.state_dict(), torch.multinomial(TRUTH, 256, True, generator=stream)


def _d_first_moment(learner: OnlineGAN) -> torch.Tensor:
    state = learner.gan.d_optimizer.state_dict()["state"]
    return torch.cat([state[i]["exp_avg"].flatten() for i in sorted(state)])  # weight, bias


@pytest.mark.parametrize("closed_form", [True, False], ids=["closed_form", "autograd"])
def test_the_expected_fake_term_is_the_mean_of_the_drawn_ones(closed_form: bool) -> None:
    state, batch = _warm_state(closed_form)
    expected = OnlineGAN(5, seed=0, closed_form=closed_form)
    expected.load_state_dict(state)
    expected.learn_many(batch)
    target = _d_first_moment(expected)

    drawn = OnlineGAN(5, seed=0, closed_form=closed_form, expected_fakes=False)
    moments = []
    for i in range(DRAWS):
        drawn.load_state_dict(state)
        drawn.rng.manual_seed(1_000 + i)  # a different draw of fakes from the same state
        drawn.learn_many(batch)
        moments.append(_d_first_moment(drawn))
    sample = torch.stack(moments)  # (DRAWS, K + 1)
    spread = sample.std(0)
    assert bool((spread > 0).all()), "drawn fakes should make D's gradient vary"
    error = (sample.mean(0) - target).abs()
    assert bool((error <= Z * spread / DRAWS**0.5).all()), (error, spread / DRAWS**0.5)


def test_soft_samples_are_always_drawn() -> None:
    """Soft samples are not one-hots: D must see the drawn ones (the collapse the quality
    table shows depends on it)."""
    learner = OnlineGAN(5, seed=0, estimator="soft")
    assert learner.gan_config.expected_fakes and not learner.gan.expected_fakes
    assert OnlineGAN(5, seed=0).gan.expected_fakes
