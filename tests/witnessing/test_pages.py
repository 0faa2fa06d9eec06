"""Scan pages show who witnessed the checkpoint they verify against (web/consumer.py, the panel).

On the small demo ledger with two real witnesses (W1's app over HTTP): the server states
the count of cosignatures it verified (no JavaScript needed); verify.js checks each
cosignature itself in Chromium and counts only those that verify; a tampered line is a
warning, never a failure of the log's signature or proofs; none is "not yet witnessed".
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from flask import render_template_string
from playwright.sync_api import Browser, Page, Route
from sqlalchemy import select, text

from ledger import demo, schema, witnessing
from ledger.domain import gs1
from ledger.domain.batches import batches
from tests.helpers import check_ledger
from tests.web.browser import live_server, new_page
from tests.web.support import ModuleSite, add_notes, make_site
from tests.witnessing.support import RunningWitness, running_witness
from web.consumer import page_cache

EN = {"Accept-Language": "en"}
NAMES = ("witness.a.example/w1", "witness.b.example/w2")


@dataclass
class Witnessed:
    site: ModuleSite
    witnesses: list[RunningWitness]
    product: str  # a product page's path

    @property
    def log(self) -> Any:
        return self.site.log

    def page(self, path: str | None = None) -> str:
        response = self.site.app.test_client().get(path or self.product, headers=EN)
        assert response.status_code == 200
        return response.get_data(as_text=True)


@pytest.fixture(scope="module")
def witnessed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Witnessed]:
    root = tmp_path_factory.mktemp("witnessed-pages")
    with make_site(root) as site, ExitStack() as stack:
        demo.load_demo(site.instance, households=20)
        site.app.config["SUYUAN_SCAN_FLUSH_THREAD"] = False
        running = [
            stack.enter_context(running_witness(root / f"w{i}", site.log.verifier.vkey, name))
            for i, name in enumerate(NAMES)
        ]
        for witness in running:
            witnessing.add_witness(site.log.engine, witness.vkey, witness.url)
        result = witnessing.witness_round(site.log)
        assert [o.status for o in result.outcomes] == ["cosigned", "cosigned"], result.line()
        with site.instance.engine.connect() as conn:
            gtin, lot = conn.execute(
                select(batches.c.gtin, batches.c.lot).order_by(batches.c.registered_seq)
            ).first()  # type: ignore[misc]
        yield Witnessed(site, running, gs1.batch_path(gtin or None, lot))


def panel_tag(page: str) -> str:
    found = re.search(r"<section class=\"verify-panel\"[^>]*>", page)
    assert found, "no verification panel"
    return found.group(0)


def attr(tag: str, name: str) -> str | None:
    found = re.search(rf"{name}=(\"[^\"]*\"|'[^']*')", tag)
    return None if found is None else html.unescape(found.group(1)[1:-1])


def server_lines(page: str) -> list[str]:
    """The panel's no-JavaScript lines: what the server itself checked."""
    return [html.unescape(x) for x in re.findall(r'<p class="verify-server[^"]*">(.*?)</p>', page)]


# --- without JavaScript: what the server states -------------------------------------------


def test_scan_page_states_the_witnessed_count(witnessed: Witnessed) -> None:
    log = witnessed.log
    chosen = witnessing.latest_witnessed(log.engine)
    assert chosen is not None
    page = witnessed.page()
    tag = panel_tag(page)
    listed = json.loads(attr(tag, "data-witnesses") or "[]")
    assert listed == [{"name": w.name, "vkey": w.vkey} for w in witnessed.witnesses]
    assert attr(tag, "data-checkpoint") == witnessing.cosigned_note(log, chosen)
    assert attr(tag, "data-witnessed-server") == "2"
    said = server_lines(page)
    assert f"Witnessed by 2 independent parties: {NAMES[0]}, {NAMES[1]}." in said
    assert f"included in the signed log of {chosen.size} entries" in said[0]
    for witness in witnessed.witnesses:  # the keys, to compare with what the witnesses publish
        assert f"{witness.name}: <code>{witness.vkey}</code>" in page
    assert "check FAILED" not in page


def test_pages_prefer_a_witnessed_checkpoint_that_covers_them(witnessed: Witnessed) -> None:
    log = witnessed.log
    before = witnessing.latest_witnessed(log.engine)
    assert before is not None
    add_notes(log, witnessed.site.admin, 2, prefix="after the witnesses")
    latest = log.latest_checkpoint()
    assert latest.size == before.size + 2
    # the product's entries are all older: still verified against the witnessed checkpoint
    tag = panel_tag(witnessed.page())
    assert attr(tag, "data-witnessed-server") == "2"
    assert attr(tag, "data-checkpoint") == witnessing.cosigned_note(log, before)
    # an entry newer than every witnessed checkpoint: the newest, not yet witnessed
    from web.consumer import witnessed_checkpoint

    newest = {latest.size - 1: log.entry(latest.size - 1)}
    with witnessed.site.app.app_context():
        chosen, shown = witnessed_checkpoint(log, latest, newest)
    assert chosen == latest and shown["witnessed"] == [] and shown["note"] is None
    assert len(shown["witnesses"]) == 2
    # the witnesses catch up: the page follows at once (the page cache keys on witnessing)
    witnessing.witness_round(log)
    tag = panel_tag(witnessed.page())
    assert attr(tag, "data-checkpoint") == witnessing.cosigned_note(log, latest)
    assert f"signed log of {latest.size} entries" in html.unescape(witnessed.page())
    check_ledger(log.engine)


