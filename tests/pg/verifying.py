"""What a client does with what a Suyuan host serves: verify it, trusting only the log's vkey.

These helpers never ask the server whether something is right: they fetch the
checkpoint, verify its signature with the vkey obtained independently (``suyuan log
vkey`` on the primary), and check every inclusion and consistency proof against the
root of that verified checkpoint with ``ledger.merkle`` — as web/static/verify.js does
in a browser, and as ``suyuan verify --url`` does through the tiles.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from flask.testing import FlaskClient

from ledger.checkpoint import Checkpoint, verify_checkpoint
from ledger.errors import NotFound
from ledger.merkle import inclusion_proof, leaf_hash, verify_consistency, verify_inclusion
from ledger.note import Verifier
from ledger.remote import Fetcher, RemoteAudit, audit_remote
from ledger.tiles import Tile, TileHashReader
from tests.helpers import ORIGIN


def fetcher(client: FlaskClient, prefix: str = "/log/") -> Fetcher:
    """``ledger.remote``'s Fetcher over a Flask test client (404 → NotFound, like http_fetcher)."""

    def fetch(path: str) -> bytes:
        response = client.get(prefix + path)
        if response.status_code == 404:
            raise NotFound(f"{prefix}{path}: 404")
        assert response.status_code == 200, (path, response.status_code, response.data[:300])
        return bytes(response.data)

    return fetch


def checkpoint(client: FlaskClient, verifier: Verifier) -> Checkpoint:
    """GET /log/checkpoint and verify it with the log's key."""
    response = client.get("/log/checkpoint")
    assert response.status_code == 200, response.data
    verified, _note = verify_checkpoint(response.get_data(as_text=True), verifier, ORIGIN)
    return verified


def entry_proof(client: FlaskClient, verifier: Verifier, seq: int, cp: Checkpoint) -> bytes:
    """The browser's check of one entry: fetch it with its proof for ``cp``'s size, recompute
    the leaf hash from the leaf bytes and verify the proof against ``cp``'s root.
    Returns the leaf."""
    response = client.get(f"/api/v1/entries/{seq}?size={cp.size}")
    assert response.status_code == 200, (seq, cp.size, response.data[:300])
    body: dict[str, Any] = response.get_json()
    leaf = base64.b64decode(body["leaf"])
    proof = [base64.b64decode(h) for h in body["inclusion_proof"]["hashes"]]
    verify_inclusion(leaf_hash(leaf), seq, cp.size, proof, cp.root)
    carried, _ = verify_checkpoint(body["checkpoint"], verifier, ORIGIN)
    assert carried == cp  # the answer's own checkpoint is the one checked against
    return leaf


def consistency(client: FlaskClient, verifier: Verifier, old: Checkpoint, new: Checkpoint) -> None:
    response = client.get(f"/api/v1/proofs/consistency?from={old.size}&to={new.size}")
    assert response.status_code == 200, response.data[:300]
    body = response.get_json()
    proof = [base64.b64decode(h) for h in body["hashes"]]
    verify_consistency(old.size, new.size, proof, old.root, new.root)
    carried, _ = verify_checkpoint(body["checkpoint"], verifier, ORIGIN)
    assert carried == new


def tile_proof(client: FlaskClient, seq: int, leaf: bytes, cp: Checkpoint) -> None:
    """An inclusion proof computed by the client from /log/tile/… alone, checked against cp."""
    fetch = fetcher(client)

    def tile(t: Tile) -> bytes:
        return fetch(t.path())

    proof = inclusion_proof(seq, cp.size, TileHashReader(tile, cp.size))
    verify_inclusion(leaf_hash(leaf), seq, cp.size, proof, cp.root)


def audit(client: FlaskClient, verifier: Verifier) -> RemoteAudit:
    """``suyuan verify --url`` through the test client: every tile and entry bundle."""
    return audit_remote(fetcher(client), verifier, workers=0)


_PANEL = re.compile(r'data-verify-panel[^>]*?data-vkey="([^"]+)"[^>]*?data-seqs="([0-9,]*)"', re.S)


def panel(html: str) -> tuple[str, list[int]]:
    """The vkey and entry numbers a page's verification panel gives the browser."""
    found = _PANEL.search(html)
    assert found is not None, "no verification panel on the page"
    return found.group(1), [int(s) for s in found.group(2).split(",") if s]


def page_checked(client: FlaskClient, verifier: Verifier, path: str) -> list[int]:
    """GET a page and do what its verification panel does in a browser; return its seqs."""
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    vkey, seqs = panel(response.get_data(as_text=True))
    assert vkey == verifier.vkey
    assert seqs, path
    cp = checkpoint(client, verifier)
    for seq in seqs:
        entry_proof(client, verifier, seq, cp)
    return seqs
