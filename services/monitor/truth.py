"""The producer's true distribution, read from its ``/metrics`` for the live page."""

from __future__ import annotations

import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["ProducerTruth", "Truth", "parse_page", "parse_truth"]

log = logging.getLogger(__name__)

REFRESH_S = 2.0
TIMEOUT_S = 2.0
# A producer's metrics page is a few KB; anything much larger is not one.
_MAX_BYTES = 4 << 20


@dataclass(frozen=True)
class Truth:
    """The producer's distribution now (category i at index i) and its records produced."""

    probabilities: tuple[float, ...]
    produced: int | None
    read_at: float  # the monitor's clock


def parse_page(text: str) -> tuple[int | None, tuple[float, ...] | None]:
    """``gumbel_produced_total`` and ``gumbel_true_probability{category}`` of a metrics page.

    The count is read whatever the labels. The distribution (category i at index i) is None
    unless the labels are the integers 0..K-1 as strings: category names, or a gap in the
    integers, are not a distribution the page can put next to the estimate.
    """
    by_category: dict[str, float] = {}
    produced: int | None = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "gumbel_true_probability":
                by_category[sample.labels.get("category", "")] = sample.value
            elif sample.name == "gumbel_produced_total":
                produced = int(sample.value)
    if not by_category or not all(c.isdigit() for c in by_category):
        return produced, None
    indexed = {int(c): p for c, p in by_category.items()}
    if sorted(indexed) != list(range(len(indexed))):
        return produced, None
    return produced, tuple(indexed[c] for c in range(len(indexed)))


def parse_truth(text: str, read_at: float) -> Truth | None:
    """The truth of a metrics page (``parse_page``); None if it has no distribution."""
    produced, probabilities = parse_page(text)
    return None if probabilities is None else Truth(probabilities, produced, read_at)


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:  # noqa: S310 (a setting)
        return response.read(_MAX_BYTES).decode("utf-8", "replace")


class ProducerTruth:
    """Reads the producer's metrics every ``refresh_s`` in a daemon thread; keeps the last.

    The last truth read stays after the producer is gone (a producer with ``--count`` exits
    once done, and its distribution is still the one the trainer learned). Failures are
    logged once per outage, never raised.
    """

    def __init__(
        self,
        url: str,
        refresh_s: float = REFRESH_S,
        fetch: Callable[[str], str] = _fetch,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.refresh_s = refresh_s
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._truth: Truth | None = None
        self._error: str | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def latest(self) -> tuple[Truth | None, str | None]:
        """The last truth read (None before one) and why the last read failed (None if not)."""
        with self._lock:
            return self._truth, self._error

    def refresh(self) -> None:
        """Read the producer's metrics once."""
        try:
            truth = parse_truth(self._fetch(self.url), self._clock())
            error = None if truth is not None else "no gumbel_true_probability by integer category"
        except Exception as exc:  # unreachable, not HTTP, not a metrics page: all the same here
            truth, error = None, f"{type(exc).__name__}: {exc}"
        with self._lock:
            if error is not None and self._error is None:
                # Before the first read this is the usual start order (the producer comes up
                # after the monitor); after it, the producer went away.
                level = logging.INFO if self._truth is None else logging.WARNING
                log.log(level, "cannot read the truth from %s: %s", self.url, error)
            self._error = error
            if truth is not None:
                self._truth = truth

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="monitor-truth", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=TIMEOUT_S + 1)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.refresh_s)
