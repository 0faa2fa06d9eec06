"""Shared pytest fixtures."""

from __future__ import annotations

# ---------------------------------------------------------------------------
# PostgreSQL: one throwaway cluster per test session (tests/pgcluster.py).
#
#   pg_cluster  (session)  the running PgCluster; skips when the machine has no
#                          PostgreSQL binaries, fails instead when
#                          SUYUAN_REQUIRE_POSTGRES=1 (CI sets it).
#   pg_url      (function) a fresh, empty database for one test, as a SQLAlchemy
#                          URL; dropped afterwards (its connections terminated).
#
# Tests that use them should carry @pytest.mark.postgres.
# ---------------------------------------------------------------------------
import os
import re
import uuid
from collections.abc import Iterator

import pytest

from tests.pgcluster import PgCluster, binary_search_order, find_binaries


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgCluster]:
    bin_dir = find_binaries()
    if bin_dir is None:
        reason = (
            "no PostgreSQL binaries: initdb/pg_ctl/postgres not found in "
            + (", ".join(str(p) for p in binary_search_order()) or "PATH")
            + " (install postgresql-15, e.g. `make system-deps` as root, or set SUYUAN_PG_BIN)"
        )
        if os.environ.get("SUYUAN_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"SUYUAN_REQUIRE_POSTGRES=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    cluster = PgCluster(bin_dir)
    try:
        cluster.start(tmp_path_factory.mktemp("pgcluster"))
    except RuntimeError as e:
        # Binaries exist but the cluster won't start: always a failure, never a skip.
        pytest.fail(f"could not start the PostgreSQL test cluster: {e}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: PgCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    # Identifiers are at most 63 bytes; keep the test's name for readable logs.
    stem = re.sub(r"[^a-z0-9_]+", "_", request.node.name.lower()).strip("_")[:40]
    name = f"t_{stem}_{uuid.uuid4().hex[:12]}"
    url = pg_cluster.create_database(name)
    try:
        yield url
    finally:
        if pg_cluster.running:
            pg_cluster.drop_database(name)


# --------------------------- end of PostgreSQL ------------------------------


# ---------------------------------------------------------------------------
# Ledgers: the same tests on SQLite and on PostgreSQL.
#
#   ledger      (function) a Ledger (tests/helpers.py) on each engine in turn
#   sqlite_ledger          the SQLite one only (tests that need the file)
#   app / client / runner  Flask's, on a SQLite ledger
# ---------------------------------------------------------------------------
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

from flask import Flask  # noqa: E402
from flask.testing import FlaskClient, FlaskCliRunner  # noqa: E402

from ledger.config import Settings  # noqa: E402
from ledger.instance import Instance  # noqa: E402
from ledger.log import Log  # noqa: E402
from ledger.note import Signer  # noqa: E402
from tests.helpers import ORIGIN, TEST_CONFIG, Ledger, env_for, make_ledger  # noqa: E402


@pytest.fixture
def sqlite_ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = make_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield ledger
    ledger.engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    made = make_ledger(url)
    yield made
    made.engine.dispose()


@dataclass
class Site:
    """An operator's instance folder made by the real `suyuan init` path, and its app."""

    instance: Instance
    admin: Signer
    app: Flask

    @property
    def log(self) -> Log:
        return self.instance.writer()


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    from web import create_app

    env = env_for(tmp_path / "instance")
    for name, value in env.items():
        if name.startswith("SUYUAN_"):
            monkeypatch.setenv(name, value)
    instance = Instance(Settings.from_env(env), env)
    _log, admin, _created = instance.initialize(ORIGIN, "县扶贫办 County office")
    app = create_app(TEST_CONFIG)
    yield Site(instance, admin, app)
    instance.engine.dispose()


@pytest.fixture
def app(site: Site) -> Flask:
    return site.app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()
