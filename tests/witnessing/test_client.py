"""The log's witnessing client (ledger/witnessing.py) against real witnesses over HTTP.

Each witness is W1's app (``web.witness_app.create_witness_app``) served by werkzeug on
127.0.0.1: the client's requests, the witness's checks and its answers are the real ones.
"""

from __future__ import annotations

import base64
import http.server
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import select, text, update

from ledger import schema, witnessing
from ledger.checkpoint import verify_checkpoint
from ledger.cosignature import CosignatureSigner, cosign_line, verify_cosignatures
from ledger.db import make_engine
from ledger.errors import Conflict, InvalidInput, NotFound
from ledger.log import Log
from ledger.note import open_note
from tests.helpers import Ledger, check_ledger, new_signer
from tests.witnessing.support import (
    RunningWitness,
    flip_signature,
    free_port,
    running_witness,
)


@pytest.fixture
def witness(tmp_path: Path, ledger: Ledger) -> Iterator[RunningWitness]:
    with running_witness(tmp_path / "w1", ledger.log.verifier.vkey) as running:
        yield running


def cosignature_rows(ledger: Ledger) -> list[tuple[int, str]]:
    c = schema.cosignatures.c
    with ledger.engine.connect() as conn:
        return [(int(r.size), r.key_id) for r in conn.execute(select(c.size, c.key_id))]


def state(ledger: Ledger, key_id: str) -> witnessing.WitnessStatus:
    (found,) = [s for s in witnessing.list_witnesses(ledger.engine) if s.witness.key_id == key_id]
    return found


# --- the ordinary round -------------------------------------------------------------------


def test_round_submits_verifies_and_stores(ledger: Ledger, witness: RunningWitness) -> None:
    record = witnessing.add_witness(ledger.engine, witness.vkey, witness.url + "/")
    assert record.url == witness.url and record.submit_url == witness.url + "/add-checkpoint"
    assert state(ledger, record.key_id).status == "never"

    first = witnessing.witness_round(ledger.log)
    assert [o.status for o in first.outcomes] == ["cosigned"]
    assert first.outcomes[0].cosigned == first.size == 1
    assert witness.requests[0].startswith(b"old 0\n\n")  # no proof from size 0

    ledger.notes(6)
    second = witnessing.witness_round(ledger.log)
    assert second.size == 7 and second.outcomes[0].status == "cosigned"
    # tlog-witness body: old line, the consistency proof 1 → 7, empty line, the checkpoint
    head, _, note = witness.requests[1].decode().partition("\n\n")
    old_line, *proof_lines = head.split("\n")
    assert old_line == "old 1"
    assert [base64.b64decode(p) for p in proof_lines] == ledger.log.consistency_proof(1, 7)
    assert note == ledger.log.latest_checkpoint().note

    # nothing new: nothing sent
    third = witnessing.witness_round(ledger.log)
    assert third.outcomes[0].status == "up-to-date" and len(witness.requests) == 2

    status = state(ledger, record.key_id)
    assert (status.size, status.status, status.error, status.cosigned_size) == (
        7,
        "cosigned",
        None,
        7,
    )
    assert sorted(cosignature_rows(ledger)) == [(1, record.key_id), (7, record.key_id)]

    # the published note: the log's line, then the witness's; both verify
    latest = ledger.log.latest_checkpoint()
    note = witnessing.cosigned_note(ledger.log, latest)
    assert note.startswith(latest.note) and note != latest.note
    opened = open_note(note, [ledger.log.verifier, witness.verifier])
    assert [s.key_id for s in opened.verified] == [ledger.log.verifier.key_id, record.key_id]
    assert [name for name, _ in verify_cosignatures(note, [witness.verifier])] == [witness.name]
    # a client that knows only the log key still accepts it, the line kept unverified
    checkpoint, plain = verify_checkpoint(note, ledger.log.verifier, ledger.log.origin)
    assert checkpoint.size == 7 and [s.key_id for s in plain.unverified] == [record.key_id]
    # the witness's own record agrees
    assert witness.store.state(ledger.log.origin).size == 7  # type: ignore[union-attr]
    check_ledger(ledger.engine)


