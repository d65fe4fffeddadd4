"""Settings that derive from others: the trainer's consumer group from its model id."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.common.settings import TrainerServiceSettings, TrainerSettings


def test_the_default_consumer_group_derives_from_the_model_id() -> None:
    assert TrainerSettings().group_id == "gumbel-trainer-default"
    assert TrainerSettings(model_id="clicks").group_id == "gumbel-trainer-clicks"


def test_an_explicit_consumer_group_is_kept() -> None:
    assert TrainerSettings(model_id="clicks", group_id="gumbel-trainer").group_id == (
        "gumbel-trainer")
    with pytest.raises(ValidationError, match="group_id"):
        TrainerSettings(group_id="")


def test_the_environment_sets_either(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUMBEL_TRAINER__MODEL_ID", "views")
    assert TrainerServiceSettings().trainer.group_id == "gumbel-trainer-views"
    monkeypatch.setenv("GUMBEL_TRAINER__GROUP_ID", "shared")
    assert TrainerServiceSettings().trainer.group_id == "shared"
