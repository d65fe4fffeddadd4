"""docker-compose.yml without Docker: the same programs with the same environment, as processes.

Apache Kafka (the pinned version, from jars), the topics kafka-init creates, then
`gumbel-stream producer|trainer|monitor` with each Compose service's environment (host names
rewritten to 127.0.0.1, free ports, a temporary checkpoint volume) and Debian's Prometheus
with deploy/prometheus/prometheus.yml's jobs pointed at those ports. The dashboard's queries
must then return data, and the metrics the dashboard and the alerts use must be exported.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.conftest import require_binary
from tests.deploy.helpers import (
    PROMETHEUS_DIR,
    PROMETHEUS_OWN,
    dashboard_exprs,
    exported_metric_names,
    load_compose,
    promql_metric_names,
    rule_exprs,
    service_environment,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.kafka, pytest.mark.ray]

SERVICES = ("producer", "trainer", "monitor")
STARTUP_TIMEOUT_S = 240.0


@dataclass
class Stack:
    workdir: Path
    ports: dict[str, int] = field(default_factory=dict)  # compose service -> host port
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    def url(self, service: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}{path}"

    def log_tails(self, chars: int = 2500) -> str:
        parts = []
        for name, path in self.logs.items():
            text = path.read_text(errors="replace") if path.exists() else ""
            parts.append(f"--- {name} ---\n{text[-chars:]}")
        return "\n".join(parts)

    def assert_alive(self) -> None:
        for name, process in self.processes.items():
            assert process.poll() is None, f"{name} exited {process.returncode}\n{self.log_tails()}"


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def _wait(what: str, check, stack: Stack, timeout: float = STARTUP_TIMEOUT_S):  # noqa: ANN001
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        stack.assert_alive()
        try:
            result = check()
            if result:
                return result
            last = result
        except Exception as exc:  # not there yet
            last = exc
        time.sleep(1.0)
    pytest.fail(f"{what} not within {timeout:.0f}s (last: {last!r})\n{stack.log_tails()}")


def kafka_init_topics(compose: dict) -> list[tuple[str, int]]:
    """(topic, partitions) that the kafka-init service's script creates."""
    script = "\n".join(compose["services"]["kafka-init"]["command"])
    return [(m.group(1), int(m.group(2)))
            for m in re.finditer(r"--create .*?--topic (\S+) --partitions (\d+)", script)]


