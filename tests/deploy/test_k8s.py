"""Kubernetes manifests: core kinds against the Kubernetes schemas (kubernetes-validate),
KubeRay kinds against KubeRay's own CRD schemas, and the wiring between them."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.helpers import (
    K8S_DIR,
    KUBERAY_VERSION,
    crd_validator,
    k8s_resources,
    kuberay_crd_dir,
    pod_specs,
    schema_errors,
)

RESOURCES = k8s_resources()
IDS = [f"{path.name}:{doc['kind']}/{doc['metadata']['name']}" for path, doc in RESOURCES]
KUBERAY_KINDS = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}
KUBERNETES_VERSION = "1.30.0"


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in RESOURCES if doc["kind"] == kind]


@functools.cache
def kuberay_validator(kind: str) -> Any:
    crd_dir = kuberay_crd_dir()
    if crd_dir is None:
        pytest.skip(f"KubeRay {KUBERAY_VERSION} CRDs unavailable (needs `go` and the Go proxy)")
    return crd_validator(crd_dir / KUBERAY_KINDS[kind], kind)


@pytest.mark.parametrize("path, doc", RESOURCES, ids=IDS)
def test_manifest_validates_against_its_schema(path: Path, doc: dict[str, Any]) -> None:
    if doc["kind"] in KUBERAY_KINDS:
        assert doc["apiVersion"] == "ray.io/v1"
        errors = schema_errors(kuberay_validator(doc["kind"]), doc)
        assert not errors, "\n".join(errors[:10])
    else:
        import kubernetes_validate

        # strict: unknown fields are errors too (kubectl --validate=strict)
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_crd_check_rejects_a_misspelt_field() -> None:
    (cluster,) = by_kind("RayCluster")
    broken = yaml.safe_load(yaml.safe_dump(cluster))
    broken["spec"]["workerGroupSpecs"][0]["maxReplica"] = 3
    assert schema_errors(kuberay_validator("RayCluster"), broken)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    images = {image["name"] for image in kustomization["images"]}
    used = {c["image"] for _, doc in RESOURCES for _, pod in pod_specs(doc)
            for c in pod["containers"]}
    assert used <= images


def test_raycluster_has_a_head_and_a_gpu_worker_group() -> None:
    (cluster,) = by_kind("RayCluster")
    spec = cluster["spec"]
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in head["resources"].get("limits", {})
    (gpu,) = spec["workerGroupSpecs"]
    container = gpu["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] >= 1
    assert gpu["minReplicas"] <= gpu["replicas"] <= gpu["maxReplicas"]
    assert container["image"].endswith("-cuda")


def test_the_trainer_driver_is_a_deployment_kubernetes_restarts_on_a_node_of_the_cluster(
) -> None:
    """The driver joins the RayCluster as a 0-CPU node (a driver must run on a node of its
    cluster), then runs the trainer; one replica, never two at once. The integration test
    test_ray_cluster.py -k lost_driver runs this very command."""
    (cluster,) = by_kind("RayCluster")
    assert by_kind("RayJob") == []
    (driver,) = [d for d in by_kind("Deployment") if d["metadata"]["name"] == "trainer"]
    assert driver["spec"]["replicas"] == 1
    assert driver["spec"]["strategy"] == {"type": "Recreate"}
    pod = driver["spec"]["template"]["spec"]
    assert pod.get("restartPolicy", "Always") == "Always"
    (container,) = pod["containers"]
    (command,) = container["args"]
    assert container["command"] == ["sh", "-c"]
    assert command.startswith('ray start --address="$RAY_ADDRESS" --num-cpus=0 --num-gpus=0')
    assert command.endswith("&& exec gumbel-stream trainer")
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["RAY_ADDRESS"] == f"{cluster['metadata']['name']}-head-svc:6379"
    head = next(pod_specs(cluster))[1]["containers"][0]
    (head_port,) = [p["containerPort"] for p in head["ports"] if p["name"] == "gcs-server"]
    assert env["RAY_ADDRESS"].endswith(f":{head_port}")
    sources = {s["configMapRef"]["name"] for s in container["envFrom"]}
    assert sources == {"gumbel-kafka", "gumbel-trainer"}


def test_trainer_actors_fit_on_the_gpu_workers() -> None:
    (trainer,) = [d for d in by_kind("ConfigMap") if d["metadata"]["name"] == "gumbel-trainer"]
    (kafka,) = [d for d in by_kind("ConfigMap") if d["metadata"]["name"] == "gumbel-kafka"]
    (cluster,) = by_kind("RayCluster")
    (gpu,) = cluster["spec"]["workerGroupSpecs"]
    gpus = gpu["replicas"] * gpu["template"]["spec"]["containers"][0]["resources"]["limits"][
        "nvidia.com/gpu"]
    actors = int(trainer["data"]["GUMBEL_TRAINER__NUM_ACTORS"])
    assert actors * float(trainer["data"]["GUMBEL_TRAINER__GPUS_PER_ACTOR"]) <= gpus
    assert actors <= int(kafka["data"]["GUMBEL_KAFKA__NUM_PARTITIONS"])


def test_checkpoints_are_on_the_shared_volume_everywhere_the_actors_run() -> None:
    (claim,) = by_kind("PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    (trainer,) = [d for d in by_kind("ConfigMap") if d["metadata"]["name"] == "gumbel-trainer"]
    checkpoint_dir = trainer["data"]["GUMBEL_TRAINER__CHECKPOINT_DIR"]
    (cluster,) = by_kind("RayCluster")
    for group, pod in pod_specs(cluster):
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
        volume = volumes[mounts[checkpoint_dir]]
        assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"], group


@pytest.mark.parametrize("name", ["producer", "monitor"])
def test_services_select_their_deployments(name: str) -> None:
    (deployment,) = [d for d in by_kind("Deployment") if d["metadata"]["name"] == name]
    (service,) = [d for d in by_kind("Service") if d["metadata"]["name"] == name]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    port_names = {p["name"] for c in deployment["spec"]["template"]["spec"]["containers"]
                  for p in c["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names


def _image_uid() -> int:
    import re

    dockerfile = (K8S_DIR.parent / "Dockerfile").read_text()
    return int(re.search(r"useradd --uid (\d+)", dockerfile).group(1))  # type: ignore[union-attr]


POD_IDS = [f"{doc['metadata']['name']}/{group}" for _, doc in RESOURCES
           for group, _ in pod_specs(doc)]


@pytest.mark.parametrize("pod", [pod for _, doc in RESOURCES for _, pod in pod_specs(doc)],
                         ids=POD_IDS)
def test_every_container_runs_under_the_restricted_pod_security_standard(
        pod: dict[str, Any]) -> None:
    """Non-root as the image's own user, no privilege escalation, no capabilities, seccomp."""
    pod_context = pod.get("securityContext", {})
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        context = {**pod_context, **container.get("securityContext", {})}
        assert context.get("runAsNonRoot") is True, container["name"]
        assert context.get("runAsUser") == _image_uid(), container["name"]
        assert context.get("seccompProfile") == {"type": "RuntimeDefault"}, container["name"]
        assert context.get("allowPrivilegeEscalation") is False, container["name"]
        assert context.get("capabilities", {}).get("drop") == ["ALL"], container["name"]
        assert not context.get("privileged", False), container["name"]


