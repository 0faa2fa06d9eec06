"""verify.js's cosignature functions in Chromium, on vectors made by ledger/cosignature.py.

As tests/web/test_verify_js.py does for notes and proofs: the functions run inside the
browser (``page.evaluate`` on a page of the live server that imports verify.js), on both
Ed25519 backends (WebCrypto, and the vendored @noble/ed25519).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from playwright.sync_api import Browser, Page

from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.cosignature import (
    CosignatureSigner,
    cosign_line,
    cosignature_key_hash,
    cosignature_message,
)
from ledger.note import sign_note
from tests.helpers import ORIGIN, new_signer
from tests.web.browser import live_server, new_page
from tests.web.support import ModuleSite, make_site

TIME = 1_700_000_123


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    site: ModuleSite
    with (
        make_site(tmp_path_factory.mktemp("verify-js-cosig")) as site,
        live_server(site.app) as base,
    ):
        yield base


@pytest.fixture
def page_v(browser: Browser, server: str) -> Iterator[Page]:
    with new_page(browser) as opened:
        opened.goto(f"{server}/")
        opened.evaluate("async () => { window.V = await import('/static/verify.js'); }")
        yield opened


def _witness(name: str, seed: int) -> CosignatureSigner:
    key = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)  # fixed: repeatable vectors
    return CosignatureSigner(name, key, lambda: float(TIME))


def _vectors() -> dict[str, Any]:
    log = new_signer(ORIGIN)
    w1, w2 = _witness("witness.a.example/w1", 1), _witness("witness.b.example/w2", 2)
    cp = Checkpoint(ORIGIN, 12, hashlib.sha256(b"root").digest())
    text = cp.text()
    note = sign_checkpoint(cp, log) + cosign_line(w1, text) + cosign_line(w2, text, TIME + 5)
    line1 = cosign_line(w1, text)
    head, _, b64 = line1.rstrip("\n").rpartition(" ")

    def changed(index: int) -> str:
        raw = bytearray(base64.b64decode(b64))
        raw[index] ^= 0x01
        return note.replace(b64, base64.b64encode(bytes(raw)).decode())

    return {
        "logVkey": log.verifier.vkey,
        "w1": w1.vkey,
        "w2": w2.vkey,
        "w1KeyHash": cosignature_key_hash(w1.name, w1.verifier.public_key_bytes).hex(),
        "text": text,
        "message": cosignature_message(text, TIME).hex(),
        "note": note,
        # the timestamp changed (bytes 4..11 of key ID || timestamp || signature): the
        # signed message changes with it, so the signature no longer verifies
        "badTime": changed(11),
        "badSig": changed(40),
        "otherText": sign_note(Checkpoint(ORIGIN, 13, cp.root).text(), [log]) + f"{head} {b64}\n",
        # a plain note signature (type 0x01) under the witness's name: not a cosignature
        "noteVkey": new_signer("witness.a.example/w1").verifier.vkey,
    }


HARNESS = """async ({v, backend}) => {
  V.setEd25519Backend(backend);
  const run = async (fn) => { try { return {ok: await fn()}; } catch (e) {
    return {err: (e instanceof V.VerifyError ? '' : 'NOT A VerifyError: ') + e.message}; } };
  const out = {backend: await V.ed25519Backend()};
  const w1 = await V.parseWitnessVkey(v.w1), w2 = await V.parseWitnessVkey(v.w2);
  out.keyId = w1.keyId; out.keyHash = V.hex(w1.keyHash);
  out.message = V.hex(V.cosignatureMessage(v.text, 1700000123n));
  const count = async (note, ws) => {
    const cp = await V.verifyCheckpoint(note, v.logVkey);
    const r = await V.checkCosignatures(cp.text, cp.cosignatures, ws);
    return {valid: r.valid.map((x) => [x.name, String(x.timestamp)]),
            invalid: r.invalid.map((x) => [x.keyId, x.reason])};
  };
  out.both = await run(() => count(v.note, [w1, w2]));
  out.onlyW2 = await run(() => count(v.note, [w2]));
  out.none = await run(() => count(v.note, []));
  out.badTime = await run(() => count(v.badTime, [w1, w2]));
  out.badSig = await run(() => count(v.badSig, [w1, w2]));
  out.otherText = await run(() => count(v.otherText, [w1]));
  out.noteVkey = await run(() => V.parseWitnessVkey(v.noteVkey));
  out.logVkey = await run(() => V.parseWitnessVkey(v.logVkey));
  out.badHash = await run(() => V.parseWitnessVkey(v.w1.replace(/\\+[0-9a-f]{8}\\+/, '+00000000+')));
  out.bigTime = await run(() => V.cosignatureMessage(v.text, 1n << 63n));
  out.noNewline = await run(() => V.cosignatureMessage('no newline', 1n));
  V.setEd25519Backend('auto');
  return out;
}"""


@pytest.mark.browser
@pytest.mark.parametrize("backend", ["webcrypto", "noble"])
def test_cosignature_vectors_in_the_browser(page_v: Page, backend: str) -> None:
    v = _vectors()
    out = page_v.evaluate(HARNESS, {"v": v, "backend": backend})
    assert out["backend"] == backend
    assert out["keyId"] == f"witness.a.example/w1+{v['w1KeyHash']}"
    assert out["keyHash"] == v["w1KeyHash"]
    assert out["message"] == v["message"]  # byte for byte what ledger/cosignature.py signs
    both = [["witness.a.example/w1", str(TIME)], ["witness.b.example/w2", str(TIME + 5)]]
    assert out["both"] == {"ok": {"valid": both, "invalid": []}}
    assert out["onlyW2"] == {"ok": {"valid": both[1:], "invalid": []}}
    assert out["none"] == {"ok": {"valid": [], "invalid": []}}
    for name in ("badTime", "badSig"):
        result = out[name]["ok"]
        assert result["valid"] == both[1:], name
        ((key_id, reason),) = result["invalid"]
        assert key_id.startswith("witness.a.example/w1+") and "does not verify" in reason
    # a cosignature over another checkpoint does not count for this one
    ((_, reason),) = out["otherText"]["ok"]["invalid"]
    assert "does not verify" in reason and out["otherText"]["ok"]["valid"] == []
    assert "0x04" in out["noteVkey"]["err"] and "0x01" in out["noteVkey"]["err"]
    assert "0x04" in out["logVkey"]["err"]
    assert "expected key hash" in out["badHash"]["err"]
    assert "2**63-1" in out["bigTime"]["err"]
    assert "newline" in out["noNewline"]["err"]
    for name in ("noteVkey", "logVkey", "badHash", "bigTime", "noNewline"):
        assert not out[name]["err"].startswith("NOT A VerifyError"), name


def test_vectors_are_real() -> None:
    """The vectors the browser checks are the witness's own: ledger/cosignature.py verifies them."""
    from ledger.cosignature import parse_witness_vkey, verify_cosignatures

    v = _vectors()
    witnesses = [parse_witness_vkey(v["w1"]), parse_witness_vkey(v["w2"])]
    assert [t for _, t in verify_cosignatures(v["note"], witnesses)] == [TIME, TIME + 5]
    assert bytes.fromhex(v["message"]).startswith(b"cosignature/v1\ntime 1700000123\n")
