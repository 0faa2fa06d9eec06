"""The Alembic migrations create exactly the schema ``ledger.schema`` describes, on both engines."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import ledger.domain  # noqa: F401
from ledger.db import make_engine, upgrade
from ledger.schema import metadata


def _diff(url: str) -> list[object]:
    engine = make_engine(url)
    upgrade(engine)
    upgrade(engine)  # idempotent
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    return list(diff)


def test_sqlite_schema_matches_models(tmp_path: Path) -> None:
    assert _diff(f"sqlite:///{tmp_path / 'm.db'}") == []


@pytest.mark.postgres
def test_postgres_schema_matches_models(pg_url: str) -> None:
    assert _diff(pg_url) == []
