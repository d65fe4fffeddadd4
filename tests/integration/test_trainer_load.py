"""Load: a backlog of 200,000 records learned exactly once by 2 actors; prints records/s."""

from __future__ import annotations

import time

import pytest

from tests.integration.trainer_helpers import (
    RunningTrainer,
    counts_of,
    estimate_counts,
    eventually,
    make_settings,
    produce,
    stream,
)

pytestmark = [pytest.mark.kafka, pytest.mark.ray, pytest.mark.slow]

RECORDS = 200_000


def test_a_backlog_is_learned_exactly_once_under_load(
    kafka_broker, ray_local, tmp_path
) -> None:
    settings = make_settings(kafka_broker.bootstrap_servers, tmp_path, max_batch=4096,
                             checkpoint_interval_s=2.0)
    values = stream(RECORDS, seed=7)
    produce(settings, values, linger_ms=20, batch_size=512 * 1024)
    with RunningTrainer(settings) as running:
        start = time.monotonic()
        eventually(lambda: running.learned() >= RECORDS, 240, "the backlog learned")
        elapsed = time.monotonic() - start
        final = running.stop()
    print(f"\nLOAD {RECORDS} records by 2 actors in {elapsed:.1f}s: {RECORDS / elapsed:,.0f} "
          f"records/s (publish interval {settings.trainer.publish_interval_s}s included)")
    assert final.samples_seen == RECORDS
    assert estimate_counts(final) == counts_of(values)
