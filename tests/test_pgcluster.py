"""The throwaway PostgreSQL cluster itself: URLs, settings, restart, durability."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy as sa

from tests.pgcluster import PgCluster

pytestmark = pytest.mark.postgres


def test_url_shape(pg_cluster: PgCluster) -> None:
    url = sa.engine.make_url(pg_cluster.url("somedb"))
    assert url.drivername == "postgresql+psycopg"
    assert url.username == pg_cluster.user
    assert url.host is None
    assert url.database == "somedb"
    assert url.query == {"host": str(pg_cluster.socket_dir), "port": str(pg_cluster.port)}
    # sun_path is 108 bytes including the NUL.
    assert len(f"{pg_cluster.socket_dir}/.s.PGSQL.{pg_cluster.port}.lock") < 108


def test_settings(pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            show = {
                name: conn.execute(sa.text(f"SHOW {name}")).scalar_one()
                for name in ("listen_addresses", "fsync", "max_connections", "server_version")
            }
    finally:
        engine.dispose()
    assert show["listen_addresses"] == ""
    assert show["fsync"] == "on"
    assert show["max_connections"] == "200"
    assert show["server_version"].split(".")[0].isdigit()


def test_select_restart_reconnect(pg_cluster: PgCluster, pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as conn:
            assert conn.execute(sa.text("select 1")).scalar_one() == 1
            started = conn.execute(sa.text("select pg_postmaster_start_time()")).scalar_one()
            conn.execute(sa.text("create table t (x int)"))
            conn.execute(sa.text("insert into t values (42)"))

        held = engine.connect()  # a connection open across the restart
        pg_cluster.restart()

        # The restart really happened: the old connection is gone...
        with pytest.raises(sa.exc.OperationalError):
            held.execute(sa.text("select 1"))
        held.close()
        # ...a new one works, sees a new postmaster, and the committed row survived.
        engine.dispose()
        with engine.connect() as conn:
            assert conn.execute(sa.text("select 1")).scalar_one() == 1
            assert conn.execute(sa.text("select pg_postmaster_start_time()")).scalar_one() > started
            assert conn.execute(sa.text("select x from t")).scalars().all() == [42]
    finally:
        engine.dispose()


def test_drop_database_terminates_connections(pg_cluster: PgCluster) -> None:
    pg_cluster.create_database("t_drop_probe")
    held = psycopg.connect(pg_cluster.conninfo("t_drop_probe"))
    try:
        assert held.execute("select 1").fetchone() == (1,)
        pg_cluster.drop_database("t_drop_probe")  # MUST NOT wait for `held`
        with pytest.raises(psycopg.OperationalError):
            held.execute("select 1")
    finally:
        held.close()
    with psycopg.connect(pg_cluster.conninfo("postgres")) as conn:
        names = [r[0] for r in conn.execute("select datname from pg_database")]
    assert "t_drop_probe" not in names
    pg_cluster.drop_database("t_drop_probe")  # dropping again is not an error
