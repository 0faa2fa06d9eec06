"""Two ``suyuan serve`` processes (separate OS processes) appending to one primary at once.

Each process has its own Log, engine and group commit; they serialise on the primary's
``SELECT … FOR UPDATE`` of ``log_state``.  The test posts signed notes to both over HTTP,
restarts the primary once in the middle, and then checks that every acknowledged entry is
stored at the seq it was given, that there is no gap, and that ``suyuan verify`` passes on
the primary and on the replica.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from ledger.entry import decode_entry, make_statement, sign_statement
from ledger.merkle import leaf_hash
from ledger.schema import entries
from ledger.tokens import create_token
from tests.helpers import now
from tests.pg.conftest import Deployment
from tests.pg.test_restart import verify_both

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SERVERS = 2
POSTERS_PER_SERVER = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``python -m ledger.cli serve`` in its own session (killed by its process group id)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = _free_port()
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ledger.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            env={**env, "SUYUAN_ACCESS_LOG": ""},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                connection.request("GET", "/healthz")
                with connection.getresponse() as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            finally:
                connection.close()
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"suyuan serve did not come up:\n{self.output()}")
            time.sleep(0.2)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()


def post(port: int, body: bytes, token: str) -> tuple[int, dict[str, Any]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(
            "POST",
            "/api/v1/entries",
            body=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        with connection.getresponse() as response:
            return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def test_two_serve_processes_append_to_one_primary_without_gaps(
    deployment: Deployment, tmp_path: Path
) -> None:
    token = create_token(deployment.engine(deployment.primary_url), "writers")
    instance = deployment.instance(replica=False)
    log, admin = instance.reader(), instance.author("admin")
    env = deployment.env()  # writes to the primary, reads from the replica
    servers = [Server(env, tmp_path / f"serve-{i}.log") for i in range(SERVERS)]
    acknowledged: dict[str, tuple[int, str]] = {}
    refused: dict[str, bytes] = {}
    unexpected: list[tuple[int, dict[str, Any]]] = []
    lock = threading.Lock()
    stop = threading.Event()
    run = uuid.uuid4().hex[:6]

    def poster(server: Server, worker: int) -> None:
        i = 0
        while not stop.is_set():
            text = f"{run} p{server.port} w{worker} #{i}"
            i += 1
            signed = sign_statement(
                make_statement("note", {"text": text}, log.origin, now()), [admin]
            )
            body = json.dumps(signed.to_json()).encode()
            try:
                status, answer = post(server.port, body, token)
            except OSError as exc:
                status, answer = 0, {"error": str(exc)}
            with lock:
                if status == 201:
                    (item,) = answer["entries"]
                    acknowledged[text] = (item["seq"], item["leaf_hash"])
                elif status == 503 and answer["error"]["code"] == "storage_error":
                    refused[text] = body
                else:
                    unexpected.append((status, answer))
            if status != 201:
                time.sleep(0.05)

    try:
        for server in servers:
            server.wait_ready()
        threads = [
            threading.Thread(target=poster, args=(server, w), name=f"post-{server.port}-{w}")
            for server in servers
            for w in range(POSTERS_PER_SERVER)
        ]
        for t in threads:
            t.start()
        try:
            time.sleep(2.0)
            with lock:
                before_restart = len(acknowledged)
            deployment.pair.primary.restart()
            time.sleep(2.0)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=120)
        # Retry what the restart cut off: each ends up in the log exactly once.
        for body in refused.values():
            status, answer = post(servers[0].port, body, token)
            assert status in (201, 409), answer
    finally:
        for server in servers:
            server.stop()
    assert unexpected == [], unexpected
    assert before_restart > 20
    assert len(acknowledged) > before_restart  # both processes went on after the restart
    ports = {text.split()[1] for text in acknowledged}
    assert ports == {f"p{s.port}" for s in servers}  # both processes wrote

    with deployment.engine(deployment.primary_url).connect() as conn:
        rows = conn.execute(select(entries.c.seq, entries.c.leaf).order_by(entries.c.seq)).all()
    seqs = [int(seq) for seq, _leaf in rows]
    assert seqs == list(range(len(seqs)))  # no gap, no duplicate
    by_text = {
        decode_entry(bytes(leaf)).body.get("text"): (int(seq), leaf_hash(bytes(leaf)).hex())
        for seq, leaf in rows
    }
    for text, given in acknowledged.items():
        assert by_text.get(text) == given, text
    assert set(refused) <= set(by_text)
    assert verify_both(deployment) == len(seqs)
