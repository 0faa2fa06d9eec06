"""The Suyuan web application: ``create_app`` builds it, one blueprint per audience.

* ``web.log_routes``  — ``/log/…``: the C2SP tlog-tiles API (checkpoint, tiles, entry bundles, vkey)
* ``web.api``         — ``/api/v1/…``: JSON entries, proofs, checkpoints, keys, appends; OpenAPI
* ``web.public``      — ``/``, ``/e/<seq>`` and ``/healthz`` for people
* ``web.consumer``    — what QR codes open: product pages (GS1 Digital Link), notices
* ``web.auth``        — sign in/out, account; ``web.producer``, ``web.auditor``,
  ``web.officials`` (payments prepared and co-signed), ``web.admin`` — the portals,
  each behind a role check
* ``web.i18n``        — Chinese first, English second

Configuration: ``test_config`` (tests), else the instance folder's ``config.py``
and ``SUYUAN_*`` environment variables (``ledger.config``).  Outside
development (``SUYUAN_DEV=1``) and testing, ``SUYUAN_SECRET_KEY`` is required.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from flask import Flask
from werkzeug.exceptions import HTTPException

from ledger.config import Settings
from ledger.errors import ConfigError
from web.passwords import DEFAULT_LOG_N


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    settings = Settings.from_env()
    app = Flask(__name__, instance_path=str(settings.instance), instance_relative_config=True)
    app.config.from_mapping(
        SUYUAN_SETTINGS=settings,
        SUYUAN_ENV=dict(os.environ),
        MAX_CONTENT_LENGTH=8 * 1024 * 1024,
        MAX_FORM_MEMORY_SIZE=1024 * 1024,
        MAX_FORM_PARTS=1000,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=not settings.dev,
        SESSION_COOKIE_NAME="suyuan_session",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=8),
        WTF_CSRF_TIME_LIMIT=8 * 3600,
        SUYUAN_SCRYPT_LOG_N=DEFAULT_LOG_N,
        SUYUAN_READ_ONLY=os.environ.get("SUYUAN_READ_ONLY") == "1",
    )
    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)
        secret = os.environ.get("SUYUAN_SECRET_KEY")
        if secret:
            app.config["SECRET_KEY"] = secret
        elif settings.dev:
            app.config["SECRET_KEY"] = "development-only-secret"
        elif not app.config.get("SECRET_KEY"):
            raise ConfigError("set SUYUAN_SECRET_KEY (or SECRET_KEY in the instance config.py)")
    else:
        app.config.from_mapping(test_config)

    from web import (
        admin,
        api,
        auditor,
        auth,
        consumer,
        extensions,
        i18n,
        log_routes,
        officials,
        producer,
        public,
    )

    extensions.init_app(app)
    i18n.init_app(app)
    extensions.csrf.exempt(api.bp)  # token-authenticated, no cookies: CSRF does not apply
    extensions.csrf.exempt(log_routes.bp)
    for blueprint in (log_routes, api, public, consumer, auth, producer, auditor, officials, admin):
        app.register_blueprint(blueprint.bp)
    app.before_request(auth.load_user)
    app.register_error_handler(HTTPException, api.api_aware_http_error)
    app.register_error_handler(413, public.too_large)  # a form's page says what the limits are
    app.wsgi_app = _RefuseUndecodableQuery(app.wsgi_app)  # type: ignore[method-assign]
    return app


class _RefuseUndecodableQuery:
    """Answer 400 to a request whose raw query string is not UTF-8, before Flask sees it.

    werkzeug decodes ``request.args`` lazily and raises UnicodeDecodeError (a 500) in
    whichever code reads it first — a view, the locale selector, even the error page.
    gunicorn refuses such a request line itself; other servers and proxies pass it on.
    Percent-encoded bytes (``%FF``) are not affected: they stay encoded.  The answer is
    JSON with a code under ``/api/v1`` and plain text elsewhere.
    """

    def __init__(self, wsgi_app: Any) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        raw = environ.get("QUERY_STRING", "").encode("latin-1", "replace")
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            message = f"the query string is not UTF-8 (byte {exc.start}); percent-encode it"
            if environ.get("PATH_INFO", "").startswith("/api/"):
                error = {"code": "invalid_input", "message": message}
                body = json.dumps({"error": error}).encode()
                kind = "application/json"
            else:
                body, kind = f"400 Bad Request: {message}\n".encode(), "text/plain; charset=utf-8"
            start_response(
                "400 BAD REQUEST",
                [
                    ("Content-Type", kind),
                    ("Content-Length", str(len(body))),
                    ("X-Content-Type-Options", "nosniff"),
                ],
            )
            return [body]
        return self.wsgi_app(environ, start_response)
