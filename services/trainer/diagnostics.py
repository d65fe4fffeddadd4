"""What an actor says when its input looks wrong: a producer of another K, a recreated topic."""

from __future__ import annotations

import logging
import time

from services.trainer.source import PolledBatch

__all__ = ["MismatchWarning", "report_offsets_past_the_end"]

log = logging.getLogger("services.trainer.actor")


class MismatchWarning:
    """Warns, at most every ``interval_s``, when records fall outside [0, K)."""

    def __init__(self, index: int, num_categories: int, interval_s: float = 60.0) -> None:
        self.index, self.num_categories, self.interval_s = index, num_categories, interval_s
        self._next = 0.0

    def check(self, batch: PolledBatch) -> None:
        out_of_range = [r for r in batch.decoded.bad if r.reason == "out_of_range"]
        now = time.monotonic()
        if not out_of_range or now < self._next:
            return
        self._next = now + self.interval_s
        log.warning("actor %d: %d of %d records of this poll are outside [0, %d) (e.g. %s) and "
                    "go to the dead-letter topic: does the producer's K match the trainer's "
                    "num_categories? (logged at most every %gs; counted by reason "
                    "out_of_range)", self.index, len(out_of_range), batch.records,
                    self.num_categories, out_of_range[0].error, self.interval_s)


def report_offsets_past_the_end(
    unverified: dict[int, int], highwaters: dict[int, int], topic: str, index: int
) -> dict[int, int]:
    """Say once per partition when a restored offset is past the log's end (the topic was
    recreated); the offsets still unverified (no fetch answered for them yet)."""
    left = {}
    for partition, stored in unverified.items():
        high = highwaters.get(partition)
        if high is None:
            left[partition] = stored
        elif stored > high:
            log.error("actor %d: the checkpoint is at offset %d of %s[%d], past its end %d: "
                      "was the topic recreated? (a fresh broker needs a fresh "
                      "--checkpoint-dir)", index, stored, topic, partition, high)
    return left
