"""A Prometheus collector that renders the latest Estimate as the monitor's metrics.

The metrics and their meaning are listed in docs/services.md#metrics.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from importlib import metadata

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.common.schemas import BACKPRESSURE_POLICIES, SCHEMA_VERSION, Estimate
from services.monitor.state import Counters, LatestEstimates

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
        latest = self._state.latest()
        if latest is None:
            return
        yield from self._estimate_metrics(latest.estimate)
        yield from self._counter_metrics(latest.counters)

    def _estimate_metrics(self, estimate: Estimate) -> Iterator[Metric]:
        """Gauges of the estimate itself: every value is finite, the schema sees to that."""
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
            "gumbel_backpressure_info", "The trainer's backpressure policy (other: one this "
            "monitor does not know).", labels=["policy"],
        )
        known = estimate.backpressure in BACKPRESSURE_POLICIES
        policy.add_metric([estimate.backpressure if known else "other"], 1.0)
        yield policy
        yield GaugeMetricFamily(
            "gumbel_last_estimate_timestamp_seconds",
            "Unix time at which the trainer made the latest estimate.", estimate.timestamp,
        )
        if estimate.data_timestamp is not None:
            yield GaugeMetricFamily(
                "gumbel_data_timestamp_seconds", "Unix time as of which every actor had "
                "learned everything it had polled (the stalest actor's progress).",
                estimate.data_timestamp,
            )
        yield GaugeMetricFamily(
            "gumbel_actor_status_age_seconds",
            "Age of the oldest actor status behind the latest estimate.",
            estimate.max_actor_status_age_s,
        )

    def _counter_metrics(self, counters: Counters) -> Iterator[Metric]:
        """The model's counters, never falling: see ``Counters`` for why."""
        yield CounterMetricFamily(
            "gumbel_samples_learned", "Records learned from, all actors.",
            value=counters.samples_learned,
        )
        yield CounterMetricFamily(
            "gumbel_dead_letters", "Malformed records sent to the dead-letter topic, all actors.",
            value=counters.dead_letters,
        )
        by_reason = CounterMetricFamily(
            "gumbel_dead_letters_by_reason", "Dead letters per reason (other: any reason this "
            "monitor does not know).", labels=["reason"],
        )
        for reason, count in counters.dead_letters_by_reason.items():
            by_reason.add_metric([reason], count)
        if by_reason.samples:  # a trainer that does not send reasons: no made-up zeros
            yield by_reason
        yield CounterMetricFamily(
            "gumbel_dead_letters_truncated", "Dead letters written truncated: too large for the "
            "dead-letter topic.", value=counters.dead_letters_truncated,
        )
        yield CounterMetricFamily(
            "gumbel_records_skipped", "Records the trainer knowingly skipped (e.g. after a "
            "corrupt checkpoint, with the accept-loss policy).", value=counters.records_skipped,
        )
