"""Estimate: every number bounded and finite, so no valid message can break a consumer."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from pydantic import ValidationError

from services.common.schemas import (
    DEAD_LETTER_REASONS,
    HISTOGRAM_MAX_BUCKETS,
    MAX_ACTORS,
    MAX_CATEGORIES,
    MAX_COUNT,
    MAX_PARTITIONS,
    ActorMetrics,
    Estimate,
    Histogram,
)
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
                                   "out_of_range", "unknown_format", "truncated", "not_json",
                                   "missing_field", "unknown_category")


def test_unknown_fields_are_still_rejected() -> None:
    assert not _is_valid(_as_json(surprise=1))


# --- actor_metrics (issue 12 §3) ------------------------------------------------------------


def _with_actor(**fields: Any) -> bytes:
    return _as_json(actor_metrics=[{"index": 0, **fields}])


def test_actor_metrics_default_to_empty_so_older_messages_stay_valid() -> None:
    older = make_estimate().model_dump()
    del older["actor_metrics"]
    assert Estimate.from_bytes(json.dumps(older).encode()).actor_metrics == []


def test_actor_metrics_need_only_the_index_and_round_trip() -> None:
    assert _is_valid(_with_actor())
    estimate = make_estimate(actor_metrics=[
        ActorMetrics(index=0, records_per_s=1e5, step_seconds=0.01, poll_to_learn_seconds=0.2,
                     queue_depth=3, lag=40, lag_by_partition={"0": 15, "2": 25},
                     checkpoint_time=1000.5, checkpoint_seconds=0.05, checkpoint_failures=1,
                     restarts=2, dead_letters=4, learned_fraction=0.5),
        ActorMetrics(index=1),
    ])
    assert Estimate.from_bytes(estimate.to_bytes()) == estimate
    assert estimate.actor_metrics[1].checkpoint_time is None


@pytest.mark.parametrize("name", ["queue_depth", "lag", "checkpoint_failures", "restarts",
                                  "dead_letters", "records_read"])
def test_every_actor_count_is_bounded(name: str) -> None:
    assert _is_valid(_with_actor(**{name: MAX_COUNT}))
    for value in (MAX_COUNT + 1, 10**400, -1):
        assert not _is_valid(_with_actor(**{name: value}))
    assert _is_valid(_with_actor(lag_by_partition={"0": MAX_COUNT}))
    assert not _is_valid(_with_actor(lag_by_partition={"0": MAX_COUNT + 1}))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 1e400, -1.0])
@pytest.mark.parametrize("name", ["records_per_s", "step_seconds", "poll_to_learn_seconds",
                                  "checkpoint_time", "checkpoint_seconds", "learned_fraction"])
def test_actor_numbers_are_finite_and_not_negative(name: str, value: float) -> None:
    assert not _is_valid(_with_actor(**{name: value}))


def test_the_actor_learned_fraction_is_a_fraction() -> None:
    assert _is_valid(_with_actor(learned_fraction=1.0))
    assert not _is_valid(_with_actor(learned_fraction=1.01))


def test_actor_indices_are_bounded_and_unique() -> None:
    assert _is_valid(_with_actor(index=MAX_ACTORS - 1))
    for index in (MAX_ACTORS, -1, 10**400):
        assert not _is_valid(_with_actor(index=index))
    assert not _is_valid(_as_json(actor_metrics=[{"index": 1}, {"index": 1}]))


def test_the_number_of_actors_and_partitions_is_bounded() -> None:
    assert MAX_ACTORS == 1_024 and MAX_PARTITIONS == 10_000
    assert _is_valid(_as_json(actor_metrics=[{"index": i} for i in range(MAX_ACTORS)]))
    assert not _is_valid(_as_json(actor_metrics=[{"index": i} for i in range(MAX_ACTORS + 1)]))
    lags = {str(p): 1 for p in range(MAX_PARTITIONS)}
    assert _is_valid(_with_actor(lag_by_partition=lags))
    assert not _is_valid(_with_actor(lag_by_partition={**lags, str(MAX_PARTITIONS): 1}))


@pytest.mark.parametrize("key", ["-1", "", "p0", "1.5", "12345678901", "0\n"])
def test_a_partition_is_a_decimal_number(key: str) -> None:
    # It becomes a Prometheus label value: anything else would be an unbounded label.
    assert not _is_valid(_with_actor(lag_by_partition={key: 1}))


def test_unknown_actor_fields_are_rejected() -> None:
    assert not _is_valid(_with_actor(surprise=1))


def test_an_unknown_field_is_refused_by_default_and_ignored_by_a_consumer() -> None:
    values = json.loads(make_estimate(actor_metrics=[{"index": 0}]).to_bytes())
    values["added_later"] = {"any": [1, 2]}
    values["actor_metrics"][0]["also_added"] = 3
    data = json.dumps(values).encode()
    assert not _is_valid(data)
    read = Estimate.from_bytes(data, ignore_unknown=True)
    assert read == make_estimate(actor_metrics=[{"index": 0}], timestamp=values["timestamp"])
    assert read.to_bytes() == make_estimate(actor_metrics=[{"index": 0}],
                                            timestamp=values["timestamp"]).to_bytes()


@pytest.mark.parametrize("bad", [{"step": -1}, {"probabilities": [0.5, 0.5, 0.5]},
                                 {"temperature": 0}, {"model_id": None}])
def test_ignoring_unknown_fields_still_validates_the_known_ones(bad: dict[str, Any]) -> None:
    data = _as_json(added_later=1, **bad)
    with pytest.raises(ValidationError):
        Estimate.from_bytes(data, ignore_unknown=True)


def test_the_headers_name_the_content_type_and_schema_version() -> None:
    from services.common.schemas import ESTIMATE_HEADERS, SCHEMA_VERSION

    assert dict(ESTIMATE_HEADERS) == {"content-type": b"application/json",
                                      "schema-version": str(SCHEMA_VERSION).encode()}


def test_the_json_schema_accepts_what_the_model_sends_and_fields_added_later() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from services.common.schemas import estimate_json_schema

    schema = estimate_json_schema()
    values = json.loads(make_estimate(actor_metrics=[{"index": 1}]).to_bytes())
    jsonschema.validate({**values, "added_later": 1}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**values, "step": -1}, schema)


@pytest.mark.parametrize("names", [["a", "b"], ["a", "a", "b"], ["a", "b", "c", "d"]])
def test_category_names_are_k_distinct_names(names: list[str]) -> None:
    with pytest.raises(ValidationError, match="category_names"):
        make_estimate(category_names=names)  # K = 3


def test_an_estimate_without_names_stays_valid() -> None:
    assert make_estimate().category_names is None
    assert make_estimate(category_names=["a", "b", "c"]).category_names == ["a", "b", "c"]


# --- histograms (issue 22 §3) ---------------------------------------------------------------

HISTOGRAM = {"bounds": [0.01, 0.1, 1.0], "counts": [1, 5, 5, 6], "sum": 2.5}


def test_histograms_default_to_none_so_older_messages_stay_valid_and_round_trip() -> None:
    older = make_estimate()
    assert (older.step_duration, older.record_to_step, older.poll_to_step) == (None,) * 3
    assert older.actor_metrics == [] and ActorMetrics(index=0).records_read == 0
    sent = make_estimate(step_duration=Histogram(**HISTOGRAM), poll_to_step=Histogram(
        bounds=[1.0], counts=[0, 0], sum=0.0))
    assert Estimate.from_bytes(sent.to_bytes()) == sent
    assert sent.step_duration is not None and sent.step_duration.count == 6


@pytest.mark.parametrize("changes", [
    {"counts": [1, 5, 6]},  # one fewer than the bounds and +Inf
    {"counts": [1, 5, 4, 6]},  # falls: not cumulative
    {"bounds": [0.01, 1.0, 0.1]},  # not increasing
    {"bounds": [0.0, 0.1, 1.0]},  # a bound of 0 s
    {"counts": [-1, 5, 5, 6]},
    {"counts": [1, 5, 5, MAX_COUNT + 1]},
    {"sum": -1.0},
    {"sum": math.nan},
    {"sum": math.inf},
    {"bounds": [0.01, 0.1, math.inf]},  # +Inf is implied, never sent
    {"bounds": [0.001 * (i + 1) for i in range(HISTOGRAM_MAX_BUCKETS)],
     "counts": [0] * (HISTOGRAM_MAX_BUCKETS + 1)},
])
def test_a_histogram_is_cumulative_bounded_and_finite(changes: dict[str, Any]) -> None:
    assert _is_valid(_as_json(record_to_step=HISTOGRAM))
    assert not _is_valid(_as_json(record_to_step={**HISTOGRAM, **changes}))
