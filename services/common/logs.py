"""How every service logs: text for people, or one JSON object per line for Loki and ELK.

``configure(level, "json")`` makes every record on stderr a single-line JSON object with
``time`` (UTC, RFC 3339), ``level``, ``logger``, ``message``, ``process``, ``thread`` and
``model_id`` (null where a process serves no one model), plus the record's structured fields
(``exception`` with the traceback when there is one), so a log shipper needs no multi-line
rules and no parsing of messages.

Structured fields (``FIELDS``: the actor, the partition, offsets) never go inside the message:
they come from three places, the nearest winning:

- the call's ``extra=`` (``log.info("seeking", extra={"partition": 3, "offset": 120})``);
- a ``FieldsAdapter``: an object's own fields on each of its lines (an actor's ``actor``,
  whichever thread calls it);
- ``set_fields(**fields)``: the process's, on every line, whoever logs it (a trainer's
  ``model_id``; in a Ray worker process, which is one actor, its ``actor`` too).

Text lines end with the fields other than ``model_id`` (``actor=ingest-0 partition=3``).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping, MutableMapping
from datetime import datetime, timezone
from typing import IO, Any, Literal

__all__ = [
    "FIELDS",
    "FieldsAdapter",
    "FieldsFilter",
    "JsonFormatter",
    "TEXT_FORMAT",
    "TextFormatter",
    "configure",
    "formatter",
    "handler",
    "set_fields",
]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The structured fields we log, in the order a text line shows them.
FIELDS = ("model_id", "actor", "partition", "partitions", "offset", "offsets", "epoch")

_process_fields: dict[str, Any] = {}
# What every LogRecord has of its own: anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName"}


def set_fields(**fields: Any) -> None:
    """Fields of every record this process logs from now on (None removes one)."""
    for name, value in fields.items():
        if value is None:
            _process_fields.pop(name, None)
        else:
            _process_fields[name] = value


class FieldsAdapter(logging.LoggerAdapter):
    """``logger`` with ``fields`` on each record; a call's own ``extra=`` adds to them."""

    def __init__(self, logger: logging.Logger, **fields: Any) -> None:
        super().__init__(logger, fields)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


class FieldsFilter(logging.Filter):
    """Puts the process's fields on each record that has none of that name."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _process_fields.items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's structured fields: ``FIELDS`` first, then any other ``extra=``."""
    extra = {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}
    ordered = {name: extra.pop(name) for name in FIELDS if name in extra}
    return {**ordered, **extra}


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):  # JSON object keys are strings: {"3": 120}
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (a traceback is a field, not more lines)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            "thread": record.threadName,
            "model_id": None,
        }
        for name, value in _fields(record).items():
            if name not in entry or name == "model_id":
                entry[name] = _jsonable(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT``, then the record's fields but ``model_id`` as ``name=value``."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = {k: v for k, v in _fields(record).items() if k != "model_id"}
        if not fields:
            return line
        shown = " ".join(f"{k}={json.dumps(_jsonable(v), default=str)}"
                         if not isinstance(v, (str, int)) else f"{k}={v}"
                         for k, v in fields.items())
        head, sep, trace = line.partition("\n")  # after the message, before a traceback
        return f"{head} [{shown}]{sep}{trace}"


def formatter(fmt: Literal["text", "json"]) -> logging.Formatter:
    """The formatter of ``fmt``: ``text`` (a line for people) or ``json``."""
    return JsonFormatter() if fmt == "json" else TextFormatter()


def handler(fmt: Literal["text", "json"], stream: IO[str] | None = None) -> logging.Handler:
    """A stderr (or ``stream``) handler in ``fmt`` that adds the structured fields."""
    out = logging.StreamHandler(stream if stream is not None else sys.stderr)
    out.setFormatter(formatter(fmt))
    out.addFilter(FieldsFilter())
    return out


def configure(
    level: int, fmt: Literal["text", "json"] = "text", stream: IO[str] | None = None
) -> None:
    """Send the root logger's records at ``level`` and above to ``stream`` (stderr).

    Like ``logging.basicConfig``, it does nothing to a root logger that already has handlers
    (an embedding program's, or pytest's). In ``json``, Python's warnings are logged too (as
    ``py.warnings``), so no plain-text line reaches stderr.
    """
    logging.basicConfig(level=level, handlers=[handler(fmt, stream)])
    if fmt == "json":
        logging.captureWarnings(True)
    # kafka-python logs every connection at INFO.
    logging.getLogger("kafka").setLevel(max(level, logging.WARNING))
