"""An epoch fence for the learner's checkpoint directory, that holds across machines.

Each learner instance claims the next epoch when it starts: it creates ``epoch-<n>`` with
``O_CREAT | O_EXCL`` (atomic on a local disk and on NFS v3+; no lock is held by a process).
Just before a checkpoint file appears (the rename) the instance checks that no newer epoch
exists. A paused instance (a zombie: its node stalled, Ray restarted the learner elsewhere,
then the node woke up) finds its successor's epoch and stops instead of writing over it.
Ingest actors need no fence: the learner refuses any block that does not begin at its
partition's next offset, so a zombie reader's blocks are refused, and the offsets they commit
to the group only show the lag (the checkpoint is the truth).

The check and the rename are two steps, so a zombie that wakes exactly between them could
still write once; every checkpoint is a whole, self-consistent snapshot (model and offsets
together), so even then no record is counted twice, and the successor's next checkpoint
supersedes it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["EpochFence", "Fenced"]

_NAME = re.compile(r"^epoch-(\d{12})$")
_KEEP = 3  # old epoch files kept (the newest decides; a few old ones help when debugging)


class Fenced(RuntimeError):
    """A newer instance of this actor has claimed the directory: this one must stop writing."""


class EpochFence:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.epoch = 0  # 0: not claimed

    def epochs(self) -> list[int]:
        if not self.directory.is_dir():
            return []
        found = (_NAME.match(p.name) for p in self.directory.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def current(self) -> int:
        """The newest epoch claimed in the directory (0: none yet)."""
        epochs = self.epochs()
        return epochs[-1] if epochs else 0

    def claim(self) -> int:
        """Claim the next epoch for this instance; older instances are fenced from now on."""
        self.directory.mkdir(parents=True, exist_ok=True)
        candidate = self.current() + 1
        while True:
            try:
                fd = os.open(self.directory / f"epoch-{candidate:012d}",
                             os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:  # another instance claimed it first: take the next
                candidate += 1
                continue
            try:
                os.write(fd, f"{os.getpid()}\n".encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            break
        self.epoch = candidate
        for old in self.epochs()[:-_KEEP]:
            (self.directory / f"epoch-{old:012d}").unlink(missing_ok=True)
        return candidate

    def check(self) -> None:
        """Raise ``Fenced`` if a newer instance has claimed the directory since ours."""
        newest = self.current()
        if newest > self.epoch:
            raise Fenced(f"{self.directory}: epoch {newest} was claimed by a newer instance "
                         f"of this actor (ours is {self.epoch}); this one stops writing")
