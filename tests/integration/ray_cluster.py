"""A real multi-node Ray cluster on this machine for the cluster tests: each node its own
`ray start` (its own raylet, object store and workers), token authentication on as Ray 2.60
heads have it; worker nodes that a test can kill (SIGKILL) or pause (SIGSTOP) as a whole; the
`gumbel-stream trainer` driver as a process; the latest Estimate read back from Kafka."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from services.brokers import free_port
from services.common.schemas import Estimate
from services.common.settings import TrainerServiceSettings
from services.process_tree import descendants
from services.up import service_env
from tests.integration.trainer_helpers import start_trainer

RAY = str(Path(sys.executable).parent / "ray")
# Ray marks a silent node dead after period x threshold (defaults: 3 s x 5 plus timeouts);
# shorter here so the node-fault tests run in seconds, the same mechanism as in production.
FAST_HEALTH_CHECKS = ('{"health_check_period_ms": 1000, "health_check_timeout_ms": 1000, '
                      '"health_check_failure_threshold": 3}')


def _ray_env() -> dict[str, str]:
    return {**os.environ, "RAY_AUTH_MODE": "token"}


class RayCluster:
    """A head node (``head_cpus``) and worker nodes added with ``add_worker``."""

    def __init__(self, head_cpus: int = 2) -> None:
        self.port, client_port = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"  # the GCS: for processes on a node
        # Ray Client: for a driver on no node (as the Kubernetes trainer Deployment runs it)
        self.client_address = f"ray://127.0.0.1:{client_port}"
        self.workers: list[subprocess.Popen[bytes]] = []
        subprocess.run(
            [RAY, "start", "--head", "--port", str(self.port), "--num-cpus", str(head_cpus),
             "--ray-client-server-port", str(client_port),
             "--disable-usage-stats", "--include-dashboard", "false",
             "--system-config", FAST_HEALTH_CHECKS],
            check=True, capture_output=True, timeout=120, env=_ray_env())

    def add_worker(self, num_cpus: int = 1) -> subprocess.Popen[bytes]:
        """A worker node: `ray start --block` in its own session, so the test owns it whole."""
        worker = subprocess.Popen(
            [RAY, "start", "--address", self.address, "--num-cpus", str(num_cpus),
             "--disable-usage-stats", "--block"],
            env=_ray_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        self.workers.append(worker)
        self.wait_for_nodes(1 + len(self.workers))  # else the actors could all land on the head
        return worker

    def active_nodes(self) -> int:
        done = subprocess.run([RAY, "status", "--address", self.address], capture_output=True,
                              text=True, timeout=60, env=_ray_env())
        active = done.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
        return sum(1 for line in active.splitlines() if "node_" in line)

    def wait_for_nodes(self, n: int, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.active_nodes() < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"{n} Ray nodes not active after {timeout_s:g}s")
            time.sleep(0.5)

    @staticmethod
    def node_pids(worker: subprocess.Popen[bytes]) -> set[int]:
        """The node's processes: `ray start`, its raylet and every worker process under it."""
        return {worker.pid} | descendants(worker.pid)

    def signal_node(self, worker: subprocess.Popen[bytes], signum: int) -> set[int]:
        pids = self.node_pids(worker)
        for pid in pids:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
        return pids

    @staticmethod
    def is_raylet(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"raylet")
        except OSError:
            return False

    @staticmethod
    def logs_mentioning(text: str) -> list[Path]:
        """The session's worker logs (every node on this machine shares them) holding ``text``."""
        logs = Path("/tmp/ray/session_latest/logs")
        return [p for p in sorted(logs.glob("worker-*")) if text in p.read_text(errors="replace")]

    def stop(self) -> None:
        for worker in self.workers:
            self.signal_node(worker, signal.SIGCONT)  # a paused node cannot die otherwise
            self.signal_node(worker, signal.SIGKILL)
            worker.wait(30)
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120)


K8S_TRAINER = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "trainer.yaml"


def k8s_driver_command() -> str:
    """The shell command of the Kubernetes trainer Deployment's container."""
    import yaml

    (container,) = yaml.safe_load(K8S_TRAINER.read_text())["spec"]["template"]["spec"][
        "containers"]
    assert container["command"] == ["sh", "-c"]
    (command,) = container["args"]
    return str(command)


def _session_members(sid: int) -> set[int]:
    members = set()
    for entry in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes() if entry.isdigit() else b""
        except OSError:
            continue
        if stat and int(stat[stat.rfind(b")") + 2 :].split()[3]) == sid:
            members.add(int(entry))
    return members


class DriverPod:
    """The trainer Deployment's container as processes: its command (a 0-CPU Ray node, then
    `exec gumbel-stream trainer`) in a session of its own; killing the pod kills them all."""

    def __init__(self, settings: TrainerServiceSettings, address: str, log_path: Path) -> None:
        env = {**os.environ, **service_env(settings, "trainer"),  # type: ignore[arg-type]
               "RAY_ADDRESS": address, "RAY_AUTH_MODE": "token",
               "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(["sh", "-c", k8s_driver_command()], env=env,
                                            stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def pids(self) -> set[int]:
        members = _session_members(self.process.pid)
        return members.union(*(descendants(pid) for pid in members))

    def kill(self) -> None:
        """The pod dies at once (OOM kill, node lost): every process of it, SIGKILL."""
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(30)

    def stop(self) -> None:
        """Kubernetes deletes the pod: SIGTERM to the trainer (exit 0), then the rest."""
        try:
            stop_driver(self.process, self.log_path)
        finally:
            self.kill()


def start_driver(settings: TrainerServiceSettings, address: str, log_path: Path
                 ) -> subprocess.Popen[bytes]:
    """`gumbel-stream trainer` joining the cluster at ``address`` (its own session)."""
    return start_trainer(settings, log_path, RAY_ADDRESS=address, RAY_AUTH_MODE="token")


def stop_driver(driver: subprocess.Popen[bytes], log_path: Path) -> None:
    """SIGTERM, as an operator would: exit 0 after the final checkpoints."""
    try:
        driver.send_signal(signal.SIGTERM)
        code = driver.wait(90)
        assert code == 0, f"exit {code}\n{log_path.read_text()[-3000:]}"
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(30)


def latest_estimate(settings: TrainerServiceSettings) -> Estimate | None:
    """The newest Estimate on the estimates topic, read by a plain consumer."""
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


def learned_at_least(settings: TrainerServiceSettings, n: int) -> bool:
    estimate = latest_estimate(settings)
    return estimate is not None and estimate.samples_seen >= n


class ProgressWatch:
    """Samples ``samples_seen`` over time: the longest stretch without progress (the stall)."""

    def __init__(self) -> None:
        self.last_value = -1
        self.last_change = time.monotonic()
        self.longest_stall = 0.0

    def sample(self, settings: TrainerServiceSettings, until: int) -> bool:
        estimate = latest_estimate(settings)
        now = time.monotonic()
        value = estimate.samples_seen if estimate is not None else 0
        if value != self.last_value:
            self.last_value, self.last_change = value, now
        elif value < until:
            self.longest_stall = max(self.longest_stall, now - self.last_change)
        return value >= until
