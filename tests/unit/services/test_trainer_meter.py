"""The learning meter: rates over recent batches, and a data time that never runs ahead."""

from __future__ import annotations

import pytest

from services.trainer.meter import LearningMeter


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_rates_over_the_window() -> None:
    mono, wall = Clock(100.0), Clock(1_000.0)
    meter = LearningMeter(window_s=10.0, clock=mono, wall=wall)
    for _ in range(5):
        meter.learned(1000, step_s=0.01, polled_at=mono.t - 0.05, newest_time=999.0)
        mono.t += 1.0
    rates = meter.rates()
    assert rates.records_per_s == pytest.approx(1000.0, rel=0.01)  # 4,000 values over 4 s
    assert rates.step_seconds == pytest.approx(0.01)
    assert rates.poll_to_learn_seconds == pytest.approx(0.05)
    mono.t += 60.0
    assert meter.rates().records_per_s == 0.0  # nothing learned lately


def test_data_time_is_now_when_caught_up_else_the_newest_record_never_the_future() -> None:
    mono, wall = Clock(0.0), Clock(1_000.0)
    meter = LearningMeter(clock=mono, wall=wall)
    wall.t = 1_100.0
    meter.learned(10, 0.0, 0.0, newest_time=1_050.0)
    meter.caught_up(False)
    assert meter.data_time == 1_050.0  # behind: as fresh as the newest record learned
    meter.learned(10, 0.0, 0.0, newest_time=9_999.0)  # a producer clock far ahead
    meter.caught_up(False)
    assert meter.data_time == 1_100.0
    wall.t = 1_200.0
    meter.caught_up(True)
    assert meter.data_time == 1_200.0


def test_rates_while_another_thread_learns() -> None:
    """status() reads the rates on Ray's call thread while the learn thread records batches:
    reading must never see the deque change under it (CI saw 'deque mutated during
    iteration' kill the publish loop)."""
    import sys
    import threading

    meter = LearningMeter(window_s=1e9)
    stop = threading.Event()

    def learn() -> None:
        while not stop.is_set():
            meter.learned(1, 0.0, 0.0, 0.0)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible to expose a race
    thread = threading.Thread(target=learn, daemon=True)
    thread.start()
    try:
        for _ in range(3_000):
            meter.rates()
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)
