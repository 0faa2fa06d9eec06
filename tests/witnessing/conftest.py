"""Fixtures for the witnessing tests: Chromium (one per module) and a page per test."""

from __future__ import annotations

from tests.web.browser import browser, page  # noqa: F401
