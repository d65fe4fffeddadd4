"""Where a service's settings are read from: the environment, then one file per setting in
``GUMBEL_SECRETS_DIR``."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings import SettingsError as PydanticSettingsError

__all__ = ["SECRETS_DIR_ENV", "SETTINGS_JSON_ENV", "ServiceSettings", "handoff"]


SERVICE_CONFIG = SettingsConfigDict(
    env_prefix="GUMBEL_",
    env_nested_delimiter="__",
    extra="forbid",
    validate_default=True,
)


SECRETS_DIR_ENV = "GUMBEL_SECRETS_DIR"


# `up` hands each child its settings as one JSON object here (``handoff``); a child that
# finds it reads nothing else, so it runs with what up resolved (flags, ports, the broker).
SETTINGS_JSON_ENV = "GUMBEL_SETTINGS_JSON"


def _revealed(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return str(value)  # Path, HttpUrl


def handoff(settings: BaseModel, child: type[BaseSettings]) -> dict[str, str]:
    """The environment that gives a ``child`` command the same settings as ``settings``
    (those of its sections): the values that were set, secrets included, as one variable."""
    data = {name: getattr(settings, name).model_dump(mode="python", exclude_unset=True)
            for name, field in child.model_fields.items()
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)}
    return {SETTINGS_JSON_ENV: json.dumps(data, default=_revealed)}


class ServiceSettings(BaseSettings):
    """A service's settings: the environment, then one file per setting in ``secrets_dir``.

    A file ``kafka__sasl_password`` in ``GUMBEL_SECRETS_DIR`` sets ``kafka.sasl_password``
    (a Kubernetes Secret mounted as a volume, Docker secrets); the environment wins over it.
    """

    model_config = SERVICE_CONFIG
    secrets_dir: Path | None = Field(
        None, description="directory of mounted secret files, one per setting named like "
        "`kafka__sasl_password` (section `__` field, any case); the environment wins over them",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        handed = os.environ.get(SETTINGS_JSON_ENV)
        if handed:  # a child of `up`: exactly the settings up resolved, nothing else
            return init_settings, InitSettingsSource(settings_cls, json.loads(handed))
        # The directory is itself a setting, so it comes from the environment, read here.
        secrets_dir = os.environ.get(SECRETS_DIR_ENV) or None
        problem = None if secrets_dir is None else _secrets_dir_problem(secrets_dir)
        if problem is not None:
            raise PydanticSettingsError(
                f"invalid setting {SECRETS_DIR_ENV}: {_shown(secrets_dir)} is {problem}, not a "
                "directory of secret files")
        try:
            secrets = _SecretFiles(
                file_secret_settings, names=_setting_file_names(settings_cls),
                secrets_dir=secrets_dir, secrets_dir_missing="error", secrets_prefix="",
                secrets_nested_delimiter="__",
            )
        except PydanticSettingsError as exc:  # too large, too many entries, a file not text
            if SECRETS_DIR_ENV in str(exc):
                raise
            raise PydanticSettingsError(f"invalid setting {SECRETS_DIR_ENV}: {exc}") from None
        return init_settings, env_settings, dotenv_settings, secrets


def _shown(path: str | None) -> str:
    text = repr(path)
    return text if len(text) <= 120 else f"{text[:100]}...' ({len(str(path))} characters)"


def _secrets_dir_problem(path: str) -> str | None:
    """Why ``path`` cannot be the secrets directory, or None (``Path.is_dir`` raises on a
    name too long, and says False alike for a file, a missing path and a symlink loop)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symlink loop"
        if exc.errno == errno.ENOENT:
            return "missing (a symlink to nothing)" if os.path.islink(path) else "missing"
        return f"not usable ({exc.strerror})"
    if not stat.S_ISDIR(mode):
        return "a file" if stat.S_ISREG(mode) else "not a directory"
    if not os.access(path, os.R_OK | os.X_OK):
        return "not readable"
    return None


def _setting_file_names(settings_cls: type[BaseSettings]) -> frozenset[str]:
    """The file names that set something: ``section__field``, a whole ``section`` as JSON,
    or a top-level setting; lower case (the secrets are read case-insensitively)."""
    names = set()
    for name, field in settings_cls.model_fields.items():
        names.add(name.lower())
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            names.update(f"{name}__{sub}".lower() for sub in section.model_fields)
    return frozenset(names)


class _SecretFiles(NestedSecretsSettingsSource):
    """pydantic-settings' nested secrets, reading each file as text with a clear error: a
    setting's file that is not UTF-8 (or cannot be read) is one line naming it, where
    pydantic-settings raised a traceback; any other file (a binary keystore mounted
    beside them) is not a setting and is skipped, as unknown names are."""

    def __init__(self, *args: Any, names: frozenset[str], **kwargs: Any) -> None:
        self._names = names
        super().__init__(*args, **kwargs)

    def load_secrets(self, path: Path) -> dict[str, str]:  # type: ignore[override]
        secrets = {}
        for file in self._iter_secret_files(path):
            name = str(file.relative_to(path))
            try:
                secrets[name] = file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                if name.lower() not in self._names:
                    continue
                why = ("is not UTF-8 text" if isinstance(exc, UnicodeDecodeError)
                       else f"cannot be read ({exc.strerror})")
                raise PydanticSettingsError(
                    f"invalid setting {SECRETS_DIR_ENV}: its file {name!r} {why}") from None
        return secrets
