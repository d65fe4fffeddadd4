"""Faults of a real multi-node Ray cluster on this machine (issues 13 §2, 21 §4): the worker
node is lost (SIGKILL of its raylet and workers) or paused (SIGSTOP for longer than Ray's
health checks, then SIGCONT) mid-stream. The ingest actors are spread over both nodes; the
lost node's actor comes back on the surviving node and asks the learner where to go on; every
record is learned exactly once (per-category counts exact, every offset once), and a paused
actor that wakes while its successor reads has its blocks refused by the learner."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.brokers import free_port
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
    assert_every_offset_once,
    counts_of,
    estimate_counts,
    eventually,
    make_settings,
    partition_sizes,
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
    """A head with 3 CPUs (the learner, an ingest actor and room for the lost node's) and one
    worker node with 1 CPU."""
    cluster = RayCluster(head_cpus=3)
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


def _run_with_fault(cluster: RayCluster, settings, tmp_path: Path, fault, after_fault=None
                    ) -> tuple[object, float]:
    """Train on the cluster, inject ``fault(worker)`` mid-stream (then ``after_fault()``),
    learn to the end; the final Estimate and the longest stall (seconds without progress)."""
    values = stream(TOTAL, seed=9)
    produce(settings, values[:FIRST])
    log_path = tmp_path / "trainer.log"
    driver = start_driver(settings, cluster.address, log_path)
    try:
        eventually(lambda: _on_both_nodes(settings), 180,
                   lambda: f"actors on both nodes learning the first records "
                   f"({latest_estimate(settings)})\n{log_path.read_text()[-3000:]}")
        rest = _produce_slowly(settings, values[FIRST:], FIRST)
        time.sleep(1.0)
        fault(cluster.workers[0])
        if after_fault is not None:
            after_fault()
        watch = ProgressWatch()
        eventually(lambda: watch.sample(settings, TOTAL), 300,
                   lambda: f"every record learned after the fault\n{log_path.read_text()[-3000:]}")
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
    assert_every_offset_once(final, partition_sizes(values))
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
            resets = prometheus.scalar(f"sum(resets({counter}[10m]))")  # every series
            assert resets == 0, f"{counter} went back {resets} times\n{children.report()}"
    finally:
        children.stop_all()
    assert final.nodes == 1  # both actors on the head now
    print(f"\nNODE LOST: produced {TOTAL:,}, learned {final.samples_seen:,}, lost 0, "
          f"duplicated 0, stall {stall:.1f} s, Prometheus counter resets 0")


def test_a_paused_node_s_actor_is_replaced_and_the_woken_zombie_s_blocks_are_refused(
    kafka_broker, cluster: RayCluster, tmp_path: Path
) -> None:
    """The paused node's ingest actor is restarted on the head; once its successor reads on,
    the zombie's worker is woken (not its raylet, which would end it as soon as it learns its
    node was declared dead): it offers the blocks it had polled, which begin behind where
    the learner is, so they are refused and nothing is learned twice."""
    settings = make_settings(kafka_broker.bootstrap_servers, tmp_path / "ckpt",
                             checkpoint_interval_s=1.0)
    paused: list[set[int]] = []

    def pause(worker) -> None:
        paused.append(cluster.signal_node(worker, signal.SIGSTOP))

    def wake_the_zombie() -> None:
        eventually(lambda: (latest_estimate(settings) or _NONE).nodes == 1, 120,
                   "the paused node's ingest actor replaced on the head")
        zombies = {pid for pid in paused[0] if not RayCluster.is_raylet(pid)}
        for pid in zombies:
            os.kill(pid, signal.SIGCONT)
        eventually(lambda: RayCluster.logs_mentioning("where the learner is"), 60,
                   "the woken zombie's blocks refused")
        for pid in paused[0] - zombies:
            os.kill(pid, signal.SIGCONT)

    final, stall = _run_with_fault(cluster, settings, tmp_path, pause, wake_the_zombie)
    time.sleep(3.0)
    after = latest_estimate(settings)
    assert after is not None and after.samples_seen == TOTAL  # nothing from the zombie
    print(f"\nNODE PAUSED: produced {TOTAL:,}, learned {final.samples_seen:,}, lost 0, "
          f"duplicated 0, stall {stall:.1f} s, the zombie's blocks refused")


class _NoEstimate:
    nodes = 0


_NONE = _NoEstimate()
