"""The messages gumbel-stream publishes: the ``Estimate`` on the ``estimates`` topic."""

from __future__ import annotations

import json
from itertools import pairwise
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import from_json

__all__ = [
    "BACKPRESSURE_POLICIES",
    "DEAD_LETTER_REASONS",
    "ESTIMATE_CONTENT_TYPE",
    "ESTIMATE_HEADERS",
    "MAX_ACTORS",
    "MAX_CATEGORIES",
    "MAX_COUNT",
    "MAX_PARTITIONS",
    "SCHEMA_VERSION",
    "ActorMetrics",
    "Count",
    "Estimate",
    "HISTOGRAM_MAX_BUCKETS",
    "Histogram",
    "estimate_json_schema",
]

SCHEMA_VERSION = 1
# Headers of every message on the estimates topic: what the value is, without parsing it.
ESTIMATE_CONTENT_TYPE = "application/json"
ESTIMATE_HEADERS: list[tuple[str, bytes]] = [
    ("content-type", ESTIMATE_CONTENT_TYPE.encode()),
    ("schema-version", str(SCHEMA_VERSION).encode()),
]

# Kafka offsets are signed 64-bit, and so is every counter a consumer may store: a larger
# integer is not a count but a fault (and 10**400 would not even convert to a float).
MAX_COUNT = 2**63 - 1
# The largest K the packed u16 record format carries (values 0..65,535).
MAX_CATEGORIES = 65_536
# Model ids, estimator and policy names are names, not payloads.
MAX_NAME_LENGTH = 256
# Per-actor and per-partition metrics become Prometheus label values: these bounds keep the
# label sets, and the message, small whatever a sender claims.
MAX_ACTORS = 1_024
MAX_PARTITIONS = 10_000
# A histogram's buckets become Prometheus series (one per bucket): a bounded label set.
HISTOGRAM_MAX_BUCKETS = 64

# The trainer's backpressure policies; a consumer labels anything else "other".
BACKPRESSURE_POLICIES = ("learn_all", "sample")
# Why a record went to the dead-letter topic; a consumer sums any other reason as "other".
DEAD_LETTER_REASONS = (
    "empty", "too_large", "not_utf8", "not_integer", "out_of_range", "unknown_format",
    "truncated", "not_json", "missing_field", "unknown_category",
)

Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Name = Annotated[str, Field(max_length=MAX_NAME_LENGTH)]
Probabilities = Annotated[list[Annotated[float, Field(ge=0)]], Field(max_length=MAX_CATEGORIES)]
# A Kafka partition (a non-negative int32) as a JSON object key.
Partition = Annotated[str, Field(pattern=r"^[0-9]{1,10}$")]
Seconds = Annotated[float, Field(ge=0)]


