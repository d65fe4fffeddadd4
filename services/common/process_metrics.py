"""The standard process, GC and platform collectors, on a registry a service serves."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

__all__ = ["register_process_collectors"]


def register_process_collectors(registry: CollectorRegistry) -> None:
    """Add ``process_*`` (memory, CPU, open files), ``python_gc_*`` and ``python_info``.

    What every Prometheus client exports by default: the fresh registries our services
    serve lack them. One whose metrics ``registry`` already serves (the global ``REGISTRY``
    has all three) is not added again: a registry does not check collectors without
    ``describe``, and a name twice on a page fails the whole scrape.
    """
    served = {metric.name for metric in registry.collect()}
    for make in (ProcessCollector, GCCollector, PlatformCollector):
        collector = make(registry=CollectorRegistry())  # GCCollector insists on one
        if served.isdisjoint(metric.name for metric in collector.collect()):
            registry.register(collector)
