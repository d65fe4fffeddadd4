"""Two models on one cluster (issue 15 §2): two trainers with their own model id and numbers
topic publish to one ``estimates`` topic; one monitor shows both side by side in a real
Prometheus, each under its ``model_id``, and each trainer commits in a group of its own.
"""

from __future__ import annotations

import random
import time

import pytest
import requests
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from services.brokers import free_port
from services.common.kafka import ensure_topics, topic_partitions
from services.common.schemas import ESTIMATE_HEADERS, Estimate
from services.common.settings import KafkaSettings
from tests.e2e.conftest import (
    GUMBEL_STREAM,
    Children,
    Prometheus,
    start_monitor,
    total_variation,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.kafka]

# model id -> (its numbers topic, its true distribution, records written)
MODELS = {
    "clicks": ("numbers-clicks", [0.7, 0.2, 0.1], 3_000),
    "views": ("numbers-views", [0.1, 0.3, 0.6], 2_000),
}


def _write(bootstrap: str, topic: str, truth: list[float], count: int, seed: int) -> list[int]:
    ensure_topics(KafkaSettings(bootstrap_servers=bootstrap, numbers_topic=topic,
                                num_partitions=2))
    values = random.Random(seed).choices(range(len(truth)), weights=truth, k=count)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for value in values:
        producer.send(topic, str(value).encode())
    producer.flush()
    producer.close()
    return values


def _read_until_now(bootstrap: str, topic: str) -> list:
    """The messages on ``topic`` up to its end now (the trainers go on publishing)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = topic_partitions(consumer, topic)
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        messages: list = []
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            assert time.monotonic() < deadline, f"cannot read {topic} to {end}"
            for batch in consumer.poll(timeout_ms=1_000).values():
                messages.extend(batch)
        return messages
    finally:
        consumer.close()


def test_two_trainers_into_one_monitor(fresh_kafka_broker, children: Children) -> None:
    bootstrap = fresh_kafka_broker.bootstrap_servers
    monitor_port = free_port()
    prometheus = Prometheus(children, {"monitor": monitor_port})
    start_monitor(children, bootstrap, monitor_port)
    counted: dict[str, list[float]] = {}
    for seed, (model_id, (topic, truth, count)) in enumerate(MODELS.items()):
        values = _write(bootstrap, topic, truth, count, seed)
        counted[model_id] = [values.count(c) / count for c in range(len(truth))]
        children.start(f"trainer-{model_id}", [
            GUMBEL_STREAM, "trainer", "--bootstrap-servers", bootstrap, "--model-id", model_id,
            "--num-actors", "1", "--num-categories", str(len(truth)),
            "--checkpoint-dir", str(children.workdir / f"checkpoints-{model_id}"),
            "--publish-interval", "1",
        ], env={"GUMBEL_KAFKA__NUMBERS_TOPIC": topic})

    def learned() -> dict[str, float]:
        return {r["metric"]["model_id"]: float(r["value"][1])
                for r in prometheus.query("gumbel_samples_learned_total")}

    expected = {model_id: float(count) for model_id, (_, _, count) in MODELS.items()}
    wait_until(lambda: learned() == expected, 300,
               f"Prometheus to show gumbel_samples_learned_total {expected}",
               lambda: f"last: {learned()}\n{children.report()}")

    for model_id, (_, truth, _) in MODELS.items():
        selector = f'{{model_id="{model_id}"}}'
        baseline = prometheus.by_category(f"gumbel_baseline_probability{selector}")
        estimate = prometheus.by_category(f"gumbel_estimated_probability{selector}")
        print(f"e2e two models: {model_id}: estimate {estimate}, baseline {baseline}")
        # Each model's baseline counts exactly its own topic's records, not the other's.
        assert total_variation(baseline, counted[model_id]) < 1e-6, (model_id, baseline)
        assert sorted(estimate) == list(range(len(truth)))
    assert prometheus.scalar('count(gumbel_temperature{model_id=~"clicks|views"})') == 2

    # /estimates lists both; each message on the topic names its content type and version.
    listed = requests.get(f"http://127.0.0.1:{monitor_port}/estimates", timeout=5).json()
    assert sorted(listed["models"]) == sorted(MODELS)
    messages = _read_until_now(bootstrap, "estimates")
    assert {m.key.decode() for m in messages} == set(MODELS)
    for message in messages:
        assert message.headers == ESTIMATE_HEADERS
        assert Estimate.from_bytes(message.value).model_id == message.key.decode()

    # The default consumer group derives from the model id: no two trainers share one. The
    # actors commit after each checkpoint (every 10 s).
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        def groups() -> set[str]:
            return {group["group_id"] for group in admin.list_groups()}

        wanted = {"gumbel-trainer-clicks", "gumbel-trainer-views"}
        wait_until(lambda: wanted <= groups(), 60, f"the consumer groups {wanted}",
                   lambda: f"last: {groups()}\n{children.report()}")
        assert "gumbel-trainer" not in groups()
    finally:
        admin.close()
