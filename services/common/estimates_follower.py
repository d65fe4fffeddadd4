"""Follow the estimates topic from its last few messages on, offering each value to a sink:
the monitor's state of the models it shows, or the twin producer's newest estimate."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from kafka import TopicPartition

from services.common.kafka import topic_partitions

__all__ = ["EstimateFollower", "EstimateSink"]

log = logging.getLogger(__name__)

# On start, re-read this many messages per partition rather than exactly the last one: the
# last offset can be a transaction marker, and with several models on the topic the newest
# estimate of the followed model need not be the very last message.
LOOKBACK = 100


class EstimateSink(Protocol):
    def offer(self, value: bytes | None, where: str = "") -> Any:
        """Take one message value of the topic (``where``: ``topic/partition@offset``)."""


class EstimateFollower:
    """Manually assigned (no consumer group: works on Tansu too), never commits offsets."""

    def __init__(
        self, consumer: Any, topic: str, state: EstimateSink, lookback: int = LOOKBACK
    ) -> None:
        self._consumer = consumer
        self._topic = topic
        self._state = state
        self._lookback = lookback

    def start(self, metadata_timeout_s: float = 30.0) -> list[TopicPartition]:
        """Assign every partition and seek to ``lookback`` messages before its end."""
        partitions = topic_partitions(self._consumer, self._topic, metadata_timeout_s)
        self._consumer.assign(partitions)
        begin = self._consumer.beginning_offsets(partitions)
        end = self._consumer.end_offsets(partitions)
        for tp in partitions:
            self._consumer.seek(tp, max(begin[tp], end[tp] - self._lookback))
        log.info(
            "following %s (%d partition(s), %d message(s) on it)", self._topic, len(partitions),
            sum(end[tp] - begin[tp] for tp in partitions),
        )
        return partitions

    def poll_once(self, timeout_ms: int = 500) -> int:
        """Poll once and offer every message; returns how many messages came."""
        batches = self._consumer.poll(timeout_ms=timeout_ms)
        seen = 0
        for tp, messages in batches.items():
            for message in messages:
                self._state.offer(message.value, f"{tp.topic}/{tp.partition}@{message.offset}")
                seen += 1
        return seen
