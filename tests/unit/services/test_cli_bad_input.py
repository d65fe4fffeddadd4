"""Every bad input a person can type ends in one line naming the setting and a non-zero exit.

The real ``gumbel-stream`` executable, as a subprocess. The broker address points at a port
where nothing listens and metrics ports are 0: a case that wrongly got past validation would
log its connection attempts (more than one line) or hang into the timeout, and fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.brokers import free_port

EXECUTABLE = Path(sys.executable).with_name("gumbel-stream")
TIMEOUT_S = 30.0

# A service that got past validation would start with these and then fail (or hang) visibly.
HARMLESS = {
    "GUMBEL_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1",
    "GUMBEL_KAFKA__CONNECT_TIMEOUT_S": "2",
    "GUMBEL_PRODUCER__METRICS_PORT": "0",
    "GUMBEL_MONITOR__PORT": "0",
}

# (id, argv, extra environment, what the line must name)
CASES: list[tuple[str, list[str], dict[str, str], list[str]]] = [
    # producer
    ("probabilities-sum", ["producer", "--probabilities", "0.5,0.6"], {},
     ["--probabilities", "GUMBEL_PRODUCER__PROBABILITIES", "sum to 1"]),
    ("probabilities-words", ["producer", "--probabilities", "a,b"], {}, ["--probabilities"]),
    ("negative-rate", ["producer", "--rate", "-1"], {}, ["--rate", "GUMBEL_PRODUCER__RATE"]),
    ("fractional-count", ["producer", "--count", "1.5"], {}, ["--count"]),
    ("port-too-big", ["producer", "--port", "70000"], {},
     ["--port", "--metrics-port", "GUMBEL_PRODUCER__METRICS_PORT"]),
    ("metrics-port-alias", ["producer", "--metrics-port", "http"], {}, ["--metrics-port"]),
    ("drift-categories", ["producer", "--drift", "100=0.5,0.5"], {},
     ["GUMBEL_PRODUCER__", "drift", "categories"]),
    ("drift-syntax", ["producer", "--drift", "soon=0.5,0.5"], {}, ["--drift"]),
    ("format", ["producer", "--format", "xml"], {}, ["--format"]),
    ("bootstrap-without-port", ["producer", "--bootstrap-servers", "localhost"], {},
     ["--bootstrap-servers", "GUMBEL_KAFKA__BOOTSTRAP_SERVERS"]),
    ("infinite-rate", ["producer", "--rate", "inf"], {}, ["--rate", "finite"]),
    ("unknown-flag", ["producer", "--rates", "5"], {}, ["--rates"]),
    ("secrets-dir-missing", ["producer"], {"GUMBEL_SECRETS_DIR": "/nonexistent/gumbel-secrets"},
     ["GUMBEL_SECRETS_DIR", "missing"]),
    ("secrets-dir-a-file", ["producer"], {"GUMBEL_SECRETS_DIR": "/etc/passwd"},
     ["GUMBEL_SECRETS_DIR", "a file"]),
    ("secrets-dir-name-too-long", ["producer"], {"GUMBEL_SECRETS_DIR": "/tmp/" + "s" * 5000},
     ["GUMBEL_SECRETS_DIR", "not usable"]),
    ("abbreviated-flag", ["producer", "--rat", "5"], {}, ["--rat"]),
    ("flag-without-value", ["producer", "--rate"], {}, ["--rate"]),
    ("unknown-env-setting", ["producer"], {"GUMBEL_PRODUCER__RATEE": "5"},
     ["GUMBEL_PRODUCER__RATEE"]),
    # trainer
    ("no-actors", ["trainer", "--num-actors", "0"], {}, ["--num-actors"]),
    # a model id names a directory under --checkpoint-dir: never a path out of it
    ("model-id-path", ["trainer", "--model-id", "../x"], {}, ["--model-id"]),
    ("model-id-absolute", ["trainer", "--model-id", "/abs"], {}, ["--model-id"]),
    ("model-id-too-long", ["trainer", "--model-id", "m" * 300], {}, ["--model-id"]),
    # the Estimate refuses names over 256 characters: refused at start, not at the publish
    ("category-name-too-long", ["trainer", "--format", "string", "--categories",
                                "x" * 300 + ",b", "--num-categories", "2"], {},
     ["--categories", "longer than 256"]),
    # ... and so are the other limits of the Estimate, and Kafka's on topic names
    ("too-many-categories", ["trainer", "--num-categories", "65537"], {},
     ["--num-categories", "65536"]),
    ("too-many-actors", ["trainer", "--num-actors", "1025"], {}, ["--num-actors", "1024"]),
    ("topic-name", ["trainer"], {"GUMBEL_KAFKA__NUMBERS_TOPIC": "numbers/a b"},
     ["GUMBEL_KAFKA__NUMBERS_TOPIC", "not a Kafka topic name"]),
    ("topic-name-too-long", ["monitor"], {"GUMBEL_KAFKA__ESTIMATES_TOPIC": "e" * 250},
     ["GUMBEL_KAFKA__ESTIMATES_TOPIC", "249"]),
    ("model-id-hidden", ["trainer", "--model-id", ".x"], {},
     ["--model-id", "GUMBEL_TRAINER__MODEL_ID", "starting with a letter or digit"]),
    ("estimator", ["trainer", "--estimator", "gumbel"], {}, ["--estimator"]),
    ("negative-gpus", ["trainer", "--gpus-per-actor", "-1"], {}, ["--gpus-per-actor"]),
    ("one-category", ["trainer", "--num-categories", "1"], {}, ["--num-categories"]),
    ("backpressure", ["trainer", "--backpressure", "drop"], {}, ["--backpressure"]),
    ("publish-interval", ["trainer", "--publish-interval", "0"], {}, ["--publish-interval"]),
    ("env-num-actors", ["trainer"], {"GUMBEL_TRAINER__NUM_ACTORS": "two"},
     ["GUMBEL_TRAINER__NUM_ACTORS"]),
    # ... and what only the machine can contradict (services.common.errors.StartupError)
    ("unwritable-checkpoints", ["trainer", "--checkpoint-dir", "/proc/nope"], {},
     ["--checkpoint-dir", "GUMBEL_TRAINER__CHECKPOINT_DIR"]),
    ("gpus-the-machine-lacks", ["trainer", "--gpus-per-actor", "64"], {},
     ["--gpus-per-actor"]),
    # monitor
    ("negative-port", ["monitor", "--port", "-1"], {}, ["--port", "GUMBEL_MONITOR__PORT"]),
    ("stale-after", ["monitor", "--stale-after", "0"], {}, ["--stale-after"]),
    ("sasl-without-credentials", ["monitor"], {"GUMBEL_KAFKA__SECURITY_PROTOCOL": "SASL_SSL"},
     ["GUMBEL_KAFKA__", "sasl_mechanism"]),
    ("security-protocol", ["monitor", "--security-protocol", "TLS"], {},
     ["--security-protocol"]),
    # up
    ("broker", ["up", "--broker", "nowhere"], {}, ["--broker", "GUMBEL_BROKER"]),
    ("up-one-category", ["up", "--probabilities", "1"], {}, ["--probabilities"]),
    ("up-producer-port", ["up", "--producer-port", "99999"], {},
     ["--producer-port", "GUMBEL_PRODUCER__METRICS_PORT"]),
    ("up-monitor-port", ["up", "--port", "x"], {}, ["--port", "GUMBEL_MONITOR__PORT"]),
    # bench
    ("unknown-benchmark", ["bench", "nonsense"], {}, ["nonsense"]),
    ("bench-flag", ["bench", "--jsn"], {}, ["--jsn"]),
    # logging, before or after the command, or in the environment
    ("log-level-before", ["--log-level", "LOUD", "monitor"], {},
     ["--log-level", "GUMBEL_LOG_LEVEL"]),
    ("log-level-after", ["monitor", "--log-level", "LOUD"], {}, ["--log-level"]),
    ("log-level-env", ["producer"], {"GUMBEL_LOG_LEVEL": "LOUD"}, ["GUMBEL_LOG_LEVEL"]),
    ("log-format-env", ["bench", "learn"], {"GUMBEL_LOG_FORMAT": "xml"}, ["GUMBEL_LOG_FORMAT"]),
    # the command itself
    ("unknown-command", ["launch"], {}, ["COMMAND", "launch"]),
    ("no-command", [], {}, ["COMMAND"]),
]


def run_cli(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GUMBEL_")}
    return subprocess.run(
        [str(EXECUTABLE), *argv], env={**clean, **HARMLESS, **env}, capture_output=True,
        text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL,
    )


def test_the_table_covers_every_command() -> None:
    assert len(CASES) >= 15
    commands = {argv[0] for _, argv, _, _ in CASES if argv and not argv[0].startswith("-")}
    assert {"producer", "trainer", "monitor", "up", "bench"} <= commands


@pytest.mark.skipif(not EXECUTABLE.exists(), reason="gumbel-stream is not installed here")
@pytest.mark.parametrize(("argv", "env", "names"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_naming_the_setting(
    argv: list[str], env: dict[str, str], names: list[str]
) -> None:
    result = run_cli(argv, env)
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gumbel-stream"), lines[0]
    for name in names:
        assert name in lines[0]
    assert result.stdout == ""


@pytest.mark.skipif(not EXECUTABLE.exists(), reason="gumbel-stream is not installed here")
@pytest.mark.parametrize("command", ["monitor", "producer", "up"])
def test_an_unreachable_broker_is_one_error_line(command: str) -> None:
    """Exit 1 and one ERROR line naming the broker and the timeout's variable: no traceback,
    no retry warnings, and ``up`` starts no child and prints no page address (issue 10; the
    trainer's twin is in tests/integration/test_trainer_startup.py)."""
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    result = run_cli([command, "--bootstrap-servers", address],
                     {"GUMBEL_KAFKA__CONNECT_TIMEOUT_S": "1"})
    output = result.stdout + result.stderr
    lines = output.splitlines()
    assert result.returncode == 1, output
    assert "Traceback" not in output
    errors = [line for line in lines if " ERROR " in line]
    assert len(errors) == 1, output
    assert (f"Kafka at {address} did not answer within 1s (GUMBEL_KAFKA__CONNECT_TIMEOUT_S)"
            in errors[0]), errors[0]
    assert [line for line in lines if address in line] == errors, output
    assert all(" INFO " in line for line in lines if line not in errors), output
    assert "started" not in output and "http://" not in result.stdout, output


@pytest.mark.skipif(not EXECUTABLE.exists(), reason="gumbel-stream is not installed here")
def test_a_secrets_dir_that_is_a_symlink_loop_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    result = run_cli(["trainer"], {"GUMBEL_SECRETS_DIR": str(tmp_path / "a")})
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "GUMBEL_SECRETS_DIR" in result.stderr and "symlink loop" in result.stderr


@pytest.mark.skipif(not EXECUTABLE.exists(), reason="gumbel-stream is not installed here")
def test_a_secret_file_that_is_not_text_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "kafka__sasl_password").write_bytes(b"\xff\xfe")
    result = run_cli(["monitor"], {"GUMBEL_SECRETS_DIR": str(tmp_path)})
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "GUMBEL_SECRETS_DIR" in result.stderr and "kafka__sasl_password" in result.stderr
