"""What one trainer actor reports to the driver: a frozen ``ActorStatus``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["ActorStatus"]


@dataclass(frozen=True)
class ActorStatus:
    """One replica's state as of ``status_time``; summed or compared by the coordinator.

    Counts are exact per replica (summed, never averaged); ``estimate`` is the replica's own
    and is averaged. Times are unix seconds.
    """

    index: int
    pid: int = 0
    host: str = ""
    node_id: str = ""
    device: str = "cpu"
    partitions: tuple[int, ...] = ()
    offsets: dict[str, int] = field(default_factory=dict)  # partition -> next offset to learn
    samples_seen: int = 0  # values counted (the baseline), learned or only counted
    gan_learned: int = 0  # values the GAN learned from (all of them under learn_all)
    baseline_counts: tuple[int, ...] = ()
    estimate: tuple[float, ...] = ()
    temperature: float = math.nan
    generator_loss: float = math.nan
    discriminator_loss: float = math.nan
    steps: int = 0
    drift_detections: int = 0
    schedule_steps: int = 0  # temperature-schedule steps since the start or the last re-heat
    window_counts: tuple[float, ...] = ()  # forgetting counter over this replica's values
    dead_letters: int = 0
    dead_letters_by_reason: dict[str, int] = field(default_factory=dict)
    dead_letters_truncated: int = 0
    dead_letters_lost: int = 0
    records_skipped: int = 0
    lag: int = 0  # records on the owned partitions not learned yet
    lag_by_partition: dict[str, int] = field(default_factory=dict)
    queue_depth: int = 0  # polled batches waiting for the learning thread
    records_per_s: float = 0.0  # values learned per second, over the last status interval
    step_seconds: float = 0.0  # mean seconds per learned batch, recent
    poll_to_learn_seconds: float = 0.0  # mean delay from poll to learned, recent
    checkpoint_seq: int = 0
    restored_seq: int | None = None
    checkpoint_seconds: float = 0.0  # duration of the last checkpoint
    checkpoint_time: float = 0.0  # when the last checkpoint was written (0: never)
    checkpoint_failures: int = 0
    running: bool = False
    error: str | None = None
    data_time: float = 0.0  # as of this time the replica had learned all its partitions held
    status_time: float = 0.0
