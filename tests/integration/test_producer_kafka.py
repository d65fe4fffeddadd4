"""The producer against a real broker: exact counts, the distribution, pacing, drift, SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter

import pytest
from kafka import KafkaConsumer

from services.common.kafka import topic_partitions
from services.common.settings import ProducerServiceSettings
from services.producer.service import run

pytestmark = pytest.mark.kafka

# Chi-square critical values at a false-alarm rate of 0.001, by degrees of freedom.
CHI2_CRITICAL_0_001 = {1: 10.828, 2: 13.816, 3: 16.266, 4: 18.467}


def read_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 60) -> list[bytes]:
    """Every value on the topic (all partitions, manual assignment: works on Tansu too).

    Reads until ``expected`` values came, then one more second to catch any extra. Tansu
    answers ListOffsets(latest) with the last batch's base offset, so end offsets are no
    stopping rule here.
    """
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False)
    try:
        partitions = topic_partitions(consumer, topic)
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        values: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        while len(values) < expected and time.monotonic() < deadline:
            for messages in consumer.poll(timeout_ms=500).values():
                values.extend(m.value for m in messages)
        for messages in consumer.poll(timeout_ms=1000).values():
            values.extend(m.value for m in messages)
        return values
    finally:
        consumer.close()


def settings(bootstrap: str, topic: str, **producer: object) -> ProducerServiceSettings:
    return ProducerServiceSettings(
        kafka={"bootstrap_servers": bootstrap, "numbers_topic": topic, "num_partitions": 4},
        producer={"rate": 0, "metrics_port": 0, "metrics_host": "127.0.0.1", **producer},
    )


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def test_writes_exactly_count_records_from_the_distribution(kafka_broker) -> None:
    topic = unique("numbers-dist")
    probs = [0.0, 0.0, 0.1, 0.3, 0.6]
    config = settings(kafka_broker.bootstrap_servers, topic, count=50_000, seed=11,
                      probabilities=probs)
    assert run(config) == 0
    values = read_all(kafka_broker.bootstrap_servers, topic, 50_000)
    assert len(values) == 50_000
    counts = Counter(values)
    assert set(counts) == {b"2", b"3", b"4"}  # ASCII ids, zero-probability ones never
    # Seed 11 is fixed, so this is deterministic; over random seeds it fails 1 in 1000.
    n = len(values)
    stat = sum((counts[str(c).encode()] - n * p) ** 2 / (n * p)
               for c, p in enumerate(probs) if p > 0)
    assert stat < CHI2_CRITICAL_0_001[2]


def test_paces_to_the_rate(kafka_broker) -> None:
    topic = unique("numbers-rate")
    config = settings(kafka_broker.bootstrap_servers, topic, count=3000, rate=2000)
    start = time.monotonic()
    assert run(config) == 0
    elapsed = time.monotonic() - start
    # The last 50-record chunk may go at 1.475 s; the upper bound only catches "no pacing at
    # all" on a loaded machine, so it is loose on purpose.
    assert 1.4 <= elapsed < 30
    assert len(read_all(kafka_broker.bootstrap_servers, topic, 3000)) == 3000


def test_drift_switches_after_the_given_records(kafka_broker) -> None:
    topic = unique("numbers-drift")
    config = settings(kafka_broker.bootstrap_servers, topic, count=4000,
                      probabilities="0,0,1", drift="1500=1,0,0;3000=0,1,0")
    assert run(config) == 0
    counts = Counter(read_all(kafka_broker.bootstrap_servers, topic, 4000))
    assert counts == {b"2": 1500, b"0": 1500, b"1": 1000}


def test_sigterm_stops_flushes_and_exits_zero(kafka_broker) -> None:
    topic = unique("numbers-sigterm")
    env = {**os.environ, "GUMBEL_KAFKA__NUMBERS_TOPIC": topic}
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "producer",
         "--bootstrap-servers", kafka_broker.bootstrap_servers,
         "--rate", "5000", "--count", "0", "--metrics-port", "0"],
        env=env, stderr=subprocess.PIPE, text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not any("producing to" in line for line in lines):  # handlers are in place
            assert time.monotonic() < deadline and process.poll() is None, "".join(lines)
            time.sleep(0.1)
        time.sleep(1.5)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        reader.join(timeout=10)
    finally:
        process.kill()
    stderr = "".join(lines)
    assert process.returncode == 0, stderr[-3000:]
    match = re.search(r"produced (\d+) records in .*stopped early", stderr)
    assert match, stderr[-3000:]
    produced = int(match.group(1))
    assert produced > 0
    assert len(read_all(kafka_broker.bootstrap_servers, topic, produced)) == produced


def test_smoke_against_tansu(tansu_broker) -> None:
    topic = unique("numbers-tansu")
    config = settings(tansu_broker.bootstrap_servers, topic, count=2000, probabilities="0.5,0.5")
    assert run(config) == 0
    values = read_all(tansu_broker.bootstrap_servers, topic, 2000)
    assert len(values) == 2000 and set(values) == {b"0", b"1"}
