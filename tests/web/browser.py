"""Helpers for browser tests: a live server for a Flask app, and Debian's Chromium under Playwright.

* :func:`live_server` serves an app on ``127.0.0.1`` (a free port) from a thread
  and yields its base URL; the server is shut down when the block ends.
* :func:`chromium` launches ``/usr/bin/chromium`` headless (never a downloaded
  browser: ``playwright install`` is not used here) and yields the Browser.
  Without the binary the test is skipped with the reason, or fails when
  ``SUYUAN_REQUIRE_BROWSER=1`` (CI sets it).
* :func:`new_page` opens a fresh context (own cookies and localStorage) and a page.

Fixtures: ``browser`` (one Chromium per test module) and ``page`` (a new context
per test).  Import them in a conftest.py (``from tests.web.browser import
browser, page  # noqa: F401``); in a test module the import would clash with
the test's parameter names (ruff F811), so modules without that conftest wrap
:func:`chromium` and :func:`new_page` in fixtures of their own.
Playwright's ``launch`` gives every browser a fresh temporary profile
(user-data-dir) of its own and removes it on close.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from werkzeug.serving import make_server

if TYPE_CHECKING:
    from flask import Flask
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextmanager
def live_server(app: Flask) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 at a free port in a thread; yield ``http://127.0.0.1:<port>``."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _unavailable(reason: str) -> None:
    if os.environ.get("SUYUAN_REQUIRE_BROWSER") == "1":
        pytest.fail(f"SUYUAN_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@contextmanager
def chromium() -> Iterator[Browser]:
    """Launch Debian's Chromium headless under Playwright; skip (or fail) if it is missing."""
    if not CHROMIUM.is_file():
        _unavailable(f"{CHROMIUM} not found (install the Debian package chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def new_page(browser: Browser, locale: str = "en-US") -> Iterator[Page]:
    """A page in a new browser context (fresh cookies, cache and localStorage).

    ``locale`` sets the browser's language (Accept-Language): English by default,
    so tests can read the site's English message ids whatever the default locale.
    """
    context = browser.new_context(locale=locale)
    context.set_default_timeout(20_000)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with new_page(browser) as opened:
        yield opened