@pytest.fixture
def tampered(witnessed: Witnessed) -> Iterator[str]:
    """Witness 1's stored cosignature line with one signature bit changed; restored after."""
    log = witnessed.log
    chosen = witnessing.latest_witnessed(log.engine)
    assert chosen is not None
    key_id = witnessed.witnesses[0].verifier.key_id
    c = schema.cosignatures.c
    where = (c.size == chosen.size) & (c.key_id == key_id)
    with log.engine.begin() as conn:
        line = conn.execute(select(c.line).where(where)).scalar_one()
        head, _, b64 = line.rstrip("\n").rpartition(" ")
        raw = bytearray(base64.b64decode(b64))
        raw[30] ^= 0x01  # in the Ed25519 signature (after key ID and timestamp)
        bad = f"{head} {base64.b64encode(bytes(raw)).decode()}\n"
        conn.execute(schema.cosignatures.update().where(where).values(line=bad))
    # Built pages are cached until the ledger or the witnessing changes; a row edited behind
    # the log's back changes neither, so start from a cold cache (as after a restart).
    page_cache(witnessed.site.app).clear()
    try:
        yield key_id
    finally:
        with log.engine.begin() as conn:
            conn.execute(schema.cosignatures.update().where(where).values(line=line))
        page_cache(witnessed.site.app).clear()


def test_a_tampered_cosignature_is_not_counted_by_the_server(
    witnessed: Witnessed, tampered: str
) -> None:
    page = witnessed.page()
    tag = panel_tag(page)
    assert attr(tag, "data-witnessed-server") == "1"
    said = server_lines(page)
    assert f"Witnessed by 1 independent party: {NAMES[1]}." in said
    warning = f"Warning: the cosignature of witness {tampered} does not check out, so it is not"
    assert f"{warning} counted." in said
    assert "check FAILED" not in page  # the log's signature and proofs are fine


def test_not_yet_witnessed_is_said_neutrally(witnessed: Witnessed) -> None:
    log = witnessed.log
    with log.engine.begin() as conn:
        saved = [dict(r) for r in conn.execute(select(schema.cosignatures)).mappings()]
        conn.execute(schema.cosignatures.delete())
    try:
        page = witnessed.page()
        tag = panel_tag(page)
        assert attr(tag, "data-witnessed-server") == "0"
        assert attr(tag, "data-checkpoint") is None  # the browser reads /log/checkpoint
        assert len(json.loads(attr(tag, "data-witnesses") or "[]")) == 2
        said = server_lines(page)
        assert "Not yet witnessed by an independent party." in said
        assert "Witnessed by" not in " ".join(said) and "check FAILED" not in page
        assert said[0].startswith("Checked by the server: included")
    finally:
        with log.engine.begin() as conn:
            conn.execute(schema.cosignatures.insert(), saved)


def test_witness_names_and_keys_are_escaped(witnessed: Witnessed) -> None:
    evil = "w.example/<script>alert(1)</script>"
    template = (
        '{% from "_verify_panel.html" import verify_panel %}'
        "{{ verify_panel([1], vkey, server_checked=checked) }}"
    )
    checked = {
        "size": 5,
        "error": None,
        "witnesses": [{"name": evil, "vkey": evil + "+00000000+AQ=="}],
        "witnessed": [evil],
        "witness_warnings": [evil + "+00000000"],
        "note": "x\n\n— y z'\"<\n",
    }
    app = witnessed.site.app
    with app.test_request_context("/", headers=EN):
        out = render_template_string(template, vkey=witnessed.log.verifier.vkey, checked=checked)
    assert "<script>alert" not in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    tag = panel_tag(out)
    assert attr(tag, "data-checkpoint") == checked["note"]
    assert json.loads(attr(tag, "data-witnesses") or "")[0]["name"] == evil


# --- in Chromium: verify.js checks each cosignature itself ---------------------------------


def outcome(page: Page) -> dict[str, str]:
    page.wait_for_function(
        "() => { const el = document.querySelector('[data-verify-panel]');"
        " return el && el.dataset.verifyStatus !== 'pending'; }",
        timeout=20_000,
    )
    panel = page.locator("[data-verify-panel]")
    found = {
        name: panel.get_attribute(f"data-{name}") or ""
        for name in ("verify-status", "verify-reason", "verify-size", "verify-backend",
                     "witnessed", "witnessed-by")
    }  # fmt: skip
    found["detail"] = panel.locator("[data-verify-detail]").inner_text()
    found["warnings"] = " | ".join(panel.locator(".verify-witness-bad").all_inner_texts())
    return found


