"""Projection tables: written with the entries, compared by verify, refusals kept beside the ledger."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from sqlalchemy import text

from ledger.errors import Conflict, VerificationError
from tests.helpers import Ledger, check_ledger, dump


def _household(code: str, village: str = "木格镇 Muge") -> dict[str, Any]:
    return {
        "code": code,
        "location": {
            "province": "广西壮族自治区",
            "city": "贵港市",
            "county": "港南区",
            "township": "木格镇",
            "village": village,
        },
        "members": 4,
        "causes": ["illness"],
        "year": 2016,
        "commitment": hashlib.sha256(code.encode()).hexdigest(),
    }


def _identify(ledger: Ledger, *codes: str) -> list[int]:
    village = ledger.authors.get("village") or ledger.register("village", "village_approver")
    items = [ledger.statement("household.identified", _household(c), village) for c in codes]
    return [e.seq for e in ledger.log.append(items)]


def test_rows_are_written_with_their_entries(ledger: Ledger) -> None:
    seqs = _identify(ledger, "GX-GN-000001", "GX-GN-000002")
    with ledger.engine.connect() as conn:
        rows = conn.execute(text("SELECT code, status, seq FROM households ORDER BY code")).all()
    assert [tuple(r) for r in rows] == [
        ("GX-GN-000001", "identified", seqs[0]),
        ("GX-GN-000002", "identified", seqs[1]),
    ]
    check_ledger(ledger.engine)


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        (
            "UPDATE households SET status = 'exited' WHERE code = 'GX-GN-000002'",
            r"seq {second}: table households row code='GX-GN-000002' differs from the entries "
            r"in column status \(stored 'exited', entries say 'identified'\)",
        ),
        (
            "DELETE FROM households WHERE code = 'GX-GN-000001'",
            r"seq {first}: table households lacks the row code='GX-GN-000001'",
        ),
        (
            "INSERT INTO households SELECT 'GX-GN-999999', status, province, city, county, township,"
            " village, commitment, identified_seq, seq, division_code, members, causes, year,"
            " status_date, status_seq FROM households WHERE code = 'GX-GN-000001'",
            r"seq {first}: table households has a row code='GX-GN-999999' that no entry made",
        ),
    ],
)
def test_verify_names_the_entry_behind_an_edited_row(
    sqlite_ledger: Ledger, sql: str, message: str
) -> None:
    first, second = _identify(sqlite_ledger, "GX-GN-000001", "GX-GN-000002")
    sqlite_ledger.execute(sql)
    with pytest.raises(VerificationError, match=message.format(first=first, second=second)):
        check_ledger(sqlite_ledger.engine)


def test_the_writer_trusts_the_tables_and_verify_names_what_that_let_in(
    sqlite_ledger: Ledger,
) -> None:
    """Documented trade-off: the writer reads projections; verify replays the rules itself."""
    (first,) = _identify(sqlite_ledger, "GX-GN-000001")
    sqlite_ledger.execute("DELETE FROM households WHERE code = 'GX-GN-000001'")
    (again,) = _identify(sqlite_ledger, "GX-GN-000001")  # the edited table hid the first one
    with pytest.raises(
        VerificationError, match=rf"seq {again}: .*already registered \(seq {first}\)"
    ):
        check_ledger(sqlite_ledger.engine)


def test_signed_refusals_are_kept_beside_the_ledger(ledger: Ledger) -> None:
    _identify(ledger, "GX-GN-000001")
    before = dump(ledger.engine)
    with pytest.raises(Conflict, match="already registered"):
        _identify(ledger, "GX-GN-000001")
    assert dump(ledger.engine) == before  # nothing on the ledger or its tables changed
    with ledger.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT kind, code, reason, statement, key_ids FROM refusals")
        ).all()
    assert len(rows) == 1
    kind, code, reason, statement, key_ids = rows[0]
    assert (kind, code) == ("household.identified", "conflict")
    assert "already registered" in reason
    assert key_ids == ledger.authors["village"].verifier.key_id
    assert json.loads(statement)["statement"]["body"]["code"] == "GX-GN-000001"
    check_ledger(ledger.engine)


def test_malformed_or_unknown_signer_statements_are_not_recorded(sqlite_ledger: Ledger) -> None:
    from tests.helpers import new_signer

    stranger = new_signer("stranger")
    with pytest.raises(Exception, match="unknown key"):
        sqlite_ledger.log.append(
            [sqlite_ledger.statement("household.identified", _household("GX-GN-1"), stranger)]
        )
    village = sqlite_ledger.register("village", "village_approver")
    bad = _household("GX-GN-000003")
    bad["members"] = "four"
    with pytest.raises(Exception, match="members"):
        sqlite_ledger.log.append([sqlite_ledger.statement("household.identified", bad, village)])
    with sqlite_ledger.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM refusals")).scalar_one() == 0


def test_dry_run_reports_each_statement_and_writes_nothing(sqlite_ledger: Ledger) -> None:
    village = sqlite_ledger.register("village", "village_approver")
    before = dump(sqlite_ledger.engine)
    items = [
        sqlite_ledger.statement("household.identified", _household(code), village)
        for code in ("GX-GN-000001", "GX-GN-000002", "GX-GN-000001")
    ]
    outcome = sqlite_ledger.log.check(items)
    assert outcome[0] is None and outcome[1] is None
    assert isinstance(outcome[2], Conflict)
    assert dump(sqlite_ledger.engine) == before
