"""Settings of every service, validated at start (pydantic-settings).

Every option is an environment variable with the prefix ``GUMBEL_``, nested with ``__``
(``GUMBEL_KAFKA__BOOTSTRAP_SERVERS``, ``GUMBEL_TRAINER__NUM_ACTORS``), and the command line's
flags override them. One ``BaseSettings`` per service; the sections are shared models.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = [
    "ESTIMATORS",
    "DriftStep",
    "KafkaSettings",
    "ProducerSettings",
    "TrainerSettings",
    "MonitorSettings",
    "ProducerServiceSettings",
    "TrainerServiceSettings",
    "MonitorServiceSettings",
    "UpSettings",
    "parse_probabilities",
]

ESTIMATORS = ("soft", "st", "reinmax", "rao", "gst")


def parse_probabilities(value: Any) -> list[float]:
    """``"0,0,0.1,0.3,0.6"`` or a sequence of numbers → a list of floats that sums to 1."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.strip().strip("[]").split(",") if p.strip()]
        try:
            probs = [float(p) for p in parts]
        except ValueError as exc:
            raise ValueError(f"expected comma-separated numbers, got {value!r}") from exc
    elif isinstance(value, (list, tuple)):
        probs = [float(p) for p in value]
    else:
        raise ValueError(f"expected comma-separated numbers, got {value!r}")
    if len(probs) < 2:
        raise ValueError("needs at least 2 categories")
    if any(not math.isfinite(p) or p < 0 for p in probs):
        raise ValueError("probabilities must be finite and >= 0")
    total = sum(probs)
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"probabilities must sum to 1 (they sum to {total:g})")
    return [p / total for p in probs]


Probabilities = Annotated[list[float], NoDecode, BeforeValidator(parse_probabilities)]


class DriftStep(BaseModel):
    """From ``at`` (records produced, or seconds since start) on, emit ``probabilities``."""

    model_config = ConfigDict(frozen=True)

    at: float = Field(ge=0)
    unit: Literal["records", "seconds"] = "records"
    probabilities: list[float]


_DRIFT_STEP = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s?)\s*=\s*(.+)$")


