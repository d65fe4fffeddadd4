"""The live page without a browser: its JSON view, its history, and its files over a socket."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from prometheus_client import CollectorRegistry, start_http_server

from services.brokers import free_port
from services.common.settings import MonitorServiceSettings
from services.monitor.collector import EstimateCollector
from services.monitor.page import MAX_SHOWN_CATEGORIES, LivePage
from services.monitor.server import MonitorServer, start_server
from services.monitor.service import run
from services.monitor.state import LatestEstimates
from services.monitor.truth import ProducerTruth
from services.producer.metrics import ProducerMetrics
from tests.unit.services.monitor_fakes import FakeConsumer, make_estimate


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def truth_of(probabilities: list[float], produced: int = 7) -> ProducerTruth:
    page = "".join(f'gumbel_true_probability{{category="{c}"}} {p}\n'
                   for c, p in enumerate(probabilities)) + f"gumbel_produced_total {produced}\n"
    source = ProducerTruth("http://producer:9107/metrics", fetch=lambda url: page)
    source.refresh()
    return source


def page_with(clock: Clock, truth: ProducerTruth | None = None) -> LivePage:
    return LivePage(LatestEstimates(stale_after_s=60, clock=clock), truth=truth, clock=clock)


def test_before_any_estimate_the_view_says_why_and_shows_nothing() -> None:
    view = page_with(Clock()).view()
    assert view["estimate"] is None and view["categories"] == [] and view["history"] == []
    assert view["health"] == {"ok": False, "reason": "no estimate received yet"}
    assert view["truth_source"]["url"] is None


def test_the_view_puts_estimate_truth_and_baseline_side_by_side() -> None:
    clock = Clock()
    page = page_with(clock, truth_of([0.25, 0.25, 0.5]))
    page.state.offer(make_estimate(timestamp=999.0, samples_seen=5000, consumer_lag=12).to_bytes())
    view = page.view()
    assert view["health"]["ok"] is True
    assert view["categories"] == [
        {"category": 0, "name": "0", "estimate": 0.2, "baseline": 0.25,
         "truth": 0.25},
        {"category": 1, "name": "1", "estimate": 0.3, "baseline": 0.25,
         "truth": 0.25},
        {"category": 2, "name": "2", "estimate": 0.5, "baseline": 0.5,
         "truth": 0.5},
    ]
    estimate = view["estimate"]
    assert estimate["samples_learned"] == 5000 and estimate["consumer_lag"] == 12
    assert estimate["dead_letters"] == 3 and estimate["temperature"] == 0.7
    assert estimate["tv_truth"] == pytest.approx(0.05)
    assert estimate["tv_baseline"] == pytest.approx(0.05)
    assert estimate["age_s"] == pytest.approx(1.0)
    assert view["truth_source"]["produced"] == 7


def test_a_truth_of_another_size_is_not_compared() -> None:
    page = page_with(Clock(), truth_of([0.5, 0.5]))
    page.state.offer(make_estimate(timestamp=999.0).to_bytes())
    view = page.view()
    assert view["estimate"]["tv_truth"] is None
    assert all(c["truth"] is None for c in view["categories"])
    assert view["truth_source"]["num_categories"] == 2  # the page says why


def test_many_categories_show_the_largest_in_order_and_the_rest_as_other() -> None:
    """Issue 24 §1: the page's policy is the metrics' (the largest by estimate, and _other)."""
    k = MAX_SHOWN_CATEGORIES * 3
    probs = [1.0 / (2 * k)] * k
    probs[-1] += 0.5  # the largest is the last category
    page = page_with(Clock(), truth_of([1.0 / k] * k))
    page.state.offer(make_estimate(timestamp=999.0, num_categories=k, probabilities=probs,
                                   baseline_probabilities=probs).to_bytes())
    view = page.view()
    *own, rest = view["categories"]
    shown = [c["category"] for c in own]
    assert len(shown) == MAX_SHOWN_CATEGORIES - 1 and shown == sorted(shown)
    assert shown[-1] == k - 1
    hidden = k - len(shown)
    assert view["estimate"]["categories_hidden"] == hidden
    assert rest["category"] is None and rest["name"] == "_other" and rest["other"] == hidden
    assert rest["estimate"] == pytest.approx(hidden / (2 * k))
    assert rest["truth"] == pytest.approx(hidden / k)
    assert sum(c["estimate"] for c in view["categories"]) == pytest.approx(1.0)


def test_a_large_k_on_the_page_is_as_small_as_the_metrics_allow() -> None:
    k = 65_536
    state = LatestEstimates(stale_after_s=60, max_series_per_model=10, clock=Clock())
    page = LivePage(state, clock=Clock())
    probs = [1.0 / k] * k
    state.offer(make_estimate(timestamp=999.0, num_categories=k, probabilities=probs,
                              baseline_probabilities=probs).to_bytes())
    view = page.view()
    assert len(view["categories"]) == 10  # 9 and _other, as in /metrics
    assert [c["category"] for c in view["categories"][:9]] == list(range(9))  # ties: low ids


def test_categories_carry_their_names_as_the_metrics_label_them() -> None:
    page = page_with(Clock())
    page.state.offer(make_estimate(timestamp=999.0,
                                   category_names=["click", "view", "buy"]).to_bytes())
    assert [c["name"] for c in page.view()["categories"]] == ["click", "view", "buy"]
    page.state.offer(make_estimate(timestamp=999.0).to_bytes())
    assert [c["name"] for c in page.view()["categories"]] == ["0", "1", "2"]


def test_the_truth_is_compared_only_with_the_model_its_producer_feeds() -> None:
    """Issue 24 §4: every model of the same K was compared with one producer's truth."""
    clock = Clock()
    page = LivePage(LatestEstimates(stale_after_s=60, clock=clock),
                    truth=truth_of([0.25, 0.25, 0.5]), clock=clock, truth_model_id="fed")
    for model_id in ("fed", "other"):
        clock.now += 1
        page.state.offer(make_estimate(model_id=model_id, timestamp=clock.now).to_bytes())
    page.record()
    fed, other = page.view("fed"), page.view("other")
    assert fed["estimate"]["tv_truth"] == pytest.approx(0.05)
    assert [c["truth"] for c in fed["categories"]] == [0.25, 0.25, 0.5]
    assert fed["history"][-1]["tv_truth"] == pytest.approx(0.05)
    assert other["estimate"]["tv_truth"] is None
    assert all(c["truth"] is None for c in other["categories"])
    assert other["history"][-1]["tv_truth"] is None
    assert other["truth_source"]["model_id"] == "fed"  # the page says whose truth it is
    unsaid = page_with(clock, truth_of([0.25, 0.25, 0.5]))
    assert unsaid.view()["truth_source"]["model_id"] is None


