"""On CUDA: gumbel_softmax and the learner (skipped without a GPU)."""

import pytest
import torch

from gumbel_core import OnlineGAN, gumbel_max, gumbel_softmax, total_variation

pytestmark = pytest.mark.gpu


def cuda_gen(seed=0):
    return torch.Generator(device="cuda").manual_seed(seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("hard", [False, True])
def test_gumbel_softmax_on_cuda(dtype, hard):
    logits = torch.tensor([[1e4, -1e4, 0.0]] * 1024, device="cuda", dtype=dtype)
    x = logits.clone().requires_grad_(True)
    y = gumbel_softmax(x, tau=1e-3, hard=hard, generator=cuda_gen())
    assert y.device.type == "cuda" and y.dtype == dtype and torch.isfinite(y).all()
    y.float().sum().backward()
    assert torch.isfinite(x.grad).all()


def test_gumbel_max_on_cuda_follows_softmax():
    """Seed 0, 200k samples, chi-square at alpha = 1e-3 (3 degrees of freedom)."""
    logits = torch.tensor([0.5, -1.0, 1.5, 0.0], device="cuda")
    counts = torch.bincount(gumbel_max(logits, 200_000, cuda_gen()), minlength=4).double().cpu()
    expected = logits.double().softmax(-1).cpu() * 200_000
    assert float(((counts - expected) ** 2 / expected).sum()) < 16.27


def test_learner_on_cuda_converges_and_restores_identically():
    truth = torch.tensor([0.0, 0.0, 0.1, 0.3, 0.6])
    stream = torch.Generator().manual_seed(0)
    learner = OnlineGAN(5, seed=0, device="cuda")
    data = [torch.multinomial(truth, 256, True, generator=stream) for _ in range(1200)]
    for b in data[:1000]:
        learner.learn_many(b)
    restored = OnlineGAN(5, seed=1, device="cuda")
    restored.load_state_dict(learner.state_dict())
    for b in data[1000:]:
        assert learner.learn_many(b) == restored.learn_many(b)
    assert learner.gan.generator.logits.device.type == "cuda"
    assert torch.equal(learner.estimate(), restored.estimate())
    assert total_variation(learner.estimate(), truth) <= 0.02


def test_learner_accepts_values_on_cuda():
    learner = OnlineGAN(5, seed=0, device="cuda")
    values = torch.randint(0, 5, (4096,), device="cuda")
    stats = learner.learn_many(values)
    assert stats.batch_size == 4096 and learner.baseline.samples_seen == 4096
