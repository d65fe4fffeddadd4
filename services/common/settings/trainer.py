"""How the trainer learns (``trainer.*``): the model, its estimator, its Ray actors and its
checkpoints."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import NoDecode

from services.common.schemas import MAX_ACTORS, MAX_CATEGORIES, MAX_NAME_LENGTH

__all__ = [
    "MODEL_ID_MAX_LENGTH", "check_model_id", "check_estimator", "parse_json_object",
    "TrainerSettings"
]


# A model id names a directory under checkpoint_dir and a consumer group: no path separators,
# no leading dot (".." or a hidden directory), short enough for any file system, and within
# the Estimate's limit on names (its model_id), so a publish never refuses it.
MODEL_ID_MAX_LENGTH = 128
assert MODEL_ID_MAX_LENGTH <= MAX_NAME_LENGTH
MODEL_ID_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{MODEL_ID_MAX_LENGTH - 1}}}$"


def check_model_id(value: str) -> str:
    """A model id that is safe as a directory name under ``checkpoint_dir``."""
    if not re.match(MODEL_ID_PATTERN, value):
        raise ValueError(
            "a model id names a directory under the checkpoint directory and a consumer "
            "group: letters, digits, '.', '_' and '-' only, starting with a letter or digit, "
            f"at most {MODEL_ID_MAX_LENGTH} characters")
    return value



def check_estimator(name: str) -> str:
    """A name of ``gumbel_core.ESTIMATORS``, the library's one list of estimators."""
    # Imported here: the library brings torch, which only a trainer's settings need.
    from gumbel_core import ESTIMATORS

    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; choose one of {', '.join(ESTIMATORS)}")
    return name


def parse_json_object(value: Any) -> Any:
    """A JSON object from the environment's text (``NoDecode``: pydantic-settings would blame
    the whole section for bad JSON instead of the setting)."""
    if not isinstance(value, str):
        return value
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg}): write an object like "
                         '{"gumbel-learner": 1}') from None
    if not isinstance(parsed, dict):
        raise ValueError('not a JSON object: write one like {"gumbel-learner": 1}')
    return parsed


# Ray custom resources: a name and an amount each (TrainerSettings checks them).
RayResources = Annotated[dict[str, float], NoDecode, BeforeValidator(parse_json_object)]


class TrainerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    num_actors: int = Field(
        2, ge=1, le=MAX_ACTORS,
        description="ingest actors: Kafka consumers that read the partitions (p mod N) "
        f"and feed the model's one learner; CPUs only (at most {MAX_ACTORS:,}, the Estimate's "
        "limit)",
    )
    gpus_per_actor: float = Field(
        0.0, ge=0, description="GPUs of the model's learner actor (fractions allowed; 0 = CPU); "
        "ingest actors never take one",
    )
    estimator: Annotated[str, AfterValidator(check_estimator)] = Field(
        "st", description="the categorical gradient estimator of the GAN: a name in "
        "`gumbel_core.ESTIMATORS` (`st`: straight-through Gumbel-softmax; docs/quality.md "
        "compares them)",
    )
    num_categories: int = Field(
        5, ge=2, le=MAX_CATEGORIES,
        description=f"K: categories are `0..K-1` (at most {MAX_CATEGORIES:,}, the Estimate's "
        "limit)",
    )
    seed: int = Field(0, description="random seed of the learner")
    model_id: Annotated[str, AfterValidator(check_model_id)] = Field(
        "default",
        description="key of the published estimates; it names a checkpoint directory and "
        "a consumer group, so letters, digits, `.`, `_` and `-` only, starting with a letter "
        f"or digit, at most {MODEL_ID_MAX_LENGTH} characters",
    )
    group_id: str | None = Field(
        None, min_length=1,
        description="Kafka consumer group (offset commits); unset: `gumbel-trainer-<model_id>`, "
        "so trainers of different models never share one (before: `gumbel-trainer`)",
    )
    max_batch: int = Field(4096, ge=1, description="most records one Kafka poll returns")
    window_records: int = Field(
        10_000, ge=100, le=10**9,
        description="memory, in records of the whole stream, of the forgetting counter that "
        "the published estimate is compared with (gumbel_window_baseline_probability, "
        "gumbel_total_variation): a learner that follows a drift agrees with it again",
    )
    waiting_blocks: int = Field(
        16, ge=1, le=1024,
        description="blocks (a poll's records of one partition) that may wait in the learner "
        "per partition; a partition at the cap is paused by its ingest actor until there is "
        "room (a partition far ahead in event time waits without memory growing)",
    )
    idle_s: float = Field(
        30.0, gt=0, le=3600,
        description="a partition whose ingest actor sent nothing this long (no block, no "
        "report; they report every 0.5 s) no longer holds the others back in the learner's "
        "event-time merge: its actor is gone (a slow one still holds them)",
    )
    step_size: int = Field(
        256, ge=1,
        description="records per GAN step while the learner keeps up (the quality table's "
        "batch); behind, each step takes all that waits instead, so every record is learned",
    )
    poll_timeout_ms: int = Field(200, ge=1, description="longest wait of one Kafka poll")
    partition_refresh_s: float = Field(
        30.0, gt=0, le=86_400,
        description="how often each actor looks for partitions added to the numbers topic "
        "while it runs (and learns those it owns, from their beginning)",
    )
    backpressure: Literal["learn_all", "sample"] = Field(
        "learn_all",
        description="when the stream outruns the GAN: `learn_all` learns every record in "
        "fewer, larger steps; `sample` keeps steps of `step_size`, learns as many as keep up "
        "and only counts the rest in the baseline (`gumbel_learned_fraction`)",
    )
    publish_interval_s: float = Field(
        2.0, gt=0, description="seconds between published estimates"
    )
    checkpoint_dir: Path | None = Field(
        Path("checkpoints"), description="where checkpoints (model + offsets) go"
    )
    checkpoint_interval_s: float = Field(
        10.0, gt=0, description="seconds between checkpoints"
    )
    max_restarts: int = Field(-1, ge=-1, description="Ray restarts of a dead actor; -1 = always")
    on_corrupt_checkpoint: Literal["fail", "relearn", "accept_loss"] = Field(
        "fail",
        description="when every kept checkpoint of an actor is corrupt: `fail` (stop at start, "
        "naming the files), `relearn` (from the earliest offset the topic holds) or "
        "`accept_loss` (resume at the group's committed offsets); the records that cannot "
        "reach the model are logged as an ERROR and counted (`records_skipped`)",
    )
    ray_address: str | None = Field(None, description="join this Ray cluster (or RAY_ADDRESS)")
    ray_auth_token: SecretStr | None = Field(
        None, description="the Ray cluster's token when it uses token authentication (Ray "
        ">= 2.60 heads do; else RAY_AUTH_TOKEN or ~/.ray/auth_token with RAY_AUTH_MODE=token)",
    )
    cpus_per_actor: float = Field(
        1.0, ge=0, description="CPUs each actor asks Ray for (it learns on one torch thread); "
        "with the SPREAD strategy a cluster of N nodes trains on N nodes. 0 packs actors "
        "anywhere",
    )
    learner_resources: RayResources = Field(
        default_factory=dict,
        description="Ray custom resources the learner asks for, as JSON (e.g. "
        "`{\"gumbel-learner\": 1}`): only a node that offers them runs it and the checks of "
        "its checkpoint directory (on Kubernetes the worker group that mounts the "
        "ReadWriteOnce checkpoint volume); `{}`: any node",
    )
    health_file: Path | None = Field(
        None,
        description="a file whose modification time the driver keeps at the learner's last "
        "checkpoint: a probe finds the trainer stuck or gone without the checkpoint volume "
        "(the Kubernetes driver pod's); unset: none",
    )

    @field_validator("learner_resources")
    @classmethod
    def _custom_resources_only(cls, value: dict[str, float]) -> dict[str, float]:
        # Ray refuses these in resources= (they have num_cpus/num_gpus/memory of their own).
        built_in = sorted(name for name in value if name in {"CPU", "GPU", "memory"} or not name)
        if built_in:
            raise ValueError(
                f"{built_in[0]!r} is not a custom resource: name one the learner's worker "
                "group offers (rayStartParams resources); CPUs and GPUs have "
                "cpus_per_actor and gpus_per_actor")
        for name, amount in value.items():
            if not (0 < amount < math.inf):
                raise ValueError(f"{name!r}: {amount:g} is not a positive amount")
        return value

    @model_validator(mode="after")
    def _group_of_the_model(self) -> TrainerSettings:
        # Filled in here, so every reader (the actors, the lag reader) sees one str.
        if self.group_id is None:
            self.group_id = f"gumbel-trainer-{self.model_id}"
        return self
