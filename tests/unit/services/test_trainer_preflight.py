"""Settings the machine contradicts stop the trainer before Ray starts, in one line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from services.common.errors import StartupError
from services.common.settings import TrainerSettings
from services.trainer.checkpoint import CheckpointStore, learner_dir
from services.trainer.preflight import (
    check_checkpoint_dir,
    check_checkpoints_match,
    check_cpus,
    check_gpus,
    check_learner_resources,
)


def _learner_state(k: int, estimator: str) -> dict:
    return {"learner": {"config": {"num_categories": k, "estimator": estimator}},
            "offsets": {0: 1}, "w": torch.zeros(1)}


def test_a_checkpoint_dir_that_is_a_file_names_the_setting(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(StartupError, match=r"trainer.checkpoint_dir \(--checkpoint-dir, "
                       r"GUMBEL_TRAINER__CHECKPOINT_DIR\): cannot write"):
        check_checkpoint_dir(TrainerSettings(checkpoint_dir=target))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_checkpoint_dir_names_the_setting(tmp_path: Path) -> None:
    (tmp_path / "ro").mkdir(mode=0o500)
    with pytest.raises(StartupError, match="GUMBEL_TRAINER__CHECKPOINT_DIR"):
        check_checkpoint_dir(TrainerSettings(checkpoint_dir=tmp_path / "ro"))


def test_a_writable_checkpoint_dir_passes_and_leaves_nothing(tmp_path: Path) -> None:
    check_checkpoint_dir(TrainerSettings(checkpoint_dir=tmp_path, model_id="m"))
    assert list((tmp_path / "m").iterdir()) == []


@pytest.mark.parametrize(
    ("setting", "value", "flag"),
    [("num_categories", 7, "--num-categories"), ("estimator", "rao", "--estimator")],
)
def test_checkpoints_of_another_shape_name_the_setting(tmp_path, setting, value, flag) -> None:
    CheckpointStore(learner_dir(tmp_path, "m")).save(_learner_state(5, "st"))
    cfg = TrainerSettings(checkpoint_dir=tmp_path, model_id="m", **{setting: value})
    with pytest.raises(StartupError, match=rf"trainer.{setting} \({flag}, .*written with"):
        check_checkpoints_match(cfg)


def test_matching_checkpoints_pass(tmp_path: Path) -> None:
    CheckpointStore(learner_dir(tmp_path, "m")).save(_learner_state(5, "st"))
    check_checkpoints_match(TrainerSettings(checkpoint_dir=tmp_path, model_id="m"))


def test_corrupt_checkpoints_stop_the_start_unless_a_policy_says_otherwise(tmp_path) -> None:
    path = CheckpointStore(learner_dir(tmp_path, "m")).save(_learner_state(5, "st")).path
    path.write_bytes(b"torn")
    with pytest.raises(StartupError, match="is corrupt.*on_corrupt_checkpoint"):
        check_checkpoints_match(TrainerSettings(checkpoint_dir=tmp_path, model_id="m"))
    check_checkpoints_match(
        TrainerSettings(checkpoint_dir=tmp_path, model_id="m", on_corrupt_checkpoint="relearn")
    )


def test_checkpoints_of_the_per_partition_layout_stop_the_start_in_one_line(tmp_path) -> None:
    """One learner per model cannot continue per-partition learners: refused, not mixed."""
    CheckpointStore(tmp_path / "m" / "actor-0").save(_learner_state(5, "st"))
    with pytest.raises(StartupError, match=r"per-partition layout .*on_corrupt_checkpoint \("
                       r"GUMBEL_TRAINER__ON_CORRUPT_CHECKPOINT\) to relearn .* accept_loss"):
        check_checkpoints_match(TrainerSettings(checkpoint_dir=tmp_path, model_id="m"))
    for policy in ("relearn", "accept_loss"):
        check_checkpoints_match(TrainerSettings(checkpoint_dir=tmp_path, model_id="m",
                                                on_corrupt_checkpoint=policy))


def test_gpus_the_cluster_lacks_name_the_setting() -> None:
    """Only the learner takes a GPU, however many ingest actors there are."""
    cfg = TrainerSettings(gpus_per_actor=1, num_actors=4)
    with pytest.raises(StartupError, match=r"--gpus-per-actor.*needs 1 GPUs, the Ray cluster "
                       r"has 0.5"):
        check_gpus(cfg, {"CPU": 2.0, "GPU": 0.5})
    check_gpus(cfg, {"GPU": 1.0})
    check_gpus(TrainerSettings(), {"CPU": 2.0})


def test_cpus_the_cluster_lacks_name_the_setting() -> None:
    """The learner and each ingest actor ask for a CPU: on too small a cluster Ray would wait
    for them forever."""
    with pytest.raises(StartupError, match=r"GUMBEL_TRAINER__CPUS_PER_ACTOR.*needs 4 CPUs, the "
                       r"Ray cluster has 2 \(the learner and 3 ingest actors"):
        check_cpus(TrainerSettings(num_actors=3), {"CPU": 2.0})
    check_cpus(TrainerSettings(num_actors=1), {"CPU": 2.0})
    check_cpus(TrainerSettings(num_actors=3, cpus_per_actor=0.5), {"CPU": 2.0})


def test_a_learner_resource_the_cluster_lacks_names_the_setting() -> None:
    """Ray would wait forever for a node that offers it (the learner's worker group)."""
    cfg = TrainerSettings(learner_resources={"gumbel-learner": 1})
    with pytest.raises(StartupError, match=r"GUMBEL_TRAINER__LEARNER_RESOURCES.*needs 1 "
                       r"'gumbel-learner' resources, the Ray cluster has 0"):
        check_learner_resources(cfg, {"CPU": 4.0, "GPU": 1.0})
    check_learner_resources(cfg, {"CPU": 4.0, "gumbel-learner": 1.0})
    check_learner_resources(TrainerSettings(), {"CPU": 4.0})
