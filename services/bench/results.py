"""One benchmark figure, and the machine it was measured on."""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["BenchResult", "machine_info", "format_table", "load_results"]


@dataclass(frozen=True)
class BenchResult:
    """``ratio`` is value over baseline, both measured in the same run; higher is better.

    ``extra`` holds a benchmark's own per-learner figures (e.g. the drift bench's records per
    seed); it appears in ``--json`` output only when not empty."""

    name: str
    value: float
    baseline: float
    unit: str
    command: str
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("nan")

    def to_dict(self) -> dict[str, Any]:
        out = {**asdict(self), "ratio": self.ratio}
        if not self.extra:
            del out["extra"]
        return out


def machine_info() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    try:
        import kafka

        info["kafka_python"] = kafka.__version__
    except ImportError:
        pass
    return info


def format_table(results: list[BenchResult]) -> str:
    header = "| name | value | baseline | ratio | unit | detail |\n|---|---:|---:|---:|---|---|\n"
    rows = "".join(
        f"| {r.name} | {r.value:,.4g} | {r.baseline:,.4g} | {r.ratio:.2f} "
        f"| {r.unit} | {r.detail} |\n"
        for r in results
    )
    return header + rows


def load_results(path: str) -> list[BenchResult]:
    """The results of a ``gumbel-stream bench --json`` run saved at ``path``."""
    with open(path) as f:
        rows = json.load(f)["results"]
    return [BenchResult(**{k: v for k, v in row.items() if k != "ratio"}) for row in rows]


def main(argv: list[str] | None = None) -> int:
    """``python -m services.bench.results FILE``: a saved run as the markdown table the
    docs show (docs/performance.md holds deploy/bench/results.json's table verbatim)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m services.bench.results RESULTS.json", file=sys.stderr)
        return 2
    print(format_table(load_results(args[0])), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
