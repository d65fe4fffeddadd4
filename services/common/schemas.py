"""The messages gumbel-stream publishes: the ``Estimate`` on the ``estimates`` topic."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["SCHEMA_VERSION", "Estimate"]

SCHEMA_VERSION = 1


class Estimate(BaseModel):
    """What the trainer has learned, published as UTF-8 JSON keyed by ``model_id``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = SCHEMA_VERSION
    model_id: str
    timestamp: float = Field(description="unix seconds")
    step: int = Field(ge=0)
    samples_seen: int = Field(ge=0, description="records learned from, all actors")
    dead_letters: int = Field(ge=0, description="malformed records, all actors")
    num_categories: int = Field(ge=2)
    probabilities: list[float]
    baseline_probabilities: list[float]
    temperature: float = Field(gt=0)
    generator_loss: float
    discriminator_loss: float
    estimator: str
    actors: int = Field(ge=1)
    offsets: dict[str, int] = Field(description='{"<partition>": next_offset}')
    # Added in the backpressure work; defaults keep earlier messages valid.
    backpressure: str = Field("learn_all", description="learn_all or sample")
    learned_fraction: float = Field(
        1.0, ge=0, le=1, description="of samples_seen, the share the GAN learned from"
    )
    consumer_lag: int = Field(0, ge=0, description="records on the topic not yet consumed")

    @model_validator(mode="after")
    def _distributions_are_valid(self) -> Estimate:
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(f"unsupported schema_version {self.schema_version}")
        for name in ("probabilities", "baseline_probabilities"):
            probs = getattr(self, name)
            if len(probs) != self.num_categories:
                raise ValueError(f"{name} has {len(probs)} values, expected {self.num_categories}")
            if any(not math.isfinite(p) or p < 0 for p in probs):
                raise ValueError(f"{name} must be finite and >= 0")
            if abs(sum(probs) - 1.0) > 1e-4:
                raise ValueError(f"{name} must sum to 1 (sum {sum(probs):g})")
        return self

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> Estimate:
        return cls.model_validate_json(data)
