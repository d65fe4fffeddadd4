"""Settling: once a stream has held still for ``lr_decay_steps`` steps, the learning rates
fall as ``(lr_decay_steps / steps since) ** lr_decay_power`` down to ``lr_decay_floor``, and
the reported average goes back to ``ema_fraction``; a detected drift restarts both, its
average over ``drift_ema_fraction`` of the steps since, or ``moving_ema_fraction`` where the
stream had not settled since the drift before."""

from __future__ import annotations

import pytest
import torch

from gumbel_core import OnlineGAN

K = 5
BEFORE = torch.tensor([0.0, 0.0, 0.1, 0.3, 0.6])
AFTER = torch.tensor([0.6, 0.0, 0.1, 0.3, 0.0])


def batches(probs: torch.Tensor, n: int, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.multinomial(probs, 256, True, generator=gen) for _ in range(n)]


def rates(learner: OnlineGAN) -> tuple[float, float]:
    """The (generator, discriminator) learning rates as factors of the configured ones."""
    return (learner.gan.g_optimizer.param_groups[0]["lr"] / learner.gan_config.generator_lr,
            learner.gan.d_optimizer.param_groups[0]["lr"] / learner.gan_config.discriminator_lr)


@pytest.mark.parametrize(
    ("option", "value"),
    [("lr_decay_steps", 0), ("lr_decay_steps", True), ("lr_decay_steps", 1.5),
     ("lr_decay_power", 0.0), ("lr_decay_power", 1.5), ("lr_decay_floor", 0.0),
     ("lr_decay_floor", 2.0)],
)
def test_bad_settling_settings_name_the_setting(option, value):
    with pytest.raises(ValueError, match=option):
        OnlineGAN(K, **{option: value})


def test_the_rates_hold_then_fall_as_the_power_law_down_to_the_floor():
    learner = OnlineGAN(K, seed=0, replay_steps=0, lr_decay_steps=10, lr_decay_floor=0.4)
    assert learner.config.lr_decay_power == 0.5
    seen = []
    for batch in batches(BEFORE, 80, seed=1):
        learner.learn_many(batch)
        seen.append(rates(learner))  # the rates the step just taken used
    assert learner.drift_detections == 0
    # step s (0-based) ran with held = s steps since the start
    assert all(r == (1.0, 1.0) for r in seen[:11])
    assert seen[20] == pytest.approx(((10 / 20) ** 0.5,) * 2)
    assert seen[40] == pytest.approx((0.5, 0.5))
    assert seen[79] == pytest.approx((0.4, 0.4))  # (10/79)**0.5 = 0.36 is under the floor


def test_a_detected_drift_replays_at_full_rates_and_restarts_the_count():
    learner = OnlineGAN(K, seed=0, replay_steps=2, lr_decay_steps=10)
    for batch in batches(BEFORE, 100, seed=1):
        learner.learn_many(batch)
    assert rates(learner)[0] < 0.35
    after = batches(AFTER, 30, seed=2)
    fired = 0  # the index of the batch at which the detector fires
    while not learner.drift_detections:
        learner.learn_many(after[fired])
        fired += 1
    fired -= 1
    assert learner.drift_detections == 1
    # set at the detection, before its replay steps: the configured rates
    assert rates(learner) == (1.0, 1.0)
    for batch in after[fired + 1:fired + 10]:
        learner.learn_many(batch)
        assert rates(learner) == (1.0, 1.0)
    for batch in after[fired + 10:]:
        learner.learn_many(batch)
    assert learner.drift_detections == 1
    assert rates(learner)[0] < 1.0


def average_window(learner: OnlineGAN) -> float:
    """The reported average's window as a fraction of the steps since it (re)started."""
    since = learner.step - learner.state_dict()["response"]["average_since"]
    return 1 / (learner.begin_step().average_weight * (since + 1))


SWITCH = [(BEFORE, 100), (AFTER, 16)]  # one drift, after a still stretch
MOVING = [(BEFORE, 100), (AFTER, 20), (BEFORE, 30)]  # a second drift before settling


@pytest.mark.parametrize(
    ("stream", "lr_decay_steps", "detections", "fraction"),
    [(SWITCH, 20, 1, 0.5), (MOVING, 40, 2, 0.1)],
    ids=["a switch: drift_ema_fraction", "still moving: moving_ema_fraction"],
)
def test_after_a_drift_the_average_is_short_until_settled(
    stream, lr_decay_steps, detections, fraction
):
    """A drift after a still stretch averages over drift_ema_fraction of the steps since it,
    one before the stream had settled since the drift before over moving_ema_fraction; once
    the stream has held still for lr_decay_steps steps, over ema_fraction."""
    learner = OnlineGAN(K, seed=0, replay_steps=0, lr_decay_steps=lr_decay_steps,
                        ema_fraction=0.8, drift_ema_fraction=0.5, moving_ema_fraction=0.1)
    for seed, (probs, n) in enumerate(stream):
        for batch in batches(probs, n, seed=seed + 1):
            learner.learn_many(batch)
    assert learner.drift_detections == detections
    assert average_window(learner) == pytest.approx(fraction)
    for batch in batches(stream[-1][0], lr_decay_steps, seed=9):
        learner.learn_many(batch)
    assert learner.drift_detections == detections
    assert average_window(learner) == pytest.approx(0.8)


def test_the_moving_flag_survives_a_checkpoint():
    learner = OnlineGAN(K, seed=0, replay_steps=0, lr_decay_steps=40, moving_ema_fraction=0.1)
    stream = batches(BEFORE, 100, seed=1) + batches(AFTER, 20, seed=2) + batches(BEFORE, 30, 3)
    for batch in stream:
        learner.learn_many(batch)
    restored = OnlineGAN(K, seed=5, replay_steps=0, lr_decay_steps=40, moving_ema_fraction=0.1)
    restored.load_state_dict(learner.state_dict())
    assert average_window(restored) == pytest.approx(average_window(learner)) == pytest.approx(0.1)


def test_lr_decay_steps_none_keeps_the_configured_rates():
    learner = OnlineGAN(K, seed=0, replay_steps=0, lr_decay_steps=None)
    for batch in batches(BEFORE, 300, seed=1):
        learner.learn_many(batch)
    assert rates(learner) == (1.0, 1.0)
