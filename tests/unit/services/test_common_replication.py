"""Replication settings the cluster can honour, checked before topics are created, each
failure one line naming the setting (Kafka answers a bare INVALID_REPLICATION_FACTOR)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.common.errors import StartupError
from services.common.kafka import check_replication
from services.common.settings import KafkaSettings


def test_more_replicas_than_brokers_names_the_setting() -> None:
    settings = KafkaSettings(replication_factor=3)
    check_replication(settings, brokers=3)
    with pytest.raises(StartupError, match=r"kafka.replication_factor \(GUMBEL_KAFKA__"
                       r"REPLICATION_FACTOR\): 3, but the cluster .* has 1 broker$"):
        check_replication(settings, brokers=1)


def test_min_insync_above_the_replication_factor_is_refused_when_read() -> None:
    KafkaSettings(replication_factor=3, min_insync_replicas=2)
    with pytest.raises(ValidationError, match="min_insync_replicas \\(3\\) is more than "
                       "replication_factor \\(2\\)"):
        KafkaSettings(replication_factor=2, min_insync_replicas=3)
