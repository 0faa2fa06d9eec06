"""The witness's own small web app (C2SP tlog-witness), apart from the Suyuan site.

An audit bureau runs it on its machine with ``suyuan witness serve``; it
shares nothing with :func:`web.create_app` (no portal, no blueprints of the
site, no database of any log).  Routes:

* ``POST /add-checkpoint`` — tlog-witness "add-checkpoint": the body is
  ``old N``, proof lines, an empty line and a checkpoint; the answer is the
  cosignature line (200) or a refusal (400/403/404/409/422, ``text/plain``;
  409 is ``text/x.tlog.size`` with the witness's size).  Bodies above
  :data:`ledger.witness.MAX_REQUEST_BYTES` are refused with 413 unread.
* ``GET /vkey`` — the witness's verifier key (type 0x04), ``text/plain``.
* ``GET /`` — a page for people: name, vkey, the logs trusted with their
  latest cosigned size, how much evidence is kept.

The submission prefix and the monitoring prefix are both the app's root.
"""

from __future__ import annotations

import base64
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, current_app, request
from flask_babel import Babel
from flask_babel import gettext as _
from markupsafe import Markup, escape
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from keys.store import passphrase_from
from ledger.cosignature import Clock, CosignatureSigner
from ledger.errors import Error, StorageError
from ledger.witness import MAX_REQUEST_BYTES, Refused
from ledger.witness_store import WitnessStore

__all__ = ["create_witness_app"]

_LOCALES = ("zh", "en")
_TEXT = "text/plain; charset=utf-8"
_log = logging.getLogger("suyuan.witness")


def _select_locale() -> str:
    asked = request.args.get("lang")
    if asked in _LOCALES:
        return asked
    return request.accept_languages.best_match(_LOCALES) or _LOCALES[0]


def _text(body: str, status: int = 200, content_type: str = _TEXT) -> Response:
    response = Response(body, status=status, content_type=content_type)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _parts() -> tuple[WitnessStore, CosignatureSigner]:
    store, signer = current_app.extensions["suyuan_witness"]
    return store, signer


def create_witness_app(
    directory: str | os.PathLike[str],
    passphrase: bytes | str | None = None,
    test_config: Mapping[str, Any] | None = None,
    *,
    clock: Clock = time.time,
) -> Flask:
    """Build the witness app for the witness in ``directory``.

    The cosigning key is decrypted once, here, with ``passphrase`` (default:
    ``SUYUAN_PASSPHRASE`` or a terminal prompt); a wrong passphrase or a
    directory without a witness raises an :class:`~ledger.errors.Error` before
    any request is served.  ``clock`` (POSIX seconds) stamps the cosignatures.
    """
    store = WitnessStore.open(Path(directory), clock)
    if passphrase is None:
        passphrase = passphrase_from(os.environ)
    if isinstance(passphrase, str):
        passphrase = passphrase.encode("utf-8")
    signer = store.signer(passphrase)

    app = Flask(__name__, static_folder=None)
    app.config.from_mapping(
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        BABEL_DEFAULT_LOCALE=_LOCALES[0],
        BABEL_TRANSLATION_DIRECTORIES=str(Path(__file__).parent / "translations"),
    )
    if test_config is not None:
        app.config.from_mapping(test_config)
    Babel(app, locale_selector=_select_locale)
    app.extensions["suyuan_witness"] = (store, signer)

    app.add_url_rule("/add-checkpoint", view_func=add_checkpoint, methods=["POST"])
    app.add_url_rule("/vkey", view_func=vkey, methods=["GET"])
    app.add_url_rule("/", view_func=index, methods=["GET"])
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Error, _suyuan_error)
    return app


def add_checkpoint() -> Response:
    """tlog-witness add-checkpoint."""
    store, signer = _parts()
    body = request.get_data(cache=False)
    decision = store.submit(body, signer)
    if isinstance(decision, Refused):
        level = logging.WARNING if decision.evidence else logging.INFO
        _log.log(
            level,
            "add-checkpoint refused: %s %s (%s): %s",
            decision.status,
            decision.reason,
            decision.origin,
            decision.message,
        )
    return _text(decision.body, decision.status, decision.content_type)


def vkey() -> Response:
    _store, signer = _parts()
    return _text(signer.vkey + "\n")


