"""Headless Chromium for the console's browser tests: Debian's `chromium` driven by Debian's
`chromedriver` through Selenium (never Selenium Manager, never a download), one browser per test
session; and the console served from a thread of its own, so the synchronous WebDriver calls of a
test never block the server's event loop.

`.ci/run` installs chromium and chromium-driver. Without them the browser tests fail: a skipped
test proves nothing (leave them out on purpose with `-k "not browser"`, never silently).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import os
import shutil
import tempfile
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from storage import db as storage_db
from tests.console_support import ConsoleHarness, start_console, stop_console

T = TypeVar("T")
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,900")


def require_browser() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if not missing:
        return
    pytest.fail(f"{', '.join(missing)} missing: apt-get install chromium chromium-driver (.ci/run does)")


def chromium(download_dir: Path):  # noqa: ANN201 - selenium's WebDriver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # belt and braces: Selenium Manager must never fetch anything
    profile = tempfile.mkdtemp(prefix="herald-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)})
    driver.set_page_load_timeout(30)
    driver.profile_dir = profile
    return driver


def close_chromium(driver) -> None:  # noqa: ANN001
    driver.quit()
    shutil.rmtree(driver.profile_dir, ignore_errors=True)


class LiveConsole:
    """The console (sandbox mode, outbox worker running) on a thread with its own event loop."""

    def __init__(self, db_path: Path) -> None:
        self.db_url = f"sqlite://{db_path}"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="live-console", daemon=True)
        self.harness: ConsoleHarness | None = None
        # tortoise keeps its connections in a context variable: work sent from the test's thread
        # runs in the context the server was started in
        self.context: contextvars.Context | None = None

    def run(self, work: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def settle(task: asyncio.Task[T]) -> None:
            if task.exception() is not None:
                done.set_exception(task.exception())  # type: ignore[arg-type]
            else:
                done.set_result(task.result())

        def begin() -> None:
            task = self.loop.create_task(work, context=self.context)
            task.add_done_callback(settle)
        self.loop.call_soon_threadsafe(begin)
        return done.result(timeout)

    def start(self) -> "LiveConsole":
        self.thread.start()

        async def up() -> ConsoleHarness:
            await storage_db.upgrade(self.db_url)
            await storage_db.connect(self.db_url, run_migrations=False)
            harness = await start_console(self.db_url, run_worker=True)
            self.context = contextvars.copy_context()
            return harness
        self.harness = self.run(up())
        return self

    def stop(self) -> None:
        async def down() -> None:
            await stop_console(self.harness)
            await storage_db.close()
        try:
            self.run(down())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    @property
    def herald(self):  # noqa: ANN201
        return self.harness.herald

    def url(self, path: str) -> str:
        return self.harness.url(path)

    def sign_in_url(self, email: str) -> str:
        token = self.run(self.harness.link(email))
        return self.url(f"/console/sign-in?token={token}")
