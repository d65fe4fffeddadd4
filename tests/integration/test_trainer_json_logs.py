"""`GUMBEL_LOG_FORMAT=json gumbel-stream trainer` on a real broker and a local Ray: every line
it prints, its Ray actors' included, is one JSON object with ``model_id``, and the actors' lines
carry their ``actor``, partitions and offsets as fields (issue 22 §3, logs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from services.up import service_env
from tests.integration.ray_cluster import latest_estimate, stop_driver
from tests.integration.trainer_helpers import K, eventually, make_settings, produce, stream

pytestmark = [pytest.mark.kafka, pytest.mark.ray, pytest.mark.slow]


def _entries(text: str) -> list[dict[str, Any]]:
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            entries.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"line {number} is not JSON: {line!r}\n{text[-3000:]}") from None
    return entries


def test_every_trainer_line_is_json_with_its_fields(kafka_broker: Any, tmp_path: Path) -> None:
    settings = make_settings(kafka_broker.bootstrap_servers, tmp_path / "checkpoints")
    values = stream(400, seed=3)
    values[5] = str(K + 2).encode()  # out of range: partition 1, offset 1 (round-robin over 4)
    produce(settings, values)
    env = {**{k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)},
           **service_env(settings, "trainer"),  # type: ignore[arg-type]
           "GUMBEL_LOG_FORMAT": "json", "GUMBEL_LOG_LEVEL": "info"}
    log_path = tmp_path / "trainer.log"
    with open(log_path, "wb") as log:
        driver = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "trainer"], env=env,
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    try:
        def learned() -> bool:
            assert driver.poll() is None, log_path.read_text()[-3000:]
            estimate = latest_estimate(settings)
            return estimate is not None and estimate.samples_seen >= len(values) - 1

        eventually(learned, 180, lambda: f"all learned\n{log_path.read_text()[-3000:]}")
    finally:
        stop_driver(driver, log_path)
    entries = _entries(log_path.read_text())
    model_id = settings.trainer.model_id
    # Ray's C++ core worker writes its own JSON lines (RAY_BACKEND_LOG_JSON): no Python
    # logging, so no model_id there. Every other line has it.
    python = [e for e in entries if not str(e.get("filename", "")).endswith(".cc")]
    assert len(python) >= len(entries) - 3
    assert all(e.get("model_id") == model_id for e in python), [
        e for e in python if e.get("model_id") != model_id][:3]

    def one(message_part: str) -> dict[str, Any]:
        found = [e for e in entries if message_part in e.get("message", "")]
        assert found, f"no line with {message_part!r}: {[e.get('message') for e in entries]}"
        return found[0]

    reads = [e for e in entries if "reads" in e.get("message", "") and "actor" in e]
    assert {e["actor"] for e in reads} == {"ingest-0", "ingest-1"}
    assert sorted(p for e in reads for p in e["partitions"]) == [0, 1, 2, 3]
    assert all(set(e["offsets"]) == {str(p) for p in e["partitions"]} for e in reads)
    mismatch = one("outside [0, 5)")
    assert (mismatch["actor"], mismatch["partition"], mismatch["offset"]) == ("ingest-1", 1, 1)
    assert "ingest actor" not in mismatch["message"] and "partition" not in mismatch["message"]
    epoch = one("learner claimed an epoch")
    assert epoch["actor"] == "learner" and epoch["epoch"] >= 1
    assert one("final estimate")["logger"] == "services.trainer.service"
