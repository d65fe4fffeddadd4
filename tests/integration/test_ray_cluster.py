"""The trainer on a real two-node Ray cluster on this machine: each node its own `ray start`
(its own raylet, object store and workers), token authentication on as Ray 2.60 heads have
it. The actors spread over both nodes (asserted from their node ids) and learn every record
once (issue 13 §1); a lost driver restarted resumes from the checkpoints (§2). Node faults:
test_ray_cluster_faults.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.up import service_env
from tests.integration.ray_cluster import (
    RAY,
    DriverPod,
    ProgressWatch,
    RayCluster,
    latest_estimate,
    learned_at_least,
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

pytestmark = [pytest.mark.cluster, pytest.mark.kafka, pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    """A head (2 CPUs) and a worker node (1 CPU)."""
    cluster = RayCluster(head_cpus=2)
    try:
        cluster.add_worker(num_cpus=1)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def two_node_cluster(cluster: RayCluster) -> str:
    """The head's GCS address."""
    return cluster.address


@pytest.mark.skipif(not Path(RAY).exists(), reason="no ray CLI next to this Python")
def test_actors_spread_over_two_nodes_and_learn_every_record_once(
    kafka_broker, two_node_cluster: str, tmp_path: Path
) -> None:
    settings = make_settings(kafka_broker.bootstrap_servers, tmp_path / "ckpt")
    values = stream(3000, seed=7)
    produce(settings, values)
    log_path = tmp_path / "trainer.log"
    trainer = start_driver(settings, two_node_cluster, log_path)
    try:
        eventually(lambda: learned_at_least(settings, len(values)), 180,
                   "every record learned on the cluster")
    finally:
        stop_driver(trainer, log_path)
    final = latest_estimate(settings)
    assert final is not None
    assert final.nodes == 2, f"actors on {final.nodes} node(s)\n{log_path.read_text()[-2000:]}"
    assert final.samples_seen == len(values)
    assert estimate_counts(final) == counts_of(values)
    assert_every_offset_once(final, partition_sizes(values))


def test_a_lost_driver_restarted_resumes_from_the_checkpoints(
    kafka_broker, two_node_cluster: str, tmp_path: Path
) -> None:
    """Issue 13 §2, driver lost: the driver runs as the Kubernetes trainer Deployment runs it
    (deploy/k8s/trainer.yaml's command: a 0-CPU Ray node, then the trainer). SIGKILL that
    "pod" while the cluster stays up, start it again (as Kubernetes does): Ray ends the old
    driver's actors, the new ones claim newer epochs (an old one still winding down cannot
    write) and resume from the checkpoints."""
    settings = make_settings(kafka_broker.bootstrap_servers, tmp_path / "ckpt",
                             checkpoint_interval_s=1.0)
    values = stream(4000, seed=8)
    produce(settings, values[:2000])
    first = DriverPod(settings, two_node_cluster, tmp_path / "trainer-1.log")
    try:
        eventually(lambda: learned_at_least(settings, 2000), 180,
                   lambda: f"the first 2,000 learned\n{first.log_path.read_text()[-3000:]}")
        time.sleep(2.0)  # a checkpoint or two
    finally:
        first.kill()  # the driver's pod only: the cluster's nodes stay up
    produce(settings, values[2000:], start=2000)
    log_path = tmp_path / "trainer-2.log"
    second = DriverPod(settings, two_node_cluster, log_path)
    watch = ProgressWatch()
    try:
        eventually(lambda: watch.sample(settings, len(values)), 240,
                   lambda: "every record learned after the restart\n"
                   + log_path.read_text()[-3000:])
        time.sleep(1.5)  # a duplicate would show up as more
    finally:
        second.stop()
    final = latest_estimate(settings)
    assert final is not None
    assert "learner restored" in log_path.read_text()
    assert final.samples_seen == len(values)
    assert estimate_counts(final) == counts_of(values)
    assert_every_offset_once(final, partition_sizes(values))
    print(f"\nDRIVER LOST: produced {len(values):,}, learned {final.samples_seen:,}, lost 0, "
          f"duplicated 0, stall {watch.longest_stall:.1f} s (includes the new driver's start)")


def test_joining_a_token_cluster_without_the_token_is_one_clear_line(
    kafka_broker, two_node_cluster: str, tmp_path: Path
) -> None:
    settings = make_settings(kafka_broker.bootstrap_servers, tmp_path / "ckpt")
    env = {key: v for key, v in os.environ.items() if not key.startswith("RAY_AUTH")}
    env.update(service_env(settings, "trainer"))  # type: ignore[arg-type]
    env["RAY_ADDRESS"] = two_node_cluster
    done = subprocess.run([sys.executable, "-m", "services.cli", "trainer"], env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    [line] = [x for x in done.stderr.splitlines() if x.startswith("gumbel-stream:")]
    assert "--ray-address" in line and "GUMBEL_TRAINER__RAY_AUTH_TOKEN" in line


def test_without_an_address_the_trainer_starts_its_own_ray_not_a_running_cluster(
    cluster: RayCluster,
) -> None:
    """Ray's `ray.init()` without an address joins a cluster already started on the machine;
    the trainer said "started locally" while it ran its actors on someone else's cluster."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    code = ("from services.trainer.service import init_ray; import ray; init_ray(None); "
            "print('GCS', ray.get_runtime_context().gcs_address)")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    (gcs,) = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("GCS ")]
    assert gcs.rsplit(":", 1)[1] != str(cluster.port), f"joined the running cluster at {gcs}"
