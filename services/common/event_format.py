"""How records of the numbers topic name their category (``EventFormat``): the formats and
their rules, for the codec that reads and writes them and the settings that choose one.

No torch here: the settings (and so every command line) import it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

__all__ = ["EVENT_FORMATS", "ID_FORMATS", "JSON_FIELD_PATTERN", "EventFormat"]

# ascii: one id per record; packed: many ids per record (its header says how); json: an
# object whose field names the category; string: the record is the category's name.
EVENT_FORMATS = ("ascii", "packed", "json", "string")
ID_FORMATS = EVENT_FORMATS[:2]  # the formats that carry ids, needing no names
# A dotted path into nested JSON objects (`payload.type`): no empty part.
JSON_FIELD_PATTERN = r"^[^.]+(\.[^.]+)*$"


@dataclass(frozen=True)
class EventFormat:
    """How one-value records name their category: ``ascii`` ids (and packed, which its
    header declares), ``json`` objects with the category at ``json_field``, or ``string``
    names. ``categories`` names the ids in order (empty: ids only)."""

    kind: str = "ascii"  # one of EVENT_FORMATS
    json_field: str = "event"  # matches JSON_FIELD_PATTERN
    categories: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in EVENT_FORMATS:
            raise ValueError(f"unknown format {self.kind!r} ({', '.join(EVENT_FORMATS)})")
        if not re.match(JSON_FIELD_PATTERN, self.json_field):
            raise ValueError(f"json_field {self.json_field!r} is not a dotted path "
                             "(`payload.type`)")
        if self.kind == "string" and not self.categories:
            raise ValueError("format=string needs categories: each record is a category's "
                             "name, so the string format needs category names in id order")

    @property
    def by_name(self) -> bool:
        """Records name categories (json or string): not the ASCII path."""
        return self.kind in ("json", "string")

    @cached_property
    def path(self) -> tuple[str, ...]:
        return tuple(self.json_field.split("."))

    @cached_property
    def ids(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.categories)}

    @cached_property
    def raw_ids(self) -> dict[bytes, int]:
        return {name.encode("utf-8"): i for i, name in enumerate(self.categories)}

    @classmethod
    def of(cls, events: Any) -> EventFormat:
        """From the settings' ``events`` group (``format``, ``json_field``, ``categories``)."""
        return cls(events.format, events.json_field, tuple(events.categories))

    def known(self) -> str:
        """The names for an error message (the first few of a long list)."""
        shown = ", ".join(self.categories[:10])
        return shown + (f", ... ({len(self.categories)} names)" if len(self.categories) > 10
                        else "")
