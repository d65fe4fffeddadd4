"""deploy/Dockerfile: what it copies exists, what it installs is declared, its ENV are settings.

There is no Docker engine here to build it; these are the checks that need none.
"""

from __future__ import annotations

import re

import pytest

from tests.deploy.helpers import DEPLOY, K8S_DIR, REPO, unknown_setting_keys

DOCKERFILE = (DEPLOY / "Dockerfile").read_text()
PYPROJECT = (REPO / "pyproject.toml").read_text()


def _instructions(name: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in joined.splitlines()
            if line.split(None, 1)[:1] == [name]]


def test_copied_sources_exist_and_are_not_dockerignored() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    for copy in _instructions("COPY"):
        *sources, _ = copy.split()
        for source in sources:
            assert (REPO / source).exists(), source
            assert f"!{source}" in ignore or f"!{source}/**" in ignore, source


def test_installs_the_services_extra_after_torch_from_the_chosen_index() -> None:
    runs = _instructions("RUN")
    torch = next(i for i, r in enumerate(runs) if "--index-url" in r)
    assert '"${TORCH_INDEX_URL}"' in runs[torch]
    services = next(i for i, r in enumerate(runs) if r.endswith('".[services]"'))
    assert "pip install --constraint deploy/constraints.txt " in runs[services]
    assert torch < services
    assert re.search(r"^services = \[", PYPROJECT, re.M)  # [project.optional-dependencies]


def test_entrypoint_is_the_cli_and_it_is_a_console_script() -> None:
    assert _instructions("ENTRYPOINT") == ['["gumbel-stream"]']
    assert 'gumbel-stream = "services.cli:main"' in PYPROJECT  # [project.scripts]


def test_env_keys_are_settings() -> None:
    settings = pytest.importorskip("services.common.settings")
    env = {}
    for line in _instructions("ENV"):
        for pair in line.split():
            key, _, value = pair.partition("=")
            env[key] = value
    gumbel = {k: v for k, v in env.items() if k.startswith("GUMBEL_")}
    assert gumbel, "the image sets the checkpoint directory"
    assert unknown_setting_keys(settings.UpSettings, gumbel) == []


def _pins() -> dict[str, str]:
    from packaging.utils import canonicalize_name

    pins = {}
    for line in (DEPLOY / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt pins exact versions, not {line!r}"
            pins[canonicalize_name(name)] = version
    return pins


def test_the_ray_in_the_image_is_the_rayclusters_ray_version() -> None:
    """KubeRay starts the image's Ray under rayVersion: they must agree, and pyproject allow it."""
    tomllib = pytest.importorskip("tomllib")

    import yaml
    from packaging.requirements import Requirement

    cluster = yaml.safe_load((K8S_DIR / "raycluster.yaml").read_text())
    ray = _pins()["ray"]
    assert ray == cluster["spec"]["rayVersion"]
    services = tomllib.loads(PYPROJECT)["project"]["optional-dependencies"]["services"]
    (declared,) = [Requirement(r) for r in services if Requirement(r).name == "ray"]
    assert declared.specifier.contains(ray), f"pyproject's {declared} excludes ray {ray}"


def test_constraints_pin_every_declared_service_dependency_within_its_range() -> None:
    tomllib = pytest.importorskip("tomllib")

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = _pins()
    services = tomllib.loads(PYPROJECT)["project"]["optional-dependencies"]["services"]
    for requirement in map(Requirement, services):
        pinned = pins.get(canonicalize_name(requirement.name))
        assert pinned is not None, f"{requirement.name} is not pinned in deploy/constraints.txt"
        assert requirement.specifier.contains(pinned), f"{requirement} excludes {pinned}"


def test_the_image_user_is_the_pods_run_as_user() -> None:
    (useradd,) = [r for r in _instructions("RUN") if "useradd" in r]
    assert "--uid 10001" in useradd and "--gid 10001" in useradd
    assert _instructions("USER") == ["gumbel"]
