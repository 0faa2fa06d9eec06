"""A witness's own state: its key, the logs it trusts, what it cosigned, the evidence it kept.

One directory per witness, apart from any log's instance folder (an audit
bureau runs it on its own machine)::

    DIR/witness.key   the Ed25519 cosigning key, PKCS#8 encrypted with the
                      passphrase (SUYUAN_PASSPHRASE), mode 0600 (keys.files)
    DIR/witness.db    SQLite: meta (name, vkey), logs (origin → log vkey),
                      latest (origin → size, root, note), evidence

Contracts:

* ``latest`` changes only in :meth:`WitnessStore.submit`, inside one
  ``BEGIN IMMEDIATE`` transaction that reads the held state, decides
  (:func:`ledger.witness.decide`) and writes a compare-and-swap ``UPDATE …
  WHERE origin = ? AND size = ? AND root = ?``.  SQLite lets one such
  transaction run at a time across threads and processes, so of two racing
  submissions from the same old size exactly one advances and the other is
  answered 409 (tlog-witness: checking ``old`` and persisting MUST be atomic).
* The cosignature is returned only after COMMIT (``synchronous = FULL``): a
  crash before it leaves the old state and no cosignature was handed out; a
  crash after it leaves the new state, and the log can ask again (a checkpoint
  equal to the held one is cosigned again).
* Evidence rows are never updated except to count repeats of the same signed
  checkpoint and reason, and never deleted.  One row per (origin, reason,
  SHA-256 of the checkpoint note) bounds what a replaying stranger can make
  the witness store.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from keys.files import generate_key_file, load_private_key
from ledger.cosignature import Clock, CosignatureSigner
from ledger.errors import ConfigError, InvalidInput, KeyFileError, StorageError
from ledger.note import Verifier, _show, check_key_name, parse_vkey
from ledger.witness import (
    Accepted,
    Decision,
    LogState,
    Refused,
    Submission,
    check_submission,
    decide,
)

__all__ = [
    "DB_FILE",
    "KEY_FILE",
    "EvidenceRecord",
    "TrustedLog",
    "WitnessStore",
]

KEY_FILE = "witness.key"
DB_FILE = "witness.db"
_SCHEMA_VERSION = "1"
_MAX_SQLITE_INT = (1 << 63) - 1
_BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE logs (
    origin TEXT PRIMARY KEY,
    vkey   TEXT NOT NULL,
    added  TEXT NOT NULL
);
CREATE TABLE latest (
    origin  TEXT PRIMARY KEY REFERENCES logs(origin),
    size    INTEGER NOT NULL CHECK (size >= 0),
    root    BLOB NOT NULL CHECK (length(root) = 32),
    note    TEXT NOT NULL,
    -- POSIX time of the newest cosignature given for this log (never decreases)
    cosigned_at INTEGER NOT NULL DEFAULT 0,
    updated TEXT NOT NULL
);
CREATE TABLE evidence (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    first_seen   TEXT NOT NULL,
    last_seen    TEXT NOT NULL,
    repeats      INTEGER NOT NULL DEFAULT 1,
    origin       TEXT NOT NULL,
    reason       TEXT NOT NULL,
    status       INTEGER NOT NULL,
    message      TEXT NOT NULL,
    size         INTEGER,
    witness_size INTEGER,
    witness_note TEXT,
    digest       BLOB NOT NULL,
    body         BLOB NOT NULL,
    UNIQUE (origin, reason, digest)
);
"""


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class TrustedLog:
    """A log the witness trusts, and the latest checkpoint it cosigned for it (if any)."""

    origin: str
    vkey: str
    added: str
    size: int | None
    root: bytes | None
    updated: str | None


@dataclass(frozen=True)
class EvidenceRecord:
    """A refused, log-signed submission kept as possible proof of misbehaviour."""

    id: int
    first_seen: str
    last_seen: str
    repeats: int
    origin: str
    reason: str
    status: int
    message: str
    size: int | None
    witness_size: int | None
    witness_note: str | None
    body: bytes


