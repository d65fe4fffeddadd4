"""Settings that derive from others (the trainer's consumer group from its model id), and the
bootstrap address checked at start."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.cli import SERVICES, SettingsError, build_parser, load_settings
from services.common.settings import (
    KafkaSettings,
    ProducerServiceSettings,
    TrainerServiceSettings,
    TrainerSettings,
    parse_bootstrap_servers,
)


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


@pytest.mark.parametrize("port", ["1", "65535"])
def test_a_bootstrap_port_from_1_to_65535_is_accepted(port: str) -> None:
    assert parse_bootstrap_servers(f"127.0.0.1:{port}") == f"127.0.0.1:{port}"
    assert KafkaSettings(bootstrap_servers=f"[::1]:{port}").bootstrap_servers == f"[::1]:{port}"


@pytest.mark.parametrize(
    ("servers", "why"),
    [("127.0.0.1:99999", "not in 1..65535"), ("127.0.0.1:0", "not in 1..65535"),
     ("127.0.0.1", "is not host:port"), ("127.0.0.1:", "is not host:port"),
     ("a:9092,b:99999", "port 99999 of 'b:99999'")],
)
def test_a_bootstrap_address_without_a_valid_port_is_rejected_naming_the_setting(
    servers: str, why: str
) -> None:
    """At start, in one line naming the flag and the variable, not after the connect timeout
    (issue 10, defect 7)."""
    with pytest.raises(ValueError, match=why):
        parse_bootstrap_servers(servers)
    args = build_parser().parse_args(["producer", "--bootstrap-servers", servers])
    with pytest.raises(SettingsError) as raised:
        load_settings(ProducerServiceSettings, SERVICES["producer"].flags, args)
    message = str(raised.value)
    assert message.startswith("invalid setting kafka.bootstrap_servers "), message
    for name in ("--bootstrap-servers", "GUMBEL_KAFKA__BOOTSTRAP_SERVERS", why):
        assert name in message, message


def test_learner_resources_are_a_json_object_of_custom_resources(monkeypatch) -> None:
    monkeypatch.setenv("GUMBEL_TRAINER__LEARNER_RESOURCES", '{"gumbel-learner": 1}')
    assert TrainerServiceSettings().trainer.learner_resources == {"gumbel-learner": 1.0}


@pytest.mark.parametrize("value, says", [
    ("gumbel-learner", "not JSON"), ("[1]", "not a JSON object"),
    ('{"GPU": 1}', "'GPU' is not a custom resource"), ('{"x": 0}', "'x': 0 is not a positive"),
])
def test_bad_learner_resources_name_the_setting(monkeypatch, value: str, says: str) -> None:
    monkeypatch.setenv("GUMBEL_TRAINER__LEARNER_RESOURCES", value)
    with pytest.raises(SettingsError) as caught:
        load_settings(TrainerServiceSettings, [], build_parser().parse_args(["trainer"]))
    message = str(caught.value)
    assert message.startswith("invalid setting trainer.learner_resources "
                              "(GUMBEL_TRAINER__LEARNER_RESOURCES): "), message
    assert says in message


def test_the_choices_come_from_their_one_source() -> None:
    from typing import get_args

    from gumbel_core import ESTIMATORS
    from services.common.event_format import EVENT_FORMATS
    from services.common.settings import COMPRESSION_TYPES, EventSettings, KafkaSettings

    for name in ESTIMATORS:
        assert TrainerSettings(estimator=name).estimator == name
    with pytest.raises(ValidationError, match="choose one of soft, st"):
        TrainerSettings(estimator="gumbel")
    assert get_args(EventSettings.model_fields["format"].annotation) == EVENT_FORMATS
    assert get_args(KafkaSettings.model_fields["compression_type"].annotation) == (
        COMPRESSION_TYPES)
