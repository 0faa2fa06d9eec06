"""A mirror's ledger database: the origin's verified leaves and signed checkpoints, replayed.

``suyuan serve --mirror DIR`` serves the whole read-only site of a Suyuan log it
mirrors (product pages, notices, entries, proofs, the API).  Those pages read a
ledger database, so the mirror builds one, ``DIR/.mirror/ledger.db``, from the
leaves it fetched and verified — the same tables an origin's log writes:

* ``entries`` (the exact leaf bytes), ``tree_nodes`` (every perfect node, as
  :meth:`ledger.merkle.CompactRange.append` yields them, like ``Log._sequence``),
  ``log_state`` and the ``keys`` projection;
* ``checkpoints``: the origin's signed notes *verbatim* (cosignature lines
  included).  The mirror holds no log key and signs nothing: a checkpoint enters
  the database only if it verifies with the origin's verifier key and its root is
  the root of the leaves below it;
* the domain projections, by replaying every rule of every entry
  (:class:`ledger.verify.Auditor`: signatures, registry, kind rules, ``prev``
  links, monotonic log time) and writing the rows with
  :func:`ledger.projection.flush` — as the log does when it appends.

So ``suyuan verify`` (``audit_database``) passes on a mirror's database exactly as
on the origin's, checking the checkpoints against the origin's key in ``meta``.

:func:`ingest` is one database transaction (SQLite ``BEGIN IMMEDIATE``): a crash
or a refusal leaves the database as it was, and concurrent callers serialise on
the write lock.  It is idempotent and resumable: leaves at seqs the database
already holds are compared with the stored ones (a difference is a fork, and is
refused), the rest are appended; a gap is refused.  The leaves MUST end at the
size of a checkpoint among ``checkpoint_notes``: every stored entry is covered by
a signed checkpoint, as on the origin.

:func:`ingest_directory` brings ``DIR/.mirror/ledger.db`` up to ``DIR/checkpoint``
of a static tlog-tiles tree (``suyuan export``'s or ``suyuan mirror``'s layout),
reading only the entry bundles beyond what the database holds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import SQLAlchemyError

from ledger import domain as _domain  # noqa: F401  (registers the domain kinds and tables)
from ledger import schema
from ledger.checkpoint import Checkpoint, verify_checkpoint
from ledger.db import has_schema, make_engine, upgrade, write_connection
from ledger.entry import decode_entry, format_time
from ledger.errors import (
    ConfigError,
    Error,
    InvalidInput,
    NotFound,
    StorageError,
    VerificationError,
)
from ledger.log import insert_many, store_keys
from ledger.merkle import EMPTY_ROOT, CompactRange, NodeId
from ledger.note import Verifier, parse_vkey, split_note
from ledger.projection import Projection, SqlSource, flush
from ledger.rules import KeyRecord, RuleState, apply_entry
from ledger.tiles import TILE_WIDTH, EntryBundle, decode_entry_bundle
from ledger.verify import CHUNK, PARALLEL_THRESHOLD, Auditor, decoded_stream

#: Where a mirror keeps its own state inside the mirrored tree.
STATE_DIR = ".mirror"
DATABASE = "ledger.db"
VKEY_FILE = "vkey"


@dataclass(frozen=True)
class IngestResult:
    """What one :func:`ingest` call did: the database's size before and after."""

    before: int
    size: int
    checkpoints_added: int

    @property
    def added(self) -> int:
        return self.size - self.before


# --- the transaction ---------------------------------------------------------------------


def ingest(
    engine: Engine,
    origin: str,
    vkey: str | Verifier,
    start: int,
    leaves: Iterable[bytes],
    checkpoint_notes: Sequence[str | bytes],
    *,
    workers: int | None = 0,
) -> IngestResult:
    """Add the leaves of seq ``start`` onward and the signed ``checkpoint_notes``.

    ``leaves`` may be a lazy iterable (bundles read as it goes).  Raises
    :class:`VerificationError` naming the seq or checkpoint at the first leaf
    or note that does not verify (a bad signature, a broken rule, a root that
    does not match, a leaf differing from the one stored), :class:`InvalidInput`
    for a gap, :class:`ConfigError` if the database mirrors another log — and then
    nothing was written.  ``workers``: processes decoding and checking signatures
    (0: in this process; None: one per core).
    """
    verifier = vkey if isinstance(vkey, Verifier) else parse_vkey(vkey.strip())
    if verifier.name != origin:
        raise ConfigError(f"the verifier key is named {verifier.name!r}, the origin is {origin!r}")
    notes = _verified_notes(checkpoint_notes, verifier, origin)
    if start < 0:
        raise InvalidInput(f"leaves must start at a seq >= 0, got {start}")
    try:
        if not has_schema(engine):
            upgrade(engine)
        with write_connection(engine) as conn:
            return _Ingest(conn, origin, verifier).run(start, leaves, notes, workers)
    except (SQLAlchemyError, sqlite3.Error) as exc:
        raise StorageError(f"mirror database: {getattr(exc, 'orig', None) or exc}") from None


