"""Check the trainer's settings against the machine before Ray starts any actor.

Each check raises ``StartupError`` with one line naming the setting, so a bad checkpoint
directory, checkpoints of another model shape, or GPUs the cluster lacks stop the command
in a second instead of after a minute of Ray tracebacks (or, for GPUs, a silent hang).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from services.common.errors import StartupError
from services.common.settings import TrainerSettings
from services.trainer.checkpoint import CheckpointError, CheckpointStore

__all__ = ["check_checkpoint_dir", "check_checkpoints_match", "check_cpus", "check_gpus"]

_DIR_SETTING = "trainer.checkpoint_dir (--checkpoint-dir, GUMBEL_TRAINER__CHECKPOINT_DIR)"


def check_checkpoint_dir(cfg: TrainerSettings) -> None:
    """The model's checkpoint directory exists or can be made, and a file can be written in it."""
    if cfg.checkpoint_dir is None:
        return
    directory = Path(cfg.checkpoint_dir) / cfg.model_id
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-") as probe:
            probe.write(b"ok")
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        raise StartupError(
            f"invalid setting {_DIR_SETTING}: cannot write checkpoints in {directory}: "
            f"{exc.strerror or exc}"
        ) from None


def check_checkpoints_match(cfg: TrainerSettings) -> None:
    """Existing checkpoints of this model have the same K and estimator, and can be read.

    Unreadable ones stop the start only under ``on_corrupt_checkpoint=fail``: the other
    policies are handled by each actor, which logs and counts what is lost.
    """
    if cfg.checkpoint_dir is None:
        return
    model_dir = Path(cfg.checkpoint_dir) / cfg.model_id
    if not model_dir.is_dir():
        return
    for actor_dir in sorted(p for p in model_dir.iterdir() if p.name.startswith("actor-")):
        try:
            latest = CheckpointStore(actor_dir).load_latest()
        except CheckpointError as exc:
            if cfg.on_corrupt_checkpoint != "fail":
                continue
            raise StartupError(
                f"{exc}: the records they hold would be lost. Move them away to investigate, "
                "or set trainer.on_corrupt_checkpoint (GUMBEL_TRAINER__ON_CORRUPT_CHECKPOINT) "
                "to relearn or accept_loss"
            ) from None
        if latest is not None:  # format 2: a learner per partition; format 1: one learner
            learners = latest.state.get("learners") or {"all": latest.state.get("learner", {})}
            for learner in learners.values():
                _compare(cfg, learner.get("config", {}), latest.path)


def _compare(cfg: TrainerSettings, stored: Mapping[str, Any], path: Path) -> None:
    for name, flag in (("num_categories", "--num-categories"), ("estimator", "--estimator")):
        ours = getattr(cfg, name)
        if name in stored and stored[name] != ours:
            raise StartupError(
                f"invalid setting trainer.{name} ({flag}, GUMBEL_TRAINER__{name.upper()}): "
                f"{ours!r}, but the checkpoint {path} of model {cfg.model_id!r} was written with "
                f"{stored[name]!r}; use that value, another --model-id, or another "
                "--checkpoint-dir"
            )


def _check_resource(
    cfg: TrainerSettings, resource: str, per_actor: float, setting: str, have: float,
    where: str, hint: str = "",
) -> None:
    """The actors' ``per_actor`` x ``num_actors`` of ``resource`` exist (else Ray waits for
    them forever); ``setting`` is the one line's name for the setting to change."""
    wanted = per_actor * cfg.num_actors
    if wanted > 0 and have < wanted:
        raise StartupError(
            f"invalid setting {setting}: {cfg.num_actors} actors x {per_actor:g} {resource} "
            f"need {wanted:g} {resource}s, {where} has {have:g}{hint}"
        )


def check_gpus(
    cfg: TrainerSettings, cluster_resources: Mapping[str, float], where: str = "the Ray cluster"
) -> None:
    """The Ray cluster (or this machine) has the GPUs the actors ask for."""
    _check_resource(cfg, "GPU", cfg.gpus_per_actor,
                    "trainer.gpus_per_actor (--gpus-per-actor, GUMBEL_TRAINER__GPUS_PER_ACTOR)",
                    float(cluster_resources.get("GPU", 0.0)), where)


def check_cpus(cfg: TrainerSettings, cluster_resources: Mapping[str, float]) -> None:
    """The Ray cluster has the CPUs the actors ask for."""
    _check_resource(cfg, "CPU", cfg.cpus_per_actor,
                    "trainer.cpus_per_actor (GUMBEL_TRAINER__CPUS_PER_ACTOR)",
                    float(cluster_resources.get("CPU", 0.0)), "the Ray cluster",
                    "; add nodes, or ask less per actor (e.g. 0.5)")
