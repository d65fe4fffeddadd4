"""`gumbel-stream trainer` with settings the machine contradicts: one line, no traceback, and
nothing started (issue 10, defect 6). Each case runs the real command in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from services.brokers import free_port
from services.trainer.checkpoint import CheckpointStore, learner_dir


def _trainer(*args: str, timeout_s: float = 60) -> tuple[int, str, float]:
    env = {**os.environ, "GUMBEL_KAFKA__CONNECT_TIMEOUT_S": "2"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "trainer", *args],
        env=env, capture_output=True, text=True, timeout=timeout_s,
    )
    return done.returncode, done.stderr, time.monotonic() - started


def _one_clear_line(stderr: str, *needles: str) -> None:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_an_unreachable_broker_is_one_error_line(tmp_path: Path) -> None:
    code, stderr, _ = _trainer("--bootstrap-servers", f"127.0.0.1:{free_port()}",
                               "--checkpoint-dir", str(tmp_path))
    assert code == 1
    errors = [line for line in stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "did not answer within 2s" in errors[0], stderr
    assert "Traceback" not in stderr


def test_a_checkpoint_dir_that_is_a_file_stops_at_once(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("not a directory")
    code, stderr, seconds = _trainer("--checkpoint-dir", str(target))
    assert code == 2 and seconds < 30
    _one_clear_line(stderr, "--checkpoint-dir", "GUMBEL_TRAINER__CHECKPOINT_DIR")


def test_checkpoints_of_another_k_stop_at_once(tmp_path: Path) -> None:
    store = CheckpointStore(learner_dir(tmp_path, "default"))
    store.save({"learner": {"config": {"num_categories": 5, "estimator": "st"}}})
    code, stderr, _ = _trainer("--checkpoint-dir", str(tmp_path), "--num-categories", "7")
    assert code == 2
    _one_clear_line(stderr, "--num-categories", "written with 5")


def test_corrupt_checkpoints_stop_at_once_by_default(tmp_path: Path) -> None:
    store = CheckpointStore(learner_dir(tmp_path, "default"))
    store.save({"learner": {}}).path.write_bytes(b"torn")
    code, stderr, _ = _trainer("--checkpoint-dir", str(tmp_path))
    assert code == 2
    _one_clear_line(stderr, "corrupt", "GUMBEL_TRAINER__ON_CORRUPT_CHECKPOINT")


def test_checkpoints_of_the_per_partition_layout_stop_at_once_naming_the_choice(
    tmp_path: Path,
) -> None:
    """A checkpoint_dir from before one learner per model: refused, never mixed in."""
    CheckpointStore(tmp_path / "default" / "actor-0").save({"learners": {}, "offsets": {}})
    code, stderr, seconds = _trainer("--checkpoint-dir", str(tmp_path))
    assert code == 2 and seconds < 30
    _one_clear_line(stderr, "per-partition layout", "GUMBEL_TRAINER__ON_CORRUPT_CHECKPOINT")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpus_this_machine_lacks_stop_at_once_instead_of_hanging(tmp_path: Path) -> None:
    code, stderr, seconds = _trainer("--gpus-per-actor", "1", "--checkpoint-dir", str(tmp_path))
    assert code == 2 and seconds < 30
    _one_clear_line(stderr, "--gpus-per-actor", "this machine has 0")
