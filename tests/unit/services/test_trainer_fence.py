"""The epoch fence: each instance claims a newer epoch; an older instance (a zombie) is fenced
from writing checkpoints and committing offsets, without any lock held by a process."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.trainer.fence import EpochFence, Fenced


def test_each_claim_is_newer_and_fences_the_instances_before_it(tmp_path: Path) -> None:
    first, second = EpochFence(tmp_path), EpochFence(tmp_path)
    assert first.claim() == 1
    first.check()  # alone: may write
    assert second.claim() == 2
    second.check()
    with pytest.raises(Fenced, match="epoch 2 was claimed by a newer instance .*ours is 1"):
        first.check()


def test_a_claim_that_loses_the_race_takes_the_next_epoch(tmp_path: Path) -> None:
    fence = EpochFence(tmp_path)
    (tmp_path / f"epoch-{1:012d}").write_text("other\n")  # claimed between list and create
    fence.current = lambda: 0  # type: ignore[method-assign]  # our listing was stale
    assert fence.claim() == 2


def test_old_epoch_files_are_pruned_and_the_newest_decides(tmp_path: Path) -> None:
    for _ in range(6):
        newest = EpochFence(tmp_path)
        newest.claim()
    assert newest.epoch == 6 and EpochFence(tmp_path).epochs() == [4, 5, 6]
    newest.check()
