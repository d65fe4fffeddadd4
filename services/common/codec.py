"""Decode ``numbers`` records into category ids, setting malformed ones aside with a reason.

Two wire formats share the topic:

- the default, one value per record: an ASCII decimal integer in ``[0, K)`` (``b"3"``), which
  any Kafka client can write and read;
- packed, for high-rate streams: one record carries many values, one byte each (``u8``,
  K <= 256) or two bytes little-endian each (``u16le``, K <= 65,536), declared by the record
  header ``gumbel-format``. A packed record with any value out of range is dead-lettered
  whole, so its original bytes are kept.

Event topics carry one category per record by name (``EventFormat``): ``json``, an object
whose field (a dotted path, ``payload.type``) holds a name from the configured categories (or
an id without names), and ``string``, the record is the name. A name outside the list is
dead-lettered (``unknown_category``) rather than counted in an extra bucket: a typo or a new
event type upstream must be seen, not learned as a category nobody asked for.

The header decides the format: a record that carries ``gumbel-format`` is never read as ASCII
(the u8 byte ``0x33`` is category 51, not ``"3"``), and an unknown format is dead-lettered.
ASCII values may have leading zeros (``b"03"`` is 3, as ``int()`` and Java's ``parseInt`` read
it), within ``MAX_RECORD_BYTES``.

Everything malformed becomes a ``BadRecord`` for the dead-letter topic, with the record's
key, headers and timestamp so it can be replayed as it was; nothing raises. What a bad record
stands for is a ``MalformedRecordError`` (``BadRecord.exception``), whose class the dead
letter names as Kafka Connect names the exception of a failed conversion.
"""

from __future__ import annotations

import array
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from services.common import schemas
from services.common.event_format import EventFormat

__all__ = [
    "FORMAT_HEADER",
    "PACKED_FORMATS",
    "MAX_RECORD_BYTES",
    "MAX_PACKED_BYTES",
    "DEAD_LETTER_REASONS",
    "MAX_EVENT_BYTES",
    "EventFormat",
    "BadRecord",
    "MalformedRecordError",
    "DecodedBatch",
    "reason_of",
    "decode_values",
    "encode_value",
    "encode_packed",
    "encode_event",
]

FORMAT_HEADER = "gumbel-format"
# header value -> (dtype of one value, its width in bytes, the largest K it can carry)
PACKED_FORMATS: dict[bytes, tuple[torch.dtype, int, int]] = {
    b"u8": (torch.uint8, 1, 256),
    b"u16le": (torch.int16, 2, 65_536),
}
# Longer than any id a K we support could need; bounds the work spent on a huge record.
MAX_RECORD_BYTES = 20
MAX_PACKED_BYTES = 8 * 1024 * 1024
MAX_EVENT_BYTES = 64 * 1024  # one JSON event or category name

# The kind of every error message below (the text before its colon): a bounded label set.
# The one list of reasons, shared with the Estimate's schema (the monitor's labels).
DEAD_LETTER_REASONS = schemas.DEAD_LETTER_REASONS

Headers = Sequence[tuple[str, bytes]] | None


class MalformedRecordError(ValueError):
    """A record that is no category in the format it claims; ``reason`` is its kind.

    The decoder sets such records aside instead of raising it (one bad record must not stop a
    poll): ``BadRecord.exception`` is the error it stands for.
    """

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.reason = reason_of(error)


@dataclass(frozen=True)
class BadRecord:
    value: bytes | None
    error: str  # "<reason>: <detail>", reason one of DEAD_LETTER_REASONS
    partition: int
    offset: int
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: int | None = None  # the record's Kafka timestamp, ms

    @property
    def reason(self) -> str:
        return reason_of(self.error)

    @property
    def exception(self) -> MalformedRecordError:
        return MalformedRecordError(self.error)


def reason_of(error: str) -> str:
    """The reason kind of an error: ``"out_of_range: 7 not in [0, 5)"`` → ``out_of_range``."""
    return error.split(":", 1)[0]


@dataclass(frozen=True)
class DecodedBatch:
    values: torch.Tensor  # (N,) int64: good category ids, in record order
    bad: list[BadRecord]
    # good values of each record, in record order (0: a bad record); None: one each
    per_record: list[int] | None = None

    @property
    def count(self) -> int:
        return int(self.values.numel())


def encode_event(category: int, event_format: EventFormat) -> bytes:
    """One record of ``category`` as ``event_format`` writes it (ascii, json or string)."""
    name: int | str = category
    if event_format.categories:
        name = event_format.categories[category]
    if event_format.kind == "string":
        return str(name).encode("utf-8")
    if event_format.kind == "json":
        event: Any = name
        for key in reversed(event_format.path):
            event = {key: event}
        return json.dumps(event, separators=(",", ":")).encode("utf-8")
    return encode_value(category)


