"""Every GUMBEL_ variable that Compose and the Kubernetes manifests set is a real setting.

Parsed with the services' own settings classes (services.common.settings), so a renamed or
misspelt setting, or a value the service would refuse at start, fails here.
"""

from __future__ import annotations

import pytest

from tests.deploy.helpers import (
    NON_SETTINGS_ENV,
    SETTINGS_CLASS_OF,
    container_environment,
    k8s_resources,
    load_compose,
    pod_specs,
    service_environment,
    unknown_setting_keys,
)

settings_module = pytest.importorskip("services.common.settings")


def _check(service: str, env: dict[str, str]) -> object:
    settings_class = getattr(settings_module, SETTINGS_CLASS_OF[service])
    env = {k: v for k, v in env.items() if k not in NON_SETTINGS_ENV.get(service, set())}
    assert unknown_setting_keys(settings_class, env) == []
    from tests.deploy.helpers import parse_settings

    return parse_settings(settings_class, env)


@pytest.mark.parametrize("service", sorted(SETTINGS_CLASS_OF))
def test_compose_environment_parses_with_the_service_settings(service: str) -> None:
    env = service_environment(load_compose()["services"][service])
    settings = _check(service, env)
    assert settings.kafka.bootstrap_servers == "kafka:9092"


def test_compose_sets_what_the_services_must_agree_on() -> None:
    services = load_compose()["services"]
    producer = _check("producer", service_environment(services["producer"]))
    trainer = _check("trainer", service_environment(services["trainer"]))
    gpu = _check("trainer-gpu", service_environment(services["trainer-gpu"]))
    monitor = _check("monitor", service_environment(services["monitor"]))
    assert trainer.trainer.num_categories == len(producer.producer.probabilities)
    assert trainer.trainer.num_actors <= trainer.kafka.num_partitions
    assert producer.kafka.num_partitions == trainer.kafka.num_partitions
    assert trainer.trainer.gpus_per_actor == 0 and gpu.trainer.gpus_per_actor > 0
    assert producer.producer.metrics_port == 9107 and monitor.monitor.port == 9108
    assert producer.producer.metrics_host == monitor.monitor.host == "0.0.0.0"


def test_unknown_keys_are_caught() -> None:
    cls = settings_module.TrainerServiceSettings
    assert unknown_setting_keys(cls, {"GUMBEL_TRAINER__NUM_ACTORS": "2"}) == []
    assert unknown_setting_keys(cls, {"GUMBEL_TRAINERS__NUM_ACTORS": "2"}) == [
        "GUMBEL_TRAINERS__NUM_ACTORS"
    ]
    assert unknown_setting_keys(cls, {"GUMBEL_PRODUCER__RATE": "2"}) == ["GUMBEL_PRODUCER__RATE"]
    assert unknown_setting_keys(cls, {"GUMBEL_KAFKA__BOOTSTRAP": "x"}) == [
        "GUMBEL_KAFKA__BOOTSTRAP"
    ]


def _k8s_workloads() -> list[tuple[str, str, dict[str, str]]]:
    resources = [doc for _, doc in k8s_resources()]
    config_maps = {d["metadata"]["name"]: d.get("data", {}) for d in resources
                   if d["kind"] == "ConfigMap"}
    out = []
    for doc in resources:
        component = doc["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        for group, pod in pod_specs(doc):
            for container in pod["containers"]:
                env = container_environment(container, config_maps)
                out.append((f"{doc['kind']}/{doc['metadata']['name']}/{group}", component, env))
    return out


def test_k8s_workloads_are_found() -> None:
    components = sorted({c for _, c, _ in _k8s_workloads()})
    assert components == ["monitor", "producer", "trainer"]


@pytest.mark.parametrize("where, component, env",
                         _k8s_workloads(), ids=[w for w, _, _ in _k8s_workloads()])
def test_k8s_environment_parses_with_the_service_settings(
    where: str, component: str, env: dict[str, str]
) -> None:
    settings = _check(component, env)
    assert settings.kafka.bootstrap_servers  # from the gumbel-kafka ConfigMap
    assert "GUMBEL_KAFKA__BOOTSTRAP_SERVERS" in env
