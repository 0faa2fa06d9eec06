"""Auditing a whole log: from its database, or from its tiles alone.

:class:`Auditor` is the pure core.  It is fed every leaf in order and checks,
for each: the leaf is the canonical encoding of a valid entry; its seq is its
position; ``prev`` is the previous leaf hash; the log time never decreases; each
signature verifies and its key was registered and not revoked at that seq; the
kind's rules hold (replayed from the entries alone).  It rebuilds the Merkle
tree and checks the root of every signed checkpoint against it — so all
checkpoints are proven consistent with one another and with the entries.

The expensive part (parsing and Ed25519) runs in worker processes, one per
core.  Workers verify signatures against *hint* keys (the database's key table,
or for a remote log the keys seen so far); the auditor accepts a worker's
verdict only where the hint equals the key the registry replay says that key
id had, and re-verifies itself otherwise.  So a tampered key table can slow the
audit down but never fool it.

The first problem found raises :class:`~ledger.errors.VerificationError` whose
message starts with the seq it concerns (``seq 1234: prev hash does not match
entry 1233``), or names the checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

from sqlalchemy import Engine, func, select

from ledger import domain as _domain  # noqa: F401  (registers the domain kinds and tables)
from ledger import schema
from ledger.checkpoint import Checkpoint, verify_checkpoint
from ledger.db import read_snapshot
from ledger.entry import Entry, decode_entry
from ledger.errors import Error, VerificationError
from ledger.merkle import EMPTY_ROOT, CompactRange, NodeId, leaf_hash
from ledger.note import Verifier, parse_vkey
from ledger.projection import compare
from ledger.rules import KeyRecord, RuleState, apply_entry, check_entry

#: Leaves per unit of work sent to a worker process.
CHUNK = 2048
#: Below this many entries the audit runs in-process (no worker start-up cost).
PARALLEL_THRESHOLD = 4096

Progress = Callable[[int, int], None]


# --- worker side --------------------------------------------------------------------

_verifier_cache: dict[str, Verifier] = {}


def _hint_verifier(vkey: str) -> Verifier | None:
    verifier = _verifier_cache.get(vkey)
    if verifier is None:
        try:
            verifier = parse_vkey(vkey)
        except Error:
            return None
        _verifier_cache[vkey] = verifier
    return verifier


@dataclass
class Decoded:
    """A worker's verdict on one leaf: the entry (or why it failed) and which keys verified."""

    seq: int
    leaf_hash: bytes
    entry: Entry | None
    error: str | None
    verified: dict[str, str] = field(default_factory=dict)  # key id -> the vkey it verified under


def decode_chunk(start: int, leaves: Sequence[bytes], hints: dict[str, str]) -> list[Decoded]:
    """Decode and signature-check ``leaves`` (seq ``start`` onward).  Runs in workers."""
    out = []
    keys = dict(hints)
    for offset, leaf in enumerate(leaves):
        seq = start + offset
        try:
            entry = decode_entry(leaf)
        except Error as exc:
            out.append(Decoded(seq, leaf_hash(leaf), None, str(exc)))
            continue
        verified: dict[str, str] = {}
        message = entry.statement.signed_message()
        if entry.kind == "key.registered":
            # Later entries in this chunk may be signed by the key registered here.
            registered = _hint_verifier(str(entry.body.get("vkey")))
            if registered is not None:
                keys.setdefault(registered.key_id, registered.vkey)
        for record in entry.signed.signatures:
            vkey = keys.get(record.key_id)
            verifier = _hint_verifier(vkey) if vkey else None
            if verifier is None or verifier.key_id != record.key_id:
                continue
            try:
                verifier.verify(message, record.sig)
            except VerificationError:
                continue
            verified[record.key_id] = vkey  # type: ignore[assignment]
        out.append(Decoded(seq, leaf_hash(leaf), entry, None, verified))
    return out


# --- the auditor --------------------------------------------------------------------


@dataclass
class AuditResult:
    size: int
    checkpoints: int
    root: bytes
    keys: dict[str, KeyRecord]


