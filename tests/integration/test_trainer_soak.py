"""Load (issue 5): the producer at full speed for a minute while 2 trainer actors learn.

Measured: nothing lost or learned twice, the consumer lag stays bounded and drains once the
producer stops, and the actors' memory (RSS) does not keep growing. Prints one LOAD line.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from services.common.settings import ProducerServiceSettings
from tests.integration.trainer_helpers import (
    RunningTrainer,
    eventually,
    make_settings,
)

pytestmark = [pytest.mark.kafka, pytest.mark.ray, pytest.mark.slow]

PRODUCE_SECONDS = 60.0


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def test_full_speed_minute_bounded_lag_and_memory(
    kafka_broker, ray_local, tmp_path
) -> None:
    from services.producer.service import run as run_producer

    settings = make_settings(kafka_broker.bootstrap_servers, tmp_path, checkpoint_interval_s=2.0)
    producer_settings = ProducerServiceSettings(
        kafka=settings.kafka.model_dump(exclude_none=True), producer={"rate": 0, "seed": 11}
    )
    registry = CollectorRegistry()
    stop_producing = threading.Event()
    exit_code: list[int] = []
    producer = threading.Thread(target=lambda: exit_code.append(run_producer(
        producer_settings, registry=registry, stop=stop_producing, serve_metrics=False)))
    with RunningTrainer(settings) as running:
        pids = list(running.trainer.coordinator.pids().values())
        producer.start()
        samples: list[tuple[float, int, list[float]]] = []  # (t, lag, rss of each actor)
        start = time.monotonic()
        while time.monotonic() - start < PRODUCE_SECONDS:
            time.sleep(5)
            lag = running.published[-1].consumer_lag if running.published else 0
            samples.append((time.monotonic() - start, lag, [_rss_mb(p) for p in pids]))
        stop_producing.set()
        producer.join(120)
        produced = int(registry.get_sample_value("gumbel_produced_total") or 0)
        eventually(lambda: running.learned() >= produced, 300, "the trainer catching up")
        final = running.stop()
    max_lag = max(s[1] for s in samples)
    early = max(max(s[2]) for s in samples[: len(samples) // 2])
    late = max(max(s[2]) for s in samples[len(samples) // 2 :])
    print(f"\nLOAD {produced:,} records in {PRODUCE_SECONDS:.0f}s at full speed: learned "
          f"{final.samples_seen:,}, max lag {max_lag:,} records, actor RSS {early:.0f} MB "
          f"(first half) -> {late:.0f} MB (second half)")
    assert exit_code == [0]
    assert produced > 0 and final.samples_seen == produced and final.dead_letters == 0
    assert sum(final.offsets.values()) == produced  # every offset consumed once
    # Bounded: the trainer never fell behind by more than half of everything produced ...
    assert max_lag < produced / 2
    # ... and its memory is flat: no more than 150 MB growth from the first half to the second.
    assert late - early < 150
