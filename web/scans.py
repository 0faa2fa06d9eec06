"""Scan counting for clone detection: how often each product code is opened, and by how many.

A *scan* is a GET of a product page (``/01/<gtin14>/10/<lot>`` or ``/b/<lot>``) that found
its lot; HEAD requests and browser prefetches (``Sec-Purpose: prefetch``) are not scans.
The *code* is the canonical product path (``ledger.domain.gs1.batch_path``), so every
spelling of one label (GTIN-13, lower-case escapes) counts as one code.

Privacy: no client address is stored or kept in memory beyond the request.  A *visitor* is
the first 16 bytes of HMAC-SHA-256(day key, address), where the day key is
HMAC-SHA-256(``SECRET_KEY``, label ‖ UTC date).  The same phone is one visitor per code and
day; the next day it is a different, unlinkable value, so ``visitors`` totals are distinct
visitors *summed over days*.  Nobody holding the tables can test an address without the
secret key, and not even with it once the day is over unless they also know the day.

Writes MUST NOT happen per request: the page hot path only adds to an in-process buffer
under a lock.  :meth:`ScanCounter.flush` writes the buffer in one transaction of upserts
(``INSERT … ON CONFLICT``, SQLite and PostgreSQL dialects): new visitors with ``DO
NOTHING … RETURNING`` (so ``scans.visitors`` grows by the visitors that were really new,
exactly, even with several processes flushing at once), then the day's counters with
``DO UPDATE SET scans = scans + excluded.scans``.  A background thread flushes every
``SUYUAN_SCAN_FLUSH_SECONDS`` (default 5) or as soon as ``SUYUAN_SCAN_FLUSH_SCANS``
(default 1000) scans are buffered; the buffer is flushed at interpreter exit too.  A crash
loses at most the buffered scans (statistics, not ledger data); a flush that fails puts
its scans back into the buffer for the next attempt.

Clone warning (:func:`clone_suspect`): a printed label is copied when its code is scanned
far more often than the lot has units.  A lot's units are its quantity when counted
(boxes, bottles, …), else its mass or volume divided by ``SUYUAN_CLONE_GRAMS_PER_UNIT``
(default 500: one jin, the usual retail pack, so big lots are not flagged early).  The page
warns when total scans exceed ``SUYUAN_CLONE_SCAN_FACTOR`` (default 3) × units, or
distinct visitors exceed ``SUYUAN_CLONE_VISITOR_FACTOR`` (default 1) × units — each
bounded below by ``SUYUAN_CLONE_MIN_SCANS`` (default 20) so that a lot of three boxes is
not flagged by a curious shop.  Totals come from the database (cached per code for
``SUYUAN_SCAN_TOTALS_TTL`` seconds, default 60) plus this process's unflushed buffer.

Databases: flushes write to the primary (``Instance.engine``); totals are read from the
read database (``Instance.read_engine``: the replica when ``SUYUAN_READ_DATABASE_URL`` is
set).  Scan counting MUST NOT break a page: when the primary cannot be reached (a
read-only host whose primary is down or restarting) scans stay in the buffer, the
failure is logged once (until a flush succeeds again), and when totals cannot be read
the clone check uses the last totals read (or none) plus the buffer.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import logging
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.datastructures import Headers

from ledger.db import write_connection
from ledger.domain.batches import COUNT_UNITS, MEASURE_UNITS
from ledger.errors import ConfigError, InvalidInput
from ledger.schema import scan_visitors, scans

log = logging.getLogger(__name__)

VISITOR_BYTES = 16
_DAY_KEY_LABEL = b"suyuan scan visitor day key\x00"
#: Headers by which browsers mark a request as a prefetch (not a person looking).
_PREFETCH_HEADERS = ("Sec-Purpose", "Purpose", "X-Purpose", "X-Moz")
#: Rows per statement when flushing or reading many codes.
_CHUNK = 200
#: Codes whose totals are cached at most (an LRU; each entry is a few numbers).
_TOTALS_CACHE = 10_000

DEFAULTS: dict[str, Any] = {
    "SUYUAN_SCAN_FLUSH_SECONDS": 5.0,
    "SUYUAN_SCAN_FLUSH_SCANS": 1000,
    "SUYUAN_SCAN_TOTALS_TTL": 60.0,
    "SUYUAN_CLONE_SCAN_FACTOR": 3,
    "SUYUAN_CLONE_VISITOR_FACTOR": 1,
    "SUYUAN_CLONE_MIN_SCANS": 20,
    "SUYUAN_CLONE_GRAMS_PER_UNIT": 500,
}


def setting(app: Flask, name: str) -> Any:
    return app.config.get(name, DEFAULTS[name])


# --- visitors ----------------------------------------------------------------------------


def day_key(secret: str | bytes, day: str) -> bytes:
    """The key visitors are hashed under on ``day`` (``YYYY-MM-DD``, UTC)."""
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    if not secret:
        raise ConfigError("scan counting needs the app's SECRET_KEY")
    return hmac.new(secret, _DAY_KEY_LABEL + day.encode("ascii"), hashlib.sha256).digest()


def visitor_id(key: bytes, address: str) -> bytes:
    """The pseudonymous visitor of ``address`` under a day key: 16 bytes of HMAC-SHA-256."""
    return hmac.new(key, address.encode("utf-8"), hashlib.sha256).digest()[:VISITOR_BYTES]


def is_prefetch(headers: Mapping[str, str] | Headers) -> bool:
    """True for a browser prefetch or prerender (``Sec-Purpose: prefetch`` and older forms)."""
    return any("prefetch" in (headers.get(h) or "").lower() for h in _PREFETCH_HEADERS)


def today() -> str:
    return datetime.now(UTC).date().isoformat()


# --- totals ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScanStats:
    """A code's totals: scans, distinct visitors summed over days, the last day it was scanned."""

    scans: int = 0
    visitors: int = 0
    last_day: str | None = None

    def plus(self, scans_: int, visitors: int, day: str) -> ScanStats:
        last = day if self.last_day is None else max(self.last_day, day)
        return ScanStats(self.scans + scans_, self.visitors + visitors, last)


