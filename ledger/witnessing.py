"""The log's side of witnessing: submit checkpoints to witnesses, collect their cosignatures.

Per C2SP tlog-witness ("add-checkpoint") the log POSTs to each witness it is configured
with (the ``witnesses`` table, ``suyuan witnesses add``)::

    POST <submission prefix>/add-checkpoint

    old <the size the witness last acknowledged>
    <RFC 6962 consistency proof from old to the new size, one base64 hash a line>
    <empty line>
    <the newest checkpoint note, signed by the log>

and the witness answers with its cosignature lines (C2SP tlog-cosignature, Ed25519
``cosignature/v1``).  What each answer means here:

* **200** — every line by the witness's key (name and key ID from its vkey) is verified
  against that key before anything is stored; a bad cosignature is never stored (status
  ``bad-cosignature``).  Lines by other keys are ignored, as the spec requires.
* **409** with ``text/x.tlog.size`` — the witness's last cosigned size differs from our
  ``old`` (or, at equal sizes, its root differs).  The client takes the witness's size,
  rebuilds the proof and retries *once*.  A witness that holds a larger size than the
  log's newest, or a different root at the same size, is recorded as ``ahead`` /
  ``conflict``: evidence of a split view that the operator must look at.
* **422** (the witness could not verify our consistency proof: ``inconsistent``),
  **403** (it trusts no key that signed the checkpoint: ``refused``), **404** (it does
  not know the origin: ``unknown-log``), **400** (``bad-request``), anything else
  (``error``), no answer within the timeout (``unreachable``): a clear message in
  ``witness_state.error`` and the status, shown by ``suyuan witnesses list``.

The witnessing loop MUST NOT delay or change an append: it runs in its own process
(``suyuan witnesses run``, started by ``suyuan serve``), reads the log through the
ordinary read methods, and writes only its own tables (``witnesses``, ``witness_state``,
``cosignatures``: beside the ledger, not part of it) in short transactions that never
span a network call.  On PostgreSQL a round holds a session advisory lock, so several
``suyuan serve`` hosts over one database do not submit the same checkpoint twice at once.

Read helpers for publishing: :func:`cosigned_note` (a stored checkpoint with the
cosignature lines collected for it appended after the log's own signature line: still a
valid signed note, and a client that knows only the log key ignores the extra lines,
signed-note "Signatures") and :func:`latest_witnessed` (the newest checkpoint with at
least one cosignature by a configured witness, optionally covering a given size).
"""

from __future__ import annotations

import base64
import http.client
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ledger import schema
from ledger.checkpoint import Checkpoint
from ledger.cosignature import Cosignature, CosignatureVerifier, parse_witness_vkey
from ledger.db import write_connection
from ledger.entry import format_time
from ledger.errors import (
    Conflict,
    Error,
    InvalidInput,
    NotFound,
    StorageError,
    VerificationError,
)
from ledger.log import Log, StoredCheckpoint
from ledger.note import MAX_SIGNATURES, split_note

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_PROOF_LINES",
    "STATUSES",
    "CosignerCheck",
    "HttpTransport",
    "Outcome",
    "Reply",
    "Round",
    "Transport",
    "Unreachable",
    "WitnessRecord",
    "WitnessStatus",
    "add_witness",
    "check_cosigners",
    "check_url",
    "cosignature_lines",
    "cosignatures_in_reply",
    "cosigned_note",
    "find_witness",
    "known_witnesses",
    "latest_witnessed",
    "list_witnesses",
    "parse_size_reply",
    "remove_witness",
    "request_body",
    "run",
    "set_active",
    "submit_to",
    "witness_mark",
    "witness_round",
]

DEFAULT_TIMEOUT = 10.0
"""Seconds to wait for one witness's answer (connect and read)."""

MAX_PROOF_LINES = 63
"""tlog-witness: "The client MUST NOT send more than 63 consistency proof lines"."""

MAX_REPLY = 64 * 1024
"""Largest witness answer read (a few signature lines are a few hundred bytes)."""

SIZE_CONTENT_TYPE = "text/x.tlog.size"