def test_latest_witnessed_and_what_counts(ledger: Ledger, witness: RunningWitness) -> None:
    record = witnessing.add_witness(ledger.engine, witness.vkey, witness.url)
    assert witnessing.latest_witnessed(ledger.engine) is None
    ledger.notes(5)  # size 6
    witnessing.witness_round(ledger.log)
    ledger.notes(4)  # size 10, not yet cosigned
    for source in (ledger.engine, ledger.log):
        found = witnessing.latest_witnessed(source)
        assert found is not None and found.size == 6
        assert found == ledger.log.checkpoint(6)
    assert witnessing.latest_witnessed(ledger.engine, 6) == ledger.log.checkpoint(6)
    assert witnessing.latest_witnessed(ledger.engine, 7) is None  # does not cover seq 6
    newest = ledger.log.latest_checkpoint()
    assert witnessing.cosigned_note(ledger.engine, newest) == newest.note

    # disabled: no more submissions, what it cosigned still counts
    witnessing.set_active(ledger.engine, witness.name, False)
    skipped = witnessing.witness_round(ledger.log)
    assert skipped.outcomes == () and len(witness.requests) == 1
    assert witnessing.latest_witnessed(ledger.engine) == ledger.log.checkpoint(6)
    witnessing.set_active(ledger.engine, record.key_id, True)
    assert witnessing.witness_round(ledger.log).outcomes[0].status == "cosigned"
    assert witnessing.latest_witnessed(ledger.engine, 7) == newest

    # removed: not published, not counted (the rows stay as history)
    witnessing.remove_witness(ledger.engine, record.vkey)
    assert witnessing.latest_witnessed(ledger.engine) is None
    assert witnessing.cosigned_note(ledger.engine, newest) == newest.note
    assert len(cosignature_rows(ledger)) == 2
    with pytest.raises(NotFound):
        witnessing.remove_witness(ledger.engine, record.key_id)


def test_adding_witnesses_is_checked(sqlite_ledger: Ledger) -> None:
    engine = sqlite_ledger.engine
    key = CosignatureSigner("w.example/a", new_signer("x").private_key, lambda: 0.0)
    witnessing.add_witness(engine, key.vkey, "https://w.example/a")
    with pytest.raises(Conflict, match="configured already"):
        witnessing.add_witness(engine, key.vkey, "https://elsewhere.example")
    other = CosignatureSigner("w.example/a", new_signer("y").private_key, lambda: 0.0)
    with pytest.raises(Conflict, match="another key"):
        witnessing.add_witness(engine, other.vkey, "https://w.example/a")
    with pytest.raises(InvalidInput, match="0x04"):  # a log's note key is not a witness key
        witnessing.add_witness(engine, sqlite_ledger.log.verifier.vkey, "https://w.example")
    for url in ("ftp://w.example", "w.example/a", "https://w.example/?x=1", "https://"):
        with pytest.raises(InvalidInput):
            witnessing.add_witness(engine, other.vkey, url)
    assert [w.name for w in witnessing.known_witnesses(engine)] == ["w.example/a"]


# --- 409: resynchronising ----------------------------------------------------------------


