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
        # "local": a Ray of our own, never a cluster some other run started on this machine.
        # 4 logical CPUs: the learner and up to 3 ingest actors ask for one each.
        ray.init(address="local", num_cpus=4, include_dashboard=False,
                 namespace=f"test-{uuid.uuid4().hex[:6]}", logging_level="WARNING")
    yield
    if started:
        ray.shutdown()