def test_there_are_pods_to_check() -> None:
    assert set(POD_IDS) >= {"producer/producer", "monitor/monitor", "trainer/trainer",
                            "gumbel-ray/head", "gumbel-ray/gpu"}


def test_the_self_run_prometheus_may_list_and_watch_the_pods_it_discovers() -> None:
    """Pod discovery (prometheus-config.yaml) without a Role is refused (403) by the API
    server: the shipped service account is bound to list and watch pods in the namespace
    the scrape config discovers."""
    config = yaml.safe_load(by_kind("ConfigMap")[[c["metadata"]["name"] for c in
                                                 by_kind("ConfigMap")].index(
        "gumbel-prometheus")]["data"]["prometheus.yml"])
    (sd,) = config["scrape_configs"][0]["kubernetes_sd_configs"]
    namespaces = sd["namespaces"]["names"]
    (account,) = by_kind("ServiceAccount")
    (binding,) = by_kind("RoleBinding")
    (role,) = [r for r in by_kind("Role") if r["metadata"]["name"] == binding["roleRef"]["name"]]
    assert {"kind": "ServiceAccount", "name": account["metadata"]["name"],
            "namespace": namespaces[0]} in binding["subjects"]
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    assert namespaces == [kustomization["namespace"]] and sd["role"] == "pod"
    assert any(rule["resources"] == ["pods"] and {"list", "watch"} <= set(rule["verbs"])
               for rule in role["rules"])


def test_no_actor_lands_on_the_head_and_the_workers_hold_every_actor() -> None:
    """The head offers Ray no CPU (its GCS must not share a node with a learner that may
    exhaust memory), so the ingest actors and the learner must fit on the workers' CPUs."""
    (cluster,) = by_kind("RayCluster")
    assert cluster["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    (trainer,) = [d for d in by_kind("ConfigMap") if d["metadata"]["name"] == "gumbel-trainer"]
    actors = int(trainer["data"]["GUMBEL_TRAINER__NUM_ACTORS"]) + 1  # and the learner
    cpus_per_actor = float(trainer["data"].get("GUMBEL_TRAINER__CPUS_PER_ACTOR", 1.0))
    worker_cpus = sum(group["replicas"] * float(
        group["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"])
        for group in cluster["spec"]["workerGroupSpecs"])
    assert actors * cpus_per_actor <= worker_cpus


def test_ray_pods_request_what_they_are_limited_to() -> None:
    (cluster,) = by_kind("RayCluster")
    for group, pod in pod_specs(cluster):
        for container in pod["containers"]:
            resources = container["resources"]
            assert resources["requests"] == resources["limits"], f"{group}/{container['name']}"


def test_the_driver_has_probes_and_a_grace_period_for_its_stop_path() -> None:
    (driver,) = [d for d in by_kind("Deployment") if d["metadata"]["name"] == "trainer"]
    pod = driver["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= 60
    (container,) = pod["containers"]
    compose = yaml.safe_load((K8S_DIR.parent.parent / "docker-compose.yml").read_text())
    check = compose["services"]["trainer"]["healthcheck"]["test"][1:]  # after "CMD"
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["exec"]["command"] == check, probe
