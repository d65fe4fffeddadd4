"""Where a replica resumes reading: its checkpoint, the partitions that moved to it when the
number of actors changed, and what to do when a history cannot be read.

A readable checkpoint gives the offsets; a partition that moved in comes with its learner from
another actor's checkpoint; partitions none knows resume at the group's committed offset, else
at the earliest. When every kept checkpoint is corrupt the model's
history is lost, and ``on_corrupt_checkpoint`` decides: ``fail`` (raise), ``relearn`` (from
the earliest offset the topic still holds) or ``accept_loss`` (the committed offsets). The
records that can no longer reach the model are counted, never dropped in silence.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.trainer.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointStore,
    NoValidCheckpoint,
)
from services.trainer.checkpointing import Checkpointer
from services.trainer.replica import Replica
from services.trainer.source import PartitionSource

__all__ = ["PartitionState", "resume_replica", "load_checkpoint", "move_partitions",
           "offsets_after_lost_history", "partition_states", "unrecorded_history"]

log = logging.getLogger(__name__)


def resume_replica(
    replica: Replica, source: PartitionSource, checkpoints: Checkpointer, *, policy: str,
    group_id: str | None = None,
) -> int:
    """Restore ``replica`` from the newest checkpoint and take over the partitions ``source``
    is assigned (those that moved in, with their learners); the truncated dead letters the
    checkpoint counted (0 without one). ``policy`` is ``on_corrupt_checkpoint``. The caller
    seeks ``source`` to ``replica.offsets``."""
    index, store = checkpoints.index, checkpoints.store
    restored, history_lost = load_checkpoint(store, policy, index)
    truncated = 0
    if restored is not None:
        truncated = checkpoints.read(restored.state, replica)
        checkpoints.restored(restored.seq, restored.state.get("time", 0.0))
        log.info("actor %d restored checkpoint %s (%d samples, offsets %s)", index,
                 restored.path, replica.samples_seen, replica.offsets)
    # A format-1 checkpoint's one learner holds every partition of the actor: nothing moves.
    if store is not None and not history_lost and not replica.one_learner:
        move_partitions(replica, source, store.directory, index=index, policy=policy,
                        group_id=group_id)
    if history_lost:
        offsets, skipped = offsets_after_lost_history(source, policy, index)
        replica.offsets.update(offsets)
        replica.records_skipped += skipped
    return truncated


def load_checkpoint(
    store: CheckpointStore | None, policy: str, index: int
) -> tuple[Checkpoint | None, bool]:
    """(the newest valid checkpoint or None, whether a history exists but is unreadable)."""
    if store is None:
        return None, False
    try:
        return store.load_latest(), False
    except NoValidCheckpoint as exc:
        if policy == "fail":
            raise CheckpointError(
                f"actor {index}: {exc}. Its records would be lost. Move the files away to "
                "investigate, or set on_corrupt_checkpoint to relearn or accept_loss "
                "(GUMBEL_TRAINER__ON_CORRUPT_CHECKPOINT)"
            ) from exc
        log.error("actor %d: %s; on_corrupt_checkpoint=%s", index, exc, policy)
        return None, True


def offsets_after_lost_history(
    source: PartitionSource, policy: str, index: int, partitions: list[int] | None = None
) -> tuple[dict[int, int], int]:
    """(where each partition resumes, how many records are skipped) after corrupt checkpoints
    (or, with ``partitions``, for those partitions whose checkpoint is missing)."""
    starts = source.beginning_offsets()
    resume: dict[int, int] = {}
    skipped = 0
    for partition in source.partitions if partitions is None else partitions:
        start = starts.get(partition, 0)
        committed = source.committed(partition) if policy == "accept_loss" else None
        resume[partition] = max(start, committed) if committed is not None else start
        skipped += resume[partition]  # offsets below it were deleted, or are skipped now
    log.error("actor %d: %s; %s: %d records of partitions %s will never reach the model "
              "(records_skipped)", index,
              "every checkpoint was corrupt" if partitions is None
              else "no checkpoint holds these partitions, the group committed past their start",
              "relearning from the earliest offsets the topic holds" if policy == "relearn"
              else "accepting the loss, resuming at the group's committed offsets",
              skipped, sorted(resume))
    return resume, skipped


def move_partitions(
    replica: Replica, source: PartitionSource, directory: Path, *, index: int, policy: str,
    group_id: str | None,
) -> None:
    """Partitions follow their learners when the number of actors changed: let go of those
    another actor owns now, adopt the newest state of those ``source`` owns from any actor's
    checkpoint (``directory`` is this actor's; its siblings are the others'); a partition no
    checkpoint holds but the group committed past its start is a lost history (``policy``,
    ``on_corrupt_checkpoint``, decides, loudly)."""
    owned = list(source.partitions)
    let_go = replica.keep_only(owned)
    if let_go:
        log.info("actor %d: partitions %s belong to other actors now", index, let_go)
    states = partition_states(directory.parent, skip=directory)
    for partition in owned:
        state, ours = states.get(partition), replica.offsets.get(partition)
        if state is not None and (ours is None or state.offset > ours):
            replica.adopt(partition, state.learner, state.offset)
            log.info("actor %d: partition %d moves in from %s at offset %d", index,
                     partition, state.path, state.offset)
    # A partition let go stays in our checkpoints until its new owner's holds it (at least
    # as far): a crash in between must not lose it.
    owners = partition_states(directory.parent, skip=directory, released=False)
    replica.forget_released({p: s.offset for p, s in owners.items()})
    lost = unrecorded_history(source, [p for p in owned if p not in replica.offsets])
    if not lost:
        return
    if policy == "fail":
        raise CheckpointError(
            f"actor {index}: no checkpoint holds partitions {sorted(lost)}, but the "
            f"group {group_id!r} committed offsets {lost} for them: "
            "the records before those would never reach the model. Set "
            "on_corrupt_checkpoint (GUMBEL_TRAINER__ON_CORRUPT_CHECKPOINT) to relearn "
            "(from the earliest offsets) or accept_loss (from the committed ones)")
    resume, skipped = offsets_after_lost_history(source, policy, index,
                                                 partitions=sorted(lost))
    replica.offsets.update(resume)
    replica.records_skipped += skipped


@dataclass(frozen=True)
class PartitionState:
    """One partition's learner as a checkpoint holds it, and where it resumes."""

    offset: int
    learner: dict[str, Any]
    path: Path


