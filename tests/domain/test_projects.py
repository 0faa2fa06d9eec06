"""Projects (扶贫项目): registration, milestones in order, evidence, amendments, corrections, queries."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest
from sqlalchemy import text

from ledger.domain import projects as pj
from ledger.entry import Entry
from ledger.errors import (
    Conflict,
    InvalidEntry,
    InvalidInput,
    NotFound,
    RuleViolation,
    VerificationError,
)
from ledger.note import Signer
from ledger.rules import KINDS
from tests.helpers import Ledger, check_ledger, domain_doc_sections, dump

PID = "GN-2019-ROAD-07"
CONTRACTOR = "广西贵港路桥建设有限公司"
PLACE = {
    "province": "广西壮族自治区",
    "city": "贵港市",
    "county": "港南区",
    "township": "木格镇",
    "village": "云垌村",
    "division_code": "450802",
}


def doc(tag: str) -> dict[str, Any]:
    return {
        "sha256": hashlib.sha256(tag.encode()).hexdigest(),
        "name": f"{tag}.pdf",
        "media_type": "application/pdf",
        "size": 2048,
    }


def registered(pid: str = PID, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": pid,
        "name": {"zh": "云垌村道路硬化2.8公里", "en": "Yundong village road hardening, 2.8 km"},
        "category": "road",
        "budget_fen": 168_000_000,
        "location": dict(PLACE),
        "owner": "木格镇人民政府",
        "plan": [
            {"stage": "approved", "due": "2019-03-31"},
            {"stage": "contracted", "due": "2019-05-31"},
            {"stage": "completed", "due": "2019-10-31"},
            {"stage": "accepted", "due": "2019-11-30"},
        ],
        "quantities": {"length_m": 2800, "width_m": 4, "households_served": 212},
    }
    body.update(changes)
    return body


MILESTONES: dict[str, dict[str, Any]] = {
    "approved": {"date": "2019-03-20", "evidence": [doc("立项批复")]},
    "tendered": {"date": "2019-04-25", "evidence": [doc("中标通知书")]},
    "contracted": {
        "date": "2019-05-10",
        "evidence": [doc("施工合同")],
        "contract_fen": 159_800_000,
        "contractor": CONTRACTOR,
    },
    "started": {"date": "2019-05-20"},
    "progress": {"date": "2019-07-01", "percent": 50},
    "completed": {"date": "2019-10-28", "evidence": [doc("竣工照片")]},
    "accepted": {"date": "2019-11-15", "evidence": [doc("验收报告")]},
    "notice": {
        "date": "2019-11-25",
        "evidence": [doc("公示照片")],
        "notice_start": "2019-11-16",
        "notice_end": "2019-11-25",
    },
}


def milestone(stage: str, pid: str = PID, **changes: Any) -> dict[str, Any]:
    body = {"project": pid, "stage": stage, **MILESTONES.get(stage, {})}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


class World:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.county = ledger.register("county", "county_approver", "港南区扶贫办")
        self.county2 = ledger.register("county2", "county_approver", "港南区扶贫办")
        self.township = ledger.register("township", "township_approver", "木格镇人民政府")
        self.village = ledger.register("village", "village_approver", "云垌村委会")
        self.builder = ledger.register("builder", "contractor", CONTRACTOR)
        self.other_builder = ledger.register("other", "contractor", "别的建筑公司")

    def signers(self, stage: str) -> tuple[Signer, ...]:
        return {
            "approved": (self.county,),
            "tendered": (self.township,),
            "contracted": (self.county,),
            "started": (self.builder,),
            "progress": (self.builder,),
            "completed": (self.builder,),
            "accepted": (self.county, self.township),
            "notice": (self.village,),
        }[stage]

    def append(self, kind: str, body: dict[str, Any], *signers: Signer) -> Entry:
        return self.ledger.log.append([self.ledger.statement(kind, body, *signers)])[0]

    def register(self, pid: str = PID, **changes: Any) -> Entry:
        return self.append("project.registered", registered(pid, **changes), self.county)

    def reach(self, *stages: str, pid: str = PID) -> dict[str, int]:
        return {
            s: self.append("project.milestone", milestone(s, pid), *self.signers(s)).seq
            for s in stages
        }

    def refused(
        self, kind: str, body: dict[str, Any], signers: tuple[Signer, ...], error: type, match: str
    ) -> None:
        before = dump(self.ledger.engine)
        with pytest.raises(error, match=match):
            self.append(kind, body, *signers)
        assert dump(self.ledger.engine) == before

    def project(self, pid: str = PID) -> dict[str, Any]:
        with self.ledger.engine.connect() as conn:
            rows = conn.execute(text("SELECT * FROM projects WHERE id = :p"), {"p": pid}).mappings()
            return dict(rows.one())

    def stage(self, stage: str, pid: str = PID) -> dict[str, Any]:
        with self.ledger.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT * FROM project_stages WHERE project = :p AND stage = :s"),
                {"p": pid, "s": stage},
            ).mappings()
            return dict(rows.one())


ALL = ("approved", "tendered", "contracted", "started", "completed", "accepted", "notice")


@pytest.fixture
def world(ledger: Ledger) -> World:
    return World(ledger)


@pytest.fixture
def sqlite_world(sqlite_ledger: Ledger) -> World:
    return World(sqlite_ledger)


# --- project.registered ----------------------------------------------------------------------


def test_registration(world: World) -> None:
    entry = world.register()
    row = world.project()
    assert (row["status"], row["budget_fen"], row["registered_seq"], row["seq"]) == (
        "registered",
        168_000_000,
        entry.seq,
        entry.seq,
    )
    assert row["quantities"] == '{"households_served":212,"length_m":2800,"width_m":4}'
    assert row["contractor"] is None and row["progress_pct"] == 0
    check_ledger(world.ledger.engine)


def test_registration_is_refused_when_duplicate_or_unsigned(world: World) -> None:
    first = world.register()
    world.refused("project.registered", registered(), (world.county,), Conflict, f"seq {first.seq}")
    world.refused(
        "project.registered",
        registered("GN-2019-X"),
        (world.village,),
        RuleViolation,
        "county_approver or township_approver",
    )
    check_ledger(world.ledger.engine)


@pytest.mark.parametrize(
    ("changes", "match", "error"),
    [
        ({"id": "../x"}, "identifier", InvalidEntry),
        ({"category": "bridge"}, "category must be one of", InvalidEntry),
        ({"budget_fen": 0}, "budget_fen must be between 1", InvalidEntry),
        ({"budget_fen": "168000000"}, "integer number of fen", InvalidEntry),
        ({"name": {"en": "road"}}, "zh required", InvalidEntry),
        ({"plan": [{"stage": "progress", "due": "2019-05-01"}]}, "not planned", InvalidEntry),
        (
            {"plan": [{"stage": "approved", "due": "2019-05-01"}] * 2},
            "planned twice",
            InvalidEntry,
        ),
        ({"plan": [{"stage": "approved", "due": "2019-13-01"}]}, "date", InvalidEntry),
        (
            {
                "plan": [
                    {"stage": "approved", "due": "2019-05-01"},
                    {"stage": "started", "due": "2019-04-01"},
                ]
            },
            "started due 2019-04-01, before approved due 2019-05-01",
            RuleViolation,
        ),
        ({"quantities": {"length_km": 3}}, "quantities", InvalidEntry),
        ({"quantities": {"length_m": -1}}, "at least 0", InvalidEntry),
        ({"budget_yuan": 100}, "unexpected", InvalidEntry),
    ],
)
def test_registration_refuses_bad_bodies(
    sqlite_world: World, changes: dict[str, Any], match: str, error: type
) -> None:
    sqlite_world.refused(
        "project.registered", registered(**changes), (sqlite_world.county,), error, match
    )


# --- project.milestone: the whole path ----------------------------------------------------------


def test_a_project_from_approval_to_public_notice(world: World) -> None:
    w = world
    w.register()
    seqs = w.reach("approved", "tendered", "contracted", "started")
    p1 = w.append(
        "project.milestone", milestone("progress", percent=40, date="2019-07-01"), w.builder
    )
    p2 = w.append(
        "project.milestone", milestone("progress", percent=85, date="2019-09-01"), w.township
    )
    row = w.project()
    assert (row["status"], row["progress_pct"], row["progress_seq"], row["progress_date"]) == (
        "progress",
        85,
        p2.seq,
        "2019-09-01",
    )
    assert (row["contractor"], row["contract_fen"]) == (CONTRACTOR, 159_800_000)
    seqs.update(w.reach("completed", "accepted", "notice"))
    row = w.project()
    assert (row["status"], row["progress_pct"]) == ("notice", 100)
    assert (row["notice_start"], row["notice_end"]) == ("2019-11-16", "2019-11-25")
    progress = w.stage("progress")
    assert (progress["first_seq"], progress["seq"], progress["evidence"]) == (p1.seq, p2.seq, 0)
    assert w.stage("approved")["first_seq"] == seqs["approved"]
    assert w.stage("started")["evidence"] == 0
    assert w.stage("accepted")["evidence"] == 1
    check_ledger(w.ledger.engine)


def test_stages_come_in_order(world: World) -> None:
    w = world
    w.register()
    w.refused(
        "project.milestone",
        milestone("tendered"),
        (w.county,),
        RuleViolation,
        "cannot record tendered before approved \\(status registered\\)",
    )
    w.reach("approved", "tendered", "contracted")
    w.refused(
        "project.milestone",
        milestone("completed"),
        (w.builder,),
        RuleViolation,
        "cannot record completed before started",
    )
    w.refused(
        "project.milestone",
        milestone("progress", percent=10),
        (w.builder,),
        RuleViolation,
        "before started",
    )
    check_ledger(w.ledger.engine)


def test_a_stage_is_reached_once(sqlite_world: World) -> None:
    w = sqlite_world
    w.register()
    seqs = w.reach("approved")
    w.refused(
        "project.milestone",
        milestone("approved"),
        (w.county,),
        Conflict,
        f"reached approved already \\(seq {seqs['approved']}\\)",
    )


def test_milestone_dates_do_not_go_back_or_into_the_future(sqlite_world: World) -> None:
    w = sqlite_world
    w.register()
    seqs = w.reach("approved")
    w.refused(
        "project.milestone",
        milestone("tendered", date="2019-03-19"),
        (w.county,),
        RuleViolation,
        f"before the project's previous milestone on 2019-03-20 \\(seq {seqs['approved']}\\)",
    )
    future = (datetime.now(UTC).date() + timedelta(days=5)).isoformat()
    w.refused(
        "project.milestone",
        milestone("tendered", date=future),
        (w.county,),
        RuleViolation,
        "future",
    )


def test_progress_rises_and_stops_at_completion(sqlite_world: World) -> None:
    w = sqlite_world
    w.register()
    w.reach("approved", "tendered", "contracted", "started")
    first = w.append(
        "project.milestone", milestone("progress", percent=50, date="2019-07-01"), w.builder
    )
    w.refused(
        "project.milestone",
        milestone("progress", percent=50, date="2019-07-02"),
        (w.builder,),
        RuleViolation,
        f"must exceed the last report's 50% \\(seq {first.seq}\\)",
    )
    w.refused(
        "project.milestone",
        milestone("progress", percent=60, date="2019-06-30"),
        (w.builder,),
        RuleViolation,
        "before the project's previous milestone on 2019-07-01",
    )
    w.refused(
        "project.milestone",
        milestone("progress", percent=100, date="2019-07-02"),
        (w.builder,),
        InvalidEntry,
        "1 to 99",
    )
    done = w.reach("completed")["completed"]
    w.refused(
        "project.milestone",
        milestone("progress", percent=99, date="2019-10-29"),
        (w.builder,),
        RuleViolation,
        f"was completed \\(seq {done}\\)",
    )


def test_evidence_is_required_where_it_matters(sqlite_world: World) -> None:
    w = sqlite_world
    w.register()
    w.refused(
        "project.milestone",
        milestone("approved", evidence=None),
        (w.county,),
        InvalidEntry,
        "approved milestone needs at least one evidence document",
    )
    w.refused(
        "project.milestone",
        milestone(
            "approved", evidence=[{"sha256": "ab", "name": "x", "media_type": "a/b", "size": 1}]
        ),
        (w.county,),
        InvalidEntry,
        "SHA-256",
    )


@pytest.mark.parametrize(
    ("stage", "changes", "match"),
    [
        ("approved", {"percent": 10}, "unexpected \\['percent'\\]"),
        ("contracted", {"contractor": None}, "missing \\['contractor'\\]"),
        ("notice", {"notice_end": None}, "missing \\['notice_end'\\]"),
        ("finished", {}, "stage must be one of"),
        ("started", {"note": ""}, "note must be non-empty"),
    ],
)
def test_stage_specific_fields(
    sqlite_world: World, stage: str, changes: dict[str, Any], match: str
) -> None:
    w = sqlite_world
    w.register()
    w.refused("project.milestone", milestone(stage, **changes), (w.county,), InvalidEntry, match)


def test_contract_within_budget(sqlite_world: World) -> None:
    w = sqlite_world
    w.register()
    w.reach("approved", "tendered")
    w.refused(
        "project.milestone",
        milestone("contracted", contract_fen=168_000_001),
        (w.county,),
        RuleViolation,
        "contract amount 168000001 fen exceeds project GN-2019-ROAD-07's budget 168000000 fen",
    )


def test_signing_policies(world: World) -> None:
    w = world
    w.register()
    w.refused(
        "project.milestone", milestone("approved"), (w.township,), RuleViolation, "county_approver"
    )
    w.reach("approved", "tendered")
    w.refused(
        "project.milestone",
        milestone("contracted"),
        (w.builder,),
        RuleViolation,
        "county_approver or township_approver",
    )
    w.reach("contracted")
    w.refused(
        "project.milestone",
        milestone("started"),
        (w.other_builder,),
        RuleViolation,
        "contractor key of '别的建筑公司'; project GN-2019-ROAD-07's contractor is '广西贵港路桥建设有限公司'",
    )
    w.refused(
        "project.milestone",
        milestone("started"),
        (w.township, w.other_builder),
        RuleViolation,
        "contractor key of",
    )
    w.refused("project.milestone", milestone("started"), (w.village,), RuleViolation, "contractor")
    w.reach("started", "completed")
    for signers in [(w.county,), (w.county, w.county2), (w.township, w.builder)]:
        w.refused(
            "project.milestone",
            milestone("accepted"),
            signers,
            RuleViolation,
            "county_approver \\+ township_approver",
        )
    w.reach("accepted")
    w.refused(
        "project.milestone", milestone("notice"), (w.builder,), RuleViolation, "village_approver"
    )
    w.reach("notice")
    check_ledger(w.ledger.engine)


def test_notice_period(sqlite_world: World) -> None:
    w = sqlite_world
    w.register()
    seqs = w.reach(*ALL[:-1])
    w.refused(
        "project.milestone",
        milestone("notice", notice_start="2019-11-16", notice_end="2019-11-21"),
        (w.village,),
        RuleViolation,
        "is 6 days; 公示 lasts at least 7 days",
    )
    w.refused(
        "project.milestone",
        milestone("notice", notice_start="2019-11-14", notice_end="2019-11-25"),
        (w.village,),
        RuleViolation,
        f"before acceptance on 2019-11-15 \\(seq {seqs['accepted']}\\)",
    )
    w.refused(
        "project.milestone",
        milestone("notice", date="2019-11-16", notice_start="2019-11-17", notice_end="2019-11-25"),
        (w.village,),
        RuleViolation,
        "before notice_start",
    )
    w.append(
        "project.milestone",
        milestone("notice", date="2019-11-16", notice_start="2019-11-16", notice_end="2019-11-22"),
        w.village,
    )
    check_ledger(w.ledger.engine)


# --- project.evidence ------------------------------------------------------------------------------


def test_more_evidence_for_a_reached_stage(world: World) -> None:
    w = world
    w.register()
    w.reach("approved", "tendered", "contracted", "started")
    body = {"project": PID, "stage": "started", "evidence": [doc("开工照片1"), doc("开工照片2")]}
    added = w.append("project.evidence", body, w.builder)
    assert (w.stage("started")["evidence"], w.stage("started")["seq"]) == (2, added.seq)
    w.refused(
        "project.evidence",
        {**body, "stage": "completed"},
        (w.builder,),
        RuleViolation,
        "has not reached completed \\(status started\\)",
    )
    w.refused(
        "project.evidence", {**body, "evidence": []}, (w.builder,), InvalidEntry, "at least one"
    )
    w.refused("project.evidence", body, (w.other_builder,), RuleViolation, "contractor key of")
    check_ledger(w.ledger.engine)


# --- project.amended --------------------------------------------------------------------------------


def test_amendments(world: World) -> None:
    w = world
    w.register()
    w.reach("approved", "tendered", "contracted")
    amend = {
        "project": PID,
        "reason": "设计变更：增加排水沟",
        "budget_fen": 175_000_000,
        "plan": [
            {"stage": "completed", "due": "2019-11-15"},
            {"stage": "accepted", "due": "2019-12-15"},
        ],
        "quantities": {"length_m": 2850},
    }
    entry = w.append("project.amended", amend, w.county)
    row = w.project()
    assert (row["budget_fen"], row["quantities"], row["seq"]) == (
        175_000_000,
        '{"length_m":2850}',
        entry.seq,
    )
    with w.ledger.engine.connect() as conn:
        plan = dict(
            conn.execute(
                text("SELECT stage, due FROM project_plan WHERE project = :p"), {"p": PID}
            ).all()
        )
    assert plan == {
        "approved": "2019-03-31",
        "contracted": "2019-05-31",
        "completed": "2019-11-15",
        "accepted": "2019-12-15",
    }
    w.refused(
        "project.amended", {**amend, "budget_fen": 100}, (w.county,), RuleViolation, "below project"
    )
    w.refused(
        "project.amended",
        {"project": PID, "reason": "x", "plan": [{"stage": "approved", "due": "2020-01-01"}]},
        (w.county,),
        RuleViolation,
        "contracted due 2019-05-31, before approved due 2020-01-01",
    )
    w.refused(
        "project.amended",
        {"project": PID, "reason": "x"},
        (w.county,),
        InvalidEntry,
        "at least one",
    )
    w.refused("project.amended", amend, (w.township,), RuleViolation, "county_approver")
    w.refused(
        "project.amended",
        {**amend, "project": "NOPE"},
        (w.county,),
        RuleViolation,
        "not registered",
    )
    check_ledger(w.ledger.engine)


# --- project.corrected ------------------------------------------------------------------------------


def test_correcting_a_milestone_by_its_seq(world: World) -> None:
    w = world
    w.register()
    seqs = w.reach("approved", "tendered", "contracted", "started")
    fix = w.append(
        "project.corrected",
        {"project": PID, "ref": seqs["tendered"], "reason": "日期录入错误", "date": "2019-04-20"},
        w.county,
    )
    assert (w.stage("tendered")["date"], w.stage("tendered")["seq"]) == ("2019-04-20", fix.seq)
    w.append(
        "project.corrected",
        {
            "project": PID,
            "ref": seqs["contracted"],
            "reason": "合同金额更正",
            "contract_fen": 158_000_000,
        },
        w.county,
    )
    assert w.project()["contract_fen"] == 158_000_000
    p1 = w.append(
        "project.milestone", milestone("progress", percent=30, date="2019-06-15"), w.builder
    )
    p2 = w.append(
        "project.milestone", milestone("progress", percent=60, date="2019-07-15"), w.builder
    )
    w.append(
        "project.corrected",
        {"project": PID, "ref": p2.seq, "reason": "更正", "percent": 55},
        w.county,
    )
    assert (w.project()["progress_pct"], w.project()["progress_seq"]) == (55, p2.seq)
    w.refused(
        "project.corrected",
        {"project": PID, "ref": p2.seq, "reason": "更正", "percent": 30},
        (w.county,),
        RuleViolation,
        "must exceed the report before it, 30%",
    )
    w.refused(
        "project.corrected",
        {"project": PID, "ref": p1.seq, "reason": "更正", "percent": 35},
        (w.county,),
        RuleViolation,
        f"only the latest progress report .* \\(latest: seq {p2.seq}",
    )
    check_ledger(w.ledger.engine)


def test_corrections_are_checked_like_the_original(sqlite_world: World) -> None:
    w = sqlite_world
    w.register()
    seqs = w.reach(*ALL)
    base = {"project": PID, "reason": "更正"}
    w.refused(
        "project.corrected",
        {**base, "ref": seqs["tendered"], "date": "2019-05-11"},
        (w.county,),
        RuleViolation,
        f"would fall after contracted on 2019-05-10 \\(seq {seqs['contracted']}\\)",
    )
    w.refused(
        "project.corrected",
        {**base, "ref": seqs["tendered"], "date": "2019-03-01"},
        (w.county,),
        RuleViolation,
        "would fall before approved on 2019-03-20",
    )
    w.refused(
        "project.corrected",
        {**base, "ref": seqs["tendered"], "percent": 5},
        (w.county,),
        InvalidEntry,
        "percent cannot be corrected on a tendered milestone",
    )
    w.refused(
        "project.corrected",
        {**base, "ref": seqs["notice"], "notice_end": "2019-11-20"},
        (w.county,),
        RuleViolation,
        "is 5 days",
    )
    w.refused(
        "project.corrected",
        {**base, "ref": seqs["contracted"], "contract_fen": 200_000_000},
        (w.county,),
        RuleViolation,
        "exceeds",
    )
    w.refused(
        "project.corrected",
        {**base, "ref": 1, "date": "2019-04-01"},
        (w.county,),
        RuleViolation,
        "seq 1 is not a milestone entry of project",
    )
    w.refused(
        "project.corrected",
        {**base, "ref": seqs["notice"] + 5, "date": "2019-04-01"},
        (w.county,),
        InvalidEntry,
        "ref must be the seq of an earlier entry",
    )
    w.refused(
        "project.corrected",
        {**base, "ref": seqs["tendered"]},
        (w.county,),
        InvalidEntry,
        "at least one",
    )
    w.refused(
        "project.corrected",
        {**base, "ref": seqs["tendered"], "date": "2019-04-20"},
        (w.township,),
        RuleViolation,
        "county_approver",
    )
    w.append(
        "project.corrected",
        {**base, "ref": seqs["notice"], "notice_start": "2019-11-15", "notice_end": "2019-11-21"},
        w.county,
    )
    assert (w.project()["notice_start"], w.project()["notice_end"]) == ("2019-11-15", "2019-11-21")
    check_ledger(w.ledger.engine)


# --- tamper --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "table", "writer"),
    [
        ("UPDATE projects SET budget_fen = budget_fen + 1", "projects", "approved"),
        (
            "UPDATE project_stages SET evidence = 5 WHERE stage = 'approved'",
            "project_stages",
            "approved",
        ),
        (
            "UPDATE project_plan SET due = '2020-01-01' WHERE stage = 'approved'",
            "project_plan",
            "registered",
        ),
        (
            "UPDATE project_events SET date = '2019-01-01' WHERE stage = 'approved'",
            "project_events",
            "approved",
        ),
    ],
)
def test_edited_project_rows_are_named_by_verify(
    world: World, sql: str, table: str, writer: str
) -> None:
    registered_seq = world.register().seq
    seqs = {"registered": registered_seq, **world.reach("approved")}
    check_ledger(world.ledger.engine)
    world.ledger.execute(sql)
    with pytest.raises(VerificationError, match=f"seq {seqs[writer]}: table {table}"):
        check_ledger(world.ledger.engine)


# --- schemas ---------------------------------------------------------------------------------------------


def test_schemas_match_the_rules() -> None:
    validator = jsonschema.Draft202012Validator
    cases: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {
        "project.registered": (
            [registered()],
            [registered(category="bridge"), registered(plan=None)],
        ),
        "project.milestone": (
            [milestone(s) for s in ALL] + [milestone("progress", percent=50)],
            [
                milestone("approved", evidence=None),
                milestone("approved", percent=10),
                milestone("progress", percent=None),
                milestone("contracted", contractor=None),
                milestone("notice", notice_end=None),
                milestone("started", contract_fen=5),
            ],
        ),
        "project.evidence": (
            [{"project": PID, "stage": "started", "evidence": [doc("x")]}],
            [{"project": PID, "stage": "started", "evidence": []}],
        ),
        "project.amended": (
            [{"project": PID, "reason": "x", "budget_fen": 5}],
            [{"project": PID, "reason": "x"}],
        ),
        "project.corrected": (
            [{"project": PID, "ref": 3, "reason": "x", "date": "2019-01-01"}],
            [
                {"project": PID, "ref": 3, "reason": "x"},
                {"project": PID, "ref": -1, "reason": "x", "date": "2019-01-01"},
            ],
        ),
    }
    for kind, (good, bad) in cases.items():
        schema = KINDS[kind].schema
        assert schema is not None
        validator.check_schema(schema)
        for body in good:
            validator(schema).validate({k: v for k, v in body.items() if v is not None})
        for body in bad:
            assert not validator(schema).is_valid(
                {k: v for k, v in body.items() if v is not None}
            ), (kind, body)


# --- queries -----------------------------------------------------------------------------------------------


def test_project_view(sqlite_world: World) -> None:
    w = sqlite_world
    reg = w.register()
    seqs = w.reach("approved", "tendered", "contracted")
    fix = w.append(
        "project.corrected",
        {"project": PID, "ref": seqs["tendered"], "reason": "更正", "date": "2019-04-21"},
        w.county,
    )
    with w.ledger.engine.connect() as conn:
        view = pj.project_view(conn, PID, as_of="2019-12-01")
        with pytest.raises(NotFound, match="NOPE"):
            pj.project_view(conn, "NOPE")
        with pytest.raises(InvalidInput, match="as_of"):
            pj.project_view(conn, PID, as_of="yesterday")
    assert view["name"] == {
        "zh": "云垌村道路硬化2.8公里",
        "en": "Yundong village road hardening, 2.8 km",
    }
    assert view["location"] == PLACE and view["status"] == "contracted"
    assert view["quantities"] == {"length_m": 2800, "width_m": 4, "households_served": 212}
    assert view["plan"] == [
        {
            "stage": "approved",
            "due": "2019-03-31",
            "seq": reg.seq,
            "reached_seq": seqs["approved"],
            "reached_date": "2019-03-20",
            "state": "done",
        },
        {
            "stage": "contracted",
            "due": "2019-05-31",
            "seq": reg.seq,
            "reached_seq": seqs["contracted"],
            "reached_date": "2019-05-10",
            "state": "done",
        },
        {
            "stage": "completed",
            "due": "2019-10-31",
            "seq": reg.seq,
            "reached_seq": None,
            "reached_date": None,
            "state": "overdue",
        },
        {
            "stage": "accepted",
            "due": "2019-11-30",
            "seq": reg.seq,
            "reached_seq": None,
            "reached_date": None,
            "state": "overdue",
        },
    ]
    assert [s["stage"] for s in view["stages"]] == ["approved", "tendered", "contracted"]
    assert [(e["seq"], e["kind"]) for e in view["events"]] == [
        (reg.seq, "project.registered"),
        (seqs["approved"], "project.milestone"),
        (seqs["tendered"], "project.milestone"),
        (seqs["contracted"], "project.milestone"),
        (fix.seq, "project.corrected"),
    ]
    tendered = view["events"][2]
    assert (tendered["date"], tendered["corrected_seq"], tendered["body"]["date"]) == (
        "2019-04-21",
        fix.seq,
        "2019-04-25",
    )
    assert tendered["evidence"] == [doc("中标通知书")]
    assert view["events"][1]["corrected_seq"] is None


def test_lists_overdue_and_missing_evidence(sqlite_world: World) -> None:
    w = sqlite_world
    reg = w.register()
    w.register(
        "GN-2019-WATER-02",
        category="water",
        name={"zh": "平南村饮水工程"},
        plan=[{"stage": "approved", "due": "2019-06-30"}],
    )
    seqs = w.reach("approved", "tendered", "contracted", "started")
    with w.ledger.engine.connect() as conn:
        overdue = pj.overdue_milestones(conn, "2019-11-01")
        assert pj.overdue_milestones(conn, "2019-06-30") == []
        assert pj.overdue_milestones(conn, "2019-11-01", county="覃塘区") == []
        missing = pj.stages_without_evidence(conn)
        listed = pj.list_projects(conn, category="water")
        assert [p["id"] for p in pj.list_projects(conn, county="港南区")] == [
            PID,
            "GN-2019-WATER-02",
        ]
        assert pj.list_projects(conn, status="started")[0]["id"] == PID
        with pytest.raises(InvalidInput, match="status must be"):
            pj.list_projects(conn, status="done")
        with pytest.raises(InvalidInput, match="as_of"):
            pj.overdue_milestones(conn, "2019-02-30")
    assert [
        (o["project"], o["stage"], o["due"], o["days_overdue"], o["plan_seq"]) for o in overdue
    ] == [
        ("GN-2019-WATER-02", "approved", "2019-06-30", 124, reg.seq + 1),
        (PID, "completed", "2019-10-31", 1, reg.seq),
    ]
    assert missing == [
        {
            "project": PID,
            "name": registered()["name"],
            "stage": "started",
            "first_seq": seqs["started"],
            "date": "2019-05-20",
            "seq": seqs["started"],
        }
    ]
    assert [p["id"] for p in listed] == ["GN-2019-WATER-02"]
    assert listed[0]["name"] == {"zh": "平南村饮水工程"}


def test_stage_reached_accessor(sqlite_world: World) -> None:
    w = sqlite_world
    w.register()
    seqs = w.reach("approved")
    from ledger.projection import Projection, SqlSource

    with w.ledger.engine.connect() as conn:
        rows = Projection(SqlSource(conn))
        assert pj.stage_reached(rows, PID, "approved") == seqs["approved"]
        assert pj.stage_reached(rows, PID, "tendered") is None
        project = pj.get_project(rows, PID)
        assert project is not None and project["status"] == "approved"
        assert pj.get_project(rows, "NOPE") is None


# --- documentation -----------------------------------------------------------------------------------------

KINDS_HERE = (
    "project.registered",
    "project.milestone",
    "project.evidence",
    "project.amended",
    "project.corrected",
)


def doc_sections() -> dict[str, list[str]]:
    """kind → the ```json blocks of its section in docs/DOMAIN.md."""
    return domain_doc_sections("project.")


def test_doc_examples_are_accepted_in_order(sqlite_world: World) -> None:
    w = sqlite_world
    examples = {kind: json.loads(blocks[1]) for kind, blocks in doc_sections().items()}
    w.append("project.registered", examples["project.registered"], w.township)
    seqs = w.reach("approved", "tendered")
    w.append("project.milestone", examples["project.milestone"], w.township)
    w.reach("started")
    w.append("project.evidence", examples["project.evidence"], w.builder)
    w.append("project.amended", examples["project.amended"], w.county)
    w.append(
        "project.corrected", {**examples["project.corrected"], "ref": seqs["tendered"]}, w.county
    )
    assert w.stage("tendered")["date"] == "2019-04-20"
    assert w.stage("started")["evidence"] == 1
    check_ledger(w.ledger.engine)