class Auditor:
    """Feeds on the log's leaves in order; raises at the first problem."""

    def __init__(
        self,
        origin: str,
        checkpoints: Iterable[Checkpoint],
        stored_changed: Callable[[int], str] = lambda seq: (
            f"the stored tree node (level 0, index {seq}) was changed"
        ),
    ) -> None:
        self._stored_changed = stored_changed
        self.state = RuleState(origin=origin)
        self.range = CompactRange.empty()
        self.prev = b""
        self.time = ""
        self._pending = sorted(checkpoints, key=lambda c: c.size)
        self._newest = self._pending[-1].size if self._pending else 0
        self._suspect: int | None = None  # seq whose leaf hash differs from the stored one
        self.checked_checkpoints = 0
        self._check_checkpoints_at(0)

    @property
    def size(self) -> int:
        return self.range.size

    def feed(
        self, decoded: Decoded, stored_leaf: bytes | None = None
    ) -> list[tuple[NodeId, bytes]]:
        """Check one leaf; return the tree nodes it completes (for comparing with storage).

        ``stored_leaf`` is the leaf hash the log integrated for this seq (its
        level-0 tree node, or the served level-0 tile).  When it differs from
        the entry's hash, either the entry or the tree was changed; the next
        entry's ``prev`` link, or the next checkpoint's root, tells which.
        """
        seq = decoded.seq
        if seq != self.range.size:
            raise VerificationError(
                f"seq {self.range.size}: missing (the next stored entry is seq {seq})"
            )
        if decoded.entry is None:
            raise VerificationError(f"seq {seq}: {decoded.error}")
        entry = decoded.entry
        if self._suspect is not None:
            self._judge_suspect(f"entry {seq}'s prev link", entry.prev == self.prev)
        if entry.seq != seq:
            raise VerificationError(f"seq {seq}: the entry stored here says it is seq {entry.seq}")
        if entry.prev != self.prev:
            raise VerificationError(
                f"seq {seq}: prev hash does not match entry {seq - 1}"
                if seq
                else f"seq {seq}: prev must be empty"
            )
        if entry.time < self.time:
            raise VerificationError(
                f"seq {seq}: log time {entry.time} is before entry {seq - 1}'s {self.time}"
            )
        keys = self.state.keys
        verified = decoded.verified
        trusted = all(
            key_id in verified and key_id in keys and keys[key_id].vkey == verified[key_id]
            for key_id in entry.signed.key_ids()
        )
        try:
            check_entry(entry, self.state, signatures_checked=trusted)
            apply_entry(entry, self.state)
        except Error as exc:
            raise VerificationError(f"seq {seq}: {exc}") from None
        self.prev, self.time = decoded.leaf_hash, entry.time
        if stored_leaf is not None and stored_leaf != decoded.leaf_hash:
            self._suspect = seq
        nodes = self.range.append(decoded.leaf_hash)
        self._check_checkpoints_at(self.range.size)
        return nodes

    def _judge_suspect(self, witness: str, entry_is_original: bool) -> None:
        """Raise for the entry whose leaf hash differs from the stored one, naming what changed."""
        seq = self._suspect
        assert seq is not None
        if entry_is_original:
            raise VerificationError(
                f"seq {seq}: {self._stored_changed(seq)}; the entry itself still matches {witness}"
            )
        raise VerificationError(
            f"seq {seq}: the entry was changed after it was logged: its hash matches neither the "
            f"stored tree nor {witness}"
        )

    def _check_checkpoints_at(self, size: int) -> None:
        while self._pending and self._pending[0].size == size:
            cp = self._pending.pop(0)
            root = self.range.root() if size else EMPTY_ROOT
            if self._suspect is not None:
                self._judge_suspect(f"the checkpoint for size {size}", cp.root == root)
            if cp.root != root:
                raise VerificationError(
                    f"checkpoint for size {size}: its root does not match entries 0..{size - 1}; "
                    f"the log was rewritten at or before seq {size - 1}"
                )
            self.checked_checkpoints += 1

    def finish(self) -> AuditResult:
        if self._suspect is not None:
            self._judge_suspect("anything after it", False)
        if self._newest < self.range.size:
            raise VerificationError(
                f"seq {self._newest}: entries {self._newest}..{self.range.size - 1} are covered by no "
                f"signed checkpoint (the newest is for size {self._newest}); the log signs one with "
                "every batch, so checkpoints were deleted or entries inserted"
            )
        if self._pending:
            cp = self._pending[0]
            raise VerificationError(
                f"checkpoint for size {cp.size}: the log holds only {self.range.size} entries "
                f"(seq {self.range.size} onward is missing)"
            )
        return AuditResult(
            self.range.size,
            self.checked_checkpoints,
            self.range.root() if self.range.size else EMPTY_ROOT,
            self.state.keys,
        )


