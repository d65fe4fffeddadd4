"""``gumbel-stream bench [NAME...] [--json]``: run benchmarks, print a table or one JSON object."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Sequence

from services.bench.results import BenchResult, format_table, machine_info

__all__ = ["run_bench", "BENCHES"]

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

    return [
        BenchResult(
            name=row["name"],
            value=row["value"],
            baseline=row["baseline"],
            unit=row["unit"],
            command=row["command"],
            detail=row.get("device", ""),
        )
        for row in run_gpu_bench(quick)
    ]


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
                repeats = 1 if quick else 2
                return [
                    streaming.bench_ingest(kafka, n, repeats),
                    streaming.bench_ingest(kafka, 4 * n, repeats, values_per_record=1024),
                    streaming.bench_ingest(
                        kafka, 20 * n, repeats, values_per_record=1024, backpressure="sample"
                    ),
                ]
            return [streaming.bench_scale(kafka, n // 2)]

    return run


# name -> (runner, included when no names are given)
BENCHES: dict[str, tuple[Callable[[bool], list[BenchResult]], bool]] = {
    "ingest": (_kafka_bench("ingest"), True),
    "produce": (_kafka_bench("produce"), True),
    "learn": (_learn, True),
    "scale": (_kafka_bench("scale"), True),
    "drift": (_drift, True),
    "quality": (_quality, True),
    "gpu": (_gpu, True),
}


def run_bench(names: Sequence[str], as_json: bool = False, quick: bool = False) -> int:
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(
            f"gumbel-stream: unknown benchmark {', '.join(unknown)} (known: {', '.join(BENCHES)})",
            file=sys.stderr,
        )
        return 2
    selected = list(names) or [n for n, (_, default) in BENCHES.items() if default]
    results: list[BenchResult] = []
    for name in selected:
        log.info("bench %s: running%s", name, " (quick)" if quick else "")
        results.extend(BENCHES[name][0](quick))
    if as_json:
        print(json.dumps({"machine": machine_info(), "results": [r.to_dict() for r in results]}))
    else:
        print(f"machine: {machine_info()}")
        print(format_table(results))
    return 0
