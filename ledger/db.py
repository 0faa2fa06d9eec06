"""Database engines and schema migrations (the storage edge).

SQLite runs in WAL mode with ``synchronous=FULL`` (a committed append survives
power loss) and a busy timeout.  A *write* connection (see :func:`write_connection`)
begins with ``BEGIN IMMEDIATE``, so two processes never interleave appends;
reads use ordinary deferred transactions and never block on writers.
PostgreSQL writers serialise on ``SELECT … FOR UPDATE`` of the single
``log_state`` row (``ledger.log``).

PostgreSQL connections are made to survive the server going away (a restart, a
fail-over, a dead network path) without restarting the application:

* ``pool_pre_ping``: every connection is tested when it leaves the pool; one that
  died with the old server is replaced (and the whole pool is invalidated), so the
  first request after ``pg_ctl restart`` works.
* ``pool_recycle`` (30 min): connections are not kept for ever, so a load balancer or
  firewall that silently drops idle flows never hands us a half-dead socket.
* ``connect_timeout`` (10 s), TCP keepalives and ``tcp_user_timeout`` (30 s): a host
  that vanished is noticed in seconds, not after the kernel's 15-minute
  retransmission timeout, so a writer waiting on it fails with :class:`StorageError`
  instead of hanging.  (libpq ignores these on a unix socket.)

Any of these libpq parameters given in the URL's query (``?connect_timeout=3``) wins
over the default here.  A transaction that is cut off rolls back on the server:
everything a writer does for one append is one transaction (``ledger.log``), so a
failed append leaves nothing half-written.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, inspect, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from ledger.errors import ConfigError, StorageError

MIGRATIONS = Path(__file__).with_name("migrations")
_WRITE = "suyuan_write"

#: libpq parameters for every PostgreSQL connection unless the URL's query sets them.
PG_CONNECT_DEFAULTS: dict[str, str | int] = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,  # milliseconds
    "application_name": "suyuan",
}
#: Seconds a pooled PostgreSQL connection is used before it is replaced.
PG_POOL_RECYCLE = 1800
#: SQLSTATE 25006: a write sent to a hot standby (or a read-only transaction).
_READ_ONLY_SQLSTATE = "25006"


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str) -> Engine:
    """Create an engine for ``url`` (``sqlite:///…`` or ``postgresql+psycopg://…``)."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 60})
            _configure_sqlite(engine)
        elif url.startswith("postgresql"):
            given = make_url(url).query
            connect_args = {k: v for k, v in PG_CONNECT_DEFAULTS.items() if k not in given}
            engine = create_engine(
                url,
                pool_pre_ping=True,
                pool_recycle=PG_POOL_RECYCLE,
                connect_args=connect_args,
            )
        else:
            raise ConfigError(
                f"unsupported database URL {url!r}: use sqlite:/// or postgresql+psycopg://"
            )
    except ArgumentError as exc:
        raise ConfigError(f"bad database URL {url!r}: {exc}") from None
    except ModuleNotFoundError as exc:
        raise ConfigError(f"database driver for {url!r} is not installed: {exc}") from None
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event (below) own BEGIN; pysqlite must not emit its own.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(_WRITE):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


@contextmanager
def write_connection(engine: Engine) -> Iterator[Connection]:
    """A connection inside a write transaction: committed on success, rolled back on error.

    On SQLite the transaction holds the database write lock from its first
    statement (``BEGIN IMMEDIATE``); other writers wait (busy timeout).

    Failures the operator can act on become a :class:`StorageError` that says so
    (:func:`storage_error`): a full disk, a read-only standby, and a connection lost
    *while committing* — the one case where the caller cannot know whether the
    transaction was stored.  Other driver errors (``IntegrityError``, …) pass through
    for the caller to interpret.
    """
    committing = False
    try:
        with engine.connect() as conn:
            conn.execution_options(**{_WRITE: True})
            with conn.begin():
                yield conn
                committing = True  # the body is done: leaving this block sends COMMIT
    except DBAPIError as exc:
        if isinstance(exc, OperationalError) or is_read_only_error(exc) or is_disk_full_error(exc):
            raise storage_error(exc, engine, committing=committing) from None
        raise


@contextmanager
def read_snapshot(engine: Engine) -> Iterator[Connection]:
    """A read-only connection whose statements all see one snapshot of the database.

    Reads that compare two tables (the log state row against the newest checkpoint,
    the entries against both) MUST use this, or a writer committing between two
    statements makes a consistent database look inconsistent.  SQLite's deferred
    ``BEGIN`` in WAL mode already holds one snapshot from the first read to the end
    of the transaction; PostgreSQL's default, READ COMMITTED, takes a new snapshot
    per statement, so there the transaction is ``REPEATABLE READ, READ ONLY`` (which
    a hot standby also allows, and which never fails with a serialisation error).
    It is set by the transaction's first statement, not as a connection setting, so
    nothing outlives the block: resetting a pooled connection to "read write" is
    itself refused by a hot standby.  The snapshot ends at a ``commit`` or ``rollback``.
    """
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield conn


#: What a writer is told when the disk (or its quota) is full: SQLite's SQLITE_FULL,
#: PostgreSQL's SQLSTATE 53100 (ENOSPC or EDQUOT while extending a file).  Both come
#: before the commit is stored — SQLite rolls a failed COMMIT back, and PostgreSQL
#: raises 53100 from the statement that needed the space — so nothing was written.
DISK_FULL_MESSAGE = (
    "the database is full (disk or quota): nothing was written; free space and retry"
)
_DISK_FULL_SQLSTATE = "53100"
_SQLITE_FULL = 13
#: A WAL database's ``-shm`` file could not be grown: what a process that opens the
#: database on a full disk meets before anything else ("disk I/O error").
_SQLITE_IOERR_SHMSIZE = 4874


def is_disk_full_error(exc: BaseException) -> bool:
    """True for SQLite's SQLITE_FULL (and SHMSIZE) and PostgreSQL's disk_full (53100)."""
    orig = getattr(exc, "orig", exc)
    if getattr(orig, "sqlstate", None) == _DISK_FULL_SQLSTATE:
        return True
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(code, int) and (code & 0xFF == _SQLITE_FULL or code == _SQLITE_IOERR_SHMSIZE):
        return True
    return "database or disk is full" in str(orig)


def storage_error(exc: DBAPIError, engine: Engine, *, committing: bool = False) -> StorageError:
    """The :class:`StorageError` a driver error in a write transaction becomes.

    ``committing``: the error came from the COMMIT itself.  If the connection was
    lost then, the server may have stored the transaction or not; the message says
    how to find out safely — send the same signed statements again: a statement
    already in the log is refused as a ``Conflict`` naming its seq.
    """
    detail = " ".join(str(exc.orig).split())
    if is_disk_full_error(exc):
        return StorageError(f"{DISK_FULL_MESSAGE} ({detail})")
    if is_read_only_error(exc):
        return StorageError(
            f"the database at {engine.url.render_as_string(hide_password=True)} is read-only "
            "(a hot standby?): writes go to the primary, SUYUAN_DATABASE_URL"
        )
    if committing and exc.connection_invalidated:
        return StorageError(
            "the connection to the database was lost while committing, so whether this write "
            "was stored is unknown: retry with the same signed statements (a statement that "
            f"was stored is refused as already in the log, at its seq) ({detail})"
        )
    return StorageError(f"database error: {detail}")


def is_read_only_error(exc: BaseException) -> bool:
    """True for PostgreSQL's refusal to write on a hot standby (SQLSTATE 25006)."""
    orig = getattr(exc, "orig", exc)
    return getattr(orig, "sqlstate", None) == _READ_ONLY_SQLSTATE


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent).

    Safe to run from several processes and hosts at once (every app process does, on
    start): on PostgreSQL the migrations run under a session advisory lock, so the
    first process migrates and the others, once they get the lock, find the schema at
    head and do nothing.  (Without it, two processes running the same ``CREATE TABLE``
    would fail one of them.)  On SQLite the database lock serialises them.
    """
    try:
        with _migration_lock(engine):
            command.upgrade(alembic_config(engine), "head")
    except OperationalError as exc:
        raise StorageError(f"cannot migrate the database: {exc.orig}") from None


#: pg_advisory_lock key of schema migrations (any constant unlikely to collide).
_MIGRATION_LOCK = 0x5375_7975_616E  # b"Suyuan"


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"SELECT pg_advisory_lock({_MIGRATION_LOCK})")
        try:
            yield
        finally:
            conn.exec_driver_sql(f"SELECT pg_advisory_unlock({_MIGRATION_LOCK})")


def has_schema(engine: Engine) -> bool:
    try:
        return inspect(engine).has_table("log_state")
    except OperationalError as exc:
        raise StorageError(f"cannot reach the database: {exc.orig}") from None
