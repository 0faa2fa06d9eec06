"""The log: appending signed statements, and reading entries, tiles and proofs back.

Appending has five stages, named as in docs/FORMAT.md:

1. **Validate** — outside any lock: statement shape (already parsed), and each
   author signature checked against the key it names.  A key id is bound to one
   public key forever (the registry never re-registers a key id), so a signature
   verified here stays valid; only the key's *status* is re-checked in stage 3.
2. **Sign** — done by the authors before calling :meth:`Log.append`.
3. **Sequence** — inside one write transaction holding the log lock (SQLite
   ``BEGIN IMMEDIATE``; PostgreSQL ``SELECT … FOR UPDATE`` on ``log_state``):
   give each statement its seq, ``prev`` link and log time (never decreasing,
   even if the clock steps back), refuse replays, check and apply the rules.
4. **Integrate** — add the leaf hashes to the Merkle tree and store every new
   perfect node, so proofs need O(log n) reads.
5. **Publish** — sign a C2SP checkpoint for the new size and store it.

Stages 3–5 are one database transaction: a crash at any point leaves the whole
batch or none of it, and recovery finds the tree and the newest checkpoint in
agreement (checked at start-up by :meth:`Log.check_startup`).  The log MUST NOT
sign a checkpoint unless the tree it extends hashes to the root of the newest
checkpoint it already signed; :meth:`_sync` enforces this whenever it (re)loads
the tree's right edge.

Concurrent :meth:`Log.append` calls in one process are *group-committed*:
one caller at a time leads — it takes every request queued so far, validates
them and commits them in one transaction with one checkpoint — while the others
sleep until it notifies them.  Each request is all-or-nothing on
its own: a refused request gets its error and the others still land.
Several processes (or hosts) serialise on the database lock.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from ledger import canonical, schema
from ledger import domain as _domain  # noqa: F401  (registers the domain kinds and tables)
from ledger.checkpoint import Checkpoint, sign_checkpoint, verify_checkpoint
from ledger.db import DISK_FULL_MESSAGE, is_disk_full_error, read_snapshot, write_connection
from ledger.entry import Entry, SignedStatement, build_entry, decode_entry, format_time
from ledger.errors import (
    ConfigError,
    Conflict,
    Error,
    InvalidInput,
    NotFound,
    RuleViolation,
    StorageError,
    VerificationError,
)
from ledger.merkle import (
    EMPTY_ROOT,
    CompactRange,
    NodeId,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
)
from ledger.note import Signer, Verifier, parse_vkey
from ledger.projection import PROJECTIONS, Projection, SqlSource, flush
from ledger.rules import KeyRecord, RuleState, apply_entry, check_entry

TILE_HEIGHT, TILE_WIDTH = 8, 256  # C2SP tlog-tiles; see ledger.tiles

Clock = Callable[[], datetime]
#: At most this many statements in one group-commit transaction.
MAX_BATCH = 10_000


@dataclass(frozen=True)
class StoredCheckpoint:
    checkpoint: Checkpoint
    note: str
    created: str

    @property
    def size(self) -> int:
        return self.checkpoint.size


_LATEST_CHECKPOINT = (
    select(
        schema.checkpoints.c.size,
        schema.checkpoints.c.root,
        schema.checkpoints.c.note,
        schema.checkpoints.c.created,
    )
    .order_by(schema.checkpoints.c.size.desc())
    .limit(1)
)


def _sql(conn: Connection, statement: str, params: tuple[Any, ...] = ()) -> Any:
    """Run ``statement`` (``?`` placeholders) through the driver, skipping SQLAlchemy's
    statement construction: the append path's fixed cost per transaction was ~2 ms of it."""
    if conn.dialect.paramstyle != "qmark":
        statement = statement.replace("?", "%s")
    return conn.exec_driver_sql(statement, params)


def insert_many(
    conn: Connection, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    """Insert rows through the driver: the append hot path skips SQLAlchemy's per-row
    parameter processing (measured at ~40 µs an entry).

    PostgreSQL: ``COPY … FROM STDIN`` — an entry and its two tree nodes cost ~30 µs
    of client and server time together, against ~135 µs as a pipelined executemany
    (one Bind/Execute per row).  SQLite: executemany, already in-process and cheap.
    No rows: nothing is sent.
    """
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        _copy_rows(conn, f"COPY {table} ({', '.join(columns)}) FROM STDIN", rows)
        return
    marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([marker] * len(columns))})"
    )
    conn.exec_driver_sql(sql, rows)


