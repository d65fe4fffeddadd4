"""Property: whatever bytes land on the topic, every good record is learned once and every bad
one reaches the dead-letter topic with its origin (one actor, no Ray, a real broker)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.trainer.actor import TrainerActor
from tests.integration.trainer_helpers import (
    K,
    counts_of,
    eventually,
    make_settings,
    produce,
    read_topic,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

good_records = st.integers(0, K - 1).map(lambda c: str(c).encode())
poison_records = st.one_of(
    st.binary(max_size=30),
    st.integers(K, 10**12).map(lambda c: str(c).encode()),
    st.text(max_size=8).map(lambda t: t.encode("utf-8")),
    st.sampled_from([b"", b"-1", b" 1", b"1\n", b"0x1", b"\xff", b"\x00", "\u0663".encode()]),
)
records = st.lists(st.one_of(good_records, good_records, poison_records), min_size=1, max_size=60)


def is_good(value: bytes) -> bool:
    return value.isdigit() and len(value) <= 20 and int(value) < K


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=records)
def test_poison_records_never_stop_learning_and_all_reach_the_dlq(kafka_broker, values) -> None:
    with tempfile.TemporaryDirectory() as checkpoints:
        config = make_settings(kafka_broker.bootstrap_servers, Path(checkpoints), partitions=2)
        produce(config, values, partitions=2)
        good = [v for v in values if is_good(v)]
        bad = {(i % 2, i // 2): v for i, v in enumerate(values) if not is_good(v)}
        actor = TrainerActor(config, 0, 1)
        actor.start()
        try:
            eventually(lambda: sum(actor.offsets.values()) >= len(values), 60, "all consumed")
            time.sleep(0.3)
        finally:
            status = actor.stop()
        assert status["error"] is None
        assert status["samples_seen"] == len(good)
        assert status["baseline_counts"] == counts_of(good)
        assert status["dead_letters"] == len(bad)
        dead = read_topic(kafka_broker.bootstrap_servers, config.kafka.dlq_topic, len(bad), 30)
        headers = [dict(r.headers) for r in dead]
        found = {
            (int(h["source_partition"]), int(h["source_offset"])): r.value
            for h, r in zip(headers, dead, strict=True)
        }
        assert found == bad
