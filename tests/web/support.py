"""Helpers for the web tests: statements, bulk appends, and a site that lives for a module.

The ``site`` fixture (tests/conftest.py) is per test; a log of hundreds of
entries that many read-only tests share is built once per module with
:func:`make_site` instead, the same way the fixture builds it.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from ledger.checkpoint import Checkpoint, verify_checkpoint
from ledger.config import Settings
from ledger.entry import Entry, SignedStatement, make_statement, sign_statement
from ledger.instance import Instance
from ledger.log import Log
from ledger.note import Signer, Verifier, parse_vkey
from tests.helpers import ORIGIN, TEST_CONFIG, env_for, new_signer, now


def statement(
    log: Log, kind: str, body: Mapping[str, Any], *signers: Signer, origin: str | None = None
) -> SignedStatement:
    return sign_statement(make_statement(kind, body, origin or log.origin, now()), signers)


def note_json(log: Log, text: str, signer: Signer, **extra: Any) -> dict[str, Any]:
    """A signed ``note`` statement in its JSON form (what a client POSTs)."""
    return statement(log, "note", {"text": text, **extra}, signer).to_json()


def add_notes(
    log: Log, signer: Signer, count: int, *, batch: int = 100, prefix: str = "note"
) -> list[Entry]:
    """Append ``count`` notes in batches of ``batch`` (one checkpoint per batch)."""
    entries: list[Entry] = []
    for start in range(0, count, batch):
        items = [
            statement(log, "note", {"text": f"{prefix} {i}"}, signer)
            for i in range(start, min(count, start + batch))
        ]
        entries.extend(log.append(items))
    return entries


def register(log: Log, admin: Signer, name: str, role: str = "producer") -> Signer:
    signer = new_signer(name)
    body = {"name": name, "vkey": signer.verifier.vkey, "role": role, "org": "合作社 Co-op"}
    log.append([statement(log, "key.registered", body, admin)])
    return signer


def revoke(log: Log, admin: Signer, signer: Signer, reason: str = "lost phone") -> None:
    body = {"key": signer.verifier.key_id, "reason": reason}
    log.append([statement(log, "key.revoked", body, admin)])


def b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def served_verifier(client: FlaskClient) -> Verifier:
    """The log's verifier key as ``/log/vkey`` serves it."""
    response = client.get("/log/vkey")
    assert response.status_code == 200
    return parse_vkey(response.get_data(as_text=True).strip())


def checked(note: str, verifier: Verifier) -> Checkpoint:
    checkpoint, _ = verify_checkpoint(note, verifier, ORIGIN)
    return checkpoint


@dataclass
class ModuleSite:
    """What tests/conftest.py's ``site`` gives, built for a whole module."""

    instance: Instance
    admin: Signer
    app: Flask
    log: Log

    @property
    def client(self) -> FlaskClient:
        return self.app.test_client()


@contextmanager
def make_site(root: Path) -> Iterator[ModuleSite]:
    """An instance folder made by the real init path, and its app (environment restored after)."""
    from web import create_app

    env = env_for(root / "instance")
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("SUYUAN_")]:
            patch.delenv(name)
        for name, value in env.items():
            if name.startswith("SUYUAN_"):
                patch.setenv(name, value)
        instance = Instance(Settings.from_env(env), env)
        _log, admin, _created = instance.initialize(ORIGIN, "县扶贫办 County office")
        app = create_app(TEST_CONFIG)
    site = ModuleSite(instance, admin, app, instance.writer())
    try:
        yield site
    finally:
        instance.engine.dispose()
        app.extensions["suyuan"]["instance"].engine.dispose()
