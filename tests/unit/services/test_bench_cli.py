"""``gumbel-stream bench --json`` prints one JSON object in the shape of docs/performance.md."""

from __future__ import annotations

import json
import math

import pytest

from services.cli import main

pytestmark = pytest.mark.slow


def test_bench_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--log-level", "WARNING", "bench", "learn", "drift", "--quick", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"machine", "results"}
    assert report["machine"]["cores"] >= 1 and report["machine"]["torch"]
    names = [r["name"] for r in report["results"]]
    assert "learn" in names and "drift" in names
    for row in report["results"]:
        assert {"name", "value", "baseline", "ratio", "unit", "command"} <= set(row)
        assert row["value"] > 0 and row["baseline"] > 0
        assert math.isclose(row["ratio"], row["value"] / row["baseline"])
        assert row["command"].startswith("gumbel-stream bench")


def test_unknown_benchmark_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "nonsense"]) == 2
    assert "unknown benchmark nonsense" in capsys.readouterr().err