def test_conflict_resyncs_from_the_witness_size(ledger: Ledger, witness: RunningWitness) -> None:
    record = witnessing.add_witness(ledger.engine, witness.vkey, witness.url)
    ledger.notes(4)  # size 5
    witnessing.witness_round(ledger.log)
    # the log forgets what the witness acknowledged (a restored database, another host)
    with ledger.engine.begin() as conn:
        conn.execute(update(schema.witness_state).values(size=0))
    ledger.notes(3)  # size 8
    sent = len(witness.requests)
    result = witnessing.witness_round(ledger.log)
    assert result.outcomes[0].status == "cosigned", result.line()
    first, second = witness.requests[sent:]
    assert first.startswith(b"old 0\n\n")  # refused with 409 and the witness's size 5
    assert second.startswith(b"old 5\n") and second.count(b"\n\n") == 2
    assert state(ledger, record.key_id).size == 8

    # a record ahead of the log: asks afresh, then resyncs
    with ledger.engine.begin() as conn:
        conn.execute(update(schema.witness_state).values(size=1000))
    ledger.note("one more")  # size 9
    sent = len(witness.requests)
    assert witnessing.witness_round(ledger.log).outcomes[0].status == "cosigned"
    assert [r.split(b"\n", 1)[0] for r in witness.requests[sent:]] == [b"old 0", b"old 8"]


def _fork(ledger: Ledger, directory: Path) -> Ledger:
    """A copy of the SQLite log, same key, from here on with its own history."""
    ledger.engine.dispose()
    path = directory / "fork.db"
    shutil.copyfile(ledger.url.removeprefix("sqlite:///"), path)
    engine = make_engine(f"sqlite:///{path}")
    log = Log.open(engine, ledger.log_signer)
    return Ledger(engine, f"sqlite:///{path}", log, ledger.log_signer, ledger.admin)


def test_a_rewritten_history_is_refused_and_reported(sqlite_ledger: Ledger, tmp_path: Path) -> None:
    ledger = sqlite_ledger
    with running_witness(tmp_path / "w", ledger.log.verifier.vkey) as witness:
        record = witnessing.add_witness(ledger.engine, witness.vkey, witness.url)
        ledger.notes(3)  # size 4
        fork = _fork(ledger, tmp_path)
        ledger.notes(2, prefix="history A")  # size 6
        assert witnessing.witness_round(ledger.log).outcomes[0].status == "cosigned"

        # same size, another root: the witness answers 409 with its size; after the
        # resync the old size equals the new one and the roots differ → conflict
        fork.notes(2, prefix="history B")
        outcome = witnessing.witness_round(fork.log).outcomes[0]
        assert outcome.status == "conflict", outcome
        assert "different tree head at size 6" in outcome.message
        assert state(fork, record.key_id).status == "conflict"
        assert cosignature_rows(fork) == [] or all(s <= 4 for s, _ in cosignature_rows(fork))

        # larger: the proof from the witness's size 6 cannot verify → 422
        fork.notes(3, prefix="history B more")
        outcome = witnessing.witness_round(fork.log).outcomes[0]
        assert outcome.status == "inconsistent", outcome
        assert "(422)" in outcome.message
        assert witnessing.latest_witnessed(fork.engine, 5) is None
        # and the witness kept evidence of both refusals
        assert witness.store.evidence_count() >= 1
        # the honest log still goes on
        ledger.note("more A")
        assert witnessing.witness_round(ledger.log).outcomes[0].status == "cosigned"
    fork.engine.dispose()


# --- answers that must not be stored -------------------------------------------------------


def test_a_bad_cosignature_is_never_stored(ledger: Ledger, tmp_path: Path) -> None:
    with running_witness(
        tmp_path / "w", ledger.log.verifier.vkey, rewrite=flip_signature
    ) as witness:
        record = witnessing.add_witness(ledger.engine, witness.vkey, witness.url)
        ledger.notes(2)
        outcome = witnessing.witness_round(ledger.log).outcomes[0]
    assert outcome.status == "bad-cosignature" and outcome.cosigned is None
    assert "does not verify" in outcome.message and "not stored" in outcome.message
    assert cosignature_rows(ledger) == []
    status = state(ledger, record.key_id)
    assert status.status == "bad-cosignature" and status.cosigned_size is None
    assert status.error and "does not verify" in status.error
    latest = ledger.log.latest_checkpoint()
    assert witnessing.cosigned_note(ledger.engine, latest) == latest.note
    assert witnessing.latest_witnessed(ledger.engine) is None


