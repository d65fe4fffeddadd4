"""Every producer we run compresses with ``kafka.compression_type``; its codec is installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import services.common.kafka as kafka_adapter
import services.common.settings.kafka as settings_module
from services.common.settings import (
    COMPRESSION_TYPES,
    KafkaSettings,
    ProducerServiceSettings,
    codec_available,
)

REPO = Path(__file__).resolve().parents[3]


class CapturingProducer:
    def __init__(self, **config: Any) -> None:
        self.config = config


@pytest.fixture()
def captured(monkeypatch: pytest.MonkeyPatch) -> type[CapturingProducer]:
    monkeypatch.setattr(kafka_adapter, "KafkaProducer", CapturingProducer)
    return CapturingProducer


def test_the_default_is_zstd_and_every_producer_gets_it(captured: Any) -> None:
    producer = kafka_adapter.make_producer(KafkaSettings())
    assert KafkaSettings().compression_type == "zstd"
    assert producer.config["compression_type"] == "zstd"


def test_none_is_kafka_pythons_none(captured: Any) -> None:
    producer = kafka_adapter.make_producer(KafkaSettings(compression_type="none"))
    assert producer.config["compression_type"] is None


def test_the_environment_variable_sets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUMBEL_KAFKA__COMPRESSION_TYPE", "lz4")
    assert ProducerServiceSettings().kafka.compression_type == "lz4"


def test_a_codec_whose_library_is_missing_fails_at_start_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(settings_module, "codec_available", lambda codec: codec == "none")
    with pytest.raises(ValidationError) as info:
        KafkaSettings(compression_type="zstd")
    [error] = info.value.errors()
    assert error["loc"] == ("compression_type",)
    assert "pip install zstandard" in error["msg"]


def test_an_unknown_codec_is_refused() -> None:
    with pytest.raises(ValidationError):
        KafkaSettings(compression_type="brotli")


def test_the_services_extra_brings_the_default_codec_and_lz4() -> None:
    """The image (``.[services]``) and deploy/install-dev.sh (``.[dev]``) install them."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    services = [req.split(">")[0].split("=")[0].strip()
                for req in project["optional-dependencies"]["services"]]
    assert {"zstandard", "lz4"} <= set(services)
    assert "gumbel-stream[services,embedded,bench]" in project["optional-dependencies"]["dev"]
    assert "-e '.[dev]'" in (REPO / "deploy" / "install-dev.sh").read_text()
    installs = [line for line in (REPO / "deploy" / "Dockerfile").read_text().splitlines()
                if line.startswith("RUN pip install")]
    assert any(line.endswith('".[services]"') for line in installs), installs
    assert codec_available("zstd") and codec_available("lz4")  # installed here too


def test_every_kafka_codec_is_offered() -> None:
    assert set(COMPRESSION_TYPES) == {"none", "gzip", "snappy", "lz4", "zstd"}