def _http_error(exc: HTTPException) -> Response:
    code = exc.code or 500
    return _text(f"{code} {exc.name}\n", code)


def _suyuan_error(exc: Error) -> Response:
    # Storage trouble (a locked or full disk): the log may retry later.
    _log.error("witness error: %s", exc)
    status = 503 if isinstance(exc, StorageError) else 500
    return _text(f"{status} the witness cannot answer now\n", status)


_PAGE = """<!doctype html>
<html lang="{lang}">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; padding: 0 1rem; }}
code, td.mono {{ font-family: ui-monospace, monospace; word-break: break-all; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border-bottom: 1px solid #ccc; padding: .4rem; text-align: left; vertical-align: top; }}
</style></head>
<body>
<h1>{title}</h1>
<p>{intro}</p>
<dl>
<dt>{name_label}</dt><dd><code id="witness-name">{name}</code></dd>
<dt>{vkey_label}</dt><dd><code id="witness-vkey">{vkey}</code></dd>
<dt>{evidence_label}</dt><dd id="evidence-count" data-count="{evidence_count}">{evidence_count}</dd>
</dl>
<h2>{logs_title}</h2>
{logs}
</body></html>
"""


def index() -> Response:
    """The page for people: who this witness is and what it watches."""
    from flask_babel import get_locale

    store, signer = _parts()
    logs = store.logs()
    if logs:
        rows = []
        for log in logs:
            if log.size is None or log.root is None:
                size, root, updated = "—", _("not cosigned yet"), "—"
            else:
                size = str(log.size)
                root = base64.b64encode(log.root).decode("ascii")
                updated = log.updated or "—"
            rows.append(
                Markup(
                    '<tr data-origin="{o}"><td class="mono">{o}</td><td class="size">{s}</td>'
                    '<td class="mono">{r}</td><td>{u}</td><td class="mono">{k}</td></tr>'
                ).format(o=log.origin, s=size, r=root, u=updated, k=log.vkey)
            )
        table = Markup(
            "<table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>"
            "</thead><tbody>{}</tbody></table>"
        ).format(
            _("Log origin"),
            _("Latest cosigned size"),
            _("Root hash"),
            _("Cosigned at (UTC)"),
            _("Log key"),
            Markup("").join(rows),
        )
    else:
        table = Markup("<p>{}</p>").format(_("This witness trusts no log yet."))
    locale = get_locale()
    page = _PAGE.format(
        lang=escape(str(locale) if locale else _LOCALES[0]),
        title=escape(_("Transparency log witness")),
        intro=escape(
            _(
                "This witness cosigns a log's checkpoint only after checking that it is "
                "consistent with every checkpoint of that log it cosigned before "
                "(C2SP tlog-witness). Refused checkpoints are kept as evidence."
            )
        ),
        name_label=escape(_("Witness name")),
        name=escape(signer.name),
        vkey_label=escape(_("Verifier key")),
        vkey=escape(signer.vkey),
        evidence_label=escape(_("Refusals kept as evidence")),
        evidence_count=store.evidence_count(),
        logs_title=escape(_("Logs this witness watches")),
        logs=table,
    )
    response = Response(page, content_type="text/html; charset=utf-8")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def run_witness(
    directory: str | os.PathLike[str],
    passphrase: bytes,
    host: str,
    port: int,
    workers: int | None = None,
) -> None:
    """Serve the witness with gunicorn (like :func:`web.serve.run_gunicorn` for the site).

    The caller SHOULD have opened the key once already (a wrong passphrase then
    fails before gunicorn starts); every worker decrypts it again in memory.
    """
    from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]

    class _WitnessGunicorn(BaseApplication):  # type: ignore[misc]
        def __init__(self, options: dict[str, Any]) -> None:
            self.options = options
            super().__init__()

        def load_config(self) -> None:
            for key, value in self.options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return create_witness_app(directory, passphrase)

    _WitnessGunicorn(
        {
            "bind": f"{host}:{port}",
            "workers": workers or 2,
            "worker_class": "gthread",
            "threads": 4,
            "accesslog": os.environ.get("SUYUAN_ACCESS_LOG", "-") or None,
            "timeout": 60,
            "preload_app": False,
        }
    ).run()