def _verified_notes(
    notes: Sequence[str | bytes], verifier: Verifier, origin: str
) -> dict[int, tuple[Checkpoint, str]]:
    """Size → (checkpoint, exact note text) for every note; two notes for one size must agree."""
    out: dict[int, tuple[Checkpoint, str]] = {}
    for number, raw in enumerate(notes, start=1):
        try:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
            checkpoint, _opened = verify_checkpoint(text, verifier, origin)
        except UnicodeDecodeError:
            raise VerificationError(f"checkpoint note {number} is not UTF-8") from None
        except Error as exc:
            raise VerificationError(f"checkpoint note {number} does not verify: {exc}") from None
        seen = out.get(checkpoint.size)
        if seen is not None and seen[0].root != checkpoint.root:
            raise VerificationError(
                f"two checkpoints signed for size {checkpoint.size} with different roots: "
                "the log has forked"
            )
        out.setdefault(checkpoint.size, (checkpoint, text))
    return out


def _marker(conn: Connection) -> str:
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


class _Ingest:
    """One ingest transaction on ``conn`` (which holds the database write lock)."""

    def __init__(self, conn: Connection, origin: str, verifier: Verifier) -> None:
        self.conn = conn
        self.origin = origin
        self.verifier = verifier
        # Rows waiting for the next executemany (written every CHUNK entries and at the end).
        self._pending_entries: list[tuple[Any, ...]] = []
        self._pending_nodes: list[tuple[Any, ...]] = []
        self._pending_checkpoints: list[tuple[Any, ...]] = []

    def run(
        self,
        start: int,
        leaves: Iterable[bytes],
        notes: dict[int, tuple[Checkpoint, str]],
        workers: int | None,
    ) -> IngestResult:
        size, last_hash, last_time, registry_seq = self._state_row()
        if start > size:
            raise InvalidInput(
                f"the leaves start at seq {start} but the mirror database holds {size} entries: "
                f"seqs {size}..{start - 1} are missing (a gap)"
            )
        stored = self._stored_checkpoints()
        stored_size = max(stored, default=0)  # a new database: the empty tree
        if stored_size != size:
            raise StorageError(
                f"the mirror database's log state says size {size} but its newest checkpoint is "
                f"for size {stored_size}; delete {DATABASE} and ingest again"
            )
        reader = self._reader()
        rng = CompactRange.load(size, reader) if size else CompactRange.empty()
        if rng.root() != stored.get(size, EMPTY_ROOT):
            raise StorageError(
                f"the mirror database's tree of size {size} does not hash to its checkpoint's root"
            )
        added = self._older_checkpoints(notes, stored, size, reader)
        newer = {n: v for n, v in notes.items() if n > size}
        fresh = self._skip_stored(start, size, iter(leaves))
        first = next(fresh, None)
        if first is None and not newer:
            self._write_pending()
            return IngestResult(size, size, added)
        state = RuleState(origin=self.origin, size=size, keys=self._replay_registry(size))
        state.rows = Projection(SqlSource(self.conn))
        auditor = Auditor(self.origin, [cp for cp, _ in newer.values()])
        # Resume the auditor where the database ends (its attributes are its replay state).
        auditor.state, auditor.range, auditor.prev, auditor.time = state, rng, last_hash, last_time
        leaf_iter: Iterator[bytes] = fresh if first is None else _chain(first, fresh)
        for entry, nodes in self._feed(auditor, size, leaf_iter, workers):
            if entry.kind.startswith("key."):
                registry_seq = entry.seq
            self._pending_entries.append(
                (entry.seq, entry.kind, entry.statement.digest(), entry.leaf)
            )
            self._pending_nodes.extend((level, idx, digest) for (level, idx), digest in nodes)
            if auditor.size in newer:
                cp, note = newer[auditor.size]
                self._pending_checkpoints.append((cp.size, cp.root, note, entry.time))
                added += 1
            if len(self._pending_entries) >= CHUNK:
                self._write_pending()
        count = auditor.size - size
        if count and auditor.size not in newer:
            raise VerificationError(
                f"seq {auditor.size - 1}: the leaves end at size {auditor.size}, for which no "
                f"checkpoint was given (given: {sorted(notes) or 'none'}); every mirrored "
                "entry must be covered by a signed checkpoint"
            )
        beyond = [n for n in newer if n > auditor.size]
        if beyond:
            raise VerificationError(
                f"checkpoint for size {min(beyond)}: only {auditor.size} entries were given"
            )
        auditor.finish()  # a backstop: the checks above are the ones that can fail here
        self._write_pending()
        store_keys(self.conn, state.keys)
        flush(self.conn, state.rows)
        new_size = size + count
        if new_size != size:
            self.conn.exec_driver_sql(
                "UPDATE log_state SET size = {m}, last_hash = {m}, last_time = {m}, "
                "registry_seq = {m} WHERE id = 1".format(m=_marker(self.conn)),
                (new_size, auditor.prev, auditor.time, registry_seq),
            )
        return IngestResult(size, new_size, added)

    # --- reading the database's state --------------------------------------------------

    def _state_row(self) -> tuple[int, bytes, str, int]:
        meta = {
            r.name: r.value
            for r in self.conn.execute(select(schema.meta.c.name, schema.meta.c.value))
        }
        if not meta:
            self.conn.execute(
                schema.meta.insert(),
                [
                    {"name": "origin", "value": self.origin},
                    {"name": "log_vkey", "value": self.verifier.vkey},
                    {"name": "format", "value": "1"},
                ],
            )
            self.conn.execute(
                schema.log_state.insert().values(
                    id=1, size=0, last_hash=b"", last_time="", registry_seq=-1
                )
            )
        elif meta.get("origin") != self.origin or meta.get("log_vkey") != self.verifier.vkey:
            raise ConfigError(
                f"this database holds the log {meta.get('origin')!r} with key "
                f"{meta.get('log_vkey')!r}, not {self.origin!r} with {self.verifier.vkey!r}"
            )
        row = self.conn.execute(
            select(
                schema.log_state.c.size,
                schema.log_state.c.last_hash,
                schema.log_state.c.last_time,
                schema.log_state.c.registry_seq,
            )
        ).one()
        return int(row.size), bytes(row.last_hash), str(row.last_time), int(row.registry_seq)

    def _stored_checkpoints(self) -> dict[int, bytes]:
        c = schema.checkpoints.c
        return {int(r.size): bytes(r.root) for r in self.conn.execute(select(c.size, c.root))}

    def _reader(self) -> Any:
        marker = _marker(self.conn)

        def read(ids: Sequence[NodeId]) -> list[bytes]:
            found: dict[NodeId, bytes] = {}
            wanted = list(dict.fromkeys(ids))
            for first in range(0, len(wanted), 200):
                chunk = wanted[first : first + 200]
                where = " OR ".join([f"(level = {marker} AND idx = {marker})"] * len(chunk))
                params = tuple(value for node in chunk for value in node)
                for level, idx, digest in self.conn.exec_driver_sql(
                    f"SELECT level, idx, hash FROM tree_nodes WHERE {where}", params
                ):
                    found[(int(level), int(idx))] = bytes(digest)
            missing = [node for node in wanted if node not in found]
            if missing:
                raise StorageError(f"mirror database: tree node(s) missing: {missing[:5]}")
            return [found[node] for node in ids]

        return read

    def _replay_registry(self, size: int) -> dict[str, KeyRecord]:
        """The key registry from the stored key.* entries (the rules' view; never the table)."""
        state = RuleState(origin=self.origin)
        e = schema.entries.c
        rows = self.conn.execute(
            select(e.seq, e.leaf)
            .where(e.kind.in_(("key.registered", "key.revoked")), e.seq < size)
            .order_by(e.seq)
        )
        for seq, leaf in rows:
            try:
                apply_entry(decode_entry(bytes(leaf)), state)
            except Error as exc:
                raise StorageError(f"mirror database: seq {seq}: {exc}") from None
        return state.keys

    def _leaf_time(self, seq: int) -> str:
        leaf = self.conn.execute(
            select(schema.entries.c.leaf).where(schema.entries.c.seq == seq)
        ).scalar_one()
        return decode_entry(bytes(leaf)).time

    # --- checking and writing ------------------------------------------------------------

    def _older_checkpoints(
        self,
        notes: dict[int, tuple[Checkpoint, str]],
        stored: dict[int, bytes],
        size: int,
        reader: Any,
    ) -> int:
        """Record notes for sizes the database already covers, after checking their roots.

        A stored checkpoint is never replaced (its note stays as first seen); one
        with a different root for the same size is evidence of a fork.
        """
        added = 0
        for n, (cp, note) in sorted(notes.items()):
            if n > size:
                continue
            root = stored.get(n)
            if root is None:
                root = CompactRange.load(n, reader).root() if n else EMPTY_ROOT
                if root == cp.root:
                    created = self._leaf_time(n - 1) if n else format_time(datetime.now(UTC))
                    self._pending_checkpoints.append((n, cp.root, note, created))
                    added += 1
                    continue
            if root != cp.root:
                raise VerificationError(
                    f"checkpoint for size {n}: its root does not match the mirrored entries "
                    f"0..{n - 1}: the log has forked or was rewritten"
                )
            self._more_cosignatures(n, note)
        return added

    def _more_cosignatures(self, size: int, note: str) -> None:
        """Keep the note with witnesses' cosignatures added since it was first stored.

        Only when the new note is the stored one plus signature lines: same text,
        every stored signature line still there (the log's own verified above).
        """
        c = schema.checkpoints.c
        current = self.conn.execute(select(c.note).where(c.size == size)).scalar_one()
        if current == note:
            return
        old_text, old_signatures = split_note(current)
        new_text, new_signatures = split_note(note)
        old_lines = {s.line() for s in old_signatures}
        new_lines = {s.line() for s in new_signatures}
        if old_text == new_text and old_lines < new_lines:
            self.conn.execute(schema.checkpoints.update().where(c.size == size).values(note=note))

    def _skip_stored(self, start: int, size: int, leaves: Iterator[bytes]) -> Iterator[bytes]:
        """Yield the leaves beyond ``size``; those below it MUST equal the stored ones."""
        seq = start
        e = schema.entries.c
        while seq < size:
            batch = []
            for leaf in leaves:
                batch.append(bytes(leaf))
                if len(batch) == CHUNK or seq + len(batch) == size:
                    break
            if not batch:
                return
            rows = self.conn.execute(
                select(e.seq, e.leaf).where(e.seq >= seq, e.seq < seq + len(batch)).order_by(e.seq)
            ).all()
            for offset, leaf in enumerate(batch):
                if offset >= len(rows) or bytes(rows[offset].leaf) != leaf:
                    raise VerificationError(
                        f"seq {seq + offset}: the leaf differs from the one mirrored before: "
                        "the log has forked or was rewritten"
                    )
            seq += len(batch)
        yield from leaves

    def _feed(
        self, auditor: Auditor, size: int, leaves: Iterator[bytes], workers: int | None
    ) -> Iterator[tuple[Any, list[tuple[NodeId, bytes]]]]:
        hints = {key_id: record.vkey for key_id, record in auditor.state.keys.items()}

        def chunks() -> Iterator[tuple[int, list[bytes]]]:
            seq = size
            batch: list[bytes] = []
            for leaf in leaves:
                batch.append(bytes(leaf))
                if len(batch) == CHUNK:
                    yield seq, batch
                    seq, batch = seq + len(batch), []
                    hints.update({k: r.vkey for k, r in auditor.state.keys.items()})
            if batch:
                yield seq, batch

        for decoded in decoded_stream(chunks(), hints, workers):
            nodes = auditor.feed(decoded)
            assert decoded.entry is not None  # feed raised otherwise
            yield decoded.entry, nodes

    def _write_pending(self) -> None:
        insert_many(
            self.conn, "entries", ("seq", "kind", "stmt_hash", "leaf"), self._pending_entries
        )
        insert_many(self.conn, "tree_nodes", ("level", "idx", "hash"), self._pending_nodes)
        insert_many(
            self.conn, "checkpoints", ("size", "root", "note", "created"), self._pending_checkpoints
        )
        self._pending_entries, self._pending_nodes, self._pending_checkpoints = [], [], []


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


