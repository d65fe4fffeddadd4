"""Settings of every service, validated at start (pydantic-settings).

Every option is an environment variable with the prefix ``GUMBEL_``, nested with ``__``
(``GUMBEL_KAFKA__BOOTSTRAP_SERVERS``, ``GUMBEL_TRAINER__NUM_ACTORS``), and the command line's
flags override them. One ``BaseSettings`` per service; the sections are shared models.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NestedSecretsSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings import SettingsError as PydanticSettingsError

from services.common.schemas import MAX_ACTORS, MAX_CATEGORIES, MAX_NAME_LENGTH

__all__ = [
    "ESTIMATORS",
    "COMPRESSION_TYPES",
    "codec_available",
    "DriftStep",
    "KafkaSettings",
    "EventSettings",
    "ProducerSettings",
    "TrainerSettings",
    "MonitorSettings",
    "SECRETS_DIR_ENV",
    "ProducerServiceSettings",
    "TrainerServiceSettings",
    "MonitorServiceSettings",
    "UpSettings",
    "LogSettings",
    "parse_probabilities",
]

ESTIMATORS = ("soft", "st", "reinmax", "rao", "gst")
# Kafka's producer codecs; each but `none` needs its library (lz4, zstandard, python-snappy).
COMPRESSION_TYPES = ("none", "gzip", "snappy", "lz4", "zstd")
_CODEC_PACKAGES = {"snappy": "python-snappy", "lz4": "lz4", "zstd": "zstandard"}


def codec_available(codec: str) -> bool:
    """Whether kafka-python can compress with ``codec`` here (its library imports)."""
    if codec == "none":
        return True
    from kafka import codec as kafka_codec

    return bool(getattr(kafka_codec, f"has_{codec}")())


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
    compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        "zstd", description="codec of every producer we run (numbers, estimates, dead letters): "
        "`none`, `gzip`, `snappy`, `lz4` or `zstd`; zstd stores a million values in 0.24 of "
        "the bytes at the speed of none (docs/performance.md#compression)",
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


# A model id names a directory under checkpoint_dir and a consumer group: no path separators,
# no leading dot (".." or a hidden directory), short enough for any file system, and within
# the Estimate's limit on names (its model_id), so a publish never refuses it.
MODEL_ID_MAX_LENGTH = 128
assert MODEL_ID_MAX_LENGTH <= MAX_NAME_LENGTH
MODEL_ID_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{MODEL_ID_MAX_LENGTH - 1}}}$"


def check_model_id(value: str) -> str:
    """A model id that is safe as a directory name under ``checkpoint_dir``."""
    if not re.match(MODEL_ID_PATTERN, value):
        raise ValueError(
            "a model id names a directory under the checkpoint directory and a consumer "
            "group: letters, digits, '.', '_' and '-' only, starting with a letter or digit, "
            f"at most {MODEL_ID_MAX_LENGTH} characters")
    return value


def parse_categories(value: Any) -> list[str]:
    """``"click,view,buy"`` or a sequence of names → distinct, non-empty names."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        names = [n.strip() for n in value.split(",")]
    elif isinstance(value, (list, tuple)):
        names = [str(n).strip() for n in value]
    else:
        raise ValueError(f"expected comma-separated names, got {value!r}")
    if any(not n for n in names):
        raise ValueError(f"a category name is empty in {value!r}")
    duplicates = sorted(n for n, count in Counter(names).items() if count > 1)
    if duplicates:
        raise ValueError(f"category names must be distinct ({', '.join(duplicates)} repeated)")
    if len(names) < 2:
        raise ValueError("needs at least 2 category names")
    too_long = [n for n in names if len(n) > MAX_NAME_LENGTH]
    if too_long:  # the Estimate refuses them: say so now, not at the first publish
        raise ValueError(f"a category name is longer than {MAX_NAME_LENGTH} characters "
                         f"({len(too_long[0])}: {too_long[0][:40]!r}...)")
    return names


CategoryNames = Annotated[list[str], NoDecode, BeforeValidator(parse_categories)]


