"""``/api/v1``: JSON for entries, proofs, checkpoints and keys; token-authenticated appends.

Every error is JSON: ``{"error": {"code": "<stable code>", "message": "<what and why>"}}``.
Hashes in JSON are lower-case hex (leaf hashes) or standard base64 (proof hashes,
as in checkpoints); docs/FORMAT.md says which is which.
"""

from __future__ import annotations

import base64
import threading
from collections import OrderedDict
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from ledger import canonical
from ledger.blobs import FileBlobStore, check_digest, default_store, evidence_document
from ledger.entry import signed_statement_from_json
from ledger.errors import Error, InvalidInput, NotFound
from ledger.log import MAX_BATCH
from ledger.tokens import check_token
from web.api_queries import add_query_routes, openapi_paths
from web.errors import classify
from web.extensions import instance, reader, writer
from web.openapi import OPENAPI, add_paths

bp = Blueprint("api", __name__, url_prefix="/api/v1")

IMMUTABLE = "public, max-age=31536000, immutable"


def _error(status: int, code: str, message: str) -> Response:
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(Error)
def _ledger_error(exc: Error) -> Response:
    status, code = classify(exc)
    return _error(status, code, str(exc))


#: Stable codes for the HTTP-level refusals (werkzeug's names may change between versions).
_HTTP_CODES = {
    400: "invalid_input",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    code = _HTTP_CODES.get(status) or (exc.name or "error").lower().replace(" ", "_")
    if status == 404 and request.url_rule is None:
        message = f"no API route {request.path}: see /api/v1/openapi.json for the routes"
    elif status == 405:
        allowed = getattr(exc, "valid_methods", None) or []
        message = f"{request.method} is not allowed on {request.path}; allowed: " + (
            ", ".join(sorted(allowed)) or "none"
        )
    elif status == 413:
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        message = f"the request body is larger than this server takes ({limit} bytes)"
    elif status >= 500:
        message = "internal error: the request was not carried out"  # no internals in the answer
    else:
        message = exc.description or exc.name or "error"
    response = _error(status, code, message)
    if status == 405:
        response.headers["Allow"] = ", ".join(sorted(getattr(exc, "valid_methods", None) or []))
    return response


def api_aware_http_error(exc: HTTPException) -> Response | HTTPException:
    """App-wide: routing errors (404, 405) under /api/v1 never reach the blueprint's
    handlers, so the app hands them here to answer in JSON like every other API error."""
    if request.path.startswith(bp.url_prefix or "/api/v1"):
        return _http_error(exc)
    return exc


def _b64(items: list[bytes]) -> list[str]:
    return [base64.b64encode(h).decode("ascii") for h in items]


def _int_arg(
    name: str, default: int | None = None, minimum: int = 0, maximum: int = 2**53 - 1
) -> int:
    raw = request.args.get(name)
    if raw is None:
        if default is None:
            raise InvalidInput(f"query parameter {name!r} is required")
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 16 or not minimum <= int(raw) <= maximum:
        raise InvalidInput(
            f"query parameter {name!r} must be an integer from {minimum} to {maximum}, got {raw!r}"
        )
    return int(raw)


def _beyond_checkpoint(name: str, size: int, newest: int) -> int:
    """A tree size the log has not signed (yet): 404, not 400 — a read replica that lags
    behind the primary, or a client ahead of this server, asks for one in good faith."""
    if size > newest:
        raise NotFound(f"no checkpoint for {name}={size} here yet: the newest is for {newest}")
    return size


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(OPENAPI)


@bp.get("/entries/<int:seq>")
def get_entry(seq: int) -> Response:
    """The entry, its leaf hash, and an inclusion proof against the newest (or a given) checkpoint.

    With ``?size=`` the answer is a pure function of the log — the entry, the checkpoint the
    log signed at that size and the proof between them never change — so it is cached (per
    process, ``SUYUAN_PROOF_CACHE_SIZE`` answers) and marked immutable for browsers and CDNs.
    This is what a scan page's script asks for, once per entry it shows.
    """
    pinned = "size" in request.args
    if pinned:
        key = (seq, request.args["size"])
        cached = _proof_cache().get(key)
        if cached is not None:
            return _json_bytes(cached, immutable=True)
    log = reader()
    latest = log.latest_checkpoint()
    size = _beyond_checkpoint("size", _int_arg("size", latest.size, 1), latest.size)
    stored = latest if size == latest.size else log.checkpoint(size)
    entry = log.entry(seq)
    if seq >= size:
        raise InvalidInput(f"entry {seq} is not in the tree of size {size}")
    body: dict[str, Any] = {
        "seq": seq,
        "leaf_hash": entry.leaf_hash().hex(),
        "entry": canonical.parse(entry.leaf),
        "leaf": base64.b64encode(entry.leaf).decode("ascii"),
        "checkpoint": stored.note,
        "inclusion_proof": {
            "leaf_index": seq,
            "tree_size": size,
            "hashes": _b64(log.inclusion_proof(seq, size)),
        },
    }
    data = current_app.json.dumps(body).encode("utf-8")  # as jsonify writes it
    if pinned:
        _proof_cache().put(key, data)
    return _json_bytes(data, immutable=pinned)


class _LRU:
    """A small thread-safe LRU of immutable answers."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: OrderedDict[tuple[int, str], bytes] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple[int, str]) -> bytes | None:
        with self.lock:
            found = self.items.get(key)
            if found is not None:
                self.items.move_to_end(key)
            return found

    def put(self, key: tuple[int, str], value: bytes) -> None:
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > self.capacity:
                self.items.popitem(last=False)


def _proof_cache() -> _LRU:
    cache = current_app.extensions.get("suyuan_proofs")
    if cache is None:
        cache = current_app.extensions.setdefault(
            "suyuan_proofs", _LRU(int(current_app.config.get("SUYUAN_PROOF_CACHE_SIZE", 4096)))
        )
    return cache  # type: ignore[no-any-return]


def _json_bytes(data: bytes, *, immutable: bool) -> Response:
    response = Response(data, mimetype="application/json")
    response.headers["Cache-Control"] = IMMUTABLE if immutable else "no-cache"
    return response


@bp.get("/proofs/consistency")
def consistency() -> Response:
    log = reader()
    latest = log.latest_checkpoint()
    size2 = _beyond_checkpoint("to", _int_arg("to", latest.size, 1), latest.size)
    size1 = _int_arg("from", None, 1, size2)
    return jsonify(
        {
            "from": size1,
            "to": size2,
            "hashes": _b64(log.consistency_proof(size1, size2)),
            "checkpoint": log.checkpoint(size2).note,
        }
    )


@bp.get("/checkpoints")
def checkpoints() -> Response:
    log = reader()
    limit = _int_arg("limit", 50, 1, 500)
    before = _int_arg("before", 2**53 - 1, 0)
    items = log.checkpoints(before=before, limit=limit)
    return jsonify(
        {
            "checkpoints": [
                {
                    "size": c.size,
                    "root": base64.b64encode(c.checkpoint.root).decode(),
                    "created": c.created,
                    "note": c.note,
                }
                for c in items
            ],
            "next_before": items[-1].size if len(items) == limit else None,
        }
    )


@bp.get("/keys")
def keys() -> Response:
    return jsonify(
        {
            "keys": [
                {
                    "key_id": k.key_id,
                    "name": k.name,
                    "vkey": k.vkey,
                    "role": k.role,
                    "org": k.org,
                    "registered_seq": k.registered_seq,
                    "revoked_seq": k.revoked_seq,
                }
                for k in reader().registered_keys()
            ]
        }
    )


def _require_token() -> Response | None:
    """None if the request carries a valid API token, else the 401 to answer with."""
    auth = request.headers.get("Authorization", "")
    token = auth[7:].strip() if auth.startswith("Bearer ") else ""
    if token and check_token(instance().engine, token) is not None:
        return None
    response = _error(
        401, "unauthorized", "a valid API token is required: Authorization: Bearer <token>"
    )
    response.headers["WWW-Authenticate"] = 'Bearer realm="suyuan"'
    return response


def _blobs() -> FileBlobStore:
    return default_store(instance().settings.instance)


@bp.get("/blobs/<digest>")
def get_blob(digest: str) -> Response:
    """An evidence document by its SHA-256 (the file whose hash an entry carries).

    The store re-hashes the file before it is served, so an altered file is a
    500-free error, never silently served.  Served as an attachment of unknown
    type: the entry's evidence record says what it is.
    """
    store = _blobs()
    if not store.has(check_digest(digest)):
        raise NotFound(f"no document with SHA-256 {digest} in this instance's store")
    response = Response(store.get(digest), mimetype="application/octet-stream")
    response.headers["Content-Disposition"] = f'attachment; filename="{digest}.bin"'
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    response.headers["ETag"] = f'"{digest}"'
    return response


@bp.post("/blobs")
def post_blob() -> Response:
    """Store an evidence document (the request body, raw); answer with its evidence record.

    ``?name=…&media_type=…`` describe it; the record is what an entry's
    ``evidence`` list carries.  Needs an API token.
    """
    refusal = _require_token()
    if refusal is not None:
        return refusal
    data = request.get_data(cache=False)
    if not data:
        raise InvalidInput("send the document as the request body")
    name = request.args.get("name") or "document"
    media_type = request.args.get("media_type") or request.mimetype or "application/octet-stream"
    try:
        record = evidence_document(_blobs(), data, name, media_type)
    except InvalidInput as exc:  # the description is checked before anything is stored
        raise InvalidInput(f"query parameters name / media_type: {exc}") from None
    response = jsonify(record)
    response.status_code = 201
    return response


@bp.post("/entries")
def post_entries() -> Response:
    """Append signed statements (one object, or ``{"statements": [...]}``), all or nothing."""
    refusal = _require_token()
    if refusal is not None:
        return refusal
    if request.mimetype != "application/json":
        return _error(
            415,
            "unsupported_media_type",
            "send the statements as application/json, not "
            + (repr(request.mimetype) if request.mimetype else "a body without a Content-Type"),
        )
    value = canonical.parse(request.get_data(cache=False))
    if isinstance(value, dict) and set(value) == {"statements"}:
        raw = value["statements"]
        if not isinstance(raw, list) or not raw:
            raise InvalidInput('"statements" must be a non-empty list')
    else:
        raw = [value]
    if len(raw) > MAX_BATCH:
        raise InvalidInput(f"at most {MAX_BATCH} statements per request, got {len(raw)}")
    items = []
    for index, item in enumerate(raw):
        try:
            items.append(signed_statement_from_json(item))
        except Error as exc:
            raise type(exc)(f"statement {index + 1}: {exc}") from None
    log = writer()
    entries = log.append(items)
    response = jsonify(
        {
            "entries": [{"seq": e.seq, "leaf_hash": e.leaf_hash().hex()} for e in entries],
            "checkpoint": log.latest_checkpoint().note,
        }
    )
    response.status_code = 201
    return response


add_query_routes(bp)
add_paths(openapi_paths())
