"""``suyuan serve --mirror DIR``: refuses what is not a verified mirror (exit 2), needs no instance.

Most tests stop short of gunicorn (``web.mirror.run_mirror`` is replaced); one
slow test starts the real server on loopback, with one worker, and watches it
follow the origin.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import web.mirror
from ledger.cli import main
from ledger.db import make_engine
from ledger.ingest import database_url, ingest_directory, stored_size
from ledger.tiles import entry_bundles_for_size
from tests.helpers import Ledger, make_ledger
from tests.mirror_site.support import foreign_log, mirror_of


@pytest.fixture
def origin(tmp_path: Path) -> Ledger:
    made = make_ledger(f"sqlite:///{tmp_path / 'origin.db'}")
    made.notes(4)
    return made


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Calls of run_mirror (gunicorn is not started)."""
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(web.mirror, "run_mirror", lambda *args: calls.append(args))
    return calls


def serve(tmp_path: Path, *args: str) -> Result:
    """``suyuan serve`` with no instance folder, database or passphrase configured."""
    env = {name: None for name in os.environ if name.startswith("SUYUAN_")}
    env["SUYUAN_INSTANCE"] = str(tmp_path / "no-instance")
    return CliRunner().invoke(main, ["serve", *args], env=env)  # type: ignore[arg-type]


def test_help_lists_the_option() -> None:
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0 and "--mirror" in result.output


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "is not a directory"),
        ("empty", ".mirror/vkey is missing"),
        ("no-checkpoint", "is not a tlog-tiles tree (no checkpoint)"),
        ("other-key", "does not verify with the mirror's key"),
        ("not-a-note", "does not verify with the mirror's key"),
        ("bad-vkey", ".mirror/vkey: expected a vkey"),
    ],
)
def test_a_bad_directory_is_a_clear_error_with_exit_2(
    origin: Ledger, tmp_path: Path, started: list[tuple[Any, ...]], setup: str, message: str
) -> None:
    directory = tmp_path / "mirror"
    if setup != "missing":
        directory.mkdir()
    if setup in ("no-checkpoint", "other-key", "not-a-note", "bad-vkey"):
        mirror_of(origin.log, directory)
        if setup == "no-checkpoint":
            (directory / "checkpoint").unlink()
        elif setup == "other-key":
            other = make_ledger(f"sqlite:///{tmp_path / 'other.db'}")
            (directory / ".mirror" / "vkey").write_text(other.log.verifier.vkey)
        elif setup == "not-a-note":
            (directory / "checkpoint").write_text("hello\n")
        else:
            (directory / ".mirror" / "vkey").write_text("not a key")
    result = serve(tmp_path, "--mirror", str(directory))
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--mirror'" in result.output and message in result.output
    assert started == []
    assert not (tmp_path / "no-instance").exists()
    assert not (directory / ".mirror" / "ledger.db").exists()


def test_a_good_mirror_is_synced_then_served_without_an_instance(
    origin: Ledger, tmp_path: Path, started: list[tuple[Any, ...]]
) -> None:
    directory = mirror_of(origin.log, tmp_path / "mirror")
    result = serve(tmp_path, "--mirror", str(directory), "--port", "8123", "--workers", "2")
    assert result.exit_code == 0, result.output
    assert started == [(directory, "127.0.0.1", 8123, 2)]
    engine = make_engine(database_url(directory))
    assert stored_size(engine) == origin.log.size()
    engine.dispose()
    assert not (tmp_path / "no-instance").exists()


def test_a_foreign_log_is_served_without_a_database(
    tmp_path: Path, started: list[tuple[Any, ...]]
) -> None:
    log = foreign_log(tmp_path / "mirror", 10)
    result = serve(tmp_path, "--mirror", str(log.directory))
    assert result.exit_code == 0, result.output
    assert len(started) == 1
    assert not (log.directory / ".mirror" / "ledger.db").exists()


def test_a_failed_first_sync_stops_an_empty_mirror_but_not_a_verified_one(
    origin: Ledger, tmp_path: Path, started: list[tuple[Any, ...]]
) -> None:
    directory = mirror_of(origin.log, tmp_path / "mirror")
    size = origin.log.size()
    origin.notes(2, prefix="tampered")
    mirror_of(origin.log, directory)
    bundle = directory / entry_bundles_for_size(origin.log.size())[-1].path()
    bundle.write_bytes(bundle.read_bytes().replace(b"tampered 1", b"tampered X"))
    result = serve(tmp_path, "--mirror", str(directory))
    assert result.exit_code == 1 and f"seq {size + 1}: " in result.output
    assert started == []
    # A mirror that verified an earlier copy serves it, and says why it is behind.
    mirror_of(origin.log, directory)
    ingest_directory(directory)
    origin.notes(2, prefix="again")
    mirror_of(origin.log, directory)
    bundle = directory / entry_bundles_for_size(origin.log.size())[-1].path()
    bundle.write_bytes(bundle.read_bytes().replace(b"again 1", b"again X"))
    result = serve(tmp_path, "--mirror", str(directory))
    assert result.exit_code == 0, result.output
    assert f"warning: serving the {size + 2} entries verified before" in result.output
    assert len(started) == 1


# --- the real server --------------------------------------------------------------------


def _get(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        with response:
            return response.status, response.read()
    finally:
        connection.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_serve_mirror_runs_gunicorn_and_follows_the_origin(origin: Ledger, tmp_path: Path) -> None:
    directory = mirror_of(origin.log, tmp_path / "mirror")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUYUAN_")}
    env.update(SUYUAN_INSTANCE=str(tmp_path / "no-instance"), SUYUAN_MIRROR_SYNC_SECONDS="0.2")
    port = _free_port()
    output = (tmp_path / "serve.log").open("wb")
    command = [sys.executable, "-m", "ledger.cli", "serve", "--mirror", str(directory)]
    server = subprocess.Popen(
        [*command, "--port", str(port), "--workers", "1"],
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail((tmp_path / "serve.log").read_text(errors="replace")[-3000:])
                time.sleep(0.2)
        status, page = _get(port, "/mirror")
        assert status == 200 and b"test.suyuan.example/log" in page
        assert _get(port, "/log/checkpoint") == (200, (directory / "checkpoint").read_bytes())
        assert _get(port, "/log/checkpoint", "POST")[0] == 503
        origin.notes(3, prefix="grown")
        mirror_of(origin.log, directory)
        grown = f'"size":{origin.log.size()}'.encode()
        deadline = time.monotonic() + 15
        while grown not in _get(port, "/healthz")[1].replace(b" ", b""):
            if time.monotonic() > deadline:
                pytest.fail("the served mirror did not follow the origin")
            time.sleep(0.1)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        output.close()
