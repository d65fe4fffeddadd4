"""``drift``: how fast the GAN's estimate follows a stream that changes, vs forgetting counts.

Sudden switches: the stream draws 300,000 records from one distribution, then switches to
another; every learner sees the same batches of 256. The figure is how many records after
the switch each needs before its estimate is first within TV 0.05 of the new distribution
(median over seeds): the GAN with its default configuration, the GAN with the temperature
held at 1 (no annealing, no re-heat: the "without" column of ``docs/learner.md``), the GAN as
it was before issue 11 (no logit bound, no learning-rate boost, tau held at 1), and a
counting estimator that forgets with a memory of 10,000 records. Fewer is better, so the
value is a speed, ``1e6 / records``, to keep "higher is better" for the ratio.

Tracking rows: after the same warm-up, the truth moves linearly from one distribution to
another over 200,000 records and stays there for 100,000 (``ramp``), or alternates every
100,000 records for 600,000 (``alternate``); the figure is the TV to the truth averaged over
those records, against the best of four forgetting counters (memories 2k, 5k, 10k, 20k).
The value is ``1 / mean TV`` so that the ratio is counter TV over GAN TV.

In the running service add at most one publish interval for the estimate to be published.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from services.bench.results import BenchResult

__all__ = [
    "SWITCHES",
    "TRACKING",
    "COUNTER_MEMORY",
    "TRACKING_MEMORIES",
    "VARIANTS",
    "SwitchResult",
    "TrackingResult",
    "run_switch",
    "run_tracking",
    "run_drift_bench",
]

COMMAND = "gumbel-stream bench drift"
TOLERANCE = 0.05
BATCH = 256
WARMUP = 300_000
COUNTER_MEMORY = 10_000  # records: the forgetting counter the switches are compared with
TRACKING_MEMORIES = (2_000, 5_000, 10_000, 20_000)
LIMIT = 1_000_000  # records after a switch before a learner is declared stuck


def _zipf(k: int, s: float = 1.1) -> list[float]:
    weights = [(i + 1) ** -s for i in range(k)]
    return [w / sum(weights) for w in weights]


def _shuffled(probs: list[float], seed: int) -> list[float]:
    order = torch.randperm(len(probs), generator=torch.Generator().manual_seed(seed)).tolist()
    return [probs[i] for i in order]


POST = [0.0, 0.0, 0.1, 0.3, 0.6]
MIXED = [0.1, 0.2, 0.3, 0.25, 0.15]
ZIPF64 = _zipf(64)

# name -> (before, after, what it tests)
SWITCHES: dict[str, tuple[list[float], list[float], str]] = {
    "post_to_mixed": (POST, MIXED, "the original post's distribution to the mixed one"),
    "zero_to_largest": (
        POST,
        [0.6, 0.0, 0.1, 0.3, 0.0],
        "a category of probability 0 becomes the largest while the largest drops to 0",
    ),
    "large_to_zero": (MIXED, [0.2, 0.3, 0.0, 0.3, 0.2], "the largest category drops to 0"),
    "k8_skewed_to_uniform": ([0.97] + [0.03 / 7] * 7, [1 / 8] * 8, "K=8 near one-hot to uniform"),
    "k64_zipf_to_shuffled": (ZIPF64, _shuffled(ZIPF64, 7), "K=64 Zipf(1.1) to a shuffled Zipf"),
}

# name -> (A, B, what it tests)
TRACKING: dict[str, tuple[list[float], list[float], str]] = {
    "ramp": (POST, MIXED, "linear ramp post -> mixed over 200k records, then 100k on mixed"),
    "alternate": (POST, MIXED, "mixed and post alternating every 100k records, 600k"),
}

# learner label -> OnlineGAN options
VARIANTS: dict[str, dict[str, Any]] = {
    "gan": {},
    # Without the temperature's part: held at 1 (no annealing, no re-heat).
    "gan_tau_1": {"schedule": "constant", "schedule_options": {"tau": 1.0}},
    # The learner before issue 11: no logit bound, no boost, tau held at 1, D on the drawn
    # fakes at lr 0.05, the same average after a drift as after the start (the detector and
    # the restart of the reported average were there already).
    "gan_before": {
        "logit_margin": None,
        "expected_fakes": False,
        "discriminator_lr": 0.05,
        "drift_ema_fraction": 0.4,
        "generator_lr_boost": 1.0,
        "discriminator_lr_boost": 1.0,
        "schedule": "constant",
        "schedule_options": {"tau": 1.0},
    },
}


def _truth_at(kind: str, a: torch.Tensor, b: torch.Tensor, n: int) -> torch.Tensor:
    """The tracking row's true distribution ``n`` records after the warm-up."""
    if kind == "ramp":
        f = min(1.0, n / 200_000)
        return (1.0 - f) * a + f * b
    return b if (n // 100_000) % 2 == 0 else a


def _tracking_records(kind: str) -> int:
    return 300_000 if kind == "ramp" else 600_000


@dataclass(frozen=True)
class SwitchResult:
    """Records after a switch until each learner's estimate is within TOLERANCE (None: never
    within ``LIMIT``), for one seed."""

    switch: str
    seed: int
    records: dict[str, int | None]  # learner label (VARIANTS, "counting_10k") -> records


@dataclass(frozen=True)
class TrackingResult:
    """Mean TV to the moving truth per learner, for one seed."""

    row: str
    seed: int
    mean_tv: dict[str, float]  # learner label (VARIANTS, "counting_<m>") -> mean TV


def _learners(k: int, seed: int, variants: Sequence[str]) -> dict[str, Any]:
    from gumbel_core import OnlineGAN

    return {v: OnlineGAN(k, seed=seed, **VARIANTS[v]) for v in variants}


def _stream(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(10_000 + seed)  # the data; learners have their own


def run_switch(
    switch: str,
    seed: int,
    variants: Sequence[str] = tuple(VARIANTS),
    warmup: int = WARMUP,
    limit: int = LIMIT,
) -> SwitchResult:
    """One sudden switch for one seed: records until each learner follows it."""
    from gumbel_core import CountingEstimator, total_variation

    torch.set_num_threads(1)
    before_l, after_l, _ = SWITCHES[switch]
    before = torch.tensor(before_l, dtype=torch.float64)
    after = torch.tensor(after_l, dtype=torch.float64)
    k = len(before_l)
    stream = _stream(seed)
    gans = _learners(k, seed, variants)
    counter_label = f"counting_{COUNTER_MEMORY // 1000}k"
    counter = CountingEstimator(k, decay=1.0 - 1.0 / COUNTER_MEMORY)
    for _ in range(warmup // BATCH):
        batch = torch.multinomial(before, BATCH, True, generator=stream)
        for gan in gans.values():
            gan.learn_many(batch)
        counter.learn_many(batch)
    estimates: dict[str, Callable[[], torch.Tensor]] = {
        label: (lambda g=gan: g.estimate().double()) for label, gan in gans.items()
    }
    estimates[counter_label] = counter.estimate
    records: dict[str, int | None] = {label: None for label in estimates}
    seen = 0
    while seen < limit and any(r is None for r in records.values()):
        batch = torch.multinomial(after, BATCH, True, generator=stream)
        for label, gan in gans.items():
            if records[label] is None:
                gan.learn_many(batch)
        counter.learn_many(batch)
        seen += BATCH
        for label, estimate in estimates.items():
            if records[label] is None and float(total_variation(estimate(), after)) < TOLERANCE:
                records[label] = seen
    return SwitchResult(switch, seed, records)


def run_tracking(
    kind: str, seed: int, variants: Sequence[str] = tuple(VARIANTS), warmup: int = WARMUP
) -> TrackingResult:
    """One tracking row for one seed: the mean TV of each learner to the moving truth."""
    from gumbel_core import CountingEstimator, total_variation

    torch.set_num_threads(1)
    a_l, b_l, _ = TRACKING[kind]
    a = torch.tensor(a_l, dtype=torch.float64)
    b = torch.tensor(b_l, dtype=torch.float64)
    k = len(a_l)
    stream = _stream(seed)
    gans = _learners(k, seed, variants)
    counters = {
        f"counting_{m // 1000}k": CountingEstimator(k, decay=1.0 - 1.0 / m)
        for m in TRACKING_MEMORIES
    }
    for _ in range(warmup // BATCH):
        batch = torch.multinomial(a, BATCH, True, generator=stream)
        for learner in (*gans.values(), *counters.values()):
            learner.learn_many(batch)
    totals = dict.fromkeys((*gans, *counters), 0.0)
    steps = _tracking_records(kind) // BATCH
    for i in range(steps):
        truth = _truth_at(kind, a, b, i * BATCH)
        batch = torch.multinomial(truth, BATCH, True, generator=stream)
        for label, gan in gans.items():
            gan.learn_many(batch)
            totals[label] += float(total_variation(gan.estimate().double(), truth))
        for label, counter in counters.items():
            counter.learn_many(batch)
            totals[label] += float(total_variation(counter.estimate(), truth))
    return TrackingResult(kind, seed, {label: t / steps for label, t in totals.items()})


def _median(values: Sequence[int | None]) -> float:
    finite = [float(v) if v is not None else float("inf") for v in values]
    return statistics.median(finite)


def _fmt(records: float) -> str:
    return "never (>1M)" if records == float("inf") else f"{records:,.0f}"


def run_drift_bench(quick: bool = False) -> list[BenchResult]:
    """Every switch and tracking row, median over seeds (1 seed and the default GAN only
    when ``quick``)."""
    seeds = (0,) if quick else (0, 1, 2)
    variants = ("gan",) if quick else tuple(VARIANTS)
    counter_label = f"counting_{COUNTER_MEMORY // 1000}k"
    results = []
    for i, (switch, (_, _, what)) in enumerate(SWITCHES.items()):
        runs = [run_switch(switch, seed, variants) for seed in seeds]
        per_learner = {label: [r.records[label] for r in runs] for label in runs[0].records}
        medians = {label: _median(v) for label, v in per_learner.items()}
        gan, counter = medians["gan"], medians[counter_label]
        detail = (
            f"{what}: records to TV<{TOLERANCE} after the switch, median of seeds "
            f"{','.join(map(str, seeds))}: GAN {_fmt(gan)}, counting with memory "
            f"{COUNTER_MEMORY:,} {_fmt(counter)}"
        )
        if "gan_tau_1" in medians:
            detail += f", GAN with tau held at 1 {_fmt(medians['gan_tau_1'])}"
        if "gan_before" in medians:
            detail += f", GAN before issue 11 {_fmt(medians['gan_before'])}"
        results.append(
            BenchResult(
                name="drift" if i == 0 else f"drift_{switch}",
                value=1e6 / gan,
                baseline=1e6 / counter,
                unit="1e6 / records to TV<0.05 after a switch",
                command=COMMAND,
                detail=detail + f" ({WARMUP:,} records before the switch, batches of {BATCH})",
                extra={
                    "switch": switch,
                    "records": per_learner,
                    "median_records": {
                        label: None if m == float("inf") else m for label, m in medians.items()
                    },
                },
            )
        )
    for kind, (_, _, what) in TRACKING.items():
        tracks = [run_tracking(kind, seed, variants) for seed in seeds]
        per_learner_tv = {label: [t.mean_tv[label] for t in tracks] for label in tracks[0].mean_tv}
        medians_tv = {label: statistics.median(v) for label, v in per_learner_tv.items()}
        counters = {k: v for k, v in medians_tv.items() if k.startswith("counting_")}
        best = min(counters, key=counters.__getitem__)
        gan_tv = medians_tv["gan"]
        detail = (
            f"{what}: mean TV to the truth, median of seeds {','.join(map(str, seeds))}: GAN "
            f"{gan_tv:.4f}, best forgetting counter ({best.split('_')[1]} memory) "
            f"{counters[best]:.4f}"
        )
        if "gan_tau_1" in medians_tv:
            detail += f", GAN with tau held at 1 {medians_tv['gan_tau_1']:.4f}"
        if "gan_before" in medians_tv:
            detail += f", GAN before issue 11 {medians_tv['gan_before']:.4f}"
        results.append(
            BenchResult(
                name=f"drift_{kind}",
                value=1.0 / gan_tv,
                baseline=1.0 / counters[best],
                unit="1 / mean TV while tracking",
                command=COMMAND,
                detail=detail,
                extra={"row": kind, "mean_tv": per_learner_tv, "median_mean_tv": medians_tv},
            )
        )
    return results


START_CHECKPOINTS = (30_000, 60_000, 120_000)  # records from a fresh learner


def run_start(
    probs: Sequence[float], seed: int, variants: Sequence[str] = ("gan",)
) -> dict[str, list[float]]:
    """A fresh learner on a stationary stream: its TV to the truth after each of
    ``START_CHECKPOINTS`` records, per learner (a start is a switch from the uniform)."""
    from gumbel_core import total_variation

    torch.set_num_threads(1)
    truth = torch.tensor(list(probs), dtype=torch.float64)
    stream = _stream(seed)
    gans = _learners(len(probs), seed, variants)
    tvs: dict[str, list[float]] = {label: [] for label in gans}
    seen = 0
    for checkpoint in START_CHECKPOINTS:
        while seen + BATCH <= checkpoint:
            batch = torch.multinomial(truth, BATCH, True, generator=stream)
            for gan in gans.values():
                gan.learn_many(batch)
            seen += BATCH
        for label, gan in gans.items():
            tvs[label].append(float(total_variation(gan.estimate().double(), truth)))
    return tvs


def _option(text: str) -> tuple[str, Any]:
    """``name=value`` with the value read as JSON (``0.4``, ``false``, ``null``), else a string."""
    import json

    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected name=value, got {text!r}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def main(argv: Sequence[str] | None = None) -> int:
    """Explore: the default GAN with some options changed, on chosen rows, median over seeds.

    ``python -m services.bench.drift ramp alternate --set drift_ema_fraction=0.4`` prints
    the mean TV of each tracking row (the records of each switch; for ``start``, the TV of a
    fresh learner after 30,000, 60,000 and 120,000 records) for the learner with
    those ``OnlineGAN`` options, next to the default learner's and the counters', so each
    row of the tables in ``docs/learner.md`` can be re-measured with one command.
    """
    parser = argparse.ArgumentParser(
        prog="python -m services.bench.drift", description=main.__doc__
    )
    parser.add_argument("rows", nargs="+", choices=["start", *TRACKING, *SWITCHES])
    parser.add_argument("--set", dest="options", type=_option, action="append", default=[])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    VARIANTS["changed"] = dict(args.options)
    label = " ".join(f"{k}={v}" for k, v in args.options) or "(no change)"
    for row in args.rows:
        if row == "start":
            for name, probs in (("post", POST), ("mixed", MIXED)):
                runs = [run_start(probs, s, ("gan", "changed")) for s in args.seeds]
                cells = []
                for i, records in enumerate(START_CHECKPOINTS):
                    med = {k: statistics.median(r[k][i] for r in runs) for k in runs[0]}
                    cells.append(f"{records:,}: {med['changed']:.4f} (default {med['gan']:.4f})")
                print(f"start on {name}: TV after " + ", ".join(cells) + f" for {label}")
        elif row in TRACKING:
            tracks = [run_tracking(row, s, ("gan", "changed")) for s in args.seeds]
            medians = {
                k: statistics.median(t.mean_tv[k] for t in tracks) for k in tracks[0].mean_tv
            }
            counters = {k: v for k, v in medians.items() if k.startswith("counting_")}
            best = min(counters, key=counters.__getitem__)
            print(
                f"{row}: mean TV, median of seeds {args.seeds}: {label} {medians['changed']:.4f}, "
                f"default {medians['gan']:.4f}, best counter ({best}) {counters[best]:.4f}"
            )
        else:
            runs = [run_switch(row, s, ("gan", "changed")) for s in args.seeds]
            med = {k: _median([r.records[k] for r in runs]) for k in runs[0].records}
            counter = f"counting_{COUNTER_MEMORY // 1000}k"
            print(
                f"{row}: records to TV<{TOLERANCE}, median of seeds {args.seeds}: {label} "
                f"{_fmt(med['changed'])}, default {_fmt(med['gan'])}, counter {_fmt(med[counter])}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
