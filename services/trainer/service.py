"""``gumbel-stream trainer``: start (or join) Ray, run the trainer actors, publish estimates.

The composition root: settings → Kafka topics → Ray actors made remote here (the model's one
``LearnerActor``, with the GPU, and N ``IngestActor``s, CPUs only, each given the learner's
handle) → ``Coordinator`` → the ``estimates`` topic. SIGTERM or SIGINT stops the ingest
actors, then the learner (its final checkpoint), and publishes a final estimate.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from ray.exceptions import RayActorError

from services.common.errors import StartupError
from services.common.kafka import BrokerUnavailable, ensure_topics, make_producer, wait_for_broker
from services.common.schemas import ESTIMATE_HEADERS, Estimate
from services.common.settings import TrainerServiceSettings
from services.common.signals import stop_on_signals
from services.trainer.coordinator import UNAVAILABLE, Coordinator
from services.trainer.ingest import IngestActor, LearnerUnavailable
from services.trainer.learner import LearnerActor, OfferReply
from services.trainer.preflight import (
    check_checkpoint_dir,
    check_checkpoints_match,
    check_cpus,
    check_gpus,
    check_learner_resources,
)
from services.trainer.source import Block

__all__ = ["run", "Trainer", "init_ray", "remote_ingest_class", "remote_learner_class"]

log = logging.getLogger(__name__)

LOG_INTERVAL_S = 5.0


def init_ray(address: str | None, auth_token: str | None = None,
             num_cpus: float | None = None) -> bool:
    """Join ``address`` (or ``RAY_ADDRESS``), else start a local Ray with at least
    ``num_cpus`` logical CPUs (default: this machine's); True if we started it.

    A cluster with token authentication needs its token: ``auth_token``, or Ray's own
    ``RAY_AUTH_TOKEN`` / ``~/.ray/auth_token`` with ``RAY_AUTH_MODE=token``.
    """
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address == "local":  # Ray's own word for "start one here", as no address is
        address = None
    if auth_token:
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN"] = auth_token
    try:
        ray.init(
            # Without an address Ray would join any cluster already started on this machine
            # (`ray start`) and we would say "started locally": "local" always starts our own.
            address=address or "local",
            # A local Ray counts this machine's cores; the learner and every ingest actor ask
            # for cpus_per_actor, and on a small machine they share the cores.
            num_cpus=None if address else max(os.cpu_count() or 1, math.ceil(num_cpus or 0)),
            include_dashboard=False,
            logging_level=logging.WARNING,
            configure_logging=False,
            namespace="gumbel-stream",
        )
    except ConnectionError as exc:
        if not address:
            raise
        hint = ("is the token right? (trainer.ray_auth_token)" if auth_token else
                "if it uses token authentication, set trainer.ray_auth_token "
                "(GUMBEL_TRAINER__RAY_AUTH_TOKEN) or RAY_AUTH_MODE=token")
        raise StartupError(
            f"invalid setting trainer.ray_address (--ray-address, RAY_ADDRESS): cannot join "
            f"the Ray cluster at {address}: {exc}; {hint}"
        ) from None
    log.info("Ray %s (%s)", "joined at " + address if address else "started locally",
             ray.cluster_resources())
    return True


def _worker_logging(log_level: int) -> None:
    """Log like the driver in a Ray worker process (Ray configures the worker's root logger)."""
    ours = logging.getLogger("services")
    if not ours.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        ours.addHandler(handler)
        ours.propagate = False
    ours.setLevel(log_level)
    logging.getLogger("kafka").setLevel(max(log_level, logging.WARNING))


class RayLearnerActor(LearnerActor):
    """``LearnerActor`` in a Ray worker process: logs like the driver, then starts."""

    def __init__(self, *args: Any, log_level: int = logging.INFO, **kwargs: Any) -> None:
        _worker_logging(log_level)
        import ray

        self.node_id = ray.get_runtime_context().get_node_id()
        super().__init__(*args, **kwargs)


class RemoteLearner:
    """The learner as an ingest actor calls it (``LearnerPort``), through its Ray handle: an
    answer in time, or ``LearnerUnavailable`` while Ray restarts it."""

    def __init__(self, handle: Any, timeout_s: float = 30.0) -> None:
        self.handle, self.timeout_s = handle, timeout_s

    def _call(self, method: str, *args: Any) -> Any:
        import ray

        try:
            return ray.get(getattr(self.handle, method).remote(*args), timeout=self.timeout_s)
        except UNAVAILABLE as exc:
            raise LearnerUnavailable(f"{type(exc).__name__}: {exc}") from None

    def claim(self, partitions: dict[int, tuple[int, int | None]]) -> dict[int, int]:
        return self._call("claim", partitions)

    def offer(self, blocks: list[Block], caught_up: list[int]) -> OfferReply:
        return self._call("offer", blocks, caught_up)


class RayIngestActor(IngestActor):
    """``IngestActor`` in a Ray worker process, feeding the learner behind ``learner``."""

    def __init__(self, settings: TrainerServiceSettings, index: int, num_actors: int,
                 learner: Any, *, log_level: int = logging.INFO, **kwargs: Any) -> None:
        _worker_logging(log_level)
        import ray

        self.node_id = ray.get_runtime_context().get_node_id()
        super().__init__(settings, index, num_actors, RemoteLearner(learner), **kwargs)


def remote_learner_class(settings: TrainerServiceSettings) -> Any:
    """``LearnerActor`` as a Ray actor class: the one that takes the GPU, restarted by Ray."""
    import ray

    cfg = settings.trainer
    return ray.remote(RayLearnerActor).options(
        num_cpus=cfg.cpus_per_actor,
        num_gpus=cfg.gpus_per_actor,
        resources=dict(cfg.learner_resources),  # the node with its checkpoint volume, if set
        max_restarts=cfg.max_restarts,
        max_task_retries=0,
        # offers from every ingest actor, status and checkpoint answer while it learns
        max_concurrency=max(8, 2 * cfg.num_actors + 2),
    )


def remote_ingest_class(settings: TrainerServiceSettings) -> Any:
    """``IngestActor`` as a Ray actor class: CPUs only, spread over the nodes."""
    import ray

    cfg = settings.trainer
    return ray.remote(RayIngestActor).options(
        # What an actor really uses, spread over the nodes: a cluster of N nodes reads on N
        # nodes instead of packing every actor on one. Never a GPU.
        num_cpus=cfg.cpus_per_actor,
        num_gpus=0,
        scheduling_strategy="SPREAD",
        max_restarts=cfg.max_restarts,
        max_task_retries=0,
        max_concurrency=4,  # status() answers while the loop polls
    )


def _checkpoint_dir_problem(settings: TrainerServiceSettings) -> str | None:
    """The preflight's one line about the checkpoint directory, or None when it is fine."""
    try:
        check_checkpoint_dir(settings.trainer)
        check_checkpoints_match(settings.trainer)
    except StartupError as exc:
        return str(exc)
    return None


def check_checkpoints_where_the_learner_runs(settings: TrainerServiceSettings,
                                             timeout_s: float = 120.0) -> None:
    """The preflight's checkpoint checks, in a Ray task placed as the learner will be: with
    ``learner_resources`` its directory is on that node (a ReadWriteOnce volume mounted by
    the learner's worker group alone), not on the driver's."""
    import ray
    from ray.exceptions import GetTimeoutError

    task = ray.remote(_checkpoint_dir_problem).options(
        num_cpus=0, resources=dict(settings.trainer.learner_resources), max_retries=0)
    try:
        problem = ray.get(task.remote(settings), timeout=timeout_s)
    except GetTimeoutError:
        raise StartupError(
            f"the checkpoint check on the learner's node did not run in {timeout_s:g} s: no "
            "node offers it trainer.learner_resources (GUMBEL_TRAINER__LEARNER_RESOURCES) "
            f"{dict(settings.trainer.learner_resources)} free") from None
    if problem is not None:
        raise StartupError(f"{problem} (on the learner's node)")


def _cause(exc: BaseException) -> str:
    """The last ``SomeError: message`` line of a Ray error (its remote traceback's cause)."""
    lines = [line.strip() for line in str(exc).splitlines() if "Error: " in line]
    return lines[-1] if lines else f"{type(exc).__name__}: {exc}"


class Trainer:
    """The running trainer: the learner, N ingest actors, a coordinator, the estimates
    producer."""

    def __init__(
        self,
        settings: TrainerServiceSettings,
        publish: Callable[[Estimate], None] | None = None,
    ) -> None:
        self.settings = settings
        self._producer: Any = None
        self._publish = publish or self._publish_to_kafka
        self.coordinator: Coordinator | None = None
        self.learner: Any = None  # the model's one learner actor
        self.actors: list[Any] = []  # the ingest actors
        self._health_warned = False

    def _publish_to_kafka(self, estimate: Estimate) -> None:
        if self._producer is None:
            self._producer = make_producer(self.settings.kafka, client_id="gumbel-estimates")
        self._producer.send(
            self.settings.kafka.estimates_topic,
            key=estimate.model_id.encode("utf-8"),
            value=estimate.to_bytes(),
            headers=ESTIMATE_HEADERS,
        )

    def start(self, ready_timeout_s: float = 180.0) -> None:
        cfg = self.settings.trainer
        level = logging.getLogger().getEffectiveLevel()
        self.learner = remote_learner_class(self.settings).remote(
            self.settings, autostart=True, exit_on_error=True, log_level=level)
        ingest_cls = remote_ingest_class(self.settings)
        self.actors = [
            ingest_cls.remote(self.settings, i, cfg.num_actors, self.learner, autostart=True,
                              exit_on_error=True, log_level=level)
            for i in range(cfg.num_actors)
        ]
        self.coordinator = Coordinator(
            self.learner,
            self.actors,
            model_id=cfg.model_id,
            num_categories=cfg.num_categories,
            estimator=cfg.estimator,
            publish=self._publish,
            backpressure=cfg.backpressure,
            window_records=cfg.window_records,
            category_names=self.settings.events.categories,
        )
        try:
            self.coordinator.wait_ready(ready_timeout_s)
        except RayActorError as exc:  # an actor's constructor raised: say why, in one line
            raise StartupError(f"a trainer actor could not start: {_cause(exc)}") from None
        log.info("trainer actors running: the learner and %d ingest actors (pids %s)",
                 cfg.num_actors, self.coordinator.pids())

    def run(self, stop: threading.Event) -> None:
        """Publish (and log) on their intervals until ``stop`` is set."""
        assert self.coordinator is not None, "start() first"
        cfg = self.settings.trainer
        next_log = time.monotonic() + LOG_INTERVAL_S
        while not stop.is_set():
            started = time.monotonic()
            estimate = self.coordinator.publish()
            self._mark_health()
            if started >= next_log:
                self._log_progress(estimate)
                next_log = started + LOG_INTERVAL_S
            stop.wait(max(0.05, started + cfg.publish_interval_s - time.monotonic()))

    def _mark_health(self) -> None:
        """Keep ``health_file``'s modification time at the learner's last checkpoint (as the
        learner reported it), only ever forward: a probe reads its age where the checkpoint
        volume is not mounted. Stale when the learner stops checkpointing or this loop stops."""
        path = self.settings.trainer.health_file
        checkpoint_time = self.coordinator.last_learner.checkpoint_time if self.coordinator else 0
        if path is None or checkpoint_time <= 0:
            return
        try:
            if path.exists() and path.stat().st_mtime >= checkpoint_time:
                return
            path.touch()
            os.utime(path, (checkpoint_time, checkpoint_time))
        except OSError as exc:
            if not self._health_warned:  # once: the probe will say the rest
                log.warning("cannot update trainer.health_file %s: %s", path, exc)
                self._health_warned = True

    def _log_progress(self, estimate: Estimate) -> None:
        probs = ",".join(f"{p:.3f}" for p in estimate.probabilities)
        log.info("learned %d records (%d dead letters) over %d actors; estimate [%s], "
                 "temperature %.3f", estimate.samples_seen, estimate.dead_letters,
                 estimate.actors, probs, estimate.temperature)
        for who, message in (self.coordinator.errors() if self.coordinator else {}).items():
            log.error("%s failed: %s (Ray restarts it)", who, message)

    def stop(self) -> Estimate | None:
        """Stop the actors (final checkpoints), publish the final estimate, flush, and end the
        actors' processes (their CPUs go back to the cluster at once, not when the driver
        exits: a trainer started again in the same process needs them)."""
        final = None
        if self.coordinator is not None:
            statuses = self.coordinator.stop()
            final = self.coordinator.publish(statuses)
            log.info("final estimate: %d records learned, %d dead letters, offsets %s",
                     final.samples_seen, final.dead_letters, final.offsets)
            import ray

            for actor in [*self.actors, self.learner]:
                ray.kill(actor, no_restart=True)
        if self._producer is not None:
            self._producer.flush(timeout=30)
            self._producer.close(timeout=10)
            self._producer = None
        return final


def run(settings: TrainerServiceSettings) -> int:
    """Check, start Ray and the actors, train until SIGTERM/SIGINT; 1 if Kafka is unreachable.

    Settings the machine contradicts raise ``StartupError`` (the CLI prints it, exit 2).
    """
    # The checkpoint directory is the learner's: here, unless learner_resources place the
    # learner on another node (checked there once Ray is up).
    checked_here = not settings.trainer.learner_resources
    if checked_here:
        check_checkpoint_dir(settings.trainer)
        check_checkpoints_match(settings.trainer)
    address = settings.trainer.ray_address or os.environ.get("RAY_ADDRESS")
    # a local Ray gets this machine's GPUs
    if address in (None, "", "local") and settings.trainer.gpus_per_actor > 0:
        import torch

        check_gpus(settings.trainer, {"GPU": float(torch.cuda.device_count())}, "this machine")
    stop = threading.Event()
    with stop_on_signals(stop):
        try:
            wait_for_broker(settings.kafka)
        except BrokerUnavailable as exc:
            log.error("%s", exc)
            return 1
        ensure_topics(settings.kafka)
        token = settings.trainer.ray_auth_token
        cfg = settings.trainer
        started_ray = init_ray(cfg.ray_address,
                               token.get_secret_value() if token is not None else None,
                               num_cpus=cfg.cpus_per_actor * (cfg.num_actors + 1))
        try:
            import ray

            check_gpus(settings.trainer, ray.cluster_resources())
            check_cpus(settings.trainer, ray.cluster_resources())
            check_learner_resources(settings.trainer, ray.cluster_resources())
            if not checked_here:
                check_checkpoints_where_the_learner_runs(settings)
            # Again: ray.init installs a SIGTERM handler of its own for drivers.
            with stop_on_signals(stop):
                trainer = Trainer(settings)
                try:
                    if not stop.is_set():
                        trainer.start()
                        trainer.run(stop)
                finally:
                    trainer.stop()
            return 0
        finally:
            if started_ray:
                import ray

                ray.shutdown()
