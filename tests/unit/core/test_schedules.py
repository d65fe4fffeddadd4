"""Temperature schedules: values, floors, reheat, state round-trip, defaults per estimator."""

import math
import pickle

import pytest

from gumbel_core import (
    ConstantSchedule,
    CosineSchedule,
    ExponentialSchedule,
    LinearSchedule,
    default_schedule,
    make_schedule,
)


def advance(schedule, n):
    for _ in range(n):
        schedule.step()
    return schedule.value


def test_constant():
    assert advance(ConstantSchedule(0.7), 100) == 0.7


def test_exponential_follows_jang_with_a_floor_and_steps_of_n():
    s = ExponentialSchedule(initial=1.0, floor=0.5, rate=1e-3, every=100)
    assert advance(s, 99) == 1.0  # updated only every 100 steps
    assert math.isclose(advance(s, 1), math.exp(-0.1))
    assert advance(s, 10_000) == 0.5


def test_linear_and_cosine_reach_the_floor_monotonically():
    for cls in (LinearSchedule, CosineSchedule):
        s = cls(initial=2.0, floor=1.0, duration=50)
        values = [s.step() for _ in range(60)]
        assert values == sorted(values, reverse=True)
        assert values[-1] == 1.0 and values[0] < 2.0


def test_reheat_restarts_from_the_initial_value():
    s = ExponentialSchedule(initial=2.0, floor=0.5, rate=1e-2, every=1)
    advance(s, 500)
    s.reheat()
    assert s.value == 2.0


@pytest.mark.parametrize("kind", ["constant", "exponential", "linear", "cosine"])
def test_state_dict_and_pickle_round_trip(kind):
    s = make_schedule(kind)
    advance(s, 123)
    fresh = make_schedule(kind)
    fresh.load_state_dict(s.state_dict())
    assert fresh.value == s.value and fresh.steps == 123
    assert pickle.loads(pickle.dumps(s)).value == s.value


def test_loading_another_kind_raises():
    with pytest.raises(ValueError, match="schedule state"):
        ConstantSchedule().load_state_dict(LinearSchedule().state_dict())


def test_reinmax_default_never_goes_below_one():
    s = default_schedule("reinmax")
    assert advance(s, 100_000) >= 1.0


@pytest.mark.parametrize("name", ["soft", "st", "gst", "rao", "reinmax"])
def test_every_estimator_has_a_default(name):
    assert default_schedule(name).value > 0


@pytest.mark.parametrize(
    "build",
    [
        lambda: ConstantSchedule(0.0),
        lambda: ExponentialSchedule(initial=1.0, floor=2.0),
        lambda: ExponentialSchedule(rate=-1.0),
        lambda: ExponentialSchedule(every=0),
        lambda: LinearSchedule(duration=0),
        lambda: make_schedule("nope"),
    ],
)
def test_bad_arguments_raise(build):
    with pytest.raises(ValueError):
        build()
