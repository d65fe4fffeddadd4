"""``quality``: how close each estimator's OnlineGAN gets to the truth, next to counting.

For every (estimator, distribution, seed) an :class:`~gumbel_core.OnlineGAN` with its default
configuration learns from a simulated stream (batches of ``--batch-size`` values drawn from the
distribution), and a :class:`~gumbel_core.CountingEstimator` counts the very same values. The
table reports the total variation (TV) between ``estimate()`` and the true distribution after
``--samples`` samples (mean and max over seeds), the counting baseline's TV, and whether the
categories of true probability 0 stay below 0.01. The plot shows TV against samples.

Run it as ``python -m services.bench.quality [--samples N] [--seeds 0,1,2] [--out DIR]``.
Imports only gumbel_core, torch, matplotlib and the standard library.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from gumbel_core import OnlineGAN, total_variation

__all__ = [
    "DISTRIBUTIONS",
    "VARIANTS",
    "DEFAULT_VARIANTS",
    "TV_TARGET",
    "ZERO_TARGET",
    "QualityRow",
    "run_quality",
    "format_markdown",
    "format_summary",
    "summarise",
    "plot_curves",
    "main",
]

TV_TARGET = 0.02  # total variation to reach within the sample budget
ZERO_TARGET = 0.01  # categories of true probability 0 must be estimated below this


def zipf(k: int, s: float = 1.1) -> list[float]:
    """Zipf(``s``) over ``k`` categories (the quality and drift benches' heavy tails)."""
    weights = [(i + 1) ** -s for i in range(k)]
    total = sum(weights)
    return [w / total for w in weights]


DISTRIBUTIONS: dict[str, list[float]] = {
    "post [0,0,.1,.3,.6]": [0.0, 0.0, 0.1, 0.3, 0.6],
    "mixed [.1,.2,.3,.25,.15]": [0.1, 0.2, 0.3, 0.25, 0.15],
    "K=2 [.3,.7]": [0.3, 0.7],
    "near one-hot K=8": [0.97] + [0.03 / 7] * 7,
    "uniform K=64": [1.0 / 64] * 64,
    "Zipf(1.1) K=64": zipf(64),
    "Zipf K=16, 4 zeros": zipf(12) + [0.0] * 4,
}

# Table rows: a label -> (estimator, extra OnlineGAN options). "soft + MLP D" shows the trap:
# a discriminator able to tell one-hot from relaxed vectors.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "st": ("st", {}),
    "gst": ("gst", {}),
    "reinmax": ("reinmax", {}),
    "rao": ("rao", {}),
    "soft": ("soft", {}),
    "soft + MLP D": ("soft", {"discriminator": "mlp"}),
    # st with the temperature held (the annealing's "without"): only when named.
    "st tau=0.5": ("st", {"schedule": "constant", "schedule_options": {"tau": 0.5}}),
    "st tau=1": ("st", {"schedule": "constant", "schedule_options": {"tau": 1.0}}),
    "st tau=2": ("st", {"schedule": "constant", "schedule_options": {"tau": 2.0}}),
    # st with D on the drawn fakes (the "without" of expected_fakes): only when named.
    "st drawn fakes": ("st", {"expected_fakes": False}),
}
# The table's rows when --variants is not given.
DEFAULT_VARIANTS = ("st", "gst", "reinmax", "rao", "soft", "soft + MLP D")


QUICK_DISTRIBUTIONS = ("post [0,0,.1,.3,.6]", "mixed [.1,.2,.3,.25,.15]")


@dataclass
class QualityRow:
    """One (variant, distribution) cell of the table, aggregated over seeds."""

    variant: str
    estimator: str
    distribution: str
    num_categories: int
    samples: int
    batch_size: int
    seeds: list[int]
    tv_mean: float
    tv_max: float
    baseline_tv_mean: float
    baseline_tv_max: float
    zero_max: float | None  # largest estimate of a category with true probability 0
    passed: bool  # tv_max <= TV_TARGET and zero_max < ZERO_TARGET (when there are zeros)
    seconds: float
    drift_detections: int = 0  # over all seeds: the stream is stationary, so 0 is right
    curve_samples: list[int] = field(default_factory=list)
    curve_tv_mean: list[float] = field(default_factory=list)
    curve_baseline_tv_mean: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _RunResult:
    tv: float
    baseline_tv: float
    zero_max: float | None
    curve: list[tuple[int, float, float]]
    seconds: float
    drift_detections: int


