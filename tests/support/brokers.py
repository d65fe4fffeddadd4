"""Apache Kafka as only the tests need it: restarted on its data, behind SASL, three nodes.

Built on ``services.brokers.launch_apache_kafka``, which the product's commands use too.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path

from services.brokers import (
    BrokerError,
    RunningBroker,
    free_port,
    kafka_version,
    launch_apache_kafka,
    spawn_broker,
    wait_until_ready,
)

__all__ = [
    "KafkaCluster",
    "restart_apache_kafka",
    "sasl_properties",
    "start_apache_kafka_cluster",
    "start_apache_kafka_node",
]

log = logging.getLogger(__name__)


def sasl_properties(port: int, controller_port: int, users: dict[str, str],
                    admin_password: str) -> dict[str, str]:
    """Broker properties for a SASL_PLAINTEXT client listener accepting PLAIN and SCRAM-SHA-256.

    The broker talks to itself as ``admin`` over PLAIN; SCRAM credentials are written into the
    metadata log when the storage is formatted (see ``start_apache_kafka_node``).
    """
    plain_users = " ".join(f'user_{u}="{p}"' for u, p in {"admin": admin_password, **users}.items())
    return {
        "listeners": f"SASL_PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"SASL_PLAINTEXT://127.0.0.1:{port}",
        "inter.broker.listener.name": "SASL_PLAINTEXT",
        "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
        "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256",
        "sasl.mechanism.inter.broker.protocol": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="admin" password="{admin_password}" {plain_users};'
        ),
        "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        ),
    }


def start_apache_kafka_node(
    workdir: Path,
    port: int | None = None,
    controller_port: int | None = None,
    properties: dict[str, str] | None = None,
    heap: str = "512m",
    timeout: float = 90.0,
    sasl_users: dict[str, str] | None = None,
    cluster_id: str | None = None,
    wait: bool = True,
) -> RunningBroker:
    """Apache Kafka with ``properties`` of the test's own; ``wait=False`` returns before it
    answers (a node of a cluster cannot answer before a majority of its voters runs).

    With ``sasl_users`` the client listener is SASL_PLAINTEXT (PLAIN and SCRAM-SHA-256, one
    password per user); the broker's own admin password is made up for this broker.
    """
    port = port or free_port()
    controller_port = controller_port or free_port()
    extra = dict(properties or {})
    format_args: list[str] = []
    client_config: dict[str, object] = {}
    if sasl_users:
        extra.update(sasl_properties(port, controller_port, sasl_users, secrets.token_hex(16)))
        for user, password in sasl_users.items():
            format_args += ["--add-scram", f"SCRAM-SHA-256=[name={user},password={password}]"]
        user, password = next(iter(sasl_users.items()))
        client_config = {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "PLAIN",
            "sasl_plain_username": user,
            "sasl_plain_password": password,
        }
    broker = launch_apache_kafka(workdir, port, controller_port, heap=heap, properties=extra,
                                 cluster_id=cluster_id, format_args=format_args)
    if wait:
        wait_until_ready(broker, timeout, client_config)
    return broker


def restart_apache_kafka(broker: RunningBroker, timeout: float = 90.0) -> RunningBroker:
    """Start a stopped (or killed) Apache Kafka broker again on the same log dir and ports."""
    if broker.alive():
        raise BrokerError("the broker is still running; stop or kill it first")
    restarted = spawn_broker(broker.kind, broker.command, broker.workdir, broker.port,
                             broker.log_path)
    wait_until_ready(restarted, timeout)
    return restarted


@dataclass
class KafkaCluster:
    """Apache Kafka nodes (each broker and KRaft controller) forming one cluster."""

    nodes: list[RunningBroker]

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap_servers for node in self.nodes)

    def node(self, node_id: int) -> RunningBroker:
        return self.nodes[node_id - 1]

    def restart(self, node_id: int, timeout: float = 120.0) -> RunningBroker:
        """Start a killed node again on its data (and wait until it answers)."""
        self.nodes[node_id - 1] = restart_apache_kafka(self.node(node_id), timeout)
        return self.nodes[node_id - 1]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> KafkaCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_apache_kafka_cluster(workdir: Path, size: int = 3, heap: str = "384m",
                               timeout: float = 180.0) -> KafkaCluster:
    """``size`` Apache Kafka nodes on loopback, each a broker and a KRaft controller with its
    own log directory (``workdir/node-<id>``); internal topics (``__consumer_offsets``,
    transactions) replicated ``min(size, 3)`` times with ``min.insync.replicas`` one less."""
    ports = [(free_port(), free_port()) for _ in range(size)]
    voters = ",".join(f"{i}@127.0.0.1:{c}" for i, (_, c) in enumerate(ports, start=1))
    replicas = min(size, 3)
    extra = {
        "controller.quorum.voters": voters,
        "offsets.topic.replication.factor": str(replicas),
        "transaction.state.log.replication.factor": str(replicas),
        "transaction.state.log.min.isr": str(max(1, replicas - 1)),
        "share.coordinator.state.topic.replication.factor": str(replicas),
        "share.coordinator.state.topic.min.isr": str(max(1, replicas - 1)),
        "default.replication.factor": str(replicas),
        "min.insync.replicas": str(max(1, replicas - 1)),
    }
    cluster_id = uuid.uuid4().hex[:22]
    nodes = [
        start_apache_kafka_node(workdir / f"node-{i}", port=port, controller_port=controller,
                                properties={**extra, "node.id": str(i)}, heap=heap,
                                cluster_id=cluster_id, wait=False)
        for i, (port, controller) in enumerate(ports, start=1)
    ]
    cluster = KafkaCluster(nodes)
    try:
        for node in nodes:
            wait_until_ready(node, timeout)
    except BaseException:
        cluster.stop()
        raise
    log.info("Apache Kafka %s cluster of %d ready at %s", kafka_version(), size,
             cluster.bootstrap_servers)
    return cluster
