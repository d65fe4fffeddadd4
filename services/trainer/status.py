"""What the trainer's actors report to the driver: a frozen status per actor kind."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from services.common.schemas import Histogram

__all__ = ["IngestStatus", "LearnerStatus"]


@dataclass(frozen=True)
class LearnerStatus:
    """The model's one learner as of ``status_time`` (unix s): the model and its counts."""

    pid: int = 0
    host: str = ""
    node_id: str = ""
    device: str = "cpu"
    offsets: dict[str, int] = field(default_factory=dict)  # partition -> next offset learned
    values_by_partition: dict[str, int] = field(default_factory=dict)  # values learned from each
    samples_seen: int = 0  # values counted (the baseline), learned or only counted
    gan_learned: int = 0  # values the GAN learned from (all of them under learn_all)
    baseline_counts: tuple[int, ...] = ()
    window_counts: tuple[float, ...] = ()  # the forgetting counter over the same values
    estimate: tuple[float, ...] = ()
    temperature: float = math.nan
    generator_loss: float = math.nan
    discriminator_loss: float = math.nan
    steps: int = 0
    drift_detections: int = 0
    dead_letters: int = 0  # malformed records of the blocks learned: exact, with the offsets
    dead_letters_by_reason: dict[str, int] = field(default_factory=dict)
    records_skipped: int = 0  # records knowingly never learned (on_corrupt_checkpoint)
    waiting_blocks: int = 0  # accepted, waiting for the event-time merge or a step
    late_values: int = 0  # values merged after newer pieces of other partitions had left
    # values learned per bucket of seconds from record timestamp to step (LATENCY_BOUNDS_S)
    learn_latency: tuple[float, ...] = ()
    # the Estimate's histograms, cumulative since this process started (None: not measured)
    record_to_step: Histogram | None = None
    poll_to_step: Histogram | None = None
    step_duration: Histogram | None = None
    values_per_s: float = 0.0  # values learned per second, recent
    steps_per_s: float = 0.0
    step_seconds: float = 0.0  # mean seconds per GAN step, recent
    record_to_step_seconds: float = 0.0  # age of the newest record of the last round, then
    checkpoint_seq: int = 0
    restored_seq: int | None = None
    checkpoint_seconds: float = 0.0
    checkpoint_time: float = 0.0  # unix s of the last checkpoint (0: none by this process)
    checkpoint_failures: int = 0
    running: bool = False
    error: str | None = None
    data_time: float = 0.0  # as of this time the model had learned all the readers had
    status_time: float = 0.0


@dataclass(frozen=True)
class IngestStatus:
    """One ingest actor (Kafka consumer) as of ``status_time``."""

    index: int
    pid: int = 0
    host: str = ""
    node_id: str = ""
    partitions: tuple[int, ...] = ()
    positions: dict[str, int] = field(default_factory=dict)  # partition -> next offset read
    highwaters: dict[str, int] = field(default_factory=dict)  # from the last fetch
    records_per_s: float = 0.0  # records read per second, recent
    records_read: int = 0  # records read since this process started
    held_blocks: int = 0  # blocks the learner had no room for yet (their partitions paused)
    refused_blocks: int = 0  # blocks the learner refused: not at its next offset (replays)
    dead_letters: int = 0  # malformed records this actor sent to the dead-letter topic
    dead_letters_truncated: int = 0
    dead_letters_lost: int = 0
    running: bool = False
    error: str | None = None
    status_time: float = 0.0
