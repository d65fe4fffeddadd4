"""Prometheus configuration and alert rules, checked and unit-tested with promtool."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import require_binary
from tests.deploy.helpers import (
    K8S_DIR,
    PROMETHEUS_DIR,
    PROMETHEUS_OWN,
    REPO,
    load_compose,
    metrics_the_services_export,
    promql_metric_names,
    rule_exprs,
)

RULES = PROMETHEUS_DIR / "rules.yml"
RULE_TESTS = PROMETHEUS_DIR / "rules.test.yml"
RUNBOOK = REPO / "docs" / "runbook.md"
RUNBOOK_URL = "https://github.com/gumbel-stream/gumbel-stream/blob/main/docs/runbook.md"


def promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_binary("promtool"), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_compose_prometheus_config_is_valid() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_are_valid() -> None:
    result = promtool("check", "rules", "rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", "rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    alerts = {name for name, _ in rule_exprs()}
    assert alerts == {"GumbelEstimateStale", "GumbelEstimateFarFromBaseline",
                      "GumbelNotLearning", "GumbelDeadLetters", "GumbelDataStale",
                      "GumbelRecordsSkipped", "GumbelEstimatesAbsent",
                      "GumbelConsumerLagGrowing", "GumbelCheckpointsFailing",
                      "GumbelCheckpointTooOld", "GumbelActorRestarting", "GumbelTargetDown"}
    fired, quiet = set(), set()
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            (fired if case["exp_alerts"] else quiet).add(case["alertname"])
    assert fired == alerts
    assert quiet == alerts


def _github_anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading: lower case, punctuation dropped, - for spaces."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_links_its_section_of_the_runbook() -> None:
    headings = {_github_anchor(line.lstrip("#")) for line in RUNBOOK.read_text().splitlines()
                if line.startswith("## ")}
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    for rule in rules:
        url = rule["annotations"]["runbook_url"]
        page, _, anchor = url.partition("#")
        assert page == RUNBOOK_URL, rule["alert"]
        assert anchor == _github_anchor(rule["alert"]) and anchor in headings, rule["alert"]
    # and every section is an alert's
    assert headings == {_github_anchor(r["alert"]) for r in rules}


def test_every_metric_an_alert_uses_is_one_the_services_export() -> None:
    used = {name for _, expr in rule_exprs() for name in promql_metric_names(expr)}
    assert used - metrics_the_services_export() - PROMETHEUS_OWN == set()


def test_compose_scrapes_the_producer_and_the_monitor() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    targets = {job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
               for job in config["scrape_configs"]}
    assert targets["gumbel-producer"] == ["producer:9107"]
    assert targets["gumbel-monitor"] == ["monitor:9108"]
    assert config["rule_files"] == ["rules.yml"]
    services = load_compose()["services"]
    assert "127.0.0.1:9107:9107" in services["producer"]["ports"]
    assert "127.0.0.1:9108:9108" in services["monitor"]["ports"]


def test_k8s_prometheus_config_is_valid(tmp_path: Path) -> None:
    config_map = yaml.safe_load((K8S_DIR / "prometheus-config.yaml").read_text())
    text = config_map["data"]["prometheus.yml"]
    (tmp_path / "prometheus.yml").write_text(text)
    result = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    if "field kubernetes_sd_configs not found" in result.stdout + result.stderr:
        # Debian builds Prometheus without Kubernetes discovery: check everything else (the
        # relabelling, the rule glob) with the discovery swapped for a static target.
        config = yaml.safe_load(text)
        for job in config["scrape_configs"]:
            assert job.pop("kubernetes_sd_configs")[0]["role"] == "pod"
            job["static_configs"] = [{"targets": ["pod:9108"]}]
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        result = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", ["producer.yaml", "monitor.yaml"])
def test_k8s_pods_are_annotated_for_scraping(path: str) -> None:
    deployment = next(d for d in yaml.safe_load_all((K8S_DIR / path).read_text())
                      if d["kind"] == "Deployment")
    template = deployment["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    port = int(annotations["prometheus.io/port"])
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    ports = [p["containerPort"] for c in template["spec"]["containers"] for p in c["ports"]]
    assert port in ports
