"""``up``'s progress line: the producer's metrics and the monitor's estimate, read back."""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from services.producer.metrics import ProducerMetrics
from services.up import progress as up


def serve(monkeypatch: pytest.MonkeyPatch, metrics: bytes | None, estimate: dict | None) -> None:
    pages = {"/metrics": metrics, "/estimate": None if estimate is None else
             json.dumps(estimate).encode()}
    def get(url: str, timeout: float = 1.0) -> bytes | None:
        if "/estimate" in url:
            assert url.endswith("/estimate?model_id=m")  # the model up's trainer learns
            return pages["/estimate"]
        return pages["/metrics"]

    monkeypatch.setattr(up, "_get", get)


def producer_page(probabilities: list[float], produced: int) -> bytes:
    registry = CollectorRegistry()
    metrics = ProducerMetrics(registry)
    metrics.set_distribution(probabilities)
    metrics.produced.inc(produced)
    return generate_latest(registry)


ESTIMATE = {"probabilities": [0.2, 0.3, 0.5], "samples_seen": 40, "dead_letters": 1,
            "temperature": 0.5}


def test_total_variation_is_against_the_distribution_the_producer_reports(monkeypatch) -> None:
    # After a drift the producer's gauges, not the configured truth, are what it draws from.
    serve(monkeypatch, producer_page([0.1, 0.2, 0.7], produced=1234), ESTIMATE)
    progress = up.read_progress(1, 2, "m", truth=[1 / 3, 1 / 3, 1 / 3])
    assert progress.produced == 1234
    assert (progress.learned, progress.dead_letters) == (40, 1)
    assert progress.total_variation == pytest.approx(0.2)


@pytest.mark.parametrize("page", [None, b"<html>not metrics</html>", b""])
def test_without_producer_metrics_the_configured_truth_is_used(monkeypatch, page) -> None:
    serve(monkeypatch, page, ESTIMATE)
    progress = up.read_progress(1, 2, "m", truth=[0.2, 0.3, 0.5])
    assert progress.produced == 0
    assert progress.total_variation == pytest.approx(0.0)


def test_no_estimate_yet_leaves_the_estimate_out(monkeypatch) -> None:
    serve(monkeypatch, producer_page([0.5, 0.5], produced=3), None)
    progress = up.read_progress(1, 2, "m", truth=[0.5, 0.5])
    assert progress.estimate is None and progress.total_variation is None
    assert progress.line() == "produced 3 | learned 0"


def test_named_categories_still_give_the_records_produced(monkeypatch) -> None:
    # A producer with category names labels its truth by name: no distribution by index to
    # compare with, but the count of records produced is the same counter.
    page = (b'gumbel_true_probability{category="cat"} 0.25\n'
            b'gumbel_true_probability{category="dog"} 0.75\n'
            b"gumbel_produced_total 1234.0\n")
    serve(monkeypatch, page, ESTIMATE)
    progress = up.read_progress(1, 2, "m", truth=[0.2, 0.3, 0.5])
    assert progress.produced == 1234
    assert progress.total_variation == pytest.approx(0.0)  # the configured truth
