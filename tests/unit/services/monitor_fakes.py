"""Shared test helpers for the monitor: a valid Estimate and a fake manually-assigned consumer."""

from __future__ import annotations

import time
from collections import namedtuple
from typing import Any

from kafka import TopicPartition

from services.common.schemas import Estimate

Message = namedtuple("Message", "offset key value")


def make_estimate(**fields: Any) -> Estimate:
    values: dict[str, Any] = {
        "model_id": "default",
        "timestamp": time.time(),
        "step": 10,
        "samples_seen": 5000,
        "dead_letters": 3,
        "num_categories": 3,
        "probabilities": [0.2, 0.3, 0.5],
        "baseline_probabilities": [0.25, 0.25, 0.5],
        "temperature": 0.7,
        "generator_loss": 0.69,
        "discriminator_loss": 1.38,
        "estimator": "st",
        "actors": 2,
        "offsets": {"0": 5000},
    }
    values.update(fields)
    return Estimate(**values)


class FakeConsumer:
    """One topic whose partitions hold lists of values; poll returns what lies past the seek."""

    def __init__(self, topic: str, partitions: dict[int, list[bytes]]) -> None:
        self.topic = topic
        self.log = partitions
        self.position: dict[TopicPartition, int] = {}
        self.assigned: list[TopicPartition] = []

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(self.log) if topic == self.topic else None

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned = list(partitions)

    def beginning_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: 0 for tp in partitions}

    def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.log[tp.partition]) for tp in partitions}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.position[tp] = offset

    def poll(self, timeout_ms: int = 0) -> dict[TopicPartition, list[Message]]:
        out = {}
        for tp in self.assigned:
            start = self.position.get(tp, 0)
            values = self.log[tp.partition][start:]
            if values:
                out[tp] = [Message(start + i, None, v) for i, v in enumerate(values)]
                self.position[tp] = start + len(values)
        return out

    def close(self) -> None:
        pass