def _copy_rows(conn: Connection, statement: str, rows: list[tuple[Any, ...]]) -> None:
    """PostgreSQL COPY on ``conn``'s own driver connection, inside its transaction.

    psycopg's COPY bypasses SQLAlchemy, so its errors are wrapped here as SQLAlchemy
    would wrap them (and a lost connection invalidated): callers, and
    :func:`ledger.db.write_connection`'s error mapping, see what they would see for
    any other statement.
    """
    driver: Any = conn.connection.driver_connection
    cursor = driver.cursor()
    try:
        with cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
    except psycopg.Error as exc:
        lost = conn.dialect.is_disconnect(exc, driver, cursor)  # type: ignore[arg-type]
        if lost:
            conn.invalidate(exc)
        raise DBAPIError.instance(
            statement, None, exc, psycopg.Error, connection_invalidated=lost, dialect=conn.dialect
        ) from exc
    finally:
        cursor.close()


#: Changed rows of one projection table from which PostgreSQL's COPY path pays off:
#: three statements instead of one, but no Bind/Execute per row.
_COPY_ROWS_FROM = 16


def _flush(conn: Connection, projection: Projection) -> None:
    """Stage 4's projection rows, in the append transaction (:func:`ledger.projection.flush`).

    On PostgreSQL, a table with many changed rows goes through COPY into a
    session-local temporary table and one ``INSERT … SELECT … ON CONFLICT`` — the very
    upsert :func:`~ledger.projection.flush` sends row by row (measured with
    ``batch.event`` entries: the server's CPU per entry 73 → 46 µs, the writer's
    311 → 273 µs).  ``changes`` holds one row per key, so the upsert never meets a key
    twice.  The temporary table is emptied at every commit (``ON COMMIT DELETE ROWS``)
    and a rollback takes its rows, and its creation, back with everything else.
    """
    if conn.dialect.name != "postgresql":
        flush(conn, projection)
        return
    by_table: dict[str, list[tuple[Any, ...]]] = {}
    for (table, _), values in projection.changes.items():
        by_table.setdefault(table, []).append(values)
    few = {t for t, rows in by_table.items() if len(rows) < _COPY_ROWS_FROM}
    if few:
        flush(
            conn, Projection(changes={k: v for k, v in projection.changes.items() if k[0] in few})
        )
    for table, rows in sorted(by_table.items()):
        if table in few:
            continue
        spec = PROJECTIONS[table]
        columns = ", ".join(spec.columns)
        updates = [c for c in spec.columns if c not in spec.key]
        conflict = (
            f"DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in updates)}"
            if updates
            else "DO NOTHING"
        )
        staging = f"suyuan_flush_{table}"
        conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} (LIKE {table}) ON COMMIT DELETE ROWS"
        )
        _copy_rows(conn, f"COPY pg_temp.{staging} ({columns}) FROM STDIN", rows)
        conn.exec_driver_sql(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM pg_temp.{staging} "
            f"ON CONFLICT ({', '.join(spec.key)}) {conflict}"
        )


def _node_reader(
    run: Callable[[str, tuple[Any, ...]], Sequence[Any]], marker: str
) -> Callable[[Sequence[NodeId]], list[bytes]]:
    """A merkle ``HashReader`` over ``tree_nodes``: one indexed query per 200 ids.

    Written as an OR of primary-key equalities: SQLite answers a row-value
    ``(level, idx) IN (...)`` with a full table scan, but ORs with a
    multi-index lookup (measured: 10 ms against 0.1 ms at 20,000 entries).
    """

    def read(ids: Sequence[NodeId]) -> list[bytes]:
        wanted = list(dict.fromkeys(ids))
        found: dict[NodeId, bytes] = {}
        for start in range(0, len(wanted), 200):
            chunk = wanted[start : start + 200]
            where = " OR ".join([f"(level = {marker} AND idx = {marker})"] * len(chunk))
            params = tuple(value for node in chunk for value in node)
            for level, idx, digest in run(
                f"SELECT level, idx, hash FROM tree_nodes WHERE {where}", params
            ):
                found[(level, idx)] = bytes(digest)
        missing = [i for i in wanted if i not in found]
        if missing:
            raise StorageError(f"tree node(s) missing from storage: {missing[:5]}")
        return [found[i] for i in ids]

    return read


def _cursor_reader(cursor: Any, marker: str) -> Callable[[Sequence[NodeId]], list[bytes]]:
    def run(sql: str, params: tuple[Any, ...]) -> Sequence[Any]:
        cursor.execute(sql, params)
        return list(cursor.fetchall())

    return _node_reader(run, marker)


def _published_by(cursor: Any) -> int:
    cursor.execute("SELECT MAX(size) FROM checkpoints")
    row = cursor.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


_F = TypeVar("_F", bound=Callable[..., Any])