def _codes(codes: Iterable[str]) -> list[str]:
    wanted = []
    for code in codes:
        if not isinstance(code, str) or not code.startswith("/"):
            raise InvalidInput(f"a scan code is a product path such as /b/<lot>, got {code!r}")
        wanted.append(code)
    return sorted(set(wanted))


def _read_stats(conn: Connection, codes: list[str]) -> dict[str, ScanStats]:
    out: dict[str, ScanStats] = {}
    for start in range(0, len(codes), _CHUNK):
        chunk = codes[start : start + _CHUNK]
        query = (
            select(
                scans.c.code,
                func.sum(scans.c.scans),
                func.sum(scans.c.visitors),
                func.max(scans.c.day),
            )
            .where(scans.c.code.in_(chunk))
            .group_by(scans.c.code)
        )
        for code, total, visitors, last in conn.execute(query):
            out[str(code)] = ScanStats(int(total or 0), int(visitors or 0), last)
    return out


def scan_stats(engine: Engine, codes: Iterable[str]) -> dict[str, ScanStats]:
    """Per-code totals as stored (every code asked for; zeros for one never scanned).

    Scans still in a process's buffer are not included: stored totals lag by up to the
    flush interval.  Raises InvalidInput for a code that is not a path.
    """
    wanted = _codes(codes)
    with engine.connect() as conn:
        found = _read_stats(conn, wanted)
    return {code: found.get(code, ScanStats()) for code in wanted}


# --- the buffer --------------------------------------------------------------------------


@dataclass
class _Pending:
    scans: int = 0
    visitors: set[bytes] = field(default_factory=set)


def _insert(conn: Connection) -> Callable[[Any], Any]:
    if conn.dialect.name == "postgresql":
        return postgresql.insert
    if conn.dialect.name == "sqlite":
        return sqlite.insert
    raise ConfigError(f"scan counting supports SQLite and PostgreSQL, not {conn.dialect.name}")


