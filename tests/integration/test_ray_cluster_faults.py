"""Faults of a real multi-node Ray cluster on this machine (issue 13 §2): the worker node is
lost (SIGKILL of its raylet and workers) or paused (SIGSTOP for longer than Ray's health
checks, then SIGCONT) mid-stream. Its actor comes back on the surviving node from its
checkpoint; every record is learned exactly once (per-category counts exact), and a paused
actor that wakes never writes over its successor (the epoch fence)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.brokers import free_port
from services.trainer.checkpoint import decode
from services.trainer.fence import EpochFence
from tests.e2e.conftest import GUMBEL_STREAM, Children, Prometheus, wait_until
from tests.integration.ray_cluster import (
    RAY,
    ProgressWatch,
    RayCluster,
    latest_estimate,
    start_driver,
    stop_driver,
)
from tests.integration.trainer_helpers import (
    counts_of,
    estimate_counts,
    eventually,
    make_settings,
    produce,
    stream,
)

pytestmark = [
    pytest.mark.cluster, pytest.mark.kafka, pytest.mark.ray, pytest.mark.slow,
    pytest.mark.skipif(not Path(RAY).exists(), reason="no ray CLI next to this Python"),
]

TOTAL = 6000
FIRST = 3000


@pytest.fixture
def cluster() -> Iterator[RayCluster]:
    """A head with 2 CPUs (room for the lost node's actor) and one worker node with 1 CPU."""
    cluster = RayCluster(head_cpus=2)
    try:
        cluster.add_worker(num_cpus=1)
        yield cluster
    finally:
        cluster.stop()


def _on_both_nodes(settings) -> bool:
    estimate = latest_estimate(settings)
    return estimate is not None and estimate.nodes == 2 and estimate.samples_seen >= FIRST


def _produce_slowly(settings, values: list[bytes], start: int, chunks: int = 10
                    ) -> threading.Thread:
    """The rest of the stream over a few seconds, so the fault lands mid-stream."""
    def run() -> None:
        size = -(-len(values) // chunks)
        for i in range(0, len(values), size):
            produce(settings, values[i : i + size], start=start + i)
            time.sleep(0.3)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _run_with_fault(cluster: RayCluster, settings, tmp_path: Path, fault) -> tuple[object, float]:
    """Train on the cluster, inject ``fault(worker)`` mid-stream, learn to the end; the final
    Estimate and the longest stall (seconds without progress)."""
    values = stream(TOTAL, seed=9)
    produce(settings, values[:FIRST])
    log_path = tmp_path / "trainer.log"
    driver = start_driver(settings, cluster.address, log_path)
    try:
        eventually(lambda: _on_both_nodes(settings), 180,
                   f"actors on both nodes learning the first records ({latest_estimate(settings)})")
        rest = _produce_slowly(settings, values[FIRST:], FIRST)
        time.sleep(1.0)
        fault(cluster.workers[0])
        watch = ProgressWatch()
        eventually(lambda: watch.sample(settings, TOTAL), 300,
                   f"every record learned after the fault\n{log_path.read_text()[-3000:]}")
        rest.join(60)
        time.sleep(1.5)  # a duplicate would show up as more
        stop_driver(driver, log_path)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(30)
    final = latest_estimate(settings)
    assert final is not None
    assert final.samples_seen == TOTAL, log_path.read_text()[-3000:]
    assert estimate_counts(final) == counts_of(values)
    assert sum(final.offsets.values()) == TOTAL  # every offset consumed once
    assert sum(m.restarts for m in final.actor_metrics) >= 1, "no actor was restarted"
    return final, watch.longest_stall


def test_a_lost_node_s_actor_comes_back_on_the_survivor_from_its_checkpoint(
    kafka_broker, cluster: RayCluster, tmp_path: Path
) -> None:
    """With the monitor and a real Prometheus scraping it every second: the restarted actor
    resumes from its checkpoint (the published count may step back), the counters never."""
    settings = make_settings(kafka_broker.bootstrap_servers, tmp_path / "ckpt",
                             checkpoint_interval_s=1.0)
    (tmp_path / "metrics").mkdir()
    children = Children(tmp_path / "metrics")
    try:
        monitor_port = free_port()
        prometheus = Prometheus(children, {"monitor": monitor_port})
        children.start("monitor", [
            GUMBEL_STREAM, "monitor", "--bootstrap-servers", kafka_broker.bootstrap_servers,
            "--host", "127.0.0.1", "--port", str(monitor_port),
        ], env={"GUMBEL_KAFKA__ESTIMATES_TOPIC": settings.kafka.estimates_topic})
        final, stall = _run_with_fault(
            cluster, settings, tmp_path,
            lambda worker: cluster.signal_node(worker, signal.SIGKILL))
        wait_until(lambda: prometheus.scalar("gumbel_samples_learned_total") == TOTAL, 60,
                   "Prometheus seeing every record learned", children.report)
        for counter in ("gumbel_samples_learned_total", "gumbel_dead_letters_total"):
            resets = prometheus.scalar(f"resets({counter}[10m])")
            assert resets == 0, f"{counter} went back {resets} times\n{children.report()}"
    finally:
        children.stop_all()
    assert final.nodes == 1  # both actors on the head now
    print(f"\nNODE LOST: produced {TOTAL:,}, learned {final.samples_seen:,}, lost 0, "
          f"duplicated 0, stall {stall:.1f} s, Prometheus counter resets 0")


def test_a_paused_node_s_actor_is_replaced_and_the_woken_zombie_never_writes(
    kafka_broker, cluster: RayCluster, tmp_path: Path
) -> None:
    checkpoints = tmp_path / "ckpt"
    settings = make_settings(kafka_broker.bootstrap_servers, checkpoints,
                             checkpoint_interval_s=1.0)
    paused: list[set[int]] = []

    def pause(worker) -> None:
        paused.append(cluster.signal_node(worker, signal.SIGSTOP))

    final, stall = _run_with_fault(cluster, settings, tmp_path, pause)
    # Every record is learned (above) while the node sleeps. Wake its worker processes but not
    # its raylet (which would kill them as soon as it learns that its node was declared dead):
    # the zombie actor runs on with an overdue checkpoint and uncommitted offsets, and only
    # the epoch fence stops it. Then wake the raylet too.
    zombies = {pid for pid in paused[0] if not RayCluster.is_raylet(pid)}
    for pid in zombies:
        os.kill(pid, signal.SIGCONT)
    eventually(lambda: RayCluster.logs_mentioning("claimed by a newer instance"), 60,
               "the woken zombie fenced")
    for pid in paused[0] - zombies:
        os.kill(pid, signal.SIGCONT)
    time.sleep(3.0)
    directories = sorted(checkpoints.glob("*/actor-*"))
    assert len(directories) == 2
    epochs_by_actor = []
    for directory in directories:
        newest = EpochFence(directory).current()
        epochs = [decode(p.read_bytes())["epoch"] for p in sorted(directory.glob("ckpt-*.pt"))]
        assert epochs and set(epochs) == {newest}, f"{directory}: epochs {epochs}, newest {newest}"
        epochs_by_actor.append(newest)
    assert max(epochs_by_actor) >= 2  # the replaced actor's successor claimed a newer epoch
    after = latest_estimate(settings)
    assert after is not None and after.samples_seen == TOTAL  # nothing from the zombie
    print(f"\nNODE PAUSED: produced {TOTAL:,}, learned {final.samples_seen:,}, lost 0, "
          f"duplicated 0, stall {stall:.1f} s, epochs {epochs_by_actor}, zombie fenced")
