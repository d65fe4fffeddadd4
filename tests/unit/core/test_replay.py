"""The replay option of ``OnlineGAN``: extra D and G steps on the records since a detection."""

from __future__ import annotations

import pytest
import torch

from gumbel_core import OnlineGAN, total_variation

K = 5
BEFORE = torch.tensor([0.0, 0.0, 0.1, 0.3, 0.6])
AFTER = torch.tensor([0.6, 0.0, 0.1, 0.3, 0.0])  # zero -> largest, the bench's hardest row


def batches(probs: torch.Tensor, n: int, gen: torch.Generator) -> list[torch.Tensor]:
    return [torch.multinomial(probs, 256, True, generator=gen) for _ in range(n)]


@pytest.mark.parametrize(
    ("option", "value"),
    [("replay_steps", -1), ("replay_steps", True), ("replay_steps", 1.5), ("replay_records", 0)],
)
def test_bad_replay_settings_name_the_setting(option, value):
    with pytest.raises(ValueError, match=option):
        OnlineGAN(K, **{option: value})


def test_the_buffer_holds_only_records_since_the_detection_and_stops_when_full():
    gen = torch.Generator().manual_seed(0)
    learner = OnlineGAN(K, seed=0, replay_steps=1, replay_records=2_000)
    for batch in batches(BEFORE, 40, gen):  # 10,240 records: the start's replay has ended
        learner.learn_many(batch)
    assert not learner.state_dict()["response"]["replaying"]
    after = batches(AFTER, 4, gen)
    seen = 0
    for batch in after:
        learner.learn_many(batch)
        seen += 1
        if learner.drift_detections:
            break
    assert learner.drift_detections == 1
    response = learner.state_dict()["response"]
    assert response["replaying"]
    # the batch that fired the detector, nothing from before the switch
    assert torch.equal(response["replay"], torch.bincount(after[seen - 1], minlength=K).double())
    for batch in batches(AFTER, 8, gen):  # 8 x 256 more: past replay_records
        learner.learn_many(batch)
    response = learner.state_dict()["response"]
    assert not response["replaying"]
    assert response["replay"].sum() >= 2_000


def test_replay_follows_a_switch_in_fewer_records():
    """Seed 0, one run each: the effect is large (the bench: 256 records against 6,784)."""
    tvs = {}
    for replay_steps in (0, 100):
        gen = torch.Generator().manual_seed(1)
        learner = OnlineGAN(K, seed=0, replay_steps=replay_steps)
        for batch in batches(BEFORE, 400, gen):
            learner.learn_many(batch)
        for batch in batches(AFTER, 8, gen):  # 2,048 records after the switch
            learner.learn_many(batch)
        tvs[replay_steps] = float(total_variation(learner.estimate(), AFTER))
    assert tvs[100] < 0.05 < tvs[0]


def test_replay_is_on_by_default_and_replay_steps_0_switches_it_off():
    gen = torch.Generator().manual_seed(2)
    data = batches(BEFORE, 20, gen) + batches(AFTER, 10, gen)
    default, off = OnlineGAN(K, seed=3), OnlineGAN(K, seed=3, replay_steps=0)
    assert default.config.replay_steps == 100
    for batch in data:
        default.learn_many(batch)
        off.learn_many(batch)
    # Adam's step count: one per batch without the replay, 101 per batch while replaying
    steps = {name: int(learner.state_dict()["g_optimizer"]["state"][0]["step"])
             for name, learner in (("default", default), ("off", off))}
    assert steps["off"] == len(data)
    assert steps["default"] >= len(data) + 100 * 20  # the start: 5,120 records, all replayed
    assert not off.state_dict()["response"]["replaying"]
    assert int(off.state_dict()["response"]["replay"].sum()) == 0
