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
from collections.abc import Callable, Sequence
from typing import Any, Literal

from ray.exceptions import RayActorError

from services.common import logs
from services.common.errors import StartupError
from services.common.kafka import broker_ready, make_producer
from services.common.schemas import ESTIMATE_HEADERS, Estimate
from services.common.settings import TrainerServiceSettings
from services.common.signals import stop_on_signals
from services.flags import named
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

LogFormat = Literal["text", "json"]


def _log_format() -> LogFormat:
    """This process's log format, as the CLI set it (``GUMBEL_LOG_FORMAT``)."""
    return "json" if os.environ.get("GUMBEL_LOG_FORMAT", "").lower() == "json" else "text"


def init_ray(address: str | None, auth_token: str | None = None,
             num_cpus: float | None = None, log_format: LogFormat = "text") -> bool:
    """Join ``address`` (or ``RAY_ADDRESS``), else start a local Ray with at least
    ``num_cpus`` logical CPUs (default: this machine's); True if we started it.

    A cluster with token authentication needs its token: ``auth_token``, or Ray's own
    ``RAY_AUTH_TOKEN`` / ``~/.ray/auth_token`` with ``RAY_AUTH_MODE=token``.

    With ``log_format="json"`` the job gets Ray's own ``LoggingConfig(encoding="JSON")``: Ray
    configures the root logger of every worker process of this job (Ray's own lines there are
    JSON in Ray's fields) and, because the job has a logging config, forwards the workers'
    lines to this driver without its ``(RayIngestActor pid=...)`` prefix, so every line the
    driver prints stays one JSON object (and ``RAY_BACKEND_LOG_JSON=1`` makes the C++ lines
    Ray's core worker writes to this process's stderr JSON). It is set on the job
    (``JobConfig``), not through ``ray.init(logging_config=)``, which would also add Ray's
    handler to this driver's root logger and print each of our lines twice.
    """
    import ray
    from ray.job_config import JobConfig

    if ray.is_initialized():
        return False
    # Ray's own driver-side lines through our handler (JSON or text), warnings only as before:
    # with configure_logging=False Ray leaves its logger without a handler and not propagating,
    # and Python's last-resort handler would print them as bare text.
    logging.getLogger("ray").setLevel(logging.WARNING)
    logging.getLogger("ray").propagate = True
    if log_format == "json":
        # Ray's C++ core worker in this process logs its errors to stderr: as JSON too.
        os.environ.setdefault("RAY_BACKEND_LOG_JSON", "1")
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
            job_config=_job_config(JobConfig(), log_format),
        )
    except ConnectionError as exc:
        if not address:
            raise
        token = named("trainer", "trainer", "ray_auth_token")
        hint = (f"is the token right? ({token})" if auth_token else
                f"if it uses token authentication, set {token} or RAY_AUTH_MODE=token")
        raise StartupError(
            f"invalid setting trainer.ray_address (--ray-address, RAY_ADDRESS): cannot join "
            f"the Ray cluster at {address}: {exc}; {hint}"
        ) from None
    log.info("Ray %s (%s)", "joined at " + address if address else "started locally",
             ray.cluster_resources())
    return True


def _job_config(job_config: Any, log_format: LogFormat) -> Any:
    """``job_config`` with Ray's JSON logging for the workers when ``log_format`` is json."""
    if log_format == "json":
        import ray

        # The workers' level is ours, set on our loggers in each actor (_worker_logging).
        job_config.set_py_logging_config(ray.LoggingConfig(
            encoding="JSON", log_level="INFO", additional_log_standard_attrs=["name"]))
    return job_config


def _worker_logging(log_level: int, log_format: LogFormat, fields: dict[str, Any]) -> None:
    """Log like the driver in a Ray worker process, with the actor's ``fields`` on every line.

    Our loggers (and kafka-python's and Python's warnings) get our own handler, so our lines
    have the driver's fields; Ray configures the rest of the worker's root logger (its JSON,
    with Ray's field names), and its lines get the actor's fields too.
    """
    logs.set_fields(**fields)  # the process is this one actor
    if log_format == "json":
        logging.captureWarnings(True)
        for handler in {*logging.getLogger().handlers, *logging.getLogger("ray").handlers}:
            handler.addFilter(logs.FieldsFilter())
    for name in ("services", "kafka", "py.warnings"):
        logger = logging.getLogger(name)
        # kafka-python's own NullHandler does not count; ours once per process
        if not any(isinstance(f, logs.FieldsFilter) for h in logger.handlers for f in h.filters):
            logger.addHandler(logs.handler(log_format))
            logger.propagate = False
    logging.getLogger("services").setLevel(log_level)
    logging.getLogger("kafka").setLevel(max(log_level, logging.WARNING))


class RayLearnerActor(LearnerActor):
    """``LearnerActor`` in a Ray worker process: logs like the driver, then starts."""

    def __init__(self, settings: TrainerServiceSettings, *, log_level: int = logging.INFO,
                 log_format: LogFormat = "text", **kwargs: Any) -> None:
        _worker_logging(log_level, log_format,
                        {"model_id": settings.trainer.model_id, "actor": "learner"})
        import ray

        self.node_id = ray.get_runtime_context().get_node_id()
        super().__init__(settings, **kwargs)


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

    def claim(self, partitions: dict[int, tuple[int, int | None]],
              expected: Sequence[int] = ()) -> dict[int, int]:
        return self._call("claim", partitions, list(expected))

    def offer(self, blocks: list[Block], caught_up: list[int]) -> OfferReply:
        return self._call("offer", blocks, caught_up)


class RayIngestActor(IngestActor):
    """``IngestActor`` in a Ray worker process, feeding the learner behind ``learner``."""

    def __init__(self, settings: TrainerServiceSettings, index: int, num_actors: int,
                 learner: Any, *, log_level: int = logging.INFO,
                 log_format: LogFormat = "text", **kwargs: Any) -> None:
        _worker_logging(log_level, log_format,
                        {"model_id": settings.trainer.model_id, "actor": f"ingest-{index}"})
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
            f"node offers it {named('trainer', 'trainer', 'learner_resources')} "
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
        log_format: LogFormat | None = None,
    ) -> None:
        self.settings = settings
        # how the actors log: as this process was told (the CLI's GUMBEL_LOG_FORMAT)
        self.log_format: LogFormat = log_format or _log_format()
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
        logging_options = {"log_level": logging.getLogger().getEffectiveLevel(),
                           "log_format": self.log_format}
        self.learner = remote_learner_class(self.settings).remote(
            self.settings, autostart=True, exit_on_error=True, **logging_options)
        ingest_cls = remote_ingest_class(self.settings)
        self.actors = [
            ingest_cls.remote(self.settings, i, cfg.num_actors, self.learner, autostart=True,
                              exit_on_error=True, **logging_options)
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
            log.info("final estimate: %d records learned, %d dead letters",
                     final.samples_seen, final.dead_letters, extra={"offsets": final.offsets})
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
    logs.set_fields(model_id=settings.trainer.model_id)
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
        if not broker_ready(settings.kafka):
            return 1
        token = settings.trainer.ray_auth_token
        cfg = settings.trainer
        started_ray = init_ray(cfg.ray_address,
                               token.get_secret_value() if token is not None else None,
                               num_cpus=cfg.cpus_per_actor * (cfg.num_actors + 1),
                               log_format=_log_format())
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
