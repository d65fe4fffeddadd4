"""docs/services.md's settings table is the one generated from the settings models and flags."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from services import cli, docs_gen
from services.common import settings
from services.common.settings_text import env_name

SECTIONS: dict[str, type[BaseModel]] = {
    "kafka": settings.KafkaSettings,
    "events": settings.EventSettings,
    "producer": settings.ProducerSettings,
    "trainer": settings.TrainerSettings,
    "monitor": settings.MonitorSettings,
}
SERVICE_SETTINGS = [
    settings.ProducerServiceSettings,
    settings.TrainerServiceSettings,
    settings.MonitorServiceSettings,
    settings.UpSettings,
]


def _table_rows() -> dict[str, str]:
    """env var → its row, from the committed docs/services.md."""
    rows = {}
    for line in docs_gen.DOCS.read_text().splitlines():
        match = re.match(r"\|\s*`(GUMBEL_[A-Z_]+)`\s*\|", line)
        if match:
            rows[match.group(1)] = line
    return rows


def test_committed_docs_are_the_generated_ones() -> None:
    text = docs_gen.DOCS.read_text()
    assert docs_gen.render(text) == text, "run: python -m services.docs_gen"


@pytest.mark.parametrize("model", SERVICE_SETTINGS, ids=lambda m: m.__name__)
def test_every_section_of_every_service_is_documented(model: type[BaseModel]) -> None:
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            assert SECTIONS[name] is field.annotation


@pytest.mark.parametrize(
    ("section", "field"),
    [(s, f) for s, model in SECTIONS.items() for f in model.model_fields],
)
def test_every_setting_has_a_row(section: str, field: str) -> None:
    assert f"GUMBEL_{section.upper()}__{field.upper()}" in _table_rows()


ALL_FLAGS = sorted(
    {flag for command in cli.SERVICES.values() for flag in command.flags} | set(cli.LOG_FLAGS),
    key=lambda f: (f.section, f.field, f.name),
)


@pytest.mark.parametrize("flag", ALL_FLAGS, ids=lambda f: f"{f.name}-{f.section}")
def test_every_flag_and_alias_is_on_its_settings_row(flag: cli.Flag) -> None:
    row = _table_rows()[env_name(flag.section, flag.field)]
    for name in (flag.name, *flag.aliases):
        assert f"`{name}`" in row


def test_the_log_settings_have_rows() -> None:
    assert {"GUMBEL_LOG_LEVEL", "GUMBEL_LOG_FORMAT", "GUMBEL_BROKER"} <= set(_table_rows())


def test_a_setting_without_description_is_refused() -> None:
    class Section(BaseModel):
        documented: int = Field(1, description="has one")
        bare: int = 2

    class Root(BaseModel):
        section: Section = Field(default_factory=Section)

    with pytest.raises(ValueError, match=r"section\.bare of Root has no description"):
        docs_gen.settings_table([Root], flags=[])


def test_check_fails_on_a_stale_file_and_regenerating_fixes_it(tmp_path: Path) -> None:
    stale = tmp_path / "services.md"
    stale.write_text(f"# Settings\n\n{docs_gen.BEGIN}\n| old |\n{docs_gen.END}\n\nafter\n")
    schema = tmp_path / "estimate.schema.json"  # missing: stale too
    paths = ["--path", str(stale), "--schema", str(schema)]
    assert docs_gen.main(["--check", *paths]) == 1
    assert docs_gen.main(paths) == 0
    assert docs_gen.main(["--check", *paths]) == 0
    assert schema.read_text() == docs_gen.SCHEMA.read_text()
    assert stale.read_text().endswith(f"{docs_gen.END}\n\nafter\n")
    assert "`GUMBEL_TRAINER__NUM_ACTORS` | `--num-actors` | `2` |" in stale.read_text()


def test_committed_estimate_schema_is_the_generated_one() -> None:
    """docs/estimate.schema.json changes with the Estimate model, or this fails."""
    assert docs_gen.SCHEMA.read_text() == docs_gen.schema_text(), (
        "run: python -m services.docs_gen")
