"""The command line explains itself: --version, help from the settings, --port, logging flags."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services import cli
from services.bench.cli import BENCHES
from services.common import logs, settings
from services.common.settings_text import Setting, plain, setting

EXECUTABLE = Path(sys.executable).with_name("gumbel-stream")


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def _options(text: str) -> dict[str, str]:
    """Each option's help entry (invocation and help joined on one line), by its first flag."""
    options: dict[str, str] = {}
    current = ""
    for line in text.split("options:", 1)[1].split("\n\n", 1)[0].splitlines():
        if line.startswith("  -"):
            current = line.split()[0].rstrip(",")
            options[current] = line.strip()
        elif current:
            options[current] += " " + line.strip()
    return options


def _described(line: str, entry: Setting) -> bool:
    default = "no default" if entry.default is None else f"default {entry.default}"
    return plain(entry.description) in line and f"({default}; env {entry.env})" in line


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    # argparse wraps help at $COLUMNS: one line per option keeps the assertions simple.
    monkeypatch.setenv("COLUMNS", "1000")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out.split()
    assert out[0] == "gumbel-stream" and out[1][0].isdigit()


@pytest.mark.parametrize("name", sorted(cli.SERVICES))
def test_help_shows_each_options_description_default_and_variable(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _help(capsys, name)
    command = cli.SERVICES[name]
    root = getattr(settings, command.settings)
    options = _options(text)
    for flag in cli.LOG_FLAGS:
        assert _described(options[flag.name], setting(settings.LogSettings, "", flag.field))
    for flag in command.flags:
        line = options[flag.name]
        assert _described(line, setting(root, flag.section, flag.field))
        for alias in flag.aliases:
            assert f"{alias} {flag.metavar}" in line


@pytest.mark.parametrize("name", sorted(cli.SERVICES))
def test_help_lists_the_settings_without_a_flag(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _help(capsys, name)
    epilog = text.split("environment only", 1)[1]
    assert "GUMBEL_KAFKA__NUMBERS_TOPIC=numbers" in epilog
    assert "GUMBEL_KAFKA__BOOTSTRAP_SERVERS" not in epilog  # it has a flag


def test_bench_help_names_every_benchmark_and_what_it_measures(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = " ".join(_help(capsys, "bench").split())
    for name, bench in BENCHES.items():
        assert f"{name} {' '.join(bench.measures.split())}" in text


def test_port_is_the_metrics_port_of_every_service_and_metrics_port_an_alias() -> None:
    parser = cli.build_parser()

    def parsed(*argv: str) -> object:
        args = parser.parse_args(argv)
        command = cli.SERVICES[args.command]
        return cli.load_settings(getattr(settings, command.settings), command.flags, args)

    assert parsed("producer", "--port", "9200").producer.metrics_port == 9200
    assert parsed("producer", "--metrics-port", "9201").producer.metrics_port == 9201
    assert parsed("monitor", "--port", "9202").monitor.port == 9202
    up = parsed("up", "--port", "9203", "--metrics-port", "9204")
    assert (up.monitor.port, up.producer.metrics_port) == (9203, 9204)
    assert parsed("up", "--producer-port", "9205").producer.metrics_port == 9205


@pytest.mark.parametrize(
    ("argv", "env", "level"),
    [
        (["monitor"], {}, "INFO"),
        (["--log-level", "debug", "monitor"], {}, "DEBUG"),
        (["monitor", "--log-level", "warning"], {}, "WARNING"),
        (["--log-level", "DEBUG", "monitor", "--log-level", "ERROR"], {}, "ERROR"),
        (["monitor"], {"GUMBEL_LOG_LEVEL": "error"}, "ERROR"),
        (["monitor", "--log-level", "DEBUG"], {"GUMBEL_LOG_LEVEL": "ERROR"}, "DEBUG"),
    ],
)
def test_log_level_before_or_after_the_command_or_from_the_environment(
    argv: list[str], env: dict[str, str], level: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GUMBEL_LOG_LEVEL", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    args = cli.build_parser().parse_args(argv)
    assert cli.load_settings(settings.LogSettings, cli.LOG_FLAGS, args).log_level == level


def test_json_formatter_writes_one_object_per_line_even_with_a_traceback() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("tests.json_formatter")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.exception("failed %d times\nsecond line", 3)
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["level"] == "ERROR" and entry["logger"] == "tests.json_formatter"
    assert entry["message"] == "failed 3 times\nsecond line"
    assert "RuntimeError: boom" in entry["exception"]
    assert entry["time"].endswith("+00:00")


@pytest.mark.skipif(not EXECUTABLE.exists(), reason="gumbel-stream is not installed here")
def test_a_service_logs_json_lines_with_gumbel_log_format_json() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUMBEL_")}
    env.update(GUMBEL_LOG_FORMAT="json", GUMBEL_KAFKA__CONNECT_TIMEOUT_S="0.5")
    # Nothing listens on port 1: the producer logs its start, its waiting, and gives up.
    result = subprocess.run(
        [str(EXECUTABLE), "producer", "--bootstrap-servers", "127.0.0.1:1", "--port", "0",
         "--log-level", "debug"],
        env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    assert len(entries) >= 2
    assert {"INFO", "ERROR"} <= {e["level"] for e in entries}
    assert all(e["message"] for e in entries)
    assert any("did not answer" in e["message"] for e in entries)


def test_up_needs_the_embedded_extra_only_for_the_embedded_broker() -> None:
    from services.up.plan import broker_of

    assert broker_of(settings.UpSettings()) == "embedded"
    assert broker_of(settings.UpSettings(broker="apache-kafka")) == "apache-kafka"
    assert broker_of(settings.UpSettings(kafka={"bootstrap_servers": "k:9092"})) == "external"