def decoded_stream(
    chunks: Iterable[tuple[int, list[bytes]]], hints: dict[str, str], workers: int | None
) -> Iterator[Decoded]:
    """Decode chunks in order, in worker processes when ``workers`` > 0."""
    workers = default_workers() if workers is None else workers
    if workers <= 0:
        for start, leaves in chunks:
            yield from decode_chunk(start, leaves, hints)
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("forkserver")) as pool:
        in_flight: list[Future[list[Decoded]]] = []
        for start, leaves in chunks:
            in_flight.append(pool.submit(decode_chunk, start, leaves, hints))
            if len(in_flight) >= workers * 3:
                yield from in_flight.pop(0).result()
        for future in in_flight:
            yield from future.result()


def default_workers() -> int:
    return (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )


# --- auditing a database --------------------------------------------------------------


def audit_database(
    engine: Engine, *, workers: int | None = None, progress: Progress | None = None
) -> AuditResult:
    """Recompute everything from the database and compare with what it stores and signed.

    Checks every entry (see :class:`Auditor`), every stored tree node, every
    stored checkpoint's signature and root, the key table and the log state row, all as
    of one snapshot: a live log's writers don't make it look inconsistent.
    """
    with read_snapshot(engine) as conn:
        meta = {
            r.name: r.value for r in conn.execute(select(schema.meta.c.name, schema.meta.c.value))
        }
        if "origin" not in meta or "log_vkey" not in meta:
            raise VerificationError("no log in this database (meta rows origin/log_vkey missing)")
        origin, log_verifier = meta["origin"], parse_vkey(meta["log_vkey"])
        checkpoints = _stored_checkpoints(conn, origin, log_verifier)
        state_row = conn.execute(select(schema.log_state)).first()
        stored_count = conn.execute(select(func.count()).select_from(schema.entries)).scalar_one()
        hints = {
            r.key_id: r.vkey for r in conn.execute(select(schema.keys.c.key_id, schema.keys.c.vkey))
        }
        use_workers = workers if stored_count >= PARALLEL_THRESHOLD else 0

        def chunks() -> Iterator[tuple[int, list[bytes]]]:
            e = schema.entries.c
            last = -1
            while True:
                rows = conn.execute(
                    select(e.seq, e.leaf, e.kind, e.stmt_hash)
                    .where(e.seq > last)
                    .order_by(e.seq)
                    .limit(CHUNK)
                ).all()
                if not rows:
                    return
                columns[rows[0].seq] = rows
                t = schema.tree_nodes.c
                stored_leaves.update(
                    (int(r.idx), bytes(r.hash))
                    for r in conn.execute(
                        select(t.idx, t.hash).where(
                            t.level == 0, t.idx >= rows[0].seq, t.idx <= rows[-1].seq
                        )
                    )
                )
                # Hand workers each run of consecutive seqs; a gap is reported by the auditor.
                run_start, run = rows[0].seq, list[bytes]()
                for row in rows:
                    if row.seq != run_start + len(run):
                        yield run_start, run
                        run_start, run = row.seq, []
                    run.append(bytes(row.leaf))
                yield run_start, run
                last = rows[-1].seq

        columns: dict[int, Any] = {}
        stored_leaves: dict[int, bytes] = {}  # level-0 tree nodes of the chunks read so far
        auditor = Auditor(origin, [c for c, _ in checkpoints])
        nodes: list[tuple[NodeId, bytes]] = []
        index: dict[int, tuple[str, bytes]] = {}
        for decoded in decoded_stream(chunks(), hints, use_workers):
            if decoded.seq in columns:
                index = {r.seq: (r.kind, bytes(r.stmt_hash)) for r in columns.pop(decoded.seq)}
            nodes.extend(auditor.feed(decoded, stored_leaves.pop(decoded.seq, b"")))
            kind, stmt_hash = index.pop(decoded.seq)
            assert decoded.entry is not None
            if kind != decoded.entry.kind or stmt_hash != decoded.entry.statement.digest():
                raise VerificationError(
                    f"seq {decoded.seq}: the kind or statement hash columns disagree with the entry"
                )
            if len(nodes) >= 8 * CHUNK:
                _compare_nodes(conn, nodes)
                nodes = []
            if progress is not None and decoded.seq % CHUNK == 0:
                progress(decoded.seq, stored_count)
        _compare_nodes(conn, nodes)
        result = auditor.finish()
        _check_node_count(conn, result.size)
        _check_state(state_row, result, auditor)
        _check_key_table(conn, result.keys)
        compare(conn, auditor.state.rows)
    if progress is not None:
        progress(result.size, result.size)
    return result


