"""OnlineGAN: the step, validation, reproducibility, checkpoints, weights, the average."""

import dataclasses
import pickle

import pytest
import torch

from gumbel_core import (
    ESTIMATORS,
    CountingEstimator,
    OnlineGAN,
    StepStats,
    total_variation,
)

TRUTH = torch.tensor([0.0, 0.0, 0.1, 0.3, 0.6])


def batches(n, size=256, seed=0, probs=TRUTH):
    gen = torch.Generator().manual_seed(seed)
    return [torch.multinomial(probs, size, True, generator=gen) for _ in range(n)]


def test_learn_many_returns_step_stats():
    learner = OnlineGAN(5, seed=0)
    stats = learner.learn_many(batches(1)[0])
    assert isinstance(stats, StepStats)
    assert (stats.step, stats.samples_seen, stats.batch_size) == (1, 256, 256)
    # The step used the schedule's hot start; the learner now reports the next step's value.
    assert stats.temperature == 2.0 and learner.temperature < stats.temperature
    assert stats.generator_loss > 0 and stats.discriminator_loss > 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.step = 3  # type: ignore[misc]


def test_estimate_is_a_distribution_and_the_baseline_counts_the_same_values():
    learner = OnlineGAN(5, seed=0)
    data = batches(5)
    for b in data:
        learner.learn_many(b)
    est = learner.estimate()
    assert est.shape == (5,) and abs(est.sum().item() - 1) < 1e-6 and (est >= 0).all()
    assert isinstance(learner.baseline, CountingEstimator)
    expected = torch.bincount(torch.cat(data), minlength=5).double()
    assert torch.equal(learner.baseline.counts, expected)
    assert learner.samples_seen == 5 * 256


@pytest.mark.parametrize(
    "values, match",
    [
        (torch.tensor([0, 5]), r"\[0, 5\)"),
        (torch.tensor([-1, 0]), r"\[0, 5\)"),
        (torch.tensor([0.0, 1.0]), "integer"),
        (torch.tensor([[0, 1]]), "1-D"),
        (torch.tensor([], dtype=torch.long), "empty"),
        ([1, 2], "LongTensor"),
    ],
)
def test_bad_values_raise_and_change_nothing(values, match):
    learner = OnlineGAN(5, seed=0)
    before = learner.state_dict()
    with pytest.raises(ValueError, match=match):
        learner.learn_many(values)
    assert learner.step == 0 and learner.samples_seen == 0
    assert torch.equal(learner.state_dict()["generator"]["logits"], before["generator"]["logits"])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_categories": 1},
        {"num_categories": 5, "estimator": "nope"},
        {"num_categories": 5, "bogus_option": 1},
        {"num_categories": 5, "generator_lr": 0.0},
        {"num_categories": 5, "drift_ema_fraction": 0.0},
        {"num_categories": 5, "drift_ema_fraction": 1.5},
        {"num_categories": 5, "moving_ema_fraction": 0.0},
        {"num_categories": 5, "discriminator": "cnn"},
        {
            "num_categories": 5,
            "estimator": "reinmax",
            "schedule": "constant",
            "schedule_options": {"tau": 0.5},
        },
    ],
)
def test_bad_configuration_raises(kwargs):
    with pytest.raises(ValueError):
        OnlineGAN(**kwargs)


def test_inputs_not_mutated():
    learner = OnlineGAN(5, seed=0)
    values = batches(1)[0]
    before = values.clone()
    learner.learn_many(values)
    assert torch.equal(values, before)


@pytest.mark.parametrize("estimator", list(ESTIMATORS))
def test_same_seed_same_result(estimator):
    runs = []
    for _ in range(2):
        learner = OnlineGAN(5, estimator, seed=3)
        for b in batches(20):
            learner.learn_many(b)
        runs.append(learner.estimate())
    assert torch.equal(runs[0], runs[1])


def test_different_seeds_differ():
    a, b = OnlineGAN(5, seed=0), OnlineGAN(5, seed=1)
    for x in batches(5):
        a.learn_many(x)
        b.learn_many(x)
    assert not torch.equal(a.estimate(), b.estimate())


@pytest.mark.parametrize("estimator", list(ESTIMATORS))
@pytest.mark.parametrize("discriminator", ["logistic", "mlp"])
def test_state_dict_round_trip_continues_bit_identically(estimator, discriminator):
    data = batches(30)
    reference = OnlineGAN(5, estimator, seed=0, discriminator=discriminator)
    for b in data[:15]:
        reference.learn_many(b)
    state = reference.state_dict()
    restored = OnlineGAN(5, estimator, seed=99, discriminator=discriminator)  # other seed
    restored.load_state_dict(state)
    for b in data[15:]:
        s1, s2 = reference.learn_many(b), restored.learn_many(b)
        assert s1 == s2
    assert torch.equal(reference.estimate(), restored.estimate())
    assert torch.equal(reference.baseline.counts, restored.baseline.counts)
    assert reference.temperature == restored.temperature


