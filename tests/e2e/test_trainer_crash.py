"""End to end through a trainer crash, with a real Prometheus scraping the monitor.

The whole trainer is SIGKILLed before its first checkpoint and started again: it relearns from
the start, so the published ``samples_seen`` goes back (records learned after the last
checkpoint are learned again) for as long as catching up takes (seconds: the second trainer
polls one record at a time, or the catch-up would be faster than the first publish).
Prometheus counters must not go back with it (issue 10, defect 8): a reset makes
``increase()`` spike and counter alerts fire falsely.
"""

from __future__ import annotations

import subprocess
import time

import pytest
from kafka import KafkaProducer

from services.common.schemas import Estimate
from tests.conftest import require_binary
from tests.e2e.conftest import (
    GUMBEL_STREAM,
    PARTITIONS,
    Children,
    start_metric_path,
    start_producer,
    wait_until,
)
from tests.integration.trainer_helpers import kill_tree

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.kafka]

TRUTH = [0.1, 0.2, 0.3, 0.4]
COUNT = 80_000
POISON = [b"x", b"99", b"", b"-1"] * 5


def start_trainer(children: Children, name: str, bootstrap: str, max_batch: int = 4096) -> None:
    children.start(name, [
        GUMBEL_STREAM, "trainer", "--bootstrap-servers", bootstrap,
        "--num-partitions", str(PARTITIONS), "--num-actors", "2", "--num-categories",
        str(len(TRUTH)), "--checkpoint-dir", str(children.workdir / "checkpoints"),
        "--publish-interval", "0.5",
    ], env={"GUMBEL_TRAINER__CHECKPOINT_INTERVAL_S": "600",
            "GUMBEL_TRAINER__MAX_BATCH": str(max_batch)})


def test_counters_never_go_back_through_a_trainer_crash(
    fresh_kafka_broker, children: Children
) -> None:
    kcat = require_binary("kcat")
    bootstrap = fresh_kafka_broker.bootstrap_servers
    prometheus, producer_port = start_metric_path(children, bootstrap)
    start_trainer(children, "trainer-1", bootstrap)
    first = children.children["trainer-1"]
    wait_until(lambda: "trainer actors running" in first.log_tail(), 180,
               "the first trainer's actors", children.report)
    poison = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    start_producer(children, bootstrap, producer_port, TRUTH, COUNT, rate=4_000)

    def learned() -> float:
        return prometheus.scalar("gumbel_samples_learned_total") or 0.0

    wait_until(lambda: learned() >= 30_000, 180, "30,000 records learned", children.report)
    for value in POISON:  # dead letters after the last checkpoint are counted again, too
        poison.send("numbers", value)
    poison.flush()
    poison.close()
    wait_until(lambda: (prometheus.scalar("sum(gumbel_dead_letters_total)") or 0) >= len(POISON),
               60, "the poison dead-lettered", children.report)
    kill_tree(first.process)
    assert learned() < COUNT, "the producer finished before the crash: nothing to relearn"
    # 16 records a poll (each poll is one offer to the learner): catching up takes seconds,
    # so the regression is published and scraped.
    start_trainer(children, "trainer-2", bootstrap, max_batch=16)
    wait_until(lambda: learned() == COUNT, 300, f"all {COUNT} records learned",
               lambda: f"last: {learned()}\n{children.report()}")
    time.sleep(3)  # a few more scrapes

    # The scenario happened: the published count went back after the restart.
    read = subprocess.run(
        [kcat, "-b", bootstrap, "-C", "-t", "estimates", "-e", "-o", "beginning", "-q"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    seen = [Estimate.model_validate_json(line).samples_seen
            for line in read.stdout.splitlines() if line.strip()]
    drops = [b - a for a, b in zip(seen, seen[1:], strict=False) if b < a]
    print(f"\ne2e crash: published samples_seen went back {len(drops)} times, by at most "
          f"{-min(drops, default=0)} records; Prometheus saw {learned():.0f}")
    assert drops, "the restart resumed exactly at the kill: no regression to test against"

    for counter in ("gumbel_samples_learned_total", "gumbel_dead_letters_total"):
        resets = prometheus.scalar(f"sum(resets({counter}[10m]))")  # every series
        assert resets == 0, f"{counter} went back {resets} times\n{children.report()}"
    assert prometheus.scalar("sum(gumbel_dead_letters_total)") == len(POISON)  # over reasons
    assert prometheus.scalar("max_over_time(gumbel_samples_learned_total[10m])") == COUNT
