"""One actor's checkpoints: what they hold, writing them on a cadence (timed, failures
counted), reading them back into a replica, and committing their offsets afterwards.

A checkpoint holds the actor's identity, the replica's ``state_dict`` (learners and offsets
together) and the dead-letter writer's count of truncated records. It is written from a
snapshot taken under the actor's lock; dead letters sent before it are flushed before the
file exists, and its offsets are committed to the group only after it (``commit_pending``,
called by the thread that owns the consumer).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.common.dead_letters import DeadLetterWriter
from services.trainer.checkpoint import CheckpointStore, encode
from services.trainer.fence import EpochFence
from services.trainer.replica import Replica

__all__ = ["CHECKPOINT_FORMAT", "Checkpointer", "actor_checkpoint_dir"]

log = logging.getLogger(__name__)

# 2: a learner per partition ("learners"); 1 (still read): one learner ("learner")
CHECKPOINT_FORMAT = 2


def actor_checkpoint_dir(checkpoint_dir: Path, model_id: str, index: int) -> Path:
    """Where actor ``index`` of model ``model_id`` keeps its checkpoints (and epoch files)."""
    return Path(checkpoint_dir) / model_id / f"actor-{index}"


class Checkpointer:
    """Writes actor ``index``'s replica into ``directory`` (None: nowhere, the offsets are
    still committed); remembers what the status reports."""

    def __init__(self, directory: Path | None, *, model_id: str, index: int, num_actors: int,
                 topic: str, group_id: str | None = None) -> None:
        self.store = None if directory is None else CheckpointStore(directory)
        # Claimed when the actor starts; checked before a file appears and before a commit,
        # so a paused instance whose successor claimed a newer epoch never writes (holds
        # across machines).
        self.fence = None if directory is None else EpochFence(directory)
        self.index, self.num_actors = index, num_actors
        self.identity = {"format": CHECKPOINT_FORMAT, "model_id": model_id, "actor": index,
                         "num_actors": num_actors, "topic": topic}
        self.group_id = group_id  # only named in the warning when a commit fails
        self.seq = 0
        self.restored_seq: int | None = None
        self.seconds = 0.0  # duration of the last checkpoint
        self.time = 0.0  # unix time of the last checkpoint (0: none by this process)
        self.failures = 0
        self.last = time.monotonic()
        self.pending_commit: dict[int, int] | None = None  # offsets to commit, once written
        self._commit_warned = False

    def due(self, interval_s: float) -> bool:
        return time.monotonic() - self.last >= interval_s

    def restored(self, seq: int, written_at: float = 0.0) -> None:
        """The actor resumed from checkpoint ``seq`` (written at unix time ``written_at``)."""
        self.restored_seq = self.seq = seq
        self.time = float(written_at)
        if self.store is not None:  # never reuse a number, even of a corrupt file
            self.seq = max([seq, *self.store.sequence_numbers()])

    def read(self, state: dict[str, Any], replica: Replica) -> int:
        """Load a checkpoint's ``state`` into ``replica``; the truncated dead letters it counted
        (the dead-letter writer goes on from there)."""
        if state.get("num_actors") != self.num_actors:
            log.info("actor %d: checkpoint was written with %s actors, now %d: partitions "
                     "move with their learners", self.index, state.get("num_actors"),
                     self.num_actors)
        replica.load_state_dict(state)
        return int(state.get("dead_letters_truncated", 0))

    def write(self, lock: threading.RLock, replica: Replica, dlq: DeadLetterWriter | None) -> int:
        """Snapshot ``replica`` under ``lock``, flush dead letters, write the file; its
        sequence number."""
        self.last = started = time.monotonic()
        with lock:
            state = {**self.identity, **replica.state_dict(),
                     "dead_letters_truncated": dlq.truncated if dlq is not None else 0,
                     "time": time.time(),
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

    def commit_pending(self, commit: Callable[[dict[int, int]], None]) -> None:
        """Commit the last written checkpoint's offsets with ``commit`` (once). ``Fenced`` if a
        newer instance runs: a zombie never commits. A failed commit is warned about once
        and not raised: the group's offsets only show the lag, the checkpoint is the truth."""
        offsets, self.pending_commit = self.pending_commit, None
        if not offsets:
            return
        if self.fence is not None:
            self.fence.check()
        try:
            commit(offsets)
        except Exception as exc:
            if not self._commit_warned:
                log.warning("actor %d: cannot commit offsets to group %r: %s",
                            self.index, self.group_id, exc)
                self._commit_warned = True
            return
        if self._commit_warned:
            log.info("actor %d: committing offsets again", self.index)
            self._commit_warned = False