# --- a mirrored directory ------------------------------------------------------------------


def state_dir(directory: Path) -> Path:
    return directory / STATE_DIR


def database_url(directory: Path) -> str:
    return f"sqlite:///{(state_dir(directory) / DATABASE).resolve()}"


def read_vkey(directory: Path) -> str:
    """The verifier key the mirror was set up with (``DIR/.mirror/vkey``)."""
    path = state_dir(directory) / VKEY_FILE
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(
            f"{path} is missing: {directory} is not a mirror made by `suyuan mirror` "
            "(it keeps the log's verifier key there)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None


def read_verifier(directory: Path) -> Verifier:
    """The mirror's verifier key, parsed (a clear error naming the file otherwise)."""
    try:
        return parse_vkey(read_vkey(directory))
    except InvalidInput as exc:
        raise ConfigError(f"{state_dir(directory) / VKEY_FILE}: {exc}") from None


def read_checkpoint(directory: Path, verifier: Verifier) -> tuple[Checkpoint, str]:
    """``DIR/checkpoint``, verified with the mirror's verifier key."""
    path = directory / "checkpoint"
    try:
        note = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path} is missing: {directory} is not a tlog-tiles tree (no checkpoint)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    try:
        checkpoint, _ = verify_checkpoint(note, verifier)
    except Error as exc:
        raise VerificationError(
            f"{path} does not verify with the mirror's key {verifier.key_id}: {exc}"
        ) from None
    return checkpoint, note