def test_a_cosignature_by_another_key_is_not_taken(ledger: Ledger, tmp_path: Path) -> None:
    impostor = CosignatureSigner(
        "witness.audit.example/w1", new_signer("z").private_key, lambda: 1_700_000_000.0
    )

    def other_key(answer: bytes) -> bytes:
        text = ledger.log.latest_checkpoint().checkpoint.text()
        return cosign_line(impostor, text).encode()

    with running_witness(tmp_path / "w", ledger.log.verifier.vkey, rewrite=other_key) as witness:
        witnessing.add_witness(ledger.engine, witness.vkey, witness.url)
        outcome = witnessing.witness_round(ledger.log).outcomes[0]
    assert outcome.status == "bad-cosignature"
    assert f"expected a cosignature by {witness.verifier.key_id}" in outcome.message
    assert cosignature_rows(ledger) == []


def test_refusals_are_recorded_with_the_reason(sqlite_ledger: Ledger, tmp_path: Path) -> None:
    ledger = sqlite_ledger
    other_log = new_signer("other.example/log")
    same_name = new_signer(ledger.log.origin)  # the origin, but not this log's key
    with (
        running_witness(tmp_path / "a", other_log.verifier.vkey, "w.example/a") as unknown,
        running_witness(tmp_path / "b", same_name.verifier.vkey, "w.example/b") as distrust,
    ):
        witnessing.add_witness(ledger.engine, unknown.vkey, unknown.url)
        witnessing.add_witness(ledger.engine, distrust.vkey, distrust.url)
        result = witnessing.witness_round(ledger.log)
    by_name = {o.name: o for o in result.outcomes}
    assert by_name["w.example/a"].status == "unknown-log"
    assert f"not configured for the origin {ledger.log.origin} (404)" in (
        by_name["w.example/a"].message
    )
    assert by_name["w.example/b"].status == "refused"
    assert "(403)" in by_name["w.example/b"].message
    assert cosignature_rows(ledger) == []
    assert {s.witness.name: s.status for s in witnessing.list_witnesses(ledger.engine)} == {
        "w.example/a": "unknown-log",
        "w.example/b": "refused",
    }


def test_a_bad_proof_gets_422(sqlite_ledger: Ledger, tmp_path: Path) -> None:
    """The client's proof reaches the witness as built: a corrupted one is refused (422)."""
    ledger = sqlite_ledger
    with running_witness(tmp_path / "w", ledger.log.verifier.vkey) as witness:
        witnessing.add_witness(ledger.engine, witness.vkey, witness.url)
        ledger.notes(2)
        witnessing.witness_round(ledger.log)
        ledger.notes(5)
        real = witnessing.HttpTransport()

        def corrupt(url: str, body: bytes, timeout: float) -> witnessing.Reply:
            head, sep, rest = body.partition(b"\n")
            first, sep2, tail = rest.partition(b"\n")
            raw = bytearray(base64.b64decode(first))
            raw[0] ^= 1
            return real(url, head + sep + base64.b64encode(bytes(raw)) + sep2 + tail, timeout)

        outcome = witnessing.witness_round(ledger.log, transport=corrupt).outcomes[0]
        real.close()
        assert outcome.status == "inconsistent" and "from size 3 to 8" in outcome.message
        assert witnessing.witness_round(ledger.log).outcomes[0].status == "cosigned"


# --- witnesses that do not answer -------------------------------------------------------------


