"""A three-broker Apache Kafka cluster (KRaft: three processes, each broker and controller,
one log directory each) under the trainer (issue 14 §2): topics replicated 3 times with
min.insync.replicas=2, `__consumer_offsets` too; the leader of a `numbers` partition is
SIGKILLed mid-stream and brought back, while an idempotent acks=all producer writes and the
trainer learns: produced == learned, per-category counts exact, nothing duplicated."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from services.brokers import java_available
from services.common.kafka import make_admin, make_producer
from tests.integration.trainer_helpers import (
    NUM_PARTITIONS,
    RunningTrainer,
    assert_every_offset_once,
    counts_of,
    estimate_counts,
    eventually,
    make_settings,
    stream,
)
from tests.support.brokers import KafkaCluster, start_apache_kafka_cluster

pytestmark = [pytest.mark.cluster, pytest.mark.kafka, pytest.mark.ray, pytest.mark.slow,
              pytest.mark.skipif(not java_available(), reason="Apache Kafka needs Java 17+")]

REPLICATED = {"replication_factor": 3, "min_insync_replicas": 2}


@pytest.fixture(scope="module")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    with start_apache_kafka_cluster(tmp_path_factory.mktemp("kraft-3")) as cluster:
        yield cluster


def _leader(settings, partition: int) -> int:
    admin = make_admin(settings.kafka)
    try:
        (topic,) = admin.describe_topics([settings.kafka.numbers_topic])
    finally:
        admin.close()
    (meta,) = [p for p in topic["partitions"] if p["partition_index"] == partition]
    return int(meta["leader_id"])


def test_topics_and_the_offsets_topic_are_replicated(kafka_cluster, ray_local, tmp_path) -> None:
    settings = make_settings(kafka_cluster.bootstrap_servers, tmp_path, kafka_options=REPLICATED)
    values = stream(2000, seed=4)
    producer = make_producer(settings.kafka)
    for i, value in enumerate(values):
        producer.send(settings.kafka.numbers_topic, value=value, partition=i % NUM_PARTITIONS)
    producer.flush(60)
    producer.close()
    with RunningTrainer(settings) as running:  # commits offsets: __consumer_offsets exists
        eventually(lambda: running.learned() >= len(values), 180, "2,000 learned")
        running.stop()
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = make_admin(settings.kafka)
    try:
        topics = admin.describe_topics([settings.kafka.numbers_topic, settings.kafka.dlq_topic,
                                        settings.kafka.estimates_topic, "__consumer_offsets"])
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC,
                                                         settings.kafka.numbers_topic)])
    finally:
        admin.close()
    for topic in topics:
        assert topic["partitions"], topic
        assert {len(p["replica_nodes"]) for p in topic["partitions"]} == {3}, topic["topic"]
        assert {len(p["isr_nodes"]) for p in topic["partitions"]} == {3}, topic["topic"]
    (config,) = configs["topic"].values()
    assert config["min.insync.replicas"]["value"] == "2"


def test_the_leader_of_a_partition_killed_mid_stream(kafka_cluster, ray_local, tmp_path) -> None:
    settings = make_settings(kafka_cluster.bootstrap_servers, tmp_path, kafka_options=REPLICATED,
                             checkpoint_interval_s=1.0)
    values = stream(20_000, seed=6)
    produced: list[int] = []

    def produce_steadily() -> None:  # about 10 s of writes, acks=all, idempotent
        producer = make_producer(settings.kafka)
        for start in range(0, len(values), 500):
            futures = [producer.send(settings.kafka.numbers_topic, value=value,
                                     partition=i % NUM_PARTITIONS)
                       for i, value in enumerate(values[start : start + 500], start=start)]
            producer.flush(120)
            produced.append(sum(1 for f in futures if f.succeeded()))
            time.sleep(0.25)
        producer.close()

    writer = threading.Thread(target=produce_steadily, daemon=True)
    with RunningTrainer(settings) as running:
        writer.start()
        eventually(lambda: running.learned() >= 4000, 180, "4,000 learned")
        victim = _leader(settings, 0)
        kafka_cluster.node(victim).kill()  # SIGKILL: the leader of numbers-0 is gone
        killed_at = time.monotonic()
        progress: list[tuple[float, int]] = []

        def learned() -> int:
            progress.append((time.monotonic(), running.learned()))
            return progress[-1][1]

        eventually(lambda: learned() >= 10_000, 180, "learning on after the leader was killed")
        kafka_cluster.restart(victim)  # back, on its data
        eventually(lambda: learned() >= len(values) and not writer.is_alive(), 300,
                   "every produced record learned")
        final = running.stop()
    # The longest time without progress while records were still to learn.
    stall, since = 0.0, killed_at
    for (_, n0), (t1, n1) in zip(progress, progress[1:], strict=False):
        if n1 != n0 or n1 >= len(values):
            since = t1
        stall = max(stall, t1 - since)
    print(f"\nLEADER LOST: node {victim} (leader of numbers-0) SIGKILLed and restarted; produced "
          f"{sum(produced):,}, learned {final.samples_seen:,}, longest stall {stall:.1f} s")
    assert sum(produced) == len(values)
    assert final.samples_seen == len(values)
    assert estimate_counts(final) == counts_of(values)
    assert_every_offset_once(final, len(values))
