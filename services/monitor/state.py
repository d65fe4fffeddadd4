"""The latest valid Estimate per model, and whether the newest one is fresh enough."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import ValidationError

from services.common.schemas import Estimate

__all__ = ["Health", "LatestEstimates"]

log = logging.getLogger(__name__)

# A malformed message is logged with at most this much of its value.
_SHOWN_BYTES = 200


@dataclass(frozen=True)
class Health:
    ok: bool
    reason: str


class LatestEstimates:
    """Keeps the newest Estimate of each model; ``current`` is the one the metrics show.

    ``current`` is the most recently received estimate, of ``model_id`` only when one is
    given. Malformed messages are counted and logged, never raised. Safe across threads:
    the consumer offers, the HTTP handlers read.
    """

    def __init__(
        self,
        model_id: str | None = None,
        stale_after_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.model_id = model_id
        self.stale_after_s = stale_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._by_model: dict[str, Estimate] = {}
        self._current: Estimate | None = None
        self.received = 0  # valid estimates of the followed model(s)
        self.invalid = 0  # messages that are not a valid Estimate
        self.ignored = 0  # valid estimates of another model than model_id

    @property
    def current(self) -> Estimate | None:
        return self._current

    def by_model(self) -> dict[str, Estimate]:
        with self._lock:
            return dict(self._by_model)

    def offer(self, value: bytes | None, where: str = "") -> Estimate | None:
        """Parse one message value; keep it if valid and followed. Returns the Estimate kept."""
        try:
            estimate = Estimate.from_bytes(value or b"")
        except (ValidationError, ValueError, UnicodeDecodeError) as exc:
            with self._lock:
                self.invalid += 1
            shown = (value or b"")[:_SHOWN_BYTES]
            first_error = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            log.warning("invalid estimate%s: %s; value %r", f" at {where}" if where else "",
                        first_error, shown)
            return None
        if self.model_id is not None and estimate.model_id != self.model_id:
            with self._lock:
                self.ignored += 1
            return None
        with self._lock:
            self._by_model[estimate.model_id] = estimate
            self._current = estimate
            self.received += 1
        return estimate

    def health(self) -> Health:
        """OK once an estimate arrived whose timestamp is at most ``stale_after_s`` old."""
        estimate = self._current
        if estimate is None:
            which = f" of model {self.model_id!r}" if self.model_id else ""
            return Health(False, f"no estimate{which} received yet")
        age = self._clock() - estimate.timestamp
        if age > self.stale_after_s:
            return Health(
                False,
                f"latest estimate (model {estimate.model_id!r}, step {estimate.step}) is "
                f"{age:.1f}s old, more than stale_after_s={self.stale_after_s:g}",
            )
        return Health(True, f"ok: model {estimate.model_id!r}, step {estimate.step}, "
                            f"{age:.1f}s old")