def test_history_gets_one_point_per_estimate_received() -> None:
    clock = Clock()
    page = page_with(clock, truth_of([0.25, 0.25, 0.5]))
    for step, learned in enumerate([100, 300, 600]):
        clock.now += 2
        page.state.offer(make_estimate(timestamp=clock.now, step=step,
                                       samples_seen=learned).to_bytes())
        page.record()
        page.record()  # polled again with nothing new: no second point
    history = page.view()["history"]
    assert [p["learned"] for p in history] == [100, 300, 600]
    assert [p["at"] for p in history] == [1002.0, 1004.0, 1006.0]
    assert history[-1]["tv_truth"] == pytest.approx(0.05)


def test_the_page_shows_the_model_asked_for_or_the_last_heard_of() -> None:
    clock = Clock()
    page = page_with(clock)
    for model_id, learned in [("a", 100), ("b", 200), ("a", 300), ("b", 400)]:
        clock.now += 1
        page.state.offer(make_estimate(model_id=model_id, timestamp=clock.now,
                                       samples_seen=learned).to_bytes())
        if model_id == "b":
            page.record()  # a poll that brought both models: one point each
    assert page.view()["models"] == ["a", "b"]
    assert page.view()["estimate"]["model_id"] == "b"
    chosen = page.view("a")
    assert chosen["estimate"]["model_id"] == "a"
    assert [p["learned"] for p in chosen["history"]] == [100, 300]
    assert [p["learned"] for p in page.view("b")["history"]] == [200, 400]
    unknown = page.view("nope")
    assert unknown["estimate"] is None and unknown["models"] == ["a", "b"]


@pytest.fixture()
def served() -> Iterator[tuple[str, LatestEstimates]]:
    state = LatestEstimates(stale_after_s=60)
    registry = CollectorRegistry()
    registry.register(EstimateCollector(state))
    page = LivePage(state, truth=truth_of([0.25, 0.25, 0.5]))
    server: MonitorServer = start_server("127.0.0.1", 0, registry, state, 0.5, page)
    yield f"http://127.0.0.1:{server.server_port}", state
    server.shutdown()
    server.server_close()