class WitnessStore:
    """The witness directory.  Open with :meth:`open`; make one with :meth:`create`.

    Each thread uses its own SQLite connection, so one store may be shared by
    threads (gunicorn's gthread workers); processes open their own store.
    """

    def __init__(self, directory: Path, clock: Clock = time.time) -> None:
        self.directory = Path(directory)
        self.clock = clock
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        weakref.finalize(self, _close_all, self._connections)

    # ------------------------------------------------------------------ files

    @property
    def key_path(self) -> Path:
        return self.directory / KEY_FILE

    @property
    def db_path(self) -> Path:
        return self.directory / DB_FILE

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection to the database, opened on first use.

        Connections are kept (one per thread and process) rather than opened
        per request: closing the last connection to a WAL database checkpoints
        and removes the WAL, which would cost several fsyncs on every request.
        """
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        try:
            # mode=rw: never create an empty database by accident.
            conn = sqlite3.connect(
                self.db_path.resolve().as_uri() + "?mode=rw",
                timeout=_BUSY_TIMEOUT_S,
                isolation_level=None,
                uri=True,
                check_same_thread=False,  # only its own thread uses it; close() may run elsewhere
            )
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the witness database {self.db_path}: {exc}") from exc
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._lock:
            self._connections.append(conn)
        return conn

    def close(self) -> None:
        """Close every connection this store opened (it reopens them if used again)."""
        with self._lock:
            connections, self._connections[:] = list(self._connections), []
        self._local = threading.local()
        _close_all(connections)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        try:
            yield conn
        except sqlite3.Error as exc:
            raise StorageError(f"witness database {self.db_path}: {exc}") from exc

    @contextlib.contextmanager
    def _transaction(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``: the write lock is taken before the first read."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @classmethod
    def create(
        cls, directory: Path, name: str, passphrase: bytes, clock: Clock = time.time
    ) -> tuple[WitnessStore, CosignatureSigner]:
        """Make a new witness in ``directory``: its key and its database; return both.

        ``name`` MUST be a valid note key name (a schema-less URL is
        recommended, e.g. ``witness.audit.example/w1``).  Refuses (ConfigError)
        a directory that already holds a witness key or database, and leaves
        it untouched.
        """
        check_key_name(name)
        store = cls(directory, clock)
        for path in (store.key_path, store.db_path):
            if path.exists():
                raise ConfigError(f"{path} exists: {directory} already holds a witness")
        try:
            store.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create {directory}: {exc.strerror}") from exc
        key = generate_key_file(store.key_path, passphrase)
        signer = CosignatureSigner(name, key, clock)
        try:
            store._create_database(signer)
        except BaseException:
            # Leave nothing half made: a key without its database is removed.
            with contextlib.suppress(OSError):
                store.key_path.unlink()
            raise
        return store, signer

    def _create_database(self, signer: CosignatureSigner) -> None:
        tmp = self.db_path.with_name(DB_FILE + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        try:
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.executescript(_SCHEMA)  # autocommit; the file is still private
                conn.execute("BEGIN")
                conn.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [
                        ("schema", _SCHEMA_VERSION),
                        ("name", signer.name),
                        ("vkey", signer.vkey),
                        ("created", _utc(self.clock())),
                    ],
                )
                conn.execute("COMMIT")
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                conn.close()
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    tmp.with_name(tmp.name + suffix).unlink()
            # The database appears complete or not at all.
            os.replace(tmp, self.db_path)
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"cannot create the witness database: {exc}") from exc

    @classmethod
    def open(cls, directory: Path, clock: Clock = time.time) -> WitnessStore:
        """Open an existing witness directory (ConfigError if it holds none)."""
        store = cls(directory, clock)
        if not store.db_path.is_file():
            raise ConfigError(
                f"no witness in {directory}: run `suyuan witness init --dir {directory} "
                "--name NAME` first"
            )
        try:
            meta = store.meta()
        except StorageError as exc:
            raise ConfigError(f"{store.db_path} is not a Suyuan witness database: {exc}") from exc
        if meta.get("schema") != _SCHEMA_VERSION or "name" not in meta or "vkey" not in meta:
            raise ConfigError(f"{store.db_path} is not a Suyuan witness database")
        return store

    def meta(self) -> dict[str, str]:
        with self._connect() as conn:
            rows = conn.execute("SELECT key, value FROM meta").fetchall()
        return {str(k): str(v) for k, v in rows}

    @property
    def name(self) -> str:
        return self.meta()["name"]

    @property
    def vkey(self) -> str:
        """The witness's vkey (signature type 0x04), as logs and clients configure it."""
        return self.meta()["vkey"]

    def signer(self, passphrase: bytes) -> CosignatureSigner:
        """Load the cosigning key; it MUST match the vkey recorded at init (ConfigError)."""
        meta = self.meta()
        key = load_private_key(self.key_path, passphrase)
        signer = CosignatureSigner(meta["name"], key, self.clock)
        if signer.vkey != meta["vkey"]:
            raise KeyFileError(f"{self.key_path} does not hold the key of witness {meta['vkey']}")
        return signer

    # ------------------------------------------------------------------ trust

    def trust(self, vkey: str, origin: str | None = None) -> bool:
        """Trust the log key ``vkey`` (a signed-note vkey, Ed25519) for ``origin``.

        ``origin`` defaults to the key's name.  One key per origin: trusting a
        second, different key for an origin is refused (InvalidInput); the same
        key again changes nothing and returns False.  Returns True when added.
        """
        verifier = parse_vkey(vkey)
        origin = verifier.name if origin is None else origin
        _check_origin(origin)
        with self._connect() as conn, self._transaction(conn):
            row = conn.execute("SELECT vkey FROM logs WHERE origin = ?", (origin,)).fetchone()
            if row is not None:
                if row[0] == verifier.vkey:
                    return False
                raise InvalidInput(
                    f"origin {_show(origin)} is trusted with key {row[0]} already; "
                    f"refusing a second key {verifier.vkey}"
                )
            conn.execute(
                "INSERT INTO logs (origin, vkey, added) VALUES (?, ?, ?)",
                (origin, verifier.vkey, _utc(self.clock())),
            )
        return True

    def verifiers(self) -> dict[str, list[Verifier]]:
        """Trusted origin → its log verifier keys."""
        with self._connect() as conn:
            rows = conn.execute("SELECT origin, vkey FROM logs").fetchall()
        result: dict[str, list[Verifier]] = {}
        for origin, vkey in rows:
            try:
                result.setdefault(origin, []).append(parse_vkey(vkey))
            except InvalidInput as exc:
                raise StorageError(f"trusted key of {_show(origin)} is unreadable: {exc}") from exc
        return result

    def logs(self) -> list[TrustedLog]:
        """Every trusted log with its latest cosigned size and root, by origin."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT l.origin, l.vkey, l.added, t.size, t.root, t.updated "
                "FROM logs l LEFT JOIN latest t ON t.origin = l.origin ORDER BY l.origin"
            ).fetchall()
        return [
            TrustedLog(o, v, a, s, bytes(r) if r is not None else None, u)
            for o, v, a, s, r, u in rows
        ]

    def state(self, origin: str) -> LogState | None:
        """The latest checkpoint cosigned for ``origin`` (None if none)."""
        with self._connect() as conn:
            return _read_state(conn, origin)

    # ------------------------------------------------------------ add-checkpoint

    def submit(self, body: bytes, signer: CosignatureSigner) -> Decision:
        """Handle one add-checkpoint request body end to end; return the decision.

        State-independent checks run first, outside any lock.  Then, in one
        ``BEGIN IMMEDIATE`` transaction: read the held state, decide, and
        either compare-and-swap the new state or keep the evidence.  The
        returned :class:`~ledger.witness.Accepted` is committed already.
        """
        checked = check_submission(body, self.verifiers())
        if isinstance(checked, Refused):
            if checked.evidence and checked.origin is not None:
                with self._connect() as conn, self._transaction(conn):
                    self._keep(conn, checked, body, _read_state(conn, checked.origin))
            return checked
        if checked.checkpoint.size > _MAX_SQLITE_INT:
            return Refused(
                400,
                "malformed",
                f"checkpoint size {checked.checkpoint.size} exceeds what this witness stores",
                checked.origin,
                checked.checkpoint,
            )
        with self._connect() as conn, self._transaction(conn):
            current = _read_state(conn, checked.origin)
            decision = decide(checked, current, signer)
            if isinstance(decision, Refused):
                if decision.evidence:
                    self._keep(conn, decision, body, current)
            else:
                self._swap(conn, checked, decision)
        return decision

    def _swap(self, conn: sqlite3.Connection, checked: Submission, decision: Accepted) -> None:
        """Replace ``decision.previous`` by ``decision.state``; it MUST still be there."""
        new, old = decision.state, decision.previous
        now = _utc(self.clock())
        if old is None:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO latest (origin, size, root, note, cosigned_at, updated) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (checked.origin, new.size, new.root, new.note, new.timestamp, now),
            )
        else:
            cursor = conn.execute(
                "UPDATE latest SET size = ?, root = ?, note = ?, cosigned_at = ?, updated = ? "
                "WHERE origin = ? AND size = ? AND root = ?",
                (
                    new.size,
                    new.root,
                    new.note,
                    new.timestamp,
                    now,
                    checked.origin,
                    old.size,
                    old.root,
                ),
            )
        if cursor.rowcount != 1:
            # Cannot happen under BEGIN IMMEDIATE; if it does, refuse to cosign.
            raise StorageError(
                f"witness state of {_show(checked.origin)} changed during the transaction"
            )

    def _keep(
        self, conn: sqlite3.Connection, refused: Refused, body: bytes, current: LogState | None
    ) -> None:
        note = body.partition(b"\n\n")[2]
        digest = hashlib.sha256(note).digest()
        now = _utc(self.clock())
        size = refused.checkpoint.size if refused.checkpoint is not None else None
        conn.execute(
            "INSERT INTO evidence (first_seen, last_seen, origin, reason, status, message, size, "
            "witness_size, witness_note, digest, body) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (origin, reason, digest) DO UPDATE SET "
            "last_seen = excluded.last_seen, repeats = repeats + 1",
            (
                now,
                now,
                refused.origin,
                refused.reason,
                refused.status,
                refused.message,
                size if size is None or size <= _MAX_SQLITE_INT else None,
                current.size if current is not None else None,
                current.note if current is not None else None,
                digest,
                body,
            ),
        )

    # --------------------------------------------------------------- evidence

    def evidence(self, origin: str | None = None) -> list[EvidenceRecord]:
        """Kept evidence, oldest first (only ``origin``'s if given)."""
        query = (
            "SELECT id, first_seen, last_seen, repeats, origin, reason, status, message, size, "
            "witness_size, witness_note, body FROM evidence"
        )
        params: Sequence[str] = ()
        if origin is not None:
            query += " WHERE origin = ?"
            params = (origin,)
        with self._connect() as conn:
            rows = conn.execute(query + " ORDER BY id", params).fetchall()
        return [
            EvidenceRecord(
                id=int(r[0]),
                first_seen=str(r[1]),
                last_seen=str(r[2]),
                repeats=int(r[3]),
                origin=str(r[4]),
                reason=str(r[5]),
                status=int(r[6]),
                message=str(r[7]),
                size=None if r[8] is None else int(r[8]),
                witness_size=None if r[9] is None else int(r[9]),
                witness_note=None if r[10] is None else str(r[10]),
                body=bytes(r[11]),
            )
            for r in rows
        ]

    def evidence_count(self) -> int:
        with self._connect() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM evidence").fetchone()[0])


def _close_all(connections: list[sqlite3.Connection]) -> None:
    for conn in connections:
        with contextlib.suppress(sqlite3.Error):
            conn.close()
    connections.clear()


def _check_origin(origin: str) -> str:
    if not isinstance(origin, str) or not origin or origin != origin.strip():
        raise InvalidInput(f"expected a non-empty origin without outer spaces, found {origin!r}")
    if any(ch < " " for ch in origin):
        raise InvalidInput(f"expected an origin without control characters, found {origin!r}")
    return origin


def _read_state(conn: sqlite3.Connection, origin: str) -> LogState | None:
    row = conn.execute(
        "SELECT size, root, note, cosigned_at FROM latest WHERE origin = ?", (origin,)
    ).fetchone()
    if row is None:
        return None
    return LogState(int(row[0]), bytes(row[1]), str(row[2]), int(row[3]))
