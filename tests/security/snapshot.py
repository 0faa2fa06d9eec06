"""A whole-state snapshot, to show that a refused write changed nothing.

:func:`take` reads every row of every table the database actually has (reflected, so a
table added by a later migration is covered without editing this file; it also insists
that every table ``ledger.schema.metadata`` knows is among them), the newest signed
checkpoint, and the instance folder's files with their SHA-256 — keys, blobs, the private
key — except the SQLite database files themselves (their rows are already in the
snapshot; their bytes change on mere reads, e.g. a WAL checkpoint).

:func:`assert_unchanged` compares two snapshots and names every difference.  The one
table that a refused write MAY change is ``refusals``: the log keeps there, beside the
ledger and on purpose, each signed statement a kind's rule refused (an over-spend, a
duplicate payment) as evidence of the attempt.  Callers say how many such rows they
expect (``refusals=``); rows already there MUST stay as they were.

:func:`take_sqlite_file` does the same for a plain SQLite file (a witness's
``witness.db``).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, inspect, text

from ledger import domain as _domain  # noqa: F401  (registers the domain tables)
from ledger import private as _private  # noqa: F401  (household_private)
from ledger.schema import metadata

#: Files in an instance folder that belong to the SQLite database (compared as rows).
_DB_SUFFIXES = (".db", ".db-wal", ".db-shm", ".db-journal", ".sqlite", ".sqlite-wal")
#: Tables beside the ledger that a refused write may add rows to (see the module doc).
EVIDENCE_TABLES = ("refusals",)

Rows = list[tuple[Any, ...]]


@dataclass(frozen=True)
class Snapshot:
    tables: dict[str, Rows]
    checkpoint: str | None
    files: dict[str, str] = field(default_factory=dict)  # relative path -> SHA-256 hex


def _norm(value: Any) -> Any:
    if isinstance(value, memoryview):
        return bytes(value)
    return value


def _sorted(rows: Iterable[Iterable[Any]]) -> Rows:
    return sorted((tuple(_norm(v) for v in row) for row in rows), key=repr)


def table_rows(engine: Engine) -> dict[str, Rows]:
    """Every row of every table in ``engine``'s database (PostgreSQL: the current schema)."""
    names = sorted(inspect(engine).get_table_names())
    missing = sorted(set(metadata.tables) - set(names))
    assert not missing, f"tables of ledger.schema missing from the database: {missing}"
    quote = engine.dialect.identifier_preparer.quote
    with engine.connect() as conn:
        return {name: _sorted(conn.execute(text(f"SELECT * FROM {quote(name)}"))) for name in names}


def instance_files(root: Path | None) -> dict[str, str]:
    if root is None or not root.exists():
        return {}
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.endswith(_DB_SUFFIXES):
            found[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def take(engine: Engine, instance: Path | None = None) -> Snapshot:
    tables = table_rows(engine)
    newest = max(tables.get("checkpoints", []), key=lambda r: int(r[0]), default=None)
    return Snapshot(tables, None if newest is None else str(newest[2]), instance_files(instance))


def take_sqlite_file(path: Path, directory: Path | None = None) -> Snapshot:
    """A plain SQLite database file (read-only), plus the files of ``directory``."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        tables = {n: _sorted(conn.execute(f'SELECT * FROM "{n}"')) for n in sorted(names)}
    finally:
        conn.close()
    return Snapshot(tables, None, instance_files(directory))


def differences(
    before: Snapshot, after: Snapshot, added: Mapping[str, int] | None = None
) -> list[str]:
    """What changed, one line each; ``added[table] = n``: that table may (must) gain n rows."""
    added = dict(added or {})
    found: list[str] = []
    if before.checkpoint != after.checkpoint:
        found.append(f"newest checkpoint changed:\n{before.checkpoint}---\n{after.checkpoint}")
    for name in sorted(set(before.tables) | set(after.tables)):
        old, new = before.tables.get(name), after.tables.get(name)
        if old is None or new is None:
            found.append(f"table {name} {'appeared' if old is None else 'disappeared'}")
            continue
        gone = [r for r in old if r not in new]
        extra = [r for r in new if r not in old]
        want = added.pop(name, 0)
        if gone:
            found.append(f"table {name}: {len(gone)} row(s) changed or deleted, e.g. {gone[0]!r}")
        if len(extra) != want:
            example = f", e.g. {extra[0]!r}" if extra else ""
            found.append(f"table {name}: {len(extra)} new row(s), expected {want}{example}")
    for name, want in added.items():
        found.append(f"table {name}: expected {want} new row(s) but there is no such table")
    for path in sorted(set(before.files) | set(after.files)):
        old_hash, new_hash = before.files.get(path), after.files.get(path)
        if old_hash != new_hash:
            what = "created" if old_hash is None else "deleted" if new_hash is None else "changed"
            found.append(f"file {path} {what}")
    return found


def assert_unchanged(before: Snapshot, after: Snapshot, *, refusals: int = 0) -> None:
    """Nothing changed but ``refusals`` new rows of kept evidence (see the module doc)."""
    problems = differences(before, after, {"refusals": refusals} if refusals else None)
    assert not problems, "a refused write changed the state:\n" + "\n".join(problems)
