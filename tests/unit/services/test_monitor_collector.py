"""EstimateCollector: docs/services.md#metrics, with the right types, from the latest estimate."""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.monitor.collector import EstimateCollector, total_variation
from services.monitor.state import LatestEstimates
from tests.unit.services.monitor_fakes import make_estimate

DOCUMENTED_METRICS = {  # docs/services.md#metrics, with the type each must have
    "gumbel_estimated_probability": "gauge",
    "gumbel_baseline_probability": "gauge",
    "gumbel_temperature": "gauge",
    "gumbel_generator_loss": "gauge",
    "gumbel_discriminator_loss": "gauge",
    "gumbel_total_variation": "gauge",
    "gumbel_samples_learned": "counter",  # exposed as gumbel_samples_learned_total
    "gumbel_dead_letters": "counter",
    "gumbel_last_estimate_timestamp_seconds": "gauge",
    "gumbel_build_info": "gauge",
}


def _registry(state: LatestEstimates) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(EstimateCollector(state))
    return registry


def test_exposes_every_documented_metric_with_its_type() -> None:
    state = LatestEstimates()
    state.offer(make_estimate().to_bytes())
    text = generate_latest(_registry(state)).decode()
    types = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert {name: types.get(name) for name in DOCUMENTED_METRICS} == DOCUMENTED_METRICS
    assert "gumbel_samples_learned_total 5000.0" in text
    assert "gumbel_dead_letters_total 3.0" in text


def test_values_come_from_the_latest_estimate() -> None:
    state = LatestEstimates()
    registry = _registry(state)
    state.offer(make_estimate(step=1).to_bytes())
    state.offer(make_estimate(probabilities=[0.1, 0.1, 0.8], temperature=0.5,
                              timestamp=1234.5).to_bytes())
    value = registry.get_sample_value
    assert value("gumbel_estimated_probability", {"category": "2"}) == 0.8
    assert value("gumbel_baseline_probability", {"category": "0"}) == 0.25
    assert value("gumbel_temperature") == 0.5
    assert value("gumbel_last_estimate_timestamp_seconds") == 1234.5
    assert value("gumbel_total_variation") == pytest.approx(0.3)
    assert value("gumbel_generator_loss") == 0.69
    assert value("gumbel_discriminator_loss") == 1.38


def test_no_estimate_series_before_the_first_estimate() -> None:
    state = LatestEstimates()
    state.offer(b"garbage")
    registry = _registry(state)
    assert registry.get_sample_value("gumbel_estimated_probability", {"category": "0"}) is None
    names = {f.name for f in text_string_to_metric_families(generate_latest(registry).decode())}
    assert "gumbel_build_info" in names
    assert registry.get_sample_value("gumbel_monitor_invalid_estimates_total") == 1


def test_no_stale_categories_when_k_changes() -> None:
    state = LatestEstimates()
    registry = _registry(state)
    state.offer(make_estimate().to_bytes())
    state.offer(make_estimate(num_categories=2, probabilities=[0.5, 0.5],
                              baseline_probabilities=[0.5, 0.5]).to_bytes())
    assert registry.get_sample_value("gumbel_estimated_probability", {"category": "2"}) is None


def test_total_variation() -> None:
    assert total_variation([0.5, 0.5], [0.5, 0.5]) == 0
    assert total_variation([1.0, 0.0], [0.0, 1.0]) == 1


def _raw(**changes: object) -> bytes:
    values = make_estimate().model_dump()
    values.update(changes)
    return json.dumps(values).encode()


def test_a_huge_integer_cannot_break_the_scrape() -> None:
    state = LatestEstimates()
    registry = _registry(state)
    state.offer(make_estimate(samples_seen=7).to_bytes())
    state.offer(_raw(samples_seen=10**400))
    state.offer(_raw(dead_letters=10**400, consumer_lag=10**400))
    generate_latest(registry)  # an OverflowError here would fail every scrape from now on
    assert registry.get_sample_value("gumbel_monitor_invalid_estimates_total") == 2
    assert registry.get_sample_value("gumbel_samples_learned_total") == 7


def test_a_huge_k_is_invalid_and_keeps_the_scrape_small() -> None:
    state = LatestEstimates()
    registry = _registry(state)
    k = 500_000
    state.offer(_raw(num_categories=k, probabilities=[1 / k] * k,
                     baseline_probabilities=[1 / k] * k))
    assert len(generate_latest(registry)) < 10_000
    assert registry.get_sample_value("gumbel_monitor_invalid_estimates_total") == 1


def test_counters_are_monotonic_across_a_trainer_restore() -> None:
    state = LatestEstimates()
    registry = _registry(state)
    state.offer(make_estimate(samples_seen=1000, dead_letters=9).to_bytes())
    state.offer(make_estimate(samples_seen=900, dead_letters=8).to_bytes())  # restored
    assert registry.get_sample_value("gumbel_samples_learned_total") == 1000
    assert registry.get_sample_value("gumbel_dead_letters_total") == 9
    state.offer(make_estimate(samples_seen=1100, dead_letters=8).to_bytes())
    assert registry.get_sample_value("gumbel_samples_learned_total") == 1100


def test_exports_the_reliability_fields() -> None:
    state = LatestEstimates()
    registry = _registry(state)
    state.offer(make_estimate(
        data_timestamp=1234.5, max_actor_status_age_s=3.5, records_skipped=11,
        dead_letters_truncated=2,
        dead_letters_by_reason={"empty": 1, "not_utf8": 4, "new_kind": 2, "other_new": 3},
    ).to_bytes())
    value = registry.get_sample_value
    assert value("gumbel_data_timestamp_seconds") == 1234.5
    assert value("gumbel_actor_status_age_seconds") == 3.5
    assert value("gumbel_records_skipped_total") == 11
    assert value("gumbel_dead_letters_truncated_total") == 2
    assert value("gumbel_dead_letters_by_reason_total", {"reason": "empty"}) == 1
    assert value("gumbel_dead_letters_by_reason_total", {"reason": "not_utf8"}) == 4
    assert value("gumbel_dead_letters_by_reason_total", {"reason": "other"}) == 5
    assert value("gumbel_dead_letters_by_reason_total", {"reason": "new_kind"}) is None


def test_no_data_timestamp_series_when_the_trainer_sends_none() -> None:
    state = LatestEstimates()
    registry = _registry(state)
    state.offer(make_estimate().to_bytes())
    assert registry.get_sample_value("gumbel_data_timestamp_seconds") is None
    assert registry.get_sample_value("gumbel_records_skipped_total") == 0


def test_an_unknown_backpressure_policy_is_shown_as_other() -> None:
    state = LatestEstimates()
    registry = _registry(state)
    state.offer(make_estimate(backpressure="sample").to_bytes())
    assert registry.get_sample_value("gumbel_backpressure_info", {"policy": "sample"}) == 1
    state.offer(make_estimate(backpressure="drop_oldest_v7").to_bytes())
    assert registry.get_sample_value("gumbel_backpressure_info", {"policy": "other"}) == 1
