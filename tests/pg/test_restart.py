"""Writes surviving a restart of the primary, without restarting the application.

``ledger.db`` makes PostgreSQL engines with ``pool_pre_ping`` (a connection that died with
the old server is replaced when it leaves the pool) and stages 3–5 of an append are one
transaction: an append cut off by the restart fails with StorageError and leaves nothing,
the next one works.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import psycopg
import pytest
from sqlalchemy import select

from ledger.entry import SignedStatement, decode_entry, make_statement, sign_statement
from ledger.errors import StorageError
from ledger.log import Log
from ledger.merkle import leaf_hash
from ledger.note import Signer
from ledger.schema import entries
from ledger.tokens import create_token
from tests.helpers import check_ledger, dump, now
from tests.pg.conftest import Deployment

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def note(log: Log, signer: Signer, text: str) -> SignedStatement:
    return sign_statement(make_statement("note", {"text": text}, log.origin, now()), [signer])


def waiting_on_lock(deployment: Deployment) -> int:
    with psycopg.connect(deployment.pair.primary.conninfo("postgres"), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
            (deployment.database,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def texts_in(deployment: Deployment, url: str) -> dict[str, int]:
    """note text → seq, for every note stored at ``url``."""
    found: dict[str, int] = {}
    with deployment.engine(url).connect() as conn:
        for seq, leaf in conn.execute(
            select(entries.c.seq, entries.c.leaf).where(entries.c.kind == "note")
        ):
            text = decode_entry(bytes(leaf)).body["text"]
            assert text not in found, f"{text!r} is in the log twice (seq {found[text]}, {seq})"
            found[text] = int(seq)
    return found


def verify_both(deployment: Deployment) -> int:
    """``suyuan verify`` on the primary, and on the replica (as SUYUAN_DATABASE_URL)."""
    deployment.pair.catch_up()
    on_primary = deployment.cli("verify")
    on_replica = deployment.cli("verify", database_url=deployment.replica_url)
    assert on_primary.exit_code == 0 and on_replica.exit_code == 0, (
        on_primary.output,
        on_replica.output,
    )
    assert on_primary.stdout == on_replica.stdout
    check_ledger(deployment.engine(deployment.primary_url))
    check_ledger(deployment.engine(deployment.replica_url))
    return int(on_primary.stdout.split()[1])


def test_an_append_in_flight_during_a_restart_fails_cleanly_and_the_next_one_works(
    deployment: Deployment,
) -> None:
    instance = deployment.instance(replica=False)
    log, admin = instance.writer(), instance.author("admin")
    log.append([note(log, admin, f"before {i}") for i in range(3)])
    primary = deployment.engine(deployment.primary_url)
    before = dump(primary)
    size = log.size()

    # Hold the log lock from another session, so that the append waits inside stage 3.
    holder = psycopg.connect(deployment.pair.primary.conninfo(deployment.database))
    holder.execute("SELECT size FROM log_state WHERE id = 1 FOR UPDATE")
    outcome: list[Any] = []
    in_flight = note(log, admin, "in flight")

    def append() -> None:
        try:
            outcome.append(log.append([in_flight]))
        except BaseException as exc:  # the main thread looks at it
            outcome.append(exc)

    thread = threading.Thread(target=append, name="in-flight-append")
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while waiting_on_lock(deployment) < 1:
            assert time.monotonic() < deadline, "the append never reached the log lock"
            time.sleep(0.02)
        deployment.pair.primary.restart()  # pg_ctl restart -m fast: every session is cut off
        thread.join(timeout=60)
    finally:
        holder.close()
    assert not thread.is_alive()
    (failure,) = outcome
    assert isinstance(failure, StorageError), failure
    assert "terminating connection" in str(failure)
    assert dump(primary) == before  # not one row of the cut-off transaction

    # The same Log object, the same engine: the next append works at once.
    (after,) = log.append([note(log, admin, "after the restart")])
    assert after.seq == size
    (retried,) = log.append([in_flight])  # it was not written, so it can be now
    assert retried.seq == size + 1
    assert verify_both(deployment) == size + 2


def test_a_writer_app_keeps_every_acknowledged_write_across_restarts_of_the_primary(
    deployment: Deployment,
) -> None:
    app = deployment.app()  # writes to the primary, reads from the replica
    token = create_token(deployment.engine(deployment.primary_url), "writer")
    instance = deployment.instance(replica=False)
    log, admin = instance.reader(), instance.author("admin")
    headers = {"Authorization": f"Bearer {token}"}
    acknowledged: dict[str, tuple[int, str, float]] = {}  # text → (seq, leaf hash, when)
    refused: dict[str, tuple[SignedStatement, int, str]] = {}
    unexpected: list[tuple[int, bytes]] = []
    lock = threading.Lock()
    stop = threading.Event()
    run = uuid.uuid4().hex[:6]

    def post(worker: int) -> None:
        client = app.test_client()
        i = 0
        while not stop.is_set():
            text = f"{run} w{worker} #{i}"
            i += 1
            signed = note(log, admin, text)
            response = client.post("/api/v1/entries", json=signed.to_json(), headers=headers)
            with lock:
                if response.status_code == 201:
                    (item,) = response.get_json()["entries"]
                    acknowledged[text] = (item["seq"], item["leaf_hash"], time.monotonic())
                elif response.status_code == 503:
                    refused[text] = (signed, 503, response.get_json()["error"]["code"])
                else:
                    unexpected.append((response.status_code, response.data[:300]))
            if response.status_code == 503:
                time.sleep(0.05)  # a client backs off while the database is away

    threads = [threading.Thread(target=post, args=(w,), name=f"poster-{w}") for w in range(4)]
    for t in threads:
        t.start()
    restarts: list[float] = []
    try:
        for _ in range(2):
            time.sleep(1.0)
            deployment.pair.primary.restart()
            restarts.append(time.monotonic())
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert unexpected == []
    assert all(code == "storage_error" for _s, _status, code in refused.values()), refused
    # Writes resumed after the last restart, in the same app.
    assert sum(1 for _seq, _h, when in acknowledged.values() if when > restarts[-1]) > 0
    assert len(acknowledged) > 20

    # Every acknowledged write is there, at the seq and with the leaf hash it was given.
    stored = texts_in(deployment, deployment.primary_url)
    with deployment.engine(deployment.primary_url).connect() as conn:
        leaves = {
            int(seq): leaf_hash(bytes(leaf)).hex()
            for seq, leaf in conn.execute(select(entries.c.seq, entries.c.leaf))
        }
    for text, (seq, hash_hex, _when) in acknowledged.items():
        assert stored.get(text) == seq, text
        assert leaves[seq] == hash_hex
    # A refused write was either not written, or written once (a cut-off COMMIT can succeed
    # on the server without the answer reaching us): sending it again settles which.
    client = app.test_client()
    for text, (signed, _status, _code) in refused.items():
        again = client.post("/api/v1/entries", json=signed.to_json(), headers=headers)
        assert again.status_code in (201, 409), again.data
        if again.status_code == 409:
            assert text in stored and "already in the log" in again.get_json()["error"]["message"]
    final = texts_in(deployment, deployment.primary_url)
    assert set(final) == set(acknowledged) | set(refused)
    assert verify_both(deployment) == len(final) + 1  # the genesis key entry, then the notes
