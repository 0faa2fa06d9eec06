"""Fund-trail queries (ledger/domain/fund_queries.py) over one county's worth of small data.

The scenario: two villages of households paid from a central fund and a donation under one
industry-subsidy programme (one household twice, by a signed exception), an education grant,
a cooperative and a contractor, a micro-loan, a corrected and a reversed payment, two projects
(one accepted, one never started), and two refused attempts (an over-spend and a duplicate).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, event, inspect, text

from ledger.domain import fund_queries as q
from ledger.errors import DuplicatePayment, InvalidInput, NotFound, Overspend
from tests.domain.test_funds import (
    CONTRACTOR,
    CONTRACTOR_CODE,
    COOP,
    COOP_CODE,
    DOC,
    World,
    make_world,
)
from tests.helpers import Ledger, check_ledger

TODAY = "2020-06-01"


def build(world: World) -> dict[str, int]:
    """The scenario; returns the seqs the assertions name."""
    seqs: dict[str, int] = {}
    for code, township, village in [
        ("HH-0001", "城厢镇", "坡荷村"),
        ("HH-0002", "城厢镇", "坡荷村"),
        ("HH-0003", "城厢镇", "坡荷村"),
        ("HH-0004", "那洒镇", "那洒村"),
        ("HH-0005", "那洒镇", "那洒村"),
    ]:
        world.household(code, township=township, village=village)
    seqs["S-C"] = world.source("S-C", 10_000_000).seq
    seqs["S-DON"] = world.source("S-DON", 2_000_000, type="donation", year=2020).seq
    seqs["S-BANK"] = world.source("S-BANK", 50_000_000, type="bank_credit").seq
    world.project("PRJ-1")
    seqs["PRJ-2"] = world.project("PRJ-2", plan=[{"stage": "approved", "due": "2019-01-31"}]).seq
    world.milestones(
        "PRJ-1", "approved", "tendered", "contracted", "started", "completed", evidence=False
    )
    world.append(
        "project.milestone",
        {"project": "PRJ-1", "stage": "accepted", "date": "2019-03-09", "evidence": [DOC]},
        world.county,
        world.township,
    )

    seqs["A-IND"] = world.allocate("A-IND", 1_000_000, source="S-C").seq
    seqs["A-IND2"] = world.allocate("A-IND2", 500_000, source="S-DON").seq
    seqs["A-ED"] = world.allocate(
        "A-ED", 300_000, source="S-C", programme="P-YULU", purpose="education_grant"
    ).seq
    seqs["A-COOP"] = world.allocate(
        "A-COOP",
        400_000,
        source="S-C",
        programme="P-COOP",
        purpose="dividend",
        policy={"approvals": ["township_approver"], "once_per_period": False},
    ).seq
    project_policy = {"approvals": ["township_approver", "county_approver"]}
    seqs["A-P1"] = world.allocate(
        "A-P1",
        3_000_000,
        source="S-C",
        programme=None,
        project="PRJ-1",
        purpose="project_payment",
        policy=project_policy,
    ).seq
    seqs["A-P2"] = world.allocate(
        "A-P2",
        1_000_000,
        source="S-C",
        programme=None,
        project="PRJ-2",
        purpose="project_payment",
        policy=project_policy,
    ).seq
    seqs["A-LOAN"] = world.allocate(
        "A-LOAN", 10_000_000, source="S-BANK", programme="P-LOAN", purpose="micro_loan"
    ).seq

    for i, code in enumerate(["HH-0001", "HH-0002", "HH-0003", "HH-0004", "HH-0005"], start=1):
        seqs[f"D-{i}"] = world.pay(f"D-{i}", "A-IND", 100_000, household=code).seq
    seqs["fix"] = world.append(
        "fund.corrected",
        {"disbursement": "D-2", "amount_fen": 150_000, "reason": "按两人标准更正"},
        *world.approvers,
    ).seq
    seqs["rev"] = world.append(
        "fund.reversed", {"disbursement": "D-3", "reason": "重复享受，资金追回"}, world.fin
    ).seq
    seqs["exc"] = world.append(
        "fund.exception",
        {"programme": "P-IND-2019", "household": "HH-0001", "period": "2019", "reason": "灾后补助"},
        world.county,
    ).seq
    seqs["D-6"] = world.pay("D-6", "A-IND2", 200_000, household="HH-0001").seq
    seqs["D-ED"] = world.pay(
        "D-ED", "A-ED", 150_000, household="HH-0004", purpose="education_grant", period="2019-H2"
    ).seq
    seqs["rcpt"] = world.append(
        "fund.received",
        {"disbursement": "D-ED", "date": "2019-09-10", "evidence": [DOC]},
        world.village,
    ).seq
    coop = {"purpose": "dividend", "signers": (world.fin, world.township)}
    seqs["D-C1"] = world.pay(
        "D-C1", "A-COOP", 50_000, recipient={"cooperative": COOP, "credit_code": COOP_CODE}, **coop
    ).seq
    seqs["D-C2"] = world.pay(
        "D-C2",
        "A-COOP",
        60_000,
        recipient={"cooperative": "坡荷村集体经济合作社", "credit_code": COOP_CODE},
        **coop,
    ).seq
    builder = {"purpose": "project_payment", "signers": (world.fin, world.township, world.county)}
    contractor = {"contractor": CONTRACTOR, "credit_code": CONTRACTOR_CODE}
    seqs["D-P1"] = world.pay(
        "D-P1",
        "A-P1",
        2_000_000,
        recipient=contractor,
        gate={"project": "PRJ-1", "stage": "accepted"},
        **builder,
    ).seq
    seqs["D-P1b"] = world.pay(
        "D-P1b",
        "A-P1",
        500_000,
        recipient=contractor,
        gate={"project": "PRJ-1", "stage": "started"},
        **builder,
    ).seq
    seqs["D-P2"] = world.pay("D-P2", "A-P2", 300_000, recipient=contractor, **builder).seq
    seqs["D-L"] = world.pay(
        "D-L",
        "A-LOAN",
        5_000_000,
        household="HH-0005",
        purpose="micro_loan",
        date="2019-04-15",
        loan={"term_months": 12, "interest_subsidy_bp": 435},
    ).seq
    seqs["repay"] = world.append(
        "fund.repaid",
        {"disbursement": "D-L", "amount_fen": 1_000_000, "date": "2020-01-15"},
        world.fin,
    ).seq
    # Two refused attempts, kept in the refusals table.
    world.refused(
        Overspend,
        "fund.disbursed",
        world.payment(
            "D-X", "A-ED", 150_001, household="HH-0005", purpose="education_grant", period="2019-H2"
        ),
        *world.approvers,
        match="exceeds what remains",
    )
    world.refused(
        DuplicatePayment,
        "fund.disbursed",
        world.payment("D-Y", "A-IND2", 1_000),
        *world.approvers,
        match="already has 2 payment",
    )
    return seqs


@pytest.fixture
def scenario(sqlite_ledger: Ledger) -> tuple[World, dict[str, int]]:
    world = make_world(sqlite_ledger)
    return world, build(world)


@pytest.fixture
def conn(scenario: tuple[World, dict[str, int]]) -> Iterator[Connection]:
    with scenario[0].ledger.engine.connect() as connection:
        yield connection


# --- consistency: every running sum equals what it summarises --------------------------------


def assert_sums_consistent(conn: Connection) -> None:
    """Sources, allocations and groups agree with the active rows below them."""
    for source_id, allocated, count in conn.execute(
        text("SELECT id, allocated_fen, allocations FROM fund_sources")
    ):
        active = conn.execute(
            text(
                "SELECT count(*), coalesce(sum(amount_fen), 0) FROM fund_allocations "
                "WHERE source = :s AND status = 'active'"
            ),
            {"s": source_id},
        ).one()
        assert (count, allocated) == tuple(active), source_id
    for alloc_id, disbursed, count, amount in conn.execute(
        text("SELECT id, disbursed_fen, disbursements, amount_fen FROM fund_allocations")
    ):
        active = conn.execute(
            text(
                "SELECT count(*), coalesce(sum(amount_fen), 0) FROM fund_disbursements "
                "WHERE allocation = :a AND status = 'active'"
            ),
            {"a": alloc_id},
        ).one()
        groups = conn.execute(
            text(
                "SELECT coalesce(sum(count), 0), coalesce(sum(amount_fen), 0) FROM fund_groups "
                "WHERE allocation = :a"
            ),
            {"a": alloc_id},
        ).one()
        assert (count, disbursed) == tuple(active) == tuple(groups), alloc_id
        assert 0 <= disbursed <= amount


def test_running_sums_match_the_rows_on_both_engines(ledger: Ledger) -> None:
    world = make_world(ledger)
    build(world)
    check_ledger(ledger.engine)
    with ledger.engine.connect() as conn:
        assert_sums_consistent(conn)
        trail = q.trail(conn, source="S-C")
        assert (
            trail["source"]["disbursed_fen"]
            == 100_000 * 3 + 150_000 + 150_000 + 110_000 + 2_800_000
        )
        assert inspect(conn).has_table("refusals")  # the lead's migration 0005
        report = q.anomalies(conn, TODAY)
        assert [r["body"]["id"] for r in report["overspend_attempts"]] == ["D-X"]


# --- trail from a source ------------------------------------------------------------------------


def test_source_trail(conn: Connection, scenario: tuple[World, dict[str, int]]) -> None:
    _, seqs = scenario
    trail = q.trail(conn, source="S-C")
    assert trail["node"] == "source"
    source = trail["source"]
    assert source["amount_fen"] == 10_000_000
    assert source["allocated_fen"] == 1_000_000 + 300_000 + 400_000 + 3_000_000 + 1_000_000
    assert source["remaining_fen"] == 10_000_000 - source["allocated_fen"]
    assert source["source_seq"] == seqs["S-C"]
    assert [a["id"] for a in trail["allocations"]] == ["A-IND", "A-ED", "A-COOP", "A-P1", "A-P2"]
    assert trail["next_after"] is None
    by_purpose = {p["purpose"]: p for p in trail["by_purpose"]}
    assert by_purpose["project_payment"]["allocated_fen"] == 4_000_000
    assert by_purpose["project_payment"]["disbursed_fen"] == 2_800_000

    ind = trail["allocations"][0]
    assert ind["programme"] == "P-IND-2019" and ind["project"] is None
    assert ind["allocated_seq"] == seqs["A-IND"]
    assert ind["policy"] == {
        "approvals": ["village_approver", "township_approver"],
        "once_per_period": True,
        "max_per_recipient_fen": None,
    }
    # D-1 100000 + D-2 corrected to 150000 (D-3 reversed) in 坡荷村; D-4, D-5 in 那洒村.
    assert (ind["disbursed_fen"], ind["disbursements"], ind["remaining_fen"]) == (
        450_000,
        4,
        550_000,
    )
    groups = [(g["township"], g["village"], g["count"], g["amount_fen"]) for g in ind["groups"]]
    assert groups == [("城厢镇", "坡荷村", 2, 250_000), ("那洒镇", "那洒村", 2, 200_000)]
    # The entries behind a group: its page of disbursements.
    page = q.disbursements(conn, **ind["groups"][0]["page"])
    assert [d["id"] for d in page["items"]] == ["D-1", "D-2"]
    assert sum(d["amount_fen"] for d in page["items"]) == 250_000
    assert page["items"][1]["corrected_seq"] == seqs["fix"]
    coop_groups = trail["allocations"][2]["groups"]
    assert [(g["recipient_type"], g["village"], g["count"]) for g in coop_groups] == [
        ("cooperative", None, 2)
    ]


def test_source_trail_pages_allocations(conn: Connection) -> None:
    seen: list[str] = []
    after = None
    while True:
        trail = q.trail(conn, source="S-C", limit=2, after=after)
        seen += [a["id"] for a in trail["allocations"]]
        after = trail["next_after"]
        if after is None:
            break
    assert seen == ["A-IND", "A-ED", "A-COOP", "A-P1", "A-P2"]


def test_trail_arguments(conn: Connection) -> None:
    with pytest.raises(InvalidInput, match="exactly one of source, project, household"):
        q.trail(conn)
    with pytest.raises(InvalidInput, match="exactly one"):
        q.trail(conn, source="S-C", household="HH-0001")
    with pytest.raises(InvalidInput, match="limit"):
        q.trail(conn, source="S-C", limit=0)
    with pytest.raises(NotFound, match="S-NONE"):
        q.trail(conn, source="S-NONE")


# --- trail from a household and a project -------------------------------------------------------


def test_household_trail(conn: Connection, scenario: tuple[World, dict[str, int]]) -> None:
    _, seqs = scenario
    trail = q.trail(conn, household="HH-0001")
    assert trail["household"] == {
        "code": "HH-0001",
        "status": "identified",
        "county": "广南县",
        "township": "城厢镇",
        "village": "坡荷村",
    }
    assert trail["totals"] == {"count": 2, "amount_fen": 300_000}
    assert trail["by_purpose"] == [
        {"purpose": "industry_subsidy", "count": 2, "amount_fen": 300_000}
    ]
    first, second = trail["disbursements"]
    assert (first["id"], first["source_node"]["id"], first["allocation_node"]["id"]) == (
        "D-1",
        "S-C",
        "A-IND",
    )
    assert (
        second["id"],
        second["source_node"]["type"],
        second["allocation_node"]["programme"],
    ) == ("D-6", "donation", "P-IND-2019")
    assert second["disbursed_seq"] == seqs["D-6"]
    assert trail["exceptions"] == [
        {"seq": seqs["exc"], "programme": "P-IND-2019", "project": None, "period": "2019"}
    ]
    loans = q.trail(conn, household="HH-0005")["loans"]
    assert [(x["disbursement"], x["outstanding_fen"], x["due"]) for x in loans] == [
        ("D-L", 4_000_000, "2020-04-15")
    ]
    reversed_ = q.trail(conn, household="HH-0003")
    assert reversed_["totals"] == {"count": 0, "amount_fen": 0}
    assert [(d["status"], d["reversed_seq"]) for d in reversed_["disbursements"]] == [
        ("reversed", seqs["rev"])
    ]


def test_project_trail(conn: Connection, scenario: tuple[World, dict[str, int]]) -> None:
    _, seqs = scenario
    trail = q.trail(conn, project="PRJ-1")
    assert trail["project"] is not None and trail["project"]["id"] == "PRJ-1"
    assert [s["stage"] for s in trail["stages"]] == [
        "approved",
        "tendered",
        "contracted",
        "started",
        "completed",
        "accepted",
    ]
    assert trail["totals"]["allocated_fen"] == 3_000_000
    assert trail["totals"]["disbursed_fen"] == 2_500_000
    assert [a["id"] for a in trail["allocations"]] == ["A-P1"]
    assert trail["gated"]["count"] == 2 and trail["gated"]["amount_fen"] == 2_500_000
    assert [d["disbursed_seq"] for d in trail["gated"]["disbursements"]] == [
        seqs["D-P1"],
        seqs["D-P1b"],
    ]
    assert trail["gated"]["disbursements"][0]["recipient"] == {
        "contractor": CONTRACTOR,
        "credit_code": CONTRACTOR_CODE,
    }


# --- disbursement pages -------------------------------------------------------------------------


def test_disbursement_pages_are_keyset_pages(conn: Connection) -> None:
    whole = q.disbursements(conn, allocation="A-IND", limit=1000)["items"]
    assert [d["id"] for d in whole] == ["D-1", "D-2", "D-3", "D-4", "D-5"]
    paged: list[dict[str, Any]] = []
    after = None
    while True:
        page = q.disbursements(conn, allocation="A-IND", limit=2, after=after)
        paged += page["items"]
        after = page["next_after"]
        if after is None:
            break
    assert paged == whole
    active = q.disbursements(conn, allocation="A-IND", status="active")["items"]
    assert [d["id"] for d in active] == ["D-1", "D-2", "D-4", "D-5"]
    village = q.disbursements(conn, allocation="A-IND", village="那洒村")["items"]
    assert [d["place"]["village"] for d in village] == ["那洒村", "那洒村"]
    with pytest.raises(InvalidInput, match="an allocation, a household or a project"):
        q.disbursements(conn, village="那洒村")
    with pytest.raises(InvalidInput, match="recipient_type"):
        q.disbursements(conn, allocation="A-IND", recipient_type="bank")
    with pytest.raises(InvalidInput, match="after"):
        q.disbursements(conn, allocation="A-IND", after="D-1")  # type: ignore[arg-type]


# --- balances -----------------------------------------------------------------------------------


def test_balances(conn: Connection) -> None:
    everything = q.balances(conn)
    assert [s["id"] for s in everything["sources"]] == ["S-BANK", "S-C", "S-DON"]
    totals = everything["totals"]
    assert totals["amount_fen"] == 62_000_000
    assert totals["allocated_fen"] == 5_700_000 + 500_000 + 10_000_000
    assert totals["disbursed_fen"] == 450_000 + 150_000 + 110_000 + 2_800_000 + 200_000 + 5_000_000
    assert totals["undisbursed_fen"] == totals["allocated_fen"] - totals["disbursed_fen"]
    assert everything["loans"] == {
        "count": 1,
        "principal_fen": 5_000_000,
        "repaid_fen": 1_000_000,
        "outstanding_fen": 4_000_000,
    }
    programme = q.balances(conn, programme="P-IND-2019")
    assert [a["id"] for a in programme["allocations"]] == ["A-IND", "A-IND2"]
    assert [s["id"] for s in programme["sources"]] == ["S-C", "S-DON"]
    assert programme["loans"]["count"] == 0
    project = q.balances(conn, project="PRJ-2")
    assert [(a["id"], a["disbursed_fen"]) for a in project["allocations"]] == [("A-P2", 300_000)]
    year = q.balances(conn, year=2020)
    assert [s["id"] for s in year["sources"]] == ["S-DON"]
    assert [a["id"] for a in year["allocations"]] == ["A-IND2"]


# --- anomalies ----------------------------------------------------------------------------------


def test_anomaly_report(conn: Connection, scenario: tuple[World, dict[str, int]]) -> None:
    world, seqs = scenario
    report = q.anomalies(conn, TODAY)
    assert report["today"] == TODAY

    (overspend,) = report["overspend_attempts"]
    assert overspend["code"] == "overspend" and overspend["kind"] == "fund.disbursed"
    assert overspend["body"]["id"] == "D-X" and "A-ED" in overspend["reason"]
    signers = {
        world.fin.verifier.key_id,
        world.village.verifier.key_id,
        world.township.verifier.key_id,
    }
    assert set(overspend["key_ids"]) == signers
    (duplicate,) = report["duplicate_payment_attempts"]
    assert duplicate["body"]["id"] == "D-Y" and duplicate["code"] == "duplicate_payment"

    (payee,) = report["duplicate_payees"]
    assert payee | {"disbursements": None} == {
        "programme": "P-IND-2019",
        "project": None,
        "period": "2019",
        "household": "HH-0001",
        "count": 2,
        "allowed": 2,
        "exception_seqs": [seqs["exc"]],
        "disbursements": None,
    }
    assert [(d["id"], d["allocation"], d["disbursed_seq"]) for d in payee["disbursements"]] == [
        ("D-1", "A-IND", seqs["D-1"]),
        ("D-6", "A-IND2", seqs["D-6"]),
    ]

    (shared,) = report["shared_credit_codes"]
    assert shared == {
        "credit_code": COOP_CODE,
        "names": sorted([COOP, "坡荷村集体经济合作社"]),
        "count": 2,
        "amount_fen": 110_000,
        "disbursed_seqs": [seqs["D-C1"], seqs["D-C2"]],
    }

    unevidenced = {u["disbursement"]["id"]: u for u in report["unevidenced_payments"]}
    assert sorted(unevidenced) == [
        "D-P1b",
        "D-P2",
    ]  # D-P1 is gated on an accepted stage with evidence
    assert unevidenced["D-P1b"]["reason"] == "gate stage started has no evidence documents"
    assert unevidenced["D-P2"]["project"] == "PRJ-2"
    assert "no milestone with evidence" in unevidenced["D-P2"]["reason"]

    (overdue,) = report["overdue_milestones"]
    wanted = {
        "project": "PRJ-2",
        "stage": "approved",
        "due": "2019-01-31",
        "days_overdue": 487,
        "plan_seq": seqs["PRJ-2"],
        "allocated_fen": 1_000_000,
        "disbursed_fen": 300_000,
    }
    assert {k: overdue[k] for k in wanted} == wanted
    (loan,) = report["overdue_loans"]
    assert (loan["disbursement"], loan["overdue"], loan["outstanding_fen"]) == (
        "D-L",
        True,
        4_000_000,
    )
    assert q.anomalies(conn, "2020-04-15")["overdue_loans"] == []  # due that day, not yet overdue
    with pytest.raises(InvalidInput, match="today"):
        q.anomalies(conn, "June 2020")


def test_anomalies_disappear_with_evidence_and_repayment(
    scenario: tuple[World, dict[str, int]],
) -> None:
    world, _ = scenario
    world.append(
        "project.evidence",
        {"project": "PRJ-1", "stage": "started", "evidence": [DOC]},
        world.county,
    )
    world.append(
        "fund.repaid",
        {"disbursement": "D-L", "amount_fen": 4_000_000, "date": "2020-05-01"},
        world.fin,
    )
    with world.ledger.engine.connect() as conn:
        report = q.anomalies(conn, TODAY)
        assert [u["disbursement"]["id"] for u in report["unevidenced_payments"]] == ["D-P2"]
        assert report["overdue_loans"] == []
    check_ledger(world.ledger.engine)


# --- the trail reads indexes, never whole tables ------------------------------------------------


def test_trail_queries_use_indexes(conn: Connection) -> None:
    """SQLite's plan for every statement the trail queries run: no full scan of the big tables."""
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    event.listen(conn, "before_cursor_execute", record)
    try:
        q.trail(conn, source="S-C")
        q.trail(conn, project="PRJ-1")
        q.trail(conn, household="HH-0001")
        q.disbursements(
            conn,
            allocation="A-IND",
            recipient_type="household",
            county="广南县",
            township="城厢镇",
            village="坡荷村",
            after=0,
        )
    finally:
        event.remove(conn, "before_cursor_execute", record)
    big = ("fund_disbursements", "fund_groups", "fund_allocations", "fund_loans", "fund_exceptions")
    assert statements
    for statement, parameters in statements:
        plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
        for row in plan:
            detail = row[-1]
            scanned = [t for t in big if detail.startswith(f"SCAN {t}")]
            assert not scanned, f"{detail} in plan of {statement}"