def _storage_errors(method: _F) -> _F:
    """Public read methods raise :class:`StorageError`, never a raw driver error."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except (
            SQLAlchemyError,
            sqlite3.Error,
            psycopg.Error,
        ) as exc:  # driver errors too: proofs use the driver
            detail = " ".join(str(getattr(exc, "orig", None) or exc).split())
            if is_disk_full_error(exc):  # e.g. PostgreSQL's temporary files for a big sort
                raise StorageError(f"{DISK_FULL_MESSAGE} ({detail})") from None
            raise StorageError(f"database error: {detail}") from None

    return wrapper  # type: ignore[return-value]


class _Request:
    """One caller's all-or-nothing list of statements, waiting for group commit."""

    def __init__(self, items: Sequence[SignedStatement], verified: Sequence[bool] | None) -> None:
        self.items = items
        self.verified = verified  # None: stage 1 not done yet (the leader does it)
        self.done = False
        self.entries: list[Entry] = []
        self.error: BaseException | None = None
        self.refused: SignedStatement | None = None  # the statement a kind's rule refused


def read_keys(conn: Connection) -> dict[str, KeyRecord]:
    """The ``keys`` projection table, by key id (a read cache of the key.* entries)."""
    return {
        r.key_id: KeyRecord(
            r.key_id, r.name, r.vkey, r.role, r.org, r.registered_seq, r.revoked_seq
        )
        for r in conn.execute(select(schema.keys))
    }


def store_keys(conn: Connection, keys: Mapping[str, KeyRecord]) -> None:
    """Bring the ``keys`` table to the replayed registry ``keys``: only rows that differ."""
    stored = read_keys(conn)
    for key_id, record in keys.items():
        if stored.get(key_id) == record:
            continue
        values = {
            "name": record.name,
            "vkey": record.vkey,
            "role": record.role,
            "org": record.org,
            "registered_seq": record.registered_seq,
            "revoked_seq": record.revoked_seq,
        }
        if key_id not in stored:
            conn.execute(insert(schema.keys).values(key_id=key_id, **values))
        else:
            conn.execute(update(schema.keys).where(schema.keys.c.key_id == key_id).values(**values))


