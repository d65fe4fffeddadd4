"""The Grafana provisioning and dashboard: wiring, panels, and PromQL that parses."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import require_binary
from tests.deploy.helpers import (
    DASHBOARD,
    GRAFANA_DIR,
    dashboard_exprs,
    load_compose,
    metrics_the_services_export,
    promql_metric_names,
)

PROVISIONING = GRAFANA_DIR / "provisioning"


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _panels(dashboard: dict) -> list[dict]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_datasource_is_compose_prometheus_and_the_default() -> None:
    datasources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert source["isDefault"] is True  # what the dashboard's datasource variable starts at
    assert "prometheus" in load_compose()["services"]


def test_every_panel_queries_the_datasource_variable(dashboard: dict) -> None:
    """No datasource uid in the dashboard: it imports into any Grafana with a Prometheus."""
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "datasource"]
    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    chosen = {"type": "prometheus", "uid": "${datasource}"}
    for panel in _panels(dashboard):
        assert panel["datasource"] == chosen, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == chosen, panel["title"]
    assert "gumbel-prometheus" not in DASHBOARD.read_text()


def test_dashboard_provider_loads_the_mounted_folder() -> None:
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "gumbel-stream.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    mounts = load_compose()["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in mounts
    home = load_compose()["services"]["grafana"]["environment"][
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/{DASHBOARD.name}"


def test_dashboard_has_the_promised_panels(dashboard: dict) -> None:
    assert dashboard["uid"] == "gumbel-stream"
    by_metric: dict[str, list[dict]] = {}
    for panel in _panels(dashboard):
        for target in panel["targets"]:
            for name in promql_metric_names(target["expr"]):
                by_metric.setdefault(name, []).append(panel)
    for name in ("gumbel_true_probability", "gumbel_estimated_probability",
                 "gumbel_temperature", "gumbel_generator_loss", "gumbel_discriminator_loss",
                 "gumbel_total_variation", "gumbel_produced_total",
                 "gumbel_samples_learned_total", "gumbel_dead_letters_total",
                 # the trainer's actors (issue 12 §3)
                 "gumbel_consumer_lag_records", "gumbel_partition_lag_records",
                 "gumbel_learned_fraction", "gumbel_actor_learned_fraction",
                 "gumbel_actor_queued_batches",
                 "gumbel_actor_lag_records", "gumbel_actor_last_checkpoint_timestamp_seconds",
                 "gumbel_actor_checkpoint_duration_seconds",
                 "gumbel_actor_checkpoint_failures_total", "gumbel_actor_restarts_total",
                 "process_resident_memory_bytes",
                 # histograms and counters, not averages (issue 22 §3)
                 "gumbel_step_duration_seconds_bucket", "gumbel_record_to_step_seconds_bucket",
                 "gumbel_poll_to_step_seconds_bucket", "gumbel_actor_records_read_total"):
        assert name in by_metric, name
    exprs = [e for _, e in dashboard_exprs()]
    assert "sum(rate(gumbel_produced_total[$__rate_interval]))" in exprs
    assert ('sum by (model_id) (rate(gumbel_samples_learned_total{model_id=~"$model_id"}'
            '[$__rate_interval]))') in exprs
    assert ("histogram_quantile(0.99, sum by (model_id, le) (rate(gumbel_step_duration_seconds"
            '_bucket{model_id=~"$model_id"}[$__rate_interval])))') in exprs


def test_no_panel_reads_a_deprecated_average() -> None:
    """The gauges the histograms and counters replace stay one release, for others' dashboards
    (docs/services.md#metrics); ours reads the new series."""
    queried = {name for _, expr in dashboard_exprs() for name in promql_metric_names(expr)}
    assert not queried & {"gumbel_actor_records_per_second", "gumbel_actor_step_seconds",
                          "gumbel_actor_poll_to_learn_seconds",
                          "gumbel_dead_letters_by_reason_total"}


def test_every_metric_a_panel_queries_is_one_the_services_export() -> None:
    queried = {name for _, expr in dashboard_exprs() for name in promql_metric_names(expr)}
    assert queried - metrics_the_services_export() == set()


def test_the_tv_against_truth_stat(dashboard: dict) -> None:
    (panel,) = [p for p in _panels(dashboard) if p["title"] == "TV: estimate vs truth"]
    assert panel["type"] == "stat"
    (target,) = panel["targets"]
    assert target["expr"] == (
        "0.5 * sum by (model_id) (abs(max by (model_id, category) "
        '(gumbel_estimated_probability{model_id=~"$model_id"}) - on (category) group_left '
        "max by (category) (gumbel_true_probability)))")
    assert target["legendFormat"] == "{{model_id}}"  # one value per model shown
    assert panel["gridPos"]["y"] <= 1  # the first thing one sees


def test_per_actor_panels_name_the_actor(dashboard: dict) -> None:
    for panel in _panels(dashboard):
        for target in panel["targets"]:
            if "by (actor)" in target["expr"]:
                assert "{{actor}}" in target["legendFormat"], panel["title"]


def test_truth_and_estimate_are_side_by_side_per_category(dashboard: dict) -> None:
    def only(metric: str) -> dict:
        (panel,) = [p for p in _panels(dashboard)
                    if [t["expr"] for t in p["targets"]] == [metric]]
        return panel

    truth = only("gumbel_true_probability")
    estimate = only('gumbel_estimated_probability{model_id=~"$model_id"}')
    assert truth["gridPos"]["y"] == estimate["gridPos"]["y"]
    assert truth["gridPos"]["x"] + truth["gridPos"]["w"] <= estimate["gridPos"]["x"]
    for panel in (truth, estimate):
        assert panel["type"] == "timeseries"
        assert "{{category}}" in panel["targets"][0]["legendFormat"]


def test_panels_do_not_overlap(dashboard: dict) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses each expression as a recording rule's expr: a real PromQL parse.
    promtool = require_binary("promtool")
    exprs = dashboard_exprs()
    # Grafana replaces its range variables with a duration before Prometheus sees the query
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr.replace("$__rate_interval", "1m")}
        for i, (_, expr) in enumerate(exprs)
    ]}]}
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


