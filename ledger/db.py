"""Database engines and schema migrations (the storage edge).

SQLite runs in WAL mode with ``synchronous=FULL`` (a committed append survives
power loss) and a busy timeout.  A *write* connection (see :func:`write_connection`)
begins with ``BEGIN IMMEDIATE``, so two processes never interleave appends;
reads use ordinary deferred transactions and never block on writers.
PostgreSQL writers serialise on ``SELECT … FOR UPDATE`` of the single
``log_state`` row (``ledger.log``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.exc import ArgumentError, OperationalError

from ledger.errors import ConfigError, StorageError

MIGRATIONS = Path(__file__).with_name("migrations")
_WRITE = "suyuan_write"


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str) -> Engine:
    """Create an engine for ``url`` (``sqlite:///…`` or ``postgresql+psycopg://…``)."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 60})
            _configure_sqlite(engine)
        elif url.startswith("postgresql"):
            engine = create_engine(url, pool_pre_ping=True)
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
    """
    try:
        with engine.connect() as conn:
            conn.execution_options(**{_WRITE: True})
            with conn.begin():
                yield conn
    except OperationalError as exc:
        raise StorageError(f"database error: {exc.orig}") from None


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    try:
        command.upgrade(alembic_config(engine), "head")
    except OperationalError as exc:
        raise StorageError(f"cannot migrate the database: {exc.orig}") from None


def has_schema(engine: Engine) -> bool:
    try:
        return inspect(engine).has_table("log_state")
    except OperationalError as exc:
        raise StorageError(f"cannot reach the database: {exc.orig}") from None