def directory_leaves(directory: Path, start: int, size: int) -> Iterator[bytes]:
    """The leaves of seq ``start`` up to ``size`` from DIR's entry bundles, read lazily."""
    seq = start
    while seq < size:
        index = seq // TILE_WIDTH
        width = min(TILE_WIDTH, size - index * TILE_WIDTH)
        bundle = EntryBundle(index, width)
        path = directory / bundle.path()  # built from integers, never from a caller's string
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"{path} is missing (entry bundle for seq {seq})") from None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc}") from None
        try:
            leaves = decode_entry_bundle(data, width)
        except InvalidInput as exc:
            raise VerificationError(f"seq {seq}: entry bundle {bundle.path()}: {exc}") from None
        offset = seq - index * TILE_WIDTH
        yield from leaves[offset:]
        seq = index * TILE_WIDTH + width


def stored_size(engine: Engine) -> int:
    """The number of entries a mirror database holds (0 when it has none yet)."""
    try:
        if not has_schema(engine):
            return 0
        with engine.connect() as conn:
            size = conn.execute(select(schema.log_state.c.size)).scalar()
    except (SQLAlchemyError, sqlite3.Error) as exc:
        raise StorageError(f"mirror database: {getattr(exc, 'orig', None) or exc}") from None
    return int(size) if size is not None else 0


