"""Pages for people: ``/``, ``/e/<seq>``, ``/healthz``, and the headers every response carries."""

from __future__ import annotations

import html
import json
import re

import pytest

from tests.conftest import Site
from tests.helpers import check_ledger, new_signer
from tests.web.support import add_notes, checked, register, served_verifier, statement


def test_front_page_shows_the_log(site: Site) -> None:
    log = site.log
    register(log, site.admin, "coop1")
    add_notes(log, site.admin, 3)
    client = site.app.test_client()
    response = client.get("/")
    assert response.status_code == 200
    assert response.content_type == "text/html; charset=utf-8"
    page = response.get_data(as_text=True)
    latest = log.latest_checkpoint()
    assert "<strong>5</strong>" in page
    assert html.escape(latest.note.splitlines()[2]) in page  # the root line of the checkpoint
    for key in log.registered_keys():
        assert key.key_id in page
    assert 'href="/e/4"' in page  # the newest entry


def test_entry_page_shows_kind_leaf_hash_and_how_to_verify(site: Site) -> None:
    log = site.log
    [entry] = add_notes(log, site.admin, 1, prefix="第一批 first lot")
    client = site.app.test_client()
    response = client.get(f"/e/{entry.seq}")
    assert response.status_code == 200
    assert response.content_type == "text/html; charset=utf-8"
    page = html.unescape(response.get_data(as_text=True))
    assert "<code>note</code>" in page
    assert entry.leaf_hash().hex() in page
    assert f"suyuan verify --url http://localhost/log --vkey '{log.verifier.vkey}'" in page
    assert "第一批 first lot 0" in page
    assert entry.time in page
    assert site.admin.verifier.key_id in page
    # the inclusion proof shown is for the newest checkpoint
    verifier = served_verifier(client)
    assert checked(log.latest_checkpoint().note, verifier).size == 2
    assert log.latest_checkpoint().note.strip() in page


def test_entry_page_escapes_what_authors_wrote(site: Site) -> None:
    log = site.log
    hostile = "<script>alert(1)</script> & \"quoted\" 'single' <img src=x onerror=alert(2)>"
    [entry] = log.append([statement(log, "note", {"text": hostile}, site.admin)])
    client = site.app.test_client()
    raw = client.get(f"/e/{entry.seq}").get_data(as_text=True)
    assert not re.search(r'<script(?![^>]*\bsrc="/static/)', raw) and "<img" not in raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in raw
    assert "&lt;img src=x onerror=alert(2)&gt;" in raw
    assert json.dumps(hostile, ensure_ascii=False) in html.unescape(raw)
    check_ledger(site.instance.engine)


def test_front_page_escapes_key_organisations(site: Site) -> None:
    log = site.log
    body = {
        "name": "evil",
        "vkey": new_signer("evil").verifier.vkey,
        "role": "producer",
        "org": "<b onmouseover=alert(3)>Co-op</b>",
    }
    log.append([statement(log, "key.registered", body, site.admin)])
    raw = site.app.test_client().get("/").get_data(as_text=True)
    assert "<b onmouseover" not in raw
    assert "&lt;b onmouseover=alert(3)&gt;Co-op&lt;/b&gt;" in raw


@pytest.mark.parametrize("seq", ["999999", "2", "99999999999999999999999999"])
def test_missing_entry_is_a_404_page(site: Site, seq: str) -> None:
    add_notes(site.log, site.admin, 1)  # size 2: seq 2 is the first that does not exist
    response = site.app.test_client().get(f"/e/{seq}")
    assert response.status_code == 404
    assert response.content_type == "text/html; charset=utf-8"
    page = response.get_data(as_text=True)
    assert "<h1>404</h1>" in page
    assert f"no entry {seq}" in page


def test_healthz(site: Site) -> None:
    add_notes(site.log, site.admin, 4)
    response = site.app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.content_type == "application/json"
    body = response.get_json()
    latest = site.log.latest_checkpoint()
    assert body == {"status": "ok", "size": 5, "checkpoint_time": latest.created}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", body["checkpoint_time"])


@pytest.mark.parametrize(
    "url",
    [
        "/",
        "/e/0",
        "/e/999",
        "/healthz",
        "/nope",
        "/log/checkpoint",
        "/log/vkey",
        "/log/tile/0/000.p/1",
        "/log/tile/0/bad",
        "/api/v1/keys",
        "/api/v1/entries/999",
        "/api/v1/openapi.json",
    ],
)
def test_security_headers_everywhere(site: Site, url: str) -> None:
    response = site.app.test_client().get(url)
    headers = response.headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    csp = {
        d.strip().split(" ", 1)[0]: d.strip().split(" ", 1)[1:]
        for d in headers["Content-Security-Policy"].split(";")
    }
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["default-src"] == ["'self'"]
    assert "unsafe-inline" not in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