def partition_states(model_dir: Path, skip: Path | None = None, released: bool = True
                     ) -> dict[int, PartitionState]:
    """The newest state of every partition in the model's actor directories (but ``skip``):
    partitions their actors learn, and (``released``) those they let go and keep until
    adopted.

    A partition moves between actors when their number changes; its learner travels with it
    (format 2 checkpoints hold one per partition). Offsets only grow along a partition's
    history, so of several copies the one with the highest offset is the newest.
    """
    found: dict[int, PartitionState] = {}
    if not model_dir.is_dir():
        return found
    for directory in sorted(p for p in model_dir.iterdir() if p.name.startswith("actor-")):
        if skip is not None and directory == skip:
            continue
        try:
            latest = CheckpointStore(directory).load_latest()
        except CheckpointError as exc:
            log.warning("not looking for moved partitions in %s: %s", directory, exc)
            continue
        if latest is None:
            continue
        offsets = {int(p): int(o) for p, o in latest.state.get("offsets", {}).items()}
        copies = [(int(p), offsets.get(int(p)), learner)
                  for p, learner in (latest.state.get("learners") or {}).items()]
        if released:
            copies += [(int(p), int(r["offset"]), r["learner"])
                       for p, r in latest.state.get("released", {}).items()]
        for partition, offset, learner in copies:
            if partition < 0 or offset is None:
                continue
            if partition not in found or offset > found[partition].offset:
                found[partition] = PartitionState(offset, learner, latest.path)
    return found


def unrecorded_history(source: PartitionSource, partitions: list[int]) -> dict[int, int]:
    """Of ``partitions`` (no checkpoint holds them), those the group has committed past the
    topic's beginning: records before the committed offset would never reach the model."""
    if not partitions:  # the usual start: every owned partition is in a checkpoint
        return {}
    starts = source.beginning_offsets()
    lost: dict[int, int] = {}
    for partition in partitions:
        committed = source.committed(partition)
        if committed is not None and committed > starts.get(partition, 0):
            lost[partition] = committed
    return lost