def test_state_dict_survives_torch_save(tmp_path):
    learner = OnlineGAN(5, "soft", seed=0)
    for b in batches(5):
        learner.learn_many(b)
    torch.save(learner.state_dict(), tmp_path / "ckpt.pt")
    restored = OnlineGAN(5, "soft", seed=0)
    restored.load_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=False))
    nxt = batches(1, seed=7)[0]
    assert learner.learn_many(nxt) == restored.learn_many(nxt)


def test_state_dict_is_a_copy():
    learner = OnlineGAN(5, seed=0)
    state = learner.state_dict()
    learner.learn_many(batches(1)[0])
    assert state["step"] == 0 and not torch.equal(
        state["generator"]["logits"], learner.state_dict()["generator"]["logits"]
    )


def test_loading_a_mismatched_state_raises():
    with pytest.raises(ValueError, match="num_categories"):
        OnlineGAN(4).load_state_dict(OnlineGAN(5).state_dict())
    with pytest.raises(ValueError, match="estimator"):
        OnlineGAN(5, "st").load_state_dict(OnlineGAN(5, "gst").state_dict())


def test_pickling_round_trip_continues_identically():
    learner = OnlineGAN(5, "rao", seed=0, generator_lr=0.01)
    for b in batches(5):
        learner.learn_many(b)
    clone = pickle.loads(pickle.dumps(learner))
    assert clone.config == learner.config
    nxt = batches(3, seed=5)
    for b in nxt:
        assert clone.learn_many(b) == learner.learn_many(b)


def test_weights_round_trip_between_learners():
    """get_weights / set_weights (the CUDA-graph warm-up's snapshot) copy the parameters."""
    a, b = OnlineGAN(5, seed=0), OnlineGAN(5, seed=1)
    for x, y in zip(batches(10, seed=1), batches(10, seed=2), strict=True):
        a.learn_many(x)
        b.learn_many(y)
    b.set_weights(a.get_weights())
    assert torch.equal(a.estimate(), b.estimate())
    assert torch.equal(a.generator_probabilities(), b.generator_probabilities())


def test_reheat_restarts_the_schedule():
    learner = OnlineGAN(
        5,
        "soft",
        seed=0,
        schedule="exponential",
        schedule_options={"initial": 2.0, "floor": 0.5, "rate": 0.1, "every": 1},
    )
    for b in batches(10):
        learner.learn_many(b)
    assert learner.temperature < 2.0
    learner.reheat()
    assert learner.temperature == 2.0


@pytest.mark.parametrize("size", [1, 64, 65536])
def test_any_batch_size(size):
    learner = OnlineGAN(5, seed=0)
    stats = learner.learn_many(batches(1, size=size)[0])
    assert stats.batch_size == size and torch.isfinite(learner.estimate()).all()


def test_cuda_request_without_cuda_raises():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ValueError, match="CUDA"):
        OnlineGAN(5, device="cuda")


def test_samples_per_step_splits_a_big_batch_into_steps():
    data = batches(8, size=256, seed=4)
    one_by_one = OnlineGAN(5, seed=0, samples_per_step=256)
    for b in data:
        one_by_one.learn_many(b)
    at_once = OnlineGAN(5, seed=0, samples_per_step=256)
    stats = at_once.learn_many(torch.cat(data))
    assert stats.step == 8 and stats.batch_size == 8 * 256 and stats.samples_seen == 8 * 256
    assert torch.equal(at_once.estimate(), one_by_one.estimate())
    assert torch.equal(at_once.baseline.counts, one_by_one.baseline.counts)


def test_without_samples_per_step_a_batch_is_one_step():
    learner = OnlineGAN(5, seed=0)
    assert learner.learn_many(batches(1, size=4096)[0]).step == 1


