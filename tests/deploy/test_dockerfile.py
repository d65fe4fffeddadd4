"""deploy/Dockerfile: what it copies exists, what it installs is declared, its ENV are settings.

There is no Docker engine here to build it; these are the checks that need none.
"""

from __future__ import annotations

import re

import pytest

from tests.deploy.helpers import DEPLOY, REPO, unknown_setting_keys

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
    services = next(i for i, r in enumerate(runs) if 'pip install ".[services]"' in r)
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
