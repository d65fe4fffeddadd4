"""Waiting for the broker at start: a broker that never answers is given up on in time."""

from __future__ import annotations

import logging
import time

import pytest

from services.brokers import free_port
from services.common.kafka import BrokerUnavailable, broker_ready, wait_for_broker
from services.common.settings import KafkaSettings


def test_an_unreachable_broker_is_given_up_on_within_the_connect_timeout() -> None:
    """The message says "within 1s": it must not take the 5 s of one full attempt."""
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    settings = KafkaSettings(bootstrap_servers=address, connect_timeout_s=1)
    started = time.monotonic()
    expected = rf"Kafka at {address} did not answer within 1s \(GUMBEL_KAFKA__CONNECT_TIMEOUT_S\)"
    with pytest.raises(BrokerUnavailable, match=expected):
        wait_for_broker(settings)
    assert time.monotonic() - started < 2.0


def test_a_command_that_cannot_reach_the_broker_gets_false_and_one_error_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    address = f"127.0.0.1:{free_port()}"
    settings = KafkaSettings(bootstrap_servers=address, connect_timeout_s=0.5)
    with caplog.at_level(logging.ERROR, logger="services.common.kafka"):
        assert broker_ready(settings, create_topics=False) is False
    [error] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert f"Kafka at {address} did not answer" in error.getMessage()