def test_a_drift_restarts_the_averaging_and_the_estimate_follows():
    """Seed 0: 300 steps of TRUTH, then the mixed distribution; the switch is detected at
    once and the reported estimate follows it far sooner than the 500-step average would.

    Detection reads only the data's counts (its false-alarm rate: tests/unit/core/
    test_drift.py). The TV after 150 steps depends on the GAN's trajectory (and so on the
    CPU's rounding): over learner seeds 0-19 it is 0.003-0.010, against the bound 0.05."""
    after = torch.tensor([0.1, 0.2, 0.3, 0.25, 0.15])
    learner = OnlineGAN(5, seed=0)
    for b in batches(300, seed=1):
        learner.learn_many(b)
    assert learner.drift_detections == 0  # no false alarm on a stationary stream
    for b in batches(5, seed=2, probs=after):
        learner.learn_many(b)
    assert learner.drift_detections == 1
    assert learner.temperature > 1.9  # re-heated
    for b in batches(150, seed=3, probs=after):
        learner.learn_many(b)
    assert learner.drift_detections == 1
    assert float(total_variation(learner.estimate(), after)) < 0.05


def test_drift_detection_can_be_switched_off():
    learner = OnlineGAN(5, seed=0, drift_z=None)
    for b in batches(100, seed=1) + batches(50, seed=2, probs=torch.tensor([1.0, 0, 0, 0, 0])):
        learner.learn_many(b)
    assert learner.detector is None and learner.drift_detections == 0
    assert learner.state_dict()["drift_detections"] == 0


def test_a_state_saved_with_tensor_learning_rates_loads_on_the_cpu():
    # A graphed learner keeps its learning rates in tensors and its Adam capturable; a
    # checkpoint of it must still load into (and train) an eager CPU learner.
    source = OnlineGAN(5, seed=0, closed_form=False)
    source.learn_many(batches(1)[0])
    source.gan.use_tensor_learning_rates()
    for group in source.gan.g_optimizer.param_groups:
        group["capturable"] = True
    target = OnlineGAN(5, seed=1, closed_form=False)
    target.load_state_dict(source.state_dict())
    group = target.gan.g_optimizer.param_groups[0]
    assert isinstance(group["lr"], float) and not group["capturable"]
    assert target.learn_many(batches(1, seed=5)[0]).step == 2


def test_the_drift_response_boosts_then_returns_to_the_configured_rates():
    learner = OnlineGAN(5, seed=0, boost_steps=10, generator_lr_boost=4.0,
                        discriminator_lr_boost=4.0)  # the defaults are 1: no boost
    switched = torch.tensor([0.6, 0.0, 0.1, 0.3, 0.0])
    for b in batches(100, seed=1) + batches(5, seed=2, probs=switched):
        learner.learn_many(b)
    assert learner.drift_detections == 1
    rates = []
    for b in batches(12, seed=3, probs=switched):
        learner.learn_many(b)
        rates.append(learner.gan.g_optimizer.param_groups[0]["lr"])
    base = learner.gan_config.generator_lr
    assert rates[0] > 2 * base and rates == sorted(rates, reverse=True)
    assert rates[-1] == base


def test_a_fresh_learner_starts_boosted_unless_told_not_to():
    """A start is a switch from the uniform: the learning rates start at the boost and fall
    back to the configured ones over boost_steps, as after a detected drift."""
    learner = OnlineGAN(5, seed=0, boost_steps=10)
    base = learner.gan_config.generator_lr
    rates = []
    for b in batches(12, seed=1):
        learner.learn_many(b)
        rates.append(learner.gan.g_optimizer.param_groups[0]["lr"])
    assert rates[0] == pytest.approx(learner.config.generator_lr_boost * base)
    assert rates == sorted(rates, reverse=True) and rates[-1] == base
    plain = OnlineGAN(5, seed=0, boost_at_start=False)
    plain.learn_many(batches(1, seed=1)[0])
    assert plain.gan.g_optimizer.param_groups[0]["lr"] == base


def test_after_a_drift_the_average_covers_moving_ema_fraction_of_the_steps_since():
    """The start averages over ema_fraction of the steps so far; after a drift detected before
    the start had settled, over moving_ema_fraction of the steps since it (a stream that moved
    may still be moving)."""
    learner = OnlineGAN(5, seed=0, ema_fraction=0.4, moving_ema_fraction=0.1)
    for b in batches(100, seed=1):
        learner.learn_many(b)
    assert learner.begin_step().average_weight == pytest.approx(1 / (0.4 * 101))
    switched = torch.tensor([0.6, 0.0, 0.1, 0.3, 0.0])
    for b in batches(5, seed=2, probs=switched):
        learner.learn_many(b)
    assert learner.drift_detections == 1
    for b in batches(49, seed=3, probs=switched):
        learner.learn_many(b)
    since = learner.step - learner.state_dict()["response"]["average_since"]
    assert learner.begin_step().average_weight == pytest.approx(1 / (0.1 * (since + 1)))


