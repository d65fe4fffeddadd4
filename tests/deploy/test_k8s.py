"""Kubernetes manifests: core kinds against the Kubernetes schemas (kubernetes-validate),
KubeRay kinds against KubeRay's own CRD schemas, and the wiring between them."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
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
    kustomize_build,
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


def validate(doc: dict[str, Any]) -> None:
    """``doc`` against its schema: KubeRay's CRD, or Kubernetes' own, strict."""
    if doc["kind"] in KUBERAY_KINDS:
        assert doc["apiVersion"] == "ray.io/v1"
        errors = schema_errors(kuberay_validator(doc["kind"]), doc)
        assert not errors, "\n".join(errors[:10])
    else:
        import kubernetes_validate

        # strict: unknown fields are errors too (kubectl --validate=strict)
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("path, doc", RESOURCES, ids=IDS)
def test_manifest_validates_against_its_schema(path: Path, doc: dict[str, Any]) -> None:
    validate(doc)


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


def _groups(cluster: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {group["groupName"]: group for group in cluster["spec"]["workerGroupSpecs"]}


def test_raycluster_has_a_head_a_gpu_learner_group_and_a_cpu_ingest_group() -> None:
    (cluster,) = by_kind("RayCluster")
    spec = cluster["spec"]
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in head["resources"].get("limits", {})
    groups = _groups(cluster)
    assert set(groups) == {"learner", "ingest"}
    learner = groups["learner"]["template"]["spec"]["containers"][0]
    assert learner["resources"]["limits"]["nvidia.com/gpu"] >= 1
    assert learner["image"].endswith("-cuda")
    # one learner per model: its group is one pod, which the ReadWriteOnce volume follows
    assert [groups["learner"][k] for k in ("minReplicas", "replicas", "maxReplicas")] == [1] * 3
    ingest = groups["ingest"]
    container = ingest["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]  # ingest takes no GPU
    assert not container["image"].endswith("-cuda")
    assert ingest["minReplicas"] <= ingest["replicas"] <= ingest["maxReplicas"]


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


def test_the_learner_fits_on_its_group_and_the_ingest_actors_on_the_partitions() -> None:
    (trainer,) = [d for d in by_kind("ConfigMap") if d["metadata"]["name"] == "gumbel-trainer"]
    (kafka,) = [d for d in by_kind("ConfigMap") if d["metadata"]["name"] == "gumbel-kafka"]
    (cluster,) = by_kind("RayCluster")
    learner = _groups(cluster)["learner"]
    gpus = learner["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
    assert float(trainer["data"]["GUMBEL_TRAINER__GPUS_PER_ACTOR"]) <= gpus
    actors = int(trainer["data"]["GUMBEL_TRAINER__NUM_ACTORS"])
    assert actors <= int(kafka["data"]["GUMBEL_KAFKA__NUM_PARTITIONS"])


def _claim_mounts(docs: list[dict[str, Any]], claim: str) -> dict[str, set[str]]:
    """Pod group -> the paths where its containers (init containers too) mount ``claim``."""
    found: dict[str, set[str]] = {}
    for doc in docs:
        for group, pod in pod_specs(doc):
            names = {v["name"] for v in pod.get("volumes", [])
                     if v.get("persistentVolumeClaim", {}).get("claimName") == claim}
            for container in [*pod.get("initContainers", []), *pod["containers"]]:
                for mount in container.get("volumeMounts", []):
                    if mount["name"] in names:
                        found.setdefault(f"{doc['metadata']['name']}/{group}", set()).add(
                            mount["mountPath"])
    return found


def test_the_checkpoint_volume_is_read_write_once_of_the_default_class_on_the_learner_only(
) -> None:
    """A default class (EBS, Persistent Disk, Azure Disk) offers ReadWriteOnce only: a
    ReadWriteMany claim stays Pending there, with every pod that mounts it. The learner is the
    only writer, and its group, one pod, the only pod that mounts the volume: not the head,
    not the ingest workers, not the driver (which would pin itself to the learner's node)."""
    (claim,) = by_kind("PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert "storageClassName" not in claim["spec"]  # the cluster's default class
    (trainer,) = [d for d in by_kind("ConfigMap") if d["metadata"]["name"] == "gumbel-trainer"]
    checkpoint_dir = trainer["data"]["GUMBEL_TRAINER__CHECKPOINT_DIR"]
    docs = [doc for _, doc in RESOURCES]
    assert _claim_mounts(docs, claim["metadata"]["name"]) == {
        "gumbel-ray/learner": {checkpoint_dir}}


def test_only_the_learner_group_offers_the_resource_the_learner_asks_for() -> None:
    """The learner's Ray resource places it (and the driver's checkpoint check) on the pod
    with the volume; the ingest actors ask for none, so they run anywhere."""
    from services.common.settings import TrainerServiceSettings
    from tests.deploy.helpers import parse_settings

    (trainer,) = [d for d in by_kind("ConfigMap") if d["metadata"]["name"] == "gumbel-trainer"]
    settings = parse_settings(TrainerServiceSettings, trainer["data"])
    wanted = settings.trainer.learner_resources
    assert wanted
    (cluster,) = by_kind("RayCluster")
    offered = {}
    for group in [cluster["spec"]["headGroupSpec"], *cluster["spec"]["workerGroupSpecs"]]:
        text = group["rayStartParams"].get("resources")
        if text is not None:  # KubeRay's form: a JSON object in a quoted string
            offered[group.get("groupName", "head")] = json.loads(json.loads(text))
    assert offered == {"learner": wanted}


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
                            "gumbel-ray/head", "gumbel-ray/learner", "gumbel-ray/ingest"}


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
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            resources = container["resources"]
            assert resources["requests"] == resources["limits"], f"{group}/{container['name']}"


def _fails(command: list[str], tmp_path: Path, replace: dict[str, str]) -> bool:
    """Whether a probe's command fails, with its paths moved under tmp_path."""
    script = command[2]
    for old, new in replace.items():
        script = script.replace(old, new)
    import sys

    return subprocess.run([sys.executable, "-c", script], timeout=30).returncode != 0


def test_the_driver_has_probes_and_a_grace_period_for_its_stop_path(tmp_path: Path) -> None:
    """Without the checkpoint volume, the probes read the health file the driver keeps at
    the learner's last checkpoint, as old as Compose's check of the checkpoints allows."""
    import re
    import time

    (driver,) = [d for d in by_kind("Deployment") if d["metadata"]["name"] == "trainer"]
    pod = driver["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= 60
    (container,) = pod["containers"]
    assert "volumes" not in pod and "volumeMounts" not in container
    health = {e["name"]: e["value"] for e in container["env"]}["GUMBEL_TRAINER__HEALTH_FILE"]
    compose = yaml.safe_load((K8S_DIR.parent.parent / "docker-compose.yml").read_text())
    check = compose["services"]["trainer"]["healthcheck"]["test"][1:]  # after "CMD"
    (limit,) = re.findall(r"> (\d+)\)", check[2])
    command = container["livenessProbe"]["exec"]["command"]
    assert container["readinessProbe"]["exec"]["command"] == command
    assert command[:2] == ["python", "-c"] and f"> {limit})" in command[2]
    file = tmp_path / "health"
    assert _fails(command, tmp_path, {health: str(file)})  # no checkpoint yet
    file.touch()
    assert not _fails(command, tmp_path, {health: str(file)})
    old = time.time() - int(limit) - 5
    os.utime(file, (old, old))
    assert _fails(command, tmp_path, {health: str(file)})


def test_the_storage_class_is_one_parameter_that_lands_on_the_claim(tmp_path: Path) -> None:
    component = yaml.safe_load(
        (K8S_DIR / "components" / "checkpoint-storage-class" / "kustomization.yaml").read_text())
    (patch,) = component["patches"]
    (operation,) = yaml.safe_load(patch["patch"])
    docs = kustomize_build(tmp_path, ["checkpoint-storage-class"])
    (claim,) = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    assert claim["spec"]["storageClassName"] == operation["value"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    others = [d for d in docs if d["kind"] != "PersistentVolumeClaim"]
    assert "storageClassName" not in json.dumps(others)


@pytest.mark.parametrize("components", [[], ["checkpoints-rwx", "checkpoint-storage-class"]],
                         ids=["default", "read-write-many"])
def test_the_built_tree_validates_and_only_the_learner_mounts_the_volume(
        tmp_path: Path, components: list[str]) -> None:
    """`kubectl kustomize` of the default tree and of the ReadWriteMany choice, every
    document against its schema; the learner group alone mounts the claim, after an init
    step that checks the runtime uid can write in it (the fsGroup caveat)."""
    docs = kustomize_build(tmp_path, components)
    for doc in docs:
        validate(doc)
    (claim,) = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    rwx = "checkpoints-rwx" in components
    assert claim["spec"]["accessModes"] == ["ReadWriteMany" if rwx else "ReadWriteOnce"]
    assert ("storageClassName" in claim["spec"]) == rwx
    mounts = _claim_mounts(docs, claim["metadata"]["name"])
    assert list(mounts) == ["gumbel-ray/learner"]
    (cluster,) = [d for d in docs if d["kind"] == "RayCluster"]
    pod = _groups(cluster)["learner"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["name"] == "check-checkpoints"
    assert {m["mountPath"] for m in init["volumeMounts"]} == mounts["gumbel-ray/learner"]
    assert init["terminationMessagePolicy"] == "FallbackToLogsOnError"  # kubectl describe


def _init_script(directory: Path) -> str:
    (cluster,) = by_kind("RayCluster")
    (init,) = _groups(cluster)["learner"]["template"]["spec"]["initContainers"]
    (mount,) = init["volumeMounts"]
    assert init["command"] == ["python", "-c"]
    return init["args"][0].replace(mount["mountPath"], str(directory))


def test_the_init_step_names_the_fix_for_a_root_owned_volume() -> None:
    """As the image's uid on a root-owned directory (an export whose driver ignored fsGroup):
    exit 1 with one line naming the uid, the owner and the fix; a writable one passes."""
    import tempfile

    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to run the check as another uid")
    uid = _image_uid()
    # not under pytest's tmp_path: its parents are root's alone (0700), a pod's are not
    with tempfile.TemporaryDirectory() as top:
        Path(top).chmod(0o755)
        exported = Path(top) / "export"
        exported.mkdir(mode=0o755)
        _check_as(setpriv, uid, exported)


def _check_as(setpriv: str, uid: int, exported: Path) -> None:
    import sys

    as_image = [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", sys.executable,
                "-c"]
    result = subprocess.run([*as_image, _init_script(exported)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert f"uid {uid} " in line and "owned by 0:0, mode 755" in line
    assert "fsGroup" in line and "10001:10001" in line and "docs/deploy.md" in line
    os.chown(exported, uid, uid)
    result = subprocess.run([*as_image, _init_script(exported)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert list(exported.iterdir()) == []  # the write test leaves nothing
