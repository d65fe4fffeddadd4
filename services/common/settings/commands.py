"""Each command's settings: the sections it reads, and the checks across them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from services.common.settings.events import EventSettings, check_names
from services.common.settings.kafka import KafkaSettings
from services.common.settings.monitor import MonitorSettings
from services.common.settings.producer import ProducerSettings
from services.common.settings.sources import SERVICE_CONFIG, ServiceSettings
from services.common.settings.trainer import TrainerSettings

__all__ = [
    "ProducerServiceSettings", "TrainerServiceSettings", "MonitorServiceSettings", "UpSettings"
]


class ProducerServiceSettings(ServiceSettings):
    model_config = SERVICE_CONFIG
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    events: EventSettings = Field(default_factory=EventSettings)
    producer: ProducerSettings = Field(default_factory=ProducerSettings)

    @model_validator(mode="after")
    def _events_match(self) -> ProducerServiceSettings:
        _producer_events(self.producer, self.events)
        return self


class TrainerServiceSettings(ServiceSettings):
    model_config = SERVICE_CONFIG
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    events: EventSettings = Field(default_factory=EventSettings)
    trainer: TrainerSettings = Field(default_factory=TrainerSettings)

    @model_validator(mode="after")
    def _events_match(self) -> TrainerServiceSettings:
        check_names(self.events, self.trainer.num_categories, "trainer.num_categories")
        return self


def _producer_events(producer: ProducerSettings, events: EventSettings) -> None:
    if producer.format is not None:  # the deprecated spelling of events.format
        events.format = producer.format
    if producer.from_model is None:  # a twin's K is its model's, checked at its first estimate
        check_names(events, len(producer.probabilities), "the length of producer.probabilities")


class MonitorServiceSettings(ServiceSettings):
    model_config = SERVICE_CONFIG
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)


class UpSettings(ServiceSettings):
    """``gumbel-stream up``: all services on one machine (embedded broker by default)."""

    model_config = SERVICE_CONFIG
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
        check_names(self.events, self.trainer.num_categories, "trainer.num_categories")
        return self