def _stored_checkpoints(conn: Any, origin: str, verifier: Verifier) -> list[tuple[Checkpoint, str]]:
    c = schema.checkpoints.c
    out = []
    for row in conn.execute(select(c.size, c.root, c.note).order_by(c.size)):
        try:
            cp, _note = verify_checkpoint(row.note, verifier, origin)
        except Error as exc:
            raise VerificationError(f"checkpoint for size {row.size}: {exc}") from None
        if cp.size != row.size or cp.root != bytes(row.root):
            raise VerificationError(
                f"checkpoint for size {row.size}: the signed note says size {cp.size} "
                "or a different root than the stored columns"
            )
        out.append((cp, row.note))
    if not out:
        raise VerificationError("the log has no signed checkpoint")
    return out


def _compare_nodes(conn: Any, nodes: list[tuple[NodeId, bytes]]) -> None:
    """Compare recomputed inner tree nodes with the stored ones: one range read per level.

    Level 0 (leaf hashes) is checked entry by entry in :meth:`Auditor.feed`.
    The nodes a run of appends completes are, per level, consecutive indices.
    """
    by_level: dict[int, list[tuple[int, bytes]]] = {}
    for (level, idx), digest in nodes:
        if level:
            by_level.setdefault(level, []).append((idx, digest))
    marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    for level, expected in by_level.items():
        first, last = expected[0][0], expected[-1][0]
        stored = dict(
            conn.exec_driver_sql(
                f"SELECT idx, hash FROM tree_nodes WHERE level = {marker} AND idx BETWEEN {marker} AND {marker}",
                (level, first, last),
            ).all()
        )
        for idx, digest in expected:
            found = stored.get(idx)
            if found is None or bytes(found) != digest:
                start = idx << level
                what = "missing" if found is None else "different"
                raise VerificationError(
                    f"seq {start}: stored tree node (level {level}, index {idx}) is {what} "
                    f"from the hash of entries {start}..{start + (1 << level) - 1}"
                )


def _check_node_count(conn: Any, size: int) -> None:
    expected = sum(size >> level for level in range(size.bit_length()))
    found = conn.execute(select(func.count()).select_from(schema.tree_nodes)).scalar_one()
    if found != expected:
        raise VerificationError(
            f"tree_nodes holds {found} rows, a tree of size {size} has {expected}"
        )


def _check_state(row: Any, result: AuditResult, auditor: Auditor) -> None:
    if row is None:
        raise VerificationError("log_state row is missing")
    if (
        row.size != result.size
        or bytes(row.last_hash) != auditor.prev
        or row.last_time != auditor.time
    ):
        raise VerificationError(
            f"log_state (size {row.size}) disagrees with the entries (size {result.size}, last hash, last time)"
        )


def _check_key_table(conn: Any, keys: dict[str, KeyRecord]) -> None:
    stored = {
        r.key_id: KeyRecord(
            r.key_id, r.name, r.vkey, r.role, r.org, r.registered_seq, r.revoked_seq
        )
        for r in conn.execute(select(schema.keys))
    }
    for key_id in sorted(set(stored) | set(keys)):
        if stored.get(key_id) != keys.get(key_id):
            seq = keys[key_id].registered_seq if key_id in keys else stored[key_id].registered_seq
            raise VerificationError(
                f"seq {seq}: the keys table row for {key_id} differs from the registry entries"
            )
