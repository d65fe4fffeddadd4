"""``up``'s child processes: each service a ``gumbel-stream <service>`` in a process group of
its own, stopped with SIGTERM then its group killed, and every process they started
remembered (pid and start time) so that none outlives ``up``."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from services.process_tree import descendants, start_time

__all__ = ["Child", "start_child", "remember", "kill_leftovers"]

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 60.0


@dataclass
class Child:
    """One service child process, in a process group of its own."""

    name: str
    process: subprocess.Popen[bytes]

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        if self.running():
            # The service alone: it stops what it started (Ray shuts its own processes down).
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %gs: killing it", self.name, timeout_s)
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # anything left in its group
        except (ProcessLookupError, PermissionError):
            pass
        return self.process.wait()


def start_child(name: str, env: dict[str, str], log_level: str, log_dir: Path) -> Child:
    log_file = open(log_dir / f"{name}.log", "ab")  # noqa: SIM115 (the child owns it)
    command = [sys.executable, "-m", "services.cli", "--log-level", log_level, name]
    process = subprocess.Popen(
        command,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log_file.close()
    log.info("started %s (pid %d), log %s", name, process.pid, log_dir / f"{name}.log")
    return Child(name, process)


def remember(seen: dict[int, int], children: dict[str, Child]) -> None:
    """Add every process the children started (pid -> start time) to ``seen``."""
    for child in children.values():
        for pid in descendants(child.process.pid):
            started = start_time(pid)
            if started is not None:
                seen.setdefault(pid, started)


def kill_leftovers(seen: dict[int, int]) -> None:
    """Kill what is still there of ``seen`` (the same pid and start time: not a reused pid)."""
    leftovers = [pid for pid, started in seen.items() if start_time(pid) == started]
    for pid in leftovers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if leftovers:
        log.warning("killed %d leftover processes: %s", len(leftovers), sorted(leftovers))
