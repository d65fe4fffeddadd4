"""The Kafka adapter: every kafka-python client the services use is made here.

Clients share one connection config (``KafkaSettings.client_config``: bootstrap servers, TLS,
SASL). Services wait for a broker that is not up yet with a clear log line instead of dying,
and fail fast, with the reason, on a wrong password.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from services.common.errors import StartupError
from services.common.settings import KafkaSettings
from services.flags import env_name, named

__all__ = [
    "BrokerUnavailable",
    "wait_for_broker",
    "ensure_topics",
    "ESTIMATES_TOPIC_CONFIG",
    "topic_config",
    "prepare_broker",
    "broker_ready",
    "make_admin",
    "make_producer",
    "make_consumer",
    "topic_partitions",
]

log = logging.getLogger(__name__)


class BrokerUnavailable(RuntimeError):
    """The broker could not be reached in time, or refused our credentials."""


def _is_auth_failure(exc: BaseException) -> bool:
    return "authentication" in type(exc).__name__.lower() or "SASL" in type(exc).__name__


def _reachable(bootstrap_servers: str) -> bool:
    """Whether any bootstrap server accepts a TCP connection (the broker process is up)."""
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout=2):
                return True
        except (OSError, ValueError):
            continue
    return False


# The broker usually drops a rejected SASL client before kafka-python reads the error, so
# the client only sees a lost connection. A broker that accepts TCP but fails this many
# SASL probes in a row is taken to reject our credentials: a wrong password fails fast.
SASL_PROBES_BEFORE_GIVING_UP = 2


class _SaslFailureRecorder(logging.Handler):
    """Keeps kafka-python's own report of a rejected SASL login.

    kafka-python 3 retries a rejected login inside its bootstrap loop and only logs the
    reason; recording it lets a wrong password fail fast, with the broker's words.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.failure: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "SaslAuthenticationFailed" in message or "UnsupportedSaslMechanism" in message:
            self.failure = message


def make_admin(settings: KafkaSettings, **overrides: Any) -> KafkaAdminClient:
    """An admin client with the shared connection settings (TLS, SASL)."""
    config = {**settings.client_config(), "client_id": "gumbel-admin", **overrides}
    return KafkaAdminClient(**config)


def wait_for_broker(settings: KafkaSettings, timeout_s: float | None = None) -> None:
    """Block until the broker answers a metadata request; log each failed attempt.

    A wrong password is not worth waiting for: it raises ``BrokerUnavailable`` at once.
    """
    timeout_s = settings.connect_timeout_s if timeout_s is None else timeout_s
    recorder = _SaslFailureRecorder()
    kafka_log = logging.getLogger("kafka")
    kafka_log.addHandler(recorder)
    # While waiting, kafka-python's own connection errors (an ERROR line per attempt) go to
    # the recorder only: each attempt is reported once, in our words, below.
    propagate, kafka_log.propagate = kafka_log.propagate, False
    try:
        _wait_for_broker(settings, timeout_s, recorder)
    finally:
        kafka_log.propagate = propagate
        kafka_log.removeHandler(recorder)


def _wait_for_broker(
    settings: KafkaSettings, timeout_s: float, recorder: _SaslFailureRecorder
) -> None:
    deadline = time.monotonic() + timeout_s
    attempt = 0
    sasl_rejections = 0
    while True:
        attempt += 1
        # An attempt may not outlast the deadline: "did not answer within 2s" must be true.
        attempt_ms = max(100, min(5000, int((deadline - time.monotonic()) * 1000)))
        try:
            admin = make_admin(
                settings, request_timeout_ms=attempt_ms, bootstrap_timeout_ms=attempt_ms
            )
            try:
                admin.list_topics()
            finally:
                admin.close()
            if attempt > 1:
                log.info("Kafka at %s is up", settings.bootstrap_servers)
            return
        except Exception as exc:  # kafka-python raises many types while a broker starts
            uses_sasl = settings.security_protocol.startswith("SASL")
            sasl_rejections = (
                sasl_rejections + 1 if (uses_sasl and _reachable(settings.bootstrap_servers)) else 0
            )
            if (
                _is_auth_failure(exc)
                or recorder.failure
                or sasl_rejections >= SASL_PROBES_BEFORE_GIVING_UP
            ):
                reason = recorder.failure or (
                    f"the broker answers TCP but dropped every {settings.sasl_mechanism} login "
                    "(wrong password, unknown user, or a mechanism the broker does not enable)"
                )
                raise BrokerUnavailable(
                    f"Kafka at {settings.bootstrap_servers} rejected the credentials "
                    f"({settings.sasl_mechanism} user {settings.sasl_username!r}): {reason}"
                ) from exc
            if time.monotonic() >= deadline:
                raise BrokerUnavailable(
                    f"Kafka at {settings.bootstrap_servers} did not answer within "
                    f"{timeout_s:g}s ({env_name('kafka', 'connect_timeout_s')}): {exc}"
                ) from exc
            log.warning(
                "waiting for Kafka at %s (attempt %d): %s",
                settings.bootstrap_servers,
                attempt,
                exc or type(exc).__name__,
            )
            time.sleep(max(0.0, min(5.0, 0.5 * attempt, deadline - time.monotonic())))


def prepare_broker(settings: KafkaSettings) -> None:
    """Wait for the broker, then create the topics: every service's first step."""
    wait_for_broker(settings)
    ensure_topics(settings)


