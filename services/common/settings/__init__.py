"""Settings of every service, validated at start (pydantic-settings).

Every option is an environment variable with the prefix ``GUMBEL_``, nested with ``__``
(``GUMBEL_KAFKA__BOOTSTRAP_SERVERS``, ``GUMBEL_TRAINER__NUM_ACTORS``), and the command line's
flags override them. One ``BaseSettings`` per command (``commands``); each section is a model
of its own module (``kafka``, ``events``, ``producer``, ``trainer``, ``monitor``), and
``sources`` reads them. This package's names are the ones the services import.
"""

from __future__ import annotations

from services.common.settings.commands import (
    MonitorServiceSettings,
    ProducerServiceSettings,
    TrainerServiceSettings,
    UpSettings,
)
from services.common.settings.events import EventSettings
from services.common.settings.kafka import (
    COMPRESSION_TYPES,
    KafkaSettings,
    codec_available,
    parse_bootstrap_servers,
)
from services.common.settings.logs import LogSettings
from services.common.settings.monitor import MonitorSettings
from services.common.settings.producer import (
    DriftStep,
    ProducerSettings,
    parse_drift,
    parse_probabilities,
)
from services.common.settings.sources import SECRETS_DIR_ENV
from services.common.settings.trainer import TrainerSettings

__all__ = [
    "COMPRESSION_TYPES",
    "codec_available",
    "parse_bootstrap_servers",
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
    "parse_drift",
    "parse_probabilities",
]