class Histogram(BaseModel):
    """Observations of a duration in seconds, cumulative since the measuring process started,
    as Prometheus reads a histogram: ``counts[i]`` observations at most ``bounds[i]``, the
    last (``le="+Inf"``) all of them, and ``sum`` their total.

    The counts never fall within one process; a new process (a restart) starts again from 0,
    which Prometheus's ``rate()`` reads as the counter reset it is.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    bounds: list[Annotated[float, Field(gt=0)]] = Field(
        max_length=HISTOGRAM_MAX_BUCKETS - 1,
        description="the buckets' upper bounds in seconds, increasing (+Inf is implied)",
    )
    counts: list[Count] = Field(
        max_length=HISTOGRAM_MAX_BUCKETS,
        description="cumulative: observations at most each bound, then all of them (+Inf)",
    )
    sum: float = Field(ge=0, description="the observations' total, in seconds")

    @model_validator(mode="after")
    def _buckets_are_cumulative(self) -> Histogram:
        if len(self.counts) != len(self.bounds) + 1:
            raise ValueError(f"counts has {len(self.counts)} values, expected one per bound "
                             f"and one for +Inf: {len(self.bounds) + 1}")
        if any(b <= a for a, b in pairwise(self.bounds)):
            raise ValueError(f"bounds must increase: {self.bounds}")
        if any(b < a for a, b in pairwise(self.counts)):
            raise ValueError(f"counts must be cumulative (never falling): {self.counts}")
        return self

    @property
    def count(self) -> int:
        return self.counts[-1]


class ActorMetrics(BaseModel):
    """How one ingest actor is doing, with the learner it feeds: what an operator needs to see
    the trainer itself.

    Rates and times are recent averages (the last few seconds; kept one release for the
    dashboards that read them: ``records_read`` and the Estimate's histograms replace them);
    counts are the actor's own,
    the step and checkpoint figures the model's learner's. ``checkpoint_failures`` counts
    since the learner's process started and ``restarts`` since the trainer's driver started:
    both go back to 0 with their process.
    Every field but ``index`` has a default, so a sender may grow new ones.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    index: int = Field(ge=0, lt=MAX_ACTORS, description="the actor's index, 0..actors-1")
    records_per_s: float = Field(0.0, ge=0, description="records the actor read per second, "
                                 "recent")
    step_seconds: Seconds = Field(0.0, description="the learner's mean seconds per GAN step, "
                                  "recent")
    poll_to_learn_seconds: Seconds = Field(
        0.0, description="age of the newest record the learner stepped on, at that step"
    )
    queue_depth: Count = Field(0, description="blocks the actor holds because the learner had "
                               "no room yet (those partitions are not read meanwhile)")
    lag: Count = Field(0, description="records on the actor's partitions not learned yet")
    lag_by_partition: dict[Partition, Count] = Field(
        default_factory=dict, max_length=MAX_PARTITIONS,
        description='{"<partition>": records not learned yet}',
    )
    checkpoint_time: float | None = Field(
        None, ge=0, description="unix s of the learner's last checkpoint; None: none written yet "
        "by this process",
    )
    checkpoint_seconds: Seconds = Field(0.0, description="duration of the last checkpoint")
    checkpoint_failures: Count = Field(0, description="checkpoints that failed")
    restarts: Count = Field(0, description="times Ray restarted the actor (a new process)")
    dead_letters: Count = Field(0, description="malformed records the actor sent to the "
                                "dead-letter topic")
    learned_fraction: float = Field(
        1.0, ge=0, le=1, description="of the values counted, the share the GAN learned"
    )
    # Added in the metrics work (issue 22 §3); the default keeps earlier messages valid.
    records_read: Count = Field(0, description="records the actor read from Kafka since its "
                                "process started (a counter: back to 0 with a new process)")


class Estimate(BaseModel):
    """What the trainer has learned, published as UTF-8 JSON keyed by ``model_id``.

    Every number is bounded and finite (``allow_inf_nan=False``) so that a message that
    validates can always be shown: a NaN loss or a count of 10**400 is a fault of the sender,
    and the consumer counts it as an invalid message instead of failing on it later.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    schema_version: int = SCHEMA_VERSION
    model_id: Name
    timestamp: float = Field(ge=0, description="unix seconds at which the estimate was made")
    step: Count
    samples_seen: Count = Field(description="records learned from, all actors")
    dead_letters: Count = Field(description="malformed records, all actors")
    num_categories: int = Field(ge=2, le=MAX_CATEGORIES)
    probabilities: Probabilities
    baseline_probabilities: Probabilities
    temperature: float = Field(gt=0)
    generator_loss: float
    discriminator_loss: float
    estimator: Name
    actors: int = Field(ge=1, le=MAX_COUNT)
    offsets: dict[str, Count] = Field(description='{"<partition>": next_offset}')
    # Added in the backpressure work; defaults keep earlier messages valid.
    backpressure: Name = Field("learn_all", description="learn_all or sample")
    learned_fraction: float = Field(
        1.0, ge=0, le=1, description="of samples_seen, the share the GAN learned from"
    )
    consumer_lag: Count = Field(0, description="records on the topic not yet consumed")
    # Added in the reliability work (issue 10); defaults keep earlier messages valid.
    data_timestamp: float | None = Field(
        None, ge=0,
        description="unix s: as of this time every actor had learned everything it had polled "
        "(the stalest actor's progress time)",
    )
    max_actor_status_age_s: float = Field(
        0.0, ge=0, description="age of the oldest actor status behind the estimate"
    )
    records_skipped: Count = Field(
        0, description="records the trainer knowingly skipped (e.g. after a corrupt checkpoint)"
    )
    dead_letters_by_reason: dict[Name, Count] = Field(
        default_factory=dict, description="dead letters per reason (DEAD_LETTER_REASONS)"
    )
    dead_letters_truncated: Count = Field(
        0, description="dead letters written truncated: too large for the dead-letter topic"
    )
    # Added in the drift work (issue 11); the defaults keep earlier messages valid.
    window_baseline_probabilities: Probabilities | None = Field(
        None, description="a forgetting counter over about the last window_records records: "
        "the yardstick of a learner that follows drift (None: the trainer keeps none)",
    )
    window_records: Count = Field(0, description="the memory of that counter, in records")
    drift_detections: Count = Field(0, description="drifts the model's learner detected")
    # Added in the Ray cluster work (issue 13); the default keeps earlier messages valid.
    nodes: Count = Field(0, description="Ray nodes the actors ran on (0: not known)")
    # Added in the trainer metrics work (issue 12 §3); the default keeps earlier messages valid.
    actor_metrics: list[ActorMetrics] = Field(
        default_factory=list, max_length=MAX_ACTORS,
        description="per actor, one entry each, sorted by index",
    )
    # Added in the event topics work (issue 15 §1); the default keeps earlier messages valid.
    category_names: list[Name] | None = Field(
        None, max_length=MAX_CATEGORIES,
        description="the categories' names in id order, the `category` label of the monitor's "
        "metrics (None: the ids are the labels)",
    )
    # Added with one learner per model (issue 21); the default keeps earlier messages valid.
    values_by_partition: dict[Partition, Count] = Field(
        default_factory=dict, max_length=MAX_PARTITIONS,
        description='{"<partition>": values learned from it}: with offsets, the account of '
        "every partition (one value a record: values = next offset - first offset)",
    )

    # Added in the metrics work (issue 22 §3); the defaults keep earlier messages valid.
    # The learner's latencies, cumulative since its process started (None: not measured).
    step_duration: Histogram | None = Field(
        None, description="seconds per GAN step of the model's learner, one observation a step"
    )
    record_to_step: Histogram | None = Field(
        None, description="seconds from a record's Kafka timestamp to the GAN step that "
        "learned it, one observation per value learned",
    )
    poll_to_step: Histogram | None = Field(
        None, description="seconds from the ingest actor's poll of a record to the GAN step "
        "that learned it, one observation per value learned",
    )

    @model_validator(mode="after")
    def _distributions_are_valid(self) -> Estimate:
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(f"unsupported schema_version {self.schema_version}")
        for name in ("probabilities", "baseline_probabilities", "window_baseline_probabilities"):
            probs = getattr(self, name)
            if probs is None:  # only the window is optional
                continue
            if len(probs) != self.num_categories:
                raise ValueError(f"{name} has {len(probs)} values, expected {self.num_categories}")
            if abs(sum(probs) - 1.0) > 1e-4:
                raise ValueError(f"{name} must sum to 1 (sum {sum(probs):g})")
        names = self.category_names
        if names is not None and (len(names) != self.num_categories
                                  or len(set(names)) != len(names)):
            raise ValueError(f"category_names must be {self.num_categories} distinct names "
                             f"(got {len(names)}, {len(set(names))} distinct)")
        indices = [m.index for m in self.actor_metrics]
        if len(set(indices)) != len(indices):
            # Two entries for one actor would be two samples of one Prometheus series.
            raise ValueError(f"actor_metrics has an index more than once: {sorted(indices)}")
        return self

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes, *, ignore_unknown: bool = False) -> Estimate:
        """Parse a message; with ``ignore_unknown`` a field this version does not know is
        dropped (a newer sender's addition) instead of failing, as a consumer should.

        Every known field is validated the same either way: only ``extra_forbidden`` errors
        are forgiven, and the rest of the message is validated again without those fields.
        """
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            unknown = [e["loc"] for e in exc.errors() if e["type"] == "extra_forbidden"]
            if not ignore_unknown or not unknown:
                raise
        value = from_json(data)
        for loc in unknown:
            _delete(value, loc)
        # Back to JSON, so the known fields are validated in the same (JSON) mode as above.
        return cls.model_validate_json(json.dumps(value))


def _delete(value: Any, loc: tuple[str | int, ...]) -> None:
    """Remove the item at ``loc`` (a pydantic error location) from parsed JSON."""
    *parents, last = loc
    for key in parents:
        value = value[key]
    del value[last]


def _open(schema: Any) -> Any:
    """``schema`` without ``additionalProperties: false``: a reader of it accepts new fields."""
    if isinstance(schema, dict):
        return {k: _open(v) for k, v in schema.items()
                if not (k == "additionalProperties" and v is False)}
    if isinstance(schema, list):
        return [_open(v) for v in schema]
    return schema


def estimate_json_schema() -> dict[str, Any]:
    """The JSON Schema of ``Estimate`` as published in docs/estimate.schema.json.

    Generated from the model. It is open (no ``additionalProperties: false``) where the
    model forbids extras: the model checks what this trainer sends, the schema tells a
    consumer what it may read, and a later schema_version 1 sender may add fields.
    """
    schema = _open(Estimate.model_json_schema())
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/gumbel-stream/gumbel-stream/blob/main/docs/estimate.schema.json",
        **schema,
    }
