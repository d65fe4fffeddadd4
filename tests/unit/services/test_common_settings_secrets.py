"""Mounted secrets (GUMBEL_SECRETS_DIR): one file per setting, named section__field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from services.common.settings import SECRETS_DIR_ENV, TrainerServiceSettings

SASL = {
    "GUMBEL_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
    "GUMBEL_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
}


def _clean_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("GUMBEL_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def test_a_file_named_like_the_nested_field_sets_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "kafka__sasl_username").write_text("alice")
    (tmp_path / "kafka__sasl_password").write_text("hunter2")
    _clean_env(monkeypatch, {**SASL, SECRETS_DIR_ENV: str(tmp_path)})
    settings = TrainerServiceSettings()
    assert settings.kafka.sasl_username == "alice"
    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password.get_secret_value() == "hunter2"
    assert settings.secrets_dir == tmp_path
    assert "hunter2" not in repr(settings)


def test_a_kubernetes_secret_volume_layout_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kubelet mounts a Secret as links into a hidden ..data directory."""
    data = tmp_path / "..2026_01_01"
    data.mkdir()
    (data / "KAFKA__SASL_PASSWORD").write_text("s3cret")
    (tmp_path / "..data").symlink_to(data.name)
    (tmp_path / "KAFKA__SASL_PASSWORD").symlink_to("..data/KAFKA__SASL_PASSWORD")
    _clean_env(monkeypatch, {**SASL, "GUMBEL_KAFKA__SASL_USERNAME": "bob",
                             SECRETS_DIR_ENV: str(tmp_path)})
    settings = TrainerServiceSettings()
    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password.get_secret_value() == "s3cret"


def test_the_environment_wins_over_a_secret_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "kafka__sasl_username").write_text("from-file")
    _clean_env(monkeypatch, {"GUMBEL_KAFKA__SASL_USERNAME": "from-env",
                             SECRETS_DIR_ENV: str(tmp_path)})
    assert TrainerServiceSettings().kafka.sasl_username == "from-env"


def test_without_the_secrets_the_sasl_check_names_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _clean_env(monkeypatch, {**SASL, SECRETS_DIR_ENV: str(tmp_path)})
    with pytest.raises(ValidationError, match="sasl_username, sasl_password"):
        TrainerServiceSettings()


def test_a_missing_secrets_dir_fails_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _clean_env(monkeypatch, {SECRETS_DIR_ENV: str(tmp_path / "absent")})
    with pytest.raises(Exception, match="absent"):
        TrainerServiceSettings()


def _secrets_dir_error(monkeypatch: pytest.MonkeyPatch, secrets_dir: str) -> str:
    from pydantic_settings import SettingsError

    _clean_env(monkeypatch, {SECRETS_DIR_ENV: secrets_dir})
    with pytest.raises(SettingsError) as caught:  # the CLI prints it as one line, exit 2
        TrainerServiceSettings()
    message = str(caught.value)
    assert message.startswith(f"invalid setting {SECRETS_DIR_ENV}: ") and "\n" not in message
    assert message.count(SECRETS_DIR_ENV) == 1, message
    return message


def test_a_secrets_dir_that_is_not_a_directory_is_named_for_what_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "loop-a").symlink_to(tmp_path / "loop-b")
    (tmp_path / "loop-b").symlink_to(tmp_path / "loop-a")
    (tmp_path / "dangling").symlink_to(tmp_path / "nothing")
    assert "is a file" in _secrets_dir_error(monkeypatch, str(tmp_path / "file"))
    assert "is a symlink loop" in _secrets_dir_error(monkeypatch, str(tmp_path / "loop-a"))
    assert "is missing" in _secrets_dir_error(monkeypatch, str(tmp_path / "absent"))
    assert "symlink to nothing" in _secrets_dir_error(monkeypatch, str(tmp_path / "dangling"))


def test_a_secrets_dir_name_too_long_for_the_file_system_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Path.is_dir raised OSError (ENAMETOOLONG): a traceback and exit 1 (issue 24 §2)
    message = _secrets_dir_error(monkeypatch, str(tmp_path / ("a" * 5000)))
    assert "not usable" in message and len(message) < 300


def test_a_secret_file_that_is_not_text_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pydantic-settings raised UnicodeDecodeError from inside its source: a traceback, exit 1
    (tmp_path / "kafka__sasl_password").write_bytes(b"\xff\xfe")
    message = _secrets_dir_error(monkeypatch, str(tmp_path))
    assert "'kafka__sasl_password' is not UTF-8 text" in message


def test_a_binary_file_that_sets_nothing_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # e.g. a Java truststore mounted in the same Secret as the SASL password
    (tmp_path / "truststore.jks").write_bytes(b"\xfe\xed\xfe\xed\xff")
    (tmp_path / "kafka__sasl_username").write_text("from-file\n")
    _clean_env(monkeypatch, {SECRETS_DIR_ENV: str(tmp_path)})
    assert TrainerServiceSettings().kafka.sasl_username == "from-file"