def encode_value(category: int) -> bytes:
    return str(category).encode("ascii")


def encode_packed(
    categories: Sequence[int] | torch.Tensor, num_categories: int
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """One packed record: its value and headers (``u8`` where K <= 256, else ``u16le``)."""
    ids = torch.as_tensor(categories, dtype=torch.int64)
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= num_categories):
        raise ValueError(f"categories must be in [0, {num_categories})")
    name = b"u8" if num_categories <= 256 else b"u16le"
    if num_categories > PACKED_FORMATS[name][2]:
        raise ValueError(f"K={num_categories} is too large for the packed format (<= 65,536)")
    if name == b"u8":
        return bytes(ids.tolist()), [(FORMAT_HEADER, name)]
    packed = array.array("H", ids.tolist())
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tobytes(), [(FORMAT_HEADER, name)]


def _classify(value: bytes | None, num_categories: int) -> tuple[int, str]:
    """(category, "") for a good ASCII record, (-1, reason) for a bad one."""
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


def _format_of(headers: Headers) -> bytes | None:
    """The ``gumbel-format`` header's value (``b""`` for a null one), None without it."""
    for key, value in headers or ():
        if key == FORMAT_HEADER:
            return value if value is not None else b""
    return None


def _decode_packed(value: bytes | None, name: bytes, num_categories: int) -> torch.Tensor | str:
    """The packed record's ids, or the reason it is bad."""
    if name not in PACKED_FORMATS:
        known = ", ".join(f.decode() for f in PACKED_FORMATS)
        return f"unknown_format: {FORMAT_HEADER}={name!r} (known: {known})"
    dtype, width, _ = PACKED_FORMATS[name]
    if not value:
        return "empty: packed record without values"
    if len(value) > MAX_PACKED_BYTES:
        return f"too_large: {len(value)} bytes (at most {MAX_PACKED_BYTES} packed)"
    if len(value) % width:
        return f"truncated: {len(value)} bytes is not a whole number of {width}-byte values"
    if dtype == torch.int16 and sys.byteorder != "little":
        swapped = array.array("H", value)
        swapped.byteswap()
        value = swapped.tobytes()
    ids = torch.frombuffer(bytearray(value), dtype=dtype).to(torch.int64)
    if dtype == torch.int16:
        ids = ids & 0xFFFF  # torch has no uint16 arithmetic: back from int16 to 0..65535
    bad = ids >= num_categories
    if bool(bad.any()):
        index = int(bad.nonzero()[0, 0])
        return (
            f"out_of_range: value {int(ids[index])} at index {index} not in [0, {num_categories})"
        )
    return ids


def _classify_event(value: bytes | None, fmt: EventFormat, num_categories: int) -> tuple[int, str]:
    """(category, "") for a good json or string record, (-1, reason) for a bad one."""
    if not fmt.by_name:
        return _classify(value, num_categories)
    if value is None or len(value) == 0:
        return -1, "empty: no value"
    if fmt.kind == "string":
        category = fmt.raw_ids.get(value)
        if category is not None:
            return category, ""
    if len(value) > MAX_EVENT_BYTES:
        return -1, f"too_large: {len(value)} bytes (at most {MAX_EVENT_BYTES})"
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return -1, "not_utf8: value is not UTF-8"
    if fmt.kind == "string":
        return -1, f"unknown_category: {text[:64]!r} is not one of {fmt.known()}"
    try:
        field: Any = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python allows
        return -1, "not_json: value is not JSON"
    for depth, key in enumerate(fmt.path):
        if not isinstance(field, dict) or key not in field:
            where = ".".join(fmt.path[: depth + 1])
            return -1, f"missing_field: no {where!r} in the JSON value"
        field = field[key]
    if fmt.categories:
        category = fmt.ids.get(field) if isinstance(field, str) else None
        if category is None:
            shown = repr(field[:64]) if isinstance(field, str) else f"{type(field).__name__} "
            return -1, (f"unknown_category: {fmt.json_field} = {shown} is not one of "
                        f"{fmt.known()}")
        return category, ""
    # Without names the field holds the id; a bool is no id even though Python says it's an int.
    if not isinstance(field, int) or isinstance(field, bool) or field < 0:
        return -1, f"not_integer: {fmt.json_field} is not a category id (a JSON integer >= 0)"
    if field >= num_categories:
        return -1, f"out_of_range: {field} not in [0, {num_categories})"
    return field, ""


