"""A Prometheus collector that renders the latest Estimate as the monitor's metrics (DESIGN §5)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from importlib import metadata

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.common.schemas import SCHEMA_VERSION
from services.monitor.state import LatestEstimates

__all__ = ["EstimateCollector", "total_variation"]


def total_variation(p: list[float], q: list[float]) -> float:
    return 0.5 * sum(abs(a - b) for a, b in zip(p, q, strict=True))


def _version() -> str:
    try:
        return metadata.version("gumbel-stream")
    except metadata.PackageNotFoundError:
        return "unknown"


class EstimateCollector(Collector):
    """Reads ``LatestEstimates`` at scrape time, so no stale label set can linger.

    Before the first estimate only ``gumbel_build_info`` and the monitor's own counters
    are exposed: a missing series, not a made-up zero.
    """

    def __init__(self, state: LatestEstimates) -> None:
        self._state = state
        self._build_labels = {
            "version": _version(),
            "schema_version": str(SCHEMA_VERSION),
            "python": ".".join(map(str, sys.version_info[:3])),
        }

    def describe(self) -> Iterator[Metric]:
        return iter(())  # names depend on whether an estimate arrived; collect() at scrape

    def collect(self) -> Iterator[Metric]:
        build = GaugeMetricFamily(
            "gumbel_build_info", "gumbel-stream build of this monitor.",
            labels=list(self._build_labels),
        )
        build.add_metric(list(self._build_labels.values()), 1.0)
        yield build
        yield CounterMetricFamily(
            "gumbel_monitor_estimates_received",
            "Valid estimates the monitor received (of the followed model).",
            value=self._state.received,
        )
        yield CounterMetricFamily(
            "gumbel_monitor_invalid_estimates",
            "Messages on the estimates topic that are not a valid Estimate.",
            value=self._state.invalid,
        )
        estimate = self._state.current
        if estimate is None:
            return
        for name, doc, probs in (
            ("gumbel_estimated_probability", "Probability of each category, as learned by "
             "the Gumbel-softmax GAN.", estimate.probabilities),
            ("gumbel_baseline_probability", "Probability of each category by the counting "
             "baseline on the same records.", estimate.baseline_probabilities),
        ):
            family = GaugeMetricFamily(name, doc, labels=["category"])
            for category, p in enumerate(probs):
                family.add_metric([str(category)], p)
            yield family
        yield GaugeMetricFamily(
            "gumbel_temperature", "Current Gumbel-softmax temperature.", estimate.temperature
        )
        yield GaugeMetricFamily(
            "gumbel_generator_loss", "Generator loss of the latest step.", estimate.generator_loss
        )
        yield GaugeMetricFamily(
            "gumbel_discriminator_loss", "Discriminator loss of the latest step.",
            estimate.discriminator_loss,
        )
        yield GaugeMetricFamily(
            "gumbel_total_variation", "Total variation distance between the estimate and the "
            "counting baseline.",
            total_variation(estimate.probabilities, estimate.baseline_probabilities),
        )
        yield CounterMetricFamily(
            "gumbel_samples_learned", "Records learned from, all actors.",
            value=estimate.samples_seen,
        )
        yield CounterMetricFamily(
            "gumbel_dead_letters", "Malformed records sent to the dead-letter topic, all actors.",
            value=estimate.dead_letters,
        )
        yield GaugeMetricFamily(
            "gumbel_learned_fraction", "Share of the records learned that the GAN learned from "
            "(below 1 only with backpressure=sample; the baseline counts every record).",
            estimate.learned_fraction,
        )
        yield GaugeMetricFamily(
            "gumbel_consumer_lag_records", "Records on the numbers topic the trainer has not "
            "consumed yet, all partitions.", float(estimate.consumer_lag),
        )
        policy = GaugeMetricFamily(
            "gumbel_backpressure_info", "The trainer's backpressure policy.", labels=["policy"]
        )
        policy.add_metric([estimate.backpressure], 1.0)
        yield policy
        yield GaugeMetricFamily(
            "gumbel_last_estimate_timestamp_seconds",
            "Unix time at which the trainer made the latest estimate.", estimate.timestamp,
        )
