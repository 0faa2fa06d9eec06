"""web/static/verify.js in Chromium: the published vectors, the panel end to end, and the no-JS page.

(a) Unit tests run inside the browser with ``page.evaluate`` on a page of the
    live server that imports verify.js: RFC 9162 inclusion and consistency
    vectors, the signed-note vectors on both Ed25519 backends (WebCrypto and the
    vendored @noble/ed25519), and proofs made by ledger.merkle for every small size.
(b) End to end: ``/e/<seq>`` verifies; every kind of tampering (proof,
    checkpoint, vkey, leaf bytes, what the page shows, the label's code, the
    log's history across visits) ends ``failed``; nothing leaves it ``pending``.
(c) Without JavaScript the page says what the server checked.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, render_template_string, request
from playwright.sync_api import Browser, Page, Request, Route
from sqlalchemy import text

from ledger import merkle
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.note import sign_note
from tests import format_example
from tests.conftest import Site
from tests.helpers import ORIGIN, REPO, VECTORS, new_signer
from tests.web.browser import chromium, live_server, new_page
from tests.web.support import ModuleSite, add_notes, make_site, register

STATIC = REPO / "web" / "static"
VENDOR = STATIC / "vendor"

PANEL_PAGE = """{% extends "base.html" %}
{% from "_verify_panel.html" import verify_panel %}
{% block main %}{{ verify_panel(seqs, vkey, expect=expect, hash_prefix=hash_prefix,
   hash_seq=hash_seq, server_checked=None) }}{% endblock %}"""


# ---------------------------------------------------------------------------
# fixtures: one log, one live server and one Chromium for the module


def _prepare(app: Flask) -> None:
    """Add ``/_test/panel?spec=<json>`` (before the app serves its first request).

    It renders the panel with any arguments: another vkey, expectations the log
    does not hold, many entries.
    """

    def panel() -> str:
        spec = json.loads(request.args["spec"])
        spec.setdefault("expect", None)
        spec.setdefault("hash_prefix", None)
        spec.setdefault("hash_seq", None)
        return render_template_string(PANEL_PAGE, **spec)

    app.add_url_rule("/_test/panel", "test_panel", panel)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleSite]:
    with make_site(tmp_path_factory.mktemp("verify-js")) as made:
        coop = register(made.log, made.admin, "coop1")
        add_notes(made.log, coop, 5, batch=2, prefix="赤松茸 lot")
        _prepare(made.app)
        yield made


@pytest.fixture(scope="module")
def server(shared: ModuleSite) -> Iterator[str]:
    with live_server(shared.app) as base:
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with new_page(browser) as opened:
        yield opened


# ---------------------------------------------------------------------------
# helpers


def outcome(page: Page, selector: str = "[data-verify-panel]") -> dict[str, str]:
    """Wait until the panel leaves ``pending``; return its status, reason and texts ("" if absent)."""
    page.wait_for_function(
        "sel => { const el = document.querySelector(sel);"
        " return el && el.dataset.verifyStatus !== 'pending'; }",
        arg=selector,
        timeout=20_000,
    )
    panel = page.locator(selector)
    found = {
        name: panel.get_attribute(f"data-verify-{name}") or ""
        for name in ("status", "error", "reason", "size", "signer", "backend")
    }
    found["headline"] = panel.locator("[data-verify-headline]").inner_text()
    found["detail"] = panel.locator("[data-verify-detail]").inner_text()
    return found


def panel_url(base: str, **spec: Any) -> str:
    from urllib.parse import quote

    return f"{base}/_test/panel?spec={quote(json.dumps(spec))}"


def rewrite_json(page: Page, pattern: str, change: Callable[[dict[str, Any]], None]) -> list[str]:
    """Route ``pattern`` through ``change`` (edits the JSON answer in place); return the URLs seen."""
    seen: list[str] = []

    def handler(route: Route) -> None:
        seen.append(route.request.url)
        response = route.fetch()
        body = response.json()
        change(body)
        route.fulfill(response=response, body=json.dumps(body))

    page.route(pattern, handler)
    return seen


def rewrite_text(page: Page, pattern: str, change: Callable[[str], str]) -> None:
    def handler(route: Route) -> None:
        response = route.fetch()
        route.fulfill(response=response, body=change(response.text()))

    page.route(pattern, handler)


def requested(page: Page) -> list[str]:
    urls: list[str] = []

    def note(req: Request) -> None:
        urls.append(req.url)

    page.on("request", note)
    return urls


def flip(b64: str, index: int = 0) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def import_verify(page: Page, base: str) -> None:
    page.goto(f"{base}/")
    page.evaluate("async () => { window.V = await import('/static/verify.js'); }")


# ---------------------------------------------------------------------------
# (a) unit tests in the browser


def _vectors(kind: str) -> list[dict[str, Any]]:
    files = sorted((VECTORS / "merkle" / kind).rglob("*.json"))
    assert len(files) >= 50, f"published {kind} vectors missing under {VECTORS}"
    out = []
    for path in files:
        data = json.loads(path.read_text(encoding="utf-8"))
        # sizes up to 2**64-1 do not survive a JS number: pass them as text, the harness makes BigInts
        for key in ("leafIdx", "treeSize", "size1", "size2"):
            if key in data:
                data[key] = str(data[key])
        data["name"] = str(path.relative_to(VECTORS))
        out.append(data)
    return out


MERKLE_HARNESS = """async ({inclusion, consistency}) => {
  const b = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  const run = async (fn) => { try { await fn(); return null; } catch (e) {
    return (e instanceof V.VerifyError ? '' : 'NOT A VerifyError: ') + e.message; } };
  const out = {};
  for (const t of inclusion) out[t.name] = await run(() => V.verifyInclusion(
    b(t.leafHash), BigInt(t.leafIdx), BigInt(t.treeSize), (t.proof || []).map(b), b(t.root)));
  for (const t of consistency) out[t.name] = await run(() => V.verifyConsistency(
    BigInt(t.size1), BigInt(t.size2), (t.proof || []).map(b), b(t.root1), b(t.root2)));
  return out;
}"""


def test_merkle_vectors_in_the_browser(page: Page, server: str) -> None:
    inclusion, consistency = _vectors("inclusion"), _vectors("consistency")
    import_verify(page, server)
    results = page.evaluate(MERKLE_HARNESS, {"inclusion": inclusion, "consistency": consistency})
    assert len(results) == len(inclusion) + len(consistency)
    wrong = []
    for vector in inclusion + consistency:
        error = results[vector["name"]]
        if vector["wantErr"] != (error is not None):
            wrong.append(f"{vector['name']}: wantErr={vector['wantErr']}, got {error!r}")
        elif error is not None and error.startswith("NOT A VerifyError"):
            wrong.append(f"{vector['name']}: {error}")
    assert not wrong, "\n".join(wrong)
    # both verdicts occur: the harness cannot pass by always saying yes or no
    verdicts = {v["wantErr"] for v in inclusion} | {v["wantErr"] for v in consistency}
    assert verdicts == {True, False}


def _mth(hashes: Sequence[bytes]) -> bytes:
    if len(hashes) == 1:
        return hashes[0]
    k = 1 << ((len(hashes) - 1).bit_length() - 1)
    return merkle.node_hash(_mth(hashes[:k]), _mth(hashes[k:]))


def test_proofs_made_by_ledger_merkle_verify_in_the_browser(page: Page, server: str) -> None:
    leaves = [f"leaf {i}".encode() for i in range(17)]
    hashes = [merkle.leaf_hash(leaf) for leaf in leaves]

    def read(ids: Sequence[merkle.NodeId]) -> list[bytes]:
        return [_mth(hashes[i << lvl : (i + 1) << lvl]) for lvl, i in ids]

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    roots = {n: merkle.tree_root(n, read) for n in range(1, len(leaves) + 1)}
    inclusion: list[dict[str, Any]] = [
        {"leaf": b64(leaves[i]), "index": i, "size": n, "root": b64(roots[n]),
         "proof": [b64(h) for h in merkle.inclusion_proof(i, n, read)]}
        for n in roots for i in range(n)
    ]  # fmt: skip
    consistency: list[dict[str, Any]] = [
        {"m": m, "n": n, "root1": b64(roots[m]), "root2": b64(roots[n]),
         "proof": [b64(h) for h in merkle.consistency_proof(m, n, read)]}
        for n in roots for m in range(1, n + 1)
    ]  # fmt: skip
    import_verify(page, server)
    result = page.evaluate(
        """async ({inclusion, consistency}) => {
          const b = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
          const ok = async (fn) => { try { await fn(); return true; } catch { return false; } };
          let good = 0, caught = 0;
          for (const t of inclusion) {
            const leaf = await V.leafHash(b(t.leaf));
            const proof = t.proof.map(b);
            if (await ok(() => V.verifyInclusion(leaf, t.index, t.size, proof, b(t.root)))) good++;
            // the same proof for the neighbouring leaf, or with one bit changed, must fail
            const other = await V.leafHash(b(t.leaf).map((x, i) => i === 0 ? x ^ 1 : x));
            if (!(await ok(() => V.verifyInclusion(other, t.index, t.size, proof, b(t.root))))) caught++;
            if (proof.length) { proof[proof.length - 1] = proof[proof.length - 1].map((x, i) => i ? x : x ^ 1);
              if (!(await ok(() => V.verifyInclusion(leaf, t.index, t.size, proof, b(t.root))))) caught++; }
            else caught++;
          }
          for (const t of consistency) {
            if (await ok(() => V.verifyConsistency(t.m, t.n, t.proof.map(b), b(t.root1), b(t.root2)))) good++;
            if (t.m < t.n && !(await ok(() => V.verifyConsistency(t.m, t.n, t.proof.map(b), b(t.root2), b(t.root1))))) caught++;
          }
          return {good, caught};
        }""",
        {"inclusion": inclusion, "consistency": consistency},
    )
    swapped = sum(1 for t in consistency if t["m"] < t["n"])
    assert result == {
        "good": len(inclusion) + len(consistency),
        "caught": 2 * len(inclusion) + swapped,
    }
    # and the leaf hash is RFC 9162's
    digest = page.evaluate("async () => V.hex(await V.leafHash(new TextEncoder().encode('abc')))")
    assert digest == hashlib.sha256(b"\x00abc").hexdigest()


SIGNED_NOTE_HARNESS = """async ({vectors, backend, example, extra}) => {
  V.setEd25519Backend(backend);
  const ed = vectors.ed25519_note;
  const run = async (fn) => { try { return {ok: await fn()}; } catch (e) {
    return {err: (e instanceof V.VerifyError ? '' : 'NOT A VerifyError: ') + e.message}; } };
  const vk = await V.parseVkey(ed.vkey);
  const second = await V.parseVkey(vectors.second_vkey);
  const out = {backend: await V.ed25519Backend()};
  out.keyId = vk.keyId;
  out.opened = await run(async () => (await V.openNote(ed.signed_note, [vk])).text);
  out.secondOnly = await run(async () => (await V.openNote(ed.signed_note, [second])).text);
  out.both = await run(async () => (await V.openNote(ed.signed_note, [second, vk])).verified.length);
  out.tamperedText = await run(() => V.openNote(ed.signed_note.replace('answer', 'Answer'), [vk]));
  const sigLine = ed.signed_note.split('\\n').at(-2);
  const sig = sigLine.split(' ').at(-1);
  const raw = Uint8Array.from(atob(sig), (c) => c.charCodeAt(0)); raw[20] ^= 1;
  out.tamperedSig = await run(() => V.openNote(ed.signed_note.replace(sig, V.b64encode(raw)), [vk]));
  out.badVkeys = [];
  for (const bad of vectors.bad_vkeys) out.badVkeys.push(await run(() => V.parseVkey(bad)));
  out.c2sp = (await V.parseVkey(vectors.c2sp_example.vkey)).keyId;
  out.notACheckpoint = await run(() => V.verifyCheckpoint(ed.signed_note, ed.vkey));
  const cp = await run(async () => { const c = await V.verifyCheckpoint(example.note, example.vkey);
    return {origin: c.origin, size: c.size.toString(), root: V.hex(c.root), signer: c.signer.keyId,
            cosignatures: c.cosignatures.length}; });
  out.example = cp;
  out.cosigned = await run(async () => (await V.verifyCheckpoint(extra.cosigned, extra.vkey)).cosignatures.length);
  out.wrongName = await run(() => V.verifyCheckpoint(extra.wrongName, extra.wrongNameVkey));
  out.malformed = {};
  for (const [name, note] of Object.entries(extra.malformed)) out.malformed[name] = await run(() => V.verifyCheckpoint(note, extra.vkey));
  V.setEd25519Backend('auto');
  return out;
}"""


def _note_inputs() -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    vectors = json.loads((VECTORS / "signed-note.json").read_text(encoding="utf-8"))
    ex = format_example.build()
    example = {"note": ex.checkpoint_note, "vkey": ex.log.verifier.vkey}
    log_key, witness = new_signer(ORIGIN), new_signer("witness.example/w1")
    cp = Checkpoint(ORIGIN, 12, hashlib.sha256(b"root").digest())
    good = sign_checkpoint(cp, log_key)
    other_name = new_signer("someone.else/log")
    head, _, sig_line = good.rpartition("\n\n")
    root = base64.b64encode(cp.root).decode()
    short = base64.b64encode(cp.root[:31]).decode()

    def signed(text_: str) -> str:
        return sign_note(text_, [log_key])

    extra = {
        "vkey": log_key.verifier.vkey,
        "cosigned": sign_note(cp.text(), [witness, log_key]),
        # a key whose name is not the origin signs a well-formed checkpoint
        "wrongName": sign_note(cp.text(), [other_name]),
        "wrongNameVkey": other_name.verifier.vkey,
        "malformed": {
            "no blank line": good.replace("\n\n", "\n"),
            "carriage return": good.replace("\n", "\r\n", 1),
            "same signature twice": good + sig_line,
            "no final newline": good[:-1],
            "size with a leading zero": signed(f"{ORIGIN}\n012\n{root}\n"),
            "size with a sign": signed(f"{ORIGIN}\n+12\n{root}\n"),
            "size above 2**64-1": signed(f"{ORIGIN}\n{2**64}\n{root}\n"),
            "short root": signed(f"{ORIGIN}\n12\n{short}\n"),
            "no root line": signed(f"{ORIGIN}\n12\n"),
            "empty extension line": signed(f"{ORIGIN}\n12\n{root}\n\n"),
            "space around the origin": signed(f" {ORIGIN}\n12\n{root}\n"),
            "non-canonical base64": head
            + "\n\n"
            + sig_line[:-3]
            + chr(ord(sig_line[-3]) + 1)
            + sig_line[-2:],
        },
    }
    return vectors, example, extra


@pytest.mark.parametrize("backend", ["webcrypto", "noble"])
def test_signed_note_vectors_in_the_browser(page: Page, server: str, backend: str) -> None:
    vectors, example, extra = _note_inputs()
    urls = requested(page)
    import_verify(page, server)
    out = page.evaluate(
        SIGNED_NOTE_HARNESS,
        {"vectors": vectors, "backend": backend, "example": example, "extra": extra},
    )
    assert out["backend"] == backend
    noble_loaded = any(u.endswith("/static/vendor/noble-ed25519.js") for u in urls)
    assert noble_loaded == (backend == "noble")
    ed = vectors["ed25519_note"]
    assert out["keyId"] == "PeterNeumann+c74f20a3"
    assert out["opened"] == {"ok": ed["text"]}
    assert "no signature by a known key" in out["secondOnly"]["err"]
    assert out["both"] == {"ok": 1}
    assert "does not verify" in out["tamperedText"]["err"]
    assert "does not verify" in out["tamperedSig"]["err"]
    assert len(out["badVkeys"]) == 2
    for bad in out["badVkeys"]:
        assert "err" in bad and not bad["err"].startswith("NOT A VerifyError")
    assert out["c2sp"] == "example.com/foo+530d903a"
    assert "checkpoint" in out["notACheckpoint"]["err"]
    ex = format_example.build()
    assert out["example"] == {
        "ok": {
            "origin": format_example.ORIGIN,
            "size": "3",
            "root": ex.root.hex(),
            "signer": ex.log.verifier.key_id,
            "cosignatures": 0,
        }
    }
    assert out["cosigned"] == {"ok": 1}  # the witness line is kept, unchecked
    assert "does not match the log key name" in out["wrongName"]["err"]
    assert set(out["malformed"]) == set(extra["malformed"])
    for name, result in out["malformed"].items():
        assert "err" in result, f"{name}: accepted"
        assert not result["err"].startswith("NOT A VerifyError"), f"{name}: {result['err']}"


def test_webcrypto_is_the_default_backend(page: Page, server: str) -> None:
    import_verify(page, server)
    assert page.evaluate("V.ed25519Backend()") == "webcrypto"


# ---------------------------------------------------------------------------
# (b) end to end


def test_entry_page_verifies_in_the_browser(page: Page, server: str, shared: ModuleSite) -> None:
    urls = requested(page)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(f"{server}/e/3")
    result = outcome(page)
    latest = shared.log.latest_checkpoint()
    assert result["status"] == "verified", result
    assert result["size"] == str(latest.size)
    assert result["signer"] == shared.log.verifier.key_id
    assert result["backend"] == "webcrypto"
    assert result["headline"] == "Verified in your browser"
    assert f"signed log of {latest.size} entries" in result["detail"]
    assert shared.log.verifier.key_id in result["detail"]
    assert "published this checkpoint" in result["detail"]  # the checkpoint time, optional but here
    assert not problems, problems  # no CSP violations, no script errors
    assert any("/api/v1/entries/3?size=" in u for u in urls)
    assert not any("noble" in u for u in urls)  # the fallback is loaded only when needed


def test_many_entries_on_one_panel(page: Page, server: str, shared: ModuleSite) -> None:
    size = shared.log.latest_checkpoint().size
    page.goto(panel_url(server, seqs=list(range(size)), vkey=shared.log.verifier.vkey))
    result = outcome(page)
    assert result["status"] == "verified", result


def test_tampered_proof_fails(page: Page, server: str) -> None:
    def change(body: dict[str, Any]) -> None:
        hashes = body["inclusion_proof"]["hashes"]
        assert hashes, "the test needs a non-empty proof"
        hashes[-1] = flip(hashes[-1], 7)

    seen = rewrite_json(page, "**/api/v1/entries/**", change)
    page.goto(f"{server}/e/3")
    result = outcome(page)
    assert seen
    assert result["status"] == "failed"
    assert "inclusion: computed root" in result["reason"]
    assert result["headline"] == "NOT VERIFIED"
    assert "Reason:" in result["detail"]


@pytest.mark.parametrize("what", ["root", "size"])
def test_tampered_checkpoint_fails(page: Page, server: str, what: str) -> None:
    def change(note: str) -> str:
        lines = note.split("\n")
        if what == "root":
            lines[2] = flip(lines[2], 5)
        else:
            lines[1] = str(int(lines[1]) + 1)
        return "\n".join(lines)

    rewrite_text(page, "**/log/checkpoint", change)
    page.goto(f"{server}/e/3")
    result = outcome(page)
    assert result["status"] == "failed"
    assert result["error"] == "signature"
    assert "does not verify" in result["reason"]


def test_page_with_another_vkey_fails(page: Page, server: str, shared: ModuleSite) -> None:
    impostor = new_signer(shared.log.origin)  # same name, different key
    page.goto(panel_url(server, seqs=[2], vkey=impostor.verifier.vkey))
    result = outcome(page)
    assert result["status"] == "failed"
    assert "no signature by a known key" in result["reason"]
    # the real key on the same test page verifies (the failure is the key's)
    page.goto(panel_url(server, seqs=[2], vkey=shared.log.verifier.vkey))
    assert outcome(page)["status"] == "verified"


@pytest.mark.parametrize("keep_hash_field", [True, False])
def test_changed_leaf_byte_fails(page: Page, server: str, keep_hash_field: bool) -> None:
    def change(body: dict[str, Any]) -> None:
        leaf = base64.b64decode(body["leaf"])
        assert b"lot" in leaf
        changed = leaf.replace(b"lot", b"LOT", 1)
        body["leaf"] = base64.b64encode(changed).decode()
        if not keep_hash_field:  # a careful forger sends the matching leaf hash too
            body["leaf_hash"] = merkle.leaf_hash(changed).hex()

    rewrite_json(page, "**/api/v1/entries/**", change)
    page.goto(f"{server}/e/3")
    result = outcome(page)
    assert result["status"] == "failed"
    reason = result["reason"] or ""
    if keep_hash_field:
        assert "is not the hash of the leaf bytes" in reason
    else:
        assert "inclusion: computed root" in reason


def test_expectations_are_read_from_the_leaf(page: Page, server: str, shared: ModuleSite) -> None:
    entry = shared.log.entry(3)
    text_ = json.loads(entry.leaf)["statement"]["body"]["text"]
    vkey = shared.log.verifier.vkey
    page.goto(
        panel_url(server, seqs=[3], vkey=vkey, expect={"3": {"body.text": text_, "kind": "note"}})
    )
    assert outcome(page)["status"] == "verified"

    page.goto(panel_url(server, seqs=[3], vkey=vkey, expect={"3": {"body.text": "forged"}}))
    result = outcome(page)
    assert result["status"] == "failed"
    assert result["error"] == "mismatch"
    assert "body.text" in result["reason"]

    # the API's decoded "entry" is not trusted: agreeing with the page does not help
    def lie(body: dict[str, Any]) -> None:
        body["entry"]["statement"]["body"]["text"] = "forged"

    rewrite_json(page, "**/api/v1/entries/**", lie)
    page.goto(panel_url(server, seqs=[3], vkey=vkey, expect={"3": {"body.text": "forged"}}))
    assert outcome(page)["status"] == "failed"


def test_entry_page_binds_the_whole_entry_it_shows(page: Page, server: str) -> None:
    page.goto(f"{server}/e/3")
    expect = json.loads(page.locator("[data-verify-panel]").get_attribute("data-expect") or "{}")
    assert set(expect["3"]) == {"prev", "seq", "signatures", "statement", "time", "v"}
    assert outcome(page)["status"] == "verified"


def test_label_hash_prefix(page: Page, server: str, shared: ModuleSite) -> None:
    digest = shared.log.entry(4).leaf_hash().hex()
    page.goto(f"{server}/e/4?h={digest[:8]}")
    result = outcome(page)
    assert result["status"] == "verified", result
    assert digest[:8] in result["detail"]
    wrong = format(int(digest[:8], 16) ^ 1, "08x")
    page.goto(f"{server}/e/4?h={wrong}")
    result = outcome(page)
    assert result["status"] == "failed"
    assert result["error"] == "label"
    page.goto(f"{server}/e/4?h=not-hex")
    assert outcome(page)["status"] == "failed"


def test_network_errors_and_timeouts_fail(page: Page, server: str) -> None:
    page.goto(f"{server}/e/2")
    assert outcome(page)["status"] == "verified"
    page.route("**/log/checkpoint", lambda route: route.abort())
    page.evaluate(
        "async () => (await import('/static/verify.js')).verifyPanel("
        "document.querySelector('[data-verify-panel]'))"
    )
    result = outcome(page)
    assert result["status"] == "failed"
    assert result["error"] == "network"
    assert "could not be reached" in result["detail"]

    page.unroute("**/log/checkpoint")
    page.route("**/log/checkpoint", lambda route: None)  # never answers
    page.evaluate(
        "async () => (await import('/static/verify.js')).verifyPanel("
        "document.querySelector('[data-verify-panel]'), {timeoutMs: 800})"
    )
    result = outcome(page)
    assert result["status"] == "failed"
    assert result["error"] == "timeout"


def test_bad_panel_attributes_fail_not_hang(page: Page, server: str) -> None:
    page.goto(panel_url(server, seqs=[1], vkey="not a vkey"))
    result = outcome(page)
    assert result["status"] == "failed"
    assert "vkey" in result["reason"]


def test_fallback_when_webcrypto_lacks_ed25519(page: Page, server: str) -> None:
    """A browser without Ed25519 in WebCrypto verifies with the vendored noble code."""
    page.add_init_script(
        """(() => {
          const subtle = crypto.subtle, importKey = subtle.importKey.bind(subtle);
          subtle.importKey = (format, key, alg, ...rest) =>
            (alg && (alg === 'Ed25519' || alg.name === 'Ed25519'))
              ? Promise.reject(new DOMException('Unrecognized name.', 'NotSupportedError'))
              : importKey(format, key, alg, ...rest);
        })();"""
    )
    urls = requested(page)
    page.goto(f"{server}/e/3")
    result = outcome(page)
    assert result["status"] == "verified", result
    assert result["backend"] == "noble"
    assert any(u.endswith("/static/vendor/noble-ed25519.js") for u in urls)
    # and the fallback still refuses a bad checkpoint signature
    rewrite_text(
        page,
        "**/log/checkpoint",
        lambda note: re.sub(r"\n(\d+)\n", lambda m: f"\n{int(m.group(1)) + 1}\n", note, count=1),
    )
    page.reload()
    result = outcome(page)
    assert result["status"] == "failed"
    assert "does not verify" in result["reason"]


# ---------------------------------------------------------------------------
# the light witness (localStorage)


def test_witness_accepts_a_grown_log_and_a_lagging_replica(browser: Browser, site: Site) -> None:
    _prepare(site.app)
    log = site.log
    add_notes(log, site.admin, 3)
    with live_server(site.app) as base, new_page(browser) as page:
        urls = requested(page)
        page.goto(f"{base}/e/1")
        first = outcome(page)
        assert first["status"] == "verified"
        assert "consistency" not in " ".join(urls)
        stored = page.evaluate(f"localStorage.getItem('suyuan:checkpoint:{ORIGIN}')")
        assert json.loads(stored)["size"] == first["size"] == "4"

        add_notes(log, site.admin, 4, batch=2)  # sizes 6 and 8
        page.goto(f"{base}/e/1")
        second = outcome(page)
        assert second["status"] == "verified", second
        assert any("/api/v1/proofs/consistency?from=4&to=8" in u for u in urls)
        assert "(4 entries)" in second["detail"]

        # a replica behind (serves the older size-6 checkpoint): not a failure
        older = log.checkpoint(6).note
        page.route("**/log/checkpoint", lambda route: route.fulfill(body=older))
        page.goto(f"{base}/e/1")
        third = outcome(page)
        assert third["status"] == "verified", third
        assert third["size"] == "6"
        assert any("/api/v1/proofs/consistency?from=6&to=8" in u for u in urls)
        # … even when it cannot prove the newer size at all
        page.route(
            "**/api/v1/proofs/consistency**",
            lambda route: route.fulfill(status=400, json={"error": {"code": "x", "message": "no"}}),
        )
        page.goto(f"{base}/e/1")
        assert outcome(page)["status"] == "verified"
        remembered = page.evaluate(f"localStorage.getItem('suyuan:checkpoint:{ORIGIN}')")
        assert json.loads(remembered)["size"] == "8"  # the newest is kept


def _fork(site: Site, root: Path) -> AbstractContextManager[ModuleSite]:
    """A second log with the same key and the same first entries, to give its own history."""
    site.instance.engine.dispose()
    site.app.extensions["suyuan"]["instance"].engine.dispose()
    shutil.copytree(site.instance.settings.instance, root / "instance")
    return make_site(root)


@pytest.mark.parametrize("extra", [2, 3], ids=["same-size", "larger"])
def test_witness_catches_a_rewritten_history(
    browser: Browser, site: Site, tmp_path: Path, extra: int
) -> None:
    add_notes(site.log, site.admin, 2, prefix="shared")
    with _fork(site, tmp_path / "fork") as fork:
        assert fork.log.verifier.vkey == site.log.verifier.vkey
        add_notes(site.log, site.admin, 2, prefix="history A")
        add_notes(fork.log, fork.admin, extra, prefix="history B")
        _prepare(site.app)
        _prepare(fork.app)
        with (
            live_server(site.app) as base_a,
            live_server(fork.app) as base_b,
            new_page(browser) as page,
        ):
            page.goto(f"{base_a}/e/1")
            assert outcome(page)["status"] == "verified"
            # The same address now answers with the other history (a split view).
            page.route(
                f"{base_a}/**",
                lambda route: route.fulfill(
                    response=route.fetch(url=route.request.url.replace(base_a, base_b))
                ),
            )
            page.goto(f"{base_a}/e/1")
            result = outcome(page)
            assert result["status"] == "failed", result
            assert result["error"] == "history"
            assert "history changed since your last visit" in result["detail"]
            # A browser that never saw history A accepts history B: the catch is the memory.
            with new_page(browser) as fresh:
                fresh.goto(f"{base_b}/e/1")
                assert outcome(fresh)["status"] == "verified"


def test_witness_survives_broken_storage(browser: Browser, server: str) -> None:
    with new_page(browser) as page:
        page.add_init_script(
            "Object.defineProperty(window, 'localStorage', {get() {"
            " throw new DOMException('denied', 'SecurityError'); }});"
        )
        page.goto(f"{server}/e/2")
        assert outcome(page)["status"] == "verified"
    with new_page(browser) as page:
        page.goto(f"{server}/")
        page.evaluate(f"localStorage.setItem('suyuan:checkpoint:{ORIGIN}', '{{not json')")
        page.goto(f"{server}/e/2")
        assert outcome(page)["status"] == "verified"
        saved = json.loads(page.evaluate(f"localStorage.getItem('suyuan:checkpoint:{ORIGIN}')"))
        assert saved["size"]


# ---------------------------------------------------------------------------
# (c) without JavaScript


def test_no_js_page_says_the_server_checked(shared: ModuleSite) -> None:
    client = shared.app.test_client()
    size = shared.log.latest_checkpoint().size
    page = client.get("/e/2", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert 'data-verify-status="pending"' in page
    assert f"Checked by the server: included in the signed log of {size} entries" in page
    assert "<noscript>" in page and "needs JavaScript" in page
    assert '<script type="module" src="/static/verify.js"></script>' in page
    assert 'href="/static/verify.css"' in page
    vkey = shared.log.verifier.vkey
    assert f'data-vkey="{vkey}"' in page
    assert f"suyuan verify --url http://localhost/log --vkey '{vkey}'" in page
    assert f"curl 'http://localhost/api/v1/entries/2?size={size}'" in page
    assert "curl http://localhost/log/checkpoint" in page


def test_no_js_page_reports_a_failed_server_check(site: Site) -> None:
    log = site.log
    add_notes(log, site.admin, 2)
    client = site.app.test_client()
    client.set_cookie("lang", "en")
    good = client.get("/e/1").get_data(as_text=True)
    assert "Checked by the server" in good and "check FAILED" not in good
    # a wrong label code is the server's finding too
    assert "check FAILED" in client.get("/e/1?h=00000000").get_data(as_text=True)
    # tamper with the stored checkpoint: its signature no longer verifies
    latest = log.latest_checkpoint()
    lines = latest.note.split("\n")
    lines[2] = flip(lines[2], 3)
    with site.instance.engine.begin() as conn:
        conn.execute(
            text("UPDATE checkpoints SET note = :note WHERE size = :size"),
            {"note": "\n".join(lines), "size": latest.size},
        )
    bad = client.get("/e/1").get_data(as_text=True)
    assert "check FAILED" in bad
    assert "Checked by the server: included" not in bad


# ---------------------------------------------------------------------------
# the vendored fallback


def test_vendored_files_match_the_readme() -> None:
    readme = (VENDOR / "README.md").read_text(encoding="utf-8")
    recorded = re.search(r"sha256 of the vendored file \| `([0-9a-f]{64})`", readme)
    assert recorded, "vendor/README.md must record the sha256 of noble-ed25519.js"
    data = (VENDOR / "noble-ed25519.js").read_bytes()
    assert hashlib.sha256(data).hexdigest() == recorded.group(1)
    size = re.search(r"\| size \| (\d+) bytes \|", readme)
    assert size and int(size.group(1)) == len(data)
    assert "| version | 3.2.0 |" in readme and "MIT" in data.decode("utf-8")[:200]
    # every vendored script is recorded
    scripts = sorted(p.name for p in VENDOR.glob("*.js"))
    assert scripts == ["noble-ed25519.js"]
