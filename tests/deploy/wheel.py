"""Build the project's wheel from a copy of the checkout, as `pip install .` would."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# PEP 639: `license = "<SPDX expression>"` and `license-files` need setuptools 77.
SETUPTOOLS_FOR_SPDX = (77,)


def _major_minor(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:2] if part.isdigit())


def build_wheel(work: Path) -> Path:
    """The wheel built in ``work`` (skips where setuptools is too old to build it)."""
    if _major_minor(version("setuptools")) < SETUPTOOLS_FOR_SPDX:
        pytest.skip(f"setuptools {version('setuptools')} here; the build needs >= 77")
    src, out = work / "src", work / "dist"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    for package in ("gumbel_core", "services"):
        shutil.copytree(ROOT / package, src / package, ignore=ignore)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(out), str(src)],
        check=True, capture_output=True, timeout=300,
    )
    (built,) = out.glob("gumbel_stream-*.whl")
    return built
