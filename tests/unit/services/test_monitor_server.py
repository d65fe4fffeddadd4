"""The monitor's HTTP endpoints over a real socket, with a fresh registry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from prometheus_client import CollectorRegistry

from services.common.schemas import Estimate
from services.monitor.collector import EstimateCollector
from services.monitor.server import MonitorServer, start_server
from services.monitor.state import LatestEstimates
from tests.unit.services.monitor_fakes import make_estimate


@pytest.fixture()
def served() -> Iterator[tuple[str, LatestEstimates]]:
    state = LatestEstimates(stale_after_s=60)
    registry = CollectorRegistry()
    registry.register(EstimateCollector(state))
    server: MonitorServer = start_server("127.0.0.1", 0, registry, state)
    yield f"http://127.0.0.1:{server.server_port}", state
    server.shutdown()
    server.server_close()


def test_healthz_is_503_with_a_reason_until_an_estimate_arrives(served) -> None:
    url, state = served
    reply = requests.get(f"{url}/healthz", timeout=5)
    assert reply.status_code == 503 and "no estimate" in reply.text
    state.offer(make_estimate().to_bytes())
    reply = requests.get(f"{url}/healthz", timeout=5)
    assert reply.status_code == 200 and reply.text.startswith("ok")


def test_healthz_is_503_for_a_stale_estimate(served) -> None:
    url, state = served
    state.offer(make_estimate(timestamp=1.0).to_bytes())
    reply = requests.get(f"{url}/healthz", timeout=5)
    assert reply.status_code == 503 and "old" in reply.text


def test_metrics_in_the_text_format(served) -> None:
    url, state = served
    state.offer(make_estimate().to_bytes())
    reply = requests.get(f"{url}/metrics", timeout=5)
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("text/plain")
    assert 'gumbel_estimated_probability{category="2"} 0.5' in reply.text


def test_estimate_returns_the_latest_json(served) -> None:
    url, state = served
    assert requests.get(f"{url}/estimate", timeout=5).status_code == 404
    state.offer(make_estimate(model_id="a", step=4).to_bytes())
    state.offer(make_estimate(model_id="b", step=5).to_bytes())
    assert Estimate.model_validate(requests.get(f"{url}/estimate", timeout=5).json()).step == 5
    reply = requests.get(f"{url}/estimate", params={"model_id": "a"}, timeout=5)
    assert reply.json()["step"] == 4


def test_unknown_path_is_404(served) -> None:
    url, _ = served
    assert requests.get(f"{url}/nope", timeout=5).status_code == 404
