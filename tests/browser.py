"""Look at the built book in headless Chromium: serve it locally, drive the browser, and list
what each page asked for (requests) and said (console messages)."""

from __future__ import annotations

import functools
import json
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

# Set by CI: there a missing browser fails the browser tests instead of skipping them.
REQUIRE_VARIABLE = "LLMTRAIN_REQUIRE_BROWSER"
NOT_FOUND = "Chromium or chromedriver not found"
INSTALL = "install with apt-get install chromium chromium-driver"
MISSING = f"{NOT_FOUND}: browser tests skipped; {INSTALL}"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver",)
# Schemes that never leave the machine.
LOCAL_SCHEMES = {"file", "data", "blob", "about"}


@dataclass(frozen=True)
class Chromium:
    browser: str
    driver: str


def find_chromium() -> Chromium | None:
    """Chromium and its chromedriver, from /usr/bin (Debian's packages) or the PATH."""
    browser = next(filter(None, (shutil.which(name) for name in BROWSERS)), None)
    driver = next(filter(None, (shutil.which(name) for name in DRIVERS)), None)
    if browser is None or driver is None:
        return None
    return Chromium(browser, driver)


def browser_required() -> bool:
    return os.environ.get(REQUIRE_VARIABLE, "") not in ("", "0")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        """Requests are listed from the browser's side; the server's log is noise."""


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 (a free port) in a thread; yield its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def start_chromium(chromium: Chromium, *, width: int = 1280, height: int = 900) -> WebDriver:
    """A headless Chromium that records every network request and console message."""
    options = webdriver.ChromeOptions()
    options.binary_location = chromium.browser
    for argument in (
        "--headless=new",
        # Tests run as root in containers, where Chromium's sandbox cannot start.
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
        "--hide-scrollbars",
        # Keep the browser's own traffic (updates, safe browsing) out of the page's requests.
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    options.add_experimental_option(
        "perfLoggingPrefs", {"enableNetwork": True, "enablePage": False}
    )
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromium.driver))
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    return driver


def drain_requests(driver: WebDriver) -> list[str]:
    """The URLs the browser requested since the last call (from its performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def drain_console(driver: WebDriver, levels=("SEVERE", "WARNING")) -> list[str]:
    """The console messages at ``levels`` since the last call."""
    return [
        f"{entry['level']}: {entry['message']}"
        for entry in driver.get_log("browser")
        if entry["level"] in levels
    ]


def is_local(url: str, base: str) -> bool:
    """Whether ``url`` stays on the machine: a local scheme, or the server at ``base``."""
    parts = urlsplit(url)
    if parts.scheme in LOCAL_SCHEMES:
        return True
    return parts.scheme in ("http", "https") and parts.netloc == urlsplit(base).netloc
