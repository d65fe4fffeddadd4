"""The trainer on a real two-node Ray cluster on this machine: each node its own `ray start`
(its own raylet, object store and workers), token authentication on as Ray 2.60 heads have
it. The actors spread over both nodes (asserted from their node ids) and learn every record
once (issue 13 §1)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from services.brokers import free_port
from services.common.schemas import Estimate
from services.up import service_env
from tests.integration.trainer_helpers import (
    counts_of,
    estimate_counts,
    eventually,
    make_settings,
    produce,
    stream,
)

pytestmark = [pytest.mark.cluster, pytest.mark.kafka, pytest.mark.ray, pytest.mark.slow]

RAY = str(Path(sys.executable).parent / "ray")


def _ray(*args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run([RAY, *args], check=True, capture_output=True, timeout=120,
                   env={**os.environ, "RAY_AUTH_MODE": "token", **(env or {})})


@pytest.fixture(scope="module")
def two_node_cluster() -> Iterator[str]:
    """A head and a worker node, one CPU each; the head's address."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    _ray("start", "--head", "--port", str(port), "--num-cpus", "1", "--disable-usage-stats",
         "--include-dashboard", "false")
    try:
        _ray("start", "--address", address, "--num-cpus", "1", "--disable-usage-stats")
        yield address
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120)


def _latest_estimate(settings) -> Estimate | None:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers,
                             enable_auto_commit=False)
    tp = TopicPartition(settings.kafka.estimates_topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    latest = None
    for _ in range(5):
        for batch in consumer.poll(timeout_ms=300).values():
            latest = Estimate.from_bytes(batch[-1].value)
    consumer.close()
    return latest


@pytest.mark.skipif(not Path(RAY).exists(), reason="no ray CLI next to this Python")
def test_actors_spread_over_two_nodes_and_learn_every_record_once(
    kafka_broker, two_node_cluster: str, tmp_path: Path
) -> None:
    settings = make_settings(kafka_broker.bootstrap_servers, tmp_path / "ckpt")
    values = stream(3000, seed=7)
    produce(settings, values)
    env = {**os.environ, **service_env(settings, "trainer"),  # type: ignore[arg-type]
           "RAY_ADDRESS": two_node_cluster, "RAY_AUTH_MODE": "token"}
    log_path = tmp_path / "trainer.log"
    with open(log_path, "wb") as log:
        trainer = subprocess.Popen([sys.executable, "-m", "services.cli", "trainer"], env=env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def learned_all() -> bool:
            estimate = _latest_estimate(settings)
            return estimate is not None and estimate.samples_seen >= len(values)

        eventually(learned_all, 180, "every record learned on the cluster")
        trainer.send_signal(signal.SIGTERM)
        assert trainer.wait(90) == 0, log_path.read_text()[-3000:]
    finally:
        if trainer.poll() is None:
            trainer.kill()
    final = _latest_estimate(settings)
    assert final is not None
    assert final.nodes == 2, f"actors on {final.nodes} node(s)\n{log_path.read_text()[-2000:]}"
    assert final.samples_seen == len(values)
    assert estimate_counts(final) == counts_of(values)


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
