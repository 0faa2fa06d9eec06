"""The witness service over HTTP (web.witness_app) and its store (ledger.witness_store).

Status codes per C2SP tlog-witness, evidence, atomicity under concurrent
submissions (threads and processes), persistence across restarts, a real
Suyuan log submitting its checkpoints, and a log whose history was rewritten
in its database being caught.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.cosignature import parse_witness_vkey, verify_cosignatures
from ledger.errors import ConfigError, InvalidInput, KeyFileError, VerificationError
from ledger.merkle import CompactRange, leaf_hash
from ledger.witness import MAX_REQUEST_BYTES, Accepted, Refused, format_add_checkpoint
from ledger.witness_store import WitnessStore
from tests.helpers import Ledger, check_ledger
from tests.witness._procs import submit
from tests.witness.support import (
    PASSPHRASE,
    WITNESS_NAME,
    FixedClock,
    MemoryLog,
    make_witness,
)
from web.witness_app import create_witness_app


@pytest.fixture
def log() -> MemoryLog:
    made = MemoryLog()
    made.append(5)
    return made


@pytest.fixture
def witness_dir(tmp_path: Path, log: MemoryLog) -> Path:
    directory = tmp_path / "witness"
    store, _signer = make_witness(directory)
    store.trust(log.signer.verifier.vkey)
    return directory


@pytest.fixture
def app(witness_dir: Path) -> Flask:
    return create_witness_app(witness_dir, PASSPHRASE, {"TESTING": True}, clock=FixedClock())


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def _post(client: FlaskClient, body: bytes) -> tuple[int, str, str]:
    response = client.post("/add-checkpoint", data=body, content_type="text/plain")
    return response.status_code, response.content_type, response.get_data(as_text=True)


def _witness_vkey(client: FlaskClient) -> str:
    return client.get("/vkey").get_data(as_text=True).strip()


# --- the HTTP interface ------------------------------------------------------------


def test_cosigns_a_new_log_then_its_growth(client: FlaskClient, log: MemoryLog) -> None:
    verifier = parse_witness_vkey(_witness_vkey(client))
    status, ctype, body = _post(client, log.body(0))
    assert (status, ctype) == (200, "text/plain; charset=utf-8")
    assert body.startswith("\u2014 " + WITNESS_NAME + " ") and body.endswith("\n")
    assert verify_cosignatures(log.note() + body, [verifier]) == [(WITNESS_NAME, 1_700_000_000)]
    log.append(20)
    status, _ctype, body = _post(client, log.body(5))
    assert status == 200
    assert len(verify_cosignatures(log.note() + body, [verifier])) == 1


def test_status_codes(client: FlaskClient, witness_dir: Path, log: MemoryLog) -> None:
    assert _post(client, log.body(0))[0] == 200
    # 400: malformed
    status, ctype, body = _post(client, b"old 1\nnot base64\n\n" + log.note().encode())
    assert (status, ctype) == (400, "text/plain; charset=utf-8") and "base64" in body
    # 404: unknown origin
    stranger = MemoryLog(origin="stranger.example/log")
    stranger.append(1)
    assert _post(client, stranger.body(0))[0] == 404
    # 403: no valid signature by the trusted key
    impostor = MemoryLog()  # same origin, its own key
    impostor.append(5)
    assert _post(client, impostor.body(0))[0] == 403
    # 400: old beyond the checkpoint size
    assert _post(client, format_add_checkpoint(9, [b"\x00" * 32], log.note(5)))[0] == 400
    # 409: stale old, with the witness's size
    log.append(3)
    assert _post(client, log.body(2)) == (409, "text/x.tlog.size", "5\n")
    # 422: the proof does not verify
    assert _post(client, format_add_checkpoint(5, [b"\x00" * 32], log.note()))[0] == 422
    # 200 after all that: the state is still 5
    assert _post(client, log.body(5))[0] == 200
    # 409 fork: size 8 again, other root
    forked = MemoryLog(signer=log.signer)
    forked.append(8, prefix="rewritten")
    assert _post(client, forked.body(8, 8, [])) == (409, "text/x.tlog.size", "8\n")
    # 413: too large, refused unread; 405: wrong method
    response = client.post("/add-checkpoint", data=b"x" * (MAX_REQUEST_BYTES + 1))
    assert response.status_code == 413 and response.content_type.startswith("text/plain")
    assert client.get("/add-checkpoint").status_code == 405
    reasons = [(e.status, e.reason) for e in WitnessStore.open(witness_dir).evidence()]
    assert reasons == [(400, "old-beyond-size"), (422, "inconsistent"), (409, "fork")]


def test_same_checkpoint_is_cosigned_again(client: FlaskClient, log: MemoryLog) -> None:
    assert _post(client, log.body(0))[0] == 200
    status, _ctype, again = _post(client, log.body(5))
    assert status == 200 and again.startswith("\u2014 ")
    assert _post(client, log.body(0)) == (409, "text/x.tlog.size", "5\n")


def test_evidence_is_kept_deduplicated_and_complete(
    client: FlaskClient, witness_dir: Path, log: MemoryLog
) -> None:
    assert _post(client, log.body(0))[0] == 200
    forked = MemoryLog(signer=log.signer)
    forked.append(5, prefix="evil")
    fork_body = forked.body(5, 5, [])
    for _ in range(3):
        assert _post(client, fork_body)[0] == 409
    log.append(2)
    bad = format_add_checkpoint(5, [b"\x01" * 32], log.note())
    assert _post(client, bad)[0] == 422
    assert _post(client, log.body(3))[0] == 409  # stale: not evidence
    store = WitnessStore.open(witness_dir)
    records = store.evidence()
    assert [(r.reason, r.status, r.repeats) for r in records] == [
        ("fork", 409, 3),
        ("inconsistent", 422, 1),
    ]
    fork = records[0]
    # Self-contained proof of the split view: both signed notes, same size, different roots.
    assert fork.body == fork_body
    assert fork.witness_note == log.note(5)
    assert fork.size == fork.witness_size == 5
    assert records[1].body == bad and store.evidence_count() == 2
    assert store.evidence(log.origin) == records and store.evidence("nobody") == []
    # A fresh witness app reports the same evidence on its page.
    page = client.get("/").get_data(as_text=True)
    assert 'data-count="2"' in page


def test_pages(client: FlaskClient, witness_dir: Path, log: MemoryLog) -> None:
    vkey = _witness_vkey(client)
    assert vkey == WitnessStore.open(witness_dir).vkey
    assert client.get("/vkey").content_type == "text/plain; charset=utf-8"
    page = client.get("/?lang=en")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.content_type == "text/html; charset=utf-8"
    assert WITNESS_NAME in html and vkey.replace("+", "+") in html
    assert log.origin in html and "not cosigned yet" in html
    assert _post(client, log.body(0))[0] == 200
    html = client.get("/?lang=en").get_data(as_text=True)
    assert f'<tr data-origin="{log.origin}">' in html and '<td class="size">5</td>' in html
    assert 'data-count="0"' in html
    assert client.get("/static/css/site.css").status_code == 404  # none of the site's files
    rules = sorted(rule.rule for rule in client.application.url_map.iter_rules())
    assert rules == ["/", "/add-checkpoint", "/vkey"]


def test_page_escapes_origins(tmp_path: Path) -> None:
    store, _signer = make_witness(tmp_path / "w")
    hostile = MemoryLog(origin="<script>alert(1)</script>")
    store.trust(hostile.signer.verifier.vkey, origin=hostile.origin)
    html = create_witness_app(tmp_path / "w", PASSPHRASE).test_client().get("/").get_data(True)
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_no_site_blueprints_are_imported() -> None:
    code = (
        "import sys, web.witness_app\n"
        "site = [m for m in sys.modules if m.startswith('web.') and m != 'web.witness_app'"
        " and m != 'web.passwords']\n"
        "print(','.join(sorted(site)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""


def test_refuses_to_start_without_witness_or_with_wrong_passphrase(
    tmp_path: Path, witness_dir: Path
) -> None:
    with pytest.raises(ConfigError):
        create_witness_app(tmp_path / "nothing", PASSPHRASE)
    with pytest.raises(KeyFileError):
        create_witness_app(witness_dir, b"wrong passphrase")
    assert not (tmp_path / "nothing").exists()


def test_cosignature_time_survives_a_clock_step_back(witness_dir: Path, log: MemoryLog) -> None:
    clock = FixedClock(1_700_000_900)
    client = create_witness_app(witness_dir, PASSPHRASE, clock=clock).test_client()
    verifier = parse_witness_vkey(_witness_vkey(client))
    assert _post(client, log.body(0))[0] == 200
    clock.now = 1_600_000_000
    restarted = create_witness_app(witness_dir, PASSPHRASE, clock=clock).test_client()
    status, _ctype, again = _post(restarted, log.body(5))  # the same checkpoint again
    assert status == 200
    assert verify_cosignatures(log.note() + again, [verifier]) == [(WITNESS_NAME, 1_700_000_900)]


def test_state_survives_a_restart(witness_dir: Path, log: MemoryLog) -> None:
    first = create_witness_app(witness_dir, PASSPHRASE).test_client()
    assert _post(first, log.body(0))[0] == 200
    log.append(4)
    assert _post(first, log.body(5))[0] == 200
    again = create_witness_app(witness_dir, PASSPHRASE).test_client()
    assert _post(again, log.body(0)) == (409, "text/x.tlog.size", "9\n")
    log.append(1)
    assert _post(again, log.body(9))[0] == 200
    assert WitnessStore.open(witness_dir).state(log.origin) is not None


# --- the store ----------------------------------------------------------------------


def test_store_creation_and_trust(tmp_path: Path, log: MemoryLog) -> None:
    store, signer = make_witness(tmp_path / "w")
    assert (tmp_path / "w" / "witness.key").stat().st_mode & 0o777 == 0o600
    assert store.vkey == signer.vkey and store.name == WITNESS_NAME
    with pytest.raises(ConfigError):
        make_witness(tmp_path / "w")
    with pytest.raises(InvalidInput):
        WitnessStore.create(tmp_path / "x", "bad name", PASSPHRASE)
    assert not (tmp_path / "x").exists()
    assert store.trust(log.signer.verifier.vkey) is True
    assert store.trust(log.signer.verifier.vkey) is False
    other = MemoryLog()
    with pytest.raises(InvalidInput, match="trusted with key"):
        store.trust(other.signer.verifier.vkey)
    with pytest.raises(InvalidInput):
        store.trust(signer.vkey)  # a witness key is no log key
    with pytest.raises(InvalidInput):
        store.trust(log.signer.verifier.vkey, origin=" padded")
    assert [lg.origin for lg in store.logs()] == [log.origin]
    assert store.logs()[0].size is None


def test_store_refuses_a_foreign_database(tmp_path: Path) -> None:
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "witness.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(ConfigError):
        WitnessStore.open(tmp_path / "w")


def _race(store: WitnessStore, bodies: list[bytes]) -> list[int]:
    signer = store.signer(PASSPHRASE)
    barrier = threading.Barrier(len(bodies))
    results: list[int] = [0] * len(bodies)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = store.submit(bodies[i], signer).status

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_submissions_threads_one_winner(witness_dir: Path, log: MemoryLog) -> None:
    store = WitnessStore.open(witness_dir)
    assert store.submit(log.body(0), store.signer(PASSPHRASE)).status == 200
    # Eight checkpoints of different sizes, all from old 5: exactly one may advance.
    bodies = []
    for _ in range(8):
        log.append(1)
        bodies.append(log.body(5))
    statuses = _race(store, bodies)
    assert sorted(statuses) == [200] + [409] * 7
    winner = bodies[statuses.index(200)]
    state = store.state(log.origin)
    assert state is not None and state.note.encode() in winner


def test_concurrent_submissions_processes_one_winner(witness_dir: Path, log: MemoryLog) -> None:
    store = WitnessStore.open(witness_dir)
    assert store.submit(log.body(0), store.signer(PASSPHRASE)).status == 200
    bodies = []
    for _ in range(4):
        log.append(2)
        bodies.append(log.body(5))
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(len(bodies)), ctx.Queue()
    procs = [
        ctx.Process(target=submit, args=(str(witness_dir), PASSPHRASE, b, barrier, out))
        for b in bodies
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    statuses = sorted(out.get(timeout=10) for _ in bodies)
    assert statuses == [200, 409, 409, 409]


# --- a real Suyuan log ---------------------------------------------------------------


def _witness_for(tmp_path: Path, ledger: Ledger) -> Iterator[FlaskClient]:
    store, _signer = make_witness(tmp_path / "bureau", FixedClock(1_800_000_000))
    store.trust(ledger.log.verifier.vkey)
    app = create_witness_app(tmp_path / "bureau", PASSPHRASE, clock=FixedClock(1_800_000_000))
    yield app.test_client()


def test_real_log_checkpoints_are_cosigned(tmp_path: Path, sqlite_ledger: Ledger) -> None:
    ledger = sqlite_ledger
    client = next(_witness_for(tmp_path, ledger))
    verifier = parse_witness_vkey(_witness_vkey(client))
    held = 0
    for round_ in range(4):
        ledger.notes(3 + round_ * 5, prefix=f"round {round_}")
        latest = ledger.log.latest_checkpoint()
        proof = ledger.log.consistency_proof(held, latest.size) if held else []
        status, _ctype, lines = _post(client, format_add_checkpoint(held, proof, latest.note))
        assert status == 200, lines
        cosigned = latest.note + lines
        assert verify_cosignatures(cosigned, [verifier]) == [(WITNESS_NAME, 1_800_000_000)]
        held = latest.size
    check_ledger(ledger.engine)


def _rewrite_history(ledger: Ledger, seq: int) -> None:
    """Raw SQL, as a dishonest operator would: change entry ``seq`` and re-sign everything.

    The leaf is edited in ``entries``, every tree node recomputed into
    ``tree_nodes``, and the signed checkpoints replaced by one new checkpoint
    over the rewritten tree, signed with the log's own key, so that the log's
    own start-up check passes and it keeps appending over the rewritten tree.
    """
    with ledger.engine.begin() as conn:
        leaves = [bytes(r[0]) for r in conn.execute(text("SELECT leaf FROM entries ORDER BY seq"))]
        old = leaves[seq]
        assert b"note" in old
        leaves[seq] = old.replace(b"round", b"ROUND", 1)
        assert leaves[seq] != old
        conn.execute(
            text("UPDATE entries SET leaf = :leaf WHERE seq = :seq"),
            {"leaf": leaves[seq], "seq": seq},
        )
        rng = CompactRange.empty()
        nodes = []
        for leaf in leaves:
            nodes.extend(rng.append(leaf_hash(leaf)))
        conn.execute(text("DELETE FROM tree_nodes"))
        conn.execute(
            text("INSERT INTO tree_nodes (level, idx, hash) VALUES (:level, :idx, :hash)"),
            [{"level": lv, "idx": ix, "hash": h} for (lv, ix), h in nodes],
        )
        created = conn.execute(text("SELECT MAX(created) FROM checkpoints")).scalar()
        conn.execute(text("DELETE FROM checkpoints"))
        forged = Checkpoint(ledger.log.origin, rng.size, rng.root())
        conn.execute(
            text("INSERT INTO checkpoints (size, root, note, created) VALUES (:s, :r, :n, :c)"),
            {
                "s": forged.size,
                "r": forged.root,
                "n": sign_checkpoint(forged, ledger.log_signer),
                "c": created,
            },
        )


def test_rewritten_history_is_caught(tmp_path: Path, sqlite_ledger: Ledger) -> None:
    ledger = sqlite_ledger
    client = next(_witness_for(tmp_path, ledger))
    bureau = WitnessStore.open(tmp_path / "bureau")
    ledger.notes(10, prefix="round")
    honest = ledger.log.latest_checkpoint()
    assert _post(client, format_add_checkpoint(0, [], honest.note))[0] == 200

    _rewrite_history(ledger, seq=3)
    log = ledger.reopen()  # the log's own start-up check is satisfied by the forgery
    forged_same_size = log.latest_checkpoint()
    assert forged_same_size.size == honest.size
    assert forged_same_size.checkpoint.root != honest.checkpoint.root
    # Same size, another root: a fork (409), kept as evidence.
    status, ctype, body = _post(
        client, format_add_checkpoint(honest.size, [], forged_same_size.note)
    )
    assert (status, ctype, body) == (409, "text/x.tlog.size", f"{honest.size}\n")

    # The log goes on appending over the rewritten tree and submits as a log client would:
    # first old 0 to learn the witness's size (409), then a proof from that size (422).
    ledger.notes(5, prefix="later")
    latest = log.latest_checkpoint()
    status, ctype, body = _post(client, format_add_checkpoint(0, [], latest.note))
    assert (status, ctype) == (409, "text/x.tlog.size")
    witness_size = int(body)
    assert witness_size == honest.size
    proof = log.consistency_proof(witness_size, latest.size)
    status, _ctype, body = _post(client, format_add_checkpoint(witness_size, proof, latest.note))
    assert status == 422, body

    evidence = bureau.evidence()
    assert [(e.reason, e.status) for e in evidence] == [("fork", 409), ("inconsistent", 422)]
    assert all(e.witness_note == honest.note for e in evidence)
    state = bureau.state(ledger.log.origin)
    assert state is not None and state.root == honest.checkpoint.root  # never moved
    # The log's own audit agrees, naming the rewritten entry.
    with pytest.raises(VerificationError, match="seq 3: "):
        check_ledger(ledger.engine)


def test_accepted_decisions_carry_previous_state(witness_dir: Path, log: MemoryLog) -> None:
    store = WitnessStore.open(witness_dir)
    signer = store.signer(PASSPHRASE)
    first = store.submit(log.body(0), signer)
    assert isinstance(first, Accepted) and first.previous is None
    log.append(1)
    second = store.submit(log.body(5), signer)
    assert isinstance(second, Accepted) and second.previous == first.state
    refused = store.submit(b"old 0\n\n", signer)
    assert isinstance(refused, Refused) and refused.status == 400


def test_witness_cosigns_a_go_log(tmp_path: Path) -> None:
    """Interoperability: a log made by golang.org/x/mod's sumdb/tlog and sumdb/note."""
    from tests.interop.golog import build_go_log, require_go

    require_go()
    golog = build_go_log(tmp_path / "golog", [3])
    store, _signer = make_witness(tmp_path / "bureau")
    store.trust(golog.vkey)
    client = create_witness_app(tmp_path / "bureau", PASSPHRASE, clock=FixedClock()).test_client()
    verifier = parse_witness_vkey(_witness_vkey(client))
    status, _ctype, line = _post(client, format_add_checkpoint(0, [], golog.checkpoint_note(3)))
    assert status == 200, line
    held = 3
    for size in (4, 20, 37):
        note = golog.grow(size)
        body = format_add_checkpoint(held, golog.consistency_proof(held, size), note)
        status, _ctype, line = _post(client, body)
        assert status == 200, (size, line)
        assert verify_cosignatures(note + line, [verifier]) == [(WITNESS_NAME, 1_700_000_000)]
        held = size
    # Go's note.Open accepts the cosigned checkpoint (it ignores the unknown cosigner line).
    (golog.directory / "checkpoint").write_text(golog.checkpoints[37] + line, encoding="utf-8")
    result = golog.go_verify(golog.directory, golog.vkey)
    assert result.returncode == 0 and "OK 37" in result.stdout, result.stderr
    # A proof Go made for other sizes does not pass.
    golog.grow(40)
    wrong = format_add_checkpoint(37, golog.consistency_proof(20, 40), golog.checkpoints[40])
    assert _post(client, wrong)[0] == 422