class EventSettings(BaseModel):
    """How records of the numbers topic are written, shared by the producer and the trainer."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["ascii", "packed", "json", "string"] = Field(
        "ascii",
        description="`ascii`: one category id per record (`b\"3\"`); `packed`: many ids per "
        "record (header `gumbel-format`); `json`: an object whose `json_field` holds the "
        "category (a name from `categories`, else an id); `string`: the record is the "
        "category's name. The trainer reads packed records whatever this says",
    )
    json_field: str = Field(
        "event", pattern=r"^[^.]+(\.[^.]+)*$",
        description="with format=json: the field that holds the category, a dotted path "
        "into nested objects (`payload.type`)",
    )
    categories: CategoryNames = Field(
        default_factory=list,
        description="category names in id order (`click,view,buy`): a json or string "
        "record names one of them (any other name is dead-lettered, reason `unknown_category`), "
        "and they are the `category` label of the monitor's per-category metrics; unset: ids",
    )

    @model_validator(mode="after")
    def _string_needs_names(self) -> EventSettings:
        if self.format == "string" and not self.categories:
            raise ValueError("format=string needs categories (the names the records carry)")
        return self


def _check_names(events: EventSettings, num_categories: int, what: str) -> None:
    if events.categories and len(events.categories) != num_categories:
        # "section.field: ...": the command line names that setting (cli._validation_message)
        raise ValueError(
            f"events.categories: {len(events.categories)} names for {what} = "
            f"{num_categories} categories")


class ProducerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    probabilities: Probabilities = Field(
        default_factory=lambda: [0.0, 0.0, 0.1, 0.3, 0.6],
        description="the true distribution, comma-separated, sums to 1",
    )
    rate: float = Field(1000.0, ge=0, allow_inf_nan=False,
                        description="records per second; 0 = as fast as possible")
    count: int = Field(0, ge=0, description="stop after this many records; 0 = forever")
    seed: int = Field(0, description="random seed of the stream (same seed, same records)")
    drift: DriftSchedule = Field(
        default_factory=list,
        description="`AT=p0,p1,...;...`: switch distribution after AT records (or AT seconds "
        "with `s`)",
    )
    metrics_host: str = Field("0.0.0.0", description="address of the producer's `/metrics`")
    metrics_port: int = Field(
        9107, ge=0, le=65535,
        description="port of the producer's `/metrics` (in `up`, `--producer-port`: there "
        "`--port` is the monitor's)",
    )
    linger_s: float = Field(
        0.0, ge=0,
        description="keep serving `/metrics` this long after the last record, so a scrape "
        "sees the total",
    )
    format: Literal["ascii", "packed"] | None = Field(
        None,
        description="deprecated, use `events.format` (`--format`); when set it wins over it",
    )
    values_per_record: int = Field(
        1024, ge=1, le=1_000_000, description="values in one packed record"
    )
    from_model: str | None = Field(
        None, min_length=1, max_length=MAX_NAME_LENGTH,
        description="a synthetic twin: draw from the newest estimate of this model id on the "
        "estimates topic (Gumbel-max), following each new one, instead of `probabilities`",
    )

    @model_validator(mode="after")
    def _twin_has_no_distribution_of_its_own(self) -> ProducerSettings:
        if self.from_model is not None:
            given = [name for name in ("probabilities", "drift") if name in self.model_fields_set]
            if given:
                raise ValueError(
                    f"from_model draws from the model's estimates; {' and '.join(given)} "
                    "cannot be set with it")
        return self

    @model_validator(mode="after")
    def _drift_keeps_categories(self) -> ProducerSettings:
        for step in self.drift:
            if len(step.probabilities) != len(self.probabilities):
                raise ValueError(
                    f"drift step at {step.at:g} {step.unit} has {len(step.probabilities)} "
                    f"categories, the stream has {len(self.probabilities)}"
                )
        return self


def parse_json_object(value: Any) -> Any:
    """A JSON object from the environment's text (``NoDecode``: pydantic-settings would blame
    the whole section for bad JSON instead of the setting)."""
    if not isinstance(value, str):
        return value
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg}): write an object like "
                         '{"gumbel-learner": 1}') from None
    if not isinstance(parsed, dict):
        raise ValueError('not a JSON object: write one like {"gumbel-learner": 1}')
    return parsed


# Ray custom resources: a name and an amount each (TrainerSettings checks them).
RayResources = Annotated[dict[str, float], NoDecode, BeforeValidator(parse_json_object)]


class TrainerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    num_actors: int = Field(
        2, ge=1, le=MAX_ACTORS,
        description="ingest actors: Kafka consumers that read the partitions (p mod N) "
        f"and feed the model's one learner; CPUs only (at most {MAX_ACTORS:,}, the Estimate's "
        "limit)",
    )
    gpus_per_actor: float = Field(
        0.0, ge=0, description="GPUs of the model's learner actor (fractions allowed; 0 = CPU); "
        "ingest actors never take one",
    )
    estimator: Literal["soft", "st", "reinmax", "rao", "gst"] = Field(
        "st", description="`soft`, `st`, `reinmax`, `rao` or `gst`"
    )
    num_categories: int = Field(
        5, ge=2, le=MAX_CATEGORIES,
        description=f"K: categories are `0..K-1` (at most {MAX_CATEGORIES:,}, the Estimate's "
        "limit)",
    )
    seed: int = Field(0, description="random seed of the learner")
    model_id: Annotated[str, AfterValidator(check_model_id)] = Field(
        "default",
        description="key of the published estimates; it names a checkpoint directory and "
        "a consumer group, so letters, digits, `.`, `_` and `-` only, starting with a letter "
        f"or digit, at most {MODEL_ID_MAX_LENGTH} characters",
    )
    group_id: str | None = Field(
        None, min_length=1,
        description="Kafka consumer group (offset commits); unset: `gumbel-trainer-<model_id>`, "
        "so trainers of different models never share one (before: `gumbel-trainer`)",
    )
    max_batch: int = Field(4096, ge=1, description="most records one Kafka poll returns")
    window_records: int = Field(
        10_000, ge=100, le=10**9,
        description="memory, in records of the whole stream, of the forgetting counter that "
        "the published estimate is compared with (gumbel_window_baseline_probability, "
        "gumbel_total_variation): a learner that follows a drift agrees with it again",
    )
    waiting_blocks: int = Field(
        16, ge=1, le=1024,
        description="blocks (a poll's records of one partition) that may wait in the learner "
        "per partition; a partition at the cap is paused by its ingest actor until there is "
        "room (a partition far ahead in event time waits without memory growing)",
    )
    idle_s: float = Field(
        30.0, gt=0, le=3600,
        description="a partition whose ingest actor sent nothing this long (no block, no "
        "report; they report every 0.5 s) no longer holds the others back in the learner's "
        "event-time merge: its actor is gone (a slow one still holds them)",
    )
    step_size: int = Field(
        256, ge=1,
        description="records per GAN step while the learner keeps up (the quality table's "
        "batch); behind, each step takes all that waits instead, so every record is learned",
    )
    poll_timeout_ms: int = Field(200, ge=1, description="longest wait of one Kafka poll")
    partition_refresh_s: float = Field(
        30.0, gt=0, le=86_400,
        description="how often each actor looks for partitions added to the numbers topic "
        "while it runs (and learns those it owns, from their beginning)",
    )
    backpressure: Literal["learn_all", "sample"] = Field(
        "learn_all",
        description="when the stream outruns the GAN: `learn_all` learns every record in "
        "fewer, larger steps; `sample` keeps steps of `step_size`, learns as many as keep up "
        "and only counts the rest in the baseline (`gumbel_learned_fraction`)",
    )
    publish_interval_s: float = Field(
        2.0, gt=0, description="seconds between published estimates"
    )
    checkpoint_dir: Path | None = Field(
        Path("checkpoints"), description="where checkpoints (model + offsets) go"
    )
    checkpoint_interval_s: float = Field(
        10.0, gt=0, description="seconds between checkpoints"
    )
    max_restarts: int = Field(-1, ge=-1, description="Ray restarts of a dead actor; -1 = always")
    on_corrupt_checkpoint: Literal["fail", "relearn", "accept_loss"] = Field(
        "fail",
        description="when every kept checkpoint of an actor is corrupt: `fail` (stop at start, "
        "naming the files), `relearn` (from the earliest offset the topic holds) or "
        "`accept_loss` (resume at the group's committed offsets); the records that cannot "
        "reach the model are logged as an ERROR and counted (`records_skipped`)",
    )
    ray_address: str | None = Field(None, description="join this Ray cluster (or RAY_ADDRESS)")
    ray_auth_token: SecretStr | None = Field(
        None, description="the Ray cluster's token when it uses token authentication (Ray "
        ">= 2.60 heads do; else RAY_AUTH_TOKEN or ~/.ray/auth_token with RAY_AUTH_MODE=token)",
    )
    cpus_per_actor: float = Field(
        1.0, ge=0, description="CPUs each actor asks Ray for (it learns on one torch thread); "
        "with the SPREAD strategy a cluster of N nodes trains on N nodes. 0 packs actors "
        "anywhere",
    )
    learner_resources: RayResources = Field(
        default_factory=dict,
        description="Ray custom resources the learner asks for, as JSON (e.g. "
        "`{\"gumbel-learner\": 1}`): only a node that offers them runs it and the checks of "
        "its checkpoint directory (on Kubernetes the worker group that mounts the "
        "ReadWriteOnce checkpoint volume); `{}`: any node",
    )
    health_file: Path | None = Field(
        None,
        description="a file whose modification time the driver keeps at the learner's last "
        "checkpoint: a probe finds the trainer stuck or gone without the checkpoint volume "
        "(the Kubernetes driver pod's); unset: none",
    )

    @field_validator("learner_resources")
    @classmethod
    def _custom_resources_only(cls, value: dict[str, float]) -> dict[str, float]:
        # Ray refuses these in resources= (they have num_cpus/num_gpus/memory of their own).
        built_in = sorted(name for name in value if name in {"CPU", "GPU", "memory"} or not name)
        if built_in:
            raise ValueError(
                f"{built_in[0]!r} is not a custom resource: name one the learner's worker "
                "group offers (rayStartParams resources); CPUs and GPUs have "
                "cpus_per_actor and gpus_per_actor")
        for name, amount in value.items():
            if not (0 < amount < math.inf):
                raise ValueError(f"{name!r}: {amount:g} is not a positive amount")
        return value

    @model_validator(mode="after")
    def _group_of_the_model(self) -> TrainerSettings:
        # Filled in here, so every reader (the actors, the lag reader) sees one str.
        if self.group_id is None:
            self.group_id = f"gumbel-trainer-{self.model_id}"
        return self


class MonitorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field("0.0.0.0", description="address the monitor binds to")
    port: int = Field(
        9108, ge=0, le=65535,
        description="port of the monitor's `/metrics`, `/healthz`, `/estimate`",
    )
    stale_after_s: float = Field(60.0, gt=0, description="/healthz fails after this long")
    model_id: str | None = Field(None, description="only this model's estimates (default: any)")
    max_clock_skew_s: float = Field(
        300.0, gt=0,
        description="an estimate stamped further in the monitor's future is counted invalid",
    )
    forget_after_s: float = Field(
        3600.0, gt=0, description="a model silent this long is no longer shown or kept"
    )
    max_categories: int = Field(
        65_536, ge=2, le=65_536,
        description="an estimate with more categories is counted invalid",
    )
    max_models: int = Field(
        100, ge=1, le=10_000,
        description="models shown at once (each is a `model_id` label value): an estimate of "
        "a new model past this many is counted invalid until one is forgotten",
    )
    max_series_per_model: int = Field(
        200, ge=2, le=65_536,
        description="`category` series of one model per per-category metric: a model with more "
        "categories shows its largest by estimate and `category=\"_other\"`, the sum of the rest "
        "(all of them: `/estimate`, the estimates topic)",
    )
    max_category_series: int = Field(
        10_000, ge=1, le=10_000_000,
        description="per-category series of all models together: past it each model shows "
        "fewer of its largest (at least `_other`), counted in "
        "`gumbel_monitor_category_series_omitted_total`",
    )
    http_idle_timeout_s: float = Field(
        30.0, gt=0, description="the HTTP server closes a connection idle this long"
    )
    producer_metrics_url: HttpUrl | None = Field(
        None, description="the producer's `/metrics`, read every few seconds for the true "
        "distribution that the live page at `/` shows next to the estimate (`up` sets it; "
        "unset: the page shows no truth)",
    )
    truth_model_id: str | None = Field(
        None, description="the model the producer at `producer_metrics_url` feeds: the live "
        "page compares only it with the truth (`up` sets it; unset: every model with as many "
        "categories, the page naming the producer as the truth's source)",
    )


_SERVICE_CONFIG = SettingsConfigDict(
    env_prefix="GUMBEL_",
    env_nested_delimiter="__",
    extra="forbid",
    validate_default=True,
)


SECRETS_DIR_ENV = "GUMBEL_SECRETS_DIR"


class _ServiceSettings(BaseSettings):
    """A service's settings: the environment, then one file per setting in ``secrets_dir``.

    A file ``kafka__sasl_password`` in ``GUMBEL_SECRETS_DIR`` sets ``kafka.sasl_password``
    (a Kubernetes Secret mounted as a volume, Docker secrets); the environment wins over it.
    """

    model_config = _SERVICE_CONFIG
    secrets_dir: Path | None = Field(
        None, description="directory of mounted secret files, one per setting named like "
        "`kafka__sasl_password` (section `__` field, any case); the environment wins over them",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The directory is itself a setting, so it comes from the environment, read here.
        secrets_dir = os.environ.get(SECRETS_DIR_ENV) or None
        problem = None if secrets_dir is None else _secrets_dir_problem(secrets_dir)
        if problem is not None:
            raise PydanticSettingsError(
                f"invalid setting {SECRETS_DIR_ENV}: {_shown(secrets_dir)} is {problem}, not a "
                "directory of secret files")
        try:
            secrets = _SecretFiles(
                file_secret_settings, names=_setting_file_names(settings_cls),
                secrets_dir=secrets_dir, secrets_dir_missing="error", secrets_prefix="",
                secrets_nested_delimiter="__",
            )
        except PydanticSettingsError as exc:  # too large, too many entries, a file not text
            if SECRETS_DIR_ENV in str(exc):
                raise
            raise PydanticSettingsError(f"invalid setting {SECRETS_DIR_ENV}: {exc}") from None
        return init_settings, env_settings, dotenv_settings, secrets


def _shown(path: str | None) -> str:
    text = repr(path)
    return text if len(text) <= 120 else f"{text[:100]}...' ({len(str(path))} characters)"


def _secrets_dir_problem(path: str) -> str | None:
    """Why ``path`` cannot be the secrets directory, or None (``Path.is_dir`` raises on a
    name too long, and says False alike for a file, a missing path and a symlink loop)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symlink loop"
        if exc.errno == errno.ENOENT:
            return "missing (a symlink to nothing)" if os.path.islink(path) else "missing"
        return f"not usable ({exc.strerror})"
    if not stat.S_ISDIR(mode):
        return "a file" if stat.S_ISREG(mode) else "not a directory"
    if not os.access(path, os.R_OK | os.X_OK):
        return "not readable"
    return None


