"""Every ``>>>`` example in the services' docstrings runs (as gumbel_core's do)."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parents[3] / "services"

# Found, not listed: a module that gains an example is tested without editing this file.
MODULES = sorted(
    ".".join(path.relative_to(SERVICES.parent).with_suffix("").parts)
    for path in SERVICES.rglob("*.py")
    if ">>> " in path.read_text()
)


def test_the_examples_are_found() -> None:
    assert {"services.producer.stream", "services.trainer.histogram"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
