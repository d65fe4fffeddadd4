"""``gumbel-stream bench [NAME...] [--json]``: run benchmarks, print a table or one JSON object."""

from __future__ import annotations

import json
import logging
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from services.bench.results import BenchResult, format_table, machine_info

__all__ = ["run_bench", "describe", "gpu_result", "Bench", "BENCHES"]

log = logging.getLogger(__name__)


def _learn(quick: bool) -> list[BenchResult]:
    from services.bench.learn import run_learn_bench

    if quick:
        return run_learn_bench(batch_sizes=(64, 1024), samples_per_run=40_000, repeats=1)
    return run_learn_bench()


def _quality(quick: bool) -> list[BenchResult]:
    from services.bench.quality_summary import quality_results

    return quality_results(quick)


def _drift(quick: bool) -> list[BenchResult]:
    from services.bench.drift import run_drift_bench

    return run_drift_bench(quick)


def _gpu(quick: bool) -> list[BenchResult]:
    import torch

    if not torch.cuda.is_available():
        log.warning("bench gpu: no CUDA device, skipped")
        return []
    from services.bench.gpu import run_gpu_bench

    return [gpu_result(row) for row in run_gpu_bench(quick)]


# What a GPU row has besides its detail and device: in ``extra`` (``--json``) when present.
_GPU_EXTRA = ("roofline_fraction",)


def gpu_result(row: dict[str, Any]) -> BenchResult:
    """A ``run_gpu_bench`` row as a result: its detail with the device name after it, its
    roofline fraction (the fused kernel's) in ``extra``."""
    detail = "; ".join(part for part in (row.get("detail", ""), row.get("device", "")) if part)
    return BenchResult(
        name=row["name"],
        value=row["value"],
        baseline=row["baseline"],
        unit=row["unit"],
        command=row["command"],
        detail=detail,
        extra={key: row[key] for key in _GPU_EXTRA if key in row},
    )


def _kafka_bench(name: str) -> Callable[[bool], list[BenchResult]]:
    """A benchmark that needs the broker the benchmark starts (one per benchmark)."""

    def run(quick: bool) -> list[BenchResult]:
        from services.bench import streaming
        from services.common.settings import KafkaSettings

        n = 100_000 if quick else 1_000_000
        with streaming.bench_broker() as broker:
            kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers)
            if name == "produce":
                return [streaming.bench_produce(kafka, n, repeats=1 if quick else 2)]
            if name == "ingest":
                repeats = 1 if quick else 3  # median of 3 alternating runs (issue 12)
                return [
                    streaming.bench_ingest(kafka, n, repeats),
                    # issue 21's goal: 5M values/s learning every value, TV <= 0.01 after 20M
                    streaming.bench_ingest(kafka, 20 * n, repeats, values_per_record=1024),
                    streaming.bench_ingest(
                        kafka, 20 * n, repeats, values_per_record=1024, backpressure="sample"
                    ),
                ]
            if name == "ingest_partitions":
                return streaming.bench_ingest_partitions(kafka, 30_000 if quick else 300_000)
            if name == "latency":
                from services.bench.latency import bench_latency

                return bench_latency(kafka, seconds=10.0 if quick else 30.0)
            return [streaming.bench_scale(kafka, n // 2)]

    return run


@dataclass(frozen=True)
class Bench:
    """A benchmark: its runner (``quick`` → results) and what it measures, for ``--help``."""

    run: Callable[[bool], list[BenchResult]]
    measures: str
    by_default: bool = True  # run when no names are given


BENCHES: dict[str, Bench] = {
    "ingest": Bench(
        _kafka_bench("ingest"),
        "records/s the learner learns from a Kafka topic through one ingest actor, vs a bare "
        "consumer draining it (ASCII, packed, and packed with backpressure=sample)",
    ),
    "ingest_partitions": Bench(
        _kafka_bench("ingest_partitions"),
        "records/s the learner learns through 2 Ray ingest actors from 32 and 128 partitions, "
        "vs from 2",
    ),
    "latency": Bench(
        _kafka_bench("latency"),
        "seconds from a record's timestamp to the GAN step that learned it (p50, p99; lower "
        "is better) at 1,000 records/s, vs to a bare consumer's poll",
    ),
    "produce": Bench(
        _kafka_bench("produce"),
        "records/s the producer service sends, vs a bare KafkaProducer.send loop with the same "
        "client settings",
    ),
    "learn": Bench(
        _learn,
        "OnlineGAN samples/s on the CPU per batch size, vs a plain eager PyTorch loop of the "
        "same GAN",
    ),
    "scale": Bench(
        _kafka_bench("scale"),
        "records/s the learner learns fed by two Ray ingest actors vs one, on 2 partitions",
    ),
    "drift": Bench(
        _drift,
        "how fast the estimate follows a switch in the stream (and its error while the truth "
        "moves), vs forgetting counters",
    ),
    "quality": Bench(
        _quality,
        "the default learner's total variation to the truth, vs the exact counting estimator "
        "on the same samples",
    ),
    "gpu": Bench(
        _gpu,
        "CUDA only (else skipped): the fused Gumbel-softmax vs F.gumbel_softmax, the "
        "CUDA-graph GAN step vs the eager one",
    ),
}


def describe() -> str:
    """The benchmark names and what each measures, for ``gumbel-stream bench --help``."""
    width = max(len(name) for name in BENCHES)
    lines = textwrap.wrap("benchmarks, each value next to a baseline measured in the same run "
                          "(ratio = value / baseline: higher is better):", 78)
    for name, bench in BENCHES.items():
        lines.append(textwrap.fill(bench.measures, 78, initial_indent=f"  {name:<{width}}  ",
                                   subsequent_indent=" " * (width + 4)))
    lines.append(textwrap.fill("ingest, ingest_partitions, latency, produce and scale start "
                               "Apache "
                               "Kafka from the pinned "
                               "jars (Java 17 and Maven); docs/performance.md has the figures "
                               "and the commands that made them", 78))
    return "\n".join(lines)


def run_bench(names: Sequence[str], as_json: bool = False, quick: bool = False) -> int:
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(
            f"gumbel-stream: unknown benchmark {', '.join(unknown)} (known: {', '.join(BENCHES)})",
            file=sys.stderr,
        )
        return 2
    selected = list(names) or [n for n, bench in BENCHES.items() if bench.by_default]
    results: list[BenchResult] = []
    for name in selected:
        log.info("bench %s: running%s", name, " (quick)" if quick else "")
        results.extend(BENCHES[name].run(quick))
    if as_json:
        print(json.dumps({"machine": machine_info(), "results": [r.to_dict() for r in results]}))
    else:
        print(f"machine: {machine_info()}")
        print(format_table(results))
    return 0
