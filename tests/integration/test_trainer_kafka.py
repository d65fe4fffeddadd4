"""The trainer against a real Kafka broker and real Ray actors: every record learned once."""

from __future__ import annotations

import time

import pytest

from tests.integration.trainer_helpers import (
    NUM_PARTITIONS,
    RunningTrainer,
    counts_of,
    estimate_counts,
    eventually,
    make_settings,
    produce,
    read_topic,
    stream,
)

pytestmark = [pytest.mark.kafka, pytest.mark.ray, pytest.mark.slow]


def test_two_actors_learn_every_record_exactly_once(kafka_broker, ray_local, tmp_path) -> None:
    settings = make_settings(kafka_broker.bootstrap_servers, tmp_path)
    values = stream(4000, seed=1)
    produce(settings, values)
    with RunningTrainer(settings) as running:
        eventually(lambda: running.learned() >= len(values), 120, "all records learned")
        time.sleep(1.5)  # a duplicate would show up as more
        final = running.stop()
    assert final.samples_seen == len(values)
    assert estimate_counts(final) == counts_of(values)
    assert final.offsets == {str(p): len(values) // NUM_PARTITIONS for p in range(4)}
    assert final.actors == 2 and final.dead_letters == 0
    assert abs(sum(final.probabilities) - 1) < 1e-4


def test_malformed_records_go_to_the_dlq_and_good_ones_are_learned(
    kafka_broker, ray_local, tmp_path
) -> None:
    settings = make_settings(kafka_broker.bootstrap_servers, tmp_path)
    good = stream(400, seed=2)
    poison = [b"x", b"", b"-1", b"7", b"\xff\xfe", b"1" * 50, b" 3", b"3.0"]
    values: list[bytes | None] = list(good)
    for i, bad in enumerate(poison):
        values.insert(37 * (i + 1), bad)
    produce(settings, values)
    bad_origins = {(i % NUM_PARTITIONS, i // NUM_PARTITIONS)
                   for i, v in enumerate(values) if v in poison}
    with RunningTrainer(settings) as running:
        eventually(lambda: running.learned() >= len(good), 120, "all good records learned")
        final = running.stop()
    assert final.samples_seen == len(good)
    assert estimate_counts(final) == counts_of(good)
    assert final.dead_letters == len(poison)
    dead = read_topic(kafka_broker.bootstrap_servers, settings.kafka.dlq_topic, len(poison))
    origins = {(int(dict(r.headers)["source_partition"]), int(dict(r.headers)["source_offset"]))
               for r in dead}
    assert origins == bad_origins
    assert sorted(r.value for r in dead) == sorted(poison)
    assert all(dict(r.headers)["error"] for r in dead)


def test_a_record_over_the_dead_letter_limit_never_stops_the_ray_actors(
    kafka_broker, ray_local, tmp_path
) -> None:
    """Issue 10 defect 1, as reproduced: a 1,048,450-byte record that a default client can
    write. Before the fix its dead letter raised inside the actor, which Ray restarted onto
    the same record forever."""
    from kafka import KafkaProducer

    settings = make_settings(kafka_broker.bootstrap_servers, tmp_path)
    good = stream(400, seed=3)
    produce(settings, good[:200])
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers)
    producer.send(settings.kafka.numbers_topic, b"5" * 1_048_450, partition=1).get(30)
    producer.close()
    produce(settings, good[200:], start=200)
    with RunningTrainer(settings) as running:
        eventually(lambda: running.learned() >= len(good), 120, "every good record learned")
        final = running.stop()
    assert final.samples_seen == len(good) and final.dead_letters == 1
    assert estimate_counts(final) == counts_of(good)
    assert final.dead_letters_by_reason == {"too_large": 1}
    assert final.dead_letters_truncated == 1
    [dead] = read_topic(kafka_broker.bootstrap_servers, settings.kafka.dlq_topic, 1)
    headers = dict(dead.headers)
    assert headers["gumbel-dlq-original-size"] == b"1048450"
    assert dead.value == b"5" * settings.kafka.dlq_max_value_bytes
