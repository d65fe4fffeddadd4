"""Property: whatever bytes land on the topic, every good record is learned once and every bad
one reaches the dead-letter topic with its origin (one actor, no Ray, a real broker)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from services.trainer.local import LocalTrainer
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


@seed(10)  # the same 10 examples on every run, as docs/reliability.md states
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
        actor = LocalTrainer(config, 1)
        actor.start()
        try:
            eventually(lambda: sum(actor.offsets.values()) >= len(values), 60, "all consumed")
            time.sleep(0.3)
        finally:
            status = actor.stop()
        assert status.error is None
        assert status.samples_seen == len(good)
        assert list(status.baseline_counts) == counts_of(good)
        assert status.dead_letters == len(bad)
        dead = read_topic(kafka_broker.bootstrap_servers, config.kafka.dlq_topic, len(bad), 30)
        headers = [dict(r.headers) for r in dead]
        found = {
            (int(h["source_partition"]), int(h["source_offset"])): r.value
            for h, r in zip(headers, dead, strict=True)
        }
        assert found == bad


def _corrupt(directory: Path) -> None:
    for path in directory.rglob("ckpt-*.pt"):
        path.write_bytes(path.read_bytes()[:64])


@pytest.mark.parametrize(("policy", "learned", "skipped"),
                         [("relearn", 600, 0), ("accept_loss", 200, 400)])
def test_corrupt_checkpoints_are_relearned_or_the_loss_is_counted(
    kafka_broker, tmp_path, policy, learned, skipped
) -> None:
    """Issue 10 defect 5 on a real broker: before the fix, an actor whose every checkpoint was
    corrupt started empty at the committed offsets and said nothing of the records it lost."""
    config = make_settings(kafka_broker.bootstrap_servers, tmp_path, partitions=1,
                           num_actors=1, on_corrupt_checkpoint=policy)
    values = [str(i % K).encode() for i in range(600)]
    produce(config, values[:400], partitions=1)
    first = LocalTrainer(config, 1)
    first.start()
    eventually(lambda: first.offsets.get(0, 0) >= 400, 60, "first 400 learned")
    first.stop()  # a final checkpoint, then the offsets are committed
    _corrupt(tmp_path)
    produce(config, values[400:], partitions=1, start=400)
    second = LocalTrainer(config, 1)
    second.start()
    try:
        eventually(lambda: second.offsets.get(0, 0) >= 600, 60, "all 600 consumed")
    finally:
        status = second.stop()
    assert status.samples_seen == learned
    assert status.records_skipped == skipped
    assert list(status.baseline_counts) == counts_of(values[600 - learned:])