def _write(conn: Connection, buffer: Mapping[tuple[str, str], _Pending]) -> None:
    """Upsert one flush (inside the caller's write transaction)."""
    insert = _insert(conn)
    new_visitors: dict[tuple[str, str], int] = {}
    rows = [
        {"code": code, "day": day, "visitor": v}
        for (code, day), pending in buffer.items()
        for v in sorted(pending.visitors)
    ]
    for start in range(0, len(rows), _CHUNK):
        statement = (
            insert(scan_visitors)
            .values(rows[start : start + _CHUNK])
            .on_conflict_do_nothing(index_elements=["code", "day", "visitor"])
            .returning(scan_visitors.c.code, scan_visitors.c.day)
        )
        for code, day in conn.execute(statement):
            new_visitors[(code, day)] = new_visitors.get((code, day), 0) + 1
    counts = [
        {
            "code": code,
            "day": day,
            "scans": pending.scans,
            "visitors": new_visitors.get((code, day), 0),
        }
        for (code, day), pending in sorted(buffer.items())
    ]
    for start in range(0, len(counts), _CHUNK):
        statement = insert(scans).values(counts[start : start + _CHUNK])
        statement = statement.on_conflict_do_update(
            index_elements=["code", "day"],
            set_={
                "scans": scans.c.scans + statement.excluded.scans,
                "visitors": scans.c.visitors + statement.excluded.visitors,
            },
        )
        conn.execute(statement)


#: At most this many visitor ids (32 bytes each) wait in one process's buffer.  While the
#: database cannot be written (a read-only host whose primary is down) the buffer keeps
#: growing; past this many, scans are still counted but further new visitors are not, so
#: memory stays bounded (~10 MB) and only the distinct-visitor figure undercounts.
MAX_BUFFERED_VISITORS = 200_000


