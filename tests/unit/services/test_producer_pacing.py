"""Pacer: chunked pacing to a target rate with a fake clock (no real sleeping)."""

from __future__ import annotations

import pytest

from services.producer.pacing import MAX_CHUNK, Pacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


def test_rate_zero_never_waits() -> None:
    clock = FakeClock()
    pacer = Pacer(0, clock=clock, sleep=clock.sleep)
    for _ in range(100):
        pacer.wait(pacer.chunk_size)
    assert clock.slept == 0
    assert pacer.chunk_size == MAX_CHUNK


def test_chunks_take_about_fifty_milliseconds() -> None:
    assert Pacer(1000).chunk_size == 50
    assert Pacer(1).chunk_size == 1
    assert Pacer(10**9).chunk_size == MAX_CHUNK


def test_keeps_the_target_rate() -> None:
    clock = FakeClock()
    pacer = Pacer(1000, clock=clock, sleep=clock.sleep)
    for _ in range(200):  # 10,000 records at 1000/s take 10 s (the last chunk is not waited)
        pacer.wait(pacer.chunk_size)
    assert clock.now - 100.0 == pytest.approx(9.95, abs=1e-6)


def test_does_not_burst_after_a_stall() -> None:
    clock = FakeClock()
    pacer = Pacer(100, clock=clock, sleep=clock.sleep)
    pacer.wait(5)
    clock.now += 60  # the broker hung for a minute
    pacer.wait(5)  # goes at once, the schedule restarts from now
    before = clock.now
    pacer.wait(5)
    assert clock.now - before == pytest.approx(0.05)


def test_stop_ends_the_wait_early() -> None:
    clock = FakeClock()
    pacer = Pacer(0.01, clock=clock, sleep=clock.sleep)  # one record per 100 s
    pacer.wait(1)
    pacer.wait(1, stop=lambda: clock.slept > 0.5)
    assert clock.slept < 1


def test_rejects_a_negative_rate() -> None:
    with pytest.raises(ValueError, match="rate"):
        Pacer(-1)


@pytest.mark.parametrize("rate", [float("inf"), float("nan")])
def test_rejects_a_rate_that_is_not_finite(rate: float) -> None:
    # inf was an OverflowError from int(inf) when the producer started (issue 24 §2); the
    # settings refuse it first (test_cli_bad_input), this is the Pacer's own guard.
    with pytest.raises(ValueError, match="finite"):
        Pacer(rate)
