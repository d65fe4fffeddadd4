"""A Prometheus collector that renders each model's latest Estimate as the monitor's metrics.

Every series of a model carries its ``model_id`` label. The metrics and their meaning are
listed in docs/services.md#metrics.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib import metadata

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from services.common.schemas import (
    BACKPRESSURE_POLICIES,
    SCHEMA_VERSION,
    ActorMetrics,
    Estimate,
    Histogram,
)
from services.monitor.categories import OTHER, Shown, allot, shown
from services.monitor.state import (
    ActorCounters,
    Counters,
    Latest,
    LatestEstimates,
    dead_letter_labels,
    total_variation,
)

__all__ = ["EstimateCollector", "category_label", "total_variation"]

log = logging.getLogger(__name__)


def category_label(estimate: Estimate, category: int) -> str:
    """The ``category`` label of a category: its name when the trainer sends names, else its
    id."""
    names = estimate.category_names
    return names[category] if names is not None else str(category)


def _version() -> str:
    try:
        return metadata.version("gumbel-stream")
    except metadata.PackageNotFoundError:
        return "unknown"


# The learner's latencies, read from the estimate's cumulative histograms.
_HISTOGRAMS: tuple[tuple[str, str, Callable[[Estimate], Histogram | None]], ...] = (
    ("gumbel_step_duration_seconds", "Duration of one GAN step of the model's learner.",
     lambda e: e.step_duration),
    ("gumbel_record_to_step_seconds", "Seconds from a record's Kafka timestamp to the GAN step "
     "that learned it, one observation per value learned.", lambda e: e.record_to_step),
    ("gumbel_poll_to_step_seconds", "Seconds from the ingest actor's poll of a record to the "
     "GAN step that learned it, one observation per value learned.", lambda e: e.poll_to_step),
)
# The per-category families' help: what a model with many categories shows (issue 24 §1).
_LARGE_K = (" (past max_series_per_model categories: the largest by estimate, and "
            "category=\"_other\" with the sum of the rest; all of them on /estimate).")
# Deprecated (issue 22 §3): the histograms and counters above and below replace them; kept
# one release for dashboards that read them (docs/services.md#metrics).
_DEPRECATED = " Deprecated: use {} (this series goes in the next release)."
# Per ingest actor (and the learner it feeds), read from the estimate's ActorMetrics.
_ACTOR_GAUGES: tuple[tuple[str, str, Callable[[ActorMetrics], float]], ...] = (
    ("gumbel_actor_records_per_second", "Records the ingest actor read per second, over its "
     "last seconds." + _DEPRECATED.format("rate(gumbel_actor_records_read_total)"),
     lambda m: m.records_per_s),
    ("gumbel_actor_step_seconds", "Mean duration of one GAN step of the model's learner, "
     "recent." + _DEPRECATED.format("gumbel_step_duration_seconds"), lambda m: m.step_seconds),
    ("gumbel_actor_poll_to_learn_seconds", "Age of the newest record the learner stepped on, "
     "at that step." + _DEPRECATED.format("gumbel_record_to_step_seconds"),
     lambda m: m.poll_to_learn_seconds),
    ("gumbel_actor_queued_batches", "Blocks the ingest actor holds because the learner had no "
     "room yet (their partitions are not read meanwhile).", lambda m: m.queue_depth),
    ("gumbel_actor_lag_records", "Records on the actor's partitions the model has not learned "
     "yet.", lambda m: m.lag),
    ("gumbel_actor_learned_fraction", "Share of the values counted that the GAN learned from "
     "(below 1 only with backpressure=sample).", lambda m: m.learned_fraction),
)
# Per actor, read from the monitor's never-falling ActorCounters.
_ACTOR_COUNTERS: tuple[tuple[str, str, Callable[[ActorCounters], int]], ...] = (
    ("gumbel_actor_checkpoint_failures", "Checkpoints of the model's learner that failed.",
     lambda c: c.checkpoint_failures),
    ("gumbel_actor_restarts", "Times the actor was restarted (a new process).",
     lambda c: c.restarts),
    ("gumbel_actor_dead_letters", "Malformed records the ingest actor sent to the "
     "dead-letter topic.", lambda c: c.dead_letters),
)


# Series an actor shown adds: its gauges, the two checkpoint gauges, its counters, records read.
_SERIES_PER_ACTOR = len(_ACTOR_GAUGES) + 2 + len(_ACTOR_COUNTERS) + 1


def _partition_lags(estimate: Estimate) -> dict[str, int]:
    """Records not learned yet per partition. One actor owns each partition; should two report
    one (an old status republished after a reassignment), one sample keeps the scrape valid:
    the larger."""
    by_partition: dict[str, int] = {}
    for m in estimate.actor_metrics:
        for partition, records in m.lag_by_partition.items():
            by_partition[partition] = max(records, by_partition.get(partition, 0))
    return by_partition


def _largest(items: Iterable[tuple[str, int]], n: int) -> list[tuple[str, int]]:
    """The ``n`` items with the largest value (ties: the smaller key), in key order (ints)."""
    top = sorted(items, key=lambda i: (-i[1], int(i[0])))[:n]
    return sorted(top, key=lambda i: int(i[0]))


def _histogram(name: str, doc: str, histogram: Histogram) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=[])
    family.add_metric([], [(floatToGoString(b), c) for b, c in
                           zip([*histogram.bounds, float("inf")], histogram.counts, strict=True)],
                      sum_value=histogram.sum)
    return family


def _merged(families: Iterable[Metric]) -> Iterator[Metric]:
    """One family per name, with the samples of every family of that name, in first order."""
    by_name: dict[str, Metric] = {}
    for family in families:
        if family.name in by_name:
            by_name[family.name].samples.extend(family.samples)
        else:
            by_name[family.name] = family
    return iter(by_name.values())


def _labelled(model_id: str, families: Iterable[Metric]) -> Iterator[Metric]:
    """``families`` with ``model_id`` added to every sample: done here, so none can miss it."""
    for family in families:
        family.samples = [s._replace(labels={"model_id": model_id, **s.labels})
                          for s in family.samples]
        yield family


class EstimateCollector(Collector):
    """Reads ``LatestEstimates`` at scrape time, so no stale label set can linger.

    Every model kept is shown, each series under its ``model_id``; a forgotten model leaves
    no series behind. Before the first estimate only ``gumbel_build_info`` and the monitor's
    own counters are exposed: a missing series, not a made-up zero. The per-category series
    follow ``services.monitor.categories``: at most the state's ``max_series_per_model`` per
    model and ``max_category_series`` in all, the series left out by the latter counted in
    ``gumbel_monitor_category_series_omitted_total``. The per-actor and per-partition series
    have budgets of their own in all (each model gets a share, the actors and partitions
    furthest behind first), their cut counted in ``gumbel_monitor_actor_series_omitted_total``:
    a hundred models of 1,024 actors would otherwise make a 140 MB scrape.
    """

    def __init__(self, state: LatestEstimates, max_category_series: int = 10_000, *,
                 max_actor_series: int = 6_000, max_partition_series: int = 2_000) -> None:
        self._state = state
        self.max_category_series = max_category_series
        self.max_actor_series = max_actor_series
        self.max_partition_series = max_partition_series
        self._omitted_lock = threading.Lock()
        self._omitted = 0  # category series the budget left out, all scrapes
        self._actor_omitted = 0  # actor and partition series the budgets left out, all scrapes
        self._cutting = False  # whether the last scrape left some out (to log the change once)
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
            "Valid estimates the monitor received (of the followed model(s)).",
            value=self._state.received,
        )
        yield CounterMetricFamily(
            "gumbel_monitor_invalid_estimates",
            "Messages on the estimates topic that are not a valid Estimate.",
            value=self._state.invalid,
        )
        models = self._state.models()
        plan = self._plan(models)
        partition_lags = {m: _partition_lags(kept.estimate) for m, kept in models.items()}
        actors_shown, partitions_shown = self._actor_plan(models, partition_lags)
        with self._omitted_lock:
            omitted, actor_omitted = self._omitted, self._actor_omitted
        yield CounterMetricFamily(
            "gumbel_monitor_category_series_omitted",
            "Per-category series the scrapes left out (summed in category=\"_other\") to "
            "stay within max_category_series, all models: added at each scrape.",
            value=omitted,
        )
        yield CounterMetricFamily(
            "gumbel_monitor_actor_series_omitted",
            "Per-actor and per-partition series the scrapes left out to stay within the "
            "monitor's budgets for them, all models (the actors and partitions furthest "
            "behind are shown): added at each scrape.",
            value=actor_omitted,
        )
        yield from _merged(
            family
            for model_id, latest in models.items()
            for family in _labelled(model_id, self._model_metrics(
                latest, plan[model_id], actors_shown[model_id],
                _largest(partition_lags[model_id].items(), partitions_shown[model_id])))
        )

    def _actor_plan(self, models: Mapping[str, Latest],
                    partition_lags: Mapping[str, Mapping[str, int]],
                    ) -> tuple[dict[str, int], dict[str, int]]:
        """How many actors and partitions each model shows, within the budgets."""
        actors = {m: (len(kept.estimate.actor_metrics), _SERIES_PER_ACTOR)
                  for m, kept in models.items()}
        partitions = {m: (len(lags), 1) for m, lags in partition_lags.items()}
        actors_shown = allot(actors, self.max_actor_series)
        partitions_shown = allot(partitions, self.max_partition_series)
        omitted = sum(max(0, actors[m][0] - actors_shown[m]) * _SERIES_PER_ACTOR
                      + max(0, partitions[m][0] - partitions_shown[m]) for m in models)
        with self._omitted_lock:
            self._actor_omitted += omitted
        return actors_shown, partitions_shown

    def _plan(self, models: Mapping[str, Latest]) -> dict[str, Shown]:
        """Each model's categories shown, within the budget; counts what it leaves out."""
        per_model = self._state.max_series_per_model
        wants = {m: (min(kept.estimate.num_categories, per_model),
                     2 if kept.estimate.window_baseline_probabilities is None else 3)
                 for m, kept in models.items()}
        allotted = allot(wants, self.max_category_series)
        omitted = sum((wants[m][0] - allotted[m]) * wants[m][1] for m in models)
        with self._omitted_lock:
            self._omitted += omitted
            if (omitted > 0) != self._cutting:
                self._cutting = omitted > 0
                log.log(logging.WARNING if omitted else logging.INFO,
                        "per-category series: %s", f"{omitted} left out of this scrape to stay "
                        f"within max_category_series={self.max_category_series} ({len(models)} "
                        "models)" if omitted else "all within max_category_series again")
        return {m: shown(kept.estimate, kept.ranking, allotted[m]) for m, kept in models.items()}

    def _model_metrics(self, latest: Latest, categories: Shown, actors_shown: int,
                       partition_lags: list[tuple[str, int]]) -> Iterator[Metric]:
        yield from self._estimate_metrics(latest, categories)
        yield from self._counter_metrics(latest.counters)
        for name, doc, histogram in _HISTOGRAMS:
            measured = histogram(latest.estimate)
            if measured is not None:  # a trainer that does not measure it: no made-up zeros
                yield _histogram(name, doc, measured)
        if latest.estimate.actor_metrics:  # a trainer that does not send them: no made-up zeros
            yield from self._actor_metrics(latest.estimate, latest.counters.actors,
                                           actors_shown, partition_lags)

    def _estimate_metrics(self, latest: Latest, categories: Shown) -> Iterator[Metric]:
        """Gauges of the estimate itself: every value is finite, the schema sees to that.

        Nothing here is O(K): a scrape costs the series it shows.
        """
        estimate = latest.estimate
        labels = [category_label(estimate, c) for c in categories.categories]

        def per_category(family: GaugeMetricFamily, probs: list[float], index: int) -> None:
            for label, c in zip(labels, categories.categories, strict=True):
                family.add_metric([label], probs[c])
            if categories.rest:
                family.add_metric([OTHER], categories.rest_sums[index])

        for index, (name, doc, probs) in enumerate((
            ("gumbel_estimated_probability", "Probability of each category, as learned by "
             "the Gumbel-softmax GAN" + _LARGE_K, estimate.probabilities),
            ("gumbel_baseline_probability", "Probability of each category by the counting "
             "baseline on the same records" + _LARGE_K, estimate.baseline_probabilities),
        )):
            family = GaugeMetricFamily(name, doc, labels=["category"])
            per_category(family, probs, index)
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
        window = estimate.window_baseline_probabilities
        if window is not None:
            family = GaugeMetricFamily(
                "gumbel_window_baseline_probability", "Probability of each category by a "
                "forgetting counter over about the last window_records records" + _LARGE_K,
                labels=["category"],
            )
            per_category(family, window, 2)
            yield family
        yield GaugeMetricFamily(
            "gumbel_total_variation", "Total variation distance between the estimate and the "
            "windowed counting baseline (the all-history baseline when there is no window).",
            latest.tv_baseline,  # state.tv_baseline, computed on arrival
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
        # Every reason from the start (0 until one comes): rate() and increase() need the
        # series before its first dead letter to count that one.
        dead = CounterMetricFamily(
            "gumbel_dead_letters", "Malformed records sent to the dead-letter topic, all actors, "
            "per reason (other: any reason this monitor does not know, or none sent).",
            labels=["reason"],
        )
        for reason, count in dead_letter_labels(counters).items():
            dead.add_metric([reason], count)
        yield dead
        by_reason = CounterMetricFamily(
            "gumbel_dead_letters_by_reason", "Dead letters per reason (other: any reason this "
            "monitor does not know)." + _DEPRECATED.format("gumbel_dead_letters_total{reason}"),
            labels=["reason"],
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
        yield CounterMetricFamily(
            "gumbel_drift_detections", "Drifts in the stream the trainer's replicas detected "
            "(each restarts the reported average and re-heats the temperature).",
            value=counters.drift_detections,
        )

    def _actor_metrics(
        self, estimate: Estimate, counters: Mapping[int, ActorCounters], actors_shown: int,
        partition_lags: list[tuple[str, int]],
    ) -> Iterator[Metric]:
        """Per actor (label ``actor``: its index) and per partition: the ``actors_shown``
        actors furthest behind (all, within the budget) and the partitions given.

        Only the actors of the latest estimate are shown, so an actor that is gone leaves no
        series behind.
        """
        furthest_behind = sorted(estimate.actor_metrics, key=lambda m: (-m.lag, m.index))
        actors = sorted(furthest_behind[:actors_shown], key=lambda m: m.index)
        for name, doc, value in _ACTOR_GAUGES:
            family = GaugeMetricFamily(name, doc, labels=["actor"])
            for m in actors:
                family.add_metric([str(m.index)], float(value(m)))
            yield family
        checkpointed = [m for m in actors if m.checkpoint_time is not None]
        if checkpointed:  # before an actor's first checkpoint: a missing series, not a zero
            duration = GaugeMetricFamily(
                "gumbel_actor_checkpoint_duration_seconds",
                "Duration of the actor's last checkpoint.", labels=["actor"],
            )
            written = GaugeMetricFamily(
                "gumbel_actor_last_checkpoint_timestamp_seconds",
                "Unix time of the actor's last checkpoint (written by its current process).",
                labels=["actor"],
            )
            for m in checkpointed:
                duration.add_metric([str(m.index)], m.checkpoint_seconds)
                written.add_metric([str(m.index)], float(m.checkpoint_time or 0.0))
            yield duration
            yield written
        if partition_lags:
            partition_lag = GaugeMetricFamily(
                "gumbel_partition_lag_records", "Records on the partition of the numbers topic "
                "that the trainer has not learned yet.", labels=["partition"],
            )
            for partition, records in partition_lags:
                partition_lag.add_metric([partition], float(records))
            yield partition_lag
        for name, doc, count in _ACTOR_COUNTERS:
            counter = CounterMetricFamily(name, doc, labels=["actor"])
            for m in actors:
                counter.add_metric([str(m.index)], count(counters.get(m.index, ActorCounters())))
            yield counter
        # As the actor's process counts it: a restart is a counter reset that rate() handles.
        read = CounterMetricFamily(
            "gumbel_actor_records_read", "Records the ingest actor read from Kafka (back to 0 "
            "when the actor restarts).", labels=["actor"],
        )
        for m in actors:
            read.add_metric([str(m.index)], m.records_read)
        yield read
