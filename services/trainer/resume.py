"""Where a replica resumes reading: its checkpoint, and what to do when none can be read.

A readable checkpoint gives the offsets; partitions it does not know resume at the group's
committed offset, else at the earliest. When every kept checkpoint is corrupt the model's
history is lost, and ``on_corrupt_checkpoint`` decides: ``fail`` (raise), ``relearn`` (from
the earliest offset the topic still holds) or ``accept_loss`` (the committed offsets). The
records that can no longer reach the model are counted, never dropped in silence.
"""

from __future__ import annotations

import logging

from services.trainer.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointStore,
    NoValidCheckpoint,
)
from services.trainer.source import PartitionSource

__all__ = ["load_checkpoint", "offsets_after_lost_history"]

log = logging.getLogger(__name__)


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
    source: PartitionSource, policy: str, index: int
) -> tuple[dict[int, int], int]:
    """(where each partition resumes, how many records are skipped) after corrupt checkpoints."""
    starts = source.beginning_offsets()
    resume: dict[int, int] = {}
    skipped = 0
    for partition in source.partitions:
        start = starts.get(partition, 0)
        committed = source.committed(partition) if policy == "accept_loss" else None
        resume[partition] = max(start, committed) if committed is not None else start
        skipped += resume[partition]  # offsets below it were deleted, or are skipped now
    log.error("actor %d: every checkpoint was corrupt; %s: %d records of partitions %s will "
              "never reach the model (records_skipped)", index,
              "relearning from the earliest offsets the topic holds" if policy == "relearn"
              else "accepting the loss, resuming at the group's committed offsets",
              skipped, source.partitions)
    return resume, skipped