def _all_single_digits(
    values: Sequence[bytes | None], num_categories: int, headers: Sequence[Headers] | None
) -> torch.Tensor | None:
    """The ids when every record is one ASCII digit in range and none has headers (the
    common case, decoded in one vectorized pass), else None."""
    if not values or (headers is not None and any(headers)):
        return None
    try:
        joined = b"".join(values)  # type: ignore[arg-type]
    except TypeError:  # a null value
        return None
    if len(joined) != len(values):
        return None
    ids = torch.frombuffer(bytearray(joined), dtype=torch.uint8).to(torch.int64) - ord("0")
    if bool(((ids < 0) | (ids >= min(num_categories, 10))).any()):
        return None
    return ids


def _all_packed_alike(
    values: Sequence[bytes | None], num_categories: int, headers: Sequence[Headers] | None
) -> tuple[torch.Tensor, list[BadRecord], list[int]] | None:
    """(ids, no bad records, values per record) when every record is packed in the same
    format and all of them are good (the producer's default: decoded in one pass over the
    joined bytes instead of a few tensor operations per record), else None."""
    if not values or headers is None or not all(headers):
        return None
    name = _format_of(headers[0])
    if name not in PACKED_FORMATS or any(_format_of(h) != name for h in headers[1:]):
        return None
    dtype, width, _ = PACKED_FORMATS[name]
    if dtype == torch.int16 and sys.byteorder != "little":
        return None  # the per-record path swaps the bytes
    sizes = [len(v) if v is not None else 0 for v in values]
    if any(n == 0 or n > MAX_PACKED_BYTES or n % width for n in sizes):
        return None
    joined = b"".join(values)  # type: ignore[arg-type]
    ids = torch.frombuffer(bytearray(joined), dtype=dtype).to(torch.int64)
    if dtype == torch.int16:
        ids = ids & 0xFFFF  # torch has no uint16 arithmetic: back from int16 to 0..65535
    if int(ids.max()) >= num_categories:
        return None  # the per-record path names the bad ones
    return ids, [], [n // width for n in sizes]


def decode_values(
    values: Sequence[bytes | None],
    partitions: Sequence[int],
    offsets: Sequence[int],
    num_categories: int,
    headers: Sequence[Headers] | None = None,
    keys: Sequence[bytes | None] | None = None,
    timestamps: Sequence[int | None] | None = None,
    event_format: EventFormat | None = None,
) -> DecodedBatch:
    """Split raw records into good category ids and bad records (with their origin).

    ``headers`` (one list per record) is needed wherever packed records may occur; ``keys``
    and ``timestamps`` only travel with the bad records to the dead-letter topic;
    ``event_format`` says how one-value records name categories (default: ASCII ids).
    """
    if len(partitions) != len(values) or len(offsets) != len(values):
        raise ValueError("values, partitions and offsets must have the same length")
    by_name = event_format is not None and event_format.by_name
    digits = None if by_name else _all_single_digits(values, num_categories, headers)
    if digits is not None:
        return DecodedBatch(digits, [])
    packed = _all_packed_alike(values, num_categories, headers)
    if packed is not None:
        return DecodedBatch(*packed)
    good: list[int] = []
    chunks: list[torch.Tensor] = []
    bad: list[BadRecord] = []
    per_record: list[int] = []

    def set_aside(i: int, error: str) -> None:
        bad.append(BadRecord(
            values[i], error, partitions[i], offsets[i],
            key=keys[i] if keys is not None else None,
            headers=tuple(headers[i] or ()) if headers is not None else (),
            timestamp=timestamps[i] if timestamps is not None else None,
        ))

    # The common case is one-character records: a dict lookup avoids int() per record.
    fast = {str(c).encode(): c for c in range(min(num_categories, 10))}
    if by_name:
        assert event_format is not None
        fast = event_format.raw_ids if event_format.kind == "string" else {}
    for i, value in enumerate(values):
        # The header first: a packed record must never be mistaken for an ASCII digit.
        record_headers = headers[i] if headers is not None else None
        packed = _format_of(record_headers) if record_headers else None
        if packed is None:
            category = fast.get(value)  # type: ignore[arg-type]
            if category is not None:
                good.append(category)
                per_record.append(1)
                continue
            category, error = (_classify_event(value, event_format, num_categories)
                               if by_name and event_format is not None
                               else _classify(value, num_categories))
            if error:
                set_aside(i, error)
            else:
                good.append(category)
            per_record.append(0 if error else 1)
            continue
        ids = _decode_packed(value, packed, num_categories)
        if isinstance(ids, str):
            set_aside(i, ids)
            per_record.append(0)
            continue
        per_record.append(int(ids.numel()))
        if good:  # keep record order: flush the ASCII run before this chunk
            chunks.append(torch.tensor(good, dtype=torch.int64))
            good = []
        chunks.append(ids)
    if good or not chunks:
        chunks.append(torch.tensor(good, dtype=torch.int64))
    return DecodedBatch(chunks[0] if len(chunks) == 1 else torch.cat(chunks), bad, per_record)