def _setting_file_names(settings_cls: type[BaseSettings]) -> frozenset[str]:
    """The file names that set something: ``section__field``, a whole ``section`` as JSON,
    or a top-level setting; lower case (the secrets are read case-insensitively)."""
    names = set()
    for name, field in settings_cls.model_fields.items():
        names.add(name.lower())
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            names.update(f"{name}__{sub}".lower() for sub in section.model_fields)
    return frozenset(names)


class _SecretFiles(NestedSecretsSettingsSource):
    """pydantic-settings' nested secrets, reading each file as text with a clear error: a
    setting's file that is not UTF-8 (or cannot be read) is one line naming it, where
    pydantic-settings raised a traceback; any other file (a binary keystore mounted
    beside them) is not a setting and is skipped, as unknown names are."""

    def __init__(self, *args: Any, names: frozenset[str], **kwargs: Any) -> None:
        self._names = names
        super().__init__(*args, **kwargs)

    def load_secrets(self, path: Path) -> dict[str, str]:  # type: ignore[override]
        secrets = {}
        for file in self._iter_secret_files(path):
            name = str(file.relative_to(path))
            try:
                secrets[name] = file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                if name.lower() not in self._names:
                    continue
                why = ("is not UTF-8 text" if isinstance(exc, UnicodeDecodeError)
                       else f"cannot be read ({exc.strerror})")
                raise PydanticSettingsError(
                    f"invalid setting {SECRETS_DIR_ENV}: its file {name!r} {why}") from None
        return secrets


