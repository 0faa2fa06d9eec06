"""The body of ``POST /api/v1/entries`` from raw bytes, through the Flask app (test client).

The app is made once at import, on a small ledger in a temporary instance folder
(the real ``suyuan init`` path, tests/web/support.py), with a valid API token and
a fixed-seed author key registered, so the seeds — signed statements of that key
(tests/fuzz/corpus/api_entries) — are accepted and mutations explore past the
signature check into the rules and the append.

Invariants, for every input: the status is below 500; an error (4xx) is JSON
``{"error": {"code": <snake_case>, "message": <non-empty>}}``; a refused request
(any status that is not 2xx) leaves the ledger's size unchanged; an accepted one
(201) grew it by exactly the entries it lists, in sequence.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import re
import shutil
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select

from ledger import schema
from ledger.entry import make_statement, sign_statement
from ledger.note import Signer
from ledger.tokens import create_token
from tests.helpers import ORIGIN
from tests.web.support import make_site, statement

#: Fixed time and key: the seeds are the same bytes on every run and valid on every fresh site.
CREATED = "2024-05-01T08:00:00Z"
AUTHOR = Signer(
    "coop.api.fuzz",
    Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"suyuan fuzz api author").digest()),
)
_CODE = re.compile(r"[a-z][a-z0-9_]*")


def _make_site() -> tuple[Any, str]:
    root = Path(tempfile.mkdtemp(prefix="suyuan-fuzz-api-"))
    stack = ExitStack()
    site = stack.enter_context(make_site(root))

    def close() -> None:
        stack.close()
        shutil.rmtree(root, ignore_errors=True)

    atexit.register(close)
    body = {"name": AUTHOR.name, "vkey": AUTHOR.verifier.vkey, "role": "producer", "org": "合作社"}
    site.log.append([statement(site.log, "key.registered", body, site.admin)])
    return site, create_token(site.instance.engine, "fuzz")


SITE, TOKEN = _make_site()
CLIENT = SITE.app.test_client()
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def signed(kind: str, body: dict[str, Any], created: str = CREATED) -> dict[str, Any]:
    """A statement of ``kind`` signed by the fixed author (what the seeds hold)."""
    return sign_statement(make_statement(kind, body, ORIGIN, created), [AUTHOR]).to_json()


def seed_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _size() -> int:
    with SITE.instance.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(schema.entries)).scalar_one())


def one(data: bytes) -> None:
    before = _size()
    response = CLIENT.post("/api/v1/entries", data=data, headers=HEADERS)
    status = response.status_code
    assert status < 500, (status, response.get_data()[:300])
    after = _size()
    if status == 201:
        created = response.get_json()
        seqs = [e["seq"] for e in created["entries"]]
        assert seqs == list(range(before, after)), (seqs, before, after)
        return
    assert after == before, f"a {status} changed the ledger: {before} -> {after} entries"
    assert 400 <= status < 500, status
    assert response.mimetype == "application/json", (status, response.mimetype)
    body = response.get_json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error["code"], str) and _CODE.fullmatch(error["code"]), body
    assert isinstance(error["message"], str) and error["message"].strip(), body
