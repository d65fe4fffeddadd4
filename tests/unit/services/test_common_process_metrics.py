"""register_process_collectors: the standard process, GC and platform metrics on a registry."""

from __future__ import annotations

import sys

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from services.common.process_metrics import register_process_collectors


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process_* reads /proc")
def test_a_fresh_registry_gets_process_gc_and_platform_metrics() -> None:
    registry = CollectorRegistry()
    register_process_collectors(registry)
    assert registry.get_sample_value("process_resident_memory_bytes") > 0
    assert registry.get_sample_value("process_start_time_seconds") > 0
    assert registry.get_sample_value("python_gc_collections_total", {"generation": "0"}) >= 0
    assert "python_info{" in generate_latest(registry).decode()


def test_a_registry_that_has_them_is_left_as_it_is() -> None:
    registry = CollectorRegistry()
    register_process_collectors(registry)
    before = generate_latest(registry).decode().count("# TYPE")
    register_process_collectors(registry)  # a second service on one registry, or REGISTRY
    register_process_collectors(REGISTRY)
    assert generate_latest(registry).decode().count("# TYPE") == before
