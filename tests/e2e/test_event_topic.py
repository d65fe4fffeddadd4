"""A JSON event topic with named categories (issue 15 §1), learned end to end: the producer
writes ``{"event": "click"}`` records, the trainer decodes them by name, dead-letters the
names it was not given, and a real Prometheus shows the monitor's metrics under
``category="click"``.
"""

from __future__ import annotations

import pytest
from kafka import KafkaProducer

from services.brokers import free_port
from tests.e2e.conftest import (
    GUMBEL_STREAM,
    PARTITIONS,
    Children,
    Prometheus,
    start_monitor,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.kafka]

NAMES = ["click", "view", "buy"]
TRUTH = [0.6, 0.3, 0.1]
COUNT = 3_000
EVENTS = ["--format", "json", "--json-field", "payload.type", "--categories", ",".join(NAMES)]
# Records another client wrote: a name outside the list, and an event without the field.
BAD = [(b'{"payload": {"type": "hover"}}', "unknown_category"),
       (b'{"payload": {"kind": "click"}}', "missing_field")]


def test_a_json_topic_with_named_categories(fresh_kafka_broker, children: Children) -> None:
    bootstrap = fresh_kafka_broker.bootstrap_servers
    monitor_port, producer_port = free_port(), free_port()
    prometheus = Prometheus(children, {"monitor": monitor_port})
    start_monitor(children, bootstrap, monitor_port)
    children.start("producer", [
        GUMBEL_STREAM, "producer", "--bootstrap-servers", bootstrap,
        "--num-partitions", str(PARTITIONS), "--probabilities", ",".join(map(str, TRUTH)),
        "--count", str(COUNT), "--rate", "0", "--seed", "5", "--metrics-port",
        str(producer_port), *EVENTS,
    ], env={"GUMBEL_PRODUCER__METRICS_HOST": "127.0.0.1"})
    children.start("trainer", [
        GUMBEL_STREAM, "trainer", "--bootstrap-servers", bootstrap, "--num-actors", "1",
        "--num-categories", str(len(NAMES)), "--checkpoint-dir",
        str(children.workdir / "checkpoints"), "--publish-interval", "1", *EVENTS,
    ])
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for value, _ in BAD:
        producer.send("numbers", value)
    producer.flush()
    producer.close()

    def learned() -> tuple[float | None, float | None]:
        return (prometheus.scalar("gumbel_samples_learned_total"),
                prometheus.scalar("sum(gumbel_dead_letters_total)"))  # over reasons

    wait_until(lambda: learned() == (COUNT, len(BAD)), 120,
               f"Prometheus to show {COUNT} records learned and {len(BAD)} dead letters",
               lambda: f"last: {learned()}\n{children.report()}")

    def by_name(metric: str) -> dict[str, float]:
        return {r["metric"]["category"]: float(r["value"][1]) for r in prometheus.query(metric)}

    baseline = by_name("gumbel_baseline_probability")
    estimate = by_name("gumbel_estimated_probability")
    print(f"e2e event topic: estimate {estimate}, baseline {baseline}")
    assert sorted(baseline) == sorted(estimate) == sorted(NAMES)
    # 3,000 draws: each share's standard error is below 0.009, so 0.05 is over 5 sigma.
    assert sum(abs(baseline[n] - p) for n, p in zip(NAMES, TRUTH, strict=True)) / 2 < 0.05
    assert prometheus.scalar('gumbel_baseline_probability{category="click"}') == baseline["click"]
    reasons = {r["metric"]["reason"]: float(r["value"][1])
               for r in prometheus.query("gumbel_dead_letters_total > 0")}
    assert reasons == {reason: 1.0 for _, reason in BAD}
    deprecated = {r["metric"]["reason"]: float(r["value"][1])  # kept one release
                  for r in prometheus.query("gumbel_dead_letters_by_reason_total")}
    assert deprecated == reasons
