"""LatestEstimates: keeps the newest valid estimate, counts bad ones, judges freshness."""

from __future__ import annotations

import json
import logging
import math

import pytest

from services.monitor.state import LatestEstimates
from tests.unit.services.monitor_fakes import make_estimate


def test_keeps_the_latest_estimate_per_model() -> None:
    state = LatestEstimates()
    state.offer(make_estimate(model_id="a", step=1).to_bytes())
    state.offer(make_estimate(model_id="b", step=2).to_bytes())
    state.offer(make_estimate(model_id="a", step=3).to_bytes())
    assert state.current is not None and state.current.step == 3
    assert {m: e.step for m, e in state.by_model().items()} == {"a": 3, "b": 2}
    assert state.received == 3


@pytest.mark.parametrize(
    "value",
    [b"not json", b"{}", b"", None, b"\xff\xfe",
     make_estimate().to_bytes().replace(b"[0.2,", b"[0.9,", 1)],  # no longer sums to 1
)
def test_counts_and_logs_a_bad_message_without_raising(
    value: bytes | None, caplog: pytest.LogCaptureFixture
) -> None:
    state = LatestEstimates()
    state.offer(make_estimate(step=1).to_bytes())
    with caplog.at_level(logging.WARNING):
        assert state.offer(value, "estimates/0@7") is None
    assert state.invalid == 1
    assert state.current is not None and state.current.step == 1  # the good one stays
    assert "estimates/0@7" in caplog.text


def test_follows_only_the_configured_model() -> None:
    state = LatestEstimates(model_id="a")
    state.offer(make_estimate(model_id="a", step=1).to_bytes())
    state.offer(make_estimate(model_id="b", step=2).to_bytes())
    assert state.current is not None and state.current.model_id == "a"
    assert state.ignored == 1


def test_health_before_fresh_and_stale() -> None:
    now = [1000.0]
    state = LatestEstimates(stale_after_s=5, clock=lambda: now[0])
    health = state.health()
    assert not health.ok and "no estimate" in health.reason
    state.offer(make_estimate(timestamp=999.0).to_bytes())
    assert state.health().ok
    now[0] = 1003.9
    assert state.health().ok
    now[0] = 1004.1
    health = state.health()
    assert not health.ok and "old" in health.reason and "stale_after_s=5" in health.reason


def _raw(**changes: object) -> bytes:
    """A valid estimate's JSON with ``changes``, written as json.dumps writes (NaN tokens too)."""
    values = make_estimate().model_dump()
    values.update(changes)
    return json.dumps(values).encode()


@pytest.mark.parametrize(
    "changes",
    [{"samples_seen": 10**400}, {"step": 10**400}, {"offsets": {"0": 10**400}},
     {"generator_loss": math.nan}, {"temperature": math.inf}, {"timestamp": math.nan},
     {"timestamp": -1.0}],
    ids=["huge-samples_seen", "huge-step", "huge-offset", "nan-loss", "inf-temperature",
         "nan-timestamp", "negative-timestamp"],
)
def test_counts_a_hostile_number_as_invalid(changes: dict[str, object]) -> None:
    state = LatestEstimates()
    assert state.offer(_raw(**changes)) is None
    assert state.invalid == 1 and state.current is None


def test_a_timestamp_too_far_in_the_future_is_invalid(caplog: pytest.LogCaptureFixture) -> None:
    state = LatestEstimates(max_clock_skew_s=300, clock=lambda: 1000.0)
    assert state.offer(make_estimate(timestamp=1300.0).to_bytes()) is not None
    with caplog.at_level(logging.WARNING):
        assert state.offer(make_estimate(timestamp=1301.0).to_bytes(), "estimates/0@9") is None
        assert state.offer(make_estimate(timestamp=1000.0, data_timestamp=2000.0).to_bytes())\
            is None
    assert state.invalid == 2
    assert "future" in caplog.text and "max_clock_skew_s=300" in caplog.text


def test_more_categories_than_max_categories_is_invalid(caplog: pytest.LogCaptureFixture) -> None:
    state = LatestEstimates(max_categories=4)
    assert state.offer(make_estimate(
        num_categories=4, probabilities=[0.25] * 4, baseline_probabilities=[0.25] * 4
    ).to_bytes()) is not None
    with caplog.at_level(logging.WARNING):
        assert state.offer(make_estimate(
            num_categories=5, probabilities=[0.2] * 5, baseline_probabilities=[0.2] * 5
        ).to_bytes(), "estimates/0@3") is None
    assert state.invalid == 1
    assert "5 categories" in caplog.text and "max_categories=4" in caplog.text


def test_forgets_a_model_silent_longer_than_forget_after_s() -> None:
    now = [1000.0]
    state = LatestEstimates(forget_after_s=100, clock=lambda: now[0])
    state.offer(make_estimate(model_id="a", timestamp=1000.0).to_bytes())
    now[0] = 1050.0
    state.offer(make_estimate(model_id="b", timestamp=1050.0).to_bytes())
    now[0] = 1100.5
    assert set(state.by_model()) == {"b"}
    assert state.current is not None and state.current.model_id == "b"
    now[0] = 1150.5
    assert state.by_model() == {} and state.current is None
    assert "no estimate" in state.health().reason


def test_health_judges_the_data_timestamp_when_there_is_one() -> None:
    now = [1000.0]
    state = LatestEstimates(stale_after_s=5, clock=lambda: now[0])
    state.offer(make_estimate(timestamp=1000.0, data_timestamp=990.0).to_bytes())
    health = state.health()
    assert not health.ok and "data_timestamp" in health.reason and "10.0s old" in health.reason
    state.offer(make_estimate(timestamp=1000.0, data_timestamp=999.0).to_bytes())
    health = state.health()
    assert health.ok and "data_timestamp" in health.reason


def test_health_says_it_judged_the_publish_timestamp_without_data_timestamp() -> None:
    state = LatestEstimates(stale_after_s=5, clock=lambda: 1000.0)
    state.offer(make_estimate(timestamp=999.0).to_bytes())
    health = state.health()
    assert health.ok and "(timestamp)" in health.reason


def test_counters_never_go_back_for_a_model() -> None:
    state = LatestEstimates()
    state.offer(make_estimate(model_id="a", samples_seen=100, dead_letters=5,
                              records_skipped=2, dead_letters_truncated=1,
                              dead_letters_by_reason={"empty": 3, "weird": 2}).to_bytes())
    state.offer(make_estimate(model_id="a", samples_seen=80, dead_letters=4,  # a restore
                              dead_letters_by_reason={"empty": 1, "too_large": 1}).to_bytes())
    state.offer(make_estimate(model_id="b", samples_seen=10, dead_letters=0).to_bytes())
    a, b = state.latest("a").counters, state.latest("b").counters
    assert (a.samples_learned, a.dead_letters, a.records_skipped, a.dead_letters_truncated) \
        == (100, 5, 2, 1)
    assert a.dead_letters_by_reason == {"empty": 3, "other": 2, "too_large": 1}
    assert (b.samples_learned, b.dead_letters) == (10, 0)
    state.offer(make_estimate(model_id="a", samples_seen=130).to_bytes())
    assert state.latest("a").counters.samples_learned == 130
