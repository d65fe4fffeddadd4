"""``up``'s progress line: produced and the truth from the producer's ``/metrics`` (read as
the monitor reads it, ``truth.parse_page``), learned and the estimate from the monitor's
``/estimate``, and the total variation between them (``gumbel_core.total_variation``)."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass

from services.monitor.truth import parse_page

__all__ = ["Progress", "read_progress"]


def _get(url: str, timeout: float = 1.0) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback)
            return response.read()
    except Exception:  # not up yet, or between restarts
        return None


def _total_variation(p: list[float], q: list[float]) -> float:
    # Imported here, not at the top: torch costs this process seconds and hundreds of MB,
    # worth paying once an estimate has arrived, not before the children start.
    import torch

    from gumbel_core import total_variation

    return float(total_variation(torch.tensor(p, dtype=torch.float64),
                                 torch.tensor(q, dtype=torch.float64)))


@dataclass
class Progress:
    produced: int = 0
    learned: int = 0
    dead_letters: int = 0
    estimate: list[float] | None = None
    temperature: float | None = None
    total_variation: float | None = None

    def line(self) -> str:
        parts = [f"produced {self.produced:,}", f"learned {self.learned:,}"]
        if self.dead_letters:
            parts.append(f"dead letters {self.dead_letters:,}")
        if self.estimate is not None:
            parts.append("estimate [" + " ".join(f"{p:.3f}" for p in self.estimate) + "]")
        if self.temperature is not None:
            parts.append(f"tau {self.temperature:.3f}")
        if self.total_variation is not None:
            parts.append(f"TV vs truth {self.total_variation:.4f}")
        return " | ".join(parts)


def read_progress(producer_port: int, monitor_port: int, model_id: str,
                  truth: list[float]) -> Progress:
    """Progress of ``model_id``; ``truth`` is the configured distribution, used until the
    producer reports the one it draws from (after a drift, another)."""
    progress = Progress()
    page = _get(f"http://127.0.0.1:{producer_port}/metrics")
    try:
        produced, reported = (None, None) if page is None else parse_page(
            page.decode("utf-8", "replace"))
    except ValueError:  # not a metrics page (something else on the port)
        produced, reported = None, None
    progress.produced = produced or 0
    if reported is not None and len(reported) == len(truth):
        truth = list(reported)
    body = _get(f"http://127.0.0.1:{monitor_port}/estimate?model_id={model_id}")
    try:
        estimate = json.loads(body) if body is not None else {}
    except ValueError:
        estimate = {}
    if "probabilities" in estimate:
        progress.learned = int(estimate["samples_seen"])
        progress.dead_letters = int(estimate["dead_letters"])
        progress.estimate = [float(p) for p in estimate["probabilities"]]
        progress.temperature = float(estimate["temperature"])
        if len(progress.estimate) == len(truth):
            progress.total_variation = _total_variation(progress.estimate, truth)
    return progress