class ScanCounter:
    """One process's scan buffer for one database; thread-safe.

    :meth:`record` is the hot path (a dict update under a lock, and a wake-up of the
    flusher thread when the buffer is full).  :meth:`flush` writes; :meth:`stats` answers
    the clone check from cached stored totals plus the buffer.
    """

    def __init__(
        self,
        engine: Engine,
        secret: str | bytes,
        *,
        flush_seconds: float = DEFAULTS["SUYUAN_SCAN_FLUSH_SECONDS"],
        flush_scans: int = DEFAULTS["SUYUAN_SCAN_FLUSH_SCANS"],
        totals_ttl: float = DEFAULTS["SUYUAN_SCAN_TOTALS_TTL"],
        background: bool = True,
        read_engine: Engine | None = None,
    ) -> None:
        self.engine = engine
        self.read_engine = engine if read_engine is None else read_engine
        self._failing = False  # the last flush failed (logged once until one succeeds)
        self._secret = secret
        self.flush_seconds = float(flush_seconds)
        self.flush_scans = int(flush_scans)
        self.totals_ttl = float(totals_ttl)
        self.background = background
        self._lock = threading.Lock()  # guards _buffer, _buffered, _day_keys, _totals
        self._flush_lock = threading.Lock()  # one flush at a time
        self._buffer: dict[tuple[str, str], _Pending] = {}
        self._buffered = 0
        self._visitor_ids = 0  # visitor ids in _buffer (bounded by max_visitors)
        self.max_visitors = MAX_BUFFERED_VISITORS
        self._dropped_visitors = False  # the cap was reached (logged once)
        self._day_keys: dict[str, bytes] = {}
        self._buffer_days: set[str] = set()  # the days in the buffer (today's, mostly)
        self._totals: OrderedDict[str, tuple[float, ScanStats]] = OrderedDict()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        _live.add(self)

    # hot path

    def record(self, code: str, address: str, day: str | None = None) -> None:
        """Count one scan of ``code`` by the client at ``address`` (kept only as its HMAC)."""
        day = day or today()
        with self._lock:
            key = self._day_keys.get(day)
            if key is None:
                self._day_keys = {day: day_key(self._secret, day)}  # only today's is needed
                key = self._day_keys[day]
            pending = self._buffer.get((code, day))
            if pending is None:
                pending = self._buffer[(code, day)] = _Pending()
                self._buffer_days.add(day)
            pending.scans += 1
            visitor = visitor_id(key, address or "unknown")
            if visitor not in pending.visitors:
                if self._visitor_ids < self.max_visitors:
                    pending.visitors.add(visitor)
                    self._visitor_ids += 1
                elif not self._dropped_visitors:
                    self._dropped_visitors = True
                    log.warning(
                        "scan buffer holds %d visitors and cannot be written; counting "
                        "scans but no further visitors until it can",
                        self._visitor_ids,
                    )
            self._buffered += 1
            full = self._buffered >= self.flush_scans
        if self.background:
            self._ensure_thread()
            if full:
                self._wake.set()

    def pending(self) -> int:
        """Scans buffered in this process, not yet written."""
        with self._lock:
            return self._buffered

    # writing

    def flush(self) -> int:
        """Write the buffer; return how many scans were written.  Raises the storage error
        (after putting the scans back) if the write fails."""
        with self._flush_lock:
            with self._lock:
                buffer, self._buffer = self._buffer, {}
                self._buffer_days = set()
                count, self._buffered = self._buffered, 0
                self._visitor_ids = 0
            if not buffer:
                return 0
            try:
                with write_connection(self.engine) as conn:
                    _write(conn, buffer)
            except BaseException:
                self._put_back(buffer, count)
                raise
            with self._lock:
                self._dropped_visitors = False
                # The written scans move from the buffer into the stored totals: add them to
                # the cached totals rather than re-read every code (a visitor seen in two
                # flushes of one day counts twice until the totals are re-read, at most
                # ``totals_ttl`` later).
                for (code, day), written in buffer.items():
                    cached = self._totals.get(code)
                    if cached is not None:
                        self._totals[code] = (
                            cached[0],
                            cached[1].plus(written.scans, len(written.visitors), day),
                        )
            return count

    def _put_back(self, buffer: Mapping[tuple[str, str], _Pending], count: int) -> None:
        with self._lock:
            for key, old in buffer.items():
                pending = self._buffer.setdefault(key, _Pending())
                self._buffer_days.add(key[1])
                pending.scans += old.scans
                before = len(pending.visitors)
                pending.visitors |= old.visitors
                self._visitor_ids += len(pending.visitors) - before
            self._buffered += count

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._lock:
            if self._closed or (self._thread is not None and self._pid == os.getpid()):
                return
            # After a fork the parent's thread does not exist in this process: start ours.
            self._pid = os.getpid()
            self._thread = threading.Thread(
                target=_run, args=(weakref.ref(self),), name="suyuan-scan-flush", daemon=True
            )
            self._thread.start()

    def flush_quietly(self) -> None:
        """Flush, logging instead of raising (the flusher thread and exit use it).

        A failure is logged once as a warning; while flushes keep failing (the primary is
        down) they are logged at debug level, and the first success after them says so.
        """
        try:
            self.flush()
        except Exception as exc:  # statistics must never kill the thread or the exit
            if not self._failing:
                self._failing = True
                log.warning("could not write scan counts (kept for the next attempt): %s", exc)
            else:
                log.debug("still cannot write scan counts: %s", exc)
        else:
            if self._failing:
                self._failing = False
                log.warning("scan counts are written again")

    def close(self) -> None:
        """Stop the flusher thread and write what is buffered."""
        with self._lock:
            self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        self.flush_quietly()
        _live.discard(self)

    # reading

    def stats(self, code: str) -> ScanStats:
        """Stored totals (cached for ``totals_ttl`` seconds) plus this process's buffer."""
        now = time.monotonic()
        with self._lock:
            cached = self._totals.get(code)
        if cached is None or now - cached[0] > self.totals_ttl:
            try:
                with self.read_engine.connect() as conn:
                    stored = _read_stats(conn, [code]).get(code, ScanStats())
            except SQLAlchemyError as exc:  # the page goes on without stored totals
                log.debug("cannot read scan totals for %s: %s", code, exc)
                stored = cached[1] if cached is not None else ScanStats()
            else:
                with self._lock:
                    self._totals[code] = (now, stored)
                    self._totals.move_to_end(code)
                    while len(self._totals) > _TOTALS_CACHE:
                        self._totals.popitem(last=False)
        else:
            stored = cached[1]
        with self._lock:
            days = tuple(self._buffer_days)
            extra = [
                (d, p.scans, len(p.visitors))
                for d in days
                if (p := self._buffer.get((code, d))) is not None
            ]
        for day, n, visitors in extra:
            stored = stored.plus(n, visitors, day)
        return stored


