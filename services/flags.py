"""Which flag of each command sets which setting, and how a message names a setting: its
dotted name, its flags on that command and its environment variable, in one place for the
command line's errors and the services' own checks at start.

Standard library only: the command line imports it before it knows what is installed.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Flag", "LOG_FLAGS", "COMMAND_FLAGS", "flags_of", "named", "env_name"]


def env_name(*location: str) -> str:
    """``("trainer", "num_actors")`` → ``GUMBEL_TRAINER__NUM_ACTORS`` (empty parts skipped):
    pydantic-settings' ``env_prefix`` and ``env_nested_delimiter`` of every command."""
    return "GUMBEL_" + "__".join(str(part).upper() for part in location if part != "")


@dataclass(frozen=True)
class Flag:
    """A command-line flag (and its aliases) that sets ``section.field`` of the settings;
    ``section`` is ``""`` for a top-level setting such as ``broker`` or ``log_level``."""

    name: str
    section: str
    field: str
    aliases: tuple[str, ...] = ()

    @property
    def dest(self) -> str:
        return f"{self.section or 'top'}__{self.field}"

    @property
    def metavar(self) -> str:
        return self.name.lstrip("-").upper().replace("-", "_")


KAFKA_FLAGS = [
    Flag("--bootstrap-servers", "kafka", "bootstrap_servers"),
    Flag("--num-partitions", "kafka", "num_partitions"),
    Flag("--security-protocol", "kafka", "security_protocol"),
    Flag("--sasl-mechanism", "kafka", "sasl_mechanism"),
    Flag("--sasl-username", "kafka", "sasl_username"),
]
PRODUCER_FLAGS = [
    Flag("--probabilities", "producer", "probabilities"),
    Flag("--rate", "producer", "rate"),
    Flag("--count", "producer", "count"),
    Flag("--seed", "producer", "seed"),
    Flag("--drift", "producer", "drift"),
    Flag("--format", "events", "format"),
    Flag("--values-per-record", "producer", "values_per_record"),
    Flag("--linger", "producer", "linger_s"),
]
# The metrics port is --port on every service; `up` runs two, and its --port is the monitor's.
PRODUCER_PORT = Flag("--port", "producer", "metrics_port", aliases=("--metrics-port",))
UP_PRODUCER_PORT = Flag("--producer-port", "producer", "metrics_port", aliases=("--metrics-port",))
EVENT_FLAGS = [
    Flag("--json-field", "events", "json_field"),
    Flag("--categories", "events", "categories"),
]
TRAINER_FLAGS = [
    Flag("--num-actors", "trainer", "num_actors"),
    Flag("--gpus-per-actor", "trainer", "gpus_per_actor"),
    Flag("--estimator", "trainer", "estimator"),
    Flag("--num-categories", "trainer", "num_categories"),
    Flag("--backpressure", "trainer", "backpressure"),
    Flag("--checkpoint-dir", "trainer", "checkpoint_dir"),
    Flag("--publish-interval", "trainer", "publish_interval_s"),
    Flag("--model-id", "trainer", "model_id"),
    Flag("--ray-address", "trainer", "ray_address"),
]
TRAINER_SEED = Flag("--seed", "trainer", "seed")
MONITOR_FLAGS = [
    Flag("--port", "monitor", "port"),
    Flag("--host", "monitor", "host"),
    Flag("--stale-after", "monitor", "stale_after_s"),
    Flag("--monitor-model-id", "monitor", "model_id"),
]
BROKER_FLAG = Flag("--broker", "", "broker")
LOG_FLAGS = [Flag("--log-level", "", "log_level"), Flag("--log-format", "", "log_format")]


COMMAND_FLAGS: dict[str, tuple[Flag, ...]] = {
    "producer": (*KAFKA_FLAGS, *PRODUCER_FLAGS, Flag("--from-model", "producer", "from_model"),
                 *EVENT_FLAGS, PRODUCER_PORT),
    "trainer": (*KAFKA_FLAGS, *TRAINER_FLAGS, *EVENT_FLAGS, TRAINER_SEED,
                Flag("--format", "events", "format")),
    "monitor": (*KAFKA_FLAGS, *MONITOR_FLAGS),
    "up": (*KAFKA_FLAGS, *PRODUCER_FLAGS, *EVENT_FLAGS, UP_PRODUCER_PORT, *TRAINER_FLAGS,
           *MONITOR_FLAGS, BROKER_FLAG),
}


def flags_of(command: str, section: str, field: str) -> list[str]:
    """The flags (aliases after the name) that set ``section.field`` on ``command``."""
    for flag in (*COMMAND_FLAGS.get(command, ()), *LOG_FLAGS):
        if (flag.section, flag.field) == (section, field):
            return [flag.name, *flag.aliases]
    return []


def named(command: str, section: str, field: str) -> str:
    """``trainer.checkpoint_dir (--checkpoint-dir, GUMBEL_TRAINER__CHECKPOINT_DIR)``: how a
    one-line error names the setting to change."""
    dotted = f"{section}.{field}" if section else field
    return f"{dotted} ({', '.join([*flags_of(command, section, field), env_name(section, field)])})"
