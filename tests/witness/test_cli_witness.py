"""``suyuan witness …``: init, vkey, trust, logs, evidence, serve (a real gunicorn round trip)."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ledger.cli import main
from ledger.cosignature import parse_witness_vkey, verify_cosignatures
from ledger.witness_store import WitnessStore
from tests.witness.support import PASSPHRASE, MemoryLog

NAME = "witness.bureau.example/w1"


class Cli:
    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path / "witness"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SUYUAN_")}
        self.env["SUYUAN_PASSPHRASE"] = PASSPHRASE.decode()
        self.runner = CliRunner()

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return self.runner.invoke(
            main, ["witness", *args], env={**self.env, **(env or {})}, catch_exceptions=False
        )


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    made = Cli(tmp_path)
    result = made("init", "--dir", str(made.dir), "--name", NAME)
    assert result.exit_code == 0, result.output
    return made


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.suffix in (".key", ".db")
    }


def test_init_prints_the_vkey_and_refuses_twice(cli: Cli) -> None:
    vkey = cli("vkey", "--dir", str(cli.dir)).stdout.strip()
    verifier = parse_witness_vkey(vkey)
    assert verifier.name == NAME
    assert (cli.dir / "witness.key").stat().st_mode & 0o777 == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in (cli.dir / "witness.key").read_bytes()
    before = _snapshot(cli.dir)
    again = cli("init", "--dir", str(cli.dir), "--name", NAME)
    assert again.exit_code == 2 and "already holds a witness" in again.stderr
    assert _snapshot(cli.dir) == before


@pytest.mark.parametrize(
    "args",
    [
        ["init", "--dir", "{tmp}/new", "--name", "has space"],
        ["init", "--dir", "{tmp}/new", "--name", "plus+sign"],
        ["init", "--dir", "{tmp}/new"],
        ["vkey", "--dir", "{tmp}/missing"],
        ["vkey", "--dir", "{tmp}"],  # a directory without a witness
        ["logs", "--dir", "{tmp}/missing"],
        ["trust", "--dir", "{tmp}/missing", "a+00000000+AQ=="],
        ["serve", "--dir", "{tmp}", "--port", "0"],
        ["serve", "--dir", "{tmp}", "--port", "70000"],
        ["serve", "--dir", "{tmp}", "--workers", "0"],
    ],
)
def test_bad_arguments_write_nothing(tmp_path: Path, args: list[str]) -> None:
    cli = Cli(tmp_path)
    result = cli(*[a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2, result.output
    assert (result.stderr or result.output).strip()
    assert not (tmp_path / "new").exists() and not (tmp_path / "missing").exists()
    assert not (tmp_path / "witness.db").exists()


def test_trust_logs_and_refusals(cli: Cli) -> None:
    log = MemoryLog()
    d = str(cli.dir)
    result = cli("trust", "--dir", d, log.signer.verifier.vkey)
    assert result.exit_code == 0 and "trusting log" in result.stderr
    assert "nothing changed" in cli("trust", "--dir", d, log.signer.verifier.vkey).stderr
    before = _snapshot(cli.dir)
    other = MemoryLog()  # same origin, another key
    refused = cli("trust", "--dir", d, other.signer.verifier.vkey)
    assert refused.exit_code == 2 and "trusted with key" in refused.stderr
    witness_vkey = cli("vkey", "--dir", d).stdout.strip()
    assert cli("trust", "--dir", d, witness_vkey).exit_code == 2  # a cosigner key, not a log key
    assert cli("trust", "--dir", d, "not a vkey").exit_code == 2
    assert _snapshot(cli.dir) == before
    # A log whose key name is not its origin (as Go's sumdb): --origin.
    named = cli("trust", "--dir", d, other.signer.verifier.vkey, "--origin", "go.sum database tree")
    assert named.exit_code == 0
    lines = cli("logs", "--dir", d).stdout.splitlines()
    assert [line.split("\t")[:4] for line in lines] == [
        ["go.sum database tree", "-", "-", "-"],
        [log.origin, "-", "-", "-"],
    ]
    # After a cosignature, the size, root and time show.
    log.append(3)
    store = WitnessStore.open(cli.dir)
    assert store.submit(log.body(0), store.signer(PASSPHRASE)).status == 200
    records = [json.loads(line) for line in cli("logs", "--dir", d, "--json").stdout.splitlines()]
    mine = next(r for r in records if r["origin"] == log.origin)
    assert mine["size"] == 3 and mine["vkey"] == log.signer.verifier.vkey
    assert mine["root"] == log.checkpoint().text().split("\n")[2]


def test_evidence_listing(cli: Cli) -> None:
    log = MemoryLog()
    log.append(4)
    d = str(cli.dir)
    assert cli("trust", "--dir", d, log.signer.verifier.vkey).exit_code == 0
    assert cli("evidence", "--dir", d).stdout == ""
    store = WitnessStore.open(cli.dir)
    signer = store.signer(PASSPHRASE)
    assert store.submit(log.body(0), signer).status == 200
    forked = MemoryLog(signer=log.signer)
    forked.append(4, prefix="forged")
    assert store.submit(forked.body(4, 4, []), signer).status == 409
    text = cli("evidence", "--dir", d).stdout.splitlines()
    assert len(text) == 1 and "\t409\tfork\tx1\t" in text[0] and log.origin in text[0]
    (record,) = [
        json.loads(line) for line in cli("evidence", "--dir", d, "--json").stdout.splitlines()
    ]
    assert record["reason"] == "fork" and record["witness_size"] == 4
    assert record["body"] == forked.body(4, 4, []).decode()
    assert record["witness_note"] == log.note(4)
    assert cli("evidence", "--dir", d, "--origin", "other").stdout == ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _request(
    port: int, method: str, path: str, body: bytes | None = None
) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "text/plain"})
        response = connection.getresponse()
        with response:
            return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        connection.close()


def test_serve_refuses_a_wrong_passphrase(cli: Cli) -> None:
    result = cli("serve", "--dir", str(cli.dir), env={"SUYUAN_PASSPHRASE": "wrong"})
    assert result.exit_code == 2 and "passphrase" in result.stderr


@pytest.mark.slow
def test_serve_round_trip(cli: Cli, tmp_path: Path) -> None:
    log = MemoryLog()
    log.append(10)
    assert cli("trust", "--dir", str(cli.dir), log.signer.verifier.vkey).exit_code == 0
    port = _free_port()
    output = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ledger.cli",
            "witness",
            "serve",
            "--dir",
            str(cli.dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env=cli.env,
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
                    server.kill()
                    server.wait(timeout=10)
                    text = (tmp_path / "serve.log").read_text(errors="replace")
                    pytest.fail(f"suyuan witness serve did not come up:\n{text[-3000:]}")
                time.sleep(0.2)
        status, ctype, vkey = _request(port, "GET", "/vkey")
        verifier = parse_witness_vkey(vkey.decode().strip())
        started = time.monotonic()
        status, ctype, body = _request(port, "POST", "/add-checkpoint", log.body(0))
        elapsed = time.monotonic() - started
        assert (status, ctype) == (200, "text/plain; charset=utf-8")
        assert len(verify_cosignatures(log.note() + body.decode(), [verifier])) == 1
        assert elapsed < 5  # generous here; bench/ measures the real figure
        log.append(5)
        assert _request(port, "POST", "/add-checkpoint", log.body(3))[:2] == (
            409,
            "text/x.tlog.size",
        )
        status, ctype, page = _request(port, "GET", "/")
        assert status == 200 and NAME.encode() in page
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        output.close()