STATUSES = (
    "never",  # added, not yet submitted to
    "cosigned",  # the last submission was cosigned (and the cosignature verified)
    "conflict",  # 409 the resync could not settle, or a different root at the same size
    "ahead",  # the witness holds a larger size than the log's newest checkpoint
    "inconsistent",  # 422: the witness could not verify our consistency proof
    "refused",  # 403: the witness trusts no key that signed our checkpoint
    "unknown-log",  # 404: the witness is not configured for our origin
    "bad-request",  # 400
    "bad-cosignature",  # 200 without a valid cosignature by the witness's key
    "unreachable",  # no answer (connection refused, timeout, reset)
    "error",  # anything else (another status code, a malformed answer)
)

#: PostgreSQL advisory lock key of a witnessing round ("suyuan w" in ASCII).
_ROUND_LOCK = 0x737579616E2077


def _now() -> datetime:
    return datetime.now(UTC)


# --- the witnesses table ----------------------------------------------------------------------


@dataclass(frozen=True)
class WitnessRecord:
    """A witness the log submits to: its cosigner key and its submission prefix."""

    key_id: str
    name: str
    vkey: str
    url: str
    added: str
    active: bool

    @property
    def verifier(self) -> CosignatureVerifier:
        return parse_witness_vkey(self.vkey)

    @property
    def submit_url(self) -> str:
        return self.url.rstrip("/") + "/add-checkpoint"


@dataclass(frozen=True)
class WitnessStatus:
    """A witness with what the log knows of it, for ``suyuan witnesses list``."""

    witness: WitnessRecord
    size: int  # the size it last acknowledged
    status: str
    error: str | None
    attempted: str | None
    acknowledged: str | None
    cosigned_size: int | None  # the newest checkpoint size it cosigned


def _engine(source: Engine | Log) -> Engine:
    return source.engine if isinstance(source, Log) else source


@contextmanager
def _reading(source: Engine | Log) -> Iterator[Connection]:
    """A read connection; database errors become :class:`StorageError`."""
    try:
        with _engine(source).connect() as conn:
            yield conn
    except SQLAlchemyError as exc:
        raise StorageError(f"database error: {getattr(exc, 'orig', None) or exc}") from None


@contextmanager
def _writing(source: Engine | Log) -> Iterator[Connection]:
    try:
        with write_connection(_engine(source)) as conn:
            yield conn
    except SQLAlchemyError as exc:
        if isinstance(exc, IntegrityError):
            raise
        raise StorageError(f"database error: {getattr(exc, 'orig', None) or exc}") from None


def _record(row: Any) -> WitnessRecord:
    return WitnessRecord(row.key_id, row.name, row.vkey, row.url, row.added, bool(row.active))


