"""The live page's history: the last minutes, oldest first, each estimate once."""

from __future__ import annotations

from services.monitor.history import History, Point


def point(at: float, model_id: str = "m") -> Point:
    return Point(at=at, model_id=model_id, learned=int(at), temperature=1.0, tv_baseline=0.1,
                 tv_truth=None)


def test_points_older_than_the_window_are_dropped() -> None:
    history = History(window_s=10)
    for at in range(0, 30, 2):
        history.add(point(at))
    assert [p.at for p in history.of_model("m", now=28)] == [18, 20, 22, 24, 26, 28]
    assert [p.at for p in history.of_model("m", now=37)] == [28]  # read later: still windowed


def test_the_same_estimate_twice_is_one_point() -> None:
    history = History()
    history.add(point(5))
    history.add(point(5))
    history.add(point(4))
    assert len(history.of_model("m", now=5)) == 1


def test_points_are_per_model_and_bounded_in_number() -> None:
    history = History(max_points=3)
    for at, model in [(1, "a"), (2, "b"), (3, "a"), (4, "a"), (5, "a")]:
        history.add(point(at, model))
    assert [p.at for p in history.of_model("a", now=5)] == [3, 4, 5]
    assert history.of_model("b", now=5) == []
