"""The README's settings table lists every field of the settings models, so docs cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from services import cli
from services.common import settings

README = Path(__file__).resolve().parents[3] / "README.md"
SECTIONS: dict[str, type[BaseModel]] = {
    "kafka": settings.KafkaSettings,
    "producer": settings.ProducerSettings,
    "trainer": settings.TrainerSettings,
    "monitor": settings.MonitorSettings,
}


def _table_rows() -> dict[str, str]:
    """env var → its row, from the README's "## Services" section."""
    text = README.read_text()
    section = text[text.index("## Services"):]
    rows = {}
    for line in section.splitlines():
        match = re.match(r"\|\s*`(GUMBEL_[A-Z_]+)`\s*\|", line)
        if match:
            rows[match.group(1)] = line
    return rows


@pytest.mark.parametrize(
    ("section", "field"),
    [(s, f) for s, model in SECTIONS.items() for f in model.model_fields],
)
def test_every_setting_has_a_row(section: str, field: str) -> None:
    assert f"GUMBEL_{section.upper()}__{field.upper()}" in _table_rows()


def test_every_row_is_a_setting() -> None:
    known = {
        f"GUMBEL_{s.upper()}__{f.upper()}" for s, m in SECTIONS.items() for f in m.model_fields
    }
    known |= {f"GUMBEL_{f.upper()}" for f in settings.UpSettings.model_fields}
    assert set(_table_rows()) <= known


@pytest.mark.parametrize(
    "flag", cli.KAFKA_FLAGS + cli.PRODUCER_FLAGS + cli.TRAINER_FLAGS + cli.MONITOR_FLAGS,
    ids=lambda f: f.name,
)
def test_every_flag_is_on_its_settings_row(flag: cli.Flag) -> None:
    row = _table_rows()[f"GUMBEL_{flag.section.upper()}__{flag.field.upper()}"]
    assert f"`{flag.name}`" in row
