"""How records of the numbers topic name their category (``events.*``), shared by the producer
and the trainer; the format's rules are ``services.common.event_format``'s."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_settings import NoDecode

from services.common.errors import SettingError
from services.common.event_format import EVENT_FORMATS, JSON_FIELD_PATTERN, EventFormat
from services.common.schemas import MAX_NAME_LENGTH

__all__ = ["parse_categories", "check_names", "EventSettings"]


def parse_categories(value: Any) -> list[str]:
    """``"click,view,buy"`` or a sequence of names → distinct, non-empty names."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        names = [n.strip() for n in value.split(",")]
    elif isinstance(value, (list, tuple)):
        names = [str(n).strip() for n in value]
    else:
        raise ValueError(f"expected comma-separated names, got {value!r}")
    if any(not n for n in names):
        raise ValueError(f"a category name is empty in {value!r}")
    duplicates = sorted(n for n, count in Counter(names).items() if count > 1)
    if duplicates:
        raise ValueError(f"category names must be distinct ({', '.join(duplicates)} repeated)")
    if len(names) < 2:
        raise ValueError("needs at least 2 category names")
    too_long = [n for n in names if len(n) > MAX_NAME_LENGTH]
    if too_long:  # the Estimate refuses them: say so now, not at the first publish
        raise ValueError(f"a category name is longer than {MAX_NAME_LENGTH} characters "
                         f"({len(too_long[0])}: {too_long[0][:40]!r}...)")
    return names


CategoryNames = Annotated[list[str], NoDecode, BeforeValidator(parse_categories)]


class EventSettings(BaseModel):
    """How records of the numbers topic are written, shared by the producer and the trainer."""

    model_config = ConfigDict(extra="forbid")

    format: Literal[EVENT_FORMATS] = Field(  # type: ignore[valid-type]
        "ascii",
        description="`ascii`: one category id per record (`b\"3\"`); `packed`: many ids per "
        "record (header `gumbel-format`); `json`: an object whose `json_field` holds the "
        "category (a name from `categories`, else an id); `string`: the record is the "
        "category's name. The trainer reads packed records whatever this says",
    )
    json_field: str = Field(
        "event", pattern=JSON_FIELD_PATTERN,
        description="with format=json: the field that holds the category, a dotted path "
        "into nested objects (`payload.type`)",
    )
    categories: CategoryNames = Field(
        default_factory=list,
        description="category names in id order (`click,view,buy`): a json or string "
        "record names one of them (any other name is dead-lettered, reason `unknown_category`), "
        "and they are the `category` label of the monitor's per-category metrics; unset: ids",
    )

    @model_validator(mode="after")
    def _a_format_the_codec_reads(self) -> EventSettings:
        EventFormat.of(self)  # the codec's rules (string needs names), checked at start
        return self


def check_names(events: EventSettings, num_categories: int, what: str) -> None:
    """As many names as categories, blamed on ``events.categories`` when not."""
    if events.categories and len(events.categories) != num_categories:
        raise SettingError("events", "categories", f"{len(events.categories)} names for "
                           f"{what} = {num_categories} categories")