def check_url(url: str) -> str:
    """A witness submission prefix: an absolute http(s) URL without query or fragment."""
    if not isinstance(url, str):
        raise InvalidInput(f"expected the witness URL as text, found {type(url).__name__}")
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:
        raise InvalidInput(
            f"expected an http(s) URL for the witness, found {url!r}: {exc}"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(
            f"expected an http:// or https:// URL (the witness's submission prefix), found {url!r}"
        )
    if parts.query or parts.fragment:
        raise InvalidInput(f"expected a URL prefix without ?query or #fragment, found {url!r}")
    return url.strip().rstrip("/")


def add_witness(
    source: Engine | Log, vkey: str, url: str, *, clock: Callable[[], datetime] = _now
) -> WitnessRecord:
    """Configure a witness by its vkey (``name+hex8+base64(0x04 || key)``) and submission URL.

    Raises InvalidInput for a malformed vkey or URL, :class:`Conflict` when the key
    (or another key under the same name) is configured already.
    """
    verifier = parse_witness_vkey(vkey.strip() if isinstance(vkey, str) else vkey)
    prefix = check_url(url)
    record = WitnessRecord(
        verifier.key_id, verifier.name, verifier.vkey, prefix, format_time(clock()), True
    )
    w = schema.witnesses.c
    try:
        with _writing(source) as conn:
            for row in conn.execute(select(w.key_id, w.name, w.url)):
                if row.key_id == record.key_id:
                    raise Conflict(f"witness {record.key_id} is configured already ({row.url})")
                if row.name == record.name:
                    raise Conflict(
                        f"a witness named {record.name!r} is configured already with another key "
                        f"({row.key_id}); remove it first if its key changed"
                    )
            conn.execute(
                insert(schema.witnesses).values(
                    key_id=record.key_id,
                    name=record.name,
                    vkey=record.vkey,
                    url=record.url,
                    added=record.added,
                    active=True,
                )
            )
            conn.execute(
                schema.witness_state.delete().where(schema.witness_state.c.key_id == record.key_id)
            )
            conn.execute(
                insert(schema.witness_state).values(key_id=record.key_id, size=0, status="never")
            )
    except IntegrityError:
        raise Conflict(f"witness {record.key_id} is configured already") from None
    return record


def known_witnesses(source: Engine | Log, *, active_only: bool = False) -> list[WitnessRecord]:
    """The configured witnesses, by name (``active_only``: those still submitted to)."""
    w = schema.witnesses.c
    query = select(schema.witnesses).order_by(w.name, w.key_id)
    if active_only:
        query = query.where(w.active.is_(True))
    with _reading(source) as conn:
        return [_record(r) for r in conn.execute(query)]


def find_witness(source: Engine | Log, ident: str) -> WitnessRecord:
    """The configured witness named by its key name, ``name+hex8`` key ID or vkey."""
    found = [w for w in known_witnesses(source) if ident.strip() in (w.name, w.key_id, w.vkey)]
    if not found:
        raise NotFound(f"no witness {ident!r} is configured (see `suyuan witnesses list`)")
    if len(found) > 1:  # names are unique (add_witness), so this means a hand-edited table
        raise InvalidInput(f"{ident!r} names {len(found)} witnesses; give the key ID instead")
    return found[0]


def remove_witness(source: Engine | Log, ident: str) -> WitnessRecord:
    """Forget a witness: no more submissions, and its cosignatures are no longer published.

    Its cosignature rows stay in the table as history (a compromised witness key must
    stop counting, but what it signed is evidence); adding it again publishes them again.
    """
    record = find_witness(source, ident)
    with _writing(source) as conn:
        conn.execute(delete(schema.witnesses).where(schema.witnesses.c.key_id == record.key_id))
        conn.execute(
            delete(schema.witness_state).where(schema.witness_state.c.key_id == record.key_id)
        )
    return record


def set_active(source: Engine | Log, ident: str, active: bool) -> WitnessRecord:
    """Stop (or resume) submitting to a witness; what it cosigned keeps counting."""
    record = find_witness(source, ident)
    with _writing(source) as conn:
        conn.execute(
            update(schema.witnesses)
            .where(schema.witnesses.c.key_id == record.key_id)
            .values(active=active)
        )
    return WitnessRecord(record.key_id, record.name, record.vkey, record.url, record.added, active)


def list_witnesses(source: Engine | Log) -> list[WitnessStatus]:
    """Every configured witness with its acknowledged size, last status and newest cosignature."""
    c = schema.cosignatures.c
    witnesses = known_witnesses(source)
    with _reading(source) as conn:
        states = {r.key_id: r for r in conn.execute(select(schema.witness_state))}
        newest = {
            r.key_id: int(r.size)
            for r in conn.execute(
                select(c.key_id, func.max(c.size).label("size")).group_by(c.key_id)
            )
        }
    out = []
    for witness in witnesses:
        state = states.get(witness.key_id)
        out.append(
            WitnessStatus(
                witness,
                int(state.size) if state else 0,
                state.status if state else "never",
                state.error if state else None,
                state.attempted if state else None,
                state.acknowledged if state else None,
                newest.get(witness.key_id),
            )
        )
    return out


# --- publishing ---------------------------------------------------------------------------


def cosignature_lines(source: Engine | Log, size: int) -> list[str]:
    """The stored cosignature lines for the checkpoint of ``size``, by configured witnesses.

    Every line was verified against its witness's key before it was stored.  Lines of
    removed witnesses are left out.  Ordered by witness key ID (stable output).
    """
    c, w = schema.cosignatures.c, schema.witnesses.c
    query = (
        select(c.line)
        .join(schema.witnesses, w.key_id == c.key_id)
        .where(c.size == size)
        .order_by(c.key_id)
    )
    with _reading(source) as conn:
        return [str(line) for line in conn.execute(query).scalars()]


def cosigned_note(source: Engine | Log, stored: StoredCheckpoint) -> str:
    """``stored``'s checkpoint note with the cosignatures collected for it appended.

    The result is a C2SP signed note: the log's signature line first, then one line per
    witness (signed-note "Signatures": a verifier ignores lines of keys it does not
    know; tlog-cosignature "Format").  Lines whose key already signs the note are
    skipped, and the note never exceeds :data:`ledger.note.MAX_SIGNATURES` lines.
    """
    lines = cosignature_lines(source, stored.size)
    if not lines:
        return stored.note
    _text, present = split_note(stored.note)
    seen = {(sig.name, sig.key_hash) for sig in present}
    room = MAX_SIGNATURES - len(present)
    extra: list[str] = []
    for line in lines:
        _t, (sig,) = split_note("x\n\n" + line)
        if (sig.name, sig.key_hash) in seen or len(extra) >= room:
            continue
        seen.add((sig.name, sig.key_hash))
        extra.append(sig.line())
    return stored.note + "".join(extra)


def _origin(conn: Connection) -> str:
    origin = conn.execute(
        select(schema.meta.c.value).where(schema.meta.c.name == "origin")
    ).scalar()
    if origin is None:
        raise StorageError("no log in this database (no origin in meta)")
    return str(origin)


def latest_witnessed(source: Engine | Log, min_size: int = 0) -> StoredCheckpoint | None:
    """The newest checkpoint cosigned by at least one configured witness, of size >= ``min_size``.

    ``min_size`` = the highest seq a page shows plus one: the checkpoint then covers
    every entry on the page.  None when there is no such checkpoint.
    """
    c, w, k = schema.cosignatures.c, schema.witnesses.c, schema.checkpoints.c
    with _reading(source) as conn:
        size = conn.execute(
            select(func.max(c.size))
            .join(schema.witnesses, w.key_id == c.key_id)
            .where(c.size >= max(0, int(min_size)))
        ).scalar()
        if size is None:
            return None
        row = conn.execute(select(k.size, k.root, k.note, k.created).where(k.size == size)).first()
        if row is None:
            return None  # a cosignature for a size the log never signed: not ours to show
        origin = source.origin if isinstance(source, Log) else _origin(conn)
    return StoredCheckpoint(
        Checkpoint(origin, int(row.size), bytes(row.root)), row.note, row.created
    )


def witness_mark(conn: Connection) -> tuple[Any, ...]:
    """What changes when the published witnessing changes (for page caches): one cheap read."""
    row = conn.exec_driver_sql(
        "SELECT (SELECT MAX(id) FROM cosignatures), (SELECT COUNT(*) FROM witnesses), "
        "(SELECT MAX(added) FROM witnesses)"
    ).one()
    return tuple(row)


@dataclass(frozen=True)
class CosignerCheck:
    """The cosignatures on one note, checked one by one against the configured witnesses."""

    valid: tuple[Cosignature, ...]  # verified, in witness-name order
    invalid: tuple[tuple[str, str], ...]  # (witness key ID, why) for lines that do not verify

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.valid]


