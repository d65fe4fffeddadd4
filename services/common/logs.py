"""How every service logs: text for people, or one JSON object per line for Loki and ELK.

``configure(level, "json")`` makes every record on stderr a single-line JSON object with
``time`` (UTC, RFC 3339), ``level``, ``logger`` and ``message`` (and ``exception`` with the
traceback when there is one), so a log shipper needs no multi-line rules.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import IO, Literal

__all__ = ["JsonFormatter", "TEXT_FORMAT", "configure", "formatter"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (a traceback is a field, not more lines)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            "thread": record.threadName,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def formatter(fmt: Literal["text", "json"]) -> logging.Formatter:
    """The formatter of ``fmt``: ``text`` (a line for people) or ``json``."""
    return JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)


def configure(
    level: int, fmt: Literal["text", "json"] = "text", stream: IO[str] | None = None
) -> None:
    """Send the root logger's records at ``level`` and above to ``stream`` (stderr).

    Like ``logging.basicConfig``, it does nothing to a root logger that already has handlers
    (an embedding program's, or pytest's).
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter(fmt))
    logging.basicConfig(level=level, handlers=[handler])
    # kafka-python logs every connection at INFO.
    logging.getLogger("kafka").setLevel(max(level, logging.WARNING))
