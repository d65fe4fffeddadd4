"""The producer's truth as the monitor reads it from the producer's own metrics page."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from services.monitor.truth import ProducerTruth, parse_truth
from services.producer.metrics import ProducerMetrics


def producer_page(probabilities: list[float], produced: int = 0) -> str:
    registry = CollectorRegistry()
    metrics = ProducerMetrics(registry)
    metrics.set_distribution(probabilities)
    metrics.produced.inc(produced)
    return generate_latest(registry).decode()


def test_the_producers_page_gives_the_distribution_in_category_order() -> None:
    truth = parse_truth(producer_page([0.0] * 9 + [0.25, 0.75], produced=42), read_at=5.0)
    assert truth is not None
    assert truth.probabilities == (0.0,) * 9 + (0.25, 0.75)  # "10" after "9", not after "1"
    assert truth.produced == 42 and truth.read_at == 5.0


def test_a_page_without_integer_categories_gives_no_truth() -> None:
    assert parse_truth("up 1\n", 0.0) is None
    assert parse_truth('gumbel_true_probability{category="cat"} 1\n', 0.0) is None
    gap = 'gumbel_true_probability{category="0"} 0.5\ngumbel_true_probability{category="2"} 0.5\n'
    assert parse_truth(gap, 0.0) is None


def test_a_failed_read_keeps_the_last_truth_and_says_why() -> None:
    pages = iter([producer_page([0.5, 0.5]), OSError("connection refused"), "<html>"])

    def fetch(url: str) -> str:
        page = next(pages)
        if isinstance(page, Exception):
            raise page
        return page

    source = ProducerTruth("http://producer/metrics", fetch=fetch, clock=lambda: 1.0)
    assert source.latest() == (None, None)
    source.refresh()
    truth, error = source.latest()
    assert truth is not None and truth.probabilities == (0.5, 0.5) and error is None
    source.refresh()
    assert source.latest() == (truth, "OSError: connection refused")
    source.refresh()  # not a metrics page: parsed as no truth (or refused by the parser)
    kept, error = source.latest()
    assert kept == truth and error is not None


def test_the_reader_thread_stops() -> None:
    source = ProducerTruth("http://producer/metrics", refresh_s=0.01,
                           fetch=lambda url: producer_page([0.1, 0.9]))
    source.start()
    source.stop()
    assert source.latest()[0] is not None
    assert source._thread is not None and not source._thread.is_alive()
