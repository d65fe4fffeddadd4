"""How far behind one actor is: each partition's high watermark from the last fetch against
the next offset it will learn, and the one check of restored offsets against the log's end."""

from __future__ import annotations

from collections.abc import Mapping

from services.trainer.diagnostics import report_offsets_past_the_end

__all__ = ["Lag"]


class Lag:
    """High watermarks set by the polling thread, lag read by the others.

    ``fetched`` replaces the watermarks as a whole and readers take the dict once, so a reader
    never sees a half-updated mapping without a lock.
    """

    def __init__(self, topic: str, index: int) -> None:
        self.topic, self.index = topic, index
        self.highwaters: dict[int, int] = {}
        self._unverified: dict[int, int] = {}  # restored offsets not yet checked vs the log

    def verify(self, restored: Mapping[int, int]) -> None:
        """Check ``restored`` against the first fetch's high watermarks, not ListOffsets: some
        brokers (Tansu) answer it with the last batch's base offset + 1."""
        self._unverified = dict(restored)

    def fetched(self, highwaters: dict[int, int]) -> None:
        """The high watermarks of a fetch; says once if a restored offset is past the end."""
        self.highwaters = highwaters
        if self._unverified:
            self._unverified = report_offsets_past_the_end(
                self._unverified, highwaters, self.topic, self.index)

    def by_partition(self, offsets: Mapping[int, int]) -> dict[int, int]:
        """Records not learned yet, by partition (those fetched at least once)."""
        highwaters = self.highwaters
        return {p: max(0, high - offsets.get(p, high)) for p, high in highwaters.items()}
