"""An actor's lag: high watermarks against learned offsets, and the restored-offset check."""

from __future__ import annotations

import pytest

from services.trainer.lag import Lag


def test_lag_is_the_records_between_the_learned_offset_and_the_high_watermark() -> None:
    lag = Lag("numbers", 0)
    assert lag.by_partition({0: 5}) == {}  # nothing fetched yet: unknown, not 0
    lag.fetched({0: 10, 1: 7, 2: 3})
    # partition 1 not learned from yet counts 0 until it has an offset; 2 is ahead: never < 0
    assert lag.by_partition({0: 4, 2: 5}) == {0: 6, 1: 0, 2: 0}


def test_a_restored_offset_past_the_end_is_reported_once(caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    lag = Lag("numbers", 3)
    lag.verify({0: 50, 1: 20})
    lag.fetched({1: 30})  # partition 0 not fetched yet: checked later
    assert "past its end" not in caplog.text
    lag.fetched({0: 10, 1: 30})
    lag.fetched({0: 10, 1: 30})
    reports = [r for r in caplog.records if "past its end" in r.getMessage()]
    assert len(reports) == 1 and "numbers[0]" in reports[0].getMessage()
