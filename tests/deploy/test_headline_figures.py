"""The README's headline figures come from files, not from memory (issue 23 §4): every figure
in bold in a headline bullet must be a number of the measurement file that bullet cites
(`deploy/bench/results.json`, written by `gumbel-stream bench --json`, or
`deploy/quality/quality.md`, written by `python -m services.bench.quality`), to the digits
printed. A rerun that moves a figure makes this fail until the README says the new one."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("deploy/bench/results.json", "deploy/quality/quality.md")
# **1.84x**, **0.93**, **98.5k**, **0.60M**, **5,888**: digits, an optional k/M scale, an x
FIGURE = re.compile(r"\*\*(\d[\d,]*(?:\.\d+)?)([kM]?)x?\*\*")
SCALE = {"": 1.0, "k": 1e3, "M": 1e6}
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:e[+-]?\d+)?")
# Headlines that state no figure of a measurement file, and why they need none.
NO_MEASURED_FIGURE = {
    "Kafka storage": "the compression bench prints its table into docs/performance.md only",
    "Reliability": "a pass/fail claim; the crash tests in tests/integration hold it",
    "GPU": "says that no GPU figure has been measured",
}


def headline_bullets() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Headline figures\n", 1)[1].split("\n## ", 1)[0]
    bullets = re.split(r"\n- ", "\n" + section.split("\n- ", 1)[1])
    return [" ".join(b.split()) for b in bullets if b.strip()]


def _json_numbers(value: object) -> Iterator[float]:
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield float(value)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _json_numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from _json_numbers(item)


def source_numbers(source: str) -> list[float]:
    text = (ROOT / source).read_text()
    if source.endswith(".json"):
        return list(_json_numbers(json.loads(text)))
    return [float(n.replace(",", "")) for n in NUMBER.findall(text)]


def printed_as(figure: str, scale: str, value: float) -> bool:
    """Whether ``value`` prints as ``figure`` (with its scale) to the figure's digits."""
    digits = figure.replace(",", "")
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    return f"{value / SCALE[scale]:.{decimals}f}" == digits


def test_printed_as_holds_to_the_printed_digits_only():
    assert printed_as("0.93", "", 0.9272)
    assert not printed_as("0.85", "", 0.9272)
    assert printed_as("98.5", "k", 98_512.0) and not printed_as("98.6", "k", 98_512.0)
    assert printed_as("5,888", "", 5888.0) and printed_as("0.60", "M", 603_000.0)


@pytest.mark.parametrize("bullet", headline_bullets(), ids=lambda b: b.split(":")[0][2:30])
def test_every_headline_figure_is_a_number_of_the_file_it_cites(bullet: str):
    figures = FIGURE.findall(bullet)
    cited = [source for source in SOURCES if source in bullet]
    title = bullet.split("**")[1]
    if title in NO_MEASURED_FIGURE:
        assert not figures, f"{title} now has figures in bold: cite their file, drop the exemption"
        return
    assert figures, f"a headline without a figure in bold: {bullet[:100]}"
    assert cited, f"a headline that cites none of {SOURCES}: {bullet[:100]}"
    numbers = [n for source in cited for n in source_numbers(source)]
    missing = [f"{figure}{scale}" for figure, scale in figures
               if not any(printed_as(figure, scale, n) for n in numbers)]
    assert not missing, f"{missing} are not in {cited}: {bullet[:100]}"


def test_the_exemptions_name_headlines_that_exist():
    titles = {bullet.split("**")[1] for bullet in headline_bullets()}
    assert set(NO_MEASURED_FIGURE) <= titles
