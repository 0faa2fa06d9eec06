"""The site's own handling of scan paths: a lot's label URL (``gs1.batch_path``) through
what a browser does to a path (dot segments, WHATWG URL) and the site's router
(``web.consumer``'s ``/01/<gtin>/10/<path:lot>`` and ``/b/<path:lot>`` rules, with the
percent-decoding WSGI applies), and a raw fuzzed path through the router and the checks the
product views make (``normalize_gtin``, ``validate_lot``).

Invariants: every valid (GTIN, lot) pair's label path survives a browser unchanged and
routes to the same pair; a raw path the router sends to a product view is either refused by
the view's checks with a ledger.errors.Error or names a valid lot whose label path routes
back to it.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from flask import Flask
from werkzeug.exceptions import HTTPException
from werkzeug.routing import MapAdapter

from ledger.domain import gs1
from ledger.errors import Error
from web import consumer

_APP = Flask(__name__)
_APP.register_blueprint(consumer.bp)
_ROUTER: MapAdapter = _APP.url_map.bind("localhost")
_GTINS = (None, "09506000134352", "00000012345670")
_DOTS = {".", "..", "%2e", ".%2e", "%2e.", "%2e%2e"}


def _route(raw_path: str) -> tuple[str, dict[str, str]] | None:
    """What the site's router does with a request path as sent (percent-encoded)."""
    path = unquote_to_bytes(raw_path).decode("utf-8", "replace")  # WSGI PATH_INFO, as Flask
    try:
        endpoint, args = _ROUTER.match(path, method="GET")
    except HTTPException:
        return None
    return str(endpoint), {k: str(v) for k, v in args.items()}


def _view_checks(endpoint: str, args: dict[str, str]) -> tuple[str | None, str] | None:
    """The product views' own checks; None for other pages."""
    if endpoint == "consumer.product":
        return gs1.normalize_gtin(args["gtin"]), gs1.validate_lot(args["lot"])
    if endpoint == "consumer.product_short":
        return None, gs1.validate_lot(args["lot"])
    return None


def _label_routes_back(gtin: str | None, lot: str) -> None:
    path = gs1.batch_path(gtin, lot)
    segments = path.split("/")
    assert not any(s.lower() in _DOTS for s in segments), f"a browser rewrites {path!r}"
    routed = _route(path)
    assert routed is not None, f"label path {path!r} does not route"
    assert _view_checks(*routed) == (gtin, lot), (path, routed)


def one(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    try:
        lot = gs1.validate_lot(text)
    except Error as exc:
        assert str(exc)
    else:
        for gtin in _GTINS:
            _label_routes_back(gtin, lot)
    if not text.startswith("/"):
        text = "/" + text
    routed = _route(text.split("?", 1)[0].split("#", 1)[0])
    if routed is None:
        return
    try:
        found = _view_checks(*routed)
    except Error as exc:
        assert str(exc)
        return
    if found is not None:
        _label_routes_back(*found)
