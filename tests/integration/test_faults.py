"""Faults mid-stream: an ingest actor, the learner or both SIGKILLed (Ray restarts them), the
whole trainer SIGKILLed and started again, the broker killed. Afterwards every offset of
every partition is learned exactly once.

Each test prints one ``FAULT`` line (run with ``-s``) with the numbers docs/reliability.md reports.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from services.common.schemas import Estimate
from tests.integration.trainer_helpers import (
    RunningTrainer,
    assert_every_offset_once,
    counts_of,
    estimate_counts,
    eventually,
    kill_tree,
    make_settings,
    partition_sizes,
    produce,
    start_trainer,
    stream,
)

pytestmark = [pytest.mark.kafka, pytest.mark.ray, pytest.mark.slow]


def produce_slowly(settings, values: list[bytes], chunks: int, pause_s: float) -> threading.Thread:
    """Write ``values`` in ``chunks`` pieces with pauses, so faults land mid-stream."""
    size = -(-len(values) // chunks)

    def work() -> None:
        for start in range(0, len(values), size):
            produce(settings, values[start : start + size], start=start)
            time.sleep(pause_s)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def report(fault: str, produced: list[bytes], final: Estimate) -> None:
    learned = estimate_counts(final)
    truth = counts_of(produced)
    lost = sum(max(0, t - n) for t, n in zip(truth, learned, strict=True))
    duplicated = sum(max(0, n - t) for t, n in zip(truth, learned, strict=True))
    print(f"\nFAULT {fault}: produced={len(produced)} learned={final.samples_seen} "
          f"lost={lost} duplicated={duplicated}")


def _sigkill(handle: Any) -> int:
    import ray

    pid = ray.get(handle.status.remote()).pid
    os.kill(pid, signal.SIGKILL)
    return pid


@pytest.mark.parametrize("victims", [("ingest",), ("learner",), ("ingest", "learner")],
                         ids=["ingest-actor", "learner", "both"])
def test_sigkill_mid_stream_loses_and_duplicates_no_offset(
    kafka_broker, ray_local, tmp_path, victims
) -> None:
    """An ingest actor, the learner, or both SIGKILLed mid-stream; Ray restarts them. A
    restarted ingest actor asks the learner where to go on (blocks it had sent are in the
    learner); a restarted learner goes on from its checkpoint and refuses the blocks that do
    not begin there, so the ingest actors seek back to it."""
    import ray

    settings = make_settings(kafka_broker.bootstrap_servers, tmp_path, max_batch=64,
                             checkpoint_interval_s=0.5)
    values = stream(6000, seed=3)
    with RunningTrainer(settings) as running:
        producer = produce_slowly(settings, values, chunks=12, pause_s=0.5)
        eventually(lambda: running.learned() >= 1000, 60, "some records learned")
        handles = {"ingest": running.trainer.actors[0], "learner": running.trainer.learner}
        old = {name: _sigkill(handles[name]) for name in victims}
        producer.join(60)
        eventually(lambda: running.learned() >= len(values), 180, "all records learned")
        new = {name: ray.get(handles[name].status.remote()).pid for name in victims}
        time.sleep(1.5)  # a duplicate would show up as more
        final = running.stop()
    assert all(new[name] != old[name] for name in victims)
    report("-and-".join(victims) + "-sigkill", values, final)
    assert final.samples_seen == len(values)
    assert estimate_counts(final) == counts_of(values)
    assert_every_offset_once(running.learner_status(), partition_sizes(values))


class EstimateReader:
    """Follows the estimates topic from its beginning; ``latest`` is the last one read."""

    def __init__(self, settings) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers,
                                      enable_auto_commit=False)
        tp = TopicPartition(settings.kafka.estimates_topic, 0)
        self.consumer.assign([tp])
        self.consumer.seek_to_beginning(tp)
        self.latest: Estimate | None = None

    def learned(self) -> int:
        for batch in self.consumer.poll(timeout_ms=200).values():
            for record in batch:
                self.latest = Estimate.from_bytes(record.value)
        return self.latest.samples_seen if self.latest else 0


def test_sigkill_of_the_whole_trainer_then_restart_loses_and_duplicates_nothing(
    kafka_broker, tmp_path
) -> None:
    settings = make_settings(kafka_broker.bootstrap_servers, tmp_path / "ckpt", max_batch=64,
                             checkpoint_interval_s=1.0)
    values = stream(6000, seed=4)
    reader = EstimateReader(settings)
    first = start_trainer(settings, tmp_path / "trainer-1.log")
    try:
        eventually(lambda: reader.learned() >= 0 and reader.latest is not None, 120,
                   "the first trainer's first estimate")
        producer = produce_slowly(settings, values, chunks=12, pause_s=1.0)
        eventually(lambda: reader.learned() >= 1000, 60, "some records learned")
    finally:
        kill_tree(first)
    learned_at_kill = reader.latest.samples_seen if reader.latest else 0
    log_path = tmp_path / "trainer-2.log"
    second = start_trainer(settings, log_path)
    try:
        eventually(lambda: reader.learned() >= len(values), 180, "all records learned")
        time.sleep(1.5)
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0, log_path.read_text()[-3000:]
    finally:
        if second.poll() is None:
            kill_tree(second)
    producer.join(10)
    for _ in range(10):  # read through to the final estimate
        reader.learned()
    final = reader.latest
    assert final is not None
    print(f"\nlearned before the kill: {learned_at_kill} of {len(values)}")
    report("trainer-sigkill-restart", values, final)
    assert final.samples_seen == len(values)
    assert estimate_counts(final) == counts_of(values)
    assert_every_offset_once(final, partition_sizes(values))


def test_broker_hard_kill_and_restart_loses_and_duplicates_nothing(
    fresh_kafka_broker, ray_local, tmp_path
) -> None:
    from tests.support.brokers import restart_apache_kafka

    broker = fresh_kafka_broker
    settings = make_settings(broker.bootstrap_servers, tmp_path, max_batch=64)
    values = stream(4000, seed=5)
    half = len(values) // 2
    restarted = None
    with RunningTrainer(settings) as running:
        produce(settings, values[:half])
        eventually(lambda: running.learned() >= half, 60, "the first half learned")
        broker.kill()  # SIGKILL: no clean shutdown, the log is recovered on restart
        time.sleep(5)  # actors poll, checkpoint and fail to commit against a dead broker
        restarted = restart_apache_kafka(broker)
        try:
            produce(settings, values[half:], start=half)
            eventually(lambda: running.learned() >= len(values), 120, "all records learned")
            time.sleep(1.5)
            final = running.stop()
        finally:
            restarted.kill()
    report("broker-sigkill-restart", values, final)
    assert final.samples_seen == len(values)
    assert estimate_counts(final) == counts_of(values)
    assert_every_offset_once(running.learner_status(), partition_sizes(values))
