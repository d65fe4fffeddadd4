"""The ``gumbel-stream`` command line: parse flags, validate settings, start one service.

Flags override environment variables (``GUMBEL_...``); a bad value of either exits with
status 2 and one line naming the setting, before anything starts.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

__all__ = ["main", "load_settings", "SettingsError"]


@dataclass(frozen=True)
class Flag:
    """A command-line flag that sets ``section.field`` of a service's settings."""

    name: str
    section: str
    field: str
    help: str
    type: Callable[[str], Any] = str


KAFKA_FLAGS = [
    Flag(
        "--bootstrap-servers",
        "kafka",
        "bootstrap_servers",
        "Kafka bootstrap servers (host:port,...)",
    ),
    Flag(
        "--num-partitions", "kafka", "num_partitions", "partitions of the numbers topic if created"
    ),
    Flag(
        "--security-protocol",
        "kafka",
        "security_protocol",
        "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
    ),
    Flag("--sasl-mechanism", "kafka", "sasl_mechanism", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
    Flag("--sasl-username", "kafka", "sasl_username", "SASL user"),
]
PRODUCER_FLAGS = [
    Flag(
        "--probabilities",
        "producer",
        "probabilities",
        "the true distribution, e.g. 0,0,0.1,0.3,0.6",
    ),
    Flag("--rate", "producer", "rate", "records per second (0 = as fast as possible)"),
    Flag("--count", "producer", "count", "stop after N records (0 = forever)"),
    Flag("--seed", "producer", "seed", "random seed of the stream"),
    Flag(
        "--drift",
        "producer",
        "drift",
        "AT=p0,p1,...;... switch distribution after AT records (or AT seconds with 's')",
    ),
    Flag("--metrics-port", "producer", "metrics_port", "port of the producer's /metrics"),
    Flag("--format", "producer", "format", "ascii (one value per record) or packed"),
    Flag("--values-per-record", "producer", "values_per_record", "values in one packed record"),
    Flag(
        "--linger", "producer", "linger_s",
        "seconds to keep serving /metrics after the last record (so a scrape sees the total)",
    ),
]
TRAINER_FLAGS = [
    Flag("--num-actors", "trainer", "num_actors", "trainer actors (one consumer each)"),
    Flag(
        "--gpus-per-actor",
        "trainer",
        "gpus_per_actor",
        "GPUs per actor (fractions allowed; 0 = CPU)",
    ),
    Flag("--estimator", "trainer", "estimator", "soft, st, reinmax, rao or gst"),
    Flag("--num-categories", "trainer", "num_categories", "K: categories are 0..K-1"),
    Flag("--backpressure", "trainer", "backpressure", "learn_all or sample (stream outruns GAN)"),
    Flag("--checkpoint-dir", "trainer", "checkpoint_dir", "where checkpoints (model + offsets) go"),
    Flag(
        "--publish-interval", "trainer", "publish_interval_s", "seconds between published estimates"
    ),
    Flag("--model-id", "trainer", "model_id", "key of the published estimates"),
    Flag(
        "--ray-address",
        "trainer",
        "ray_address",
        "join this Ray cluster (default: RAY_ADDRESS or local)",
    ),
]
MONITOR_FLAGS = [
    Flag("--port", "monitor", "port", "port of the monitor's /metrics and /healthz"),
    Flag("--host", "monitor", "host", "address the monitor binds to"),
    Flag("--stale-after", "monitor", "stale_after_s", "seconds after which /healthz reports stale"),
    Flag("--monitor-model-id", "monitor", "model_id", "only this model's estimates (default: any)"),
]
TRAINER_SEED = Flag("--seed", "trainer", "seed", "random seed of the learner")


class SettingsError(SystemExit):
    """Raised (exit status 2) when a setting is invalid; the message names the setting."""

    def __init__(self, message: str) -> None:
        print(f"gumbel-stream: {message}", file=sys.stderr)
        super().__init__(2)


def _env_name(loc: Sequence[Any]) -> str:
    return "GUMBEL_" + "__".join(str(part).upper() for part in loc)


def load_settings(cls: type[BaseModel], flags: list[Flag], args: argparse.Namespace) -> Any:
    """Build ``cls`` from the environment with the given flags on top; exit 2 if invalid."""
    overrides: dict[str, dict[str, Any]] = {}
    by_location: dict[tuple[str, str], str] = {}
    for flag in flags:
        value = getattr(args, flag.name.lstrip("-").replace("-", "_"), None)
        by_location[(flag.section, flag.field)] = flag.name
        if value is not None:
            overrides.setdefault(flag.section, {})[flag.field] = value
    try:
        return cls(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = tuple(str(part) for part in error["loc"])
        setting = ".".join(loc)
        names = [_env_name(loc)]
        if len(loc) >= 2 and (loc[0], loc[1]) in by_location:
            names.insert(0, by_location[(loc[0], loc[1])])
        message = error["msg"].removeprefix("Value error, ")
        value = error.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        raise SettingsError(
            f"invalid setting {setting} ({', '.join(names)}): {message}{shown}"
        ) from None


def _add_flags(parser: argparse.ArgumentParser, flags: list[Flag]) -> None:
    for flag in flags:
        parser.add_argument(flag.name, default=None, help=flag.help)


SERVICES: dict[str, tuple[str, str, list[Flag], str]] = {
    # name: (module with run(settings), settings class, flags, help)
    "producer": (
        "services.producer.service",
        "ProducerServiceSettings",
        KAFKA_FLAGS + PRODUCER_FLAGS,
        "emit numbers to Kafka",
    ),
    "trainer": (
        "services.trainer.service",
        "TrainerServiceSettings",
        KAFKA_FLAGS + TRAINER_FLAGS + [TRAINER_SEED],
        "run the Ray trainer actors",
    ),
    "monitor": (
        "services.monitor.service",
        "MonitorServiceSettings",
        KAFKA_FLAGS + MONITOR_FLAGS,
        "serve Prometheus metrics and /healthz",
    ),
    "up": (
        "services.up",
        "UpSettings",
        KAFKA_FLAGS + PRODUCER_FLAGS + [f for f in TRAINER_FLAGS] + MONITOR_FLAGS,
        "everything on one machine (embedded broker unless --bootstrap-servers)",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gumbel-stream",
        description="Learn a categorical stream's distribution online with a Gumbel-softmax GAN.",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (_, _, flags, help_text) in SERVICES.items():
        _add_flags(commands.add_parser(name, help=help_text, description=help_text), flags)
    bench = commands.add_parser("bench", help="benchmarks (ratios against baselines)")
    bench.add_argument("names", nargs="*", help="which benchmarks (default: all that apply)")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    return parser


def _configure_logging(level: str) -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise SettingsError(f"invalid setting --log-level: unknown level {level!r}")
    logging.basicConfig(
        level=numeric, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # kafka-python logs every connection at INFO.
    logging.getLogger("kafka").setLevel(max(numeric, logging.WARNING))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.log_level)
    if args.command == "bench":
        from services.bench.cli import run_bench

        return run_bench(args.names, as_json=args.json, quick=args.quick)
    module_name, class_name, flags, _ = SERVICES[args.command]
    from services.common import settings as settings_module

    settings = load_settings(getattr(settings_module, class_name), flags, args)
    module = importlib.import_module(module_name)
    from services.common.errors import StartupError

    try:
        return int(module.run(settings) or 0)
    except StartupError as exc:
        print(f"gumbel-stream: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