def process_environment(compose_env: dict[str, str], bootstrap: str, ports: dict[str, int],
                        checkpoints: Path) -> dict[str, str]:
    """Compose's environment for one service, rewritten for processes on this machine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUMBEL_", "RAY_"))}
    for key, value in compose_env.items():
        value = value.replace("kafka:9092", bootstrap)
        if key in ("GUMBEL_PRODUCER__METRICS_HOST", "GUMBEL_MONITOR__HOST"):
            value = "127.0.0.1"
        elif key == "GUMBEL_PRODUCER__METRICS_PORT":
            value = str(ports["producer"])
        elif key == "GUMBEL_MONITOR__PORT":
            value = str(ports["monitor"])
        elif key == "GUMBEL_TRAINER__CHECKPOINT_DIR":
            value = str(checkpoints)
        env[key] = value
    return env


def prometheus_config(ports: dict[str, int], workdir: Path) -> Path:
    """deploy/prometheus/prometheus.yml with each job's Compose target on its local port."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    compose_ports = {"producer": 9107, "monitor": 9108, "localhost": 9090}
    local = {"producer": ports["producer"], "monitor": ports["monitor"],
             "localhost": ports["prometheus"]}
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            rewritten = []
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                assert int(port) == compose_ports[host], target
                rewritten.append(f"127.0.0.1:{local[host]}")
            static["targets"] = rewritten
    config["rule_files"] = [str(PROMETHEUS_DIR / f) for f in config["rule_files"]]
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from services.brokers import free_port, java_available
    from tests.support.brokers import start_apache_kafka_node

    prometheus = require_binary("prometheus")
    if not java_available():
        pytest.skip("needs Java for Apache Kafka (the broker Compose runs)")
    cli = Path(sys.executable).parent / "gumbel-stream"
    if not cli.exists():
        pytest.skip("the gumbel-stream command is not installed in this environment")
    compose = load_compose()
    workdir = tmp_path_factory.mktemp("compose-as-processes")
    stack = Stack(workdir=workdir)
    kafka_env = service_environment(compose["services"]["kafka"])
    broker = start_apache_kafka_node(
        workdir / "kafka",
        properties={
            "auto.create.topics.enable": kafka_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"],
            "group.initial.rebalance.delay.ms": kafka_env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"],
        },
    )
    try:
        from kafka.admin import KafkaAdminClient, NewTopic

        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        try:  # what kafka-init does
            admin.create_topics([NewTopic(name, partitions, 1)
                                 for name, partitions in kafka_init_topics(compose)])
        finally:
            admin.close()

        stack.ports = {name: free_port() for name in ("producer", "monitor", "prometheus")}
        checkpoints = workdir / "checkpoints"
        for name in SERVICES:
            service = compose["services"][name]
            env = process_environment(service_environment(service), broker.bootstrap_servers,
                                      stack.ports, checkpoints)
            stack.logs[name] = workdir / f"{name}.log"
            with open(stack.logs[name], "wb") as log:
                stack.processes[name] = subprocess.Popen(
                    [str(cli), *service["command"]], env=env, stdout=log,
                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                )
        config = prometheus_config(stack.ports, workdir)
        stack.logs["prometheus"] = workdir / "prometheus.log"
        with open(stack.logs["prometheus"], "wb") as log:
            stack.processes["prometheus"] = subprocess.Popen(
                [prometheus, f"--config.file={config}",
                 f"--storage.tsdb.path={workdir / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{stack.ports['prometheus']}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        _wait("Prometheus ready", lambda: _get(stack.url("prometheus", "/-/ready")), stack, 60)
        yield stack
    finally:
        for process in stack.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in stack.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        broker.stop()


def test_services_export_every_metric_the_dashboard_and_alerts_use(stack: Stack) -> None:
    used = {name for _, expr in dashboard_exprs() + rule_exprs()
            for name in promql_metric_names(expr)} - PROMETHEUS_OWN

    def exported() -> set[str] | None:
        names = set()
        for service in ("producer", "monitor"):
            names |= exported_metric_names(_get(stack.url(service, "/metrics")).decode())
        return names if used <= names else None

    names = _wait("an estimate's metrics on the monitor", exported, stack)
    assert used <= names


def _query(stack: Stack, expr: str) -> list[dict]:
    url = stack.url("prometheus", "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    body = json.loads(_get(url))
    assert body["status"] == "success", body
    return body["data"]["result"]


# The dashboard's template variables as Grafana sends them with "All" selected;
# $__rate_interval is at least 4 scrape intervals (the data source's timeInterval, 5s).
DASHBOARD_VARIABLES = {"$model_id": ".+", "$__rate_interval": "20s"}


def _as_grafana_sends(expr: str) -> str:
    for variable, value in DASHBOARD_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a dashboard variable this test does not know: {expr}"
    return expr


def test_every_dashboard_query_returns_data(stack: Stack) -> None:
    pending = dict.fromkeys(_as_grafana_sends(expr) for _, expr in dashboard_exprs())

    def all_answered() -> bool:
        for expr in list(pending):
            if _query(stack, expr):
                del pending[expr]
        return not pending or None  # type: ignore[return-value]

    try:
        _wait("data for every dashboard query", all_answered, stack)
    except BaseException:
        print(f"dashboard queries without data: {list(pending)}")
        raise
    # five categories on both sides of the side-by-side panels
    for metric in ("gumbel_true_probability", "gumbel_estimated_probability"):
        assert len(_query(stack, metric)) == 5, metric
    produced = float(_query(stack, "sum(rate(gumbel_produced_total[1m]))")[0]["value"][1])
    assert produced > 0


def test_prometheus_loaded_the_alert_rules_and_scrapes_both_jobs(stack: Stack) -> None:
    def evaluated() -> list[dict] | None:
        body = json.loads(_get(stack.url("prometheus", "/api/v1/rules")))
        rules = [r for g in body["data"]["groups"] for r in g["rules"]]
        return rules if rules and all(r.get("lastEvaluation", "").startswith("2") and
                                      r["health"] == "ok" for r in rules) else None

    rules = _wait("alert rules evaluated", evaluated, stack, 60)
    assert {r["name"] for r in rules} == {name for name, _ in rule_exprs()}
    up = {r["metric"]["job"]: r["value"][1] for r in _query(stack, "up")}
    assert up["gumbel-producer"] == "1" and up["gumbel-monitor"] == "1"


def test_monitor_is_healthy_once_estimates_flow(stack: Stack) -> None:
    _wait("monitor /healthz", lambda: _get(stack.url("monitor", "/healthz")), stack, 120)


def _checkpoints(directory: Path) -> dict[Path, float]:
    return {p: p.stat().st_mtime for p in directory.rglob("ckpt-*.pt")}


def test_the_trainer_stops_inside_its_compose_grace_period(stack: Stack) -> None:
    """Last in this module: it stops the trainer as `docker compose stop` does. With
    `init: true` tini is PID 1 and forwards SIGTERM to gumbel-stream alone (not its group);
    Docker sends SIGKILL after `stop_grace_period`. The stop path (learn what is held, final
    checkpoint, offsets committed, Ray shut down) must end well inside it, exit 0, and leave
    a checkpoint written after the signal: otherwise the restart relearns from an older one."""
    from tests.deploy.helpers import compose_duration_s

    grace_s = compose_duration_s(load_compose()["services"]["trainer"]["stop_grace_period"])
    checkpoints = stack.workdir / "checkpoints"
    _wait("a trainer checkpoint", lambda: _checkpoints(checkpoints), stack)
    trainer = stack.processes["trainer"]
    signalled = time.time()
    started = time.monotonic()
    trainer.send_signal(signal.SIGTERM)
    try:
        code = trainer.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the trainer was still stopping after {grace_s:.0f}s: Docker would have "
                    f"killed it\n{stack.log_tails()}")
    stop_s = time.monotonic() - started
    print(f"trainer stop path: {stop_s:.1f} s (grace period {grace_s:.0f} s)")
    assert code == 0, stack.log_tails()
    final = [p for p, mtime in _checkpoints(checkpoints).items() if mtime >= signalled]
    assert final, f"no checkpoint written after SIGTERM\n{stack.log_tails()}"
    # Half the grace period: a loaded host is slower than this 2-core test machine at rest.
    assert stop_s <= grace_s / 2, f"stop took {stop_s:.1f}s of a {grace_s:.0f}s grace period"
