"""What the producer emits (``producer.*``): the distribution, its drift schedule, the rate and
the record layout."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_settings import NoDecode

from services.common.event_format import ID_FORMATS
from services.common.schemas import MAX_NAME_LENGTH

__all__ = ["parse_probabilities", "DriftStep", "parse_drift", "ProducerSettings"]


def parse_probabilities(value: Any) -> list[float]:
    """``"0,0,0.1,0.3,0.6"`` or a sequence of numbers → a list of floats that sums to 1."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.strip().strip("[]").split(",") if p.strip()]
        try:
            probs = [float(p) for p in parts]
        except ValueError as exc:
            raise ValueError(f"expected comma-separated numbers, got {value!r}") from exc
    elif isinstance(value, (list, tuple)):
        probs = [float(p) for p in value]
    else:
        raise ValueError(f"expected comma-separated numbers, got {value!r}")
    if len(probs) < 2:
        raise ValueError("needs at least 2 categories")
    if any(not math.isfinite(p) or p < 0 for p in probs):
        raise ValueError("probabilities must be finite and >= 0")
    total = sum(probs)
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"probabilities must sum to 1 (they sum to {total:g})")
    return [p / total for p in probs]


Probabilities = Annotated[list[float], NoDecode, BeforeValidator(parse_probabilities)]


class DriftStep(BaseModel):
    """From ``at`` (records produced, or seconds since start) on, emit ``probabilities``."""

    model_config = ConfigDict(frozen=True)

    at: float = Field(ge=0)
    unit: Literal["records", "seconds"] = "records"
    probabilities: list[float]


_DRIFT_STEP = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s?)\s*=\s*(.+)$")


def parse_drift(value: Any) -> list[DriftStep]:
    """``"100000=0.2,0.2,0.2,0.2,0.2;30s=..."``: after N records (or N seconds) switch."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [v if isinstance(v, DriftStep) else DriftStep.model_validate(v) for v in value]
    if not isinstance(value, str):
        raise ValueError(f"expected 'AT=p0,p1,...;AT=...', got {value!r}")
    steps = []
    for part in value.split(";"):
        if not part.strip():
            continue
        match = _DRIFT_STEP.match(part)
        if match is None:
            raise ValueError(
                f"drift step {part.strip()!r} is not AT=p0,p1,... (AT in records, or seconds "
                "with an 's' suffix)"
            )
        at, seconds, probs = match.groups()
        steps.append(
            DriftStep(
                at=float(at),
                unit="seconds" if seconds else "records",
                probabilities=parse_probabilities(probs),
            )
        )
    return steps


DriftSchedule = Annotated[list[DriftStep], NoDecode, BeforeValidator(parse_drift)]


class ProducerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    probabilities: Probabilities = Field(
        default_factory=lambda: [0.0, 0.0, 0.1, 0.3, 0.6],
        description="the true distribution, comma-separated, sums to 1",
    )
    rate: float = Field(1000.0, ge=0, allow_inf_nan=False,
                        description="records per second; 0 = as fast as possible")
    count: int = Field(0, ge=0, description="stop after this many records; 0 = forever")
    seed: int = Field(0, description="random seed of the stream (same seed, same records)")
    drift: DriftSchedule = Field(
        default_factory=list,
        description="`AT=p0,p1,...;...`: switch distribution after AT records (or AT seconds "
        "with `s`)",
    )
    metrics_host: str = Field("0.0.0.0", description="address of the producer's `/metrics`")
    metrics_port: int = Field(
        9107, ge=0, le=65535,
        description="port of the producer's `/metrics` (in `up`, `--producer-port`: there "
        "`--port` is the monitor's)",
    )
    linger_s: float = Field(
        0.0, ge=0,
        description="keep serving `/metrics` this long after the last record, so a scrape "
        "sees the total",
    )
    format: Literal[ID_FORMATS] | None = Field(  # type: ignore[valid-type]
        None,
        description="deprecated, use `events.format` (`--format`); when set it wins over it",
    )
    values_per_record: int = Field(
        1024, ge=1, le=1_000_000, description="values in one packed record"
    )
    from_model: str | None = Field(
        None, min_length=1, max_length=MAX_NAME_LENGTH,
        description="a synthetic twin: draw from the newest estimate of this model id on the "
        "estimates topic (Gumbel-max), following each new one, instead of `probabilities`",
    )

    @model_validator(mode="after")
    def _twin_has_no_distribution_of_its_own(self) -> ProducerSettings:
        if self.from_model is not None:
            given = [name for name in ("probabilities", "drift") if name in self.model_fields_set]
            if given:
                raise ValueError(
                    f"from_model draws from the model's estimates; {' and '.join(given)} "
                    "cannot be set with it")
        return self

    @model_validator(mode="after")
    def _drift_keeps_categories(self) -> ProducerSettings:
        for step in self.drift:
            if len(step.probabilities) != len(self.probabilities):
                raise ValueError(
                    f"drift step at {step.at:g} {step.unit} has {len(step.probabilities)} "
                    f"categories, the stream has {len(self.probabilities)}"
                )
        return self
