"""Event records (JSON objects and category names): good ones decode to ids, every bad one
goes to the dead letters with its reason; the ASCII default is unchanged."""

from __future__ import annotations

import pytest

from services.common.codec import (
    DEAD_LETTER_REASONS,
    FORMAT_HEADER,
    MAX_EVENT_BYTES,
    EventFormat,
    decode_values,
    encode_event,
)

NAMES = ("click", "view", "buy")
JSON = EventFormat("json", "event", NAMES)
NESTED = EventFormat("json", "payload.type", NAMES)
STRING = EventFormat("string", categories=NAMES)


def _decode(values, fmt, k=3, headers=None):
    n = len(values)
    return decode_values(values, [0] * n, list(range(n)), k, headers, event_format=fmt)


def test_json_events_decode_by_name_in_order() -> None:
    batch = _decode([b'{"event": "buy", "user": 17}', b'{"event":"click"}',
                     b'{"user": 1, "event": "view"}'], JSON)
    assert batch.values.tolist() == [2, 0, 1]
    assert batch.bad == []


def test_a_dotted_path_reads_nested_objects() -> None:
    batch = _decode([b'{"payload": {"type": "view", "id": 3}}'], NESTED)
    assert batch.values.tolist() == [1]


def test_json_without_names_carries_ids() -> None:
    batch = _decode([b'{"event": 2}', b'{"event": 0}', b'{"event": 3}', b'{"event": true}'],
                    EventFormat("json"))
    assert batch.values.tolist() == [2, 0]
    assert [b.reason for b in batch.bad] == ["out_of_range", "not_integer"]


def test_string_records_decode_by_name() -> None:
    batch = _decode([b"view", b"buy", b"click", b"buy"], STRING)
    assert batch.values.tolist() == [1, 2, 0, 2]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "empty"),
        (None, "empty"),
        (b"\xff{", "not_utf8"),
        (b"{not json", "not_json"),
        (b"[" * 50_000, "not_json"),  # deeper than Python's recursion limit
        (b'{"user": 1}', "missing_field"),
        (b'["event"]', "missing_field"),
        (b'{"event": "hover"}', "unknown_category"),
        (b'{"event": 1}', "unknown_category"),  # with names, an id is not a name
        (b'{"event": "' + b"x" * MAX_EVENT_BYTES + b'"}', "too_large"),
    ],
)
def test_a_bad_json_event_is_dead_lettered_with_its_reason(value, reason) -> None:
    batch = _decode([b'{"event": "click"}', value], JSON)
    assert batch.values.tolist() == [0]
    (bad,) = batch.bad
    assert (bad.reason, bad.offset, bad.value) == (reason, 1, value)
    assert bad.reason in DEAD_LETTER_REASONS


def test_an_unknown_name_says_what_it_got_and_what_is_known() -> None:
    (bad,) = _decode([b'{"event": "hover"}'], JSON).bad
    assert bad.error == "unknown_category: event = 'hover' is not one of click, view, buy"
    (bad,) = _decode([b"Click"], STRING).bad
    assert bad.error == "unknown_category: 'Click' is not one of click, view, buy"


def test_a_missing_nested_field_names_the_path_that_is_missing() -> None:
    (bad,) = _decode([b'{"payload": {"kind": "view"}}'], NESTED).bad
    assert bad.error == "missing_field: no 'payload.type' in the JSON value"


@pytest.mark.parametrize(("value", "reason"), [(b"", "empty"), (b"\xff", "not_utf8"),
                                               (b"click ", "unknown_category"),
                                               (b"x" * (MAX_EVENT_BYTES + 1), "too_large")])
def test_a_bad_string_record_is_dead_lettered_with_its_reason(value, reason) -> None:
    batch = _decode([value, b"view"], STRING)
    assert batch.values.tolist() == [1]
    assert [b.reason for b in batch.bad] == [reason]


def test_a_packed_record_is_still_read_by_its_header() -> None:
    batch = _decode([b"view", bytes([2, 0]), b"buy"], STRING,
                    headers=[[], [(FORMAT_HEADER, b"u8")], []])
    assert batch.values.tolist() == [1, 2, 0, 2]


def test_digits_are_not_names() -> None:
    """The vectorized ASCII path must not run for an event topic: b"1" is no name."""
    batch = _decode([b"1", b"2"], STRING)
    assert batch.values.tolist() == []
    assert [b.reason for b in batch.bad] == ["unknown_category"] * 2


@pytest.mark.parametrize("fmt", [JSON, NESTED, STRING, EventFormat("json"),
                                 EventFormat("ascii"), EventFormat("ascii", categories=NAMES)])
def test_what_the_producer_encodes_decodes_to_the_same_ids(fmt) -> None:
    ids = [0, 2, 1, 1, 0]
    batch = _decode([encode_event(c, fmt) for c in ids], fmt)
    assert batch.values.tolist() == ids


def test_json_events_look_like_events() -> None:
    assert encode_event(2, JSON) == b'{"event":"buy"}'
    assert encode_event(1, NESTED) == b'{"payload":{"type":"view"}}'
    assert encode_event(1, STRING) == b"view"
    assert encode_event(1, EventFormat("json")) == b'{"event":1}'


def test_the_string_format_needs_names() -> None:
    with pytest.raises(ValueError, match="needs category names"):
        EventFormat("string")
