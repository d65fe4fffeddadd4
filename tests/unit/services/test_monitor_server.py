"""The monitor's HTTP endpoints over a real socket, with a fresh registry."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator

import pytest
import requests
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

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
    server: MonitorServer = start_server("127.0.0.1", 0, registry, state, idle_timeout_s=0.5)
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
    assert 'gumbel_estimated_probability{category="2",model_id="default"} 0.5' in reply.text


def test_estimate_returns_the_latest_json(served) -> None:
    url, state = served
    assert requests.get(f"{url}/estimate", timeout=5).status_code == 404
    state.offer(make_estimate(model_id="a", step=4).to_bytes())
    state.offer(make_estimate(model_id="b", step=5).to_bytes())
    assert Estimate.model_validate(requests.get(f"{url}/estimate", timeout=5).json()).step == 5
    reply = requests.get(f"{url}/estimate", params={"model_id": "a"}, timeout=5)
    assert reply.json()["step"] == 4
    missing = requests.get(f"{url}/estimate", params={"model_id": "c"}, timeout=5)
    assert missing.status_code == 404 and missing.json()["models"] == ["a", "b"]


def test_estimates_lists_every_model(served) -> None:
    url, state = served
    assert requests.get(f"{url}/estimates", timeout=5).json() == {"models": {}}
    state.offer(make_estimate(model_id="b", step=5).to_bytes())
    state.offer(make_estimate(model_id="a", step=4).to_bytes())
    models = requests.get(f"{url}/estimates", timeout=5).json()["models"]
    assert list(models) == ["a", "b"]
    assert {m: Estimate.model_validate(e).step for m, e in models.items()} == {"a": 4, "b": 5}


def test_unknown_path_is_404(served) -> None:
    url, _ = served
    assert requests.get(f"{url}/nope", timeout=5).status_code == 404


def test_an_idle_connection_is_closed_by_the_server(served) -> None:
    url, _ = served
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as idle:
        started = time.monotonic()
        assert idle.recv(1024) == b""  # closed by the server, not by our 10 s timeout
        assert time.monotonic() - started < 5


def test_a_kept_alive_connection_is_closed_once_idle(served) -> None:
    url, _ = served
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.endswith(b"\n"):
            reply += conn.recv(1024)
        assert reply.startswith(b"HTTP/1.1 503")
        started = time.monotonic()
        while conn.recv(1024):
            pass
        assert time.monotonic() - started < 5


@pytest.fixture()
def deadline_server() -> Iterator[MonitorServer]:
    state = LatestEstimates(stale_after_s=60)
    server = start_server("127.0.0.1", 0, CollectorRegistry(), state, idle_timeout_s=2.0,
                          request_deadline_s=1.5)
    yield server
    server.shutdown()
    server.server_close()


def test_a_slow_client_is_cut_off_at_the_request_deadline(deadline_server) -> None:
    """One header byte every 0.3 s never trips the 2 s idle timeout (it counts per read):
    the whole-request deadline (1.5 s) closes the connection all the same (slowloris)."""
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    with socket.create_connection(("127.0.0.1", deadline_server.server_port), timeout=10) as c:
        started = time.monotonic()
        closed = False
        for byte in request:
            try:
                c.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.3)
            c.setblocking(False)
            try:
                if c.recv(1024) == b"":
                    closed = True
                    break
            except BlockingIOError:
                pass
            except OSError:
                closed = True
                break
            finally:
                c.setblocking(True)
        assert closed and time.monotonic() - started < 5


def test_a_burst_of_200_clients_is_served_without_a_timeout(deadline_server) -> None:
    """socketserver's listen backlog of 5 turned such a burst into timeouts; ours is 128."""
    assert deadline_server.request_queue_size >= 128
    port = deadline_server.server_port
    clients = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(200)]
    try:
        for c in clients:
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        for c in clients:
            reply = b""
            while chunk := c.recv(4096):
                reply += chunk
            assert reply.startswith(b"HTTP/1.1 503")  # answered (no estimate yet)
    finally:
        for c in clients:
            c.close()


class _ManySeries:
    """A collector whose scrape is a few MB: a reply far larger than the socket buffers."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("big", "many series", labels=["i"])
        for i in range(150_000):
            family.add_metric([str(i)], float(i))
        yield family


def test_a_client_gone_mid_request_is_one_debug_line_not_a_traceback(caplog, capsys) -> None:
    """A real client asks for a large /metrics and resets the connection: the server's write
    fails, and that is one DEBUG line, never socketserver's traceback on stderr."""
    caplog.set_level("DEBUG", logger="services.monitor.server")
    registry = CollectorRegistry()
    registry.register(_ManySeries())
    server = start_server("127.0.0.1", 0, registry, LatestEstimates(stale_after_s=60))
    try:
        client = socket.create_connection(("127.0.0.1", server.server_port), timeout=5)
        client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        client.recv(1)  # the reply has begun
        # SO_LINGER 0: close sends a reset, as a crashed or impatient client does.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not _went_away(caplog):
            time.sleep(0.05)
        (record,) = _went_away(caplog)
        assert record.levelname == "DEBUG"
        assert capsys.readouterr().err == ""
    finally:
        server.shutdown()
        server.server_close()


def _went_away(caplog) -> list:
    return [r for r in caplog.records if "went away" in r.getMessage()]