def check_cosigners(note: str, witnesses: Sequence[CosignatureVerifier]) -> CosignerCheck:
    """Verify every cosignature line of ``note`` by a known witness, independently.

    Unlike :func:`ledger.cosignature.verify_cosignatures` (which rejects the whole note
    on the first bad line) a bad line here is reported and not counted, and the others
    still count: what a page shows as "witnessed by N".  The caller MUST verify the
    log's own signature separately.  Raises InvalidInput for a malformed note.
    """
    text, signatures = split_note(note)
    message = text.encode("utf-8")
    known = {(v.name, v.key_hash): v for v in witnesses}
    valid: list[Cosignature] = []
    invalid: list[tuple[str, str]] = []
    for sig in signatures:
        verifier = known.get((sig.name, sig.key_hash))
        if verifier is None:
            continue
        try:
            stamp = verifier.timestamp(message, sig.signature)
        except Error as exc:
            invalid.append((verifier.key_id, str(exc)))
            continue
        valid.append(Cosignature(sig.name, sig.key_hash, stamp, sig.line()))
    valid.sort(key=lambda c: (c.name, c.key_hash))
    return CosignerCheck(tuple(valid), tuple(invalid))


# --- HTTP ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """A witness's HTTP answer."""

    status: int
    content_type: str
    body: bytes
    truncated: bool = False  # the answer was longer than MAX_REPLY (and was not read on)


