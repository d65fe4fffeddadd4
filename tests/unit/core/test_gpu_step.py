"""``GraphedOnlineGAN``: the CUDA-graph training step.

Without a GPU the same step body runs eagerly (``capture=False``) with the PyTorch sampler:
that checks it is the learner's own step (bookkeeping, ``samples_per_step``, drift detection
and response included). The capture itself, the fused
sampler inside it and the device-side counting are ``gpu``-marked (skipped without CUDA).
"""

from __future__ import annotations

import os

import pytest
import torch

from gumbel_core import OnlineGAN, total_variation
from gumbel_core.cuda_graphs import GraphedOnlineGAN

TRUTH = torch.tensor([0.0, 0.0, 0.1, 0.3, 0.6])


def stream(seed: int, batch: int, steps: int, device: str = "cpu") -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.multinomial(TRUTH, batch, True, generator=gen).to(device) for _ in range(steps)]


def assert_same_learner(a: OnlineGAN, b: OnlineGAN) -> None:
    # A few steps from the same seed on the same machine: only rounding may differ (the
    # graph's temperature is a tensor, learn_many's a number). Here they agree bit for bit.
    torch.testing.assert_close(a.gan.generator.logits, b.gan.generator.logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(a.estimate(), b.estimate(), rtol=0, atol=1e-5)
    assert (a.step, a.samples_seen, a.temperature) == (b.step, b.samples_seen, b.temperature)
    assert torch.equal(a.baseline.counts, b.baseline.counts)


@pytest.mark.parametrize("estimator", ["st", "soft"])
def test_the_uncaptured_graph_step_is_the_learners_step(estimator):
    # One step definition: the graph's step (run eagerly) and learn_many agree after 5 steps
    # from the same seed (st takes the closed form, soft the autograd path).
    batches = stream(seed=1, batch=256, steps=5)
    reference = OnlineGAN(num_categories=5, estimator=estimator, seed=0)
    graphed = GraphedOnlineGAN(OnlineGAN(5, estimator, seed=0), 256, capture=False)
    for batch in batches:
        reference.learn_many(batch)
        graphed.learn_many(batch)
    assert_same_learner(graphed.learner, reference)


def test_samples_per_step_is_honoured():
    batches = stream(seed=2, batch=256, steps=2)
    reference = OnlineGAN(5, seed=0, samples_per_step=64)
    graphed = GraphedOnlineGAN(OnlineGAN(5, seed=0, samples_per_step=64), 256, capture=False)
    assert graphed.step_size == 64
    for batch in batches:
        reference.learn_many(batch)
        stats = graphed.learn_many(batch)
    assert stats.step == 8 and stats.batch_size == 256
    assert_same_learner(graphed.learner, reference)


def test_drift_detection_and_response_run_in_the_graphed_step():
    after = torch.tensor([0.6, 0.0, 0.1, 0.3, 0.0])
    learner = OnlineGAN(5, seed=0, generator_lr_boost=4.0, discriminator_lr_boost=4.0)
    graphed = GraphedOnlineGAN(learner, 256, capture=False)
    gen = torch.Generator().manual_seed(3)
    for probs, steps in ((TRUTH, 200), (after, 5)):
        for _ in range(steps):
            graphed.learn_many(torch.multinomial(probs, 256, True, generator=gen))
    learner = graphed.learner
    assert learner.drift_detections == 1
    assert learner.temperature > 1.9  # re-heated
    assert learner.gan.g_optimizer.param_groups[0]["lr"] > learner.gan_config.generator_lr


def test_bookkeeping_matches_online_gan():
    learner = OnlineGAN(num_categories=5, seed=0)
    graphed = GraphedOnlineGAN(learner, 64, capture=False)
    batches = stream(seed=2, batch=64, steps=5)
    taus = []
    for batch in batches:
        taus.append(learner.temperature)
        stats = graphed.learn_many(batch)
        assert stats.temperature == taus[-1]
    assert learner.step == 5 and learner.samples_seen == 5 * 64
    counts = torch.bincount(torch.cat(batches), minlength=5).double()
    assert torch.equal(learner.baseline.counts, counts)
    g_loss, d_loss = graphed.losses()
    assert 0 < d_loss < 2 and g_loss > 0
    assert torch.isclose(learner.estimate().sum(), torch.tensor(1.0))


def test_a_remainder_takes_the_same_step_uncaptured():
    learner = OnlineGAN(num_categories=5, seed=0)
    graphed = GraphedOnlineGAN(learner, 64, capture=False)
    values = stream(seed=3, batch=74, steps=1)[0]
    stats = graphed.learn_many(values)  # one 64-value step, then one of 10
    assert (stats.batch_size, stats.step, learner.samples_seen) == (74, 2, 74)
    assert torch.equal(learner.baseline.counts, torch.bincount(values, minlength=5).double())


def test_a_failing_fused_kernel_falls_back_with_one_warning(monkeypatch):
    # A kernel that fails to compile or launch must not fail a training step.
    pytest.importorskip("triton")
    import gumbel_core.kernels as kernels
    import gumbel_core.kernels.fused as fused

    def broken(*args, **kwargs):
        raise RuntimeError("PTX compilation failed")

    monkeypatch.setattr(fused, "fused_gumbel_softmax", broken)
    monkeypatch.setattr(kernels, "_FAILURE", [])
    graphed = GraphedOnlineGAN(OnlineGAN(5, seed=0), 64, capture=False, fused=True)
    with pytest.warns(RuntimeWarning, match="PTX compilation failed") as record:
        for batch in stream(seed=4, batch=64, steps=3):
            graphed.learn_many(batch)
    assert len(record) == 1 and not graphed.fused and graphed.learner.step == 3
    assert not kernels.fused_enabled()  # and nothing else in the process tries it again


def test_the_fused_sampler_in_the_step_learns():
    # Under Triton's interpreter (tests on a machine without CUDA) the fused kernel runs on
    # the CPU: the graph's step with it learns like the PyTorch sampler. Seed 0; over learner
    # seeds 0-9 the TV after 150 steps is 0.063-0.069, against the bound 0.1. No replay: its
    # steps are the learner's own, unfused, and would hide what the fused sampler learns.
    pytest.importorskip("triton")
    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("needs CUDA or Triton's interpreter")
    graphed = GraphedOnlineGAN(OnlineGAN(5, "soft", seed=0, replay_steps=0), 256, capture=False,
                               fused=True)
    for batch in stream(seed=5, batch=256, steps=150):
        graphed.learn_many(batch)
    assert graphed.fused
    assert total_variation(graphed.learner.estimate(), TRUTH).item() < 0.1


def test_the_fused_path_is_opt_in(monkeypatch):
    from gumbel_core.kernels import fused_enabled

    monkeypatch.delenv("GUMBEL_FUSED", raising=False)
    assert not fused_enabled()
    monkeypatch.setenv("GUMBEL_FUSED", "1")
    assert fused_enabled()


def test_rejects_bad_values_estimators_and_devices():
    learner = OnlineGAN(num_categories=5, seed=0)
    graphed = GraphedOnlineGAN(learner, 4, capture=False)
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        graphed.learn_many(torch.tensor([0, 1, 5, 2]))
    with pytest.raises(ValueError, match="estimators"):
        GraphedOnlineGAN(OnlineGAN(num_categories=5, estimator="rao", seed=0), 4, capture=False)
    with pytest.raises(ValueError, match="CUDA"):
        GraphedOnlineGAN(learner, 4, capture=True)
    with pytest.raises(ValueError, match="batch_size"):
        GraphedOnlineGAN(learner, 0, capture=False)


# -- on a GPU ------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("fused", [False, True])
def test_graph_replays_the_eager_step(fused):
    # Same seed: capture + replay (after a warm-up that must leave no trace) tracks the
    # uncaptured step closely.
    if fused:
        pytest.importorskip("triton")
    batches = stream(seed=4, batch=1024, steps=20, device="cuda")
    plain = GraphedOnlineGAN(OnlineGAN(5, seed=0, device="cuda"), 1024, fused=fused, capture=False)
    graphed = GraphedOnlineGAN(OnlineGAN(5, seed=0, device="cuda"), 1024, fused=fused)
    for batch in batches:
        plain.learn_many(batch)
        graphed.learn_many(batch)
    torch.testing.assert_close(
        graphed.learner.gan.generator.logits,
        plain.learner.gan.generator.logits,
        rtol=1e-4,
        atol=1e-5,
    )
    torch.testing.assert_close(
        graphed.learner.estimate(), plain.learner.estimate(), rtol=1e-4, atol=1e-5
    )


@pytest.mark.gpu
def test_graph_learns_at_batch_1024_as_well_as_eager():
    batches = stream(seed=5, batch=1024, steps=300, device="cuda")
    eager = OnlineGAN(5, seed=0, device="cuda")
    graphed = GraphedOnlineGAN(OnlineGAN(5, seed=0, device="cuda"), 1024)
    for batch in batches:
        eager.learn_many(batch)
        graphed.learn_many(batch)
    graphed.sync()
    tv_eager = total_variation(eager.estimate(), TRUTH).item()
    tv = total_variation(graphed.learner.estimate(), TRUTH).item()
    assert tv < max(0.03, 1.5 * tv_eager), (tv, tv_eager)
    counts = torch.bincount(torch.cat(batches).cpu(), minlength=5).double()
    assert torch.equal(graphed.learner.baseline.counts.cpu(), counts)


@pytest.mark.gpu
def test_device_batches_report_invalid_ids_at_sync():
    graphed = GraphedOnlineGAN(OnlineGAN(5, seed=0, device="cuda"), 4)
    graphed.learn_many(torch.tensor([0, 1, 7, 2], device="cuda"))
    with pytest.raises(ValueError, match="outside"):
        graphed.sync()
    assert graphed.learner.baseline.counts.sum().item() == 3


@pytest.mark.gpu
@pytest.mark.parametrize("k", [1024, 32768])
def test_large_k_graph_step_runs(k):
    learner = OnlineGAN(k, seed=0, device="cuda")
    graphed = GraphedOnlineGAN(learner, 1024)
    values = torch.randint(0, k, (1024,), device="cuda")
    for _ in range(3):
        graphed.learn_many(values)
    g_loss, d_loss = graphed.losses()
    assert torch.isfinite(torch.tensor([g_loss, d_loss])).all()


# -- the benchmark -------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA path")
def test_bench_gpu_without_cuda_measures_nothing(caplog):
    from services.bench.gpu import run_gpu_bench

    assert run_gpu_bench(quick=True) == []
    assert "no CUDA" in caplog.text


@pytest.mark.gpu
def test_bench_gpu_quick_reports_each_figure_against_its_baseline():
    from services.bench.gpu import run_gpu_bench

    results = run_gpu_bench(quick=True)
    names = {r["name"] for r in results}
    assert {"gpu_step", "gpu_step_1m"} <= names
    for r in results:
        assert r["value"] > 0 and r["baseline"] > 0
        assert r["ratio"] == pytest.approx(r["value"] / r["baseline"])
        assert r["device"] == torch.cuda.get_device_name()