def open_database(directory: Path) -> Engine:
    """The engine of ``DIR/.mirror/ledger.db`` (created, with the schema, if absent)."""
    try:
        state_dir(directory).mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {state_dir(directory)}: {exc}") from None
    engine = make_engine(database_url(directory))
    upgrade(engine)
    return engine


def ingest_directory(
    directory: Path, *, engine: Engine | None = None, workers: int | None = None
) -> IngestResult:
    """Bring ``DIR/.mirror/ledger.db`` up to ``DIR/checkpoint``, verifying as :func:`ingest` does.

    ``workers`` None: one per core when more than a few thousand entries are new.
    """
    verifier = read_verifier(directory)
    checkpoint, note = read_checkpoint(directory, verifier)
    own = engine is None
    engine = engine if engine is not None else open_database(directory)
    try:
        have = stored_size(engine)
        if checkpoint.size < have:
            raise VerificationError(
                f"{directory / 'checkpoint'} is for size {checkpoint.size} but the mirror database "
                f"already holds {have} entries: the mirrored tree was rolled back"
            )
        count = checkpoint.size - have
        if workers is None and count < PARALLEL_THRESHOLD:
            workers = 0
        return ingest(
            engine,
            checkpoint.origin,
            verifier,
            have,
            directory_leaves(directory, have, checkpoint.size),
            [note],
            workers=workers,
        )
    finally:
        if own:
            engine.dispose()
