"""``up`` and the live page: the address it prints, and the truth it points the monitor at."""

from __future__ import annotations

import json

from services.common.settings import UpSettings
from services.up import page_address, service_env, with_ports, with_producer_truth


def test_the_page_address_is_on_loopback_for_a_wildcard_bind() -> None:
    assert page_address(UpSettings(monitor={"port": 9200})) == "http://127.0.0.1:9200/"
    assert page_address(UpSettings(monitor={"host": "::", "port": 1})) == "http://127.0.0.1:1/"
    assert page_address(UpSettings(monitor={"host": "::1", "port": 1})) == "http://[::1]:1/"
    assert page_address(UpSettings(monitor={"host": "10.0.0.5"})) == "http://10.0.0.5:9108/"


def test_the_monitor_reads_the_truth_from_the_producer_of_up() -> None:
    settings = with_producer_truth(UpSettings(producer={"metrics_port": 9300}))
    [handed] = service_env(settings, "monitor").values()  # one serialised object
    monitor = json.loads(handed)["monitor"]
    assert monitor["producer_metrics_url"] == "http://127.0.0.1:9300/metrics"
    # the page compares the truth with the model this producer feeds only (issue 24 §4)
    assert monitor["truth_model_id"] == settings.trainer.model_id == "default"


def test_a_truth_url_given_by_the_user_is_kept() -> None:
    given = UpSettings(monitor={"producer_metrics_url": "http://elsewhere:1/metrics"})
    assert str(with_producer_truth(given).monitor.producer_metrics_url) == (
        "http://elsewhere:1/metrics")


def test_port_0_becomes_the_real_port_before_it_is_announced() -> None:
    settings = with_producer_truth(with_ports(UpSettings(monitor={"port": 0},
                                                         producer={"metrics_port": 0})))
    assert settings.monitor.port > 0 and settings.producer.metrics_port > 0
    assert page_address(settings) == f"http://127.0.0.1:{settings.monitor.port}/"
    assert str(settings.monitor.producer_metrics_url) == (
        f"http://127.0.0.1:{settings.producer.metrics_port}/metrics")
    fixed = UpSettings(monitor={"port": 9200}, producer={"metrics_port": 9300})
    assert with_ports(fixed) == fixed


def test_a_child_reads_the_settings_of_up_and_nothing_else(monkeypatch) -> None:
    from services.common.settings import MonitorServiceSettings

    settings = UpSettings(monitor={"port": 9200}, kafka={"sasl_password": "s3cret"})
    monkeypatch.setenv("GUMBEL_MONITOR__PORT", "1")  # up's own environment, which up resolved
    for key, value in service_env(settings, "monitor").items():
        monkeypatch.setenv(key, value)
    child = MonitorServiceSettings()
    assert child.monitor.port == 9200
    assert child.kafka.sasl_password.get_secret_value() == "s3cret"