def test_the_page_is_served_at_the_root_and_needs_nothing_from_elsewhere(served) -> None:
    url, _ = served
    reply = requests.get(f"{url}/", timeout=5)
    assert reply.status_code == 200 and reply.headers["Content-Type"].startswith("text/html")
    assert reply.headers["Content-Security-Policy"].startswith("default-src 'self'")
    links = re.findall(r'(?:src|href)="([^"]*)"', reply.text)
    assert "/static/live.js" in links and "/static/live.css" in links
    assert all(link.startswith(("/", "data:")) for link in links), links  # not another host
    for name, kind in [("live.js", "text/javascript"), ("live.css", "text/css")]:
        file = requests.get(f"{url}/static/{name}", timeout=5)
        assert file.status_code == 200 and file.headers["Content-Type"].startswith(kind)
        assert "https://" not in file.text


def test_live_json_follows_the_estimates(served) -> None:
    url, state = served
    before = requests.get(f"{url}/live.json", timeout=5)
    assert before.status_code == 200 and before.headers["Cache-Control"] == "no-store"
    assert before.json()["estimate"] is None
    state.offer(make_estimate(samples_seen=1234).to_bytes())
    after = requests.get(f"{url}/live.json", timeout=5).json()
    assert after["estimate"]["samples_learned"] == 1234
    assert [c["truth"] for c in after["categories"]] == [0.25, 0.25, 0.5]
    state.offer(make_estimate(model_id="other", samples_seen=99).to_bytes())
    assert requests.get(f"{url}/live.json", timeout=5).json()["estimate"]["model_id"] == "other"
    chosen = requests.get(f"{url}/live.json", params={"model": "default"}, timeout=5).json()
    assert chosen["estimate"]["samples_learned"] == 1234
    assert chosen["models"] == ["default", "other"]


@pytest.mark.parametrize("path", [
    "/static/", "/static/../server.py", "/static/%2e%2e/server.py", "/static/state.py",
    "/static/index.html/x", "/index.html", "//etc/passwd", "/static/" + "a" * 5000,
])
def test_no_path_reaches_another_file(served, path: str) -> None:
    url, _ = served
    assert requests.get(url + path, timeout=5).status_code == 404


def test_bad_requests_are_answered_and_the_server_goes_on(served) -> None:
    url, _ = served
    port = int(url.rsplit(":", 1)[1])
    for raw in [b"GARBAGE\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"\x00\xff\r\n\r\n",
                b"POST /live.json HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"]:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(raw)
            assert conn.recv(64), raw  # an error page (HTTP/0.9 style for a one-word line)
    head = requests.head(f"{url}/", timeout=5)
    assert head.status_code == 200 and head.content == b""
    assert requests.get(f"{url}/live.json", timeout=5).status_code == 200


def test_the_monitor_service_serves_the_page_with_the_producers_truth() -> None:
    producer_registry = CollectorRegistry()
    ProducerMetrics(producer_registry).set_distribution([0.25, 0.25, 0.5])
    producer_port, port = free_port(), free_port()
    producer, _ = start_http_server(producer_port, "127.0.0.1", registry=producer_registry)
    consumer = FakeConsumer("estimates", {0: [make_estimate(samples_seen=77).to_bytes()]})
    settings = MonitorServiceSettings(monitor={
        "host": "127.0.0.1", "port": port,
        "producer_metrics_url": f"http://127.0.0.1:{producer_port}/metrics"})
    stop = threading.Event()
    thread = threading.Thread(target=run, args=(settings,), kwargs={
        "consumer": consumer, "registry": CollectorRegistry(), "stop": stop})
    thread.start()
    try:
        view: dict = {}
        deadline = time.monotonic() + 10
        while not (view.get("history") and view["estimate"]["tv_truth"] is not None):
            assert time.monotonic() < deadline, view
            time.sleep(0.1)
            try:
                view = requests.get(f"http://127.0.0.1:{port}/live.json", timeout=2).json()
            except requests.ConnectionError:
                pass
        assert view["estimate"]["samples_learned"] == 77
        assert view["history"][0]["learned"] == 77
        assert view["estimate"]["tv_truth"] == pytest.approx(0.05)
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=2).ok
    finally:
        stop.set()
        thread.join(timeout=10)
        producer.shutdown()
    assert not thread.is_alive()
