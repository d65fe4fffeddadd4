"""Helpers of the trainer's integration tests: settings on their own topics, streams,
counts, and the trainer running in this process or as ``gumbel-stream trainer``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from services.common.kafka import ensure_topics
from services.common.schemas import Estimate
from services.common.settings import TrainerServiceSettings
from services.process_tree import descendants, start_time
from services.up import service_env

K = 5
NUM_PARTITIONS = 4


def make_settings(
    bootstrap: str, checkpoint_dir: Path | None, partitions: int = NUM_PARTITIONS,
    kafka_options: dict[str, Any] | None = None, **trainer: Any
) -> TrainerServiceSettings:
    """Settings on topics of their own, with short intervals so tests run quickly."""
    suffix = uuid.uuid4().hex[:8]
    options: dict[str, Any] = {
        "num_actors": 2, "num_categories": K, "model_id": f"test-{suffix}",
        "group_id": f"trainer-{suffix}", "max_batch": 256, "poll_timeout_ms": 100,
        "publish_interval_s": 0.5, "checkpoint_interval_s": 0.5,
        "checkpoint_dir": checkpoint_dir,
    }
    options.update(trainer)
    kafka = {
        "bootstrap_servers": bootstrap, "numbers_topic": f"numbers-{suffix}",
        "estimates_topic": f"estimates-{suffix}", "dlq_topic": f"numbers-{suffix}.dlq",
        "num_partitions": partitions, "connect_timeout_s": 30, **(kafka_options or {}),
    }
    settings = TrainerServiceSettings(kafka=kafka, trainer=options)
    ensure_topics(settings.kafka)
    return settings


def produce(settings: TrainerServiceSettings, values: list[bytes | None],
            partitions: int = NUM_PARTITIONS, start: int = 0, **producer_options: Any) -> None:
    """Write ``values`` round-robin over the partitions (explicitly, so tests know where);
    ``producer_options`` go to the KafkaProducer (``acks="all"`` unless they say otherwise)."""
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers,
                             **{"acks": "all", **producer_options})
    for i, value in enumerate(values, start=start):
        producer.send(settings.kafka.numbers_topic, value=value, partition=i % partitions)
    producer.flush(120)  # a bound for a backlog of hundreds of thousands (test_trainer_load)
    producer.close()


def counts_of(values: list[bytes | None]) -> list[int]:
    counts = [0] * K
    for value in values:
        if value is not None and value.isdigit() and int(value) < K:
            counts[int(value)] += 1
    return counts


def stream(n: int, seed: int = 0) -> list[bytes]:
    import random

    rng = random.Random(seed)
    return [str(rng.choices(range(K), weights=[0.05, 0.1, 0.15, 0.3, 0.4])[0]).encode()
            for _ in range(n)]


def read_topic(bootstrap: str, topic: str, expected: int, timeout_s: float = 30) -> list[Any]:
    """All records of partition 0 of ``topic``, waiting until there are ``expected``."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    records: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=200).values():
            records.extend(batch)
        if len(records) >= expected and consumer.position(tp) >= consumer.end_offsets([tp])[tp]:
            break
    consumer.close()
    return records


def eventually(check: Callable[[], bool], timeout_s: float,
               what: str | Callable[[], str]) -> None:
    """Wait for ``check``; ``what`` may be a callable, so that a log in the message is read
    when the wait fails, not (empty) when it starts."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            message = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {message}")
        time.sleep(0.2)


def estimate_counts(estimate: Estimate) -> list[int]:
    """Per-category counts behind the estimate's (exact) counting baseline."""
    return [round(p * estimate.samples_seen) for p in estimate.baseline_probabilities]


def partition_sizes(values: list[bytes | None], partitions: int = NUM_PARTITIONS,
                    start: int = 0) -> dict[str, int]:
    """Records ``produce`` wrote to each partition."""
    sizes = {str(p): 0 for p in range(partitions)}
    for i in range(start, start + len(values)):
        sizes[str(i % partitions)] += 1
    return sizes


def assert_every_offset_once(account: Any, produced: dict[str, int] | int) -> None:
    """Every offset of every partition learned exactly once, for one-value records (none bad)
    on a topic that starts at offset 0: in each partition the model learned exactly as many
    values as its next offset, and the offsets end where ``produced`` says (by partition, or
    in total). ``account``: the learner's status or a published Estimate. Per-category totals
    alone cannot see a loss and a duplicate cancel out."""
    offsets = {p: o for p, o in account.offsets.items() if o}
    values = {p: n for p, n in account.values_by_partition.items() if n}
    assert values == offsets, (values, offsets)
    if isinstance(produced, int):
        assert sum(offsets.values()) == produced, (offsets, produced)
    else:
        assert offsets == {p: n for p, n in produced.items() if n}, (offsets, produced)


class RunningTrainer:
    """``services.trainer.service.Trainer`` in this process, its loop in a thread."""

    def __init__(self, settings: TrainerServiceSettings, to_kafka: bool = False) -> None:
        """``to_kafka``: each estimate is also published to the estimates topic, as the
        service publishes it (for a reader on Kafka, such as a twin producer)."""
        from services.trainer.service import Trainer

        self.published: list[Estimate] = []
        self.trainer = Trainer(settings, publish=self._record)
        self._to_kafka = to_kafka
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.trainer.run, args=(self.stop_event,))

    def __enter__(self) -> RunningTrainer:
        self.trainer.start()
        self.thread.start()
        return self

    def _record(self, estimate: Estimate) -> None:
        self.published.append(estimate)
        if self._to_kafka:
            self.trainer._publish_to_kafka(estimate)

    def learned(self) -> int:
        return self.published[-1].samples_seen if self.published else 0

    def learner_status(self) -> Any:
        """The learner's last status (after ``stop``: its final one)."""
        assert self.trainer.coordinator is not None
        return self.trainer.coordinator.last_learner

    def stop(self) -> Estimate:
        self.stop_event.set()
        self.thread.join(60)
        final = self.trainer.stop()
        assert final is not None
        return final

    def __exit__(self, *exc: object) -> None:
        if self.thread.is_alive() or not self.stop_event.is_set():
            self.stop()


def start_trainer(settings: TrainerServiceSettings, log_path: Path, **env: str
                  ) -> subprocess.Popen[bytes]:
    """`gumbel-stream trainer` in its own session with ``settings`` (and ``env`` on top),
    its output in ``log_path``."""
    environment = {**os.environ, **service_env(settings, "trainer"),  # type: ignore[arg-type]
                   **env}
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "services.cli", "trainer"],
                                env=environment, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def kill_tree(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the trainer, then wait for what it started (Ray) to go, killing stragglers."""
    tree = {pid: start_time(pid) for pid in descendants(process.pid)}
    process.kill()
    process.wait(30)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if all(start_time(pid) != started for pid, started in tree.items()):
            return
        time.sleep(0.5)
    for pid, started in tree.items():
        if start_time(pid) == started:
            os.kill(pid, signal.SIGKILL)
