"""Structured log fields: JSON fields (never inside the message), from extra=, an adapter and
the process; text lines show them after the message."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from services.common import logs


@pytest.fixture()
def capture() -> Iterator[tuple[logging.Logger, io.StringIO, io.StringIO]]:
    """A logger writing to a JSON stream and a text stream; process fields reset after."""
    as_json, as_text = io.StringIO(), io.StringIO()
    logger = logging.getLogger("tests.common_logs")
    handlers = [logs.handler("json", as_json), logs.handler("text", as_text)]
    for handler in handlers:
        logger.addHandler(handler)
    logger.propagate, logger.level = False, logging.INFO
    try:
        yield logger, as_json, as_text
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
        logs.set_fields(model_id=None, actor=None)


def _entries(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_every_json_line_has_model_id_even_where_none_applies(capture) -> None:
    logger, as_json, _ = capture
    logger.info("started")
    [entry] = _entries(as_json)
    assert entry["model_id"] is None and entry["message"] == "started"


def test_fields_come_from_the_process_the_adapter_and_the_call(capture) -> None:
    logger, as_json, as_text = capture
    logs.set_fields(model_id="m1", actor="ingest-9")  # the process's: a Ray worker's
    actor = logs.FieldsAdapter(logger, actor="ingest-2")  # the object's own wins
    actor.warning("%d records out of range", 3, extra={"partition": 1, "offset": 40})
    actor.info("reads", extra={"partitions": [1, 3], "offsets": {1: 40, 3: 7}})
    logger.info("from a module")
    first, second, third = _entries(as_json)
    assert first["message"] == "3 records out of range"  # no ids inside the message
    assert (first["model_id"], first["actor"], first["partition"], first["offset"]) == (
        "m1", "ingest-2", 1, 40)
    assert second["offsets"] == {"1": 40, "3": 7} and second["partitions"] == [1, 3]
    assert "partition" not in second  # a call's extra stays on its own line
    assert (third["model_id"], third["actor"]) == ("m1", "ingest-9")
    text = as_text.getvalue().splitlines()
    assert text[0].endswith("3 records out of range [actor=ingest-2 partition=1 offset=40]")
    assert "model_id" not in as_text.getvalue()


def test_a_traceback_stays_one_json_line_with_its_fields(capture) -> None:
    logger, as_json, as_text = capture
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logs.FieldsAdapter(logger, actor="learner").exception("failed")
    [entry] = _entries(as_json)
    assert entry["actor"] == "learner" and "RuntimeError: boom" in entry["exception"]
    assert as_text.getvalue().splitlines()[0].endswith("failed [actor=learner]")
