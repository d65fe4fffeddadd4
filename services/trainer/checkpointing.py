"""One actor's checkpoint cadence: write the replica with its identity, time it, count failures.

A checkpoint is written from a snapshot taken under the actor's lock (state and offsets
together); dead letters sent before it are flushed before the file exists, and its offsets
are handed to the polling thread to commit to the group only after it (``pending_commit``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from services.common.dead_letters import DeadLetterWriter
from services.trainer.checkpoint import CheckpointStore, encode
from services.trainer.fence import EpochFence

__all__ = ["CHECKPOINT_FORMAT", "Checkpointer"]

# 2: a learner per partition ("learners"); 1 (still read): one learner ("learner")
CHECKPOINT_FORMAT = 2


class Checkpointer:
    """Writes ``identity`` + a snapshot to ``store``; remembers what the status reports."""

    def __init__(self, store: CheckpointStore | None, identity: dict[str, Any],
                 fence: EpochFence | None = None) -> None:
        self.store = store
        self.fence = fence  # checked before the file appears: a zombie instance never writes
        self.identity = {"format": CHECKPOINT_FORMAT, **identity}
        self.seq = 0
        self.restored_seq: int | None = None
        self.seconds = 0.0  # duration of the last checkpoint
        self.time = 0.0  # unix time of the last checkpoint (0: none by this process)
        self.failures = 0
        self.last = time.monotonic()
        self.pending_commit: dict[int, int] | None = None  # offsets to commit, once written

    def due(self, interval_s: float) -> bool:
        return time.monotonic() - self.last >= interval_s

    def restored(self, seq: int, written_at: float = 0.0) -> None:
        """The actor resumed from checkpoint ``seq`` (written at unix time ``written_at``)."""
        self.restored_seq = self.seq = seq
        self.time = float(written_at)
        if self.store is not None:  # never reuse a number, even of a corrupt file
            self.seq = max([seq, *self.store.sequence_numbers()])

    def write(
        self, lock: threading.RLock, snapshot: Callable[[], dict[str, Any]],
        dlq: DeadLetterWriter | None,
    ) -> int:
        """Snapshot under ``lock``, flush dead letters, write the file; its sequence number."""
        self.last = started = time.monotonic()
        with lock:
            state = {**self.identity, **snapshot(), "time": time.time(),
                     "epoch": self.fence.epoch if self.fence is not None else 0}
            data = encode(state)  # serialized under the lock: a consistent snapshot
            self.seq += 1
            seq = self.seq
        try:
            if dlq is not None:
                dlq.flush(timeout_s=60)
            if self.store is not None:
                check = self.fence.check if self.fence is not None else None
                self.store.save_bytes(data, state, seq, before_rename=check)
        except Exception:
            self.failures += 1
            raise
        self.pending_commit = dict(state["offsets"])
        self.seconds, self.time = time.monotonic() - started, time.time()
        return seq
