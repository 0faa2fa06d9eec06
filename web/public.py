"""Pages for people: the front page, ``/e/<seq>`` (any entry) and ``/healthz``."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as WerkzeugResponse

from ledger import canonical, witnessing
from ledger.checkpoint import verify_checkpoint
from ledger.errors import Error
from ledger.log import Log, StoredCheckpoint
from ledger.merkle import verify_inclusion
from web.errors import classify
from web.extensions import reader

bp = Blueprint("public", __name__)


@bp.errorhandler(Error)
def _error(exc: Error) -> tuple[str, int]:
    status, _code = classify(exc)
    return render_template("error.html", status=status, message=str(exc)), status


def too_large(exc: HTTPException) -> Any:
    """App-wide 413 (a request over ``MAX_CONTENT_LENGTH``, or one text field over
    ``MAX_FORM_MEMORY_SIZE``): the portals' forms say what the limits are, in the page's
    language; the API answers its JSON error, ``/log/`` its plain one."""
    from web.api import api_aware_http_error

    if request.path.startswith(("/api/", "/log/")):
        return api_aware_http_error(exc)
    config = current_app.config
    message = _(
        "The request is too large: a form may send at most %(files)s MiB in all, files "
        "included, and %(text)s MiB of text in one field. Send smaller or fewer files (a "
        "scan at a lower resolution, or one PDF of several pages).",
        files=_mib(config.get("MAX_CONTENT_LENGTH")),
        text=_mib(config.get("MAX_FORM_MEMORY_SIZE")),
    )
    return render_template("error.html", status=413, message=message), 413


def _mib(limit: Any) -> str:
    if not isinstance(limit, int) or limit <= 0:
        return "?"
    whole, rest = divmod(limit, 1024 * 1024)
    return str(whole) if not rest else f"{limit / (1024 * 1024):.1f}"


@bp.get("/")
def index() -> str:
    """The landing page: what Suyuan is, a code lookup, counts, recent notices, the log."""
    from web.consumer import landing

    log = reader()
    latest = log.latest_checkpoint()
    return render_template(
        "index.html", log=log, latest=latest, keys=log.registered_keys(), **landing(log)
    )


def check_inclusion(
    log: Log, latest: StoredCheckpoint, leaf_hashes: Mapping[int, bytes]
) -> dict[str, Any]:
    """The server's own check behind a verification panel's "checked by the server" line.

    Verifies ``latest``'s signature with the log's verifier key, then each
    entry's RFC 9162 inclusion proof (``seq`` → the leaf hash the page shows)
    against that checkpoint's root.  Returns ``{"size": n, "error": None}``, or
    the first failure as ``error``: the page then says the server's check failed
    instead of claiming it.  Costs one signature check and one proof read per entry.
    """
    try:
        checkpoint, _note = verify_checkpoint(latest.note, log.verifier, log.origin)
        for seq, leaf_hash in leaf_hashes.items():
            proof = log.inclusion_proof(seq, checkpoint.size)
            verify_inclusion(leaf_hash, seq, checkpoint.size, proof, checkpoint.root)
    except Error as exc:
        return {"size": latest.size, "error": str(exc)}
    return {"size": checkpoint.size, "error": None}


@bp.get("/e/<int:seq>")
def entry(seq: int) -> str:
    from web.consumer import witnessed_checkpoint

    log = reader()
    found = log.entry(seq)
    # With witnesses configured: the newest witnessed checkpoint that covers the entry.
    latest, witnessed = witnessed_checkpoint(log, log.latest_checkpoint(), {seq: found})
    proof = log.inclusion_proof(seq, latest.size)
    leaf_hash = found.leaf_hash()
    decoded = canonical.parse(found.leaf)
    pretty = json.dumps(decoded, ensure_ascii=False, indent=2, sort_keys=True)
    server_checked = {**check_inclusion(log, latest, {seq: leaf_hash}), **witnessed}
    # ?h= is the leaf-hash prefix printed on QR labels (qr/urls.py): the browser checks it too.
    label = request.args.get("h") or None
    if (
        label is not None
        and server_checked["error"] is None
        and not leaf_hash.hex().startswith(label.lower())
    ):
        server_checked["error"] = (
            f"the label's code {label[:64]!r} is not the start of this entry's "
            f"leaf hash {leaf_hash.hex()}"
        )
    return render_template(
        "entry.html",
        entry=found,
        leaf_hash=leaf_hash.hex(),
        pretty=pretty,
        latest=latest,
        signed_note=witnessing.cosigned_note(log, latest) if witnessed else latest.note,
        proof=[base64.b64encode(h).decode() for h in proof],
        vkey=log.verifier.vkey,
        server_checked=server_checked,
        # The browser checks that the whole entry the page shows is the logged leaf.
        expect={seq: decoded},
        label=label,
    )


@bp.get("/favicon.ico")
def favicon() -> WerkzeugResponse:
    """Browsers that ignore the page's icon link ask for this path."""
    return redirect(url_for("static", filename="favicon.svg"), 301)


@bp.get("/healthz")
def healthz() -> Response:
    latest = reader().latest_checkpoint()
    return jsonify({"status": "ok", "size": latest.size, "checkpoint_time": latest.created})
