"""The closed-form step (st + logistic discriminator) is the autograd step, to rounding."""

from __future__ import annotations

import pytest
import torch

from gumbel_core import OnlineGAN


@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.1}, {"generator_steps": 2}])
def test_closed_form_matches_autograd_step_for_step(options: dict) -> None:
    truth = torch.tensor([0.0, 0.0, 0.1, 0.3, 0.6])
    stream = torch.Generator().manual_seed(7)
    fast = OnlineGAN(5, seed=3, **options)
    reference = OnlineGAN(5, seed=3, closed_form=False, **options)
    for _ in range(200):
        batch = torch.multinomial(truth, 256, True, generator=stream)
        a, b = fast.learn_many(batch), reference.learn_many(batch)
        assert a.generator_loss == pytest.approx(b.generator_loss, abs=1e-5)
        assert a.discriminator_loss == pytest.approx(b.discriminator_loss, abs=1e-5)
    for name, tensor in fast.get_weights()["generator"].items():
        torch.testing.assert_close(tensor, reference.get_weights()["generator"][name], atol=1e-4,
                                   rtol=0)
    for name, tensor in fast.get_weights()["discriminator"].items():
        torch.testing.assert_close(
            tensor, reference.get_weights()["discriminator"][name], atol=1e-4, rtol=0
        )
    torch.testing.assert_close(fast.estimate(), reference.estimate(), atol=1e-5, rtol=0)


def test_checkpoints_move_between_the_two_paths() -> None:
    """The closed form keeps Adam's state where torch.optim.Adam keeps it."""
    values = torch.tensor([2, 3, 4, 4, 4] * 50)
    fast = OnlineGAN(5, seed=0)
    for _ in range(20):
        fast.learn_many(values)
    reference = OnlineGAN(5, seed=0, closed_form=False)
    reference.load_state_dict(fast.state_dict())
    for _ in range(20):
        a, b = fast.learn_many(values), reference.learn_many(values)
    assert a.generator_loss == pytest.approx(b.generator_loss, abs=1e-5)