class ProducerServiceSettings(_ServiceSettings):
    model_config = _SERVICE_CONFIG
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    events: EventSettings = Field(default_factory=EventSettings)
    producer: ProducerSettings = Field(default_factory=ProducerSettings)

    @model_validator(mode="after")
    def _events_match(self) -> ProducerServiceSettings:
        _producer_events(self.producer, self.events)
        return self


class TrainerServiceSettings(_ServiceSettings):
    model_config = _SERVICE_CONFIG
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    events: EventSettings = Field(default_factory=EventSettings)
    trainer: TrainerSettings = Field(default_factory=TrainerSettings)

    @model_validator(mode="after")
    def _events_match(self) -> TrainerServiceSettings:
        _check_names(self.events, self.trainer.num_categories, "trainer.num_categories")
        return self


def _producer_events(producer: ProducerSettings, events: EventSettings) -> None:
    if producer.format is not None:  # the deprecated spelling of events.format
        events.format = producer.format
    if producer.from_model is None:  # a twin's K is its model's, checked at its first estimate
        _check_names(events, len(producer.probabilities), "the length of producer.probabilities")


class MonitorServiceSettings(_ServiceSettings):
    model_config = _SERVICE_CONFIG
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)


class UpSettings(_ServiceSettings):
    """``gumbel-stream up``: all services on one machine (embedded broker by default)."""

    model_config = _SERVICE_CONFIG
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    events: EventSettings = Field(default_factory=EventSettings)
    producer: ProducerSettings = Field(default_factory=ProducerSettings)
    trainer: TrainerSettings = Field(default_factory=TrainerSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    broker: Literal["embedded", "apache-kafka", "external"] = Field(
        "embedded",
        description="`up` only: embedded Tansu, Apache Kafka from jars, or "
        "`--bootstrap-servers`",
    )

    @model_validator(mode="after")
    def _events_match(self) -> UpSettings:
        _producer_events(self.producer, self.events)
        _check_names(self.events, self.trainer.num_categories, "trainer.num_categories")
        return self


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


class LogSettings(BaseSettings):
    """How every command logs: ``--log-level``/``GUMBEL_LOG_LEVEL``, ``GUMBEL_LOG_FORMAT``."""

    model_config = SettingsConfigDict(env_prefix="GUMBEL_", extra="ignore", validate_default=True)

    log_level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_upper)
    ] = Field("INFO", description="`DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`")
    log_format: Annotated[Literal["text", "json"], BeforeValidator(_lower)] = Field(
        "text",
        description="`text`: a line for people; `json`: one JSON object per line (`time`, "
        "`level`, `logger`, `message`, `model_id`, the `actor`, partitions and offsets as "
        "fields, `exception`) for Loki or ELK, the trainer's Ray actors' lines included",
    )
