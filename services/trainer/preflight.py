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
from services.flags import named
from services.trainer.checkpoint import CheckpointError, CheckpointStore, learner_dir, old_layout
from services.trainer.learner import old_layout_message

__all__ = ["check_checkpoint_dir", "check_checkpoints_match", "check_cpus", "check_gpus",
           "check_learner_resources"]

_DIR_SETTING = named("trainer", "trainer", "checkpoint_dir")


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
    """The model's checkpoint has the same K and estimator and can be read, and no checkpoint
    of the per-partition layout is waiting to be silently mixed in.

    Unreadable or old-layout ones stop the start only under ``on_corrupt_checkpoint=fail``:
    with the other policies the learner logs and counts what is lost.
    """
    if cfg.checkpoint_dir is None:
        return
    store = CheckpointStore(learner_dir(cfg.checkpoint_dir, cfg.model_id))
    try:
        latest = store.load_latest()
    except CheckpointError as exc:
        if cfg.on_corrupt_checkpoint != "fail":
            return
        raise StartupError(
            f"{exc}: the records they hold would be lost. Move them away to investigate, "
            f"or set {named('trainer', 'trainer', 'on_corrupt_checkpoint')} to relearn or "
            "accept_loss"
        ) from None
    if latest is not None:
        _compare(cfg, latest.state.get("learner", {}).get("config", {}), latest.path)
        return
    old = old_layout(cfg.checkpoint_dir, cfg.model_id)
    if old and cfg.on_corrupt_checkpoint == "fail":
        raise StartupError(old_layout_message(cfg.model_id, old))


def _compare(cfg: TrainerSettings, stored: Mapping[str, Any], path: Path) -> None:
    for name in ("num_categories", "estimator"):
        ours = getattr(cfg, name)
        if name in stored and stored[name] != ours:
            raise StartupError(
                f"invalid setting {named('trainer', 'trainer', name)}: "
                f"{ours!r}, but the checkpoint {path} of model {cfg.model_id!r} was written with "
                f"{stored[name]!r}; use that value, another --model-id, or another "
                "--checkpoint-dir"
            )


def _check_resource(
    resource: str, wanted: float, setting: str, have: float, where: str, hint: str = "",
) -> None:
    """``wanted`` of ``resource`` exist (else Ray waits for them forever); ``setting`` is the
    one line's name for the setting to change."""
    if wanted > 0 and have < wanted:
        raise StartupError(
            f"invalid setting {setting}: the trainer needs {wanted:g} {resource}s, {where} "
            f"has {have:g}{hint}"
        )


def check_gpus(
    cfg: TrainerSettings, cluster_resources: Mapping[str, float], where: str = "the Ray cluster"
) -> None:
    """The Ray cluster (or this machine) has the GPUs the learner asks for."""
    _check_resource("GPU", cfg.gpus_per_actor,
                    named("trainer", "trainer", "gpus_per_actor"),
                    float(cluster_resources.get("GPU", 0.0)), where, " (for the learner)")


def check_cpus(cfg: TrainerSettings, cluster_resources: Mapping[str, float]) -> None:
    """The Ray cluster has the CPUs the learner and the ingest actors ask for."""
    _check_resource("CPU", cfg.cpus_per_actor * (cfg.num_actors + 1),
                    named("trainer", "trainer", "cpus_per_actor"),
                    float(cluster_resources.get("CPU", 0.0)), "the Ray cluster",
                    f" (the learner and {cfg.num_actors} ingest actors x "
                    f"{cfg.cpus_per_actor:g}); add nodes, or ask less per actor (e.g. 0.5)")


def check_learner_resources(cfg: TrainerSettings, cluster_resources: Mapping[str, float]) -> None:
    """The Ray cluster offers the custom resources the learner asks for (the node, on
    Kubernetes the worker group, that holds its checkpoint volume)."""
    for name, amount in sorted(cfg.learner_resources.items()):
        _check_resource(f"{name!r} resource", amount,
                        named("trainer", "trainer", "learner_resources"),
                        float(cluster_resources.get(name, 0.0)), "the Ray cluster",
                        " (for the learner): is the worker group that offers it up (its "
                        "rayStartParams resources)?")
