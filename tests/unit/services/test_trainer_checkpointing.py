"""One actor's checkpoints: the payload, reading it back, and committing after the file."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from services.trainer.checkpointing import CHECKPOINT_FORMAT, Checkpointer, actor_checkpoint_dir
from services.trainer.fence import EpochFence, Fenced
from services.trainer.replica import Replica


def _replica(offsets: dict[int, int]) -> Replica:
    replica = Replica(lambda: pytest.fail("no learner is needed"), 3)
    replica.offsets.update(offsets)
    return replica


def _checkpointer(directory: Path | None) -> Checkpointer:
    return Checkpointer(directory, model_id="m", index=1, num_actors=2, topic="numbers",
                        group_id="g")


def test_a_checkpoint_holds_the_identity_and_the_replica_and_reads_back(tmp_path: Path
                                                                        ) -> None:
    directory = actor_checkpoint_dir(tmp_path, "m", 1)
    assert directory == tmp_path / "m" / "actor-1"
    checkpoints = _checkpointer(directory)
    seq = checkpoints.write(threading.RLock(), _replica({0: 7}), None)
    assert checkpoints.store is not None
    saved = checkpoints.store.load_latest()
    assert saved is not None and saved.seq == seq == 1
    state = saved.state
    assert (state["format"], state["model_id"], state["actor"], state["num_actors"],
            state["topic"], state["offsets"], state["dead_letters_truncated"]) == (
        CHECKPOINT_FORMAT, "m", 1, 2, "numbers", {0: 7}, 0)
    again = _replica({})
    assert checkpoints.read({**state, "dead_letters_truncated": 4}, again) == 4
    assert again.offsets == {0: 7}


def test_offsets_are_committed_once_after_the_file_and_a_refusal_is_warned_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="services.trainer.checkpointing")
    checkpoints = _checkpointer(None)  # no directory: nothing written, offsets still committed
    commits: list[dict[int, int]] = []
    checkpoints.commit_pending(commits.append)
    assert commits == []  # nothing written yet
    checkpoints.write(threading.RLock(), _replica({0: 3}), None)
    checkpoints.commit_pending(commits.append)
    checkpoints.commit_pending(commits.append)
    assert commits == [{0: 3}]

    def refuse(offsets: dict[int, int]) -> None:
        raise ConnectionError("broker down")

    for _ in range(3):
        checkpoints.write(threading.RLock(), _replica({0: 4}), None)
        checkpoints.commit_pending(refuse)  # never raised: the checkpoint is the truth
    warnings = [r for r in caplog.records if "cannot commit offsets to group 'g'" in r.message]
    assert len(warnings) == 1
    checkpoints.write(threading.RLock(), _replica({0: 5}), None)
    checkpoints.commit_pending(commits.append)
    assert commits[-1] == {0: 5} and "committing offsets again" in caplog.text


def test_a_fenced_instance_neither_writes_nor_commits(tmp_path: Path) -> None:
    checkpoints = _checkpointer(tmp_path)
    assert checkpoints.fence is not None and checkpoints.store is not None
    checkpoints.fence.claim()
    checkpoints.write(threading.RLock(), _replica({0: 1}), None)
    EpochFence(tmp_path).claim()  # a successor starts
    commits: list[dict[int, int]] = []
    with pytest.raises(Fenced):
        checkpoints.commit_pending(commits.append)
    with pytest.raises(Fenced):
        checkpoints.write(threading.RLock(), _replica({0: 2}), None)
    assert commits == [] and checkpoints.store.sequence_numbers() == [1]
    assert checkpoints.failures == 1
