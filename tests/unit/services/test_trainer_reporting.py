"""An actor's runtime facts as an ActorStatus."""

from __future__ import annotations

import os

from services.trainer.checkpointing import Checkpointer
from services.trainer.meter import LearningMeter
from services.trainer.reporting import runtime_status


def test_a_status_before_start_reports_no_partitions_and_no_losses() -> None:
    checkpoints = Checkpointer(None, model_id="m", index=2, num_actors=3, topic="numbers")
    status = runtime_status(2, "cpu", node_id="", source=None, dlq=None, lags={},
                            queue_depth=0, meter=LearningMeter(), checkpoints=checkpoints,
                            running=False, error=None)
    assert (status.index, status.pid, status.partitions, status.lag) == (2, os.getpid(), (), 0)
    assert (status.dead_letters_truncated, status.dead_letters_lost) == (0, 0)
    assert status.restored_seq is None and status.status_time >= status.data_time > 0


def test_lag_is_summed_and_listed_by_partition_in_order() -> None:
    checkpoints = Checkpointer(None, model_id="m", index=0, num_actors=1, topic="numbers")
    status = runtime_status(0, "cuda", node_id="n1", source=None, dlq=None,
                            lags={10: 1, 2: 5}, queue_depth=3, meter=LearningMeter(),
                            checkpoints=checkpoints, running=True, error="boom")
    assert status.lag == 6 and list(status.lag_by_partition.items()) == [("2", 5), ("10", 1)]
    assert (status.queue_depth, status.device, status.node_id) == (3, "cuda", "n1")
    assert (status.running, status.error) == (True, "boom")
