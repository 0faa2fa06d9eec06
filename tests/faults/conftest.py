"""Fixtures of the fault tests (see tests/faults/support.py for the helpers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.support import Child, Keyed, keyed_ledger


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def keyed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Keyed]:
    """A log on each engine in turn, its keys in files so that children can load them."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    made = keyed_ledger(url, tmp_path)
    yield made
    made.ledger.engine.dispose()


@pytest.fixture
def keyed_pg(pg_url: str, tmp_path: Path) -> Iterator[Keyed]:
    """The PostgreSQL one only."""
    made = keyed_ledger(pg_url, tmp_path)
    yield made
    made.ledger.engine.dispose()


@pytest.fixture
def children() -> Iterator[list[Child]]:
    """Children started by a test; any still running at the end are killed."""
    started: list[Child] = []
    yield started
    for child in started:
        child.stop()
