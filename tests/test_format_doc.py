"""docs/FORMAT.md's worked example: the code still produces it, and it verifies from the doc alone."""

from __future__ import annotations

import base64
import hashlib
import json
import re

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tests.format_example import build
from tests.helpers import REPO

DOC = (REPO / "docs" / "FORMAT.md").read_text(encoding="utf-8")


def test_document_quotes_what_the_code_produces() -> None:
    ex = build()
    quoted = [
        ex.log.verifier.vkey,
        ex.admin.verifier.vkey,
        ex.coop.verifier.vkey,
        ex.root.hex(),
        base64.b64encode(ex.root).decode(),
        ex.checkpoint_note.rstrip("\n"),
    ]
    for entry in ex.entries:
        quoted += [entry.leaf_hash().hex(), f"{len(entry.leaf)} bytes"]
    quoted += [
        ex.entries[0].leaf.decode(),
        ex.entries[2].leaf.decode(),
        ex.entries[2].statement.canonical().decode(),
        hashlib.sha256(ex.entries[2].statement.signed_message()).hexdigest(),
    ]
    for value in quoted:
        assert value in DOC, f"docs/FORMAT.md no longer quotes {value[:60]!r}"


# --- an independent verifier, written from docs/FORMAT.md alone --------------------------


def _blocks() -> list[str]:
    return re.findall(r"```\n(.*?)\n```", DOC, flags=re.S)


def _vkey(line: str) -> tuple[str, bytes, Ed25519PublicKey]:
    name, hex8, b64 = line.split("+", 2)
    raw = base64.b64decode(b64, validate=True)
    assert raw[0] == 0x01 and len(raw) == 33
    key_hash = hashlib.sha256(name.encode() + b"\n\x01" + raw[1:]).digest()[:4]
    assert key_hash.hex() == hex8
    return name, key_hash, Ed25519PublicKey.from_public_bytes(raw[1:])


def test_example_verifies_independently() -> None:
    keys = dict(re.findall(r"^    (log|admin|coop)\s+(\S+)$", DOC, flags=re.M))
    log_name, log_hash, log_key = _vkey(keys["log"])
    authors = {}
    for who in ("admin", "coop"):
        name, key_hash, public = _vkey(keys[who])
        authors[f"{name}+{key_hash.hex()}"] = public
    blocks = _blocks()
    statement_json, leaf2, leaf0, note = blocks[0], blocks[1], blocks[2], blocks[3] + "\n"
    leaves = {0: leaf0.encode(), 2: leaf2.encode()}
    hashes = dict(re.findall(r"^    (h\d) = ([0-9a-f]{64})", DOC, flags=re.M))
    for seq, leaf in leaves.items():
        entry = json.loads(leaf)
        assert rfc8785.dumps(entry) == leaf  # the leaf is the canonical encoding
        assert entry["seq"] == seq and entry["v"] == 1
        assert hashlib.sha256(b"\x00" + leaf).hexdigest() == hashes[f"h{seq}"]
        message = b"suyuan/statement/v1\n" + rfc8785.dumps(entry["statement"])
        for sig in entry["signatures"]:
            authors[sig["key"]].verify(base64.b64decode(sig["sig"]), message)
        assert entry["statement"]["origin"] == log_name
    assert json.loads(leaf2)["prev"] == hashes["h1"]
    assert rfc8785.dumps(json.loads(statement_json)).decode() == statement_json
    h = [bytes.fromhex(hashes[f"h{i}"]) for i in range(3)]
    root = hashlib.sha256(b"\x01" + hashlib.sha256(b"\x01" + h[0] + h[1]).digest() + h[2]).digest()
    text, signature_block = note.split("\n\n", 1)
    origin, size, root_b64 = text.split("\n")
    assert (origin, size, base64.b64decode(root_b64)) == (log_name, "3", root)
    name, sig_b64 = signature_block.strip().removeprefix("— ").split(" ")
    raw = base64.b64decode(sig_b64)
    assert name == log_name and raw[:4] == log_hash
    log_key.verify(raw[4:], (text + "\n").encode())
