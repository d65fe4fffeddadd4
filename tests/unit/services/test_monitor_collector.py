"""EstimateCollector: docs/services.md#metrics, with the right types, from the latest estimate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.common.schemas import DEAD_LETTER_REASONS, ActorMetrics, Histogram
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


class _DefaultModelRegistry(CollectorRegistry):
    """Reads a model's series as those of model ``default`` unless the labels name another:
    the tests of one model stay about their metric, not about the label every series has."""

    def get_sample_value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        if not name.startswith(("gumbel_monitor_", "gumbel_build_info")):
            labels = {"model_id": "default", **(labels or {})}
        return super().get_sample_value(name, labels)


def _registry(state: LatestEstimates) -> CollectorRegistry:
    registry = _DefaultModelRegistry()
    registry.register(EstimateCollector(state))
    return registry


def test_exposes_every_documented_metric_with_its_type() -> None:
    state = LatestEstimates()
    state.offer(make_estimate().to_bytes())
    text = generate_latest(_registry(state)).decode()
    types = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert {name: types.get(name) for name in DOCUMENTED_METRICS} == DOCUMENTED_METRICS
    assert 'gumbel_samples_learned_total{model_id="default"} 5000.0' in text
    # the estimate's 3 dead letters come with no reason: they are counted as other
    assert 'gumbel_dead_letters_total{model_id="default",reason="other"} 3.0' in text


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
    assert registry.get_sample_value("gumbel_dead_letters_total", {"reason": "other"}) == 9
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


# --- per actor (issue 12 §3) ----------------------------------------------------------------

ACTOR_METRICS = {  # docs/services.md#metrics, per actor and per partition
    "gumbel_actor_records_per_second": "gauge",
    "gumbel_actor_step_seconds": "gauge",
    "gumbel_actor_poll_to_learn_seconds": "gauge",
    "gumbel_actor_queued_batches": "gauge",
    "gumbel_actor_lag_records": "gauge",
    "gumbel_partition_lag_records": "gauge",
    "gumbel_actor_checkpoint_duration_seconds": "gauge",
    "gumbel_actor_last_checkpoint_timestamp_seconds": "gauge",
    "gumbel_actor_learned_fraction": "gauge",
    "gumbel_actor_checkpoint_failures": "counter",
    "gumbel_actor_restarts": "counter",
    "gumbel_actor_dead_letters": "counter",
    "gumbel_actor_records_read": "counter",  # issue 22 §3
}


def _actors(*metrics: dict) -> list[ActorMetrics]:
    return [ActorMetrics(**m) for m in metrics]


TWO_ACTORS = _actors(
    {"index": 0, "records_per_s": 1000.0, "step_seconds": 0.01, "poll_to_learn_seconds": 0.2,
     "queue_depth": 3, "lag": 30, "lag_by_partition": {"0": 10, "2": 20},
     "checkpoint_time": 990.5, "checkpoint_seconds": 0.05, "checkpoint_failures": 1,
     "restarts": 2, "dead_letters": 4, "learned_fraction": 0.5, "records_read": 12_345},
    {"index": 1, "lag": 7, "lag_by_partition": {"1": 7, "3": 0}},
)


def test_exposes_every_actor_metric_with_its_type_and_values() -> None:
    state = LatestEstimates()
    registry = _registry(state)
    state.offer(make_estimate(actor_metrics=TWO_ACTORS).to_bytes())
    text = generate_latest(registry).decode()
    types = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert {name: types.get(name) for name in ACTOR_METRICS} == ACTOR_METRICS
    value = registry.get_sample_value
    zero, one = {"actor": "0"}, {"actor": "1"}
    assert value("gumbel_actor_records_per_second", zero) == 1000.0
    assert value("gumbel_actor_records_per_second", one) == 0.0
    assert value("gumbel_actor_step_seconds", zero) == 0.01
    assert value("gumbel_actor_poll_to_learn_seconds", zero) == 0.2
    assert value("gumbel_actor_queued_batches", zero) == 3
    assert value("gumbel_actor_lag_records", one) == 7
    assert {p: value("gumbel_partition_lag_records", {"partition": p}) for p in "0123"} == {
        "0": 10, "1": 7, "2": 20, "3": 0}
    assert value("gumbel_actor_checkpoint_duration_seconds", zero) == 0.05
    assert value("gumbel_actor_last_checkpoint_timestamp_seconds", zero) == 990.5
    assert value("gumbel_actor_learned_fraction", zero) == 0.5
    assert value("gumbel_actor_checkpoint_failures_total", zero) == 1
    assert value("gumbel_actor_restarts_total", zero) == 2
    assert value("gumbel_actor_restarts_total", one) == 0
    assert value("gumbel_actor_dead_letters_total", zero) == 4
    assert value("gumbel_actor_records_read_total", zero) == 12_345
    assert value("gumbel_actor_records_read_total", one) == 0


def test_no_checkpoint_series_before_an_actors_first_checkpoint() -> None:
    state = LatestEstimates()
    registry = _registry(state)
    state.offer(make_estimate(actor_metrics=TWO_ACTORS).to_bytes())
    for name in ("gumbel_actor_last_checkpoint_timestamp_seconds",
                 "gumbel_actor_checkpoint_duration_seconds"):
        assert registry.get_sample_value(name, {"actor": "1"}) is None
    state.offer(make_estimate(actor_metrics=_actors({"index": 0})).to_bytes())
    names = {f.name for f in text_string_to_metric_families(generate_latest(registry).decode())}
    assert "gumbel_actor_last_checkpoint_timestamp_seconds" not in names


def test_no_actor_series_from_a_trainer_that_sends_none() -> None:
    state = LatestEstimates()
    state.offer(make_estimate().to_bytes())
    names = {f.name for f in text_string_to_metric_families(
        generate_latest(_registry(state)).decode())}
    assert not {n for n in names if n.startswith(("gumbel_actor_", "gumbel_partition_"))} - {
        "gumbel_actor_status_age_seconds"}


def test_an_actor_that_left_leaves_no_series() -> None:
    state = LatestEstimates()
    registry = _registry(state)
    state.offer(make_estimate(actor_metrics=TWO_ACTORS).to_bytes())
    state.offer(make_estimate(actor_metrics=TWO_ACTORS[:1]).to_bytes())
    assert registry.get_sample_value("gumbel_actor_lag_records", {"actor": "1"}) is None
    assert registry.get_sample_value("gumbel_actor_restarts_total", {"actor": "1"}) is None
    assert registry.get_sample_value("gumbel_partition_lag_records", {"partition": "1"}) is None


def test_a_partition_reported_twice_is_one_series() -> None:
    state = LatestEstimates()
    registry = _registry(state)
    state.offer(make_estimate(actor_metrics=_actors(
        {"index": 0, "lag_by_partition": {"0": 5}}, {"index": 1, "lag_by_partition": {"0": 9}},
    )).to_bytes())
    text = generate_latest(registry).decode()  # a duplicate sample would fail the scrape
    assert text.count('gumbel_partition_lag_records{model_id="default",partition="0"}') == 1
    assert registry.get_sample_value("gumbel_partition_lag_records", {"partition": "0"}) == 9


def test_actor_counters_are_monotonic_across_restores_and_restarts() -> None:
    state = LatestEstimates()
    registry = _registry(state)

    def offer(**metrics: int) -> dict[str, float | None]:
        state.offer(make_estimate(actor_metrics=_actors({"index": 0, **metrics})).to_bytes())
        return {name: registry.get_sample_value(f"gumbel_actor_{name}_total", {"actor": "0"})
                for name in ("dead_letters", "checkpoint_failures", "restarts")}

    assert offer(dead_letters=9, checkpoint_failures=2) == {
        "dead_letters": 9, "checkpoint_failures": 2, "restarts": 0}
    # Ray restarted the actor: its dead letters go back to the checkpoint's (and are counted
    # again as it relearns), its failures start again from 0 in the new process.
    assert offer(dead_letters=7, checkpoint_failures=0, restarts=1) == {
        "dead_letters": 9, "checkpoint_failures": 2, "restarts": 1}
    assert offer(dead_letters=10, checkpoint_failures=1, restarts=1) == {
        "dead_letters": 10, "checkpoint_failures": 3, "restarts": 1}
    # A restart between two estimates whose new process already failed more often than the
    # old one had: every failure of the new process is new.
    assert offer(dead_letters=10, checkpoint_failures=4, restarts=2) == {
        "dead_letters": 10, "checkpoint_failures": 7, "restarts": 2}
    # The trainer's driver restarted: the restart count starts again from 0.
    assert offer(dead_letters=10, checkpoint_failures=0, restarts=0) == {
        "dead_letters": 10, "checkpoint_failures": 7, "restarts": 2}
    assert offer(dead_letters=10, checkpoint_failures=0, restarts=1) == {
        "dead_letters": 10, "checkpoint_failures": 7, "restarts": 3}


def test_every_metric_the_monitor_exports_is_in_the_docs() -> None:
    state = LatestEstimates()
    state.offer(make_estimate(
        data_timestamp=1.0, dead_letters_by_reason={"empty": 1}, **HISTOGRAMS,
        actor_metrics=_actors({"index": 0, "lag_by_partition": {"0": 1}, "checkpoint_time": 1.0}),
    ).to_bytes())
    docs = (Path(__file__).resolve().parents[3] / "docs" / "services.md").read_text()
    for family in text_string_to_metric_families(generate_latest(_registry(state)).decode()):
        name = family.name + ("_total" if family.type == "counter" else "")
        assert f"`{name}" in docs, name


def test_total_variation_is_against_the_window_when_the_trainer_sends_one() -> None:
    """Issue 11: a count over all history never forgets; the window follows a drift."""
    state = LatestEstimates()
    registry = _registry(state)
    state.offer(make_estimate(probabilities=[0.1, 0.1, 0.8],
                              baseline_probabilities=[0.6, 0.3, 0.1],  # the old world
                              window_baseline_probabilities=[0.1, 0.2, 0.7],
                              window_records=10_000, drift_detections=2).to_bytes())
    value = registry.get_sample_value
    assert value("gumbel_total_variation") == pytest.approx(0.1)
    assert value("gumbel_window_baseline_probability", {"category": "2"}) == 0.7
    assert value("gumbel_drift_detections_total") == 2
    state.offer(make_estimate(drift_detections=1).to_bytes())  # a restore: never falls
    assert value("gumbel_drift_detections_total") == 2
    assert value("gumbel_window_baseline_probability", {"category": "2"}) is None


# --- several models (issue 15 §2) -----------------------------------------------------------


def _samples(registry: CollectorRegistry) -> list:
    text = generate_latest(registry).decode()
    return [s for f in text_string_to_metric_families(text) for s in f.samples]


def test_two_models_are_shown_side_by_side_each_under_its_model_id() -> None:
    state = LatestEstimates()
    registry = _registry(state)
    state.offer(make_estimate(model_id="a", temperature=0.5, samples_seen=10,
                              actor_metrics=TWO_ACTORS).to_bytes())
    state.offer(make_estimate(model_id="b", temperature=0.9, samples_seen=20,
                              num_categories=2, probabilities=[0.5, 0.5],
                              baseline_probabilities=[0.5, 0.5]).to_bytes())
    value = registry.get_sample_value
    assert value("gumbel_temperature", {"model_id": "a"}) == 0.5
    assert value("gumbel_temperature", {"model_id": "b"}) == 0.9
    assert value("gumbel_samples_learned_total", {"model_id": "a"}) == 10
    assert value("gumbel_samples_learned_total", {"model_id": "b"}) == 20
    assert value("gumbel_estimated_probability", {"model_id": "a", "category": "2"}) == 0.5
    assert value("gumbel_estimated_probability", {"model_id": "b", "category": "2"}) is None
    assert value("gumbel_actor_lag_records", {"model_id": "a", "actor": "1"}) == 7
    assert value("gumbel_actor_lag_records", {"model_id": "b", "actor": "1"}) is None
    for sample in _samples(registry):  # every series of a model says which
        monitor_own = sample.name.startswith(("gumbel_monitor_", "gumbel_build_info",
                                              "process_", "python_"))
        assert monitor_own or sample.labels.get("model_id") in {"a", "b"}, sample


def test_a_forgotten_model_leaves_no_series() -> None:
    now = [1000.0]
    state = LatestEstimates(forget_after_s=60, clock=lambda: now[0])
    registry = _registry(state)
    state.offer(make_estimate(model_id="old", timestamp=1000.0).to_bytes())
    now[0] = 1050.0
    state.offer(make_estimate(model_id="new", timestamp=1050.0).to_bytes())
    now[0] = 1070.0
    assert registry.get_sample_value("gumbel_temperature", {"model_id": "old"}) is None
    assert registry.get_sample_value("gumbel_temperature", {"model_id": "new"}) == 0.7
    assert not [s for s in _samples(registry) if s.labels.get("model_id") == "old"]


def test_models_past_max_models_are_counted_invalid_until_one_is_forgotten() -> None:
    now = [1000.0]
    state = LatestEstimates(max_models=2, forget_after_s=60, clock=lambda: now[0])
    registry = _registry(state)
    for model_id in ("a", "b", "c"):
        state.offer(make_estimate(model_id=model_id, timestamp=now[0]).to_bytes())
    assert registry.get_sample_value("gumbel_monitor_invalid_estimates_total") == 1
    assert {s.labels["model_id"] for s in _samples(registry)
            if s.name == "gumbel_temperature"} == {"a", "b"}
    state.offer(make_estimate(model_id="a", timestamp=now[0]).to_bytes())  # a known one: kept
    assert registry.get_sample_value("gumbel_monitor_invalid_estimates_total") == 1
    now[0] = 1061.0  # a and b silent for longer than forget_after_s
    state.offer(make_estimate(model_id="c", timestamp=now[0]).to_bytes())
    assert registry.get_sample_value("gumbel_temperature", {"model_id": "c"}) == 0.7


def test_an_estimate_with_fields_this_monitor_does_not_know_is_shown() -> None:
    state = LatestEstimates()
    registry = _registry(state)
    values = json.loads(make_estimate(actor_metrics=_actors({"index": 0})).to_bytes())
    values["category_names"] = ["a", "b", "c"]
    values["actor_metrics"][0]["gpu_memory_bytes"] = 123
    state.offer(json.dumps(values).encode())
    assert registry.get_sample_value("gumbel_monitor_invalid_estimates_total") == 0
    assert registry.get_sample_value("gumbel_temperature") == 0.7
    state.offer(json.dumps({**values, "temperature": -1.0}).encode())  # known fields: checked
    assert registry.get_sample_value("gumbel_monitor_invalid_estimates_total") == 1


def test_category_names_are_the_category_label_of_every_per_category_metric() -> None:
    state = LatestEstimates()
    registry = _registry(state)
    state.offer(make_estimate(category_names=["click", "view", "buy"],
                              window_baseline_probabilities=[0.1, 0.1, 0.8],
                              window_records=100).to_bytes())
    value = registry.get_sample_value
    assert value("gumbel_estimated_probability", {"category": "buy"}) == 0.5
    assert value("gumbel_baseline_probability", {"category": "click"}) == 0.25
    assert value("gumbel_window_baseline_probability", {"category": "buy"}) == 0.8
    assert value("gumbel_estimated_probability", {"category": "2"}) is None


# --- histograms and counters, not averages (issue 22 §3) ------------------------------------

HISTOGRAMS = {  # the Estimate's field -> what the monitor exposes it as
    "step_duration": Histogram(bounds=[0.001, 0.01, 0.1], counts=[2, 7, 9, 10], sum=0.4),
    "record_to_step": Histogram(bounds=[0.1, 1.0], counts=[0, 400, 500], sum=520.5),
    "poll_to_step": Histogram(bounds=[0.1, 1.0], counts=[450, 500, 500], sum=30.0),
}
HISTOGRAM_NAMES = {"step_duration": "gumbel_step_duration_seconds",
                   "record_to_step": "gumbel_record_to_step_seconds",
                   "poll_to_step": "gumbel_poll_to_step_seconds"}


def _families(registry: CollectorRegistry) -> dict:
    return {f.name: f for f in text_string_to_metric_families(
        generate_latest(registry).decode())}


def test_latencies_are_prometheus_histograms() -> None:
    state = LatestEstimates()
    state.offer(make_estimate(**HISTOGRAMS).to_bytes())
    families = _families(_registry(state))
    for field, name in HISTOGRAM_NAMES.items():
        family, sent = families[name], HISTOGRAMS[field]
        assert family.type == "histogram", name
        buckets = [s for s in family.samples if s.name == f"{name}_bucket"]
        (count,) = [s.value for s in family.samples if s.name == f"{name}_count"]
        (total,) = [s.value for s in family.samples if s.name == f"{name}_sum"]
        assert [float(s.labels["le"]) for s in buckets] == [*sent.bounds, float("inf")]
        values = [s.value for s in buckets]
        assert values == sorted(values) == sent.counts  # cumulative: never falling
        assert buckets[-1].labels["le"] == "+Inf" and values[-1] == count == sent.count
        assert total == sent.sum
        assert all(s.labels["model_id"] == "default" for s in family.samples)


def test_the_old_mean_and_rate_gauges_stay_one_release_marked_deprecated() -> None:
    state = LatestEstimates()
    state.offer(make_estimate(**HISTOGRAMS, actor_metrics=TWO_ACTORS,
                              dead_letters_by_reason={"empty": 3}).to_bytes())
    families = _families(_registry(state))
    for name in ("gumbel_actor_records_per_second", "gumbel_actor_step_seconds",
                 "gumbel_actor_poll_to_learn_seconds", "gumbel_dead_letters_by_reason"):
        assert "Deprecated: use " in families[name].documentation, name


def test_no_histogram_series_from_a_trainer_that_sends_none() -> None:
    state = LatestEstimates()
    state.offer(make_estimate().to_bytes())
    assert not set(HISTOGRAM_NAMES.values()) & set(_families(_registry(state)))


def test_a_learner_restart_is_a_counter_reset_of_its_histograms() -> None:
    """The counts start again from 0 with the learner's process: shown as they come, for
    rate() to read the fall as the reset it is (no high-water mark, unlike samples)."""
    state = LatestEstimates()
    registry = _registry(state)
    state.offer(make_estimate(**HISTOGRAMS).to_bytes())
    restarted = Histogram(bounds=[0.001, 0.01, 0.1], counts=[0, 1, 1, 1], sum=0.005)
    state.offer(make_estimate(step_duration=restarted).to_bytes())
    assert registry.get_sample_value("gumbel_step_duration_seconds_count") == 1
    assert registry.get_sample_value("gumbel_step_duration_seconds_bucket", {"le": "0.01"}) == 1


def test_dead_letters_total_has_a_reason_label_that_sums_to_the_dead_letters() -> None:
    state = LatestEstimates()
    registry = _registry(state)
    state.offer(make_estimate(dead_letters=12, dead_letters_by_reason={
        "empty": 1, "not_utf8": 4, "new_kind": 2, "other_new": 5}).to_bytes())
    (family,) = [f for f in text_string_to_metric_families(generate_latest(registry).decode())
                 if f.name == "gumbel_dead_letters"]
    assert family.type == "counter"
    by_reason = {s.labels["reason"]: s.value for s in family.samples
                 if s.name == "gumbel_dead_letters_total"}
    assert sum(by_reason.values()) == 12
    # every known reason from the start, so that increase() counts a reason's first one
    assert set(by_reason) == {*DEAD_LETTER_REASONS, "other"}
    assert (by_reason["empty"], by_reason["not_utf8"], by_reason["other"]) == (1, 4, 7)
    assert by_reason["too_large"] == 0


def test_dead_letters_without_a_reason_are_other_and_never_fall() -> None:
    state = LatestEstimates()
    registry = _registry(state)

    def other() -> float | None:
        return registry.get_sample_value("gumbel_dead_letters_total", {"reason": "other"})

    state.offer(make_estimate(dead_letters=5).to_bytes())  # an older trainer: no reasons
    assert other() == 5
    state.offer(make_estimate(dead_letters=6, dead_letters_by_reason={"empty": 6}).to_bytes())
    assert other() == 5  # a counter never falls, even when the reasons come later
    assert registry.get_sample_value("gumbel_dead_letters_total", {"reason": "empty"}) == 6


# --- bounded in total, not per model (issue 24 §1) ------------------------------------------


def _peaked(k: int, seed: int = 0) -> list[float]:
    """A distribution over k with distinct values, largest at the ids ``seed % k``, +7, ..."""
    weights = [1.0 + ((c * 7919 + seed) % k) / k for c in range(k)]
    total = sum(weights)
    return [w / total for w in weights]


def _per_category(registry: CollectorRegistry, name: str, model_id: str = "default") -> dict:
    return {s.labels["category"]: s.value for s in _samples(registry)
            if s.name == name and s.labels["model_id"] == model_id}


def test_past_max_series_per_model_the_largest_and_the_rest_as_other() -> None:
    k, n = 1000, 10
    probs, base = _peaked(k), _peaked(k, seed=3)
    state = LatestEstimates(max_series_per_model=n)
    registry = _registry(state)
    state.offer(make_estimate(num_categories=k, probabilities=probs, baseline_probabilities=base,
                              window_baseline_probabilities=base, window_records=100).to_bytes())
    shown = _per_category(registry, "gumbel_estimated_probability")
    largest = sorted(range(k), key=lambda c: probs[c], reverse=True)[:n - 1]
    assert set(shown) == {str(c) for c in largest} | {"_other"}
    assert shown["_other"] == pytest.approx(1 - sum(probs[c] for c in largest))
    assert sum(shown.values()) == pytest.approx(1.0)
    for name in ("gumbel_baseline_probability", "gumbel_window_baseline_probability"):
        same = _per_category(registry, name)  # the same categories, each of its own value
        assert set(same) == set(shown), name
        assert same["_other"] == pytest.approx(1 - sum(base[c] for c in largest)), name
    # the whole estimate still counts: TV over every category, not the ones shown
    assert registry.get_sample_value("gumbel_total_variation") == pytest.approx(
        total_variation(probs, base))
    assert registry.get_sample_value("gumbel_monitor_category_series_omitted_total") == 0


def test_a_small_k_keeps_every_series_and_no_other() -> None:
    state = LatestEstimates(max_series_per_model=3)
    registry = _registry(state)
    state.offer(make_estimate().to_bytes())  # K=3
    assert set(_per_category(registry, "gumbel_estimated_probability")) == {"0", "1", "2"}


def test_a_category_named_other_is_summed_in_the_rest_never_twice() -> None:
    k = 50
    names = [f"item{c}" for c in range(k)]
    probs = _peaked(k)
    biggest = max(range(k), key=probs.__getitem__)
    names[biggest] = "_other"  # the largest category is named like the rest's series
    state = LatestEstimates(max_series_per_model=5)
    registry = _registry(state)
    state.offer(make_estimate(num_categories=k, probabilities=probs, baseline_probabilities=probs,
                              category_names=names).to_bytes())
    text = generate_latest(registry).decode()
    assert text.count('gumbel_estimated_probability{category="_other"') == 1
    shown = _per_category(registry, "gumbel_estimated_probability")
    assert len(shown) == 5 and sum(shown.values()) == pytest.approx(1.0)
    assert shown["_other"] > probs[biggest]  # it holds that category, and the others left


def test_a_total_budget_across_models_keeps_small_models_whole_and_counts_the_rest() -> None:
    k = 500
    state = LatestEstimates(max_series_per_model=100)
    registry = CollectorRegistry()
    registry.register(EstimateCollector(state, max_category_series=1_000))
    state.offer(make_estimate(model_id="small").to_bytes())  # K=3: 6 series
    for i in range(10):  # each wants 100 categories x 2 metrics: 2,000 in all
        probs = _peaked(k, seed=i)
        state.offer(make_estimate(model_id=f"big{i}", num_categories=k, probabilities=probs,
                                  baseline_probabilities=probs).to_bytes())
    samples = [s for s in _samples(registry) if s.name in (
        "gumbel_estimated_probability", "gumbel_baseline_probability")]
    assert len(samples) <= 1_000
    small = {s.labels["category"] for s in samples if s.labels["model_id"] == "small"}
    assert small == {"0", "1", "2"}
    per_big = {m: len([s for s in samples if s.labels["model_id"] == m]) // 2
               for m in (f"big{i}" for i in range(10))}
    # equal shares of what the small one left (994 series: 497 categories), _other included
    assert set(per_big.values()) == {49, 50} and sum(per_big.values()) == 497
    for i in range(10):
        shown = _per_category(registry, "gumbel_estimated_probability", f"big{i}")
        assert sum(shown.values()) == pytest.approx(1.0)
    # what a scrape leaves out, counted at each scrape (get_sample_value scrapes too)
    omitted = "gumbel_monitor_category_series_omitted_total"
    before = registry.get_sample_value(omitted)
    generate_latest(registry)
    assert registry.get_sample_value(omitted) - before == 2 * (2_000 - 2 * 497)
    assert before % (2 * 1006) == 0
