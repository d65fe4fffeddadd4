"""Estimate: every number bounded and finite, so no valid message can break a consumer."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from pydantic import ValidationError

from services.common.schemas import DEAD_LETTER_REASONS, MAX_CATEGORIES, MAX_COUNT, Estimate
from tests.unit.services.monitor_fakes import make_estimate


def _as_json(**changes: Any) -> bytes:
    """A valid estimate's JSON with ``changes``; NaN/inf become the tokens json.dumps writes."""
    values = make_estimate().model_dump()
    values.update(changes)
    return json.dumps(values).encode()


def _is_valid(data: bytes) -> bool:
    try:
        Estimate.from_bytes(data)
    except ValidationError:
        return False
    return True


COUNT_FIELDS = [
    {"step": 1}, {"samples_seen": 1}, {"dead_letters": 1}, {"consumer_lag": 1},
    {"actors": 1}, {"offsets": {"0": 1}}, {"records_skipped": 1},
    {"dead_letters_truncated": 1}, {"dead_letters_by_reason": {"empty": 1}},
]


def _with_count(field: dict[str, Any], value: int) -> dict[str, Any]:
    (name, example), = field.items()
    return {name: {k: value for k in example} if isinstance(example, dict) else value}


@pytest.mark.parametrize("field", COUNT_FIELDS, ids=lambda f: next(iter(f)))
def test_every_count_is_bounded_to_a_signed_64_bit_integer(field: dict[str, Any]) -> None:
    assert _is_valid(_as_json(**_with_count(field, MAX_COUNT)))
    assert not _is_valid(_as_json(**_with_count(field, MAX_COUNT + 1)))
    assert not _is_valid(_as_json(**_with_count(field, 10**400)))
    assert not _is_valid(_as_json(**_with_count(field, -1)))


def test_num_categories_is_at_most_what_the_packed_u16_format_carries() -> None:
    assert MAX_CATEGORIES == 65_536
    for k, valid in ((MAX_CATEGORIES, True), (MAX_CATEGORIES + 1, False)):
        uniform = [1 / k] * k
        assert _is_valid(_as_json(num_categories=k, probabilities=uniform,
                                  baseline_probabilities=uniform)) is valid
    assert not _is_valid(_as_json(num_categories=10**400))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 1e400])
@pytest.mark.parametrize(
    "name",
    ["timestamp", "temperature", "generator_loss", "discriminator_loss", "learned_fraction",
     "data_timestamp", "max_actor_status_age_s"],
)
def test_non_finite_numbers_are_invalid(name: str, value: float) -> None:
    assert not _is_valid(_as_json(**{name: value}))


def test_a_non_finite_probability_is_invalid() -> None:
    assert not _is_valid(_as_json(probabilities=[math.nan, 0.5, 0.5]))


@pytest.mark.parametrize("name", ["timestamp", "data_timestamp", "max_actor_status_age_s"])
def test_times_and_ages_are_not_negative(name: str) -> None:
    assert not _is_valid(_as_json(**{name: -1.0}))
    assert _is_valid(_as_json(**{name: 0.0}))


def test_the_additive_fields_default_so_older_messages_stay_valid() -> None:
    older = make_estimate().model_dump()
    for name in ("data_timestamp", "max_actor_status_age_s", "records_skipped",
                 "dead_letters_by_reason", "dead_letters_truncated"):
        del older[name]
    estimate = Estimate.from_bytes(json.dumps(older).encode())
    assert estimate.data_timestamp is None
    assert estimate.max_actor_status_age_s == 0.0
    assert estimate.records_skipped == 0 and estimate.dead_letters_truncated == 0
    assert estimate.dead_letters_by_reason == {}


def test_the_additive_fields_round_trip() -> None:
    estimate = make_estimate(
        data_timestamp=1000.5, max_actor_status_age_s=2.5, records_skipped=7,
        dead_letters_by_reason={"empty": 1, "something_new": 2}, dead_letters_truncated=1,
    )
    assert Estimate.from_bytes(estimate.to_bytes()) == estimate


def test_dead_letter_reasons_are_a_fixed_tuple() -> None:
    assert DEAD_LETTER_REASONS == ("empty", "too_large", "not_utf8", "not_integer",
                                   "out_of_range", "unknown_format", "truncated")


def test_unknown_fields_are_still_rejected() -> None:
    assert not _is_valid(_as_json(surprise=1))
