"""The model's learner and its ingest actors in one process, without Ray: the same classes the
trainer makes remote, the learner called directly instead of through its handle. For the
benchmarks and profilers (one process to watch) and the tests."""

from __future__ import annotations

from services.common.settings import TrainerServiceSettings
from services.trainer.ingest import IngestActor
from services.trainer.learner import LearnerActor
from services.trainer.status import LearnerStatus

__all__ = ["LocalTrainer"]


class LocalTrainer:
    """``start()`` the learner and ``num_actors`` ingest actors; ``stop()`` as the driver does."""

    def __init__(self, settings: TrainerServiceSettings, num_actors: int | None = None) -> None:
        n = num_actors or settings.trainer.num_actors
        self.learner = LearnerActor(settings)
        self.ingest = [IngestActor(settings, i, n, self.learner) for i in range(n)]

    def start(self) -> LocalTrainer:
        self.learner.start()
        for actor in self.ingest:
            actor.start()
        return self

    @property
    def offsets(self) -> dict[int, int]:
        """The next offset learned, by partition."""
        return {int(p): o for p, o in self.learner.status().offsets.items()}

    def status(self) -> LearnerStatus:
        return self.learner.status()

    def stop(self, final_checkpoint: bool = True) -> LearnerStatus:
        """Pause the readers, let the learner learn what it holds (and write its final
        checkpoint), then commit its offsets and close the readers; the learner's status."""
        for actor in self.ingest:
            actor.pause()
        final = self.learner.stop(final_checkpoint=final_checkpoint)
        for actor in self.ingest:
            actor.stop({int(p): o for p, o in final.offsets.items()})
        return final