def _one_run(
    estimator: str,
    options: dict[str, Any],
    probs: list[float],
    seed: int,
    samples: int,
    batch_size: int,
    points: int,
) -> _RunResult:
    torch.set_num_threads(1)
    truth = torch.tensor(probs, dtype=torch.float64)
    truth = truth / truth.sum()
    stream = torch.Generator().manual_seed(10_000 + seed)  # the data; the learner has its own
    learner = OnlineGAN(len(probs), estimator, seed=seed, **options)
    steps = max(1, samples // batch_size)
    marks = {max(1, round(steps * (i + 1) / points)) for i in range(points)}
    curve = []
    start = time.perf_counter()
    for step in range(1, steps + 1):
        learner.learn_many(torch.multinomial(truth, batch_size, True, generator=stream))
        if step in marks:
            tv = float(total_variation(learner.estimate().double(), truth))
            base = float(total_variation(learner.baseline.estimate(), truth))
            curve.append((learner.samples_seen, tv, base))
    seconds = time.perf_counter() - start
    estimate = learner.estimate().double()
    zeros = truth == 0
    zero_max = float(estimate[zeros].max()) if bool(zeros.any()) else None
    return _RunResult(
        curve[-1][1], curve[-1][2], zero_max, curve, seconds, learner.drift_detections
    )


def _star(args: tuple[Any, ...]) -> _RunResult:
    return _one_run(*args)


def run_quality(
    samples: int = 300_000,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    batch_size: int = 256,
    variants: Sequence[str] | None = None,
    distributions: Sequence[str] | None = None,
    points: int = 24,
    jobs: int = 1,
    progress: bool = False,
    options: dict[str, Any] | None = None,
) -> list[QualityRow]:
    """Run every (variant, distribution, seed) and aggregate over seeds.

    Parameters
    ----------
    samples
        Samples each learner sees (``samples // batch_size`` steps).
    seeds
        Seeds of the learners (the stream of seed ``s`` is seeded ``10_000 + s``).
    batch_size
        Values per ``learn_many`` call, as batches come from a stream.
    variants, distributions
        Names from :data:`VARIANTS` and :data:`DISTRIBUTIONS`; :data:`DEFAULT_VARIANTS` and
        all distributions when ``None``.
    points
        Points on each TV-against-samples curve.
    jobs
        Worker processes (each uses one torch thread).
    progress
        Write a progress line to stderr.
    options
        ``OnlineGAN`` options set on top of every variant's own (``--set``), to measure a
        change of the defaults on the whole table.

    Returns
    -------
    list of QualityRow
        One row per (variant, distribution), in table order.
    """
    variants = list(DEFAULT_VARIANTS) if variants is None else list(variants)
    distributions = list(DISTRIBUTIONS) if distributions is None else list(distributions)
    for name in variants:
        if name not in VARIANTS:
            raise ValueError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    for name in distributions:
        if name not in DISTRIBUTIONS:
            raise ValueError(
                f"unknown distribution {name!r}; choose from {', '.join(DISTRIBUTIONS)}"
            )
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must not be empty")
    cells = [(v, d) for v in variants for d in distributions]
    tasks = [
        (VARIANTS[v][0], {**VARIANTS[v][1], **(options or {})}, DISTRIBUTIONS[d], s, samples,
         batch_size, points)
        for v, d in cells
        for s in seeds
    ]
    results: list[_RunResult] = []
    if jobs > 1:
        with multiprocessing.get_context("spawn").Pool(jobs) as pool:
            for result in pool.imap(_star, tasks):
                results.append(result)
                _progress(progress, len(results), len(tasks))
    else:
        for task in tasks:
            results.append(_star(task))
            _progress(progress, len(results), len(tasks))
    rows = []
    for i, (variant, dist) in enumerate(cells):
        runs = results[i * len(seeds) : (i + 1) * len(seeds)]
        tvs = [r.tv for r in runs]
        base = [r.baseline_tv for r in runs]
        zero = [r.zero_max for r in runs if r.zero_max is not None]
        zero_max = max(zero) if zero else None
        passed = max(tvs) <= TV_TARGET and (zero_max is None or zero_max < ZERO_TARGET)
        curve_x = [c[0] for c in runs[0].curve]
        rows.append(
            QualityRow(
                variant=variant,
                estimator=VARIANTS[variant][0],
                distribution=dist,
                num_categories=len(DISTRIBUTIONS[dist]),
                samples=runs[0].curve[-1][0],
                batch_size=batch_size,
                seeds=seeds,
                tv_mean=sum(tvs) / len(tvs),
                tv_max=max(tvs),
                baseline_tv_mean=sum(base) / len(base),
                baseline_tv_max=max(base),
                zero_max=zero_max,
                passed=passed,
                seconds=sum(r.seconds for r in runs),
                drift_detections=sum(r.drift_detections for r in runs),
                curve_samples=curve_x,
                curve_tv_mean=[
                    sum(r.curve[j][1] for r in runs) / len(runs) for j in range(len(curve_x))
                ],
                curve_baseline_tv_mean=[
                    sum(r.curve[j][2] for r in runs) / len(runs) for j in range(len(curve_x))
                ],
            )
        )
    if progress and sys.stderr.isatty():
        sys.stderr.write("\n")
    return rows


def _progress(enabled: bool, done: int, total: int) -> None:
    if enabled and sys.stderr.isatty():
        sys.stderr.write(f"\rquality: {done}/{total} runs")
        sys.stderr.flush()


def format_markdown(rows: Sequence[QualityRow], command: str = "") -> str:
    """The markdown table: TV mean ± max over seeds, the counting baseline, zeros, pass."""
    seeds = rows[0].seeds if rows else []
    samples = rows[0].samples if rows else 0
    lines = []
    if command:
        lines.append(f"`{command}`")
        lines.append("")
    batch = rows[0].batch_size if rows else 0
    lines.append(
        f"Total variation (TV) to the truth after {samples:,} samples in batches of {batch}, "
        f"over seeds {seeds} (mean and max); target: TV <= {TV_TARGET} and every category of "
        f"true probability 0 estimated below {ZERO_TARGET}."
    )
    lines.append("")
    lines.append(
        "| estimator | distribution | K | TV mean | TV max | counting TV mean | "
        "max estimate of a zero category | pass |"
    )
    lines.append("|---|---|---:|---:|---:|---:|---:|:---:|")
    for r in rows:
        zero = (
            "—"
            if r.zero_max is None
            else f"{r.zero_max:.4f}" + (" ✓" if r.zero_max < ZERO_TARGET else " ✗")
        )
        lines.append(
            f"| {r.variant} | {r.distribution} | {r.num_categories} | {r.tv_mean:.4f} | "
            f"{r.tv_max:.4f} | {r.baseline_tv_mean:.4f} | {zero} | {'✓' if r.passed else '✗'} |"
        )
    lines.append("")
    detections = sum(r.drift_detections for r in rows)
    runs = sum(len(r.seeds) for r in rows)
    lines.append(
        f"Drift detections in these {runs} stationary runs: {detections} "
        "(the detector must never fire on a stationary stream)."
    )
    lines.append("")
    lines.extend(format_summary(rows))
    return "\n".join(lines) + "\n"


def summarise(rows: Sequence[QualityRow]) -> list[dict[str, Any]]:
    """Per variant over all distributions: mean TV, worst TV, cells passed, CPU seconds/run."""
    out = []
    for variant in dict.fromkeys(r.variant for r in rows):
        vr = [r for r in rows if r.variant == variant]
        runs = sum(len(r.seeds) for r in vr)
        out.append(
            {
                "variant": variant,
                "tv_mean": sum(r.tv_mean for r in vr) / len(vr),
                "tv_worst": max(r.tv_max for r in vr),
                "baseline_tv_mean": sum(r.baseline_tv_mean for r in vr) / len(vr),
                "passed": sum(r.passed for r in vr),
                "cells": len(vr),
                "seconds_per_run": sum(r.seconds for r in vr) / runs,
            }
        )
    return out


def format_summary(rows: Sequence[QualityRow]) -> list[str]:
    """The per-variant summary table, as markdown lines."""
    lines = [
        "| estimator | mean TV (all distributions) | worst TV | counting mean TV | "
        "cells passed | CPU s per run |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in summarise(rows):
        lines.append(
            f"| {s['variant']} | {s['tv_mean']:.4f} | {s['tv_worst']:.4f} | "
            f"{s['baseline_tv_mean']:.4f} | {s['passed']}/{s['cells']} | "
            f"{s['seconds_per_run']:.1f} |"
        )
    return lines


def plot_curves(rows: Sequence[QualityRow], path: Path) -> None:
    """One panel per distribution: mean TV against samples for each variant and counting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dists = list(dict.fromkeys(r.distribution for r in rows))
    cols = min(4, len(dists))
    nrows = (len(dists) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.4 * nrows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    variants = list(dict.fromkeys(r.variant for r in rows))
    for ax, dist in zip(axes.flat, dists, strict=False):
        drows = [r for r in rows if r.distribution == dist]
        for r in drows:
            color = colors[variants.index(r.variant) % len(colors)]
            style = "--" if r.estimator == "soft" else "-"
            ax.plot(r.curve_samples, r.curve_tv_mean, style, color=color, label=r.variant, lw=1.5)
        base = drows[0]
        ax.plot(
            base.curve_samples,
            base.curve_baseline_tv_mean,
            ":",
            color="black",
            label="counting",
            lw=1.5,
        )
        ax.axhline(TV_TARGET, color="grey", lw=0.8)
        ax.set_yscale("log")
        ax.set_title(dist, fontsize=10)
        ax.set_xlabel("samples")
        ax.set_ylabel("TV to truth (mean over seeds)")
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(dists) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    fig.suptitle(f"OnlineGAN estimate vs truth (grey line: TV = {TV_TARGET})")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def option_arg(text: str) -> tuple[str, Any]:
    """A ``--set name=value`` argument, the value read as JSON (``0.4``, ``false``, ``null``),
    else a string."""
    import json

    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected name=value, got {text!r}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m services.bench.quality", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--samples", type=int, default=300_000, help="samples per learner")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated learner seeds")
    parser.add_argument("--batch-size", type=int, default=256, help="values per learn_many call")
    parser.add_argument("--out", default="deploy/quality", help="folder for quality.md and .png")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument(
        "--variants", default=None, help=f"comma-separated of {', '.join(VARIANTS)}"
    )
    parser.add_argument(
        "--set", dest="options", type=option_arg, action="append", default=[],
        metavar="NAME=VALUE", help="an OnlineGAN option set on every variant (repeatable)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 2 distributions, st and soft, 1 seed, 30,000 samples",
    )
    args = parser.parse_args(argv)
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    if args.samples < args.batch_size or args.batch_size < 1:
        parser.error("--samples must be >= --batch-size >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the table, write ``quality.md`` and ``quality.png``."""
    args = _parse_args(argv)
    variants = args.variants.split(",") if args.variants else None
    distributions = None
    samples, seeds = args.samples, args.seeds
    if args.quick:
        variants = variants or ["st", "soft"]
        distributions = list(QUICK_DISTRIBUTIONS)
        samples, seeds = min(samples, 30_000), seeds[:1]
    torch.set_num_threads(1)
    command = "python -m services.bench.quality " + " ".join(
        sys.argv[1:] if argv is None else list(argv)
    )
    rows = run_quality(
        samples=samples,
        seeds=seeds,
        batch_size=args.batch_size,
        variants=variants,
        distributions=distributions,
        jobs=args.jobs,
        progress=True,
        options=dict(args.options),
    )
    table = format_markdown(rows, command.strip())
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality.md").write_text(table)
    plot_curves(rows, out / "quality.png")
    print(f"wrote {out / 'quality.md'} and {out / 'quality.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
