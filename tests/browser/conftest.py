"""A real dashboard in a real browser: Mosquitto, ``collector serve --http`` on SQLite, Chromium.

* ``browser``: Debian's Chromium (``apt-get install chromium``) driven by Playwright for Python
  through ``executable_path``; no browser is ever downloaded. Missing Chromium or Playwright skips
  locally and fails when ``CI=true`` (:func:`tests.conftest.unavailable`).
* ``dashboard``: one ``edgemeter collector serve --http 127.0.0.1:PORT`` subprocess per test
  module, on the session's private Mosquitto and a fresh SQLite file, with a bearer token set (every
  POST needs it). Its stderr is kept in a file and shown when it fails to start.
* ``page``: a fresh browser page that records console errors and uncaught exceptions; each test
  calls :func:`assert_clean` so "renders without console errors" is part of what it pins.
* Screenshots go to ``$EDGEMETER_TEST_ARTIFACTS`` (default: ``<tmp>/edgemeter-browser``), outside
  the checkout; ``shoot`` returns the path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edgemeter.demo.loopback import free_port, stop_process
from shared.mqtt import MqttConnection, connect
from shared.topics import TopicKind, Topics
from tests.conftest import unavailable

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("EDGEMETER_TEST_ARTIFACTS")
                 or Path(tempfile.gettempdir()) / "edgemeter-browser")
TOKEN = "browser-test-token"
START_TIMEOUT_S = 60.0


def find_chromium() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    executable = find_chromium()
    if executable is None:
        unavailable("Chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright for Python is not installed (pip install 'edgemeter[dev]')")
    with sync_playwright() as pw:
        try:
            chromium = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        except PlaywrightError as err:
            unavailable(f"Chromium at {executable} did not start: {str(err).splitlines()[0]}")
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Dashboard:
    """A running ``collector serve --http``: where to browse, where its broker and database are."""

    url: str
    mqtt_url: str
    db_url: str
    db_path: Path
    fleet: str
    connection: MqttConnection
    log_path: Path
    token: str = TOKEN
    published: list[str] = field(default_factory=list)

    def publish(self, message: Any, kind: TopicKind, *, fleet: str | None = None) -> None:
        """Publish a wire message (result, status, telemetry, progress, ...) as a device would."""
        topic = Topics.build(fleet or message.fleet, message.device_id, kind)
        self.connection.publish(topic, message.model_dump_json(exclude_none=kind != TopicKind.RESULT)
                                .encode(), qos=1)
        self.published.append(topic)

    def get(self, path: str) -> Any:
        """GET a JSON route of the API (reads are open on loopback)."""
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return json.loads(response.read())

    def wait_devices(self, fleet: str, count: int, *, timeout_s: float = 120.0) -> None:
        """Wait until the collector lists ``count`` devices in ``fleet``."""
        deadline = time.monotonic() + timeout_s
        while (total := self.get(f"/api/devices?fleet={fleet}&limit=1")["total"]) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"the collector lists {total} of {count} devices in {fleet} after "
                            f"{timeout_s:.0f} s")
            time.sleep(0.2)

    def wait_stored(self, device_id: str, *, runs: int = 0, telemetry: bool = False,
                    timeout_s: float = 20.0) -> None:
        """Wait until the collector serves what a test published, in the device's detail and in the
        fleet list (it commits in batches, and the API may answer the list from a cache)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                device = self.get(f"/api/devices/{device_id}")
                listed = self.get(f"/api/devices?q={device_id}")["devices"]
                if (len(device["runs"]) >= runs and (device["telemetry"] or not telemetry)
                        and any(d["device_id"] == device_id and (d["latest_run_id"] or not runs)
                                for d in listed)):
                    return
            except urllib.error.HTTPError as err:
                if err.code != 404:
                    raise
            if time.monotonic() > deadline:
                pytest.fail(f"the collector did not store {device_id} ({runs} run(s), telemetry "
                            f"{telemetry}) within {timeout_s:.0f} s")
            time.sleep(0.1)


def _wait_until_serving(proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"collector serve --http exited with {proc.returncode}:\n"
                        f"{log_path.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/api/devices?limit=1", timeout=2):
                return
        except urllib.error.HTTPError as err:  # it serves, but cannot answer: no use waiting
            pytest.fail(f"collector serve --http answers /api/devices with {err.code}: "
                        f"{err.read()[:500]!r}\n{log_path.read_text(errors='replace')[-3000:]}")
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    pytest.fail(f"collector serve --http did not answer on {url} within {START_TIMEOUT_S:.0f} s:\n"
                f"{log_path.read_text(errors='replace')[-3000:]}")


@pytest.fixture(scope="module")
def dashboard(mosquitto_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    work = tmp_path_factory.mktemp("dashboard")
    db_path = work / "results.db"
    db_url = f"sqlite:///{db_path}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = work / "collector.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEMETER_")}
    env["EDGEMETER_COLLECTOR__HTTP__TOKEN"] = TOKEN
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgemeter.cli", "collector", "serve", "--mqtt", mosquitto_url,
             "--db", db_url, "--http", f"127.0.0.1:{port}", "--client-id",
             f"browser-{uuid.uuid4().hex[:8]}", "-v"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_until_serving(proc, url, log_path)
        with connect(mosquitto_url, f"browser-devices-{uuid.uuid4().hex[:8]}") as conn:
            yield Dashboard(url=url, mqtt_url=mosquitto_url, db_url=db_url, db_path=db_path,
                            fleet=f"web{uuid.uuid4().hex[:6]}", connection=conn, log_path=log_path)
    finally:
        stop_process(proc, timeout_s=15)


@dataclass
class PageProblems:
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    problems = PageProblems()
    pg.on("console", lambda msg: problems.console_errors.append(msg.text)
          if msg.type == "error" else None)
    pg.on("pageerror", lambda exc: problems.page_errors.append(str(exc)))
    pg.problems = problems
    try:
        yield pg
    finally:
        context.close()


def assert_clean(page: Any, *, allowed: tuple[str, ...] = ()) -> None:
    """No uncaught exception and no console error (other than ``allowed`` substrings)."""
    problems: PageProblems = page.problems
    errors = [e for e in problems.console_errors if not any(a in e for a in allowed)]
    assert not problems.page_errors, f"uncaught exceptions: {problems.page_errors}"
    assert not errors, f"console errors: {errors}"


def shoot(page: Any, name: str, *, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
