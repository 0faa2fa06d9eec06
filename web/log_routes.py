"""``/log/…``: the log exactly per C2SP tlog-tiles, for browsers, auditors, witnesses and mirrors."""

from __future__ import annotations

import gzip
import threading
import time
from typing import Any

from flask import Blueprint, Response, current_app, request

from ledger.errors import Error, InvalidInput, NotFound, StorageError
from ledger.tiles import EntryBundle, Tile, parse_tile_path
from ledger.witnessing import cosigned_note
from web.errors import classify
from web.extensions import reader

bp = Blueprint("log", __name__, url_prefix="/log")

IMMUTABLE = "public, max-age=31536000, immutable"
CHECKPOINT_CACHE = "public, max-age=2, must-revalidate"


def plain(status: int, message: str) -> Response:
    response = Response(message + "\n", status=status, content_type="text/plain; charset=utf-8")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(Error)
def _error(exc: Error) -> Response:
    status, _code = classify(exc)
    return plain(status, str(exc))


_latest_lock = threading.Lock()


def _latest_note() -> str:
    """The newest checkpoint's note, re-read at most every ``SUYUAN_CHECKPOINT_TTL`` seconds
    (default 1; 0 reads it on every request).  Its Cache-Control already lets any cache serve
    it for 2 s, and a log under a burst of scans is read once a second instead of every time."""
    ttl = float(current_app.config.get("SUYUAN_CHECKPOINT_TTL", 1))
    state: dict[str, Any] = current_app.extensions.setdefault("suyuan_checkpoint", {})
    now = time.monotonic()
    with _latest_lock:
        if ttl > 0 and "note" in state and now - state["at"] < ttl:
            return str(state["note"])
    log = reader()
    latest = log.latest_checkpoint()
    try:
        note = cosigned_note(log, latest)
    except StorageError:  # no witness tables (a database from before 0008): the log's note alone
        note = latest.note
    with _latest_lock:
        state.update(note=note, at=now)
    return note


@bp.get("/checkpoint")
def checkpoint() -> Response:
    """The newest checkpoint (C2SP tlog-tiles), with the witnesses' cosignatures collected for it.

    Always the *newest* checkpoint the log signed, never an older, witnessed one: a tlog
    client (auditor, witness, mirror) must see the log's current state.  Cosignatures
    (C2SP tlog-cosignature) follow the log's own signature line as extra lines of the
    same signed note; a client that knows only the log key ignores them (signed-note),
    and one that knows the witnesses' keys can check them.  Right after an append the
    newest checkpoint carries none until the witnesses answer (``suyuan witnesses run``);
    pages that want witnessed proofs use the newest *witnessed* checkpoint instead
    (``ledger.witnessing.latest_witnessed``, web/consumer.py).
    """
    response = Response(_latest_note(), content_type="text/plain; charset=utf-8")
    response.headers["Cache-Control"] = CHECKPOINT_CACHE
    return response


@bp.get("/vkey")
def vkey() -> Response:
    response = Response(reader().verifier.vkey + "\n", content_type="text/plain; charset=utf-8")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


@bp.get("/tile/<path:rest>")
def tile(rest: str) -> Response:
    try:
        resource = parse_tile_path("tile/" + rest)
    except InvalidInput as exc:
        raise NotFound(f"not a tile path: {exc}") from None
    log = reader()
    if isinstance(resource, EntryBundle):
        body = log.entry_bundle(resource.index, resource.width)
    else:
        body = log.tile(resource.level, resource.index, resource.width)
    return tile_response(resource, body)


def tile_response(resource: Tile | EntryBundle, body: bytes) -> Response:
    """A tile or entry bundle as tlog-tiles serves it: immutable, bundles gzipped on request."""
    response = Response(body, content_type="application/octet-stream")
    response.headers["Cache-Control"] = IMMUTABLE
    response.headers["Vary"] = "Accept-Encoding"
    if isinstance(resource, EntryBundle) and request.accept_encodings.quality("gzip") > 0:
        response.set_data(gzip.compress(body, compresslevel=6, mtime=0))
        response.headers["Content-Encoding"] = "gzip"
    return response
