"""Injected text comes out inert: markup, script URLs, script-closing text and templates that
authors put in the ledger (every free-text field), in accounts, in file names and in query
strings never run on a page; SQL in form fields, queries and API bodies is stored verbatim.

The pages are every GET route of ``app.url_map``, its parameters filled with the hostile
entries' ids, plus every link those pages lead to (a bounded crawl), for each role and for
an anonymous visitor.  One Chromium pass checks that no dialog opens on the main pages.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, text
from werkzeug.routing import BuildError

from ledger import schema
from ledger.queries import QUERIES
from tests.helpers import check_ledger
from tests.security.sitekit import (
    CLOSER,
    GTIN,
    LOT_MARKUP,
    LOT_URL,
    PAYLOAD,
    ROLES,
    SQL,
    Hostile,
    hidden_fields,
    injected,
    snapshot,
)
from tests.web.browser import chromium, live_server, new_page
from tests.web.portal import PASSWORD, csrf_token
from tests.web.support import note_json

#: Query parameters the pages read, each given hostile text (what a page might echo back).
ECHO = {
    name: PAYLOAD
    for name in (
        "q",
        "code",
        "next",
        "page",
        "source",
        "allocation",
        "project",
        "household",
        "gtin",
        "as_of",
        "format",
        "size",
        "old",
        "status",
        "kind",
    )
} | {"lot": LOT_MARKUP}
#: Paths the crawl never follows: binary downloads and the machine APIs (JSON, text).
SKIP = ("/api/", "/log/", "/static/", "/lang/", ".png", ".svg", ".pdf", ".txt", "format=")
CRAWL_LIMIT = 20  # pages per visitor found by following links


def _values(h: Hostile, name: str) -> list[str]:
    """Values for a URL parameter called ``name``: the hostile entries' ids, and text."""
    lots = [lot for _gtin, lot in h.lots]
    return {
        "seq": [str(s) for s in h.seqs.values()],
        "gtin": [GTIN],
        "lot": lots,
        "project_id": [*h.projects, PAYLOAD],
        "key_id": [*h.key_ids, PAYLOAD],
        "username": ["prod", PAYLOAD],
        "draft_id": [*h.drafts, PAYLOAD],
        "job_id": ["a" * 32, PAYLOAD],
        "name": [*sorted(QUERIES)[:3], PAYLOAD],
        "code": ["en", PAYLOAD],
        "digest": [*h.digests, PAYLOAD],
        "filename": ["site.css", PAYLOAD],
        "rest": [PAYLOAD],
        "size": [str(h.instance.reader().size())],
        "fmt": ["svg"],
    }.get(name, [PAYLOAD])


#: Which blueprints' pages each visitor walks (the public ones once, anonymously).
PORTALS = {
    None: {"public", "consumer", "auth", "i18n", "log", "api"},
    "prod": {"producer", "auth"},
    "aud": {"auditor", "officials"},
    "fin": {"officials"},
    "vill": {"officials"},
    "adm": {"admin"},
}


def _urls(h: Hostile, username: str | None) -> list[str]:
    """Every GET route of the visitor's blueprints with its parameters filled, and again
    with hostile query strings; the producer's lot pages for every hostile lot."""
    urls: list[str] = []
    adapter = h.site.app.url_map.bind("localhost")
    for rule in h.site.app.url_map.iter_rules():
        if "GET" not in (rule.methods or ()):
            continue
        if rule.endpoint.partition(".")[0] not in PORTALS[username]:
            continue
        if rule.arguments == {"gtin", "lot"}:
            fills = [{"gtin": GTIN, "lot": LOT_MARKUP}]
        else:
            fills = [{}]
            for arg in sorted(rule.arguments):
                fills = [{**f, arg: v} for f in fills for v in _values(h, arg)]
        built = []
        for fill in fills:
            try:
                built.append(adapter.build(rule.endpoint, fill))
            except (ValueError, LookupError, BuildError):  # text for an <int:…> part
                continue
        urls += built
        if built and not built[0].startswith(("/api", "/log", "/static")):
            urls.append(f"{built[0]}?{urlencode(ECHO)}")  # what a page echoes back
    if username == "prod":
        for gtin, lot in h.lots:
            query = urlencode({"gtin": gtin or "", "lot": lot})
            urls += [f"/producer/{p}?{query}" for p in ("lot", "lot/scans", "event", "recall")]
            urls += [f"/producer/transform?{query}", f"/producer/labels?{query}"]
    if username is None:
        urls += [f"/lookup?{urlencode({'code': lot})}" for _gtin, lot in h.lots]
        urls += [f"/lang/en?next={quote(u)}" for u in ("javascript:alert(1)", "/" + PAYLOAD)]
        urls += ["/lookup?code=X-ALLOC-1"]
    if username == "fin":
        urls += [f"/officials/drafts/new?allocation={quote(PAYLOAD)}"]
    return urls