class Unreachable(Error):
    """No HTTP answer from a witness: refused, reset, timed out, or a bad address."""


#: POST ``body`` to ``url`` within ``timeout`` seconds; the answer, or :class:`Unreachable`.
Transport = Callable[[str, bytes, float], Reply]


class HttpTransport:
    """HTTP(S) POSTs over kept-alive connections, one idle pool per host (tlog-witness:
    "Clients SHOULD use … HTTP keep-alive").  Thread-safe; :meth:`close` drops the pool."""

    def __init__(self, user_agent: str = "suyuan-witnessing") -> None:
        self.user_agent = user_agent
        self._idle: dict[tuple[str, str], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def _take(self, key: tuple[str, str]) -> http.client.HTTPConnection | None:
        with self._lock:
            pool = self._idle.get(key)
            return pool.pop() if pool else None

    def _give(self, key: tuple[str, str], conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._idle.setdefault(key, []).append(conn)

    def close(self) -> None:
        with self._lock:
            pools, self._idle = self._idle, {}
        for pool in pools.values():
            for conn in pool:
                conn.close()

    def __call__(self, url: str, body: bytes, timeout: float) -> Reply:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Unreachable(f"{url}: not an http(s) URL")
        key = (parts.scheme, parts.netloc)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {
            "Content-Type": "text/plain; charset=utf-8",
            "User-Agent": self.user_agent,
            "Accept": "text/plain, text/x.tlog.size",
        }
        reused = self._take(key)
        for conn in ([reused] if reused is not None else []) + [None]:
            fresh = conn is None
            if conn is None:
                cls = (
                    http.client.HTTPSConnection
                    if parts.scheme == "https"
                    else http.client.HTTPConnection
                )
                conn = cls(parts.netloc, timeout=timeout)
            else:
                conn.timeout = timeout
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
            try:
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read(MAX_REPLY + 1)
            except TimeoutError:
                conn.close()
                raise Unreachable(f"POST {url}: no answer within {timeout:g} s") from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if not fresh:
                    continue  # an idle kept-alive connection the server had closed: retry fresh
                raise Unreachable(f"POST {url}: {exc or type(exc).__name__}") from None
            truncated = len(data) > MAX_REPLY
            if response.will_close or truncated or not response.isclosed():
                conn.close()  # never read an oversized answer to its end: drop the connection
            else:
                self._give(key, conn)
            content_type = (response.getheader("Content-Type") or "").split(";")[0].strip()
            return Reply(response.status, content_type.lower(), data[:MAX_REPLY], truncated)
        raise Unreachable(f"POST {url}: no answer")  # pragma: no cover (the loop always returns)


# --- one submission ---------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one witness did with the log's newest checkpoint in one round."""

    key_id: str
    name: str
    status: str  # one of STATUSES, or "up-to-date" when nothing needed sending
    size: int  # the size the witness acknowledged after this attempt
    cosigned: int | None  # the checkpoint size newly cosigned (and stored), if any
    message: str

    @property
    def ok(self) -> bool:
        return self.status in ("cosigned", "up-to-date")

    def line(self) -> str:
        return f"{self.name}: {self.status} ({self.message})"


def request_body(old: int, proof: Sequence[bytes], note: str) -> bytes:
    """An add-checkpoint body (tlog-witness "add-checkpoint"): old size line, proof lines,
    an empty line, the checkpoint note."""
    if not isinstance(old, int) or old < 0:
        raise InvalidInput(f"expected a non-negative old size, found {old!r}")
    if len(proof) > MAX_PROOF_LINES:
        raise InvalidInput(
            f"expected at most {MAX_PROOF_LINES} consistency proof lines, found {len(proof)}"
        )
    lines = [f"old {old}\n"] + [base64.b64encode(h).decode("ascii") + "\n" for h in proof]
    return ("".join(lines) + "\n" + note).encode("utf-8")


def parse_size_reply(reply: Reply) -> int:
    """The witness's size from a 409 answer: ``text/x.tlog.size``, a decimal and a newline."""
    if reply.content_type != SIZE_CONTENT_TYPE:
        raise InvalidInput(
            f"expected a 409 answer of type {SIZE_CONTENT_TYPE}, found {reply.content_type!r}"
        )
    text = reply.body.decode("ascii", errors="replace")
    digits = text[:-1] if text.endswith("\n") else None
    if digits is None or not digits.isdigit() or (len(digits) > 1 and digits[0] == "0"):
        raise InvalidInput(
            f"expected a tree size and a newline in the 409 answer, found {text[:40]!r}"
        )
    if len(digits) > 20 or int(digits) >= 1 << 64:
        raise InvalidInput(
            f"expected a tree size below 2**64 in the 409 answer, found {digits[:40]}"
        )
    return int(digits)


def cosignatures_in_reply(
    body: bytes, text: str, witness: CosignatureVerifier
) -> list[Cosignature]:
    """The verified cosignatures by ``witness`` in a 200 answer to add-checkpoint.

    The body MUST be one or more signature lines (``— name base64``, each ending in a
    newline).  Lines by other keys are ignored (tlog-witness: "The client MUST ignore any
    cosignatures from unknown keys"); every line by ``witness``'s key MUST verify over
    the checkpoint text ``text``.  Raises InvalidInput (malformed answer) or
    VerificationError (a bad cosignature, or none by the witness's key).
    """
    try:
        lines = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("expected the witness's answer in UTF-8") from None
    if not lines or not lines.endswith("\n") or "\n\n" in lines:
        raise InvalidInput(
            f"expected one or more signature lines in the witness's answer, found {lines[:80]!r}"
        )
    _text, signatures = split_note(text + "\n" + lines)  # strict: the same parser as notes
    message = text.encode("utf-8")
    found = []
    for sig in signatures:
        if (sig.name, sig.key_hash) != (witness.name, witness.key_hash):
            continue
        stamp = witness.timestamp(message, sig.signature)  # raises VerificationError
        found.append(Cosignature(sig.name, sig.key_hash, stamp, sig.line()))
    if not found:
        names = ", ".join(sig.key_id for sig in signatures[:5]) or "nothing"
        raise VerificationError(
            f"expected a cosignature by {witness.key_id} in the answer, found {names}"
        )
    return found


@dataclass
class _Attempt:
    status: str
    message: str
    size: int  # the witness's size as we now believe it
    cosignatures: list[Cosignature]


_STATUS_FOR_CODE = {
    422: (
        "inconsistent",
        "the witness could not verify the consistency proof from size {old} to {new} (422)",
    ),
    403: ("refused", "the witness trusts no key that signed this checkpoint (403)"),
    404: ("unknown-log", "the witness is not configured for the origin {origin} (404)"),
    400: ("bad-request", "the witness refused the request as malformed (400)"),
}


def _submit(
    log: Log,
    witness: WitnessRecord,
    verifier: CosignatureVerifier,
    latest: StoredCheckpoint,
    old: int,
    transport: Transport,
    timeout: float,
) -> _Attempt:
    """POST add-checkpoint, resynchronising once on 409; no database writes."""
    new = latest.size
    text = latest.checkpoint.text()
    resynced = False
    while True:
        proof = log.consistency_proof(old, new) if 0 < old < new else []
        body = request_body(old, proof, latest.note)
        try:
            reply = transport(witness.submit_url, body, timeout)
        except Unreachable as exc:
            return _Attempt("unreachable", str(exc), old, [])
        if reply.truncated:
            return _Attempt(
                "error", f"HTTP {reply.status} with an answer over {MAX_REPLY} bytes", old, []
            )
        detail = reply.body[:200].decode("utf-8", errors="replace").strip()
        if reply.status == 200:
            try:
                found = cosignatures_in_reply(reply.body, text, verifier)
            except Error as exc:
                return _Attempt("bad-cosignature", f"size {new}: not stored: {exc}", old, [])
            return _Attempt("cosigned", f"size {new} cosigned", new, found)
        if reply.status == 409:
            try:
                theirs = parse_size_reply(reply)
            except InvalidInput as exc:
                return _Attempt("error", f"409 without a usable size: {exc}", old, [])
            if theirs > new:
                return _Attempt(
                    "ahead",
                    f"the witness has cosigned size {theirs} for {log.origin}, larger than the "
                    f"log's newest checkpoint ({new}): it saw another tree for this origin "
                    "(a split view?) or the log lost entries",
                    theirs,
                    [],
                )
            if theirs == old == new:
                return _Attempt(
                    "conflict",
                    f"the witness holds a different tree head at size {theirs} than the log "
                    "signed: it saw another tree for this origin (split view); keep its "
                    "evidence and investigate",
                    theirs,
                    [],
                )
            if theirs == old:
                return _Attempt(
                    "conflict",
                    f"409 although the witness's size ({theirs}) is the old size sent",
                    theirs,
                    [],
                )
            if resynced:
                return _Attempt(
                    "conflict",
                    f"409 again after resynchronising (the witness now says size {theirs})",
                    theirs,
                    [],
                )
            old, resynced = theirs, True  # tlog-witness: rebuild the proof from its size, once
            continue
        status, template = _STATUS_FOR_CODE.get(
            reply.status, ("error", f"unexpected HTTP {reply.status}")
        )
        message = template.format(old=old, new=new, origin=log.origin)
        return _Attempt(status, f"{message}: {detail}" if detail else message, old, [])


def _has_cosignature(conn: Connection, size: int, key_id: str) -> bool:
    c = schema.cosignatures.c
    found = conn.execute(select(c.id).where(c.size == size, c.key_id == key_id)).first()
    return found is not None


def _store(
    log: Log,
    witness: WitnessRecord,
    attempt: _Attempt,
    size: int,
    moment: str,
) -> None:
    """Record one attempt: the witness's state, and the verified cosignatures (if any)."""
    s = schema.witness_state.c
    values: dict[str, Any] = {"size": attempt.size, "status": attempt.status, "attempted": moment}
    if attempt.status == "cosigned":
        values.update(error=None, acknowledged=moment)
    else:
        values["error"] = attempt.message[:2000]
    for tries in range(3):  # a concurrent writer of the same rows: read again and retry
        try:
            with _writing(log) as conn:
                if conn.execute(select(s.key_id).where(s.key_id == witness.key_id)).first():
                    conn.execute(
                        update(schema.witness_state)
                        .where(s.key_id == witness.key_id)
                        .values(**values)
                    )
                else:
                    conn.execute(
                        insert(schema.witness_state).values(key_id=witness.key_id, **values)
                    )
                for cosig in attempt.cosignatures:
                    if _has_cosignature(conn, size, cosig.key_id):
                        continue  # one per (size, witness): the first verified one stays
                    conn.execute(
                        insert(schema.cosignatures).values(
                            size=size,
                            key_id=cosig.key_id,
                            name=cosig.name,
                            line=cosig.line,
                            timestamp=cosig.timestamp,
                            received=moment,
                        )
                    )
            return
        except IntegrityError as exc:
            if tries == 2:
                raise StorageError(f"cannot record the witness's answer: {exc.orig}") from None


def _state(log: Log, key_id: str, size: int) -> tuple[int, bool]:
    """The acknowledged size of witness ``key_id`` and whether it cosigned ``size`` already."""
    s = schema.witness_state.c
    with _reading(log) as conn:
        acknowledged = conn.execute(select(s.size).where(s.key_id == key_id)).scalar()
        return int(acknowledged or 0), _has_cosignature(conn, size, key_id)


def submit_to(
    log: Log,
    witness: WitnessRecord,
    latest: StoredCheckpoint,
    *,
    transport: Transport,
    timeout: float = DEFAULT_TIMEOUT,
    clock: Callable[[], datetime] = _now,
) -> Outcome:
    """Bring one witness up to ``latest``: submit, verify, store; returns what happened.

    Never raises for what the witness does (that is the outcome); a database failure
    while recording raises :class:`StorageError`.
    """
    try:
        verifier = witness.verifier
    except Error as exc:  # a hand-edited table
        return Outcome(witness.key_id, witness.name, "error", 0, None, f"bad vkey: {exc}")
    old, done = _state(log, witness.key_id, latest.size)
    if old == latest.size and done:
        return Outcome(
            witness.key_id, witness.name, "up-to-date", old, None, f"size {old} cosigned"
        )
    if old > latest.size:
        old = 0  # our record is ahead of the log: ask afresh (a 409 tells its real size)
    attempt = _submit(log, witness, verifier, latest, old, transport, timeout)
    _store(log, witness, attempt, latest.size, format_time(clock()))
    return Outcome(
        witness.key_id,
        witness.name,
        attempt.status,
        attempt.size,
        latest.size if attempt.cosignatures else None,
        attempt.message,
    )


# --- rounds and the loop ------------------------------------------------------------------


@contextmanager
def _round_lock(engine: Engine) -> Iterator[bool]:
    """One round at a time per database: a PostgreSQL session advisory lock (no-op on SQLite)."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    try:
        conn = engine.connect()
    except SQLAlchemyError as exc:
        raise StorageError(f"database error: {getattr(exc, 'orig', None) or exc}") from None
    try:
        got = bool(conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({_ROUND_LOCK})").scalar())
        conn.commit()
        try:
            yield got
        finally:
            if got:
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({_ROUND_LOCK})")
                conn.commit()
    finally:
        conn.close()


@dataclass(frozen=True)
class Round:
    """One witnessing round: the checkpoint offered and each witness's outcome."""

    size: int
    outcomes: tuple[Outcome, ...]
    skipped: str | None = None  # why nothing was submitted

    def line(self) -> str:
        if self.skipped:
            return f"size {self.size}: {self.skipped}"
        if not self.outcomes:
            return f"size {self.size}: no active witnesses"
        done = sum(1 for o in self.outcomes if o.ok)
        parts = "; ".join(o.line() for o in self.outcomes)
        return f"size {self.size}: {done}/{len(self.outcomes)} witnesses current; {parts}"


def witness_round(
    log: Log,
    *,
    transport: Transport | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    clock: Callable[[], datetime] = _now,
    workers: int = 8,
) -> Round:
    """Submit the log's newest checkpoint to every active witness that lacks it (in parallel).

    A witness that fails does not hold up the others; its error is recorded.
    """
    own = transport is None
    send: Transport = HttpTransport() if transport is None else transport
    try:
        latest = log.latest_checkpoint()
        if latest.size == 0:
            return Round(0, (), "the log is empty: nothing to witness")
        witnesses = known_witnesses(log, active_only=True)
        if not witnesses:
            return Round(latest.size, ())
        with _round_lock(log.engine) as got:
            if not got:
                return Round(latest.size, (), "another process is running a witnessing round")

            def one(witness: WitnessRecord) -> Outcome:
                return submit_to(log, witness, latest, transport=send, timeout=timeout, clock=clock)

            if len(witnesses) == 1 or workers <= 1:
                outcomes = [one(w) for w in witnesses]
            else:
                with ThreadPoolExecutor(max_workers=min(workers, len(witnesses))) as pool:
                    outcomes = list(pool.map(one, witnesses))
        return Round(latest.size, tuple(outcomes))
    finally:
        if own and isinstance(send, HttpTransport):
            send.close()


def run(
    log: Log,
    interval: float,
    stop_event: threading.Event,
    *,
    on_round: Callable[[Round], None] | None = None,
    on_error: Callable[[Error], None] | None = None,
    transport: Transport | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> int:
    """Run rounds every ``interval`` seconds until ``stop_event`` is set; return the count.

    A round that fails on the database (or anything else in the error tree) is reported
    through ``on_error`` and the loop goes on: witnessing is best effort and MUST NOT
    stop because one round failed.
    """
    send: Transport = HttpTransport() if transport is None else transport
    rounds = 0
    try:
        while not stop_event.is_set():
            try:
                result = witness_round(log, transport=send, timeout=timeout)
            except Error as exc:
                if on_error is not None:
                    on_error(exc)
            else:
                if on_round is not None:
                    on_round(result)
            rounds += 1
            stop_event.wait(max(0.0, interval))
    finally:
        if transport is None and isinstance(send, HttpTransport):
            send.close()
    return rounds
