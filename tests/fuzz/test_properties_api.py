"""Query strings of the ``/api/v1`` read endpoints as arbitrary text: never a 5xx, and every
refusal is JSON ``{"error": {"code", "message"}}`` with a machine-readable code.

The parameters are those the OpenAPI document lists for each GET operation (``size``,
``to``, ``from``, ``limit``, ``before``, every domain query's parameters, ``format``),
plus unknown and repeated names, with values drawn as any Unicode text (control
characters, non-ASCII digits, huge numbers, lone surrogates as UTF-8 cannot carry
them) or as raw percent-encoded bytes that are not UTF-8.  The site has the demo data
set, so the values sometimes name real things (the demo's lots, sources, codes).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import TestResponse

import web.api  # noqa: F401  (adds the domain queries' paths to the document)
from ledger.demo import load_demo
from tests.web.support import ModuleSite, make_site
from web.openapi import OPENAPI

_CODE = re.compile(r"[a-z][a-z0-9_]*")
#: GET operations whose path has no parameter but ``{seq}``/``{digest}``, with their query names.
READS = sorted(
    (path, tuple(p["name"] for p in op.get("parameters", []) if p["in"] == "query"))
    for path, item in OPENAPI["paths"].items()
    for method, op in item.items()
    if method == "get" and path != "/openapi.json"
)
#: Values a client might plausibly send, next to arbitrary text.
INTERESTING = [
    "",
    "0",
    "1",
    "-1",
    "+5",
    "1.5",
    "1e3",
    "0x10",
    "9" * 17,
    "9007199254740992",
    "２",
    "²",
    "٣",
    "NaN",
    "Infinity",
    "null",
    "true",
    "[]",
    "2020-02-30",
    "2021-01-01",
    "9999-12-31",
    "csv",
    "xlsx",
    "json",
    "L-2024-01",
    "06901234567892",
    "../../etc/passwd",
    "%00",
    "\x00",
    "<script>",
    "' OR 1=1 --",
    "x" * 600,
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleSite]:
    with make_site(tmp_path_factory.mktemp("api-properties")) as site:
        load_demo(site.instance, households=20)
        yield site


def check(response: TestResponse, url: str) -> None:
    status = response.status_code
    assert status < 500, (url, status, response.get_data()[:300])
    if status >= 400:
        assert response.mimetype == "application/json", (url, status, response.mimetype)
        body = response.get_json()
        assert isinstance(body, dict) and set(body) == {"error"}, (url, body)
        error = body["error"]
        assert isinstance(error["code"], str) and _CODE.fullmatch(error["code"]), (url, body)
        assert isinstance(error["message"], str) and error["message"].strip(), (url, body)
    else:
        assert status == 200, (url, status)


values = st.one_of(st.sampled_from(INTERESTING), st.text(max_size=40))


@st.composite
def requests(draw: st.DrawFn) -> str:
    """A URL: one read operation, its path parameter and a query string of drawn pairs."""
    chosen: tuple[str, tuple[str, ...]] = draw(st.sampled_from(READS))
    path, names = chosen
    if "{seq}" in path:
        seq = draw(st.one_of(st.integers(0, 2**70).map(str), values.filter(bool)))
        path = path.replace("{seq}", urllib.parse.quote(seq, safe=""))
    if "{digest}" in path:
        digest = draw(st.one_of(st.text("0123456789abcdef", min_size=64, max_size=64), values))
        path = path.replace("{digest}", urllib.parse.quote(digest or "x", safe=""))
    pool = [*names, "format", "lang", "x"] if names else ["size", "x"]
    pairs = draw(st.lists(st.tuples(st.sampled_from(pool), values), max_size=5))
    query = urllib.parse.urlencode(pairs, errors="surrogatepass")
    if draw(st.booleans()):
        junk = draw(st.binary(max_size=12))
        query += "&" + "".join(f"%{b:02X}" if b > 0x7E or b < 0x21 else chr(b) for b in junk)
    return "/api/v1" + path + ("?" + query if query else "")


@settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(url=requests())
def test_read_endpoints_never_fail_on_query_text(demo: ModuleSite, url: str) -> None:
    check(demo.client.get(url), url)


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(raw=st.binary(max_size=60), path=st.sampled_from([p for p, _ in READS if "{" not in p]))
def test_raw_query_bytes(demo: ModuleSite, raw: bytes, path: str) -> None:
    """The query string exactly as bytes on the wire (no client-side encoding)."""
    environ: dict[str, Any] = {"QUERY_STRING": raw.decode("latin-1")}
    url = "/api/v1" + path
    check(demo.client.get(url, environ_overrides=environ), f"{url}?{raw!r}")
