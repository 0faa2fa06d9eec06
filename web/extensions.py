"""Per-app resources: the operator's :class:`~ledger.instance.Instance` and its log,
CSRF protection, rate limits and the security headers every response carries.

Databases: :func:`reader` reads through ``Instance.read_engine`` (the replica when
``SUYUAN_READ_DATABASE_URL`` is set), :func:`writer` and everything that writes —
users, drafts, tokens, scan counts — through ``instance().engine`` (the primary).  A
database that cannot be reached (the primary restarting, a replica-only host whose
primary is down) answers 503 with the blueprint's usual error body and a
``Retry-After``, never a 500: see :func:`_database_error`.

Behind reverse proxies, ``SUYUAN_PROXY_HOPS`` (environment or app config; default 0)
is how many proxies in front of the app append to ``X-Forwarded-For`` and set
``X-Forwarded-Proto``: the client address (rate limits, scan visitors) and the scheme
are taken from those headers, trusting exactly that many hops (werkzeug's ProxyFix).
Without it every request seems to come from the proxy.  Never set it higher than the
number of proxies you run: a client could then choose its own address.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from flask import Flask, Request, Response, current_app
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask.typing import ResponseReturnValue
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.middleware.proxy_fix import ProxyFix

from ledger.db import DISK_FULL_MESSAGE, is_disk_full_error, is_read_only_error
from ledger.errors import ConfigError, StorageError
from ledger.instance import Instance
from ledger.log import Log
from ledger.note import Signer

_lock = threading.Lock()
log = logging.getLogger(__name__)
#: Seconds a client is asked to wait after a 503 for an unreachable database.
RETRY_AFTER = "5"

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
    app.register_error_handler(DBAPIError, _database_error)
    hops = proxy_hops(app)
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]


def proxy_hops(app: Flask) -> int:
    """``SUYUAN_PROXY_HOPS`` from the app config, else the environment; 0 when unset."""
    raw = app.config.get("SUYUAN_PROXY_HOPS")
    if raw is None:
        raw = app.config["SUYUAN_ENV"].get("SUYUAN_PROXY_HOPS") or 0
    text = str(raw).strip()
    if not text.isdigit() or int(text) > 10:
        raise ConfigError(
            f"SUYUAN_PROXY_HOPS must be the number of reverse proxies in front of the app "
            f"(0 to 10), found {raw!r}"
        )
    return int(text)


def _state() -> dict[str, Any]:
    state: dict[str, Any] = current_app.extensions["suyuan"]
    return state


def instance() -> Instance:
    return _state()["instance"]  # type: ignore[no-any-return]


def read_engine() -> Engine:
    """The engine reads go through: the replica when one is configured, else the primary."""
    return instance().read_engine


def reader() -> Log:
    """The log, read-only, on the read database (the replica when one is configured)."""
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


def _database_error(exc: DBAPIError) -> ResponseReturnValue:
    """A database that cannot be reached, or a write sent to a read-only standby: 503.

    Log methods already turn driver errors into :class:`StorageError`; this catches the
    views (and ``before_request`` hooks) that use an engine directly.  The error is
    handed to the blueprint's own handler for ledger errors, so the API answers JSON,
    ``/log/`` plain text and the pages their error page.  Other database errors are
    bugs: re-raised, they become Flask's 500 with the traceback logged.
    """
    full = is_disk_full_error(exc)
    if not (
        exc.connection_invalidated
        or isinstance(exc, OperationalError)
        or is_read_only_error(exc)
        or full
    ):
        raise exc
    log.warning("database unavailable: %s", exc.orig)
    if full:
        message = DISK_FULL_MESSAGE
    elif is_read_only_error(exc):
        message = "the database is read-only here (a replica): try the primary"
    else:
        message = "the database is unavailable; try again shortly"
    try:
        # Raised, so that handle_user_exception's bare ``raise`` (no handler found)
        # re-raises this error and not the DBAPIError being handled.
        raise StorageError(message)
    except StorageError as error:
        try:
            response = current_app.make_response(current_app.handle_user_exception(error))
        except StorageError:  # no handler for ledger errors on this route
            response = Response(message + "\n", 503, content_type="text/plain; charset=utf-8")
            response.headers["Cache-Control"] = "no-store"
    response.headers["Retry-After"] = RETRY_AFTER
    return response


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


#: For downloads (``Content-Disposition: attachment``: evidence documents, exports): should
#: a browser ever render one anyway — an old one, a plug-in, a user's "open" — it runs
#: nothing and reaches nothing of this origin (a sandbox is a unique origin).
DOWNLOAD_CSP = "default-src 'none'; sandbox; frame-ancestors 'none'"


def _security_headers(response: Response) -> Response:
    present = {name.lower() for name in response.headers.keys()}  # noqa: SIM118
    disposition = response.headers.get("Content-Disposition", "")
    if disposition.lower().startswith("attachment") and "content-security-policy" not in present:
        response.headers["Content-Security-Policy"] = DOWNLOAD_CSP
        present.add("content-security-policy")
    for name, value in _HEADERS:
        if name.lower() not in present:
            response.headers.add(name, value)
    if current_app.config.get("SESSION_COOKIE_SECURE") and "strict-transport-security" not in (
        present
    ):
        response.headers.add("Strict-Transport-Security", "max-age=31536000")
    return response
