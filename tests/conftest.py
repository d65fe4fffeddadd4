"""Shared fixtures: real brokers started as child processes, and marker-driven skips."""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

# Triton reads TRITON_INTERPRET when it is imported and when kernels are defined, so the
# choice must be made before any test imports it: without CUDA, the kernel tests run under
# Triton's interpreter on the CPU (the sm_90 compile test clears it in its own subprocess).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# kafka-python logs every connection at INFO; keep test output readable.
logging.getLogger("kafka").setLevel(logging.WARNING)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    has_cuda = torch.cuda.is_available()
    skip_gpu = pytest.mark.skip(reason="needs CUDA (no GPU on this machine)")
    for item in items:
        # The marker, not the keyword: a test *named* ...gpu... is not a GPU test.
        if item.get_closest_marker("gpu") is not None and not has_cuda:
            item.add_marker(skip_gpu)


def ci_requires_apache_kafka() -> bool:
    """Under CI the Kafka tests may not fall back to Tansu."""
    return os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real Apache Kafka broker (KRaft, one node, pinned version) for the whole session.

    Where no JVM exists it falls back to the embedded Tansu broker and says so, except under
    ``CI=true``: the suite promises real Apache Kafka there, so a missing JVM is an error.
    """
    from services.brokers import java_available, start_apache_kafka, start_tansu

    workdir = tmp_path_factory.mktemp("kafka")
    if java_available():
        broker = start_apache_kafka(workdir)
    elif ci_requires_apache_kafka():
        pytest.fail("CI=true but no JVM: the Kafka tests must run against Apache Kafka "
                    "(Java 17 and Maven: deploy/install-dev.sh then fetches the broker jars)",
                    pytrace=False)
    else:
        warnings.warn("no JVM: Kafka tests run against the embedded Tansu broker", stacklevel=1)
        broker = start_tansu(workdir)
    yield broker
    broker.stop()


@pytest.fixture()
def fresh_kafka_broker(tmp_path: Path) -> Iterator[object]:
    """A broker of its own, for tests that kill or restart it."""
    from services.brokers import java_available, start_apache_kafka

    if not java_available():
        pytest.skip("needs Java for Apache Kafka")
    broker = start_apache_kafka(tmp_path / "kafka")
    yield broker
    broker.kill()


# The one SASL user of the session's SASL broker (PLAIN and SCRAM-SHA-256).
SASL_USER, SASL_PASSWORD = "gumbel", "s3cret-pa55"


@pytest.fixture(scope="session")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Apache Kafka whose client listener is SASL_PLAINTEXT (user SASL_USER)."""
    from services.brokers import java_available
    from tests.support.brokers import start_apache_kafka_node

    if not java_available():
        pytest.skip("needs Java for Apache Kafka")
    broker = start_apache_kafka_node(
        tmp_path_factory.mktemp("sasl"), sasl_users={SASL_USER: SASL_PASSWORD}
    )
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def tansu_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The embedded Tansu broker (memory only), for the `gumbel-stream up` smoke path."""
    from services.brokers import start_tansu

    broker = start_tansu(tmp_path_factory.mktemp("tansu"))
    yield broker
    broker.stop()


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"`{name}` is not installed (deploy/install-dev.sh installs it)")
    return path
