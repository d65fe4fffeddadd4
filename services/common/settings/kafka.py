"""Where the Kafka broker is, the topic names, and how every client authenticates and compresses
(``kafka.*``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from services.common.settings_text import choices

__all__ = [
    "COMPRESSION_TYPES", "codec_available", "parse_bootstrap_servers", "check_topic_name",
    "KafkaSettings"
]


# Kafka's producer codecs; each but `none` needs its library (lz4, zstandard, python-snappy).
COMPRESSION_TYPES = ("none", "gzip", "snappy", "lz4", "zstd")
_CODEC_PACKAGES = {"snappy": "python-snappy", "lz4": "lz4", "zstd": "zstandard"}


def codec_available(codec: str) -> bool:
    """Whether kafka-python can compress with ``codec`` here (its library imports)."""
    if codec == "none":
        return True
    from kafka import codec as kafka_codec

    return bool(getattr(kafka_codec, f"has_{codec}")())


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

# Kafka's own rule for a topic name (kafka.common.internals.Topic): the broker refuses any
# other name when the topic is created, and a client when it subscribes.
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def check_topic_name(value: str) -> str:
    """A name Kafka accepts for a topic: 1-249 of letters, digits, ``.``, ``_``, ``-``."""
    if not _TOPIC_NAME.match(value) or value in {".", ".."}:
        raise ValueError("not a Kafka topic name: 1 to 249 letters, digits, '.', '_' or '-' "
                         "(and not '.' or '..')")
    return value


TopicName = Annotated[str, AfterValidator(check_topic_name)]


class KafkaSettings(BaseModel):
    """Where the broker is, the topic names, and how clients authenticate."""

    model_config = ConfigDict(extra="forbid")

    bootstrap_servers: BootstrapServers = Field(
        "localhost:9092",
        description="Kafka bootstrap servers, `host:port[,host:port...]`",
    )
    numbers_topic: TopicName = Field("numbers", description="topic of the raw category ids")
    estimates_topic: TopicName = Field(
        "estimates", description="topic of the published `Estimate`s"
    )
    dlq_topic: TopicName = Field(
        "numbers.dlq", description="dead-letter topic for malformed records"
    )
    dlq_max_value_bytes: int = Field(
        512 * 1024, ge=1024, le=64 * 1024 * 1024,
        description="a dead letter's value is truncated to this many bytes (headers "
        "`gumbel-dlq-truncated`, `gumbel-dlq-original-size`, `gumbel-dlq-original-sha256` "
        "say so)",
    )
    num_partitions: int = Field(4, ge=1, description="partitions of the numbers topic if created")
    replication_factor: int = Field(
        1, ge=1, le=32767, description="replication factor of topics it creates (at most the "
        "brokers in the cluster: checked at start)"
    )
    min_insync_replicas: int | None = Field(
        None, ge=1, le=32767, description="min.insync.replicas of topics it creates (none: the "
        "broker's default); with acks=all a write needs this many replicas, so keep it below "
        "replication_factor to survive a lost broker",
    )
    create_topics: bool = Field(True, description="create the three topics at start if missing")
    compression_type: Literal[COMPRESSION_TYPES] = Field(  # type: ignore[valid-type]
        "zstd", description="codec of every producer we run (numbers, estimates, dead letters): "
        f"{choices(COMPRESSION_TYPES)}; zstd stores a million values in 0.24 of the bytes at "
        "the speed of none (docs/performance.md#compression)",
    )
    connect_timeout_s: float = Field(
        120.0, gt=0, description="how long a service waits for the broker at start"
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="`PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (SASL only)"
    )
    sasl_username: str | None = Field(None, description="SASL user")
    sasl_password: SecretStr | None = Field(
        None, description="SASL password (env only; never logged)"
    )
    ssl_cafile: Path | None = Field(None, description="CA bundle to verify the broker (TLS)")
    ssl_certfile: Path | None = Field(None, description="client certificate (mutual TLS)")
    ssl_keyfile: Path | None = Field(None, description="client key (mutual TLS)")

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

    @field_validator("compression_type")
    @classmethod
    def _codec_installed(cls, codec: str) -> str:
        if not codec_available(codec):
            package = _CODEC_PACKAGES[codec]
            raise ValueError(f"{codec!r} needs the {package} package, which is not installed "
                             f"(pip install {package}, or choose another codec)")
        return codec

    @model_validator(mode="after")
    def _min_insync_within_replicas(self) -> KafkaSettings:
        if self.min_insync_replicas is not None and (
                self.min_insync_replicas > self.replication_factor):
            raise ValueError(
                f"min_insync_replicas ({self.min_insync_replicas}) is more than "
                f"replication_factor ({self.replication_factor}): no write with acks=all "
                "could succeed")
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
