"""``quality`` for ``gumbel-stream bench``: the default learner's accuracy next to counting.

The full table (every estimator and distribution, with the plot) is
``python -m services.bench.quality``; this is the one-line figure for the benchmark suite.
The value is ``1 / TV`` (worst seed) against the true distribution and the baseline the same
for the exact counting estimator on the same samples, so the ratio is counting TV over GAN
TV: 0.5 means the GAN's error is twice the counting MLE's. (``1 - TV`` would show a GAN at
TV 0.003 and counting at 0.0014 as ratio 1.00.)
"""

from __future__ import annotations

from gumbel_core import GANConfig
from services.bench.quality import QUICK_DISTRIBUTIONS, run_quality
from services.bench.results import BenchResult

__all__ = ["quality_results"]


def quality_results(quick: bool) -> list[BenchResult]:
    samples, seeds = (60_000, (0, 1)) if quick else (300_000, (0, 1, 2, 3, 4))
    default_estimator = GANConfig().estimator
    rows = run_quality(
        samples=samples, seeds=seeds, variants=[default_estimator],
        distributions=list(QUICK_DISTRIBUTIONS),
    )
    return [
        BenchResult(
            name="quality" if i == 0 else f"quality_{i}",
            value=1.0 / row.tv_max,
            baseline=1.0 / row.baseline_tv_max,
            unit="1 / TV (worst seed): ratio = counting TV / GAN TV",
            command="gumbel-stream bench quality",
            detail=(
                f"{default_estimator} on {row.distribution}, {row.samples:,} samples, "
                f"seeds {','.join(map(str, seeds))}: TV max {row.tv_max:.4f}, "
                f"counting {row.baseline_tv_max:.4f}"
            ),
        )
        for i, row in enumerate(rows)
    ]
