"""``drift``: records until the estimate follows a switched distribution, vs forgetting counts.

The stream draws from the original post's distribution, then switches to another one; both
learners see the same batches. The figure is how many records after the switch each needs
before its estimate is within TV 0.05 of the new distribution. Fewer is better, so the
value is expressed as a speed, ``1e6 / records``, to keep "higher is better" for the ratio.
In the running service add at most one publish interval for the estimate to be published.
"""

from __future__ import annotations

import torch

from services.bench.results import BenchResult

__all__ = ["records_to_follow", "run_drift_bench"]

BEFORE = [0.0, 0.0, 0.1, 0.3, 0.6]
AFTER = [0.1, 0.2, 0.3, 0.25, 0.15]
TOLERANCE = 0.05


def records_to_follow(
    warmup_records: int,
    batch_size: int,
    decay: float,
    seed: int,
    limit: int = 3_000_000,
) -> tuple[int | None, int | None]:
    """Records after the switch until (the GAN, the forgetting counter) are within TOLERANCE."""
    from gumbel_core import CountingEstimator, OnlineGAN, total_variation

    torch.set_num_threads(1)
    before = torch.tensor(BEFORE, dtype=torch.float64)
    after = torch.tensor(AFTER, dtype=torch.float64)
    stream = torch.Generator().manual_seed(10_000 + seed)
    gan = OnlineGAN(len(BEFORE), seed=seed)
    counter = CountingEstimator(len(BEFORE), decay=decay)
    for _ in range(warmup_records // batch_size):
        batch = torch.multinomial(before, batch_size, True, generator=stream)
        gan.learn_many(batch)
        counter.learn_many(batch)
    gan_at = counter_at = None
    seen = 0
    while seen < limit and (gan_at is None or counter_at is None):
        batch = torch.multinomial(after, batch_size, True, generator=stream)
        gan.learn_many(batch)
        counter.learn_many(batch)
        seen += batch_size
        if gan_at is None and float(total_variation(gan.estimate().double(), after)) < TOLERANCE:
            gan_at = seen
        if counter_at is None and float(total_variation(counter.estimate(), after)) < TOLERANCE:
            counter_at = seen
    return gan_at, counter_at


def run_drift_bench(quick: bool = False) -> list[BenchResult]:
    warmup, seeds = (100_000, (0,)) if quick else (300_000, (0, 1, 2))
    memory = 10_000  # the forgetting counter's effective memory, in records
    results = [records_to_follow(warmup, 256, 1.0 - 1.0 / memory, seed) for seed in seeds]
    gan = [r[0] for r in results]
    counter = [r[1] for r in results]
    if any(g is None for g in gan) or any(c is None for c in counter):
        raise RuntimeError(f"a learner never followed the switch: GAN {gan}, counting {counter}")
    gan_median = sorted(gan)[len(gan) // 2]  # type: ignore[type-var]
    counter_median = sorted(counter)[len(counter) // 2]  # type: ignore[type-var]
    return [
        BenchResult(
            "drift", 1e6 / gan_median, 1e6 / counter_median,
            "1e6 / records to TV<0.05 after a switch", "gumbel-stream bench drift",
            f"records after the switch: GAN {gan_median:,} vs counting with memory "
            f"{memory:,} {counter_median:,} (median of seeds {','.join(map(str, seeds))}; "
            f"{warmup:,} records before the switch, batches of 256)",
        )
    ]
