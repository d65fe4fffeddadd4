"""A saved ``gumbel-stream bench --json`` run reads back, and docs/performance.md prints it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.bench.results import BenchResult, format_table, load_results, main

ROOT = Path(__file__).resolve().parents[3]
RESULTS = ROOT / "deploy/bench/results.json"


def test_a_saved_run_reads_back_as_the_results_it_saved(tmp_path: Path) -> None:
    saved = [BenchResult("learn", 3.0, 2.0, "samples/s", "gumbel-stream bench learn", "d"),
             BenchResult("drift", 1.0, 4.0, "1/x", "gumbel-stream bench drift", "",
                         {"gan": [1, 2]})]
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"machine": {}, "results": [r.to_dict() for r in saved]}))
    assert load_results(str(path)) == saved


def test_the_performance_page_holds_the_committed_runs_table() -> None:
    table = format_table(load_results(str(RESULTS)))
    name = RESULTS.relative_to(ROOT)
    assert table in (ROOT / "docs/performance.md").read_text(), (
        f"docs/performance.md does not hold {name}'s table: paste "
        f"`python -m services.bench.results {name}`")


def test_the_command_prints_the_table_and_refuses_no_file(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(RESULTS)]) == 0
    assert capsys.readouterr().out == format_table(load_results(str(RESULTS)))
    assert main([]) == 2
    assert "usage" in capsys.readouterr().err


def test_a_gpu_row_keeps_its_detail_and_roofline_fraction_beside_the_device() -> None:
    from services.bench.cli import gpu_result

    row = {"name": "gpu_gumbel_softmax", "value": 3000.0, "baseline": 1000.0,
           "ratio": 3.0, "unit": "GB/s effective", "command": "gumbel-stream bench gpu",
           "device": "NVIDIA H200", "detail": "(65536, 64) float32 soft",
           "roofline_fraction": 0.62}
    result = gpu_result(row).to_dict()
    assert result["detail"] == "(65536, 64) float32 soft; NVIDIA H200"
    assert result["extra"] == {"roofline_fraction": 0.62}
    assert result["ratio"] == 3.0


def test_a_gpu_row_without_a_roofline_has_no_extra() -> None:
    from services.bench.cli import gpu_result

    row = {"name": "gpu_step", "value": 2.0, "baseline": 1.0, "unit": "steps/s",
           "command": "gumbel-stream bench gpu", "device": "NVIDIA H200", "detail": "K=5"}
    assert gpu_result(row).detail == "K=5; NVIDIA H200"
    assert "extra" not in gpu_result(row).to_dict()
