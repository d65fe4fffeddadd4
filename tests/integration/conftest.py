"""Fixtures of the integration tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, namespace=f"test-{uuid.uuid4().hex[:6]}",
                 logging_level="WARNING")
    yield
    if started:
        ray.shutdown()