def test_a_witness_that_is_down_is_recorded_and_the_loop_goes_on(
    sqlite_ledger: Ledger, tmp_path: Path
) -> None:
    ledger = sqlite_ledger
    silent = socket.socket()  # accepts connections, never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    down_key = CosignatureSigner("w.example/down", new_signer("d").private_key, lambda: 0.0)
    slow_key = CosignatureSigner("w.example/slow", new_signer("s").private_key, lambda: 0.0)
    try:
        with running_witness(tmp_path / "w", ledger.log.verifier.vkey) as live:
            witnessing.add_witness(ledger.engine, down_key.vkey, f"http://127.0.0.1:{free_port()}")
            witnessing.add_witness(
                ledger.engine, slow_key.vkey, f"http://127.0.0.1:{silent.getsockname()[1]}"
            )
            witnessing.add_witness(ledger.engine, live.vkey, live.url)
            rounds: list[witnessing.Round] = []
            stop = threading.Event()

            def on_round(result: witnessing.Round) -> None:
                rounds.append(result)
                if len(rounds) == 1:
                    ledger.notes(2)  # something new for the second round
                else:
                    stop.set()

            count = witnessing.run(ledger.log, 0.01, stop, on_round=on_round, timeout=0.5)
    finally:
        silent.close()
    assert count == 2 and [r.size for r in rounds] == [1, 3]
    for result in rounds:
        by_name = {o.name: o for o in result.outcomes}
        assert by_name[live.name].status == "cosigned"
        assert by_name["w.example/down"].status == "unreachable"
        assert by_name["w.example/slow"].status == "unreachable"
        assert "no answer within 0.5 s" in by_name["w.example/slow"].message
    listed = {s.witness.name: s for s in witnessing.list_witnesses(ledger.engine)}
    assert listed["w.example/down"].status == "unreachable"
    assert listed["w.example/down"].error and "127.0.0.1" in listed["w.example/down"].error
    assert listed[live.name].cosigned_size == 3
    assert "1/3 witnesses current" in rounds[1].line()


def test_the_loop_survives_a_failing_round(sqlite_ledger: Ledger) -> None:
    ledger = sqlite_ledger
    errors: list[str] = []
    stop = threading.Event()
    calls = {"n": 0}

    def broken(url: str, body: bytes, timeout: float) -> witnessing.Reply:
        raise AssertionError("no witness is configured: nothing may be sent")

    with ledger.engine.begin() as conn:
        conn.execute(text("DROP TABLE witnesses"))  # the database fails mid-flight

    def on_error(exc: Exception) -> None:
        errors.append(str(exc))
        calls["n"] += 1
        if calls["n"] == 2:
            stop.set()

    count = witnessing.run(ledger.log, 0.01, stop, on_error=on_error, transport=broken)
    assert count == 2 and len(errors) == 2 and "witnesses" in errors[0]


class _KeepAlive(http.server.BaseHTTPRequestHandler):
    """An HTTP/1.1 server that keeps connections open (werkzeug's test server does not)."""

    protocol_version = "HTTP/1.1"
    ports: ClassVar[list[int]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.ports.append(self.client_address[1])
        big = self.path == "/big/add-checkpoint"
        body = b"x" * (witnessing.MAX_REPLY + 10) if big else b"\xe2\x80\x94 w AAAA\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_transport_keeps_connections_alive_and_bounds_answers() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _KeepAlive)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    ports = _KeepAlive.ports
    transport = witnessing.HttpTransport()
    try:
        first = transport(url + "/add-checkpoint", b"old 0\n\nx\n", 5)
        second = transport(url + "/add-checkpoint", b"old 0\n\nx\n", 5)
        assert first.status == second.status == 200 and not first.truncated
        assert ports[0] == ports[1]  # one kept-alive connection (tlog-witness: SHOULD)
        big = transport(url + "/big/add-checkpoint", b"old 0\n\nx\n", 5)
        assert big.truncated and len(big.body) == witnessing.MAX_REPLY
        third = transport(url + "/add-checkpoint", b"old 0\n\nx\n", 5)
        assert third.status == 200 and ports[-1] != ports[0]  # the oversized one was dropped
    finally:
        transport.close()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    with pytest.raises(witnessing.Unreachable):
        transport(f"http://127.0.0.1:{free_port()}/add-checkpoint", b"", 2)
