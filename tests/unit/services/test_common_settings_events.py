"""The shared ``events`` settings: one format, field and list of names for the producer and
the trainer, checked against K at load, with one line naming the setting when wrong."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services import cli
from services.common import settings
from services.common.settings import (
    EventSettings,
    ProducerServiceSettings,
    TrainerServiceSettings,
    UpSettings,
)


def _parsed(*argv: str) -> Any:
    args = cli.build_parser().parse_args(argv)
    command = cli.SERVICES[args.command]
    return cli.load_settings(getattr(settings, command.settings), command.flags, args)


def test_ascii_ids_are_the_default() -> None:
    events = TrainerServiceSettings().events
    assert (events.format, events.json_field, events.categories) == ("ascii", "event", [])


def test_the_flags_set_the_shared_group_of_each_service() -> None:
    trainer = _parsed("trainer", "--format", "json", "--json-field", "payload.type",
                      "--categories", "click, view,buy", "--num-categories", "3")
    assert (trainer.events.format, trainer.events.json_field, trainer.events.categories) == (
        "json", "payload.type", ["click", "view", "buy"])
    producer = _parsed("producer", "--format", "string", "--categories", "a,b",
                       "--probabilities", "0.5,0.5")
    assert (producer.events.format, producer.events.categories) == ("string", ["a", "b"])


def test_the_environment_sets_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUMBEL_EVENTS__FORMAT", "string")
    monkeypatch.setenv("GUMBEL_EVENTS__CATEGORIES", "click,view,buy")
    monkeypatch.setenv("GUMBEL_TRAINER__NUM_CATEGORIES", "3")
    events = TrainerServiceSettings().events
    assert (events.format, events.categories) == ("string", ["click", "view", "buy"])


@pytest.mark.parametrize("argv", [
    ("trainer", "--categories", "click,view,buy"),  # K is 5 by default
    ("producer", "--categories", "click,view", "--probabilities", "0.2,0.3,0.5"),
    ("up", "--categories", "a,b,c", "--probabilities", "0.2,0.3,0.5"),  # trainer K=5
])
def test_names_must_be_k_with_one_line_naming_the_setting(argv: tuple[str, ...]) -> None:
    with pytest.raises(cli.SettingsError) as raised:
        _parsed(*argv)
    message = str(raised.value)
    assert message.startswith(
        "invalid setting events.categories (--categories, GUMBEL_EVENTS__CATEGORIES): "), message
    assert "categories" in message and "\n" not in message


def test_names_that_match_k_load() -> None:
    up = _parsed("up", "--categories", "a,b,c", "--probabilities", "0.2,0.3,0.5",
                 "--num-categories", "3")
    assert up.events.categories == ["a", "b", "c"]


@pytest.mark.parametrize(("categories", "message"), [
    ("a,,b", "empty"), ("a,b,a", "distinct"), ("a", "at least 2"),
])
def test_bad_names_are_rejected(categories: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        EventSettings(categories=categories)


def test_the_string_format_needs_names() -> None:
    with pytest.raises(ValidationError, match="needs categories"):
        EventSettings(format="string")


@pytest.mark.parametrize("field", ["", ".event", "payload..type", "event."])
def test_a_json_field_is_a_dotted_path(field: str) -> None:
    with pytest.raises(ValidationError):
        EventSettings(json_field=field)


def test_the_old_producer_format_setting_still_works() -> None:
    producer = ProducerServiceSettings(producer={"format": "packed"})
    assert producer.events.format == "packed"
    assert UpSettings(producer={"format": "packed"}).events.format == "packed"
