"""The wheel: a typed library (py.typed), the declared license shipped, torch its only
requirement without extras, and a setuptools that understands the SPDX license field."""

from __future__ import annotations

import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from tests.deploy.wheel import build_wheel

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
def test_the_build_asks_for_a_setuptools_that_reads_the_license_field() -> None:
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    requires = PYPROJECT["build-system"]["requires"]
    assert "setuptools>=77" in requires


def test_the_license_file_is_the_declared_license() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text


def test_gumbel_core_is_marked_typed() -> None:
    assert (ROOT / "gumbel_core" / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["gumbel_core"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_ships_py_typed_the_license_and_the_run_time_files(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "gumbel_core/py.typed" in names
    # What the commands read at run time: the broker's files, the monitor's live page.
    assert {"services/apache_kafka/pom.xml", "services/apache_kafka/fetch-jars.sh",
            "services/apache_kafka/log4j2.yaml", "services/monitor/static/index.html"} <= set(names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def test_without_extras_the_wheel_requires_torch_alone(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        metadata_name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(metadata_name).decode())
    assert metadata["License-Expression"] == "Apache-2.0"
    unconditional = [r for r in metadata.get_all("Requires-Dist") if "extra ==" not in r]
    assert [r.split(">")[0].split("=")[0].strip() for r in unconditional] == ["torch"]
    assert {"services", "embedded", "bench"} <= set(metadata.get_all("Provides-Extra"))


def test_the_torch_floor_has_fused_adam_on_the_cpu() -> None:
    """gan.py builds ``Adam(..., fused=True)`` for CPU learners too, which torch has from 2.4."""
    (requirement,) = PYPROJECT["project"]["dependencies"]
    name, floor = requirement.split(">=")
    assert name == "torch"
    assert tuple(int(part) for part in floor.split(".")[:2]) >= (2, 4)
