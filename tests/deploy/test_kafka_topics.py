"""Every place that creates ``estimates`` makes it the compacted topic ``ensure_topics`` makes."""

from __future__ import annotations

import re

import yaml

from services.common.kafka import ESTIMATES_TOPIC_CONFIG
from tests.deploy.helpers import REPO, load_compose


def _configs(command: str) -> dict[str, str]:
    return dict(m.groups() for m in re.finditer(r"--config (\S+?)=(\S+)", command))


def _estimates_commands(text: str) -> list[str]:
    """The ``kafka-topics.sh ... --create ... --topic estimates`` commands (continued lines
    joined)."""
    joined = text.replace("\\\n", " ")
    return [line for line in joined.splitlines()
            if "--create" in line and re.search(r"--topic estimates\b", line)]


def test_compose_kafka_init_creates_estimates_compacted() -> None:
    script = "\n".join(load_compose()["services"]["kafka-init"]["command"])
    [command] = _estimates_commands(script)
    assert _configs(command) == ESTIMATES_TOPIC_CONFIG
    for other in ("numbers", "numbers.dlq"):  # the others keep the delete policy
        [line] = [c for c in script.splitlines() if f"--topic {other} " in c]
        assert "cleanup.policy" not in line


def test_the_kubernetes_docs_create_estimates_compacted() -> None:
    deploy = (REPO / "docs" / "deploy.md").read_text()
    [command] = _estimates_commands(deploy)
    assert _configs(command) == ESTIMATES_TOPIC_CONFIG
    blocks = re.findall(r"```yaml\n(.*?)```", deploy, re.S)
    [topic] = [doc for doc in map(yaml.safe_load, blocks)
               if isinstance(doc, dict) and doc.get("kind") == "KafkaTopic"]
    assert topic["metadata"]["name"] == "estimates"
    assert {k: str(v) for k, v in topic["spec"]["config"].items()} == ESTIMATES_TOPIC_CONFIG


def test_compaction_is_what_makes_estimates_latest_value_per_key() -> None:
    assert ESTIMATES_TOPIC_CONFIG["cleanup.policy"] == "compact"
    # the active segment is never compacted: it must roll sooner than the history is kept
    assert int(ESTIMATES_TOPIC_CONFIG["segment.ms"]) < int(
        ESTIMATES_TOPIC_CONFIG["min.compaction.lag.ms"])
