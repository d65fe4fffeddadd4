"""What one trainer actor is made of, built from the settings in the actor's own process
(Kafka clients and learners do not travel to a Ray worker): its clients, its replica and
its checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from services.common.kafka import make_consumer, make_producer
from services.common.settings import TrainerServiceSettings
from services.trainer.checkpointing import Checkpointer, actor_checkpoint_dir
from services.trainer.learner import build_learner
from services.trainer.ports import Learner
from services.trainer.replica import Replica

__all__ = ["consumer_factory", "producer_factory", "make_replica", "make_checkpointer"]


def consumer_factory(settings: TrainerServiceSettings, index: int) -> Callable[[], Any]:
    """Makes actor ``index``'s consumer of the numbers topic (partitions assigned by hand)."""
    cfg = settings.trainer
    return partial(make_consumer, settings.kafka, group_id=cfg.group_id,
                   client_id=f"gumbel-trainer-{cfg.model_id}-{index}",
                   # metadata as fresh as the partition check, so added partitions are seen
                   metadata_max_age_ms=int(cfg.partition_refresh_s * 1000))


def producer_factory(settings: TrainerServiceSettings, index: int) -> Callable[[], Any]:
    """Makes actor ``index``'s producer of dead letters."""
    return partial(make_producer, settings.kafka,
                   client_id=f"gumbel-dlq-{settings.trainer.model_id}-{index}")


def make_replica(
    settings: TrainerServiceSettings, index: int, num_actors: int, num_partitions: int,
    device: str, learner_factory: Callable[[], Learner] | None = None,
) -> Replica:
    """Actor ``index``'s replica of a topic of ``num_partitions``; its learners from
    ``learner_factory``, by default ``OnlineGAN`` on ``device``."""
    cfg = settings.trainer
    # A learner per partition: each of P sees 1/P of the stream and steps every step_size / P
    # of its values, so each takes as many GAN steps as one learner on the whole stream (the
    # GAN converges by steps).
    samples_per_step = max(1, cfg.step_size // max(1, num_partitions))
    factory = learner_factory or partial(build_learner, cfg.num_categories, cfg.estimator,
                                         cfg.seed + index, device, samples_per_step)
    return Replica(factory, cfg.num_categories, backpressure=cfg.backpressure,
                   sample_per_poll=cfg.sample_per_poll, seed=cfg.seed + index,
                   # the replicas' windows add up to about window_records of the stream
                   window_records=cfg.window_records / num_actors)


def make_checkpointer(settings: TrainerServiceSettings, index: int, num_actors: int
                      ) -> Checkpointer:
    """Actor ``index``'s checkpoints (in ``checkpoint_dir/<model_id>/actor-<index>``, or none
    without a checkpoint_dir)."""
    cfg = settings.trainer
    directory = (None if cfg.checkpoint_dir is None
                 else actor_checkpoint_dir(cfg.checkpoint_dir, cfg.model_id, index))
    return Checkpointer(directory, model_id=cfg.model_id, index=index, num_actors=num_actors,
                        topic=settings.kafka.numbers_topic, group_id=cfg.group_id)
