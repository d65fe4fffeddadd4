"""``drift``: how fast the GAN's estimate follows a stream that changes, against counters.

Sudden switches: the stream draws 300,000 records from one distribution, then switches to
another; every learner sees the same batches of 256. Three figures per learner, each the
median over seeds:

- **settled**: records after the switch until the estimate is within TV 0.05 of the new
  distribution and stays there for the next 20,000 records (what a user calls "followed");
- **first crossing**: records until it is first within TV 0.05;
- **overshoot**: the worst TV between the first crossing and the settled point's 20,000
  records (the way back up after a first dip).

The learners: the GAN with its default configuration, the GAN with the temperature held at 1
(no annealing, no re-heat: the "without" column of ``docs/learner.md``), the GAN as it was
before issue 11, and the baselines: forgetting counters with memories of 1k, 2k, 5k, 10k and
20k records, and an exact counter that restarts whenever the project's own
:class:`gumbel_core.DriftDetector` (default settings) fires on the batches' counts, the same
detector the GAN's drift response uses. The ratio is against the best baseline of the row (the
fewest settled records): fewer is better, so the value is a speed, ``1e6 / records``, to keep
"higher is better" for the ratio.

Tracking rows: after the same warm-up, the truth moves linearly from one distribution to
another over 200,000 records and stays there for 100,000 (``ramp``), or alternates every
100,000 records for 600,000 (``alternate``); the figure is the TV to the truth averaged over
those records, against the best of the same baselines (the detector-restarted counter
included). The value is ``1 / mean TV`` so that the ratio is baseline TV over GAN TV.

In the running service add at most one publish interval for the estimate to be published.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from services.bench.quality import option_arg, zipf
from services.bench.results import BenchResult

__all__ = [
    "SWITCHES",
    "TRACKING",
    "COUNTER_MEMORIES",
    "DETECTOR_COUNTER",
    "VARIANTS",
    "DetectorCounter",
    "Follow",
    "SwitchResult",
    "TrackingResult",
    "run_switch",
    "run_tracking",
    "run_drift_bench",
]

COMMAND = "gumbel-stream bench drift"
TOLERANCE = 0.05
SETTLE_RECORDS = 20_000  # in tolerance for this many records after the settled point
BATCH = 256
WARMUP = 300_000
COUNTER_MEMORIES = (1_000, 2_000, 5_000, 10_000, 20_000)  # records
DETECTOR_COUNTER = "counting_detector"
LIMIT = 1_000_000  # records after a switch before a learner is declared stuck


def _shuffled(probs: list[float], seed: int) -> list[float]:
    order = torch.randperm(len(probs), generator=torch.Generator().manual_seed(seed)).tolist()
    return [probs[i] for i in order]


POST = [0.0, 0.0, 0.1, 0.3, 0.6]
MIXED = [0.1, 0.2, 0.3, 0.25, 0.15]
ZIPF16 = zipf(16)
ZIPF64 = zipf(64)

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
    "k16_tail_reshuffled": (ZIPF16, _shuffled(ZIPF16, 3), "K=16 Zipf(1.1), the tail reshuffled"),
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
    # The learner before issue 11: no logit bound, no boost, no replay, no settling, the
    # shorter average (the same after a drift as after the start), tau held at 1, D on the
    # drawn fakes at lr 0.05 (the detector and the restart of the reported average were
    # there already).
    "gan_before": {
        "replay_steps": 0,
        "lr_decay_steps": None,
        "ema_fraction": 0.4,
        "ema_decay": 0.998,
        "logit_margin": None,
        "expected_fakes": False,
        "discriminator_lr": 0.05,
        "drift_ema_fraction": 0.4,
        "moving_ema_fraction": 0.4,
        "generator_lr_boost": 1.0,
        "discriminator_lr_boost": 1.0,
        "boost_at_start": False,
        "schedule": "constant",
        "schedule_options": {"tau": 1.0},
    },
}


class DetectorCounter:
    """The strongest simple baseline for a stream that switches: exact counts since the last
    time a :class:`DriftDetector` (the learner's, default settings) fired. On a detection the
    counts restart with the batch that fired it."""

    def __init__(self, num_categories: int) -> None:
        from gumbel_core import CountingEstimator, DriftDetector

        self.num_categories = num_categories
        self.detector = DriftDetector(num_categories)
        self.counter = CountingEstimator(num_categories)

    def learn_many(self, values: torch.Tensor) -> None:
        counts = torch.bincount(values, minlength=self.num_categories).double()  # (K,)
        if self.detector.update(counts):
            self.counter.counts.zero_()
        self.counter.learn_counts(counts)

    def estimate(self) -> torch.Tensor:
        return self.counter.estimate()


def _baselines(k: int) -> dict[str, Any]:
    """The counters every GAN is compared with, by label."""
    from gumbel_core import CountingEstimator

    counters: dict[str, Any] = {
        f"counting_{m // 1000}k": CountingEstimator(k, memory=m) for m in COUNTER_MEMORIES
    }
    counters[DETECTOR_COUNTER] = DetectorCounter(k)
    return counters


def _is_baseline(label: str) -> bool:
    return label.startswith("counting_")


@dataclass
class Follow:
    """How one learner follows a switch, fed its TV after every batch."""

    first: int | None = None  # records until first within TOLERANCE
    settled: int | None = None  # records until within TOLERANCE for SETTLE_RECORDS more
    overshoot: float | None = None  # worst TV from the first crossing until settled
    _streak_from: int | None = None  # where the current run within TOLERANCE began

    def update(self, records: int, tv: float) -> None:
        if tv < TOLERANCE:
            if self.first is None:
                self.first = records
            if self._streak_from is None:
                self._streak_from = records
            if records - self._streak_from >= SETTLE_RECORDS:
                self.settled = self._streak_from
        else:
            self._streak_from = None
        if self.first is not None:
            self.overshoot = tv if self.overshoot is None else max(self.overshoot, tv)

    def figures(self) -> dict[str, float | None]:
        return {"settled": self.settled, "first": self.first, "overshoot": self.overshoot}


@dataclass(frozen=True)
class SwitchResult:
    """Per learner (VARIANTS and the baselines' labels): ``settled``, ``first`` and
    ``overshoot`` (None where it never got there within ``LIMIT`` records), for one seed."""

    switch: str
    seed: int
    figures: dict[str, dict[str, float | None]]


@dataclass(frozen=True)
class TrackingResult:
    """Mean TV to the moving truth per learner, for one seed."""

    row: str
    seed: int
    mean_tv: dict[str, float]  # learner label (VARIANTS and the baselines') -> mean TV


def _learners(k: int, seed: int, variants: Sequence[str]) -> dict[str, Any]:
    from gumbel_core import OnlineGAN

    return {v: OnlineGAN(k, seed=seed, **VARIANTS[v]) for v in variants}


def _stream(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(10_000 + seed)  # the data; learners have their own


def _estimate(learner: Any) -> torch.Tensor:
    return learner.estimate().double()


def run_switch(
    switch: str,
    seed: int,
    variants: Sequence[str] = tuple(VARIANTS),
    warmup: int = WARMUP,
    limit: int = LIMIT,
) -> SwitchResult:
    """One sudden switch for one seed: how each learner follows it. A learner is fed until it
    has settled (its 20,000 records in tolerance included) or ``limit`` records."""
    from gumbel_core import total_variation

    torch.set_num_threads(1)
    before_l, after_l, _ = SWITCHES[switch]
    before = torch.tensor(before_l, dtype=torch.float64)
    after = torch.tensor(after_l, dtype=torch.float64)
    k = len(before_l)
    stream = _stream(seed)
    learners = {**_learners(k, seed, variants), **_baselines(k)}
    for _ in range(warmup // BATCH):
        batch = torch.multinomial(before, BATCH, True, generator=stream)
        for learner in learners.values():
            learner.learn_many(batch)
    follows = {label: Follow() for label in learners}
    seen = 0
    while seen < limit and any(f.settled is None for f in follows.values()):
        batch = torch.multinomial(after, BATCH, True, generator=stream)
        seen += BATCH
        for label, learner in learners.items():
            if follows[label].settled is None:
                learner.learn_many(batch)
                follows[label].update(seen, float(total_variation(_estimate(learner), after)))
    return SwitchResult(switch, seed, {label: f.figures() for label, f in follows.items()})


def run_tracking(
    kind: str, seed: int, variants: Sequence[str] = tuple(VARIANTS), warmup: int = WARMUP
) -> TrackingResult:
    """One tracking row for one seed: the mean TV of each learner to the moving truth."""
    from gumbel_core import total_variation

    torch.set_num_threads(1)
    a_l, b_l, _ = TRACKING[kind]
    a = torch.tensor(a_l, dtype=torch.float64)
    b = torch.tensor(b_l, dtype=torch.float64)
    k = len(a_l)
    stream = _stream(seed)
    learners = {**_learners(k, seed, variants), **_baselines(k)}
    for _ in range(warmup // BATCH):
        batch = torch.multinomial(a, BATCH, True, generator=stream)
        for learner in learners.values():
            learner.learn_many(batch)
    totals = dict.fromkeys(learners, 0.0)
    steps = _tracking_records(kind) // BATCH
    for i in range(steps):
        truth = _truth_at(kind, a, b, i * BATCH)
        batch = torch.multinomial(truth, BATCH, True, generator=stream)
        for label, learner in learners.items():
            learner.learn_many(batch)
            totals[label] += float(total_variation(_estimate(learner), truth))
    return TrackingResult(kind, seed, {label: t / steps for label, t in totals.items()})


def _truth_at(kind: str, a: torch.Tensor, b: torch.Tensor, n: int) -> torch.Tensor:
    """The tracking row's true distribution ``n`` records after the warm-up."""
    if kind == "ramp":
        f = min(1.0, n / 200_000)
        return (1.0 - f) * a + f * b
    return b if (n // 100_000) % 2 == 0 else a


def _tracking_records(kind: str) -> int:
    return 300_000 if kind == "ramp" else 600_000


def _median(values: Sequence[float | None]) -> float:
    """The median, a learner that never got there (None) counting as infinitely slow."""
    return statistics.median(float(v) if v is not None else float("inf") for v in values)


def _fmt(records: float) -> str:
    return "never (>1M)" if records == float("inf") else f"{records:,.0f}"


def _fmt_tv(tv: float) -> str:
    return "-" if tv == float("inf") else f"{tv:.3f}"


def _finite(value: float) -> float | None:
    return None if value == float("inf") else value


def switch_medians(runs: Sequence[SwitchResult]) -> dict[str, dict[str, float]]:
    """Per learner and figure, the median over the runs' seeds."""
    return {
        label: {
            fig: _median([r.figures[label][fig] for r in runs]) for fig in runs[0].figures[label]
        }
        for label in runs[0].figures
    }


def best_baseline(medians: dict[str, float]) -> str:
    """The baseline label with the smallest figure (records or TV)."""
    return min((label for label in medians if _is_baseline(label)), key=medians.__getitem__)


def _baselines_text(medians: dict[str, float], fmt: Callable[[float], str]) -> str:
    """The best baseline, the best fixed-memory counter and the detector-restarted counter."""
    best = best_baseline(medians)
    fixed = {k: v for k, v in medians.items() if _is_baseline(k) and k != DETECTOR_COUNTER}
    best_fixed = min(fixed, key=fixed.__getitem__)
    return (
        f"best baseline {best} {fmt(medians[best])}; best fixed-memory counter {best_fixed} "
        f"{fmt(medians[best_fixed])}, counter restarted by the DriftDetector "
        f"{fmt(medians[DETECTOR_COUNTER])}"
    )


def run_drift_bench(quick: bool = False) -> list[BenchResult]:
    """Every switch and tracking row, median over seeds (1 seed and the default GAN only
    when ``quick``)."""
    seeds = (0,) if quick else (0, 1, 2)
    variants = ("gan",) if quick else tuple(VARIANTS)
    seed_list = ",".join(map(str, seeds))
    results = []
    for i, (switch, (_, _, what)) in enumerate(SWITCHES.items()):
        runs = [run_switch(switch, seed, variants) for seed in seeds]
        medians = switch_medians(runs)
        settled = {label: m["settled"] for label, m in medians.items()}
        best = best_baseline(settled)
        gan = medians["gan"]
        detail = (
            f"{what}: records after the switch until within TV {TOLERANCE} for the next "
            f"{SETTLE_RECORDS:,}, median of seeds {seed_list}: GAN {_fmt(gan['settled'])} "
            f"(first crossing {_fmt(gan['first'])}, overshoot {_fmt_tv(gan['overshoot'])}); "
            + _baselines_text(settled, _fmt)
        )
        if "gan_tau_1" in settled:
            detail += f"; GAN with tau held at 1 {_fmt(settled['gan_tau_1'])}"
        if "gan_before" in settled:
            detail += f", GAN before issue 11 {_fmt(settled['gan_before'])}"
        results.append(
            BenchResult(
                name="drift" if i == 0 else f"drift_{switch}",
                value=1e6 / gan["settled"],
                baseline=1e6 / settled[best],
                unit="1e6 / records until settled within TV 0.05 after a switch",
                command=COMMAND,
                detail=detail + f" ({WARMUP:,} records before the switch, batches of {BATCH})",
                extra={
                    "switch": switch,
                    "seeds": list(seeds),
                    "figures": {
                        label: [r.figures[label] for r in runs] for label in runs[0].figures
                    },
                    "median": {
                        label: {fig: _finite(v) for fig, v in m.items()}
                        for label, m in medians.items()
                    },
                    "best_baseline": best,
                },
            )
        )
    for kind, (_, _, what) in TRACKING.items():
        tracks = [run_tracking(kind, seed, variants) for seed in seeds]
        per_learner_tv = {label: [t.mean_tv[label] for t in tracks] for label in tracks[0].mean_tv}
        medians_tv = {label: statistics.median(v) for label, v in per_learner_tv.items()}
        best = best_baseline(medians_tv)
        gan_tv = medians_tv["gan"]
        detail = (
            f"{what}: mean TV to the truth, median of seeds {seed_list}: GAN {gan_tv:.4f}; "
            + _baselines_text(medians_tv, lambda tv: f"{tv:.4f}")
        )
        if "gan_tau_1" in medians_tv:
            detail += f"; GAN with tau held at 1 {medians_tv['gan_tau_1']:.4f}"
        if "gan_before" in medians_tv:
            detail += f", GAN before issue 11 {medians_tv['gan_before']:.4f}"
        results.append(
            BenchResult(
                name=f"drift_{kind}",
                value=1.0 / gan_tv,
                baseline=1.0 / medians_tv[best],
                unit="1 / mean TV while tracking",
                command=COMMAND,
                detail=detail,
                extra={
                    "row": kind,
                    "seeds": list(seeds),
                    "mean_tv": per_learner_tv,
                    "median_mean_tv": medians_tv,
                    "best_baseline": best,
                },
            )
        )
    return results


START_CHECKPOINTS = (10_000, 30_000, 60_000, 120_000)  # records from a fresh learner


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
    parser.add_argument("--set", dest="options", type=option_arg, action="append", default=[])
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
            best = best_baseline(medians)
            print(
                f"{row}: mean TV, median of seeds {args.seeds}: {label} {medians['changed']:.4f}, "
                f"default {medians['gan']:.4f}, best baseline ({best}) {medians[best]:.4f}"
            )
        else:
            med = switch_medians([run_switch(row, s, ("gan", "changed")) for s in args.seeds])
            best = best_baseline({k: m["settled"] for k, m in med.items()})

            def cell(m: dict[str, float]) -> str:
                return (
                    f"{_fmt(m['settled'])} (first {_fmt(m['first'])}, "
                    f"overshoot {_fmt_tv(m['overshoot'])})"
                )

            print(
                f"{row}: records until settled within TV {TOLERANCE}, median of seeds "
                f"{args.seeds}: {label} {cell(med['changed'])}, default {cell(med['gan'])}, "
                f"best baseline ({best}) {cell(med[best])}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
