"""Checkpoints are atomic and checksummed: a torn or corrupt file is never loaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from services.trainer.checkpoint import (
    CheckpointError,
    CheckpointStore,
    NoValidCheckpoint,
    decode,
    encode,
)


def _state(n: int) -> dict:
    return {"offsets": {0: n, 2: 2 * n}, "learner": {"w": torch.arange(3.0) * n}, "n": n}


def test_round_trip_keeps_tensors_and_offsets(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(_state(7))
    loaded = store.load_latest()
    assert loaded is not None and loaded.seq == 1
    assert loaded.state["offsets"] == {0: 7, 2: 14}
    assert torch.equal(loaded.state["learner"]["w"], torch.arange(3.0) * 7)


def test_no_checkpoint_yet_loads_none(tmp_path: Path) -> None:
    assert CheckpointStore(tmp_path / "missing").load_latest() is None


def test_torn_newest_file_falls_back_to_previous(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(_state(1))
    newest = store.save(_state(2))
    data = newest.path.read_bytes()
    newest.path.write_bytes(data[: len(data) // 2])  # a write cut short
    loaded = store.load_latest()
    assert loaded is not None and loaded.seq == 1 and loaded.state["n"] == 1


def test_flipped_byte_fails_the_checksum(tmp_path: Path) -> None:
    data = bytearray(encode(_state(3)))
    data[-5] ^= 0xFF
    with pytest.raises(CheckpointError, match="checksum"):
        decode(bytes(data))


def test_garbage_is_not_a_checkpoint() -> None:
    with pytest.raises(CheckpointError, match="magic"):
        decode(b"hello")


def test_only_the_last_two_are_kept(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=2)
    for n in range(5):
        store.save(_state(n))
    assert store.sequence_numbers() == [4, 5]
    assert not list(tmp_path.glob("*.tmp"))


def test_all_corrupt_is_not_mistaken_for_a_first_start(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(_state(1))
    store.save(_state(2)).path.write_bytes(b"")
    store.path_of(1).write_bytes(b"GUMBELCKPT1\n" + b"x" * 40)
    with pytest.raises(NoValidCheckpoint, match="ckpt-000000000002.pt: not a checkpoint"):
        store.load_latest()


def test_a_fenced_write_leaves_no_file(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)

    def fenced() -> None:
        raise RuntimeError("fenced")

    with pytest.raises(RuntimeError, match="fenced"):
        store.save_bytes(b"data", {}, 1, before_rename=fenced)
    assert list(tmp_path.iterdir()) == []  # neither the checkpoint nor its temporary file
