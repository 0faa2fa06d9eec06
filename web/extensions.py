"""Per-app resources: the operator's :class:`~ledger.instance.Instance` and its log."""

from __future__ import annotations

import threading
from typing import Any

from flask import Flask, Response, current_app

from ledger.instance import Instance
from ledger.log import Log

_lock = threading.Lock()


def init_app(app: Flask) -> None:
    settings = app.config["SUYUAN_SETTINGS"]
    app.extensions["suyuan"] = {
        "instance": Instance(settings, app.config["SUYUAN_ENV"]),
        "reader": None,
        "writer": None,
    }
    app.after_request(_security_headers)


def _state() -> dict[str, Any]:
    state: dict[str, Any] = current_app.extensions["suyuan"]
    return state


def instance() -> Instance:
    return _state()["instance"]  # type: ignore[no-any-return]


def reader() -> Log:
    state = _state()
    if state["reader"] is None:
        state["reader"] = instance().reader()
    return state["reader"]  # type: ignore[no-any-return]


def writer() -> Log:
    """The log with its key (needs ``SUYUAN_PASSPHRASE``); one per process, so group commit works."""
    state = _state()
    with _lock:
        if state["writer"] is None:
            state["writer"] = instance().writer()
    return state["writer"]  # type: ignore[no-any-return]


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    )
    return response
