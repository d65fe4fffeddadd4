"""How a setting reads for people — its environment variable, default and description — for
the command line's ``--help`` and the docs' settings table alike (one source of truth: the
settings models in ``services.common.settings``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from services.flags import env_name  # the one generator of variable names

__all__ = ["Setting", "is_section", "settings_of", "setting", "env_name", "default_text", "plain",
           "choices"]


@dataclass(frozen=True)
class Setting:
    """One leaf setting: ``section.field`` (``section`` is ``""`` for a top-level one)."""

    section: str
    field: str
    info: FieldInfo

    @property
    def env(self) -> str:
        return env_name(self.section, self.field)

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.field}" if self.section else self.field

    @property
    def description(self) -> str:
        return self.info.description or ""

    @property
    def default(self) -> str | None:
        return default_text(self.info.get_default(call_default_factory=True))


def _section_model(field: FieldInfo) -> type[BaseModel] | None:
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def is_section(root: type[BaseModel], name: str) -> bool:
    """Whether ``name`` is a section (a nested model) of ``root``, not a setting."""
    field = root.model_fields.get(name)
    return field is not None and _section_model(field) is not None


def settings_of(root: type[BaseModel]) -> Iterator[Setting]:
    """Every leaf setting of a service's settings class, sections expanded, in order."""
    for name, field in root.model_fields.items():
        section = _section_model(field)
        if section is None:
            yield Setting("", name, field)
        else:
            for inner, inner_field in section.model_fields.items():
                yield Setting(name, inner, inner_field)


def setting(root: type[BaseModel], section: str, field: str) -> Setting:
    """The setting ``section.field`` of ``root``; ``KeyError`` if it has none."""
    if not section:
        return Setting("", field, root.model_fields[field])
    model = _section_model(root.model_fields[section])
    if model is None:
        raise KeyError(f"{section} is not a section of {root.__name__}")
    return Setting(section, field, model.model_fields[field])


def default_text(value: Any) -> str | None:
    """A default as one would type it in the environment; ``None`` when there is none."""
    if value is None or value == []:
        return None
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list) and all(isinstance(v, (int, float)) for v in value):
        return ",".join(f"{v:g}" for v in value)
    return str(value)


def plain(text: str) -> str:
    """A markdown description for a terminal: one line, no backticks."""
    return " ".join(text.replace("`", "").split())


def choices(names: tuple[str, ...] | list[str]) -> str:
    """``("a", "b", "c")`` → ``"`a`, `b` or `c`"``, for a description that lists a choice's
    values from their one source."""
    quoted = [f"`{name}`" for name in names]
    return ", ".join(quoted[:-1]) + f" or {quoted[-1]}" if len(quoted) > 1 else "".join(quoted)
