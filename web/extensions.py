"""Per-app resources: the operator's :class:`~ledger.instance.Instance` and its log,
CSRF protection, rate limits and the security headers every response carries."""

from __future__ import annotations

import threading
from typing import Any

from flask import Flask, Request, Response, current_app
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect

from ledger.errors import ConfigError
from ledger.instance import Instance
from ledger.log import Log
from ledger.note import Signer

_lock = threading.Lock()

csrf = CSRFProtect()
#: Per-process counters by default; a deployment with several processes points
#: ``RATELIMIT_STORAGE_URI`` at a shared store (docs/DEPLOY.md).
limiter = Limiter(key_func=get_remote_address, storage_uri="memory://")


class _CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, without building a signer for requests that carry
    no session cookie — nearly every scan of a label."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if self.get_cookie_name(app) not in request.cookies and app.secret_key:
            return self.session_class()
        return super().open_session(app, request)


def init_app(app: Flask) -> None:
    app.session_interface = _CookieSessions()
    settings = app.config["SUYUAN_SETTINGS"]
    app.extensions["suyuan"] = {
        "instance": Instance(settings, app.config["SUYUAN_ENV"]),
        "reader": None,
        "writer": None,
        "signers": {},
    }
    app.config.setdefault("RATELIMIT_STORAGE_URI", "memory://")
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    app.config.setdefault("SUYUAN_LOGIN_LIMIT", "10 per minute;100 per day")
    app.config.setdefault("SUYUAN_WRITE_LIMIT", "60 per minute")
    csrf.init_app(app)
    limiter.init_app(app)
    # There are no application-wide limits: every limit is a decorator on the view it
    # protects, and the decorator checks it.  The per-request middleware check would
    # cost every scan and proof request ~0.2 ms for nothing.
    hooks = app.before_request_funcs.get(None, [])
    if limiter._check_request_limit in hooks:  # absent when RATELIMIT_ENABLED is False
        hooks.remove(limiter._check_request_limit)
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
    if current_app.config.get("SUYUAN_READ_ONLY"):
        raise ConfigError(
            "this server is read-only (suyuan serve --read-only): send writes to the primary"
        )
    state = _state()
    with _lock:
        if state["writer"] is None:
            state["writer"] = instance().writer()
    return state["writer"]  # type: ignore[no-any-return]


def author(key_name: str) -> Signer:
    """The operator-held private key ``key_name``, decrypted once per process."""
    signers: dict[str, Signer] = _state()["signers"]
    with _lock:
        if key_name not in signers:
            signers[key_name] = instance().author(key_name)
        return signers[key_name]


def write_limit() -> str:
    return str(current_app.config["SUYUAN_WRITE_LIMIT"])


_HEADERS = [
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
    (
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
        "object-src 'none'",
    ),
]


def _security_headers(response: Response) -> Response:
    present = {name.lower() for name in response.headers.keys()}  # noqa: SIM118
    for name, value in _HEADERS:
        if name.lower() not in present:
            response.headers.add(name, value)
    if current_app.config.get("SESSION_COOKIE_SECURE") and "strict-transport-security" not in (
        present
    ):
        response.headers.add("Strict-Transport-Security", "max-age=31536000")
    return response
