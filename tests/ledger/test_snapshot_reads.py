"""Reads that compare tables see one snapshot, so a writer in between cannot fake a disagreement.

PostgreSQL's READ COMMITTED gives every statement a fresh snapshot: a process that
read ``log_state`` and then, after another process's append committed, the newest
checkpoint, saw "log state says size 9 but the newest checkpoint is for size 10" and
refused to start (CI met it with two ``suyuan append`` processes).  Each test makes
another writer commit *between* the two reads, deterministically, and shows the read
still answers for one consistent size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Connection, text

from ledger import verify
from ledger.checkpoint import verify_checkpoint
from ledger.db import read_snapshot
from ledger.log import Log
from tests.helpers import Ledger, check_ledger, make_ledger


def once(action: Callable[[], object]) -> Callable[[], None]:
    """``action``, run the first time the result is called and never again."""
    done = False

    def run() -> None:
        nonlocal done
        if not done:
            done = True
            action()

    return run


def test_a_writer_starting_while_another_appends_starts(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger.notes(3)
    size = ledger.log.size()
    between = once(lambda: ledger.note("appended by the other writer mid-check"))
    load_range = Log._load_range

    def commit_then_load(self: Log, conn: Connection, size_read: int) -> Any:
        between()  # after log_state was read, before the newest checkpoint is
        return load_range(self, conn, size_read)

    monkeypatch.setattr(Log, "_load_range", commit_then_load)
    second = Log.open(ledger.engine, ledger.log_signer)  # check_startup: the two reads

    assert ledger.log.size() == size + 1  # the other writer's append did land in between
    # The second writer then appends on top of the newer tree, not the one it checked.
    entry = second.append([ledger.statement("note", {"text": "second writer"}, ledger.admin)])[0]
    assert entry.seq == size + 1
    newest = second.latest_checkpoint()
    assert newest.checkpoint.size == size + 2
    verify_checkpoint(newest.note, ledger.log_signer.verifier, ledger.log.origin)
    assert check_ledger(ledger.engine).size == size + 2


def test_verify_of_a_live_log_answers_for_the_size_it_started_at(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger.notes(5)
    size = ledger.log.size()
    between = once(lambda: ledger.notes(3, prefix="appended during the audit"))
    count_nodes = verify._check_node_count

    def commit_then_count(conn: Any, audited: int) -> None:
        between()  # the entries were read; the tree nodes are counted next
        count_nodes(conn, audited)

    monkeypatch.setattr(verify, "_check_node_count", commit_then_count)
    result = check_ledger(ledger.engine)

    assert result.size == size
    assert ledger.log.size() == size + 3
    monkeypatch.undo()
    assert check_ledger(ledger.engine).size == size + 3


def test_a_dry_run_during_a_key_registration_is_not_told_the_keys_disagree(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Log.check`` replays the key entries, then compares the keys table: a key registered
    in between must not look like a keys table edited by hand."""
    ledger.notes(2)
    size = ledger.log.size()
    between = once(lambda: ledger.register("registered-mid-check"))
    read_keys = Log._read_keys

    def commit_then_read(self: Log, conn: Connection | None = None) -> Any:
        between()  # the key entries were replayed; the keys table is read next
        return read_keys(self, conn)

    monkeypatch.setattr(Log, "_read_keys", commit_then_read)
    item = ledger.statement("note", {"text": "checked"}, ledger.admin)
    assert ledger.log.check([item]) == [None]
    monkeypatch.undo()
    assert ledger.log.size() == size + 1
    assert ledger.log.append([item])[0].seq == size + 1


@pytest.mark.postgres
def test_the_snapshot_does_not_outlive_its_connection(pg_url: str) -> None:
    """PostgreSQL: ``REPEATABLE READ, READ ONLY`` ends with the block; the pooled connection
    it used goes back to READ COMMITTED, writable, for the next writer."""
    made = make_ledger(pg_url)
    made.engine.pool.dispose()
    try:
        for round_ in range(3):
            with read_snapshot(made.engine) as conn:
                assert (
                    conn.execute(text("SHOW transaction_isolation")).scalar() == "repeatable read"
                )
                assert conn.execute(text("SHOW transaction_read_only")).scalar() == "on"
            with made.engine.connect() as conn:
                assert conn.execute(text("SHOW transaction_isolation")).scalar() == "read committed"
                assert conn.execute(text("SHOW transaction_read_only")).scalar() == "off"
            made.note(f"written after snapshot {round_}")
    finally:
        made.engine.dispose()
