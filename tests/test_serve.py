"""``suyuan serve`` starts gunicorn and serves the log (loopback only, bounded waits)."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger.checkpoint import verify_checkpoint
from ledger.note import parse_vkey
from tests.helpers import ORIGIN, env_for


def _get(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
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
def test_serve_runs_gunicorn_and_serves_the_log(tmp_path: Path) -> None:
    env = env_for(tmp_path / "instance", SUYUAN_SECRET_KEY="test-secret")
    subprocess.run(
        [sys.executable, "-m", "ledger.cli", "init"], env=env, check=True, capture_output=True
    )
    port = _free_port()
    log_file = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ledger.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:  # wait for the port, not for an HTTP answer (half-started servers reset)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    server.kill()
                    server.wait(timeout=10)
                    output = (tmp_path / "serve.log").read_text(errors="replace")
                    pytest.fail(f"suyuan serve did not come up:\n{output[-3000:]}")
                time.sleep(0.2)
        status, body = _get(port, "/healthz")
        assert status == 200 and b'"status":"ok"' in body.replace(b" ", b"")
        status, vkey = _get(port, "/log/vkey")
        verifier = parse_vkey(vkey.decode().strip())
        status, note = _get(port, "/log/checkpoint")
        checkpoint, _ = verify_checkpoint(note, verifier, ORIGIN)
        assert checkpoint.size == 1
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log_file.close()


def test_serve_refuses_without_a_secret_key(tmp_path: Path) -> None:
    env = env_for(tmp_path / "instance")
    subprocess.run(
        [sys.executable, "-m", "ledger.cli", "init"], env=env, check=True, capture_output=True
    )
    import os

    from ledger.errors import ConfigError
    from web import create_app

    saved = dict(os.environ)
    try:
        os.environ.update(env)
        os.environ.pop("SUYUAN_SECRET_KEY", None)
        os.environ.pop("SUYUAN_DEV", None)
        with pytest.raises(ConfigError, match="SUYUAN_SECRET_KEY"):
            create_app()
    finally:
        os.environ.clear()
        os.environ.update(saved)