class Log:
    """An RFC 9162 Merkle log stored in a SQL database (SQLite or PostgreSQL).

    Construct with :meth:`open` (an existing log) or :meth:`initialize` (a new
    one).  A log opened without ``signer`` is read-only.
    """

    def __init__(
        self,
        engine: Engine,
        origin: str,
        verifier: Verifier,
        signer: Signer | None,
        clock: Clock | None = None,
    ) -> None:
        self.engine = engine
        self.origin = origin
        self.verifier = verifier
        self.signer = signer
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        # Group commit: callers queue requests under this condition; one of them at a
        # time leads (validates and commits everything queued), the others wait.
        self._group = threading.Condition()
        self._leading = False
        self._queue: list[_Request] = []
        # Caches owned by the commit-lock holder; valid only for the size they name.
        self._range: CompactRange | None = None
        self._state: RuleState | None = None
        self._registry_seq: int | None = None
        self._verifiers: dict[str, Verifier] = {}  # parsed vkeys; immutable, safe to share

    # --- opening --------------------------------------------------------------------

    @classmethod
    def initialize(cls, engine: Engine, signer: Signer, clock: Clock | None = None) -> Log:
        """Create an empty log whose origin is the log key's name; sign its size-0 checkpoint.

        The schema MUST already exist (``ledger.db.upgrade``).  Raises
        :class:`ConfigError` if the database already holds a log.
        """
        origin = signer.verifier.name
        log = cls(engine, origin, signer.verifier, signer, clock)
        with write_connection(engine) as conn:
            if conn.execute(select(schema.log_state.c.size)).first() is not None:
                raise ConfigError(
                    "the database already holds a log; refusing to initialise it again"
                )
            conn.execute(
                insert(schema.meta),
                [
                    {"name": "origin", "value": origin},
                    {"name": "log_vkey", "value": signer.verifier.vkey},
                    {"name": "format", "value": "1"},
                ],
            )
            conn.execute(
                insert(schema.log_state).values(
                    id=1, size=0, last_hash=b"", last_time="", registry_seq=-1
                )
            )
            log._publish(conn, CompactRange.empty(), format_time(log.clock()))
        return log

    @classmethod
    def open(cls, engine: Engine, signer: Signer | None = None, clock: Clock | None = None) -> Log:
        """Open the log stored in ``engine``'s database.

        With a ``signer`` (a writer), the signer MUST be the log's key, and the
        stored tree is checked against the newest checkpoint before anything is
        signed (:meth:`check_startup`).
        """
        try:
            with engine.connect() as conn:
                meta = select(schema.meta.c.name, schema.meta.c.value)
                rows = {r.name: r.value for r in conn.execute(meta)}
        except SQLAlchemyError as exc:  # no tables, no database, no server: no usable log here
            if is_disk_full_error(exc):  # not a missing log: `suyuan init` would not help
                raise StorageError(f"{DISK_FULL_MESSAGE} ({getattr(exc, 'orig', exc)})") from None
            raise ConfigError(f"no log in this database (run `suyuan init`): {exc}") from None
        if "origin" not in rows or "log_vkey" not in rows:
            raise ConfigError("no log in this database (run `suyuan init`)")
        verifier = parse_vkey(rows["log_vkey"])
        if signer is not None and signer.verifier.vkey != verifier.vkey:
            raise ConfigError(
                f"the log key in the instance folder ({signer.verifier.key_id}) is not this log's key "
                f"({verifier.key_id})"
            )
        log = cls(engine, rows["origin"], verifier, signer, clock)
        if signer is not None:
            log.check_startup()
        return log

    @_storage_errors
    def check_startup(self) -> None:
        """Refuse to run if the stored tree disagrees with the newest signed checkpoint.

        Reads one snapshot: another process appending between reading the log state
        and the newest checkpoint MUST NOT look like a disagreement."""
        with read_snapshot(self.engine) as conn:
            size = conn.execute(select(schema.log_state.c.size)).scalar_one()
            rng = self._load_range(conn, size)
        with self._group:  # the first append reuses it instead of loading it again
            if not self._leading:
                self._range = rng

    # --- the append path ------------------------------------------------------------

    def append(
        self, items: Sequence[SignedStatement], *, signatures_verified: bool = False
    ) -> list[Entry]:
        """Append ``items`` as one all-or-nothing request; return their entries.

        ``signatures_verified`` MAY be set only by a caller that produced the
        signatures itself in this process with the registered keys (``suyuan
        append --key``); everything else is verified in stage 1.
        Raises an :class:`~ledger.errors.Error` and writes nothing on refusal.
        """
        if self.signer is None:
            raise ConfigError("this log was opened read-only (no log key)")
        if not items:
            return []
        if len(items) > MAX_BATCH:
            raise InvalidInput(f"at most {MAX_BATCH} statements in one append, got {len(items)}")
        request = _Request(items, [True] * len(items) if signatures_verified else None)
        with self._group:
            self._queue.append(request)
            while not request.done:
                if self._leading:
                    self._group.wait()  # a leader is committing; it will notify us
                    continue
                # Lead: take everything queued so far and commit it as one group.
                self._leading = True
                batch, self._queue = self._queue, []
                self._group.release()
                try:
                    self._lead(batch)
                finally:
                    self._group.acquire()
                    self._leading = False
                    self._group.notify_all()
        if request.error is not None:
            raise request.error
        return request.entries

    @_storage_errors
    def check(self, items: Sequence[SignedStatement]) -> list[Error | None]:
        """Dry run: the error each statement would meet if appended, in order, now.

        ``None`` where a statement would pass.  A statement that fails is left out
        for the ones after it (as if it had been removed), so one run reports every
        bad statement, not only the first.  Nothing is written and nothing locked;
        :meth:`append` checks everything again, so a write racing with this run
        cannot slip past the rules.  The checks read one snapshot of the log.
        """
        with read_snapshot(self.engine) as conn:
            row = _sql(
                conn, "SELECT size, last_hash, last_time, registry_seq FROM log_state WHERE id = 1"
            ).one()
            state = self._replay_registry(conn)
            state.size = row.size
            state.rows = Projection(SqlSource(conn))
            time = max(format_time(self.clock()), row.last_time)
            seq, prev = row.size, bytes(row.last_hash)
            seen = self._stored_digests(conn, [_Request(items, None)])
            results: list[Error | None] = []
            for signed in items:
                digest = signed.statement.digest()
                if digest in seen:
                    results.append(
                        Conflict(
                            f"already in the log (or earlier in this run) at seq {seen[digest]}"
                        )
                    )
                    continue
                try:
                    entry = build_entry(seq, prev, time, signed)
                    check_entry(entry, state)
                except Error as exc:
                    results.append(exc)
                    continue
                apply_entry(entry, state)
                seen[digest] = seq
                seq, prev = seq + 1, leaf_hash(entry.leaf)
                results.append(None)
            conn.rollback()
        return results

    def _lead(self, batch: list[_Request]) -> None:
        """Stage 1 for the whole group, then stages 3–5 in one transaction.

        Stage 1 runs here, in the leader, before the database lock is taken:
        followers sleep on the condition instead of fighting the leader for the GIL.
        """
        try:
            for queued in batch:
                if queued.verified is None:
                    try:
                        queued.verified = self._validate(queued.items)
                    except Error as exc:
                        queued.error = exc
            pending = [r for r in batch if r.error is None]
            if pending:
                self._commit(pending)
        except BaseException as exc:  # MUST answer every follower, whatever went wrong
            self._invalidate()
            failure = (
                exc
                if isinstance(exc, Error)
                else StorageError(f"append failed, nothing was written: {exc}")
            )
            for request in batch:
                if request.error is None and not request.entries:
                    request.error = failure
            if not isinstance(exc, Exception):
                raise
        finally:
            for request in batch:
                request.done = True

    def _validate(self, items: Sequence[SignedStatement]) -> list[bool]:
        """Stage 1: verify signatures whose keys are known; True where all of an item's were.

        Only the registry replayed from the entries is consulted (never the key
        table); with a cold cache nothing is pre-verified and stage 3 checks all.
        """
        state = self._state
        keys = state.keys if state is not None else {}
        result = []
        for index, signed in enumerate(items):
            message = signed.statement.signed_message()
            all_known = True
            for record in signed.signatures:
                key = keys.get(record.key_id)
                if key is None:
                    all_known = False
                    continue
                try:
                    self._verifier(key.vkey).verify(message, record.sig)
                except VerificationError:
                    where = f"statement {index + 1}: " if len(items) > 1 else ""
                    raise VerificationError(
                        f"{where}signature by {record.key_id} does not verify"
                    ) from None
            result.append(all_known)
        return result

    def _verifier(self, vkey: str) -> Verifier:
        verifier = self._verifiers.get(vkey)
        if verifier is None:
            verifier = self._verifiers[vkey] = parse_vkey(vkey)
        return verifier

    def _commit(self, batch: list[_Request]) -> None:
        """Stages 3–5 for every request in ``batch``, in one transaction."""
        accepted: list[_Request] = []
        try:
            with write_connection(self.engine) as conn:
                # Stage 3 begins: from here to the commit this process holds the log lock.
                lock = " FOR UPDATE" if conn.dialect.name == "postgresql" else ""
                row = _sql(
                    conn,
                    f"SELECT size, last_hash, last_time, registry_seq FROM log_state WHERE id = 1{lock}",
                ).one()
                state, rng = self._sync(conn, row)
                # Projection rows are read inside this transaction, under the lock.
                state.rows = Projection(SqlSource(conn))
                now = format_time(self.clock())
                time = max(now, row.last_time)
                seq, prev = row.size, row.last_hash
                registry_seq = row.registry_seq
                entry_rows: list[tuple[Any, ...]] = []
                node_rows: list[tuple[Any, ...]] = []
                seen = self._stored_digests(conn, batch)  # grows as requests are accepted
                for request in batch:
                    try:
                        outcome = self._sequence(conn, request, state, rng, seq, prev, time, seen)
                    except Error as exc:
                        request.error, request.entries = exc, []
                        continue
                    state, rng, rows, nodes = outcome
                    for row_seq, kind, digest, _leaf in rows:
                        seen[digest] = row_seq
                        if kind.startswith("key."):
                            registry_seq = row_seq
                    seq += len(rows)
                    prev = leaf_hash(rows[-1][3])
                    entry_rows.extend(rows)
                    node_rows.extend(nodes)
                    accepted.append(request)
                if accepted:
                    insert_many(conn, "entries", ("seq", "kind", "stmt_hash", "leaf"), entry_rows)
                    insert_many(conn, "tree_nodes", ("level", "idx", "hash"), node_rows)
                    if registry_seq != row.registry_seq:
                        self._store_keys(conn, state)
                    _flush(conn, state.rows)
                    _sql(
                        conn,
                        "UPDATE log_state SET size = ?, last_hash = ?, last_time = ?, registry_seq = ? "
                        "WHERE id = 1",
                        (seq, prev, time, registry_seq),
                    )
                    # Never older than the entries it covers, nor than the checkpoint
                    # before it: a clock that stepped back MUST NOT make /healthz's
                    # checkpoint time (or a monitor watching it) go backwards.
                    self._publish(conn, rng, max(format_time(self.clock()), time))
            # Committed: the caches now describe the database.
            if accepted:
                state.rows = Projection()  # the next transaction reads the tables afresh
                self._state, self._range, self._registry_seq = state, rng, registry_seq
            self._record_refusals(batch)
        except Error as exc:
            self._invalidate()
            # Those refused during sequencing keep their own error; everyone else
            # (accepted, or never reached because the failure came first) gets this one.
            for request in batch:
                if request in accepted or request.error is None:
                    request.error, request.entries = exc, []
        except Exception as exc:  # a driver error must reach every waiting caller
            self._invalidate()
            failure = StorageError(f"append failed, nothing was written: {exc}")
            for request in batch:
                if request in accepted or request.error is None:
                    request.error, request.entries = failure, []

    def _sequence(
        self,
        conn: Connection,
        request: _Request,
        state: RuleState,
        rng: CompactRange,
        seq: int,
        prev: bytes,
        time: str,
        seen: dict[bytes, int],
    ) -> tuple[RuleState, CompactRange, list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Stages 3 and 4 for one request, on copies: the caller adopts them only on success."""
        trial, trial_rng = state.fork(), CompactRange(rng.size, list(rng.hashes))
        rows: list[tuple[Any, ...]] = []
        nodes: list[tuple[Any, ...]] = []
        digests = [s.statement.digest() for s in request.items]
        for offset, digest in enumerate(digests):
            if digest in seen:
                where = f"statement {offset + 1} " if len(digests) > 1 else "this statement "
                raise Conflict(
                    f"{where}is already in the log at seq {seen[digest]}; "
                    "a signed statement is appended once"
                )
        many = len(request.items) > 1
        local: dict[bytes, int] = {}
        entries = []
        for offset, (signed, digest) in enumerate(zip(request.items, digests, strict=True)):
            where = f"statement {offset + 1}: " if many else ""
            if digest in local:
                raise Conflict(f"{where}repeats statement {local[digest] + 1} of the same request")
            local[digest] = offset
            entry = build_entry(seq + offset, prev, time, signed)
            try:
                checked = request.verified is not None and request.verified[offset]
                check_entry(entry, trial, signatures_checked=checked)
            except Error as exc:
                wrapped = type(exc)(f"{where}{exc}")
                if isinstance(exc, RuleViolation) and isinstance(wrapped, RuleViolation):
                    wrapped.signed_attempt = exc.signed_attempt
                if isinstance(exc, RuleViolation) and exc.signed_attempt:
                    request.refused = signed
                raise wrapped from None
            apply_entry(entry, trial)
            prev = leaf_hash(entry.leaf)
            nodes.extend((lv, ix, h) for (lv, ix), h in trial_rng.append(prev))
            rows.append((entry.seq, entry.kind, digest, entry.leaf))
            entries.append(entry)
        request.entries = entries
        return trial, trial_rng, rows, nodes

    def _record_refusals(self, batch: list[_Request]) -> None:
        """Keep the signed attempts the rules refused (e.g. over-spends) for the anomaly report.

        Runs after the append transaction, in its own: the table is an audit trail
        beside the ledger, not part of it, and a failure here MUST NOT turn a
        committed append into an error (the attempt is then simply not recorded).
        """
        rows = []
        for request in batch:
            error, signed = request.error, request.refused
            if signed is None or not isinstance(error, RuleViolation) or not error.signed_attempt:
                continue
            rows.append(
                (
                    format_time(self.clock()),
                    signed.statement.kind,
                    error.code,
                    str(error)[:2000],
                    canonical.dumps(signed.to_json()).decode(),
                    " ".join(signed.key_ids()),
                )
            )
        if not rows:
            return
        try:
            with write_connection(self.engine) as conn:
                insert_many(
                    conn,
                    "refusals",
                    ("time", "kind", "code", "reason", "statement", "key_ids"),
                    rows,
                )
        except (SQLAlchemyError, Error):
            pass

    def _invalidate(self) -> None:
        self._range = self._state = self._registry_seq = None

    def _stored_digests(self, conn: Connection, batch: list[_Request]) -> dict[bytes, int]:
        """Seqs of the statements in ``batch`` that are already in the log: one query per 500
        (PostgreSQL: one query, the digests as one binary array parameter: 10 ms per 1,000
        digests against 24 ms as IN-lists, which psycopg parses afresh every time)."""
        digests = [signed.statement.digest() for request in batch for signed in request.items]
        found: dict[bytes, int] = {}
        if conn.dialect.name == "postgresql":
            rows = conn.exec_driver_sql(
                "SELECT seq, stmt_hash FROM entries WHERE stmt_hash = ANY(%b)", (digests,)
            )
            return {bytes(digest): int(seq) for seq, digest in rows}
        for start in range(0, len(digests), 500):
            chunk = tuple(digests[start : start + 500])
            marks = ", ".join("?" * len(chunk))
            for seq, digest in _sql(
                conn, f"SELECT seq, stmt_hash FROM entries WHERE stmt_hash IN ({marks})", chunk
            ):
                found[bytes(digest)] = int(seq)
        return found

    def _sync(self, conn: Connection, row: Any) -> tuple[RuleState, CompactRange]:
        """Make the caches describe the database as locked by ``row``; return them."""
        if self._range is None or self._range.size != row.size:
            self._range = self._load_range(conn, row.size)
        if self._state is None or self._registry_seq != row.registry_seq:
            self._state = self._replay_registry(conn)
            self._registry_seq = row.registry_seq
        self._state.size = row.size
        return self._state, self._range

    def _replay_registry(self, conn: Connection) -> RuleState:
        """The key registry rebuilt from the signed key.* entries, checked against the key table.

        Append-time decisions MUST rest on signed entries, not on a table anyone
        with database access could edit; the table is a read cache, and a
        disagreement stops the writer until `suyuan verify` explains it.
        """
        state = RuleState(origin=self.origin)
        e = schema.entries.c
        rows = conn.execute(
            select(e.seq, e.leaf)
            .where(e.kind.in_(("key.registered", "key.revoked")))
            .order_by(e.seq)
        )
        for seq, leaf in rows:
            try:
                entry = decode_entry(bytes(leaf))
                if entry.seq != seq or not entry.kind.startswith("key."):
                    raise StorageError(f"entry {seq} is not the key entry its row says it is")
                apply_entry(entry, state)
            except Error as exc:
                raise StorageError(
                    f"seq {seq}: cannot replay the key registry ({exc}); run `suyuan verify`"
                ) from None
        table = self._read_keys(conn)
        for key_id in sorted(set(table) | set(state.keys)):
            if table.get(key_id) != state.keys.get(key_id):
                raise StorageError(
                    f"the keys table row for {key_id} disagrees with the key registry entries; "
                    "refusing to append until `suyuan verify` explains it"
                )
        return state

    def _load_range(self, conn: Connection, size: int) -> CompactRange:
        """Load the tree's right edge and check it against the newest signed checkpoint.

        This is the guard that keeps the log from ever signing a checkpoint
        inconsistent with one it signed before.
        """
        latest = self._latest_checkpoint(conn)
        if latest is None:
            raise StorageError("the log has no checkpoint; the database is not a Suyuan log")
        if latest.size != size:
            raise StorageError(
                f"log state says size {size} but the newest checkpoint is for size {latest.size}; "
                "refusing to sign anything until `suyuan verify` explains the difference"
            )
        try:
            verify_checkpoint(latest.note, self.verifier, self.origin)
        except Error as exc:
            raise StorageError(f"the newest stored checkpoint does not verify: {exc}") from None
        rng = CompactRange.load(size, self._reader(conn)) if size else CompactRange.empty()
        if rng.root() != latest.checkpoint.root:
            raise StorageError(
                f"the stored tree of size {size} does not hash to the root of the checkpoint "
                "the log signed for that size; refusing to sign anything inconsistent with it"
            )
        return rng

    def _publish(self, conn: Connection, rng: CompactRange, created: str) -> StoredCheckpoint:
        """Stage 5: sign and store the checkpoint for the tree ``rng`` describes."""
        assert self.signer is not None
        cp = Checkpoint(
            origin=self.origin, size=rng.size, root=rng.root() if rng.size else EMPTY_ROOT
        )
        note = sign_checkpoint(cp, self.signer)
        _sql(
            conn,
            "INSERT INTO checkpoints (size, root, note, created) VALUES (?, ?, ?, ?)",
            (cp.size, cp.root, note, created),
        )
        return StoredCheckpoint(cp, note, created)

    def _store_keys(self, conn: Connection, state: RuleState) -> None:
        """Rewrite the key projection rows that differ from ``state`` (only after key.* entries)."""
        store_keys(conn, state.keys)

    # --- reading --------------------------------------------------------------------

    def _read_keys(self, conn: Connection | None = None) -> dict[str, KeyRecord]:
        if conn is None:
            with self.engine.connect() as own:
                return read_keys(own)
        return read_keys(conn)

    @_storage_errors
    def registered_keys(self) -> list[KeyRecord]:
        """Every registered key, in registration order."""
        return sorted(self._read_keys().values(), key=lambda k: k.registered_seq)

    def _reader(self, conn: Connection) -> Callable[[Sequence[NodeId]], list[bytes]]:
        """A merkle ``HashReader`` over ``tree_nodes`` inside ``conn``'s transaction."""
        marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        return _node_reader(lambda sql, params: conn.exec_driver_sql(sql, params).all(), marker)

    @contextmanager
    def _driver_cursor(self) -> Iterator[tuple[Any, str]]:
        """A driver cursor for the proof hot path: SQLAlchemy's execution machinery
        was most of a proof's cost.  Reads only; each statement sees committed data."""
        with self.engine.connect() as conn:
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                yield cursor, "?" if conn.dialect.paramstyle == "qmark" else "%s"
            finally:
                cursor.close()

    def _latest_checkpoint(self, conn: Connection) -> StoredCheckpoint | None:
        row = conn.execute(_LATEST_CHECKPOINT).first()
        if row is None:
            return None
        return StoredCheckpoint(
            Checkpoint(self.origin, row.size, bytes(row.root)), row.note, row.created
        )

    @_storage_errors
    def latest_checkpoint(self) -> StoredCheckpoint:
        """The newest checkpoint the log has signed: what readers see as the log."""
        with self.engine.connect() as conn:
            latest = self._latest_checkpoint(conn)
        if latest is None:
            raise StorageError("the log has no checkpoint")
        return latest

    @_storage_errors
    def checkpoint(self, size: int) -> StoredCheckpoint:
        c = schema.checkpoints.c
        with self.engine.connect() as conn:
            row = conn.execute(
                select(c.size, c.root, c.note, c.created).where(c.size == size)
            ).first()
        if row is None:
            raise NotFound(f"the log signed no checkpoint for size {size}")
        return StoredCheckpoint(
            Checkpoint(self.origin, row.size, bytes(row.root)), row.note, row.created
        )

    @_storage_errors
    def checkpoints(self, *, before: int | None = None, limit: int = 100) -> list[StoredCheckpoint]:
        """Signed checkpoints, newest first (``before``: only sizes below it)."""
        c = schema.checkpoints.c
        query = select(c.size, c.root, c.note, c.created).order_by(c.size.desc()).limit(limit)
        if before is not None:
            query = query.where(c.size < before)
        with self.engine.connect() as conn:
            return [
                StoredCheckpoint(Checkpoint(self.origin, r.size, bytes(r.root)), r.note, r.created)
                for r in conn.execute(query)
            ]

    @_storage_errors
    def size(self) -> int:
        """The size of the newest checkpoint (entries beyond it are not yet published)."""
        return self.latest_checkpoint().size

    def _published(self, conn: Connection) -> int:
        """The newest signed size.  Raw SQL: this runs on every read of the hot path."""
        size = conn.exec_driver_sql("SELECT MAX(size) FROM checkpoints").scalar()
        return int(size) if size is not None else 0

    @_storage_errors
    def leaves(self, start: int, end: int) -> list[bytes]:
        """The leaf bytes of seq ``start`` up to (not including) ``end``."""
        e = schema.entries.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(e.seq, e.leaf).where(e.seq >= start, e.seq < end).order_by(e.seq)
            ).all()
        if len(rows) != end - start:
            raise StorageError(f"entries {start}..{end - 1}: {len(rows)} of {end - start} stored")
        return [bytes(r.leaf) for r in rows]

    @_storage_errors
    def entry(self, seq: int) -> Entry:
        """Entry ``seq``, decoded (raises :class:`NotFound` beyond the published size)."""
        with self.engine.connect() as conn:
            if not 0 <= seq < self._published(conn):
                raise NotFound(f"no entry {seq} in the published log")
            leaf = conn.execute(
                select(schema.entries.c.leaf).where(schema.entries.c.seq == seq)
            ).scalar()
        if leaf is None:
            raise StorageError(f"entry {seq} is missing from storage")
        return decode_entry(bytes(leaf))

    @_storage_errors
    def inclusion_proof(self, seq: int, size: int) -> list[bytes]:
        with self._driver_cursor() as (cursor, marker):
            if not 0 < size <= _published_by(cursor):
                raise NotFound(f"no checkpoint covers size {size}")
            if not 0 <= seq < size:
                raise InvalidInput(f"entry {seq} is not in a tree of size {size}")
            return inclusion_proof(seq, size, _cursor_reader(cursor, marker))

    @_storage_errors
    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        with self._driver_cursor() as (cursor, marker):
            if not 0 < size2 <= _published_by(cursor):
                raise NotFound(f"no checkpoint covers size {size2}")
            if not 0 < size1 <= size2:
                raise InvalidInput(f"consistency needs 0 < from <= to, got from={size1} to={size2}")
            if size1 == size2:
                return []
            return consistency_proof(size1, size2, _cursor_reader(cursor, marker))

    @_storage_errors
    def tile(self, level: int, index: int, width: int) -> bytes:
        """A C2SP tlog-tile's bytes, for the published tree (:class:`NotFound` if it has none)."""
        with self.engine.connect() as conn:
            size = self._published(conn)
            tree_level = level * TILE_HEIGHT
            available = size >> tree_level
            first = index * TILE_WIDTH
            if not (0 <= level < 64 and 1 <= width <= TILE_WIDTH and first + width <= available):
                raise NotFound(
                    f"tile {level}/{index} of width {width} is beyond the published tree of size {size}"
                )
            t = schema.tree_nodes.c
            rows = (
                conn.execute(
                    select(t.hash)
                    .where(t.level == tree_level, t.idx >= first, t.idx < first + width)
                    .order_by(t.idx)
                )
                .scalars()
                .all()
            )
        if len(rows) != width:
            raise StorageError(f"tile {level}/{index}: {len(rows)} of {width} hashes stored")
        return b"".join(bytes(r) for r in rows)

    @_storage_errors
    def entry_bundle(self, index: int, width: int) -> bytes:
        """A C2SP tlog-tiles entry bundle (big-endian uint16 length-prefixed leaves)."""
        with self.engine.connect() as conn:
            size = self._published(conn)
        first = index * TILE_WIDTH
        if not (1 <= width <= TILE_WIDTH and first + width <= size):
            raise NotFound(
                f"entry bundle {index} of width {width} is beyond the published tree of size {size}"
            )
        return b"".join(
            len(leaf).to_bytes(2, "big") + leaf for leaf in self.leaves(first, first + width)
        )
