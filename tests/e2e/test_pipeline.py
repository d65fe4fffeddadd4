"""End to end: real Kafka, the three services as `gumbel-stream` processes, real Prometheus.

What a user sees: Prometheus (queried over its HTTP API) shows an estimate close to the
producer's true distribution, the trainer learned from exactly the records produced, and
an independent Kafka client (kcat) reads valid Estimates from the ``estimates`` topic.
"""

from __future__ import annotations

import subprocess
import time

import pytest
from kafka import KafkaProducer

from services.common.schemas import Estimate, Histogram
from tests.conftest import require_binary
from tests.e2e.conftest import (
    GUMBEL_STREAM,
    PARTITIONS,
    Children,
    Prometheus,
    records_on_topic,
    start_metric_path,
    start_producer,
    total_variation,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.kafka]

TRUTH = [0.0, 0.0, 0.1, 0.3, 0.6]  # the producer's default distribution
COUNT = 60_000


def test_pipeline(fresh_kafka_broker, children: Children) -> None:
    kcat = require_binary("kcat")
    bootstrap = fresh_kafka_broker.bootstrap_servers
    prometheus, producer_port = start_metric_path(children, bootstrap)
    # Slow enough (about 6 s) for Prometheus to scrape the producer a few times.
    start_producer(children, bootstrap, producer_port, TRUTH, COUNT, rate=10_000)
    children.start("trainer", [
        GUMBEL_STREAM, "trainer", "--bootstrap-servers", bootstrap,
        "--num-partitions", str(PARTITIONS), "--num-actors", "2", "--num-categories",
        str(len(TRUTH)), "--checkpoint-dir", str(children.workdir / "checkpoints"),
        "--publish-interval", "1",
    ])
    started = time.monotonic()

    producer = children.children["producer"].process
    wait_until(lambda: producer.poll() is not None, 180, "the producer to finish",
               children.report)
    assert producer.returncode == 0, children.report()
    assert records_on_topic(bootstrap, "numbers") == COUNT

    learned = wait_until(
        lambda: prometheus.scalar("gumbel_samples_learned_total") == COUNT,
        300, f"Prometheus to show gumbel_samples_learned_total == {COUNT}",
        lambda: f"last: {prometheus.query('gumbel_samples_learned_total')}\n{children.report()}",
    )
    assert learned
    seconds_to_learn = time.monotonic() - started

    estimate = prometheus.by_category("gumbel_estimated_probability")
    baseline = prometheus.by_category("gumbel_baseline_probability")
    truth_seen = prometheus.by_category("max_over_time(gumbel_true_probability[10m])")
    produced_seen = prometheus.scalar("max_over_time(gumbel_produced_total[10m])")
    tv = total_variation(estimate, TRUTH)
    print(f"e2e: learned {COUNT} records in {seconds_to_learn:.1f}s; estimate {estimate}; "
          f"baseline {baseline}; TV(estimate, truth) = {tv:.4f}; "
          f"TV(baseline, truth) = {total_variation(baseline, TRUTH):.4f}; "
          f"gumbel_produced_total last scraped {produced_seen}")
    assert sorted(estimate) == list(range(len(TRUTH)))
    assert total_variation(baseline, TRUTH) <= 0.01  # exact counts of 60,000 draws
    assert truth_seen == dict(enumerate(TRUTH))  # the producer was scraped too
    assert produced_seen is not None and 0 < produced_seen <= COUNT
    assert prometheus.scalar("sum(gumbel_dead_letters_total)") == 0
    assert prometheus.scalar('up{job="monitor"}') == 1
    _check_the_trainer_metrics(prometheus, children)

    # An independent client reads what the trainer published.
    read = subprocess.run(
        [kcat, "-b", bootstrap, "-C", "-t", "estimates", "-e", "-o", "beginning", "-q"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    lines = [line for line in read.stdout.splitlines() if line.strip()]
    assert lines, read.stderr
    estimates = [Estimate.model_validate_json(line) for line in lines]
    assert estimates[-1].samples_seen <= COUNT
    assert max(e.samples_seen for e in estimates) == COUNT
    assert estimates[-1].num_categories == len(TRUTH) and estimates[-1].actors == 2

    # Last, so that a learner that has not converged still lets everything else be checked.
    assert tv <= 0.05, f"TV {tv:.4f} > 0.05: estimate {estimate}\n{children.report()}"


def _check_the_trainer_metrics(prometheus: Prometheus, children: Children) -> None:
    """Each actor by its index, each partition, and the services' own processes (issue 12 §3)."""
    def per_actor(promql: str) -> dict[str, float]:
        return {r["metric"]["actor"]: float(r["value"][1]) for r in prometheus.query(promql)}

    actors = {"0", "1"}
    for name in ("gumbel_actor_records_per_second", "gumbel_actor_step_seconds",
                 "gumbel_actor_poll_to_learn_seconds", "gumbel_actor_queued_batches",
                 "gumbel_actor_lag_records", "gumbel_actor_learned_fraction",
                 "gumbel_actor_restarts_total", "gumbel_actor_checkpoint_failures_total",
                 "gumbel_actor_dead_letters_total", "gumbel_actor_records_read_total"):
        assert set(per_actor(name)) == actors, name
    learned_per_s = per_actor("max_over_time(gumbel_actor_records_per_second[10m])")
    assert min(learned_per_s.values()) > 0, learned_per_s  # both actors learned
    step = per_actor("max_over_time(gumbel_actor_step_seconds[10m])")
    assert min(step.values()) > 0, step
    # the histograms and counters that replace those averages (issue 22 §3)
    read = per_actor("gumbel_actor_records_read_total")
    assert min(read.values()) > 0 and sum(read.values()) >= COUNT, read
    for name in ("gumbel_record_to_step_seconds", "gumbel_poll_to_step_seconds"):
        # every record has a Kafka timestamp and a poll time: one observation per value
        assert prometheus.scalar(f"{name}_count") == COUNT, name
        _check_histogram(prometheus, name)
    assert (prometheus.scalar("gumbel_step_duration_seconds_count") or 0) > 0
    _check_histogram(prometheus, "gumbel_step_duration_seconds")
    assert (prometheus.scalar("histogram_quantile(0.5, sum by (le) "
                              "(gumbel_record_to_step_seconds_bucket))") or 0) > 0
    assert per_actor("gumbel_actor_learned_fraction") == {"0": 1.0, "1": 1.0}
    assert per_actor("gumbel_actor_restarts_total") == {"0": 0.0, "1": 0.0}
    assert per_actor("gumbel_actor_checkpoint_failures_total") == {"0": 0.0, "1": 0.0}

    def partition_lags() -> dict[int, float] | None:
        lags = {int(r["metric"]["partition"]): float(r["value"][1])
                for r in prometheus.query("gumbel_partition_lag_records")}
        return lags if lags == dict.fromkeys(range(PARTITIONS), 0.0) else None

    wait_until(partition_lags, 60, "every partition's lag at 0 in Prometheus",
               lambda: f"last: {prometheus.query('gumbel_partition_lag_records')}")
    wait_until(  # the first checkpoints come checkpoint_interval_s (10 s) after the start
        lambda: set(per_actor("gumbel_actor_last_checkpoint_timestamp_seconds")) == actors,
        60, "a checkpoint of each actor in Prometheus", children.report)
    assert set(per_actor("gumbel_actor_checkpoint_duration_seconds")) == actors
    # the standard process collectors on both registries (the producer has exited by now)
    assert (prometheus.scalar('process_resident_memory_bytes{job="monitor"}') or 0) > 0
    assert (prometheus.scalar(
        'max_over_time(process_resident_memory_bytes{job="producer"}[10m])') or 0) > 0


def _check_histogram(prometheus: Prometheus, name: str) -> None:
    """As Prometheus stored it: buckets cumulative in le, +Inf the count, a sum."""
    buckets = sorted((float(r["metric"]["le"]), float(r["value"][1]))
                     for r in prometheus.query(f"{name}_bucket"))
    counts = [c for _, c in buckets]
    assert len(buckets) > 2 and counts == sorted(counts), (name, buckets)
    assert buckets[-1] == (float("inf"), prometheus.scalar(f"{name}_count")), name
    assert (prometheus.scalar(f"{name}_sum") or 0) > 0, name


def test_producer_and_monitor_through_prometheus(fresh_kafka_broker, children: Children) -> None:
    """The metric path without the trainer: an Estimate we publish ourselves."""
    kcat = require_binary("kcat")
    bootstrap = fresh_kafka_broker.bootstrap_servers
    prometheus, producer_port = start_metric_path(children, bootstrap)
    start_producer(children, bootstrap, producer_port, TRUTH, COUNT, rate=10_000)

    wait_until(lambda: prometheus.scalar('up{job="monitor"}') == 1, 60, "monitor scraped",
               children.report)
    published = Estimate(
        model_id="default", timestamp=time.time(), step=3, samples_seen=1234, dead_letters=1,
        num_categories=5, probabilities=[0.0, 0.05, 0.1, 0.3, 0.55],
        baseline_probabilities=TRUTH, temperature=0.5, generator_loss=0.7,
        discriminator_loss=1.3, estimator="st", actors=2, offsets={"0": 10},
        step_duration=Histogram(bounds=[0.001, 0.01, 0.1], counts=[4, 9, 10, 10], sum=0.05),
    )
    kafka = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    kafka.send("estimates", key=b"default", value=published.to_bytes())
    kafka.flush()
    kafka.close()

    wait_until(lambda: prometheus.scalar("gumbel_samples_learned_total") == 1234, 60,
               "the published estimate in Prometheus", children.report)
    assert prometheus.by_category("gumbel_estimated_probability")[4] == 0.55
    assert prometheus.scalar("gumbel_total_variation") == pytest.approx(0.05)
    assert prometheus.scalar('gumbel_dead_letters_total{reason="other"}') == 1  # no reason sent
    assert prometheus.scalar("sum(gumbel_dead_letters_total)") == 1
    assert prometheus.scalar("gumbel_step_duration_seconds_count") == 10
    _check_histogram(prometheus, "gumbel_step_duration_seconds")

    producer = children.children["producer"].process
    wait_until(lambda: producer.poll() is not None, 120, "the producer to finish",
               children.report)
    assert producer.returncode == 0, children.report()
    truth_seen = prometheus.by_category("max_over_time(gumbel_true_probability[10m])")
    assert truth_seen == dict(enumerate(TRUTH))
    assert records_on_topic(bootstrap, "numbers") == COUNT

    read = subprocess.run(
        [kcat, "-b", bootstrap, "-C", "-t", "estimates", "-e", "-o", "beginning", "-q"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    assert Estimate.model_validate_json(read.stdout.strip().splitlines()[-1]) == published