def _run(ref: weakref.ReferenceType[ScanCounter]) -> None:
    """The flusher thread: wake every flush interval (or when the buffer is full) and flush."""
    while True:
        counter = ref()
        if counter is None:
            return
        wake, seconds = counter._wake, counter.flush_seconds
        del counter  # hold no reference while waiting: the counter may be collected
        wake.wait(timeout=seconds)
        wake.clear()
        counter = ref()
        if counter is None:
            return
        counter.flush_quietly()
        if counter._closed:
            return
        del counter


_live: weakref.WeakSet[ScanCounter] = weakref.WeakSet()


@atexit.register
def _flush_all_at_exit() -> None:
    for counter in list(_live):
        counter.flush_quietly()


_app_lock = threading.Lock()


def counter(app: Flask) -> ScanCounter:
    """The app's counter, made on first use from its config (``SUYUAN_SCAN_*``)."""
    found = app.extensions.get("suyuan_scans")
    if found is not None:
        return found  # type: ignore[no-any-return]
    with _app_lock:
        found = app.extensions.get("suyuan_scans")
        if found is None:
            instance = app.extensions["suyuan"]["instance"]  # web.extensions
            found = ScanCounter(
                instance.engine,  # writes: the primary
                app.config["SECRET_KEY"],
                read_engine=instance.read_engine,  # totals: the replica, if any
                flush_seconds=setting(app, "SUYUAN_SCAN_FLUSH_SECONDS"),
                flush_scans=setting(app, "SUYUAN_SCAN_FLUSH_SCANS"),
                totals_ttl=setting(app, "SUYUAN_SCAN_TOTALS_TTL"),
                background=bool(app.config.get("SUYUAN_SCAN_FLUSH_THREAD", True)),
            )
            app.extensions["suyuan_scans"] = found
    return found


# --- clone warning -----------------------------------------------------------------------


def lot_units(quantity: int, unit: str, grams_per_unit: int) -> int:
    """How many labelled units a lot has: its quantity when counted, else its mass or volume
    in grams or millilitres divided by ``grams_per_unit`` (at least 1)."""
    if unit in COUNT_UNITS:
        return max(1, int(quantity))
    if unit in MEASURE_UNITS:
        _dimension, factor = MEASURE_UNITS[unit]
        return max(1, int(quantity) * factor // max(1, int(grams_per_unit)))
    return max(1, int(quantity))


@dataclass(frozen=True)
class CloneCheck:
    """The numbers behind a clone warning; ``suspect`` is whether to show it."""

    suspect: bool
    scans: int
    visitors: int
    units: int
    scan_limit: int
    visitor_limit: int


def clone_check(app: Flask, stats: ScanStats, quantity: int, unit: str) -> CloneCheck:
    """Judge a code's totals against its lot's size with the app's thresholds."""
    units = lot_units(quantity, unit, int(setting(app, "SUYUAN_CLONE_GRAMS_PER_UNIT")))
    floor = int(setting(app, "SUYUAN_CLONE_MIN_SCANS"))
    scan_limit = max(floor, int(setting(app, "SUYUAN_CLONE_SCAN_FACTOR")) * units)
    visitor_limit = max(floor, int(setting(app, "SUYUAN_CLONE_VISITOR_FACTOR")) * units)
    suspect = stats.scans > scan_limit or stats.visitors > visitor_limit
    return CloneCheck(suspect, stats.scans, stats.visitors, units, scan_limit, visitor_limit)


def clone_suspect(app: Flask, code: str, quantity: int, unit: str) -> CloneCheck:
    """The clone check for ``code`` with its current totals (stored + buffered)."""
    return clone_check(app, counter(app).stats(code), quantity, unit)


__all__ = [
    "CloneCheck",
    "ScanCounter",
    "ScanStats",
    "clone_check",
    "clone_suspect",
    "counter",
    "day_key",
    "is_prefetch",
    "lot_units",
    "scan_stats",
    "visitor_id",
]
