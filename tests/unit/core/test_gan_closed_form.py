"""The closed-form step (st + logistic discriminator) is the autograd step, to rounding.

The two paths are compared one step at a time from identical states: a trajectory runs on
the closed form, and before each step its whole state (weights, Adam's moments, schedule,
RNG) is loaded into an autograd learner; both take that step on the same batch and must
agree to float32 rounding. Two trajectories run side by side would test the CPU instead: the
GAN amplifies the paths' rounding differences from step to step, by how much depends on the
CPU's kernels (issue 11: a 200-step comparison passed on Intel and failed on AMD).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from gumbel_core import OnlineGAN

TRUTH = torch.tensor([0.0, 0.0, 0.1, 0.3, 0.6])
STEPS, COMPARE_EVERY = 200, 4  # 50 states along the trajectory, the initial one included

# Rounding makes one step of the two paths differ by up to about 7e-7 (a few float32 ulps of
# D's weights, which are of order 1): at most 0.2 of these tolerances over 4,000 states per
# case (20 seeds of 200 steps, Intel CPU). Dropping the label-smoothing term of D's gradient
# exceeds them 3,000-fold at the first step; a generator gradient 0.1% too large, 1.5-fold.
RTOL, ATOL = 1e-5, 3e-6

OPTIONS = {
    "default": {},
    "label_smoothing": {"label_smoothing": 0.1},
    # D on the drawn fakes' frequencies instead of the generator's probabilities.
    "drawn_fakes": {"expected_fakes": False},
    "drawn_fakes_label_smoothing": {"expected_fakes": False, "label_smoothing": 0.1},
    "generator_steps": {"generator_steps": 2},
    # tau from 2 down to 0.5 (the default st schedule keeps tau = 1, hiding the 1 / tau).
    "annealed": {
        "schedule": "exponential",
        "schedule_options": {"initial": 2.0, "floor": 0.5, "rate": 0.01, "every": 1},
    },
}


def _assert_close(actual: Any, expected: Any, what: str) -> None:
    torch.testing.assert_close(
        torch.as_tensor(actual),
        torch.as_tensor(expected),
        rtol=RTOL,
        atol=ATOL,
        msg=lambda message: f"{what}: {message}",
    )


def _assert_same_state(fast: dict[str, Any], reference: dict[str, Any], where: str) -> None:
    """Parameters, Adam's moments (the record of the gradients) and the reported EMA agree."""
    assert torch.equal(fast["rng"], reference["rng"]), f"different noise drawn {where}"
    for part in ("generator", "discriminator"):
        for name, tensor in fast[part].items():
            _assert_close(tensor, reference[part][name], f"{part}.{name} {where}")
    for optimizer in ("g_optimizer", "d_optimizer"):
        for index, moments in fast[optimizer]["state"].items():
            theirs = reference[optimizer]["state"][index]
            assert torch.equal(moments["step"], theirs["step"]), where
            _assert_close(moments["exp_avg"], theirs["exp_avg"], f"{optimizer} exp_avg {where}")
            # The root of the squared gradients' average, in the gradients' own units.
            _assert_close(
                moments["exp_avg_sq"].sqrt(),
                theirs["exp_avg_sq"].sqrt(),
                f"{optimizer} exp_avg_sq {where}",
            )
    _assert_close(fast["estimate_ema"], reference["estimate_ema"], f"estimate_ema {where}")


def _assert_one_step_agrees(fast: OnlineGAN, reference: OnlineGAN, batch: torch.Tensor) -> None:
    """From ``fast``'s state, one step of each path on ``batch`` gives the same result."""
    reference.load_state_dict(fast.state_dict())
    a, b = fast.learn_many(batch), reference.learn_many(batch)
    where = f"after step {a.step} (tau {a.temperature:g})"
    _assert_close(a.generator_loss, b.generator_loss, f"generator loss {where}")
    _assert_close(a.discriminator_loss, b.discriminator_loss, f"discriminator loss {where}")
    _assert_same_state(fast.state_dict(), reference.state_dict(), where)


@pytest.mark.parametrize("options", list(OPTIONS.values()), ids=list(OPTIONS))
def test_closed_form_step_is_the_autograd_step_from_the_same_state(options: dict) -> None:
    stream = torch.Generator().manual_seed(7)
    # replay_steps=0: one learn_many is one step (the replay's steps are the same train_step)
    fast = OnlineGAN(5, seed=3, replay_steps=0, **options)
    reference = OnlineGAN(5, seed=3, closed_form=False, replay_steps=0, **options)
    for step in range(STEPS):
        batch = torch.multinomial(TRUTH, 256, True, generator=stream)
        if step % COMPARE_EVERY:
            fast.learn_many(batch)
        else:
            _assert_one_step_agrees(fast, reference, batch)


def _layout(tree: Any) -> Any:
    """``tree`` with each tensor replaced by its shape and dtype."""
    if isinstance(tree, torch.Tensor):
        return (tuple(tree.shape), tree.dtype)
    if isinstance(tree, dict):
        return {key: _layout(value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_layout(value) for value in tree)
    return tree


def _without_config(state: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in state.items() if key != "config"}  # closed_form differs


def test_checkpoints_move_between_the_two_paths() -> None:
    """The closed form keeps Adam's state where torch.optim.Adam keeps it."""
    values = torch.tensor([2, 3, 4, 4, 4] * 50)
    fast = OnlineGAN(5, seed=0, replay_steps=0)
    reference = OnlineGAN(5, seed=0, closed_form=False, replay_steps=0)
    for _ in range(20):
        fast.learn_many(values)
        reference.learn_many(values)
    fast_state, reference_state = fast.state_dict(), reference.state_dict()
    assert _layout(_without_config(fast_state)) == _layout(_without_config(reference_state))

    fast.load_state_dict(reference_state)  # each continues the other's run
    reference.load_state_dict(fast_state)
    assert fast.learn_many(values).step == reference.learn_many(values).step == 21
    for learner in (fast, reference):
        assert float(learner.state_dict()["g_optimizer"]["state"][0]["step"]) == 21
