"""Temperature schedules: a current value, a ``step()``, a ``reheat()`` for drift, a state dict."""

from __future__ import annotations

import math
from typing import Any

from gumbel_core._validation import check_tau

__all__ = [
    "TemperatureSchedule",
    "ConstantSchedule",
    "ExponentialSchedule",
    "LinearSchedule",
    "CosineSchedule",
    "SCHEDULES",
    "make_schedule",
    "default_schedule",
]


class TemperatureSchedule:
    """Base class. ``value`` is the current temperature; ``step()`` advances one training step.

    ``reheat()`` restarts the schedule from its initial (hot) temperature, which helps the
    generator move again after the stream's distribution drifts.
    """

    kind: str = ""

    def __init__(self, initial: float, floor: float) -> None:
        self.initial = check_tau(initial)
        self.floor = check_tau(floor)
        if self.floor > self.initial:
            raise ValueError(f"floor ({self.floor}) must not exceed initial ({self.initial})")
        self.steps = 0

    @property
    def value(self) -> float:
        return max(self.floor, self._at(self.steps))

    def _at(self, steps: int) -> float:
        raise NotImplementedError

    def step(self) -> float:
        """Advance one step; return the new temperature."""
        self.steps += 1
        return self.value

    def reheat(self) -> None:
        """Start again from the initial temperature."""
        self.steps = 0

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "steps": self.steps, "config": self.config()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != self.kind:
            raise ValueError(f"schedule state is for {state.get('kind')!r}, not {self.kind!r}")
        self.steps = int(state["steps"])

    def config(self) -> dict[str, Any]:
        return {"initial": self.initial, "floor": self.floor}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class ConstantSchedule(TemperatureSchedule):
    """A fixed temperature.

    Examples
    --------
    >>> s = ConstantSchedule(1.0); s.step(); s.value
    1.0
    1.0
    """

    kind = "constant"

    def __init__(self, tau: float = 1.0) -> None:
        super().__init__(tau, tau)

    def _at(self, steps: int) -> float:
        return self.initial

    def config(self) -> dict[str, Any]:
        return {"tau": self.initial}


class ExponentialSchedule(TemperatureSchedule):
    """Jang et al. (2017): ``tau = max(floor, initial * exp(-rate * t))``, ``t`` updated every
    ``every`` steps.

    Examples
    --------
    >>> s = ExponentialSchedule(initial=1.0, floor=0.1, rate=1e-3, every=100)
    >>> for _ in range(1000):
    ...     _ = s.step()
    >>> round(s.value, 4)
    0.3679
    """

    kind = "exponential"

    def __init__(
        self, initial: float = 1.0, floor: float = 0.5, rate: float = 1e-4, every: int = 100
    ) -> None:
        super().__init__(initial, floor)
        if not rate >= 0:
            raise ValueError(f"rate must be >= 0, got {rate!r}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive int, got {every!r}")
        self.rate = float(rate)
        self.every = every

    def _at(self, steps: int) -> float:
        t = (steps // self.every) * self.every
        return self.initial * math.exp(-self.rate * t)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "rate": self.rate, "every": self.every}


class LinearSchedule(TemperatureSchedule):
    """From ``initial`` down to ``floor`` in a straight line over ``duration`` steps.

    Examples
    --------
    >>> s = LinearSchedule(initial=2.0, floor=1.0, duration=10)
    >>> [round(s.step(), 1) for _ in range(3)], s.steps
    ([1.9, 1.8, 1.7], 3)
    """

    kind = "linear"

    def __init__(self, initial: float = 2.0, floor: float = 0.5, duration: int = 1000) -> None:
        super().__init__(initial, floor)
        if isinstance(duration, bool) or not isinstance(duration, int) or duration < 1:
            raise ValueError(f"duration must be a positive int, got {duration!r}")
        self.duration = duration

    def _at(self, steps: int) -> float:
        frac = min(1.0, steps / self.duration)
        return self.initial + (self.floor - self.initial) * frac

    def config(self) -> dict[str, Any]:
        return {**super().config(), "duration": self.duration}


class CosineSchedule(LinearSchedule):
    """Half a cosine from ``initial`` down to ``floor`` over ``duration`` steps.

    Examples
    --------
    >>> s = CosineSchedule(initial=2.0, floor=1.0, duration=10)
    >>> for _ in range(5):
    ...     _ = s.step()
    >>> s.value
    1.5
    """

    kind = "cosine"

    def _at(self, steps: int) -> float:
        frac = min(1.0, steps / self.duration)
        return self.floor + 0.5 * (self.initial - self.floor) * (1.0 + math.cos(math.pi * frac))


SCHEDULES: dict[str, type[TemperatureSchedule]] = {
    "constant": ConstantSchedule,
    "exponential": ExponentialSchedule,
    "linear": LinearSchedule,
    "cosine": CosineSchedule,
}


def make_schedule(kind: str, **options: Any) -> TemperatureSchedule:
    """Build a schedule by name (``constant``, ``exponential``, ``linear``, ``cosine``).

    Examples
    --------
    >>> make_schedule("constant", tau=0.5).value
    0.5
    """
    try:
        cls = SCHEDULES[kind]
    except KeyError:
        raise ValueError(
            f"unknown schedule {kind!r}; choose one of {', '.join(SCHEDULES)}"
        ) from None
    return cls(**options)


def default_schedule(estimator: str) -> TemperatureSchedule:
    """The schedule each estimator is tuned with (see ``docs/learner.md``).

    The straight-through family (``st``, ``gst``, ``rao``) anneals linearly from 2 to 0.5
    over the first 1,000 steps (256,000 samples in batches of 256), as the method prescribes:
    hot early, when the generator is far from the data, then cooler. After a detected drift
    the learner re-heats it (``reheat``): a hot temperature lets the generator lift the logits
    of categories that were absent, measured 3-10x faster than at 0.5. ``reinmax`` never
    goes below 1 (2 -> 1); ``soft`` follows Jang et al.'s annealing as in the original post.

    Examples
    --------
    >>> default_schedule("st")
    LinearSchedule(initial=2.0, floor=0.5, duration=1000)
    >>> default_schedule("reinmax").floor >= 1.0
    True
    """
    if estimator == "soft":
        return ExponentialSchedule(initial=1.0, floor=0.5, rate=1e-4, every=100)
    if estimator == "reinmax":
        return LinearSchedule(initial=2.0, floor=1.0, duration=1000)
    return LinearSchedule(initial=2.0, floor=0.5, duration=1000)
