"""One actor's runtime facts as an ``ActorStatus``: where it runs, what it reads, how far
behind and how fast it is, its checkpoints and its dead-letter losses. The replica adds its
model and counts (``Replica.status``)."""

from __future__ import annotations

import os
import socket
import time

from services.common.dead_letters import DeadLetterWriter
from services.trainer.checkpointing import Checkpointer
from services.trainer.meter import LearningMeter
from services.trainer.source import PartitionSource
from services.trainer.status import ActorStatus

__all__ = ["runtime_status"]


def runtime_status(
    index: int, device: str, *, node_id: str, source: PartitionSource | None,
    dlq: DeadLetterWriter | None, lags: dict[int, int], queue_depth: int, meter: LearningMeter,
    checkpoints: Checkpointer, running: bool, error: str | None,
) -> ActorStatus:
    """The status of actor ``index`` as of now, without its replica's part; ``lags`` are the
    records not learned yet by partition, ``queue_depth`` the batches waiting to be learned."""
    rates = meter.rates()
    return ActorStatus(
        index=index, pid=os.getpid(), host=socket.gethostname(), device=device,
        node_id=node_id,
        partitions=tuple(source.partitions if source is not None else ()),
        dead_letters_truncated=dlq.truncated if dlq is not None else 0,
        dead_letters_lost=dlq.failed if dlq is not None else 0,
        lag=sum(lags.values()), lag_by_partition={str(p): n for p, n in sorted(lags.items())},
        queue_depth=queue_depth,
        records_per_s=rates.records_per_s, step_seconds=rates.step_seconds,
        poll_to_learn_seconds=rates.poll_to_learn_seconds,
        checkpoint_seq=checkpoints.seq, restored_seq=checkpoints.restored_seq,
        checkpoint_seconds=checkpoints.seconds, checkpoint_time=checkpoints.time,
        checkpoint_failures=checkpoints.failures,
        running=running, error=error, data_time=meter.data_time, status_time=time.time(),
    )