def _links(page: str) -> Iterator[str]:
    from html.parser import HTMLParser

    found: list[str] = []

    class Links(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "a":
                href = dict(attrs).get("href")
                if href and href.startswith("/") and not href.startswith("//"):
                    found.append(href)

    Links().feed(page)
    yield from found


def _check(client: FlaskClient, url: str, problems: list[str]) -> str:
    response = client.get(url)
    raw = response.get_data()
    response.close()
    body = raw.decode("utf-8", "replace")
    assert response.status_code < 500, (url, response.status_code)
    if response.mimetype == "text/html":
        problems += [f"{url}: {p}" for p in injected(body)]
    elif PAYLOAD in body or "<script>" in body:
        # Hostile text outside HTML is fine only where no browser renders it as a page.
        if response.mimetype in ("image/svg+xml", "application/xhtml+xml", "text/xml"):
            problems.append(f"{url}: served hostile text as {response.mimetype}")
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    location = response.headers.get("Location", "")
    if location.lower().lstrip().startswith(("javascript:", "//", "data:")):
        problems.append(f"{url}: redirects to {location!r}")
    return body if response.mimetype == "text/html" else ""


#: The township approver reads what the auditor reads, less: the auditor's walk covers it.
VISITORS = [None, *(name for name in ROLES.values() if name != "town")]


@pytest.mark.parametrize("username", VISITORS, ids=[v or "anonymous" for v in VISITORS])
def test_no_page_runs_what_authors_wrote(hostile: Hostile, username: str | None) -> None:
    client = hostile.client(username)
    problems: list[str] = []
    seen: set[str] = set()
    queue = _urls(hostile, username)
    budget = len(queue) + CRAWL_LIMIT
    public = ("/e/", "/n/", "/01/", "/b/", "/p/", "/notices", "/lookup")
    pages = 0
    while queue and pages < budget:
        url = queue.pop(0)
        if url in seen or url.startswith("/logout"):
            continue
        seen.add(url)
        body = _check(client, url, problems)
        pages += 1
        for link in _links(body):
            if link in seen or any(s in link for s in SKIP):
                continue
            if username is None or not link.startswith(public):  # public: walked anonymously
                queue.append(link)
    assert pages > 20
    assert not problems, "\n".join(problems[:20])
    # the hostile text is on the pages, escaped: the crawl did reach it
    assert hostile.client(username).get(f"/e/{hostile.seqs['note closer']}").status_code == 200


def test_the_hostile_text_reached_the_pages_escaped(hostile: Hostile) -> None:
    """The crawl would pass vacuously if the payload never reached a page: show it does."""
    import html

    anonymous = hostile.client()
    for url in [
        f"/01/{GTIN}/10/{quote(LOT_MARKUP)}",
        f"/e/{hostile.seqs['note closer']}",
        f"/e/{hostile.seqs['recall']}",
        f"/p/{hostile.projects[0]}",
    ]:
        page = anonymous.get(url).get_data(as_text=True)
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "{{7*7}}zq" in page, url
    auditor = hostile.clients["aud"].get("/audit/").get_data(as_text=True)
    assert PAYLOAD in html.unescape(auditor) and "{{7*7}}zq" in auditor
    draft = hostile.clients["vill"].get(f"/officials/drafts/{hostile.drafts[0]}")
    assert CLOSER in html.unescape(draft.get_data(as_text=True))


def test_the_checker_finds_injections() -> None:
    """:func:`injected` is what every assertion above rests on: it must see each trick."""
    for page in [
        "<p><script>alert(1)</script></p>",
        '<p title=""><img src=x onerror=alert(2)>">',
        '<a href=" javascript:alert(1)">x</a>',
        "<p>49zq</p>",
        '<script type="application/json">{"a": "</script><script>alert(4)</script>"}</script>',
        "<div><svg/onload=alert()></div>",
    ]:
        assert injected(page), page
    assert not injected("<p>&lt;script&gt;alert(1)&lt;/script&gt;&#34;{{7*7}}zq</p>")


# --- errors that quote what was sent ----------------------------------------------------------

#: Who may post to each portal (the right role, so the form is read, not refused outright).
POSTER = {"producer": "prod", "officials": "fin", "admin": "adm", "auditor": "aud", "auth": "prod"}


def test_form_errors_quoting_input_are_escaped(hostile: Hostile) -> None:
    """Every portal form posted with hostile text in every field (and hostile ids in the URL):
    the page that explains the refusal escapes what it quotes; nothing is written."""
    clients = {name: hostile.client(name) for name in set(POSTER.values())}
    before = snapshot(hostile.instance)
    problems: list[str] = []
    posted = 0
    for rule in hostile.site.app.url_map.iter_rules():
        blueprint = rule.endpoint.partition(".")[0]
        if "POST" not in (rule.methods or ()) or blueprint not in POSTER:
            continue
        if rule.endpoint in ("auth.logout", "auth.login"):
            continue
        client = clients[POSTER[blueprint]]
        url = rule.rule
        for arg in rule.arguments:
            url = url.replace(f"<{arg}>", quote(PAYLOAD, safe=""))
        if blueprint == "producer":  # the forms of a lot
            url += "?" + urlencode({"gtin": GTIN, "lot": LOT_MARKUP})
        shown = client.get(url) if "GET" in (rule.methods or ()) else None
        form_path = url if shown is not None and shown.status_code == 200 else "/account"
        names = set(re_names(client.get(form_path).get_data(as_text=True))) | FIELDS
        names -= {"csrf_token", "edit", "confirm"}
        data: dict[str, Any] = {name: PAYLOAD for name in names}
        data.update({"csrf_token": csrf_token(client, form_path), "review": "1"})
        response = client.post(url, data=data)
        posted += 1
        assert response.status_code < 500, (url, response.status_code)
        if response.mimetype == "text/html":
            problems += [f"POST {url}: {p}" for p in injected(response.get_data(as_text=True))]
    assert posted >= 15
    assert not problems, "\n".join(problems)
    assert snapshot(hostile.instance) == before


#: Fields posted to routes that have no form page of their own (actions on a draft, a key).
FIELDS = {"reason", "note", "name", "org", "username", "display_name", "password", "amount"}


def re_names(page: str) -> list[str]:
    import re

    return re.findall(r'<(?:input|textarea|select)[^>]*\bname="([^"]+)"', page)


def test_sign_in_page_escapes_a_hostile_user_name(hostile: Hostile) -> None:
    client = hostile.client()
    token = csrf_token(client, "/login")
    response = client.post(
        f"/login?next={quote(PAYLOAD)}",
        data={"csrf_token": token, "username": PAYLOAD[:64], "password": PAYLOAD},
    )
    assert response.status_code == 400
    assert not injected(response.get_data(as_text=True))


# --- a real browser -------------------------------------------------------------------------


def test_no_dialog_opens_in_chromium(hostile: Hostile) -> None:
    started = time.monotonic()
    dialogs: list[str] = []
    with live_server(hostile.site.app) as base, chromium() as browser, new_page(browser) as page:
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        for path in [
            f"/01/{GTIN}/10/{quote(LOT_MARKUP, safe='')}",
            f"/b/{quote(LOT_URL, safe='')}",
            f"/e/{hostile.seqs['note closer']}",
            f"/e/{hostile.seqs['recall']}",
            f"/p/{hostile.projects[0]}",
        ]:
            page.goto(base + path)
            page.wait_for_load_state("load")
        page.goto(base + "/login")
        page.fill("#username", "aud")
        page.fill("#password", PASSWORD)
        page.click("form.card button[type=submit], main form button[type=submit]")
        page.wait_for_url(base + "/audit/")
        page.goto(base + "/audit/anomalies")
        page.goto(base + f"/officials/drafts/{hostile.drafts[0]}")
        page.wait_for_timeout(300)  # verify.js and friends have run
    assert dialogs == []
    assert time.monotonic() - started < 15


# --- SQL injection ------------------------------------------------------------------------------


@pytest.mark.parametrize("sql", SQL, ids=["drop", "or", "nul"])
def test_sql_in_a_note_is_stored_verbatim(hostile: Hostile, sql: str) -> None:
    """Through the API (a token, a signed note): the leaf holds the text exactly; a NUL is
    refused by the canonical-JSON rules or kept — never truncated; the database survives."""
    site = hostile.site
    secret = _token(hostile)
    text_ = f"note {sql}"
    body = note_json(site.log, text_, site.admin)
    response = site.app.test_client().post(
        "/api/v1/entries", json=body, headers={"Authorization": f"Bearer {secret}"}
    )
    if "\x00" in sql and response.status_code != 201:
        assert response.status_code == 400 and response.get_json()["code"]
    else:
        assert response.status_code == 201, response.get_json()
        seq = response.get_json()["entries"][0]["seq"]
        leaf = site.instance.reader().entry(seq)
        assert leaf.body["text"] == text_
        fetched = site.app.test_client().get(f"/api/v1/entries/{seq}").get_json()
        assert json.dumps(text_)[1:-1] in json.dumps(fetched)
    _intact(hostile)


def _token(h: Hostile) -> str:
    from ledger.tokens import create_token

    name = f"sql-{time.monotonic_ns()}"
    return str(create_token(h.instance.engine, name))


def _intact(h: Hostile) -> None:
    with h.instance.engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(schema.entries)).scalar_one()
        tables = set(
            conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'")).scalars()
        )
    assert count == h.instance.reader().size()
    assert {"entries", "users", "drafts", "checkpoints"} <= tables
    check_ledger(h.instance.engine)