def test_metric_name_extraction() -> None:
    assert promql_metric_names(
        'max by (category) (gumbel_a{job="x"}) - on (category) max by (category) (gumbel_b)'
    ) == {"gumbel_a", "gumbel_b"}
    assert promql_metric_names("time() - max(gumbel_c)") == {"gumbel_c"}
    assert promql_metric_names("sum(rate(gumbel_d_total[1m])) > 0 unless x") == {
        "gumbel_d_total", "x"}


# --- several models (issue 15 §2) -----------------------------------------------------------
# The producer's and the processes' own series carry no model_id; every other one does.
_NOT_PER_MODEL = {"gumbel_true_probability", "gumbel_produced_total",
                  "process_resident_memory_bytes", "process_cpu_seconds_total"}


def test_the_model_variable_lists_the_models_the_monitor_shows(dashboard: dict) -> None:
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "model_id"]
    assert variable["type"] == "query"
    assert variable["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert variable["query"]["query"] == (
        "label_values(gumbel_last_estimate_timestamp_seconds, model_id)")
    assert variable["multi"] and variable["includeAll"] and variable["allValue"] == ".*"
    assert variable["current"]["value"] == ["$__all"]


def test_every_query_of_a_models_metric_filters_by_the_variable() -> None:
    matcher = '{model_id=~"$model_id"}'
    for title, expr in dashboard_exprs():
        for name in promql_metric_names(expr) - _NOT_PER_MODEL:
            selectors = re.findall(rf"\b{name}(\{{[^}}]*\}})?", expr)
            assert selectors and all(s == matcher for s in selectors), (title, name, expr)


def test_panels_of_several_models_name_the_model(dashboard: dict) -> None:
    for panel in _panels(dashboard):
        for target in panel["targets"]:
            if "$model_id" in target["expr"]:
                assert "{{model_id}}" in target["legendFormat"], panel["title"]
                # Never aggregated across models (the producer's truth has no model to keep).
                across = re.search(r"\b(sum|max|min|avg)\b(?! by \(model_id)"
                                   r"(?! by \(category\) \(gumbel_true_probability\))",
                                   target["expr"])
                assert not across, (panel["title"], target["expr"])


def test_every_rate_uses_grafanas_rate_interval() -> None:
    """A fixed [1m] is too short for a slow scrape interval and too coarse for a fast one;
    $__rate_interval follows the data source's scrape interval (at least 4 scrapes)."""
    rates = [(title, expr) for title, expr in dashboard_exprs() if "rate(" in expr]
    assert rates
    for title, expr in rates:
        for call in re.findall(r"\b(?:i?rate)\([^()]*\)", expr):
            assert "[$__rate_interval]" in call, f"{title}: {call}"
