"""deploy/k8s/components: the Prometheus Operator component against the operator's own CRD
schemas, its generated files against their sources, and both components built by kustomize."""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.helpers import (
    COMPONENTS_DIR,
    DASHBOARD,
    PROMETHEUS_DIR,
    PROMETHEUS_OPERATOR_VERSION,
    component_resources,
    crd_validator,
    k8s_resources,
    kustomize_build,
    pod_specs,
    prometheus_operator_crd_dir,
    schema_errors,
)

COMPONENT = COMPONENTS_DIR / "prometheus-operator"
RESOURCES = component_resources("prometheus-operator") + component_resources("kafka-sasl")
IDS = [f"{path.parent.name}/{path.name}:{doc['kind']}/{doc['metadata']['name']}"
       for path, doc in RESOURCES]
OPERATOR_CRDS = {"PodMonitor": "monitoring.coreos.com_podmonitors.yaml",
                 "PrometheusRule": "monitoring.coreos.com_prometheusrules.yaml"}
KUBERNETES_VERSION = "1.30.0"


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("generate", COMPONENT / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def operator_validator(kind: str) -> Any:
    crd_dir = prometheus_operator_crd_dir()
    if crd_dir is None:
        pytest.skip(f"Prometheus Operator {PROMETHEUS_OPERATOR_VERSION} CRDs unavailable "
                    "(needs `go` and the Go module proxy)")
    return crd_validator(crd_dir / OPERATOR_CRDS[kind], kind)


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in RESOURCES if doc["kind"] == kind]


@pytest.mark.parametrize("path, doc", RESOURCES, ids=IDS)
def test_component_manifest_validates_against_its_schema(path: Path, doc: dict[str, Any]) -> None:
    if doc["kind"] in OPERATOR_CRDS:
        assert doc["apiVersion"] == "monitoring.coreos.com/v1"
        errors = schema_errors(operator_validator(doc["kind"]), doc)
        assert not errors, "\n".join(errors[:10])
    else:
        import kubernetes_validate

        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_crd_check_rejects_a_misspelt_field() -> None:
    (monitor, *_) = _of_kind("PodMonitor")
    broken = json.loads(json.dumps(monitor))
    broken["spec"]["podMetricsEndpoints"][0]["prot"] = "metrics"
    assert schema_errors(operator_validator("PodMonitor"), broken)


@pytest.mark.parametrize("name", ["prometheusrule.yaml", "grafana-dashboards.yaml"])
def test_generated_files_are_what_their_sources_give(name: str) -> None:
    assert (COMPONENT / name).read_text() == _generator().FILES[name](), (
        "run: python deploy/k8s/components/prometheus-operator/generate.py")


def test_the_prometheus_rule_holds_rules_yml_and_the_dashboard_is_for_grafanas_sidecar() -> None:
    (rule,) = _of_kind("PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(
        (PROMETHEUS_DIR / "rules.yml").read_text())["groups"]
    (dashboards,) = [d for d in _of_kind("ConfigMap")
                     if d["metadata"]["name"] == "gumbel-stream-dashboards"]
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboards["data"][DASHBOARD.name]) == json.loads(DASHBOARD.read_text())


def _pods() -> list[tuple[dict[str, str], dict[str, Any]]]:
    """(labels, pod spec) of every pod the base manifests create, as KubeRay labels them."""
    pods = []
    for _, doc in k8s_resources():
        for group, spec in pod_specs(doc):
            if doc["kind"] == "RayCluster":
                node_type = "head" if group == "head" else "worker"
                template = (doc["spec"]["headGroupSpec"] if group == "head" else next(
                    g for g in doc["spec"]["workerGroupSpecs"] if g["groupName"] == group)
                            )["template"]
                labels = {**template["metadata"].get("labels", {}),
                          "ray.io/cluster": doc["metadata"]["name"], "ray.io/node-type": node_type}
            else:
                labels = doc["spec"]["template"]["metadata"].get("labels", {})
            pods.append((labels, spec))
    return pods


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


@pytest.mark.parametrize("name, selected", [
    ("gumbel-producer", 1), ("gumbel-monitor", 1), ("gumbel-ray", 3)])  # head, learner, ingest
def test_each_pod_monitor_finds_its_pods_and_their_metrics_port(name: str, selected: int) -> None:
    (monitor,) = [m for m in _of_kind("PodMonitor") if m["metadata"]["name"] == name]
    pods = [spec for labels, spec in _pods() if _selects(monitor["spec"]["selector"], labels)]
    assert len(pods) == selected
    for endpoint in monitor["spec"]["podMetricsEndpoints"]:
        for spec in pods:
            ports = {p["name"] for c in spec["containers"] for p in c.get("ports", [])}
            assert endpoint["port"] in ports


def test_ray_pods_export_metrics_on_the_port_the_pod_monitor_scrapes() -> None:
    (cluster,) = [d for _, d in k8s_resources() if d["kind"] == "RayCluster"]
    groups = [cluster["spec"]["headGroupSpec"], *cluster["spec"]["workerGroupSpecs"]]
    for group in groups:
        container = group["template"]["spec"]["containers"][0]
        (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == "metrics"]
        assert group["rayStartParams"]["metrics-export-port"] == str(port)


def test_an_overlay_with_both_components_builds(tmp_path: Path) -> None:
    docs = kustomize_build(tmp_path, ["prometheus-operator", "kafka-sasl"], "gumbel-stream")
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {("PodMonitor", "gumbel-ray"), ("PrometheusRule", "gumbel-stream"),
            ("Secret", "gumbel-kafka-sasl")} <= kinds
    # every container that talks to Kafka gets the SASL Secret (envFrom secretRef)
    for doc in docs:
        for group, pod in pod_specs(doc):
            for container in pod["containers"]:
                refs = [s["secretRef"]["name"] for s in container["envFrom"] if "secretRef" in s]
                assert refs == ["gumbel-kafka-sasl"], f"{doc['metadata']['name']}/{group}"


def test_the_sasl_secret_holds_settings_that_parse_together() -> None:
    from services.common.settings import TrainerServiceSettings
    from tests.deploy.helpers import parse_settings, unknown_setting_keys

    (secret,) = _of_kind("Secret")
    env = secret["stringData"]
    assert unknown_setting_keys(TrainerServiceSettings, env) == []
    settings = parse_settings(TrainerServiceSettings, env)
    assert settings.kafka.security_protocol.startswith("SASL")


def test_the_release_label_kube_prometheus_stack_selects_by_is_set_by_the_component(
        tmp_path: Path) -> None:
    """A parameter in the component (labels: release), on the PodMonitors and the
    PrometheusRule only: without it kube-prometheus-stack's default selectors ignore them."""
    docs = kustomize_build(tmp_path, ["prometheus-operator"], "gumbel-stream")
    selected = [d for d in docs if d["kind"] in ("PodMonitor", "PrometheusRule")]
    assert len(selected) >= 2
    assert {d["metadata"]["labels"].get("release") for d in selected} == {
        "kube-prometheus-stack"}
    others = [d for d in docs if d["kind"] not in ("PodMonitor", "PrometheusRule")]
    assert not any("release" in d["metadata"].get("labels", {}) for d in others)
