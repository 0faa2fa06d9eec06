"""Test helpers: a ready log with registered authors, and ``check_ledger``.

Every test that writes SHOULD end with ``check_ledger(engine)``: the full audit
(``ledger.verify.audit_database``) must pass after any sequence of accepted and
refused writes.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, text

from ledger.db import make_engine, upgrade
from ledger.entry import Entry, SignedStatement, format_time, make_statement, sign_statement
from ledger.log import Log
from ledger.note import Signer
from ledger.projection import PRIVATE_TABLES, PROJECTIONS
from ledger.verify import AuditResult, audit_database

REPO = Path(__file__).resolve().parents[1]
VECTORS = REPO.parent / "shared" / "vectors"
ORIGIN = "test.suyuan.example/log"


def now() -> str:
    return format_time(datetime.now(UTC))


def new_signer(name: str) -> Signer:
    return Signer(name, Ed25519PrivateKey.generate())


@dataclass
class Ledger:
    """A log plus the private keys of its authors (what a test plays with)."""

    engine: Engine
    url: str
    log: Log
    log_signer: Signer
    admin: Signer
    authors: dict[str, Signer] = field(default_factory=dict)

    def statement(self, kind: str, body: Mapping[str, Any], *signers: Signer) -> SignedStatement:
        return sign_statement(make_statement(kind, body, self.log.origin, now()), signers)

    def note(self, text_: str, signer: Signer | None = None) -> Entry:
        author = signer or self.admin
        return self.log.append([self.statement("note", {"text": text_}, author)])[0]

    def notes(self, count: int, signer: Signer | None = None, prefix: str = "note") -> list[Entry]:
        author = signer or self.admin
        items = [self.statement("note", {"text": f"{prefix} {i}"}, author) for i in range(count)]
        return self.log.append(items)

    def register(self, name: str, role: str = "producer", org: str = "合作社 Co-op") -> Signer:
        signer = new_signer(name)
        self.log.append(
            [
                self.statement(
                    "key.registered",
                    {"name": name, "vkey": signer.verifier.vkey, "role": role, "org": org},
                    self.admin,
                )
            ]
        )
        self.authors[name] = signer
        return signer

    def reopen(self) -> Log:
        self.log = Log.open(self.engine, self.log_signer)
        return self.log

    def execute(self, sql: str, **params: Any) -> None:
        """Raw SQL on the real database, as a tamperer would."""
        with self.engine.begin() as conn:
            conn.execute(text(sql), params)


def make_ledger(url: str) -> Ledger:
    engine = make_engine(url)
    upgrade(engine)
    log_signer = new_signer(ORIGIN)
    admin = new_signer("admin")
    log = Log.initialize(engine, log_signer)
    genesis = make_statement(
        "key.registered",
        {
            "name": "admin",
            "vkey": admin.verifier.vkey,
            "role": "admin",
            "org": "县扶贫办 County office",
        },
        ORIGIN,
        now(),
    )
    log.append([sign_statement(genesis, [admin])])
    return Ledger(engine, url, log, log_signer, admin)


def check_ledger(engine: Engine) -> AuditResult:
    """The whole-ledger audit, in process (no worker start-up)."""
    return audit_database(engine, workers=0)


def sqlite_file(url: str) -> str:
    return url.removeprefix("sqlite:///")


def dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table: to show a refused write changed nothing."""
    tables = ["meta", "log_state", "entries", "tree_nodes", "checkpoints", "keys", "api_tokens"]
    tables += sorted(PROJECTIONS) + sorted(PRIVATE_TABLES)
    with engine.connect() as conn:
        return {
            t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY 1"))]
            for t in tables
        }


def env_for(instance: Path, url: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUYUAN_")}
    env.update(
        {
            "SUYUAN_INSTANCE": str(instance),
            "SUYUAN_PASSPHRASE": "test-passphrase",
            "SUYUAN_ORIGIN": ORIGIN,
        }
    )
    if url:
        env["SUYUAN_DATABASE_URL"] = url
    env.update(extra)
    return env


__all__ = ["Sequence", "sqlite3"]


def domain_doc_text(prefix: str = "") -> dict[str, str]:
    """docs/DOMAIN.md: kind → the text of its section, for kinds starting with ``prefix``.

    A section runs from its ``### `kind` `` heading to the next heading of level 1–3.
    """
    import re

    doc = (REPO / "docs" / "DOMAIN.md").read_text(encoding="utf-8")
    sections: dict[str, str] = {}
    for m in re.finditer(r"^### `([a-z][a-z0-9_.]*)`\s*$", doc, flags=re.M):
        if m.group(1).startswith(prefix):
            following = re.compile(r"^#{1,3} ", re.M).search(doc, m.end())
            sections[m.group(1)] = doc[m.end() : following.start() if following else len(doc)]
    return sections


def domain_doc_sections(prefix: str = "") -> dict[str, list[str]]:
    """docs/DOMAIN.md: kind → the ```json blocks of its section (schema first, then examples)."""
    import re

    return {
        kind: re.findall(r"```json\n(.*?)\n```", text, flags=re.S)
        for kind, text in domain_doc_text(prefix).items()
    }


#: The app configuration tests use: a cheap password hash, rate limits off (their own
#: tests switch them on), CSRF on (the portal tests submit real tokens).
TEST_CONFIG = {
    "TESTING": True,
    "SECRET_KEY": "test",
    "SUYUAN_SCRYPT_LOG_N": 4,
    "RATELIMIT_ENABLED": False,
    "SUYUAN_PAGE_SIZE_TTL": 0,  # pages and the checkpoint follow the ledger at once
    "SUYUAN_CHECKPOINT_TTL": 0,
}
