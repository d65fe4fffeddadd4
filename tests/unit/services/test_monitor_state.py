"""LatestEstimates: keeps the newest valid estimate, counts bad ones, judges freshness."""

from __future__ import annotations

import logging

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
