"""Which partitions an actor owns, and how they follow their learners when that changes.

Actor ``i`` of ``N`` owns the partitions ``p % N == i``, assigned by hand (no group
rebalancing). When ``N`` changes, each partition's learner moves with it through the
checkpoints; partitions added to the topic while running are picked up where they start.
"""

from __future__ import annotations

import logging
from pathlib import Path

from services.trainer.checkpoint import CheckpointError
from services.trainer.replica import Replica
from services.trainer.resume import (
    offsets_after_lost_history,
    partition_states,
    unrecorded_history,
)
from services.trainer.source import PartitionSource

__all__ = ["owned_partitions", "move_partitions", "pick_up_new_partitions"]

log = logging.getLogger(__name__)


def owned_partitions(partitions: list[int], index: int, num_actors: int) -> list[int]:
    """Actor ``index`` of ``num_actors`` owns the partitions ``p % num_actors == index``."""
    return [p for p in partitions if p % num_actors == index]


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


def pick_up_new_partitions(source: PartitionSource, index: int, num_actors: int) -> None:
    """Partitions added to the topic while running (``kafka-topics.sh --alter``): read those
    actor ``index`` owns too; they count in the lag from the next fetch on."""
    try:
        every = source.topic_partitions()
    except Exception as exc:  # metadata unavailable for now: look again next time
        log.warning("actor %d: cannot list the partitions of %s: %s", index, source.topic, exc)
        return
    new = source.add(owned_partitions(every, index, num_actors))
    if new:
        log.info("actor %d: partitions %s were added to %s; learning them", index, new,
                 source.topic)
