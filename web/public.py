"""Pages for people: the front page, ``/e/<seq>`` (any entry) and ``/healthz``."""

from __future__ import annotations

import base64
import json

from flask import Blueprint, Response, jsonify, render_template

from ledger import canonical
from ledger.errors import Error
from web.errors import classify
from web.extensions import reader

bp = Blueprint("public", __name__)


@bp.errorhandler(Error)
def _error(exc: Error) -> tuple[str, int]:
    status, _code = classify(exc)
    return render_template("error.html", status=status, message=str(exc)), status


@bp.get("/")
def index() -> str:
    log = reader()
    latest = log.latest_checkpoint()
    return render_template("index.html", log=log, latest=latest, keys=log.registered_keys())


@bp.get("/e/<int:seq>")
def entry(seq: int) -> str:
    log = reader()
    latest = log.latest_checkpoint()
    found = log.entry(seq)
    proof = log.inclusion_proof(seq, latest.size)
    pretty = json.dumps(canonical.parse(found.leaf), ensure_ascii=False, indent=2, sort_keys=True)
    return render_template(
        "entry.html",
        entry=found,
        leaf_hash=found.leaf_hash().hex(),
        pretty=pretty,
        latest=latest,
        proof=[base64.b64encode(h).decode() for h in proof],
        vkey=log.verifier.vkey,
    )


@bp.get("/healthz")
def healthz() -> Response:
    latest = reader().latest_checkpoint()
    return jsonify({"status": "ok", "size": latest.size, "checkpoint_time": latest.created})
