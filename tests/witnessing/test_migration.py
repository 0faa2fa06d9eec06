"""Migration 0008 (witnesses, witness_state, cosignatures) on SQLite and PostgreSQL.

The schema comparison against ``ledger.schema`` is tests/ledger/test_migrations.py's; here:
an existing log at revision 0007 is upgraded in place (its entries untouched, the new
tables usable, the unique (size, key) constraint enforced) and downgraded cleanly.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError

from ledger import schema
from ledger.db import alembic_config, make_engine
from ledger.log import Log
from tests.helpers import check_ledger, make_ledger

TABLES = {"witnesses", "witness_state", "cosignatures"}


def _revision(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one())


def _roundtrip(url: str) -> None:
    made = make_ledger(url)  # at head: 0008 or later
    made.notes(3)
    engine = made.engine
    assert set(inspect(engine).get_table_names()) >= TABLES
    command.downgrade(alembic_config(engine), "0007")
    assert _revision(engine) == "0007"
    assert not TABLES & set(inspect(engine).get_table_names())
    # an operator's log from before witnessing: upgraded in place, entries untouched
    before = Log.open(engine).latest_checkpoint()
    command.upgrade(alembic_config(engine), "head")
    engine.dispose()
    engine = make_engine(url)
    assert set(inspect(engine).get_table_names()) >= TABLES
    assert Log.open(engine).latest_checkpoint() == before
    row = {"key_id": "w.example/1+00000000", "name": "w.example/1", "line": "— w\n"}
    with engine.begin() as conn:
        conn.execute(insert(schema.cosignatures).values(size=4, timestamp=1, received="t", **row))
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(schema.cosignatures).values(size=4, timestamp=2, received="u", **row))
    with engine.connect() as conn:
        assert conn.execute(select(schema.cosignatures.c.timestamp)).scalars().all() == [1]
    assert check_ledger(engine).size == before.size
    engine.dispose()


def test_upgrade_and_downgrade_on_sqlite(tmp_path: Path) -> None:
    _roundtrip(f"sqlite:///{tmp_path / 'ledger.db'}")


@pytest.mark.postgres
def test_upgrade_and_downgrade_on_postgres(pg_url: str) -> None:
    _roundtrip(pg_url)
