"""The model's checkpoints: where they live, what they hold, and the files themselves.

Layout: ``<checkpoint_dir>/<model_id>/learner/ckpt-<seq>.pt`` (and the learner's epoch files,
``fence.py``), written by the model's one learner actor only. A checkpoint holds
``CHECKPOINT_FORMAT``, the model id and topic, the ``OnlineGAN``'s ``state_dict`` (model,
optimizers, schedule, RNG, counting baseline), the next offset of every partition it has
learned up to, the values learned from each, and the exact counts of dead letters and skipped
records: the model and the
offsets together, so a restart resumes after the last record learned and nothing is learned
twice. The layout before it (``actor-<i>/`` directories of per-partition learners) is refused
at start (``old_layout``), never mixed in.

A file is a magic line, the SHA-256 of the payload, then the payload (``torch.save`` of a
dict, read back with ``weights_only=True``). It is written to a temporary file, fsynced,
renamed into place and the directory fsynced, so a crash leaves either the old or the new
file, never a mix. A torn or corrupt file fails its checksum and is skipped in favour of the
previous one; when every kept file is corrupt, ``load_latest`` raises ``NoValidCheckpoint``
(never "no checkpoint": a first start and a lost history must not look alike).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CHECKPOINT_FORMAT",
    "learner_dir",
    "old_layout",
    "MAGIC",
    "CheckpointError",
    "NoValidCheckpoint",
    "Checkpoint",
    "CheckpointStore",
    "encode",
    "decode",
]

log = logging.getLogger(__name__)

MAGIC = b"GUMBELCKPT1\n"
# 3: one learner per model in learner/; 1 and 2 (actor-<i>/, refused): learners per actor
CHECKPOINT_FORMAT = 3
_NAME = re.compile(r"^ckpt-(\d{12})\.pt$")


def learner_dir(checkpoint_dir: Path, model_id: str) -> Path:
    """Where the learner of ``model_id`` keeps its checkpoints and epoch files."""
    return Path(checkpoint_dir) / model_id / "learner"


def old_layout(checkpoint_dir: Path, model_id: str) -> list[Path]:
    """The model's checkpoint files of the layout before one learner per model (per-actor
    directories of per-partition learners); empty when there are none."""
    model_dir = Path(checkpoint_dir) / model_id
    if not model_dir.is_dir():
        return []
    return sorted(path for d in model_dir.iterdir() if d.is_dir() and d.name.startswith("actor-")
                  for path in d.glob("ckpt-*.pt"))


class CheckpointError(ValueError):
    """A checkpoint file is torn, corrupt, or not a checkpoint at all."""


class NoValidCheckpoint(CheckpointError):
    """Checkpoint files exist, but none of them verifies: the model's history is lost."""


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    path: Path
    state: dict[str, Any]


def encode(state: dict[str, Any]) -> bytes:
    """Serialize ``state`` (tensors, numbers, strings, dicts) with its checksum in front."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    return MAGIC + hashlib.sha256(payload).digest() + payload


def decode(data: bytes) -> dict[str, Any]:
    """The state in ``data``; ``CheckpointError`` if the bytes are torn or corrupt."""
    head = len(MAGIC) + 32
    if len(data) < head or not data.startswith(MAGIC):
        raise CheckpointError("not a checkpoint (bad magic or truncated header)")
    digest, payload = data[len(MAGIC) : head], data[head:]
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError("checksum mismatch (torn or corrupt file)")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:  # the checksum matched, so this is a format problem
        raise CheckpointError(f"cannot unpickle the payload: {exc}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"payload is a {type(state).__name__}, expected a dict")
    return state


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointStore:
    """The checkpoints in ``directory``: the newest ``keep`` are kept."""

    def __init__(self, directory: Path, keep: int = 2) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.directory = Path(directory)
        self.keep = keep

    def sequence_numbers(self) -> list[int]:
        if not self.directory.is_dir():
            return []
        found = (_NAME.match(p.name) for p in self.directory.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def path_of(self, seq: int) -> Path:
        return self.directory / f"ckpt-{seq:012d}.pt"

    def save(self, state: dict[str, Any], seq: int | None = None) -> Checkpoint:
        """Write ``state`` atomically as the next checkpoint, then drop the oldest ones."""
        return self.save_bytes(encode(state), state, seq)

    def save_bytes(
        self, data: bytes, state: dict[str, Any], seq: int | None = None,
        before_rename: Callable[[], None] | None = None,
    ) -> Checkpoint:
        """Write ``data`` as checkpoint ``seq``; ``before_rename`` (the epoch fence's check) runs
        just before the file appears, and raising there leaves no file behind."""
        self.directory.mkdir(parents=True, exist_ok=True)
        existing = self.sequence_numbers()
        if seq is None:
            seq = (existing[-1] + 1) if existing else 1
        path = self.path_of(seq)
        tmp = self.directory / f".{path.name}.{os.getpid()}.tmp"
        with open(tmp, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        try:
            if before_rename is not None:
                before_rename()
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, path)
        _fsync_dir(self.directory)
        for old in [s for s in self.sequence_numbers() if s < seq][: -(self.keep - 1) or None]:
            self.path_of(old).unlink(missing_ok=True)
        return Checkpoint(seq, path, state)

    def load_latest(self) -> Checkpoint | None:
        """The newest checkpoint that verifies (torn or corrupt ones are logged and skipped).

        None when the directory holds no checkpoint; ``NoValidCheckpoint`` when it holds some
        and none verifies.
        """
        problems = []
        for seq in reversed(self.sequence_numbers()):
            path = self.path_of(seq)
            try:
                state = decode(path.read_bytes())
            except (CheckpointError, OSError) as exc:
                problems.append(f"{path.name}: {exc}")
                continue
            for problem in problems:  # said here, or in the exception below: once either way
                log.warning("skipping checkpoint in %s: %s", self.directory, problem)
            return Checkpoint(seq, path, state)
        if problems:
            raise NoValidCheckpoint(
                f"every checkpoint in {self.directory} is corrupt ({'; '.join(problems)})"
            )
        return None
