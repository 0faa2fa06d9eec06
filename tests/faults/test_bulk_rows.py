"""The bulk write path: big transactions store exactly what the row-by-row path stores.

On PostgreSQL the append transaction writes entries and tree nodes with COPY, and a
projection table with many changed rows through COPY into a temporary table plus
one upsert (``ledger.log._flush``); small ones row by row, as on SQLite.  Here a
transaction inserts many projection rows, the next updates every one of them (the
``ON CONFLICT … DO UPDATE`` half), a refused request in between leaves nothing, and
a failure in the middle of the COPY path rolls back whole; the audit then replays
every rule and compares every projection row with the tables.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from sqlalchemy import text

from ledger import log as log_module
from ledger.errors import RuleViolation, StorageError
from tests.faults.support import assert_whole_log
from tests.helpers import Ledger, dump, make_ledger, new_signer

PLACE = {
    "province": "广西壮族自治区",
    "city": "贵港市",
    "county": "港南区",
    "township": "木格镇",
    "village": "云垌村",
}
COUNT = 40


def identified(code: str) -> dict[str, Any]:
    return {
        "code": code,
        "location": dict(PLACE),
        "members": 4,
        "causes": ["illness"],
        "year": 2016,
        "commitment": hashlib.sha256(code.encode()).hexdigest(),
    }


def status(code: str, target: str, when: str) -> dict[str, Any]:
    return {"code": code, "status": target, "date": when, "reason": "村民代表评议通过"}


def households(ledger: Ledger) -> dict[str, tuple[str, int]]:
    with ledger.engine.connect() as conn:
        rows = conn.execute(text("SELECT code, status, status_seq FROM households")).all()
    return {r.code: (r.status, r.status_seq) for r in rows}


def test_big_transactions_store_what_the_rules_compute(ledger: Ledger) -> None:
    assert log_module._COPY_ROWS_FROM <= COUNT  # the PostgreSQL runs take the COPY path
    village = ledger.register("village", "village_approver", "云垌村委会")
    township = ledger.register("township", "township_approver", "木格镇人民政府")
    codes = [f"GX-GN-{i:06d}" for i in range(COUNT)]

    made = ledger.log.append(
        [ledger.statement("household.identified", identified(c), village) for c in codes]
    )
    assert households(ledger) == {
        c: ("identified", e.seq) for c, e in zip(codes, made, strict=True)
    }

    # A request that breaks a rule half-way leaves nothing, on either path.
    before = dump(ledger.engine)
    bad = [
        ledger.statement("household.status", status(c, "exited", "2018-11-20"), village, township)
        for c in codes
    ]
    stranger = new_signer("stranger")  # never registered
    bad[COUNT // 2] = ledger.statement("note", {"text": "by a stranger"}, stranger)
    with pytest.raises(RuleViolation, match="unknown key"):
        ledger.log.append(bad)
    assert dump(ledger.engine) == before

    exited = ledger.log.append(
        [
            ledger.statement(
                "household.status", status(c, "exited", "2018-11-20"), village, township
            )
            for c in codes
        ]
    )
    assert households(ledger) == {c: ("exited", e.seq) for c, e in zip(codes, exited, strict=True)}
    assert_whole_log(ledger.engine, ledger.log_signer)  # every projection row re-derived


@pytest.mark.postgres
def test_a_failure_inside_the_copy_path_rolls_back_whole(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A statement fails right after the projection rows were copied into the staging
    table: nothing of the transaction stays — no entries, no nodes, no projection rows,
    no staged rows for the next transaction — and the log carries on."""
    ledger = make_ledger(pg_url)
    try:
        village = ledger.register("village", "village_approver", "云垌村委会")
        codes = [f"GX-GN-{i:06d}" for i in range(COUNT)]
        items = [ledger.statement("household.identified", identified(c), village) for c in codes]
        before = dump(ledger.engine)
        original = log_module._copy_rows

        def failing(conn: Any, statement: str, rows: list[tuple[Any, ...]]) -> None:
            original(conn, statement, rows)
            if "suyuan_flush_households" in statement:
                conn.exec_driver_sql("SELECT 1/0")  # fails after the staging rows went in

        monkeypatch.setattr(log_module, "_copy_rows", failing)
        with pytest.raises(StorageError):
            ledger.log.append(items)
        monkeypatch.undo()
        assert dump(ledger.engine) == before
        landed = ledger.log.append(items)
        assert households(ledger) == {
            c: ("identified", e.seq) for c, e in zip(codes, landed, strict=True)
        }
        assert_whole_log(ledger.engine, ledger.log_signer)
    finally:
        ledger.engine.dispose()
