"""``learn``: OnlineGAN samples/s on the CPU against a plain eager PyTorch loop of the same GAN.

The reference is what one writes from the original post: K logits, a logistic-regression
discriminator on one-hot vectors, ``F.gumbel_softmax(hard=True)`` samples, BCE losses, Adam,
one D step and one G step per batch, autograd for everything.

Equal work: OnlineGAN draws as many fake samples as the batch has values, up to
``max_fake_batch_size`` (8,192). At larger batches the reference draws the same capped number
of fakes, so both rows compare the same work; the ``..._uncapped`` rows compare against the
reference drawing one fake per value, which is not equal work, and say so.

OnlineGAN runs with ``replay_steps=0``: the default learner trains 100 more steps per step on
a replay buffer until its first 10,000 values are in (and after a detected change), a one-off
cost (1.4 s on the CPU at K=5, docs/learner.md) that the reference has no counterpart for.
This bench times the steady-state step, the same work on both sides.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from services.bench.results import BenchResult

__all__ = ["EagerReferenceGAN", "run_learn_bench"]

COMMAND = "gumbel-stream bench learn"


class EagerReferenceGAN:
    """The straightforward eager implementation, used only as the benchmark's baseline."""

    def __init__(
        self,
        num_categories: int,
        seed: int = 0,
        lr: float = 0.05,
        tau: float = 1.0,
        max_fakes: int | None = None,
    ):
        gen = torch.Generator().manual_seed(seed)
        self.k = num_categories
        self.tau = tau
        self.max_fakes = max_fakes  # None: one fake sample per real value
        self.logits = torch.zeros(num_categories, requires_grad=True)
        self.disc = torch.nn.Linear(num_categories, 1)
        with torch.no_grad():
            self.disc.weight.normal_(0, 0.01, generator=gen)
            self.disc.bias.zero_()
        self.g_opt = torch.optim.Adam([self.logits], lr=lr)
        self.d_opt = torch.optim.Adam(self.disc.parameters(), lr=lr)

    def learn_many(self, values: torch.Tensor) -> None:
        batch = values.shape[0]
        n_fake = batch if self.max_fakes is None else min(batch, self.max_fakes)
        real = F.one_hot(values, self.k).float()  # (B, K)
        fake = F.gumbel_softmax(self.logits.expand(n_fake, self.k), tau=self.tau, hard=True)
        # Discriminator step.
        self.d_opt.zero_grad()
        d_loss = F.binary_cross_entropy_with_logits(
            self.disc(real), torch.ones(batch, 1)
        ) + F.binary_cross_entropy_with_logits(self.disc(fake.detach()), torch.zeros(n_fake, 1))
        d_loss.backward()
        self.d_opt.step()
        # Generator step (non-saturating loss).
        self.g_opt.zero_grad()
        g_loss = F.binary_cross_entropy_with_logits(self.disc(fake), torch.ones(n_fake, 1))
        g_loss.backward()
        self.g_opt.step()

    def estimate(self) -> torch.Tensor:
        return torch.softmax(self.logits.detach(), dim=0)


def _samples_per_second(
    learn: Callable[[torch.Tensor], object], batches: list[torch.Tensor]
) -> float:
    learn(batches[0])  # warm-up: first-call allocations
    start = time.perf_counter()
    for batch in batches:
        learn(batch)
    elapsed = time.perf_counter() - start
    return sum(b.shape[0] for b in batches) / elapsed


def run_learn_bench(
    batch_sizes: tuple[int, ...] = (64, 256, 1024, 4096, 16384, 65536),
    samples_per_run: int = 400_000,
    repeats: int = 3,
    num_categories: int = 5,
) -> list[BenchResult]:
    """Samples/s of OnlineGAN vs the eager reference at each batch size, alternating runs.

    Above the fake-sample cap there are two rows: equal work (the reference's fakes capped
    too) and ``learn_b<N>_uncapped`` (one fake per value in the reference: not equal work)."""
    from gumbel_core import GANConfig, OnlineGAN

    cap = GANConfig().max_fake_batch_size

    torch.set_num_threads(1)
    probs = torch.tensor([0.0, 0.0, 0.1, 0.3, 0.6])[:num_categories]
    probs = (
        probs / probs.sum()
        if probs.sum() > 0
        else torch.full((num_categories,), 1 / num_categories)
    )
    gen = torch.Generator().manual_seed(0)
    results = []
    for batch_size in batch_sizes:
        steps = max(8, samples_per_run // batch_size)
        batches = [torch.multinomial(probs, batch_size, True, generator=gen) for _ in range(steps)]
        capped = batch_size > cap
        references = {"": cap} if not capped else {"": cap, "_uncapped": None}
        ours: list[float] = []
        refs: dict[str, list[float]] = {suffix: [] for suffix in references}
        for _ in range(repeats):  # A B A B: a drifting machine affects both alike
            ours_gan = OnlineGAN(num_categories, seed=0, replay_steps=0)
            ours.append(_samples_per_second(ours_gan.learn_many, batches))
            for suffix, max_fakes in references.items():
                reference = EagerReferenceGAN(num_categories, max_fakes=max_fakes)
                refs[suffix].append(_samples_per_second(reference.learn_many, batches))
        name = "learn" if batch_size == 1024 else f"learn_b{batch_size}"
        for suffix, max_fakes in references.items():
            if not capped:
                work = "equal work"
            elif max_fakes is None:
                work = (
                    f"NOT equal work: ours draws {cap:,} fake samples per step, the reference "
                    f"one per value ({batch_size:,})"
                )
            else:
                work = f"equal work: both draw {cap:,} fake samples per step (our cap)"
            results.append(
                BenchResult(
                    name=name + suffix,
                    value=statistics.median(ours),
                    baseline=statistics.median(refs[suffix]),
                    unit="samples/s",
                    command=COMMAND,
                    detail=(
                        f"batch {batch_size}, K={num_categories}, 1 CPU thread, median of "
                        f"{repeats}; {work}; replay off (steady-state steps)"
                    ),
                )
            )
    return results
