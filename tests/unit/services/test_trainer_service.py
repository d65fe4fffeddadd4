"""The trainer's composition root: the health file its probes read."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

from services.common.settings import TrainerServiceSettings
from services.trainer.service import Trainer
from services.trainer.status import LearnerStatus


def _trainer(health: Path, checkpoint_time: float) -> Trainer:
    trainer = Trainer(TrainerServiceSettings(trainer={"health_file": health}),
                      publish=lambda estimate: None)
    trainer.coordinator = SimpleNamespace(  # type: ignore[assignment]
        last_learner=LearnerStatus(checkpoint_time=checkpoint_time))
    return trainer


def test_the_health_file_keeps_the_learners_last_checkpoint_time(tmp_path: Path) -> None:
    """Written at the first checkpoint, then only moved forward (a learner that reports an
    older time, or none, leaves it): the probe sees the age of the newest checkpoint."""
    health = tmp_path / "health"
    _trainer(health, 0.0)._mark_health()
    assert not health.exists()  # no checkpoint yet: the probe fails, as it should
    when = time.time() - 30
    _trainer(health, when)._mark_health()
    assert abs(os.path.getmtime(health) - when) < 1e-3
    _trainer(health, when - 100)._mark_health()
    assert abs(os.path.getmtime(health) - when) < 1e-3


def test_without_a_health_file_nothing_is_written(tmp_path: Path) -> None:
    trainer = Trainer(TrainerServiceSettings(), publish=lambda estimate: None)
    trainer.coordinator = SimpleNamespace(  # type: ignore[assignment]
        last_learner=LearnerStatus(checkpoint_time=time.time()))
    trainer._mark_health()
    assert list(tmp_path.iterdir()) == []