def broker_ready(settings: KafkaSettings, create_topics: bool = True) -> bool:
    """Wait for the broker (then create the topics, unless told not to); False, with the
    reason logged as one ERROR line, if it never answers or refuses our credentials: a
    command then exits 1 with nothing started."""
    try:
        if create_topics:
            prepare_broker(settings)
        else:
            wait_for_broker(settings)
    except BrokerUnavailable as exc:
        log.error("%s", exc)
        return False
    return True


# `estimates` holds the latest value per key (the model id): compacted, so every model's
# latest estimate stays however old it is, while each estimate is kept at least a day (the
# history a replay or a late dashboard reads) before compaction may drop it. Hourly segments
# let compaction reach records past that lag (the active segment is never compacted).
# docker-compose.yml's kafka-init and docs/deploy.md create it with the same configs.
ESTIMATES_TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    "min.compaction.lag.ms": str(24 * 3600 * 1000),
    "segment.ms": str(3600 * 1000),
}


def ensure_topics(settings: KafkaSettings) -> None:
    """Create the numbers, estimates (compacted) and dead-letter topics if they do not exist
    yet; warn when an existing estimates topic is not compacted."""
    if not settings.create_topics:
        return
    configs = ({} if settings.min_insync_replicas is None
               else {"min.insync.replicas": str(settings.min_insync_replicas)})
    wanted = [
        NewTopic(name, partitions, settings.replication_factor,
                 topic_configs={**configs, **extra})
        for name, partitions, extra in (
            (settings.numbers_topic, settings.num_partitions, {}),
            (settings.estimates_topic, 1, ESTIMATES_TOPIC_CONFIG),
            (settings.dlq_topic, 1, {}))
    ]
    admin = make_admin(settings)
    try:
        check_replication(settings, len(admin.describe_cluster()["brokers"]))
        existing = set(admin.list_topics())
        missing = [t for t in wanted if t.name not in existing]
        if missing:
            try:
                admin.create_topics(missing)
                log.info("created topics %s", ", ".join(t.name for t in missing))
            except TopicAlreadyExistsError:
                pass  # another service created them first
        if settings.estimates_topic in existing:
            _check_estimates_compacted(admin, settings.estimates_topic)
    finally:
        admin.close()


def topic_config(admin: KafkaAdminClient, topic: str) -> dict[str, str]:
    """Every config of ``topic`` as the broker resolves it (defaults included)."""
    from kafka.admin import ConfigResource, ConfigResourceType

    answer = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)],
                                    config_filter="all")
    entries = answer["topic"][topic]
    return {name: entry.get("value") for name, entry in entries.items()}


def _check_estimates_compacted(admin: KafkaAdminClient, topic: str) -> None:
    """An estimates topic made before it was compacted keeps working; say how to fix it."""
    try:
        policy = topic_config(admin, topic).get("cleanup.policy") or ""
    except Exception as exc:  # a broker or ACL that refuses DescribeConfigs: not worth failing
        log.debug("cannot read the configs of %s: %s", topic, exc)
        return
    if "compact" not in policy.split(","):
        log.warning(
            "topic %s has cleanup.policy=%s: old estimates, the latest of each model included, "
            "are deleted by retention; make it a latest-value-per-key topic with "
            "kafka-configs.sh --alter --entity-type topics --entity-name %s --add-config %s",
            topic, policy, topic,
            ",".join(f"{k}={v}" for k, v in ESTIMATES_TOPIC_CONFIG.items()))


def check_replication(settings: KafkaSettings, brokers: int) -> None:
    """Replication settings the cluster can honour, else ``StartupError`` naming the setting
    (Kafka would refuse the topics with a bare INVALID_REPLICATION_FACTOR)."""
    if settings.replication_factor > brokers:
        raise StartupError(
            f"invalid setting {named('', 'kafka', 'replication_factor')}: "
            f"{settings.replication_factor}, but the cluster at {settings.bootstrap_servers} "
            f"has {brokers} broker{'s' * (brokers != 1)}")


def make_producer(settings: KafkaSettings, **overrides: Any) -> KafkaProducer:
    """An idempotent producer with acks=all: a broker restart loses and duplicates nothing.

    Batches are compressed with ``settings.compression_type`` (the broker stores them as sent).
    """
    codec = settings.compression_type
    config: dict[str, Any] = {
        **settings.client_config(),
        "compression_type": None if codec == "none" else codec,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "batch_size": 256 * 1024,
        "retries": 2**31 - 1,
        "max_in_flight_requests_per_connection": 5,
        **overrides,
    }
    return KafkaProducer(**config)


def make_consumer(settings: KafkaSettings, **overrides: Any) -> KafkaConsumer:
    """A consumer with no subscription and no auto-commit: callers assign partitions."""
    config: dict[str, Any] = {
        **settings.client_config(),
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "fetch_max_bytes": 32 * 1024 * 1024,
        "max_partition_fetch_bytes": 8 * 1024 * 1024,
        "fetch_min_bytes": 1,
        "fetch_max_wait_ms": 100,
        **overrides,
    }
    return KafkaConsumer(**config)


def topic_partitions(
    consumer: KafkaConsumer, topic: str, timeout_s: float = 30.0
) -> list[TopicPartition]:
    """The topic's partitions, waiting for metadata to arrive."""
    deadline = time.monotonic() + timeout_s
    while True:
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return [TopicPartition(topic, p) for p in sorted(partitions)]
        if time.monotonic() >= deadline:
            raise BrokerUnavailable(f"topic {topic!r} has no partitions after {timeout_s:g}s")
        time.sleep(0.2)
