"""Which partitions an actor owns: ``p % N == i`` for actor ``i`` of ``N``, assigned by hand
(no group rebalancing), including partitions added to the topic while it runs.

When ``N`` changes, each partition's learner moves with it through the checkpoints
(``resume.move_partitions``).
"""

from __future__ import annotations

import logging

from services.trainer.source import PartitionSource

__all__ = ["owned_partitions", "pick_up_new_partitions"]

log = logging.getLogger(__name__)


def owned_partitions(partitions: list[int], index: int, num_actors: int) -> list[int]:
    """Actor ``index`` of ``num_actors`` owns the partitions ``p % num_actors == index``."""
    return [p for p in partitions if p % num_actors == index]


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
