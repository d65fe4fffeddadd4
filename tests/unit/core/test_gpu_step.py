"""``GraphedOnlineGAN``: the CUDA-graph training step.

Without a GPU the same step body runs eagerly (``capture=False``) with the PyTorch sampler:
that checks the step's arithmetic, bookkeeping and learning. The capture itself, the fused
sampler inside it and the device-side counting are ``gpu``-marked (skipped without CUDA).
"""

from __future__ import annotations

import pytest
import torch

from gumbel_core import OnlineGAN, total_variation
from gumbel_core.cuda_graphs import GraphedOnlineGAN

TRUTH = torch.tensor([0.0, 0.0, 0.1, 0.3, 0.6])


def stream(seed: int, batch: int, steps: int, device: str = "cpu") -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.multinomial(TRUTH, batch, True, generator=gen).to(device) for _ in range(steps)]


def test_eager_step_body_learns_the_distribution():
    # Same data, seed 0: the graph's step body run eagerly gets as close as OnlineGAN itself.
    # Its noise comes from another stream, so the two runs are compared only by a bound: over
    # learner seeds 0-19, tv is 0.031-0.047 and tv_ref 0.037-0.054, against a bound >= 0.08.
    batches = stream(seed=1, batch=256, steps=150)
    reference = OnlineGAN(num_categories=5, seed=0)
    graphed = GraphedOnlineGAN(OnlineGAN(num_categories=5, seed=0), 256, capture=False)
    for batch in batches:
        reference.learn_many(batch)
        graphed.learn_many(batch)
    tv_ref = total_variation(reference.estimate(), TRUTH).item()
    tv = total_variation(graphed.learner.estimate(), TRUTH).item()
    assert tv < max(0.08, 2 * tv_ref), (tv, tv_ref)


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


def test_other_batch_sizes_take_the_eager_path():
    learner = OnlineGAN(num_categories=5, seed=0)
    graphed = GraphedOnlineGAN(learner, 64, capture=False)
    stats = graphed.learn_many(stream(seed=3, batch=10, steps=1)[0])
    assert stats.batch_size == 10 and stats.generator_loss == stats.generator_loss  # not NaN


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