def test_sql_in_portal_forms_is_stored_verbatim(hostile: Hostile) -> None:
    """A producer's event note and a recall reason carrying SQL reach the leaf exactly."""
    site = hostile.site
    prod = hostile.client("prod")
    log = site.instance.reader()
    for sql in SQL[:2]:
        response = prod.post(
            "/producer/event",
            data={
                "csrf_token": csrf_token(prod, "/producer/event"),
                "batch": f"|{LOT_URL}",
                "step": "shipping:in_transit",
                "time": _minutes_ago(),
                "read_point": sql,
                "note": sql,
            },
        )
        assert response.status_code == 302, response.get_data(as_text=True)[:2000]
        entry = log.entry(log.size() - 1)
        assert entry.body["note"] == sql and entry.body["read_point"] == sql
    _intact(hostile)


def _minutes_ago() -> str:
    from datetime import datetime, timedelta

    from tests.security.sitekit import CHINA

    return (datetime.now(CHINA) - timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M")


@pytest.mark.parametrize("sql", SQL, ids=["drop", "or", "nul"])
def test_sql_in_searches_finds_nothing(hostile: Hostile, sql: str) -> None:
    """The lookup, the query API and the audit pages treat SQL as a code that matches nothing."""
    before = snapshot(hostile.instance)
    anonymous = hostile.client()
    assert anonymous.get("/lookup", query_string={"code": sql}).status_code == 404
    for path, query in [
        ("/api/v1/batches/view", {"gtin": GTIN, "lot": sql}),
        ("/api/v1/batches/view", {"lot": sql}),
        ("/api/v1/projects/view", {"id": sql}),
        ("/api/v1/funds/trail", {"source": sql}),
        ("/api/v1/households/view", {"code": sql}),
    ]:
        response = anonymous.get(path, query_string=query)
        assert response.status_code in (400, 404), (path, response.status_code)
        assert response.get_json()["error"]["code"] in ("invalid_input", "not_found")
    for path, name in [("/audit/trail", "source"), ("/audit/disbursements", "allocation")]:
        response = hostile.clients["aud"].get(path, query_string={name: sql})
        assert response.status_code in (200, 400, 404), (path, response.status_code)
        assert "/e/" not in response.get_data(as_text=True).partition("<main>")[2], path
    payments = anonymous.get("/api/v1/funds/disbursements", query_string={"allocation": sql})
    assert payments.status_code == 200, payments.get_json()
    assert not [v for v in payments.get_json().values() if isinstance(v, list) and v]
    batches = anonymous.get("/api/v1/batches", query_string={"producer": sql})
    assert batches.status_code == 200, batches.get_json()
    assert not [v for v in batches.get_json().values() if isinstance(v, list) and v]
    assert snapshot(hostile.instance) == before
    _intact(hostile)


def test_recall_review_carries_sql_and_markup_back_verbatim(hostile: Hostile) -> None:
    """The recall confirmation page posts the reason back in a hidden field: it must come back
    exactly as typed (escaped in the page, unescaped by the browser)."""
    prod = hostile.client("prod")
    path = f"/producer/recall?lot={quote(LOT_URL)}"
    reason = f"{SQL[0]} {PAYLOAD}"
    shown = prod.post(
        path, data={"csrf_token": csrf_token(prod, path), "review": "1", "reason": reason}
    )
    assert shown.status_code == 200
    assert not injected(shown.get_data(as_text=True))
    assert hidden_fields(shown.get_data(as_text=True))["reason"] == reason
    assert urlsplit(path).path == "/producer/recall"
