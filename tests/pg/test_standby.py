"""tests/pgcluster.py's standby support: pg_basebackup -R, catching up, halting, slots."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from tests.pg.conftest import Pair
from tests.pgcluster import PgCluster

pytestmark = pytest.mark.postgres


def _one(cluster: PgCluster, database: str, sql: str) -> object:
    with psycopg.connect(cluster.conninfo(database), autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return row[0]


def test_the_standby_streams_from_the_primary_and_refuses_writes(pg_pair: Pair) -> None:
    primary, standby = pg_pair.primary, pg_pair.standby
    assert standby.in_recovery() and not primary.in_recovery()
    assert standby.socket_dir != primary.socket_dir and standby.port != primary.port
    assert _one(standby, "postgres", "SHOW hot_standby") == "on"
    assert _one(primary, "postgres", "SHOW wal_level") == "replica"
    senders = _one(
        primary, "postgres", "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
    )
    assert senders == 1

    primary.create_database("t_standby_probe")
    try:
        with psycopg.connect(primary.conninfo("t_standby_probe"), autocommit=True) as conn:
            conn.execute("CREATE TABLE t (x int)")
            conn.execute("INSERT INTO t SELECT generate_series(1, 1000)")
        lsn = primary.wait_caught_up(standby)
        assert _one(standby, "postgres", f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn")
        assert _one(standby, "t_standby_probe", "SELECT sum(x) FROM t") == 500500
        with (
            psycopg.connect(standby.conninfo("t_standby_probe"), autocommit=True) as conn,
            pytest.raises(psycopg.errors.ReadOnlySqlTransaction),
        ):
            conn.execute("INSERT INTO t VALUES (0)")

        # The primary down: the standby still answers reads; back up, it streams again.
        primary.halt()
        try:
            assert not primary.running
            assert _one(standby, "t_standby_probe", "SELECT count(*) FROM t") == 1000
        finally:
            primary.resume()
        with psycopg.connect(primary.conninfo("t_standby_probe"), autocommit=True) as conn:
            conn.execute("INSERT INTO t VALUES (0)")
        primary.wait_caught_up(standby)
        assert _one(standby, "t_standby_probe", "SELECT count(*) FROM t") == 1001
    finally:
        primary.drop_database("t_standby_probe")


def test_wait_caught_up_times_out_with_both_positions(pg_pair: Pair) -> None:
    primary, standby = pg_pair.primary, pg_pair.standby
    with psycopg.connect(standby.conninfo("postgres"), autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
    try:
        primary.create_database("t_standby_lag")  # WAL the paused standby will not replay
        with pytest.raises(RuntimeError, match=r"did not catch up within 0.3 s: primary at "):
            primary.wait_caught_up(standby, timeout=0.3)
    finally:
        with psycopg.connect(standby.conninfo("postgres"), autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_resume()")
        primary.drop_database("t_standby_lag")
    primary.wait_caught_up(standby)


def test_a_second_standby_is_promoted_and_leaves_no_slot_or_server_behind(
    pg_pair: Pair, tmp_path: Path
) -> None:
    primary = pg_pair.primary
    extra = PgCluster(primary.bin_dir)
    extra.start_standby(primary, tmp_path / "extra")
    try:
        slot = extra.slot
        assert slot is not None
        assert (
            _one(
                primary,
                "postgres",
                f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'",
            )
            == 1
        )
        primary.wait_caught_up(extra)
        extra.promote()
        assert not extra.in_recovery()
        assert extra.primary is None
        with psycopg.connect(extra.conninfo("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE t_promoted")  # it takes writes now
        assert (
            _one(
                primary,
                "postgres",
                f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'",
            )
            == 0
        )
        data_dir = extra.data_dir
        assert data_dir is not None and (data_dir / "postmaster.pid").exists()
    finally:
        extra.stop()
    assert not (data_dir / "postmaster.pid").exists()
    assert extra.socket_dir is not None and not os.path.exists(extra.socket_dir)
    assert pg_pair.standby.in_recovery()  # the package's standby is untouched
