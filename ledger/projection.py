"""Projections: the domain's read model, derived from the entries and nothing else.

A *projection table* is an ordinary database table (households, batches,
allocations, …) whose every row the domain rules compute from the signed
entries.  The rules read and write rows through a :class:`Projection`:

* at append time the writer's projection reads through to the database inside
  the locked write transaction (:class:`SqlSource`), collects the changes the
  batch makes, and :func:`flush` writes them in the same transaction as the
  entries — a crash leaves both or neither;
* ``suyuan verify`` replays every entry into a projection with no source at all
  (everything in memory) and :func:`compare` checks the stored tables against
  it row by row, naming the entry that last wrote a differing row.

Contract for domain modules:

* Every projection table MUST have a primary key and an integer column ``seq``:
  the seq of the entry that last wrote the row (so a difference names an entry).
* Rows are upserted, never deleted: a correction is a new entry that changes a
  row's columns (a status, a running sum), and the row's history is the entries.
* Values are ``int``, ``str`` or ``None`` (no floats, no booleans — store 0/1).
* ``check`` functions MUST NOT write; ``apply`` functions write with
  :meth:`Projection.put`.  Rows handed out by :meth:`Projection.get` are fresh
  dicts; changing one changes nothing until it is ``put`` back.

A projection remembers what its source returned, so a check and its apply (and
the entries after them) read a row from the database once.  That is sound
because the tables MUST NOT change under a projection: the writer's lives for
one locked write transaction, and its own changes reach the tables only when
:func:`flush` ends it.  A check may also hand what it worked out to the apply of
the same entry (:meth:`Projection.remember`, :meth:`Projection.recall`); the
apply gets it only if no row was put in between, and otherwise works it out again.

The writer's projection trusts the stored tables (replaying a million entries
at every start is not an option); an edited table could make it accept an entry
the rules would refuse, and ``suyuan verify`` — which re-checks every rule from
its own replay — then names that entry and the edited row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from operator import itemgetter
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Table

from ledger.errors import VerificationError

Key = tuple[Any, ...]
Row = dict[str, Any]
T = TypeVar("T")
#: Python types a projection value MUST NOT have (store 0/1 for booleans; no floats).
_NOT_STORED = frozenset({bool, float})


@dataclass(frozen=True)
class ProjectionTable:
    """A registered projection table: its SQLAlchemy table, columns and key."""

    table: Table
    columns: tuple[str, ...]
    key: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.table.name

    def key_of(self, row: Mapping[str, Any]) -> Key:
        return tuple(row[c] for c in self.key)

    @cached_property
    def values_of(self) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
        """``row`` → its values in column order (KeyError if a column is missing)."""
        return _getter(self.columns)

    @cached_property
    def key_in_values(self) -> Callable[[Sequence[Any]], Key]:
        """Values in column order → the primary key."""
        return _getter(tuple(self.columns.index(c) for c in self.key))


def _getter(items: tuple[Any, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """Like ``operator.itemgetter(*items)``, but always returning a tuple."""
    if len(items) == 1:
        (only,) = items
        return lambda obj: (obj[only],)
    return itemgetter(*items)


PROJECTIONS: dict[str, ProjectionTable] = {}
#: Off-ledger tables that belong to the ledger's state all the same (e.g. households'
#: encrypted personal data): a refused write MUST leave them unchanged too.
PRIVATE_TABLES: set[str] = set()


def register_projection(table: Table) -> ProjectionTable:
    """Declare ``table`` a projection (see the module contract); return its description."""
    columns = tuple(c.name for c in table.columns)
    key = tuple(c.name for c in table.primary_key.columns)
    if not key or "seq" not in columns:
        raise RuntimeError(f"projection {table.name} needs a primary key and a seq column")
    spec = ProjectionTable(table, columns, key)
    existing = PROJECTIONS.get(table.name)
    if existing is not None and existing.table is not table:
        raise RuntimeError(f"projection {table.name} registered twice")
    PROJECTIONS[table.name] = spec
    return spec


class RowSource(Protocol):
    """Where a projection finds rows it has not changed itself."""

    def fetch(self, table: ProjectionTable, key: Key) -> tuple[Any, ...] | None: ...


class SqlSource:
    """Rows read from the database through ``conn`` (the writer's locked transaction).

    Reads go through the driver's own cursor on the same connection, so they see
    the transaction's writes and hold its lock; SQLAlchemy's result machinery was
    ~0.5 ms of every primary-key read (measured on the 100,000-household benchmark).
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        self._sql: dict[str, str] = {}
        self._cursor: Any = None

    def fetch(self, table: ProjectionTable, key: Key) -> tuple[Any, ...] | None:
        sql = self._sql.get(table.name)
        if sql is None:
            where = " AND ".join(f"{c} = {self._marker}" for c in table.key)
            sql = self._sql[table.name] = (
                f"SELECT {', '.join(table.columns)} FROM {table.name} WHERE {where}"
            )
        if self._cursor is None:
            self._cursor = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        self._cursor.execute(sql, key)
        row = self._cursor.fetchone()
        return None if row is None else tuple(row)


class Projection:
    """Projection rows as the rules see them: a source plus the changes made so far.

    ``changes`` maps (table, key) → values in column order: what :func:`flush`
    writes and :func:`compare` checks.  ``fetched`` remembers the source's answers
    (None for "no such row"); forks share it, as the source does not change under
    them (see the module contract).
    """

    def __init__(
        self,
        source: RowSource | None = None,
        changes: dict[tuple[str, Key], tuple[Any, ...]] | None = None,
        fetched: dict[tuple[str, Key], tuple[Any, ...] | None] | None = None,
    ) -> None:
        self.source = source
        self.changes: dict[tuple[str, Key], tuple[Any, ...]] = changes if changes else {}
        self.fetched: dict[tuple[str, Key], tuple[Any, ...] | None] = (
            fetched if fetched is not None else {}
        )
        self._puts = 0
        self._memo: tuple[object, int, object] | None = None

    def fork(self) -> Projection:
        """A copy to try a batch on; this projection is untouched until the caller adopts it."""
        return Projection(self.source, dict(self.changes), self.fetched)

    def get(self, table: str, *key: Any) -> Row | None:
        """The row with this primary key, or None."""
        where = (table, key)
        values = self.changes.get(where)
        if values is None and self.source is not None:
            if where in self.fetched:
                values = self.fetched[where]
            else:
                values = self.fetched[where] = self.source.fetch(PROJECTIONS[table], key)
        if values is None:
            return None
        # One value per column: put checked it, or the source's SELECT named the columns
        # (strict=True would cost a fifth of this call).
        return dict(zip(PROJECTIONS[table].columns, values, strict=False))

    def put(self, table: str, row: Mapping[str, Any]) -> None:
        """Insert or replace a row; ``row`` MUST name every column of the table."""
        spec = PROJECTIONS[table]
        try:
            values = spec.values_of(row)
        except KeyError:
            values = ()
        if len(values) != len(row) or len(values) != len(spec.columns):
            missing = sorted(set(spec.columns) - set(row))
            extra = sorted(set(row) - set(spec.columns))
            raise RuntimeError(f"projection {table}: columns missing {missing}, unknown {extra}")
        if not _NOT_STORED.isdisjoint(map(type, values)):
            value = next(v for v in values if type(v) is bool or type(v) is float)
            raise RuntimeError(f"projection {table}: {type(value).__name__} {value!r} stored")
        self.changes[(table, spec.key_in_values(values))] = values
        self._puts += 1

    def remember(self, entry: object, value: object) -> None:
        """Keep ``value`` — rows a check read, values it derived — for the apply of ``entry``.

        Not a write: :func:`flush` and :func:`compare` never see it.  The value's rows
        MUST be ones :meth:`get` handed out and the check left unchanged.
        """
        self._memo = (entry, self._puts, value)

    def recall(self, entry: object, kind: type[T]) -> T | None:
        """The ``kind`` value remembered for this very ``entry`` (by identity) if no row was
        put since, else None; it is handed out once."""
        memo, self._memo = self._memo, None
        if memo is None or memo[0] is not entry or memo[1] != self._puts:
            return None
        value = memo[2]
        return value if isinstance(value, kind) else None


def flush(conn: Connection, projection: Projection) -> None:
    """Write a projection's changes to the database (inside the caller's transaction)."""
    by_table: dict[str, list[tuple[Any, ...]]] = {}
    for (table, _), values in projection.changes.items():
        by_table.setdefault(table, []).append(values)
    marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    for table, rows in sorted(by_table.items()):
        spec = PROJECTIONS[table]
        updates = [c for c in spec.columns if c not in spec.key]
        conflict = (
            f"DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in updates)}"
            if updates
            else "DO NOTHING"
        )
        sql = (
            f"INSERT INTO {table} ({', '.join(spec.columns)}) "
            f"VALUES ({', '.join([marker] * len(spec.columns))}) "
            f"ON CONFLICT ({', '.join(spec.key)}) {conflict}"
        )
        conn.exec_driver_sql(sql, rows)


def compare(conn: Connection, projection: Projection) -> None:
    """Raise unless every projection table holds exactly the rows ``projection`` computed.

    The error names the seq of the entry that wrote the differing row (or, for a
    row no entry wrote, the seq the row claims).  Tables are read in key order
    through the driver's cursor (no SQLAlchemy rows: this reads every row).
    """
    expected: dict[str, dict[Key, tuple[Any, ...]]] = {name: {} for name in PROJECTIONS}
    for (table, key), values in projection.changes.items():
        expected[table][key] = values
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        for name in sorted(PROJECTIONS):
            spec = PROJECTIONS[name]
            want = expected[name]
            seq_at = spec.columns.index("seq")
            key_of = spec.key_in_values
            cursor.execute(
                f"SELECT {', '.join(spec.columns)} FROM {name} ORDER BY {', '.join(spec.key)}"
            )
            for stored in cursor:
                values = tuple(stored)
                key = key_of(values)
                computed = want.pop(key, None)
                if computed is None:
                    raise VerificationError(
                        f"seq {values[seq_at]}: table {name} has a row {_show(spec, key)} "
                        "that no entry made"
                    )
                if computed != values:
                    column = next(
                        c for c, a, b in zip(spec.columns, computed, values, strict=True) if a != b
                    )
                    raise VerificationError(
                        f"seq {computed[seq_at]}: table {name} row {_show(spec, key)} differs from the "
                        f"entries in column {column} (stored {values[spec.columns.index(column)]!r}, "
                        f"entries say {computed[spec.columns.index(column)]!r})"
                    )
            if want:
                key, computed = min(want.items(), key=lambda item: item[1][seq_at])
                raise VerificationError(
                    f"seq {computed[seq_at]}: table {name} lacks the row {_show(spec, key)} "
                    "this entry made"
                )
    finally:
        cursor.close()


def _show(spec: ProjectionTable, key: Key) -> str:
    return ", ".join(f"{c}={v!r}" for c, v in zip(spec.key, key, strict=True))