@pytest.fixture(scope="module")
def server(witnessed: Witnessed) -> Iterator[str]:
    with live_server(witnessed.site.app) as base:
        yield base


def rewrite_page(page: Page, path: str, change: Any) -> None:
    def handler(route: Route) -> None:
        response = route.fetch()
        route.fulfill(response=response, body=change(response.text()))

    page.route(f"**{path}", handler)


@pytest.mark.browser
def test_the_browser_counts_the_cosignatures_it_verified(
    witnessed: Witnessed, server: str, browser: Browser
) -> None:
    chosen = witnessing.latest_witnessed(witnessed.log.engine)
    assert chosen is not None
    with new_page(browser) as page:
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.goto(server + witnessed.product)
        result = outcome(page)
    assert not problems, problems
    assert result["verify-status"] == "verified", result
    assert result["verify-size"] == str(chosen.size)
    assert result["witnessed"] == "2"
    assert result["witnessed-by"].split() == [w.verifier.key_id for w in witnessed.witnesses]
    assert f"Witnessed by 2 independent parties: {NAMES[0]}, {NAMES[1]}." in result["detail"]
    assert result["warnings"] == ""


def _flip_in_page(body: str, name: str) -> str:
    """Change one signature bit of ``name``'s cosignature inside the page's data-checkpoint."""
    found = re.search(rf"— {re.escape(name)} ([A-Za-z0-9+/=]+)\n", body)
    assert found, f"no cosignature line of {name} in the page"
    raw = bytearray(base64.b64decode(found.group(1)))
    raw[-1] ^= 0x01
    return body.replace(found.group(1), base64.b64encode(bytes(raw)).decode(), 1)


@pytest.mark.browser
@pytest.mark.parametrize("backend", ["webcrypto", "noble"])
def test_a_tampered_cosignature_is_not_counted_in_the_browser(
    witnessed: Witnessed, server: str, browser: Browser, backend: str
) -> None:
    with new_page(browser) as page:
        if backend == "noble":  # a browser without Ed25519 in WebCrypto
            page.add_init_script(
                """(() => {
                  const subtle = crypto.subtle, importKey = subtle.importKey.bind(subtle);
                  subtle.importKey = (format, key, alg, ...rest) =>
                    (alg && (alg === 'Ed25519' || alg.name === 'Ed25519'))
                      ? Promise.reject(new DOMException('Unrecognized name.', 'NotSupportedError'))
                      : importKey(format, key, alg, ...rest);
                })();"""
            )
        rewrite_page(page, witnessed.product, lambda body: _flip_in_page(body, NAMES[0]))
        page.goto(server + witnessed.product)
        result = outcome(page)
    # the server said 2 (it saw the untampered page); the browser counts what verifies
    assert result["verify-status"] == "verified", result
    assert result["verify-backend"] == backend
    assert result["witnessed"] == "1"
    assert result["witnessed-by"] == witnessed.witnesses[1].verifier.key_id
    assert f"Witnessed by 1 independent party: {NAMES[1]}." in result["detail"]
    key_id = witnessed.witnesses[0].verifier.key_id
    assert f"the cosignature of witness {key_id} does not check out" in result["warnings"]


@pytest.mark.browser
def test_no_cosignature_reads_not_yet_witnessed(
    witnessed: Witnessed, server: str, browser: Browser
) -> None:
    def strip(body: str) -> str:
        for name in NAMES:
            body = re.sub(rf"— {re.escape(name)} [A-Za-z0-9+/=]+\n", "", body)
        return body

    with new_page(browser) as page:
        rewrite_page(page, witnessed.product, strip)
        page.goto(server + witnessed.product)
        result = outcome(page)
    assert result["verify-status"] == "verified", result
    assert result["witnessed"] == "0"
    assert "Not yet witnessed by an independent party" in result["detail"]
    assert "Witnessed by" not in result["detail"] and result["warnings"] == ""


@pytest.mark.browser
def test_a_forged_log_signature_still_fails(
    witnessed: Witnessed, server: str, browser: Browser
) -> None:
    """Cosignatures do not stand in for the log's signature: a changed root fails the panel."""

    def change_root(body: str) -> str:
        found = re.search(r'data-checkpoint="([^"]*)"', body)
        assert found
        lines = html.unescape(found.group(1)).split("\n")
        raw = bytearray(base64.b64decode(lines[2]))
        raw[0] ^= 1
        lines[2] = base64.b64encode(bytes(raw)).decode()
        return body.replace(found.group(1), html.escape("\n".join(lines)), 1)

    with new_page(browser) as page:
        rewrite_page(page, witnessed.product, change_root)
        page.goto(server + witnessed.product)
        result = outcome(page)
    assert result["verify-status"] == "failed"
    assert "does not verify" in result["verify-reason"]
    assert result["witnessed"] == ""


def test_ledger_still_verifies(witnessed: Witnessed) -> None:
    with witnessed.log.engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM cosignatures")).scalar_one() >= 2
    check_ledger(witnessed.log.engine)
