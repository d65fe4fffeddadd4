"""The record codec: ASCII and packed records decode exactly; anything else is a BadRecord."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.codec import (
    DEAD_LETTER_REASONS,
    FORMAT_HEADER,
    MAX_RECORD_BYTES,
    EventFormat,
    decode_values,
    encode_packed,
    encode_value,
)


def _decode(values, k=5, headers=None):
    n = len(values)
    return decode_values(values, [0] * n, list(range(n)), k, headers)


def test_ascii_records_decode_in_order() -> None:
    batch = _decode([b"0", b"4", b"2", b"12"], k=13)
    assert batch.values.tolist() == [0, 4, 2, 12]
    assert batch.values.dtype == torch.int64
    assert batch.bad == []


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "empty"),
        (None, "empty"),
        (b"5", "out_of_range"),
        (b"-1", "not_integer"),
        (b" 2", "not_integer"),
        (b"2.0", "not_integer"),
        (b"\xff\xfe", "not_utf8"),
        (b"1" * (MAX_RECORD_BYTES + 1), "too_large"),
        ("٣".encode(), "not_integer"),
    ],
)
def test_malformed_ascii_records_are_set_aside_with_reason_and_origin(value, reason) -> None:
    batch = _decode([b"1", value, b"3"])
    assert batch.values.tolist() == [1, 3]
    [bad] = batch.bad
    assert bad.error.startswith(reason)
    assert (bad.value, bad.partition, bad.offset) == (value, 0, 1)


@pytest.mark.parametrize("k", [5, 256, 257, 65_536])
def test_packed_round_trip(k: int) -> None:
    ids = torch.randint(0, k, (1000,), generator=torch.Generator().manual_seed(k))
    value, headers = encode_packed(ids, k)
    assert len(value) == 1000 * (1 if k <= 256 else 2)
    batch = _decode([b"1", value, b"0"], k=k, headers=[[], headers, []])
    assert batch.values.tolist() == [1, *ids.tolist(), 0]


@pytest.mark.parametrize(
    ("value", "fmt", "reason"),
    [
        (bytes([1, 2, 9]), b"u8", "out_of_range"),
        (b"\x01\x00\x02", b"u16le", "truncated"),
        (b"", b"u8", "empty"),
        (b"\x01", b"zstd", "unknown_format"),
    ],
)
def test_bad_packed_records_are_dead_lettered_whole(value, fmt, reason) -> None:
    batch = _decode([value, b"2"], k=5, headers=[[(FORMAT_HEADER, fmt)], []])
    assert batch.values.tolist() == [2]
    [bad] = batch.bad
    assert bad.error.startswith(reason) and bad.value == value


def test_encode_packed_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        encode_packed([0, 5], 5)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(st.integers(0, 4).map(encode_value), st.binary(max_size=30)), max_size=50)
)
def test_every_record_is_either_learned_or_dead_lettered(values: list[bytes]) -> None:
    """Nothing is lost: good + bad == records, and every good value is a valid id."""
    batch = _decode(values)
    assert batch.count + len(batch.bad) == len(values)
    assert all(0 <= v < 5 for v in batch.values.tolist())
    expected_good = [
        int(v) for v in values if v.isdigit() and len(v) <= MAX_RECORD_BYTES and int(v) < 5
    ]
    assert batch.values.tolist() == expected_good


@pytest.mark.parametrize("byte", [ord("0"), ord("3"), ord("9")])
def test_a_packed_byte_that_looks_like_an_ascii_digit_is_its_own_category(byte: int) -> None:
    """u8 0x33 is category 51: the header decides, not the ASCII fast path (issue 10)."""
    batch = _decode([bytes([byte]), b"3"], k=64, headers=[[(FORMAT_HEADER, b"u8")], []])
    assert batch.values.tolist() == [byte, 3]
    assert batch.bad == []


@pytest.mark.parametrize(
    ("value", "fmt", "reason"),
    [(b"3", b"zstd", "unknown_format"), (b"3", None, "unknown_format"),
     (b"7", b"u16le", "truncated")],
)
def test_a_one_byte_record_with_a_bad_format_is_not_learned_as_ascii(value, fmt, reason) -> None:
    batch = _decode([value], k=64, headers=[[(FORMAT_HEADER, fmt)]])
    assert batch.values.tolist() == []
    assert [b.reason for b in batch.bad] == [reason]


def test_bad_records_carry_key_headers_and_timestamp_for_replay() -> None:
    headers = [[], [(FORMAT_HEADER, b"u8"), ("trace", b"abc")]]
    batch = decode_values(
        [b"x", bytes([9])], [3, 3], [10, 11], 5, headers,
        keys=[b"k1", None], timestamps=[1_000, 2_000],
    )
    first, second = batch.bad
    assert (first.key, first.headers, first.timestamp, first.reason) == (
        b"k1", (), 1_000, "not_integer")
    assert (second.key, second.headers, second.timestamp, second.reason) == (
        None, ((FORMAT_HEADER, b"u8"), ("trace", b"abc")), 2_000, "out_of_range")


def test_leading_zeros_are_accepted_as_the_same_category() -> None:
    assert _decode([b"03", b"0" * (MAX_RECORD_BYTES - 1) + b"4"]).values.tolist() == [3, 4]


def test_every_reason_is_a_known_dead_letter_reason() -> None:
    values = [b"", b"9" * 30, b"\xff", b"a", b"7", b"\x01\x00\x02", b"\x01", None]
    headers: list = [[], [], [], [], [], [(FORMAT_HEADER, b"u16le")],
                     [(FORMAT_HEADER, b"x")], []]
    reasons = {b.reason for b in _decode(values, headers=headers).bad}
    events = [b"{", b'{"x": 1}', b'{"event": "hover"}']
    reasons |= {b.reason for b in decode_values(
        events, [0] * 3, [0, 1, 2], 2, event_format=EventFormat("json", categories=("a", "b")),
    ).bad}
    assert reasons == set(DEAD_LETTER_REASONS)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"0", b"1", b"4", b"5", b"9", b"x", None, b"12"]), max_size=40),
       st.integers(2, 12))
def test_the_vectorized_digit_path_decodes_like_the_record_loop(values, k) -> None:
    """All-single-digit polls take a vectorized path; any other poll the loop: same result."""
    batch = _decode(values, k=k)
    expected = [int(v) for v in values if v is not None and v.isdigit() and int(v) < k]
    assert batch.values.tolist() == expected
    assert [b.offset for b in batch.bad] == [
        i for i, v in enumerate(values) if v is None or not v.isdigit() or int(v) >= k]
