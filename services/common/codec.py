"""Decode ``numbers`` records into category ids, setting malformed ones aside with a reason.

A good record is an ASCII decimal integer in ``[0, K)`` (``b"3"``), which any Kafka client can
write. Everything else becomes a ``BadRecord`` for the dead-letter topic; nothing raises.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["MAX_RECORD_BYTES", "BadRecord", "DecodedBatch", "decode_values", "encode_value"]

# Longer than any id a K we support could need; bounds the work spent on a huge record.
MAX_RECORD_BYTES = 20


@dataclass(frozen=True)
class BadRecord:
    value: bytes | None
    error: str
    partition: int
    offset: int


@dataclass(frozen=True)
class DecodedBatch:
    values: list[int]  # good category ids, in record order
    bad: list[BadRecord]


def encode_value(category: int) -> bytes:
    return str(category).encode("ascii")


def _classify(value: bytes | None, num_categories: int) -> tuple[int, str]:
    """(category, "") for a good record, (-1, reason) for a bad one."""
    if value is None or len(value) == 0:
        return -1, "empty: no value"
    if len(value) > MAX_RECORD_BYTES:
        return -1, f"too_large: {len(value)} bytes (at most {MAX_RECORD_BYTES})"
    if not value.isdigit():  # bytes.isdigit is ASCII-only: no signs, spaces or other scripts
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            return -1, "not_utf8: value is not UTF-8"
        return -1, "not_integer: value is not an ASCII decimal integer"
    category = int(value)
    if category >= num_categories:
        return -1, f"out_of_range: {category} not in [0, {num_categories})"
    return category, ""


def decode_values(
    values: Sequence[bytes | None],
    partitions: Sequence[int],
    offsets: Sequence[int],
    num_categories: int,
) -> DecodedBatch:
    """Split raw record values into good category ids and bad records (with their origin)."""
    good: list[int] = []
    bad: list[BadRecord] = []
    # The common case is one-character records: a dict lookup avoids int() per record.
    fast = {str(c).encode(): c for c in range(min(num_categories, 10))}
    for value, partition, offset in zip(values, partitions, offsets, strict=True):
        category = fast.get(value)  # type: ignore[arg-type]
        if category is None:
            category, error = _classify(value, num_categories)
            if error:
                bad.append(BadRecord(value, error, partition, offset))
                continue
        good.append(category)
    return DecodedBatch(good, bad)
