"""Process-tree helpers: descendants found through /proc, a start time that outlives no pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from services.process_tree import descendants, start_time

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_descendants_include_grandchildren() -> None:
    # A shell that starts a sleep and waits for it: the sleep is our grandchild.
    child = subprocess.Popen(["sh", "-c", "sleep 30 & echo $!; wait"], stdout=subprocess.PIPE,
                             start_new_session=True)
    try:
        assert child.stdout is not None
        grandchild = int(child.stdout.readline())
        assert {child.pid, grandchild} <= descendants(os.getpid())
        assert grandchild in descendants(child.pid)
        assert child.pid not in descendants(child.pid)
    finally:
        os.killpg(child.pid, signal.SIGKILL)  # the shell and its sleep
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


def test_start_time_is_none_once_the_process_is_reaped() -> None:
    child = subprocess.Popen(["sleep", "30"])
    started = start_time(child.pid)
    assert started is not None and started >= start_time(os.getpid())
    child.kill()
    child.wait()
    assert start_time(child.pid) is None
