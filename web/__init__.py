"""The Suyuan web application: ``create_app`` builds it, one blueprint per audience.

* ``web.log_routes``  — ``/log/…``: the C2SP tlog-tiles API (checkpoint, tiles, entry bundles, vkey)
* ``web.api``         — ``/api/v1/…``: JSON entries, proofs, checkpoints, keys, appends; OpenAPI
* ``web.public``      — ``/``, ``/e/<seq>`` and ``/healthz`` for people

Configuration: ``test_config`` (tests), else the instance folder's ``config.py``
and ``SUYUAN_*`` environment variables (``ledger.config``).  Outside
development (``SUYUAN_DEV=1``) and testing, ``SUYUAN_SECRET_KEY`` is required.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask
from werkzeug.exceptions import HTTPException

from ledger.config import Settings
from ledger.errors import ConfigError


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    settings = Settings.from_env()
    app = Flask(__name__, instance_path=str(settings.instance), instance_relative_config=True)
    app.config.from_mapping(
        SUYUAN_SETTINGS=settings,
        SUYUAN_ENV=dict(os.environ),
        MAX_CONTENT_LENGTH=8 * 1024 * 1024,
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

    from web import api, extensions, log_routes, public

    extensions.init_app(app)
    app.register_blueprint(log_routes.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(public.bp)
    app.register_error_handler(HTTPException, api.api_aware_http_error)
    return app
