"""A full disk: appends fail with a clear StorageError, nothing is lost, appends resume.

The disk is made really full where this process may mount a filesystem (root, as
CI runs): a small tmpfs is mounted for the database and a filler file takes every
free block.  Where mounting is refused, the SQLite tests fall back to
``PRAGMA max_page_count`` (set on every connection of the test's engine), which
makes SQLite raise the very same SQLITE_FULL; each test prints which it used.
PostgreSQL is tested with a tablespace on such a filesystem (its WAL stays on the
main disk, as in a deployment whose data volume fills up): SQLSTATE 53100.

In every case the writer is told ``the database is full (disk or quota): nothing
was written; free space and retry``; the database is unchanged to the byte (every
row of every table), the audit passes on the full disk, and once space is freed the
same ``Log`` appends again.  Through the web API the same refusal is a 503 with that
message.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import shutil
import sqlite3
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine, event

from ledger.config import Settings
from ledger.db import DISK_FULL_MESSAGE
from ledger.entry import make_statement, sign_statement
from ledger.errors import StorageError
from ledger.instance import Instance
from ledger.log import Log
from ledger.tokens import create_token
from tests.faults.support import assert_whole_log, note_seqs
from tests.helpers import ORIGIN, TEST_CONFIG, dump, env_for, make_ledger, now
from tests.pgcluster import PgCluster

SIZE_MB = 16


# --- a disk that can be filled ------------------------------------------------------------------


@contextlib.contextmanager
def small_filesystem(owner: str | None = None) -> Iterator[tuple[Path | None, str]]:
    """Mount a SIZE_MB tmpfs; yield (its path, "") or (None, why it could not be mounted)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        yield None, "mounting a filesystem needs root and mount(8)"
        return
    point = Path(tempfile.mkdtemp(prefix="syfull-", dir="/tmp"))
    point.chmod(0o755)  # the PostgreSQL server's user must reach a tablespace inside
    options = f"size={SIZE_MB}m,mode=0755"
    if owner is not None:
        pw = pwd.getpwnam(owner)
        options += f",uid={pw.pw_uid},gid={pw.pw_gid},mode=0700"
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "suyuan-full-disk", str(point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        point.rmdir()
        yield None, f"mount -t tmpfs was refused: {mounted.stderr.strip()}"
        return
    try:
        yield point, ""
    finally:
        if subprocess.run(["umount", str(point)], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)
        with contextlib.suppress(OSError):
            point.rmdir()


class Filler:
    """Takes every free block of the filesystem at ``point`` with one file, and gives it back."""

    def __init__(self, point: Path) -> None:
        self.path = point / "filler"

    def fill(self) -> None:
        chunk = b"\0" * (1 << 20)
        with self.path.open("ab", buffering=0) as f:  # unbuffered: no bytes left to flush
            for size in (1 << 20, 1 << 12, 1):
                try:
                    while True:
                        f.write(chunk[:size])
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
        assert shutil.disk_usage(self.path.parent).free < 4096

    def free(self) -> None:
        self.path.unlink()


class PageLimit:
    """The fallback: ``PRAGMA max_page_count`` on every connection of ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.limit = 1 << 30

        @event.listens_for(engine, "connect")
        def _limit(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute(f"PRAGMA max_page_count = {self.limit}")

        engine.dispose()

    def fill(self) -> None:
        with self.engine.connect() as conn:
            self.limit = int(conn.exec_driver_sql("PRAGMA page_count").scalar_one())
        self.engine.dispose()

    def free(self) -> None:
        self.limit = 1 << 30
        self.engine.dispose()


def _truncate_wal(database: Path) -> None:
    """Checkpoint the WAL into the database and cut it to 0 bytes, so that the next
    commit needs new blocks on the disk (SQLite reuses a WAL file's old space)."""
    conn = sqlite3.connect(database)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
    finally:
        conn.close()
    assert Path(f"{database}-wal").stat().st_size == 0


def _assert_full(exc: pytest.ExceptionInfo[StorageError]) -> None:
    message = str(exc.value)
    assert message.startswith(DISK_FULL_MESSAGE + " ("), message


# --- SQLite --------------------------------------------------------------------------------------


def test_sqlite_on_a_full_disk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with small_filesystem() as (point, why_not):
        folder = point or tmp_path
        ledger = make_ledger(f"sqlite:///{folder / 'ledger.db'}")
        try:
            disk: Filler | PageLimit
            if point is not None:
                disk, how = Filler(point), f"a real full disk ({SIZE_MB} MiB tmpfs, filled)"
            else:
                disk, how = PageLimit(ledger.engine), f"PRAGMA max_page_count ({why_not})"
            with capsys.disabled():
                print(f"\nSQLite full disk: {how}")
            alice = ledger.register("alice")
            kept = ledger.notes(200, alice, prefix="before")
            if point is not None:
                _truncate_wal(folder / "ledger.db")
            disk.fill()
            before = dump(ledger.engine)

            one = [ledger.statement("note", {"text": "one on a full disk"}, alice)]
            many = [ledger.statement("note", {"text": f"full {i}"}, alice) for i in range(500)]
            # On the real disk nothing fits, as the WAL was cut to 0 bytes; under a page
            # limit a small append can still fit in the free room of the existing pages.
            for items in (one, many, one) if point is not None else (many,):
                with pytest.raises(StorageError) as refused:
                    ledger.log.append(items)
                _assert_full(refused)
            assert dump(ledger.engine) == before, "a refused append changed the database"
            size = assert_whole_log(ledger.engine, ledger.log_signer)  # reads work when full
            assert size == kept[-1].seq + 1
            if point is not None:
                # A writer (re)started on the full disk cannot even map the WAL index: it is
                # told the disk is full, not that there is no log here (`suyuan init`).
                ledger.engine.dispose()  # the last connection removes the -wal and -shm files
                disk.fill()  # ... and their blocks are taken too
                with pytest.raises(StorageError) as refused:
                    Log.open(ledger.engine, ledger.log_signer)
                _assert_full(refused)

            disk.free()
            landed = ledger.log.append(many)  # the same Log, once there is room again
            assert [e.seq for e in landed] == list(range(size, size + len(many)))
            texts = note_seqs(ledger.engine)
            assert [texts[f"before {i}"] for i in range(200)] == [[e.seq] for e in kept]
            assert "one on a full disk" not in texts
            assert assert_whole_log(ledger.engine, ledger.log_signer) == size + len(many)
        finally:
            ledger.engine.dispose()


def test_api_answers_503_on_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from web import create_app
    from web.extensions import instance as app_instance

    with small_filesystem() as (point, why_not):
        database = (point or tmp_path) / "site.db"
        env = env_for(tmp_path / "instance", f"sqlite:///{database}")
        for name, value in env.items():
            if name.startswith("SUYUAN_"):
                monkeypatch.setenv(name, value)
        setup = Instance(Settings.from_env(env), env)
        _log, admin, _created = setup.initialize(ORIGIN, "县扶贫办 County office")
        token = create_token(setup.engine, "full-disk")
        setup.dispose()
        app = create_app(TEST_CONFIG)
        with app.app_context():
            engine = app_instance().engine
        try:
            client = app.test_client()
            headers = {"Authorization": f"Bearer {token}"}

            def note(text: str) -> dict[str, Any]:
                statement = make_statement("note", {"text": text}, ORIGIN, now())
                return sign_statement(statement, [admin]).to_json()

            # The server is up and has written before the disk fills.
            response = client.post("/api/v1/entries", json=note("warm"), headers=headers)
            assert response.status_code == 201
            size = response.get_json()["entries"][0]["seq"] + 1
            disk: Filler | PageLimit
            if point is not None:
                _truncate_wal(database)
                disk, how = Filler(point), "a real full disk"
            else:
                disk, how = PageLimit(engine), f"PRAGMA max_page_count ({why_not})"
            with capsys.disabled():
                print(f"\nAPI on a full disk: {how}")
            # Enough to need new pages (under the fallback's page limit one note could fit).
            body = {"statements": [note(f"posted to a full disk {i}") for i in range(300)]}
            disk.fill()
            response = client.post("/api/v1/entries", json=body, headers=headers)
            assert response.status_code == 503, response.get_data(as_text=True)
            error = response.get_json()["error"]
            assert error["code"] == "storage_error"
            assert error["message"].startswith(DISK_FULL_MESSAGE), error
            disk.free()
            response = client.post("/api/v1/entries", json=body, headers=headers)
            assert response.status_code == 201, response.get_data(as_text=True)
            assert [e["seq"] for e in response.get_json()["entries"]] == list(
                range(size, size + 300)
            )
        finally:
            engine.dispose()


# --- PostgreSQL ----------------------------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_tablespace_on_a_full_disk(
    pg_cluster: PgCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    with small_filesystem(owner=pg_cluster.user) as (point, why_not):
        if point is None:
            pytest.skip(f"PostgreSQL's full-disk test needs a filesystem it can fill: {why_not}")
        name = f"t_full_{uuid.uuid4().hex[:12]}"
        space = f"full_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE TABLESPACE {} LOCATION {}").format(
                    sql.Identifier(space), sql.Literal(str(point))
                )
            )
            conn.execute(
                sql.SQL("CREATE DATABASE {} TABLESPACE {}").format(
                    sql.Identifier(name), sql.Identifier(space)
                )
            )
        ledger = None
        try:
            ledger = make_ledger(pg_cluster.url(name))
            with capsys.disabled():
                print(f"\nPostgreSQL full disk: tablespace on a {SIZE_MB} MiB tmpfs, filled")
            alice = ledger.register("alice")
            kept = ledger.notes(200, alice, prefix="before")
            disk = Filler(point)
            disk.fill()
            before = dump(ledger.engine)
            many = [ledger.statement("note", {"text": f"full {i}"}, alice) for i in range(2000)]
            with pytest.raises(StorageError) as refused:
                ledger.log.append(many)
            _assert_full(refused)
            assert "No space left on device" in str(refused.value)
            assert dump(ledger.engine) == before, "a refused append changed the database"
            size = assert_whole_log(ledger.engine, ledger.log_signer)
            assert size == kept[-1].seq + 1

            disk.free()
            landed = ledger.log.append(many)
            assert [e.seq for e in landed] == list(range(size, size + len(many)))
            assert assert_whole_log(ledger.engine, ledger.log_signer) == size + len(many)
        finally:
            if ledger is not None:
                ledger.engine.dispose()
            pg_cluster.drop_database(name)
            with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
                conn.execute(sql.SQL("DROP TABLESPACE IF EXISTS {}").format(sql.Identifier(space)))
