"""The learner's Ray resource (trainer.learner_resources) places the checkpoint checks where
the learner will run: on Kubernetes the worker group that mounts the ReadWriteOnce volume."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.errors import StartupError
from services.common.settings import TrainerServiceSettings
from services.trainer.service import check_checkpoints_where_the_learner_runs

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def ray_with_a_learner_node() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("needs a Ray of its own (with the gumbel-learner resource)")
    ray.init(address="local", num_cpus=1, resources={"gumbel-learner": 1},
             include_dashboard=False, namespace=f"test-{uuid.uuid4().hex[:6]}",
             logging_level="WARNING")
    yield
    ray.shutdown()


def _settings(checkpoint_dir: Path, resources: dict[str, float]) -> TrainerServiceSettings:
    return TrainerServiceSettings(trainer={"checkpoint_dir": checkpoint_dir,
                                           "learner_resources": resources})


def test_the_check_runs_on_the_learners_node_and_names_the_setting(
        ray_with_a_learner_node: None, tmp_path: Path) -> None:
    check_checkpoints_where_the_learner_runs(_settings(tmp_path, {"gumbel-learner": 1}))
    assert (tmp_path / "default").is_dir()
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.raises(StartupError, match=r"^invalid setting trainer.checkpoint_dir .*"
                       r"GUMBEL_TRAINER__CHECKPOINT_DIR.*\(on the learner's node\)$"):
        check_checkpoints_where_the_learner_runs(_settings(not_a_dir, {"gumbel-learner": 1}))


def test_no_node_with_the_resource_is_one_line_not_a_hang(
        ray_with_a_learner_node: None, tmp_path: Path) -> None:
    with pytest.raises(StartupError, match=r"did not run in 3 s.*"
                       r"GUMBEL_TRAINER__LEARNER_RESOURCES"):
        check_checkpoints_where_the_learner_runs(_settings(tmp_path, {"gumbel-learner": 2}),
                                                 timeout_s=3)
