"""What ``gumbel-stream up`` runs, with which settings: the broker it uses, the ports it
fixes before the children bind them, and each child's settings (one serialised object)."""

from __future__ import annotations

from typing import Literal

from pydantic import HttpUrl

from services.brokers import free_port
from services.common.settings import (
    MonitorServiceSettings,
    ProducerServiceSettings,
    TrainerServiceSettings,
    UpSettings,
)
from services.common.settings.sources import handoff

__all__ = ["broker_of", "page_address", "with_ports", "with_producer_truth", "service_env",
           "CHILDREN"]

# Each child command, with the settings class it reads back; started in this order.
CHILDREN = {"monitor": MonitorServiceSettings, "trainer": TrainerServiceSettings,
            "producer": ProducerServiceSettings}


def broker_of(settings: UpSettings) -> Literal["embedded", "apache-kafka", "external"]:
    """The broker ``up`` uses: the one given (``--bootstrap-servers`` or ``--broker
    external``), else the one it starts (``--broker``, embedded Tansu by default)."""
    if "bootstrap_servers" in settings.kafka.model_fields_set:
        return "external"
    return settings.broker


def service_env(settings: UpSettings, service: str) -> dict[str, str]:
    """The environment that gives ``service`` the same settings as ``up``."""
    return handoff(settings, CHILDREN[service])


def _local_address(host: str, port: int) -> str:
    """``host:port`` as this machine reaches it: a wildcard bind is reached on loopback."""
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def page_address(settings: UpSettings) -> str:
    """The monitor's live page, as a browser on this machine opens it."""
    return f"http://{_local_address(settings.monitor.host, settings.monitor.port)}/"


def _port_for(host: str) -> int:
    return free_port("0.0.0.0" if ":" in host else host)  # free_port probes IPv4


def with_ports(settings: UpSettings) -> UpSettings:
    """Port 0 (any free port) made a real one here, before the children bind it: the page
    address ``up`` prints, its progress line and the monitor's truth URL need the number."""
    if settings.monitor.port == 0:
        monitor = settings.monitor.model_copy(update={"port": _port_for(settings.monitor.host)})
        settings = settings.model_copy(update={"monitor": monitor})
    if settings.producer.metrics_port == 0:
        port = _port_for(settings.producer.metrics_host)
        producer = settings.producer.model_copy(update={"metrics_port": port})
        settings = settings.model_copy(update={"producer": producer})
    return settings


def with_producer_truth(settings: UpSettings) -> UpSettings:
    """Point the monitor at the producer's ``/metrics``, unless set: the page shows the truth,
    for the model this producer feeds (``up``'s trainer's) only."""
    if settings.monitor.producer_metrics_url is not None:
        return settings
    producer = settings.producer
    url = f"http://{_local_address(producer.metrics_host, producer.metrics_port)}/metrics"
    monitor = settings.monitor.model_copy(update={
        "producer_metrics_url": HttpUrl(url),
        "truth_model_id": settings.monitor.truth_model_id or settings.trainer.model_id})
    return settings.model_copy(update={"monitor": monitor})


def on_broker(settings: UpSettings, bootstrap_servers: str, checkpoint_dir: object) -> UpSettings:
    """The settings on a broker ``up`` started: its address, and (unless given) checkpoints
    that live and die with the run, as the broker's data does."""
    kafka = settings.kafka.model_copy(update={"bootstrap_servers": bootstrap_servers})
    settings = settings.model_copy(update={"kafka": kafka})
    if "checkpoint_dir" not in settings.trainer.model_fields_set:
        trainer = settings.trainer.model_copy(update={"checkpoint_dir": checkpoint_dir})
        settings = settings.model_copy(update={"trainer": trainer})
    return settings