def parse_drift(value: Any) -> list[DriftStep]:
    """``"100000=0.2,0.2,0.2,0.2,0.2;30s=..."``: after N records (or N seconds) switch."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [v if isinstance(v, DriftStep) else DriftStep.model_validate(v) for v in value]
    if not isinstance(value, str):
        raise ValueError(f"expected 'AT=p0,p1,...;AT=...', got {value!r}")
    steps = []
    for part in value.split(";"):
        if not part.strip():
            continue
        match = _DRIFT_STEP.match(part)
        if match is None:
            raise ValueError(
                f"drift step {part.strip()!r} is not AT=p0,p1,... (AT in records, or seconds "
                "with an 's' suffix)"
            )
        at, seconds, probs = match.groups()
        steps.append(
            DriftStep(
                at=float(at),
                unit="seconds" if seconds else "records",
                probabilities=parse_probabilities(probs),
            )
        )
    return steps


DriftSchedule = Annotated[list[DriftStep], NoDecode, BeforeValidator(parse_drift)]


def parse_bootstrap_servers(value: Any) -> str:
    """``host:port[,host:port...]`` with ports in 1..65535 (IPv6 hosts in brackets)."""
    if not isinstance(value, str):
        raise ValueError(f"expected host:port[,host:port...], got {value!r}")
    servers = [s.strip() for s in value.split(",")]
    for server in servers:
        host, sep, port = server.rpartition(":")
        if not sep or not host.strip("[]") or not port.isdigit():
            raise ValueError(f"{server!r} is not host:port")
        if not 1 <= int(port) <= 65535:
            raise ValueError(f"port {port} of {server!r} is not in 1..65535")
    return ",".join(servers)


BootstrapServers = Annotated[str, BeforeValidator(parse_bootstrap_servers)]


class KafkaSettings(BaseModel):
    """Where the broker is, the topic names, and how clients authenticate."""

    model_config = ConfigDict(extra="forbid")

    bootstrap_servers: BootstrapServers = "localhost:9092"
    numbers_topic: str = "numbers"
    estimates_topic: str = "estimates"
    dlq_topic: str = "numbers.dlq"
    dlq_max_value_bytes: int = Field(
        512 * 1024, ge=1024, le=64 * 1024 * 1024,
        description="a dead letter's value is truncated to this many bytes (headers say so)",
    )
    num_partitions: int = Field(4, ge=1, description="partitions of the numbers topic if created")
    replication_factor: int = Field(1, ge=1)
    create_topics: bool = True
    connect_timeout_s: float = Field(
        120.0, gt=0, description="how long a service waits for the broker at start"
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL"):
            missing = [
                name
                for name in ("sasl_mechanism", "sasl_username", "sasl_password")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"{self.security_protocol} needs {', '.join(missing)}")
        return self

    def client_config(self) -> dict[str, Any]:
        """Keyword arguments shared by every kafka-python client."""
        config: dict[str, Any] = {
            "bootstrap_servers": [s.strip() for s in self.bootstrap_servers.split(",")],
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol.startswith("SASL"):
            assert self.sasl_password is not None  # checked by the validator
            config.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password.get_secret_value(),
            )
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            value = getattr(self, name)
            if value is not None:
                config[name] = str(value)
        return config


class ProducerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    probabilities: Probabilities = Field(default_factory=lambda: [0.0, 0.0, 0.1, 0.3, 0.6])
    rate: float = Field(1000.0, ge=0, description="records per second; 0 = as fast as possible")
    count: int = Field(0, ge=0, description="stop after this many records; 0 = forever")
    seed: int = 0
    drift: DriftSchedule = Field(default_factory=list)
    metrics_host: str = "0.0.0.0"
    metrics_port: int = Field(9107, ge=0, le=65535)
    linger_s: float = Field(
        0.0, ge=0, description="keep serving /metrics this long after the last record"
    )
    format: Literal["ascii", "packed"] = Field(
        "ascii", description="ascii: one value per record; packed: many (header gumbel-format)"
    )
    values_per_record: int = Field(
        1024, ge=1, le=1_000_000, description="values in one packed record"
    )

    @model_validator(mode="after")
    def _drift_keeps_categories(self) -> ProducerSettings:
        for step in self.drift:
            if len(step.probabilities) != len(self.probabilities):
                raise ValueError(
                    f"drift step at {step.at:g} {step.unit} has {len(step.probabilities)} "
                    f"categories, the stream has {len(self.probabilities)}"
                )
        return self


class TrainerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    num_actors: int = Field(2, ge=1)
    gpus_per_actor: float = Field(0.0, ge=0)
    estimator: Literal["soft", "st", "reinmax", "rao", "gst"] = "st"
    num_categories: int = Field(5, ge=2)
    seed: int = 0
    model_id: str = Field("default", min_length=1)
    group_id: str = "gumbel-trainer"
    max_batch: int = Field(4096, ge=1, description="most records one Kafka poll returns")
    step_size: int = Field(
        256, ge=1,
        description="records per GAN step across the trainer (each actor: step_size/num_actors)",
    )
    poll_timeout_ms: int = Field(200, ge=1)
    backpressure: Literal["learn_all", "sample"] = Field(
        "learn_all",
        description="learn_all: the GAN learns every record (lag grows if it falls behind); "
        "sample: the GAN learns a uniform sample, the counting baseline still every record",
    )
    sample_per_poll: int = Field(
        4096, ge=1, description="with backpressure=sample: most values the GAN learns per poll"
    )
    publish_interval_s: float = Field(2.0, gt=0)
    average_interval_s: float = Field(1.0, gt=0, description="how often replicas are averaged")
    checkpoint_dir: Path | None = Path("checkpoints")
    checkpoint_interval_s: float = Field(10.0, gt=0)
    max_restarts: int = Field(-1, ge=-1, description="Ray restarts of a dead actor; -1 = always")
    on_corrupt_checkpoint: Literal["fail", "relearn", "accept_loss"] = Field(
        "fail",
        description="when every kept checkpoint of an actor is corrupt: fail (stop with the "
        "reason), relearn (from the earliest offset the topic still holds), or accept_loss "
        "(resume at the group's committed offsets; the records skipped are logged and counted)",
    )
    ray_address: str | None = Field(None, description="join this Ray cluster (or RAY_ADDRESS)")


class MonitorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "0.0.0.0"
    port: int = Field(9108, ge=0, le=65535)
    stale_after_s: float = Field(60.0, gt=0, description="/healthz fails after this long")
    model_id: str | None = Field(None, description="only this model's estimates (default: any)")
    max_clock_skew_s: float = Field(
        300.0, gt=0, description="an estimate stamped further in the future is invalid"
    )
    forget_after_s: float = Field(
        3600.0, gt=0, description="a model silent this long is no longer shown or kept"
    )
    max_categories: int = Field(
        65_536, ge=2, le=65_536, description="an estimate with more categories is invalid"
    )
    http_idle_timeout_s: float = Field(
        30.0, gt=0, description="the HTTP server closes a connection idle this long"
    )


_SERVICE_CONFIG = SettingsConfigDict(
    env_prefix="GUMBEL_",
    env_nested_delimiter="__",
    extra="forbid",
    validate_default=True,
)


class ProducerServiceSettings(BaseSettings):
    model_config = _SERVICE_CONFIG
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    producer: ProducerSettings = Field(default_factory=ProducerSettings)


class TrainerServiceSettings(BaseSettings):
    model_config = _SERVICE_CONFIG
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    trainer: TrainerSettings = Field(default_factory=TrainerSettings)


class MonitorServiceSettings(BaseSettings):
    model_config = _SERVICE_CONFIG
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)


class UpSettings(BaseSettings):
    """``gumbel-stream up``: all services on one machine (embedded broker by default)."""

    model_config = _SERVICE_CONFIG
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    producer: ProducerSettings = Field(default_factory=ProducerSettings)
    trainer: TrainerSettings = Field(default_factory=TrainerSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    broker: Literal["embedded", "apache-kafka", "external"] = Field(
        "embedded", description="embedded Tansu, Apache Kafka from jars, or --bootstrap-servers"
    )
