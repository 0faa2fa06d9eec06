"""PostgreSQL in production: a primary with a streaming hot standby, and deployments on them.

  pg_pair     (package)   a primary and its hot standby (tests/pgcluster.py), started once
                          for this package; skips without PostgreSQL binaries, fails instead
                          when SUYUAN_REQUIRE_POSTGRES=1.  Separate from the session's
                          ``pg_cluster``: these tests stop and restart their primary.
  deployment  (function)  a fresh database on the primary (hence on the replica), an
                          instance folder made by the real ``suyuan init``, and helpers to
                          make apps that write to the primary and read from the replica.

Every test here MUST leave the pair running (a test that halts the primary resumes it;
the fixture resumes it too if the test failed first).
"""

from __future__ import annotations

import gc
import os
import re
import uuid
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from sqlalchemy import Engine

from ledger.config import Settings
from ledger.db import make_engine
from ledger.instance import Instance
from tests.helpers import ORIGIN, TEST_CONFIG, env_for
from tests.pgcluster import PgCluster, binary_search_order, find_binaries

SECRET = "pg-test-secret"


@dataclass
class Pair:
    primary: PgCluster
    standby: PgCluster

    def catch_up(self, timeout: float = 60.0) -> None:
        """Wait until the standby shows everything committed on the primary so far."""
        self.primary.wait_caught_up(self.standby, timeout)

    def ensure_running(self) -> None:
        for cluster in (self.primary, self.standby):
            if not cluster.running:
                cluster.resume()


def _binaries() -> Path:
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
    return bin_dir


@pytest.fixture(scope="package")
def pg_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    bin_dir = _binaries()
    primary, standby = PgCluster(bin_dir), PgCluster(bin_dir)
    try:
        primary.start(tmp_path_factory.mktemp("primary"))
        standby.start_standby(primary, tmp_path_factory.mktemp("standby"))
    except RuntimeError as e:
        standby.stop()
        primary.stop()
        pytest.fail(f"could not start the primary and its standby: {e}", pytrace=False)
    try:
        yield Pair(primary, standby)
    finally:
        standby.stop()
        primary.stop()


@dataclass
class Deployment:
    """One log on the pair: the primary's and the replica's URL, an instance folder."""

    pair: Pair
    database: str
    primary_url: str
    replica_url: str
    folder: Path
    vkey: str = ""
    _apps: list[Flask] = field(default_factory=list)
    _engines: list[Engine] = field(default_factory=list)
    _instances: list[Instance] = field(default_factory=list)

    def env(
        self,
        *,
        replica: bool = True,
        primary_url: str | None = None,
        replica_url: str | None = None,
        **extra: str,
    ) -> dict[str, str]:
        """The environment of an app host: writes to the primary, reads from the replica
        (or from the primary too, with ``replica=False``)."""
        more = {"SUYUAN_SECRET_KEY": SECRET, **extra}
        if replica:
            more["SUYUAN_READ_DATABASE_URL"] = replica_url or self.replica_url
        return env_for(self.folder, primary_url or self.primary_url, **more)

    def cli(
        self,
        *args: str,
        replica: bool = False,
        database_url: str | None = None,
        input: str | None = None,
    ) -> Result:
        """Run ``suyuan ARGS`` in process with this deployment's environment (by default the
        primary only; ``database_url`` points SUYUAN_DATABASE_URL elsewhere)."""
        env = self.env(replica=replica, primary_url=database_url)
        from ledger.cli import main

        with warnings.catch_warnings():
            # A CLI process would exit here; in process, the command's engine is left to
            # the garbage collector with its pooled connections open.  Collect it now.
            warnings.simplefilter("ignore", ResourceWarning)
            result = CliRunner().invoke(main, list(args), env=env, input=input)
            gc.collect()
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    def app(
        self,
        *,
        replica: bool = True,
        primary_url: str | None = None,
        replica_url: str | None = None,
        **config: Any,
    ) -> Flask:
        """``create_app`` as a host configured by :meth:`env` would build it."""
        from web import create_app

        env = self.env(replica=replica, primary_url=primary_url, replica_url=replica_url)
        with pytest.MonkeyPatch.context() as mp:
            for name in list(os.environ):
                if name.startswith("SUYUAN_"):
                    mp.delenv(name)
            for name, value in env.items():
                if name.startswith("SUYUAN_"):
                    mp.setenv(name, value)
            app = create_app({**TEST_CONFIG, "SUYUAN_SCAN_FLUSH_THREAD": False, **config})
        self._apps.append(app)
        return app

    def instance(self, *, replica: bool = True) -> Instance:
        env = self.env(replica=replica)
        made = Instance(Settings.from_env(env), env)
        self._instances.append(made)
        return made

    def engine(self, url: str) -> Engine:
        made = make_engine(url)
        self._engines.append(made)
        return made

    def close(self) -> None:
        for app in self._apps:
            counter = app.extensions.get("suyuan_scans")
            if counter is not None:
                counter.close()
            app.extensions["suyuan"]["instance"].dispose()
        for instance in self._instances:
            instance.dispose()
        for engine in self._engines:
            engine.dispose()


def new_deployment(pair: Pair, folder: Path, label: str) -> Deployment:
    """A fresh database and instance folder, initialised with the real ``suyuan init``."""
    stem = re.sub(r"[^a-z0-9_]+", "_", label.lower()).strip("_")[:30]
    name = f"p_{stem}_{uuid.uuid4().hex[:10]}"
    primary_url = pair.primary.create_database(name)
    made = Deployment(pair, name, primary_url, pair.standby.url(name), folder / "instance")
    result = made.cli("init", "--org", "县扶贫办 County office")
    assert result.exit_code == 0, result.output
    made.vkey = made.cli("log", "vkey").stdout.strip()
    return made


def drop_deployment(made: Deployment) -> None:
    made.close()
    made.pair.ensure_running()
    made.pair.primary.drop_database(made.database)


@pytest.fixture
def deployment(
    pg_pair: Pair, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Deployment]:
    pg_pair.ensure_running()
    made = new_deployment(pg_pair, tmp_path, request.node.name)
    try:
        yield made
    finally:
        drop_deployment(made)


def only_suyuan(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith("SUYUAN_")}


__all__ = ["ORIGIN", "Deployment", "Pair", "drop_deployment", "new_deployment", "only_suyuan"]