def test_a_version_1_state_loads_and_continues():
    # The layout before the detector had its own module: a "drift" dict, no response.
    learner = OnlineGAN(5, seed=0)
    for b in batches(40, seed=1):
        learner.learn_many(b)
    state = learner.state_dict()
    detector = state.pop("detector")
    del state["response"], state["drift_detections"]
    state["version"] = 1
    state["drift"] = {"recent": detector["recent"], "long": detector["long"], "ema_since": 0}
    restored = OnlineGAN(5, seed=3)
    restored.load_state_dict(state)
    assert restored.step == 40 and restored.drift_detections == 0
    assert torch.equal(restored.estimate(), learner.estimate())
    assert restored.learn_many(batches(1, seed=2)[0]).step == 41


def test_learn_counts_takes_the_same_step_as_learn_many_from_the_same_state():
    """One step each from identical states (not a long run: the GAN is chaotic): the counts
    of a batch give the step its values give."""
    values = torch.multinomial(torch.tensor([0.0, 0.2, 0.3, 0.5]), 256, True,
                               generator=torch.Generator().manual_seed(4))
    by_values, by_counts = OnlineGAN(4, seed=2), OnlineGAN(4, seed=2)
    a = by_values.learn_many(values)
    b = by_counts.learn_counts(torch.bincount(values, minlength=4).unsqueeze(0))
    assert (a.step, a.samples_seen) == (b.step, b.samples_seen) == (1, 256)
    torch.testing.assert_close(by_values.estimate(), by_counts.estimate(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(by_values.baseline.counts, by_counts.baseline.counts)


def test_learn_counts_steps_once_per_row_and_skips_empty_rows():
    learner = OnlineGAN(3, seed=0)
    stats = learner.learn_counts(torch.tensor([[2, 0, 1], [0, 0, 0], [0, 5, 0]]))
    assert (stats.step, stats.samples_seen) == (2, 8)
    assert learner.baseline.counts.tolist() == [2.0, 5.0, 1.0]


@pytest.mark.parametrize(("counts", "match"), [
    (torch.tensor([1, 2, 3]), r"shape \(n, 3\)"),
    (torch.tensor([[1, 2]]), r"shape \(n, 3\)"),
    (torch.tensor([[1, -1, 0]]), ">= 0"),
    (torch.tensor([[0.5, 1.0, 0.0]]), "whole numbers"),
    (torch.tensor([[float("nan"), 1.0, 0.0]]), "finite"),
    (torch.zeros(2, 3, dtype=torch.int64), "count nothing"),
])
def test_bad_counts_raise_and_change_nothing(counts, match):
    learner = OnlineGAN(3, seed=0)
    before = learner.state_dict()
    with pytest.raises(ValueError, match=match):
        learner.learn_counts(counts)
    assert learner.step == 0 and learner.samples_seen == 0
    torch.testing.assert_close(learner.state_dict()["generator"], before["generator"])


def test_count_counts_counts_without_a_step():
    learner = OnlineGAN(3, seed=0)
    learner.count_counts(torch.tensor([[1, 0, 2], [0, 3, 0]]))
    assert (learner.step, learner.samples_seen) == (0, 6)
    assert learner.baseline.counts.tolist() == [1.0, 3.0, 2.0]


@pytest.mark.parametrize(("estimator", "options"), [
    ("st", {}), ("soft", {}), ("st", {"replay_steps": 5, "replay_records": 2000})])
def test_the_estimate_is_the_gans_and_never_the_counts(estimator, options):
    """A GAN whose training step changes nothing (generator and discriminator frozen) reports
    the same estimate whatever it is fed: the estimate reads the generator only, never the
    counting baseline (which differs completely here, and the drift detector fires on it);
    the replay response, which trains on counts of recent records, included."""
    estimates = []
    for truth in ([1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.1, 0.9]):
        learner = OnlineGAN(4, estimator=estimator, seed=3, **options)
        learner.gan.train_step = lambda *args, **kwargs: (torch.zeros(()), torch.zeros(()))
        gen = torch.Generator().manual_seed(0)
        for step in range(400):
            batch = torch.multinomial(torch.tensor(truth if step < 200 else truth[::-1]), 256,
                                      True, generator=gen)
            learner.learn_many(batch)
        assert learner.baseline.estimate()[0 if truth[0] else 3] > 0.4  # the counts differ
        estimates.append(learner.estimate())
    torch.testing.assert_close(estimates[0], estimates[1], rtol=0, atol=0)
    torch.testing.assert_close(estimates[0], OnlineGAN(4, estimator=estimator, seed=3, **options)
                               .generator_probabilities(), rtol=1e-6, atol=1e-7)
