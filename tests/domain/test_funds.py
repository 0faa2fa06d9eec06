"""Fund trails (ledger/domain/funds.py): every rule accepted and refused, on both engines.

After a refused write the database is unchanged (``dump``); after writes the whole
ledger passes the audit (``check_ledger``).  :class:`World` is shared with
test_fund_queries.py and test_funds_race.py.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import pytest
from sqlalchemy import text

from ledger.domain import funds
from ledger.entry import Entry, decode_entry
from ledger.errors import (
    Conflict,
    DuplicatePayment,
    InvalidEntry,
    InvalidInput,
    Overspend,
    RuleViolation,
    VerificationError,
)
from ledger.note import Signer
from ledger.rules import KINDS, RuleState, apply_entry, check_entry
from tests.helpers import Ledger, check_ledger, domain_doc_text, dump

DOC = {"sha256": "ab" * 32, "name": "签收单.pdf", "media_type": "application/pdf", "size": 20480}
PLACE = {"province": "云南省", "city": "文山壮族苗族自治州", "county": "广南县"}
COOP = "广南县坡荷种植专业合作社"
CONTRACTOR = "文山路桥工程有限公司"
CONTRACTOR_CODE = "91350100M000100Y43"


def credit_code(first17: str) -> str:
    """A 统一社会信用代码 with its check character (GB 32100-2015)."""
    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    weights = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
    total = sum(alphabet.index(c) * w for c, w in zip(first17, weights, strict=True))
    return first17 + alphabet[(31 - total % 31) % 31]


COOP_CODE = credit_code("93532627MA6K1B2C3")


@dataclass
class World:
    """A ledger with the authors of the fund kinds, and short-hands to append their entries."""

    ledger: Ledger
    fin: Signer
    fin2: Signer
    village: Signer
    village2: Signer
    township: Signer
    county: Signer
    coop: Signer
    builder: Signer
    seqs: dict[str, int] = field(default_factory=dict)

    @property
    def approvers(self) -> tuple[Signer, ...]:
        return (self.fin, self.village, self.township)

    def append(self, kind: str, body: Mapping[str, Any], *signers: Signer) -> Entry:
        (entry,) = self.ledger.log.append([self.ledger.statement(kind, body, *signers)])
        return entry

    def refused(
        self,
        error: type[Exception],
        kind: str,
        body: Mapping[str, Any],
        *signers: Signer,
        match: str,
    ) -> str:
        """Append must raise exactly ``error`` matching ``match`` and write nothing."""
        before = dump(self.ledger.engine)
        with pytest.raises(error, match=match) as info:
            self.append(kind, body, *signers)
        assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
        assert dump(self.ledger.engine) == before
        return str(info.value)

    # --- households and projects (their kinds) -------------------------------------------

    def household(self, code: str, township: str = "城厢镇", village: str = "坡荷村") -> Entry:
        body = {
            "code": code,
            "location": {**PLACE, "township": township, "village": village},
            "members": 4,
            "causes": ["illness"],
            "year": 2016,
            "commitment": "cd" * 32,
        }
        return self.append("household.identified", body, self.village)

    def project(self, project_id: str, *, plan: list[dict[str, str]] | None = None) -> Entry:
        body = {
            "id": project_id,
            "name": {"zh": "坡荷村通组道路硬化", "en": "Pohe village road hardening"},
            "category": "road",
            "budget_fen": 300_000_000,
            "location": {**PLACE, "township": "城厢镇", "village": "坡荷村"},
            "owner": "广南县交通运输局",
            "plan": plan if plan is not None else [{"stage": "accepted", "due": "2030-12-31"}],
        }
        return self.append("project.registered", body, self.county)

    def milestones(self, project_id: str, *stages: str, evidence: bool = True) -> None:
        """Record the project's stages in order; ``evidence`` False leaves it off where optional."""
        for day, stage in enumerate(stages, start=1):
            body: dict[str, Any] = {
                "project": project_id,
                "stage": stage,
                "date": f"2019-03-{day:02d}",
            }
            if evidence or stage in ("approved", "tendered", "contracted", "accepted", "notice"):
                body["evidence"] = [DOC]
            signers: tuple[Signer, ...] = (self.county,)
            if stage == "contracted":
                body.update(contract_fen=250_000_000, contractor=CONTRACTOR)
            if stage == "accepted":
                signers = (self.county, self.township)
            self.append("project.milestone", body, *signers)

    # --- funds ------------------------------------------------------------------------------

    def source(self, source_id: str = "S-2019-C", amount: int = 10_000_000, **extra: Any) -> Entry:
        body = {
            "id": source_id,
            "type": "central",
            "name": {"zh": "2019年中央财政专项扶贫资金", "en": "2019 central special fund"},
            "amount_fen": amount,
            "year": 2019,
            "payer": "财政部",
            **extra,
        }
        return self.append("fund.source", body, self.fin)

    def allocate(
        self,
        allocation_id: str,
        amount: int,
        *,
        source: str = "S-2019-C",
        programme: str | None = "P-IND-2019",
        purpose: str = "industry_subsidy",
        **extra: Any,
    ) -> Entry:
        body: dict[str, Any] = {
            "id": allocation_id,
            "source": source,
            "amount_fen": amount,
            "purpose": purpose,
            **extra,
        }
        if programme is not None and "project" not in extra:
            body["programme"] = programme
        return self.append("fund.allocated", body, self.fin)

    def payment(
        self,
        disbursement_id: str,
        allocation: str,
        amount: int,
        *,
        household: str | None = "HH-0001",
        purpose: str = "industry_subsidy",
        period: str = "2019",
        **extra: Any,
    ) -> dict[str, Any]:
        recipient = extra.pop("recipient", {"household": household})
        return {
            "id": disbursement_id,
            "allocation": allocation,
            "recipient": recipient,
            "amount_fen": amount,
            "purpose": purpose,
            "period": period,
            **extra,
        }

    def pay(self, *args: Any, signers: tuple[Signer, ...] | None = None, **kwargs: Any) -> Entry:
        return self.append(
            "fund.disbursed", self.payment(*args, **kwargs), *(signers or self.approvers)
        )


def make_world(ledger: Ledger) -> World:
    return World(
        ledger,
        fin=ledger.register("fin", "finance_officer", "广南县财政局"),
        fin2=ledger.register("fin2", "finance_officer", "广南县财政局"),
        village=ledger.register("village", "village_approver", "坡荷村民委员会"),
        village2=ledger.register("village2", "village_approver", "坡荷村民委员会"),
        township=ledger.register("township", "township_approver", "城厢镇人民政府"),
        county=ledger.register("county", "county_approver", "广南县扶贫开发领导小组办公室"),
        coop=ledger.register("coop", "producer", COOP),
        builder=ledger.register("builder", "contractor", CONTRACTOR),
    )


@pytest.fixture
def world(ledger: Ledger) -> World:
    return make_world(ledger)


def allocation_row(world: World, allocation_id: str) -> dict[str, Any]:
    with world.ledger.engine.connect() as conn:
        row = (
            conn.execute(
                text("SELECT * FROM fund_allocations WHERE id = :id"), {"id": allocation_id}
            )
            .mappings()
            .one()
        )
    return dict(row)


def source_row(world: World, source_id: str) -> dict[str, Any]:
    with world.ledger.engine.connect() as conn:
        row = (
            conn.execute(text("SELECT * FROM fund_sources WHERE id = :id"), {"id": source_id})
            .mappings()
            .one()
        )
    return dict(row)


def disbursement_row(world: World, disbursement_id: str) -> dict[str, Any]:
    with world.ledger.engine.connect() as conn:
        row = (
            conn.execute(
                text("SELECT * FROM fund_disbursements WHERE id = :id"), {"id": disbursement_id}
            )
            .mappings()
            .one()
        )
    return dict(row)


# --- the happy path ---------------------------------------------------------------------------


def test_source_allocation_payment_receipt(world: World) -> None:
    world.household("HH-0001")
    source = world.source(amount=1_000_000, reference="财农〔2019〕7号", evidence=[DOC])
    alloc = world.allocate("A-1", 600_000, name={"zh": "2019年产业奖补"})
    paid = world.pay("D-1", "A-1", 200_000, date="2019-06-01", evidence=[DOC])
    got = world.append(
        "fund.received",
        {"disbursement": "D-1", "date": "2019-06-03", "evidence": [DOC]},
        world.village,
    )
    assert source_row(world, "S-2019-C") == {
        "id": "S-2019-C",
        "type": "central",
        "name": "2019年中央财政专项扶贫资金",
        "year": 2019,
        "payer": "财政部",
        "amount_fen": 1_000_000,
        "allocated_fen": 600_000,
        "allocations": 1,
        "source_seq": source.seq,
        "seq": alloc.seq,
    }
    allocation = allocation_row(world, "A-1")
    assert (allocation["disbursed_fen"], allocation["disbursements"]) == (200_000, 1)
    assert allocation["approvals"] == "village_approver township_approver"
    assert allocation["once_per_period"] == 1 and allocation["seq"] == paid.seq
    row = disbursement_row(world, "D-1")
    assert (row["county"], row["township"], row["village"]) == ("广南县", "城厢镇", "坡荷村")
    assert (row["status"], row["disbursed_seq"], row["received_seq"]) == (
        "active",
        paid.seq,
        got.seq,
    )
    check_ledger(world.ledger.engine)


# --- money is integer fen ---------------------------------------------------------------------


def test_amounts_must_be_integer_fen(world: World) -> None:
    world.source()
    # A float never even becomes a statement: the canonical JSON layer refuses it.
    with pytest.raises(InvalidInput):
        world.ledger.statement(
            "fund.allocated",
            {
                "id": "A-1",
                "source": "S-2019-C",
                "amount_fen": 100.0,
                "purpose": "other",
                "programme": "P",
            },
            world.fin,
        )
    for bad in ("100", True, 0, -5):
        body = {
            "id": "A-1",
            "source": "S-2019-C",
            "amount_fen": bad,
            "purpose": "other",
            "programme": "P",
        }
        world.refused(InvalidEntry, "fund.allocated", body, world.fin, match="amount_fen")
    check_ledger(world.ledger.engine)


# --- sources and allocations -----------------------------------------------------------------


def test_source_rules(world: World) -> None:
    world.source()
    body = {
        "id": "S-2019-C",
        "type": "central",
        "name": {"zh": "重复"},
        "amount_fen": 1,
        "year": 2019,
        "payer": "财政部",
    }
    world.refused(Conflict, "fund.source", body, world.fin, match="already used")
    world.refused(
        RuleViolation, "fund.source", {**body, "id": "S-2"}, world.county, match="finance_officer"
    )
    world.refused(
        InvalidEntry,
        "fund.source",
        {**body, "id": "S-2", "type": "lottery"},
        world.fin,
        match="type must be one of",
    )
    world.refused(
        InvalidEntry, "fund.source", {**body, "id": "S-2", "year": 1800}, world.fin, match="year"
    )
    world.refused(
        InvalidEntry,
        "fund.source",
        {**body, "id": "S-2", "extra": 1},
        world.fin,
        match="unexpected",
    )
    check_ledger(world.ledger.engine)


def test_allocation_may_not_exceed_its_source(world: World) -> None:
    world.source(amount=1_000_000)
    world.allocate("A-1", 700_000)
    message = world.refused(
        Overspend,
        "fund.allocated",
        {
            "id": "A-2",
            "source": "S-2019-C",
            "amount_fen": 300_001,
            "purpose": "industry_subsidy",
            "programme": "P-IND-2019",
        },
        world.fin,
        match="exceeds what remains of source S-2019-C: 300000 fen",
    )
    assert "A-2" in message
    world.allocate("A-2", 300_000)  # exactly the rest
    assert source_row(world, "S-2019-C")["allocated_fen"] == 1_000_000
    check_ledger(world.ledger.engine)


def test_allocation_rules(world: World) -> None:
    world.source()
    world.allocate("A-1", 1_000)
    base = {
        "id": "A-2",
        "source": "S-2019-C",
        "amount_fen": 1_000,
        "purpose": "industry_subsidy",
        "programme": "P-IND-2019",
    }
    world.refused(
        Conflict, "fund.allocated", {**base, "id": "A-1"}, world.fin, match="already used"
    )
    world.refused(
        RuleViolation,
        "fund.allocated",
        {**base, "source": "S-NONE"},
        world.fin,
        match="source 'S-NONE' is not registered",
    )
    world.refused(
        RuleViolation,
        "fund.allocated",
        {**base, "purpose": "dividend"},
        world.fin,
        match="programme P-IND-2019 pays industry_subsidy",
    )
    project = {k: v for k, v in base.items() if k != "programme"} | {"project": "PRJ-NONE"}
    world.refused(
        RuleViolation,
        "fund.allocated",
        project,
        world.fin,
        match="project 'PRJ-NONE' is not registered",
    )
    world.refused(
        InvalidEntry,
        "fund.allocated",
        {**base, "project": "PRJ-1"},
        world.fin,
        match="exactly one of programme, project",
    )
    world.refused(
        InvalidEntry,
        "fund.allocated",
        {**base, "policy": {"approvals": ["admin"]}},
        world.fin,
        match="'admin' is not one of",
    )
    world.refused(
        InvalidEntry,
        "fund.allocated",
        {**base, "policy": {"once_per_period": 1}},
        world.fin,
        match="true or false",
    )
    world.refused(RuleViolation, "fund.allocated", base, world.village, match="finance_officer")
    check_ledger(world.ledger.engine)


# --- disbursements ------------------------------------------------------------------------------


def test_disbursement_may_not_exceed_its_allocation(world: World) -> None:
    for code in ("HH-0001", "HH-0002"):
        world.household(code)
    world.source()
    world.allocate("A-1", 500_000)
    world.pay("D-1", "A-1", 300_000)
    message = world.refused(
        Overspend,
        "fund.disbursed",
        world.payment("D-2", "A-1", 200_001, household="HH-0002"),
        *world.approvers,
        match="exceeds what remains of allocation A-1: 200000 fen",
    )
    assert "D-2" in message and "200001" in message
    world.pay("D-2", "A-1", 200_000, household="HH-0002")
    assert allocation_row(world, "A-1")["disbursed_fen"] == 500_000
    check_ledger(world.ledger.engine)


def test_disbursement_needs_distinct_approvers(world: World) -> None:
    world.household("HH-0001")
    world.source()
    world.allocate("A-1", 500_000)
    world.allocate(
        "A-2",
        500_000,
        programme="P-ED",
        purpose="education_grant",
        policy={"approvals": ["village_approver", "village_approver"]},
    )
    body = world.payment("D-1", "A-1", 1_000)
    world.refused(
        RuleViolation, "fund.disbursed", body, world.fin, world.village, match="township_approver"
    )
    world.refused(
        RuleViolation,
        "fund.disbursed",
        body,
        world.village,
        world.township,
        match="finance_officer",
    )
    two = world.payment("D-2", "A-2", 1_000, purpose="education_grant")
    world.refused(
        RuleViolation,
        "fund.disbursed",
        two,
        world.fin,
        world.village,
        match="distinct registered keys with roles village_approver",
    )
    world.pay("D-1", "A-1", 1_000)
    world.append("fund.disbursed", two, world.fin, world.village, world.village2)
    check_ledger(world.ledger.engine)


def test_policy_without_approvals_needs_only_the_finance_officer(world: World) -> None:
    world.source()
    world.allocate(
        "A-DIV",
        10_000,
        programme="P-DIV",
        purpose="dividend",
        policy={"approvals": [], "once_per_period": False},
    )
    world.append(
        "fund.disbursed",
        world.payment(
            "D-1",
            "A-DIV",
            5_000,
            purpose="dividend",
            recipient={"cooperative": COOP, "credit_code": COOP_CODE},
        ),
        world.fin,
    )
    check_ledger(world.ledger.engine)


def test_disbursement_rules(world: World) -> None:
    world.household("HH-0001")
    world.source()
    world.allocate("A-1", 500_000)
    world.pay("D-1", "A-1", 1_000)
    ok = world.payment("D-2", "A-1", 1_000, period="2020")
    cases: list[tuple[type[Exception], dict[str, Any], str]] = [
        (Conflict, {**ok, "id": "D-1"}, "already used"),
        (RuleViolation, {**ok, "allocation": "A-NONE"}, "allocation 'A-NONE' is not registered"),
        (RuleViolation, {**ok, "purpose": "dividend"}, "allocation A-1 pays industry_subsidy"),
        (RuleViolation, {**ok, "recipient": {"household": "HH-9999"}}, "HH-9999 is not registered"),
        (InvalidEntry, {**ok, "recipient": {"household": "hh-1"}}, "household code"),
        (
            InvalidEntry,
            {**ok, "recipient": {"household": "HH-0001", "cooperative": COOP}},
            "exactly one of household, cooperative, contractor",
        ),
        (
            InvalidEntry,
            {**ok, "recipient": {"cooperative": COOP, "credit_code": "93532627MA6K1B2C3A"}},
            "wrong check character",
        ),
        (
            InvalidEntry,
            {**ok, "recipient": {"cooperative": COOP, "credit_code": "123"}},
            "18-character",
        ),
        (InvalidEntry, {**ok, "period": "2019-13"}, "period"),
        (
            InvalidEntry,
            {**ok, "loan": {"term_months": 12, "interest_subsidy_bp": 0}},
            "loan terms belong to micro_loan",
        ),
        (
            InvalidEntry,
            {**ok, "gate": {"project": "PRJ-1", "stage": "finished"}},
            "stage must be one of",
        ),
        (InvalidEntry, {**ok, "date": "2019-02-30"}, "date"),
        (RuleViolation, {**ok, "date": "2999-01-01"}, "in the future"),
    ]
    for error, body, match in cases:
        world.refused(error, "fund.disbursed", body, *world.approvers, match=match)
    check_ledger(world.ledger.engine)


def test_credit_code_check_character() -> None:
    assert funds.credit_code_valid("91350100M000100Y43")
    assert funds.credit_code_valid(COOP_CODE)
    assert not funds.credit_code_valid("91350100M000100Y44")
    assert not funds.credit_code_valid("91350100M000100YI3")  # I is not in the alphabet


def test_max_per_recipient(world: World) -> None:
    world.household("HH-0001")
    world.source()
    world.allocate(
        "A-WAGE",
        1_000_000,
        programme="P-WAGE",
        purpose="public_welfare_wage",
        policy={"once_per_period": False, "max_per_recipient_fen": 80_000},
    )
    wage = {"purpose": "public_welfare_wage", "period": "2019-07"}
    world.pay("D-1", "A-WAGE", 50_000, **wage)
    world.refused(
        Overspend,
        "fund.disbursed",
        world.payment("D-2", "A-WAGE", 30_001, **wage),
        *world.approvers,
        match="at most 80000 fen per recipient and period, 50000",
    )
    world.pay("D-2", "A-WAGE", 30_000, **wage)
    world.pay("D-3", "A-WAGE", 80_000, **{**wage, "period": "2019-08"})
    world.refused(
        Overspend,
        "fund.corrected",
        {"disbursement": "D-3", "amount_fen": 80_001, "reason": "加班补贴"},
        *world.approvers,
        match="per recipient",
    )
    check_ledger(world.ledger.engine)


# --- the duplicate rule ---------------------------------------------------------------------------


def test_once_per_period_and_signed_exceptions(world: World) -> None:
    world.household("HH-0001")
    world.source()
    world.allocate("A-1", 500_000)
    world.allocate("A-2", 500_000)  # another allocation of the same programme
    first = world.pay("D-1", "A-1", 1_000)
    message = world.refused(
        DuplicatePayment,
        "fund.disbursed",
        world.payment("D-2", "A-2", 1_000),
        *world.approvers,
        match="HH-0001 already has 1 payment",
    )
    assert f"seq {first.seq}" in message and "P-IND-2019" in message
    world.pay("D-2", "A-2", 1_000, period="2020")  # another period is fine
    exception = {
        "programme": "P-IND-2019",
        "household": "HH-0001",
        "period": "2019",
        "reason": "因灾补发第二批产业奖补",
    }
    world.refused(
        RuleViolation, "fund.exception", exception, world.township, match="county_approver"
    )
    world.refused(
        RuleViolation,
        "fund.exception",
        {**exception, "household": "HH-0404"},
        world.county,
        match="HH-0404 is not registered",
    )
    world.refused(
        RuleViolation,
        "fund.exception",
        {**exception, "programme": "P-NONE"},
        world.county,
        match="no allocation",
    )
    world.refused(
        RuleViolation,
        "fund.exception",
        {**exception, "period": "2019-Q1"},
        world.county,
        match="pays households by year",
    )
    world.append("fund.exception", exception, world.county)
    world.pay("D-3", "A-2", 1_000)
    world.refused(
        DuplicatePayment,
        "fund.disbursed",
        world.payment("D-4", "A-1", 1_000),
        *world.approvers,
        match="2 allowed",
    )
    # A reversed payment no longer counts.
    world.append("fund.reversed", {"disbursement": "D-1", "reason": "重复发放，已追回"}, world.fin)
    world.pay("D-4", "A-1", 1_000)
    check_ledger(world.ledger.engine)


def test_once_per_period_off_and_period_form(world: World) -> None:
    world.household("HH-0001")
    world.source()
    world.allocate(
        "A-W",
        500_000,
        programme="P-WAGE",
        purpose="public_welfare_wage",
        policy={"once_per_period": False},
    )
    wage = {"purpose": "public_welfare_wage"}
    world.pay("D-1", "A-W", 1_000, period="2019-07", **wage)
    world.pay("D-2", "A-W", 1_000, period="2019-07", **wage)
    world.refused(
        RuleViolation,
        "fund.disbursed",
        world.payment("D-3", "A-W", 1_000, period="2019", **wage),
        *world.approvers,
        match="pays households by month",
    )
    check_ledger(world.ledger.engine)


# --- milestone gates ----------------------------------------------------------------------------


def test_milestone_gated_payment(world: World) -> None:
    world.source()
    world.project("PRJ-1")
    world.allocate(
        "A-P",
        2_000_000,
        programme=None,
        project="PRJ-1",
        purpose="project_payment",
        policy={"approvals": ["township_approver", "county_approver"]},
    )
    signers = (world.fin, world.township, world.county)
    body = world.payment(
        "D-1",
        "A-P",
        1_000_000,
        purpose="project_payment",
        recipient={"contractor": CONTRACTOR, "credit_code": CONTRACTOR_CODE},
        gate={"project": "PRJ-1", "stage": "accepted"},
    )
    world.refused(
        RuleViolation,
        "fund.disbursed",
        body,
        *signers,
        match="gated on project PRJ-1 reaching stage accepted",
    )
    world.refused(
        RuleViolation,
        "fund.disbursed",
        {**body, "gate": {"project": "PRJ-NONE", "stage": "accepted"}},
        *signers,
        match="gate project 'PRJ-NONE' is not registered",
    )
    world.milestones("PRJ-1", "approved", "tendered", "contracted", "started", "completed")
    world.refused(RuleViolation, "fund.disbursed", body, *signers, match="stage accepted")
    world.append(
        "project.milestone",
        {"project": "PRJ-1", "stage": "accepted", "date": "2019-03-09", "evidence": [DOC]},
        world.county,
        world.township,
    )
    entry = world.append("fund.disbursed", body, *signers)
    row = disbursement_row(world, "D-1")
    assert (row["gate_project"], row["gate_stage"], row["disbursed_seq"]) == (
        "PRJ-1",
        "accepted",
        entry.seq,
    )
    assert (row["county"], row["village"], row["org"]) == ("", "", CONTRACTOR)
    check_ledger(world.ledger.engine)


# --- receipts -----------------------------------------------------------------------------------


def test_receipts(world: World) -> None:
    world.household("HH-0001")
    world.source()
    world.allocate("A-1", 500_000)
    world.allocate(
        "A-C",
        500_000,
        programme="P-COOP",
        purpose="industry_subsidy",
        policy={"approvals": ["township_approver"]},
    )
    world.pay("D-1", "A-1", 1_000)
    world.append(
        "fund.disbursed",
        world.payment("D-C", "A-C", 2_000, recipient={"cooperative": COOP}),
        world.fin,
        world.township,
    )
    receipt = {"disbursement": "D-1", "date": "2019-06-03", "evidence": [DOC]}
    world.refused(RuleViolation, "fund.received", receipt, world.fin, match="village_approver")
    world.refused(
        InvalidEntry,
        "fund.received",
        {**receipt, "evidence": []},
        world.village,
        match="at least one document",
    )
    world.refused(
        RuleViolation,
        "fund.received",
        {**receipt, "disbursement": "D-X"},
        world.village,
        match="'D-X' is not registered",
    )
    world.append("fund.received", receipt, world.village)
    world.refused(Conflict, "fund.received", receipt, world.village2, match="already acknowledged")
    coop_receipt = {**receipt, "disbursement": "D-C"}
    world.refused(
        RuleViolation,
        "fund.received",
        coop_receipt,
        world.village,
        match=f"signed by a key of the recipient '{COOP}'",
    )
    world.append("fund.received", coop_receipt, world.coop)
    check_ledger(world.ledger.engine)


# --- micro-loans ----------------------------------------------------------------------------------


def test_micro_loans_and_repayments(world: World) -> None:
    world.household("HH-0001")
    world.source("S-BANK", 100_000_000, type="bank_credit")
    world.allocate("A-LOAN", 10_000_000, source="S-BANK", programme="P-LOAN", purpose="micro_loan")
    kw = {"purpose": "micro_loan", "date": "2019-04-15"}
    world.refused(
        InvalidEntry,
        "fund.disbursed",
        world.payment("D-L", "A-LOAN", 5_000_000, **kw),
        *world.approvers,
        match="needs loan terms",
    )
    world.refused(
        InvalidEntry,
        "fund.disbursed",
        world.payment(
            "D-L", "A-LOAN", 5_000_000, loan={"term_months": 37, "interest_subsidy_bp": 435}, **kw
        ),
        *world.approvers,
        match="term_months must be an integer from 1 to 36",
    )
    world.refused(
        InvalidEntry,
        "fund.disbursed",
        world.payment(
            "D-L",
            "A-LOAN",
            5_000_000,
            loan={"term_months": 36, "interest_subsidy_bp": 435},
            **kw,
            recipient={"cooperative": COOP},
        ),
        *world.approvers,
        match="paid to a household",
    )
    world.pay(
        "D-L", "A-LOAN", 5_000_000, loan={"term_months": 36, "interest_subsidy_bp": 435}, **kw
    )
    repay = {"disbursement": "D-L", "amount_fen": 2_000_000, "date": "2020-04-15"}
    world.refused(RuleViolation, "fund.repaid", repay, world.village, match="finance_officer")
    world.refused(
        RuleViolation,
        "fund.repaid",
        {**repay, "amount_fen": 5_000_001},
        world.fin,
        match="exceeds the outstanding principal of loan D-L: 5000000",
    )
    world.append("fund.repaid", repay, world.fin)
    with world.ledger.engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM fund_loans")).mappings().one()
    assert (row["outstanding_fen"], row["start"], row["due"]) == (
        3_000_000,
        "2019-04-15",
        "2022-04-15",
    )
    world.refused(
        RuleViolation,
        "fund.reversed",
        {"disbursement": "D-L", "reason": "错发"},
        world.fin,
        match="has repayments",
    )
    world.refused(
        RuleViolation,
        "fund.corrected",
        {"disbursement": "D-L", "amount_fen": 1_000_000, "reason": "金额有误"},
        *world.approvers,
        match="less than the 2000000 fen already repaid",
    )
    world.append(
        "fund.corrected",
        {"disbursement": "D-L", "amount_fen": 4_000_000, "reason": "按合同金额更正"},
        *world.approvers,
    )
    with world.ledger.engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM fund_loans")).mappings().one()
    assert (row["principal_fen"], row["outstanding_fen"]) == (4_000_000, 2_000_000)
    world.refused(
        RuleViolation,
        "fund.repaid",
        {**repay, "disbursement": "D-NONE"},
        world.fin,
        match="not registered",
    )
    check_ledger(world.ledger.engine)


# --- corrections and reversals --------------------------------------------------------------------


def test_corrections_and_reversals_move_the_balances(world: World) -> None:
    world.household("HH-0001")
    world.household("HH-0002")
    world.source(amount=1_000_000)
    world.allocate("A-1", 10_000)
    world.pay("D-1", "A-1", 6_000)
    world.pay("D-2", "A-1", 3_000, household="HH-0002")
    fix = {"disbursement": "D-1", "amount_fen": 7_001, "reason": "按标准更正"}
    world.refused(
        Overspend,
        "fund.corrected",
        fix,
        *world.approvers,
        match="increase from 6000 to 7001: 1001 fen exceeds what remains of allocation A-1: 1000",
    )
    world.refused(
        RuleViolation,
        "fund.corrected",
        {**fix, "amount_fen": 6_000},
        *world.approvers,
        match="already 6000",
    )
    world.refused(
        RuleViolation,
        "fund.corrected",
        {**fix, "amount_fen": 7_000},
        world.fin,
        match="village_approver",
    )
    corrected = world.append("fund.corrected", {**fix, "amount_fen": 7_000}, *world.approvers)
    assert allocation_row(world, "A-1")["disbursed_fen"] == 10_000
    row = disbursement_row(world, "D-1")
    assert (row["amount_fen"], row["original_fen"], row["corrected_seq"]) == (
        7_000,
        6_000,
        corrected.seq,
    )
    world.append("fund.corrected", {**fix, "amount_fen": 5_000}, *world.approvers)
    assert allocation_row(world, "A-1")["disbursed_fen"] == 8_000

    reverse = {"disbursement": "D-2", "reason": "户主已享受同类政策，资金追回"}
    world.refused(RuleViolation, "fund.reversed", reverse, world.county, match="finance_officer")
    world.refused(
        RuleViolation,
        "fund.reversed",
        {"allocation": "A-1", "reason": "撤销"},
        world.fin,
        match="still has 2 active payments",
    )
    reversed_ = world.append("fund.reversed", reverse, world.fin)
    assert allocation_row(world, "A-1")["disbursed_fen"] == 5_000
    assert disbursement_row(world, "D-2")["reversed_seq"] == reversed_.seq
    world.refused(RuleViolation, "fund.reversed", reverse, world.fin, match="was reversed at seq")
    world.refused(
        RuleViolation,
        "fund.corrected",
        {**fix, "disbursement": "D-2"},
        *world.approvers,
        match="was reversed at seq",
    )
    world.refused(
        RuleViolation,
        "fund.received",
        {"disbursement": "D-2", "date": "2019-06-01", "evidence": [DOC]},
        world.village,
        match="was reversed",
    )
    world.refused(
        InvalidEntry,
        "fund.reversed",
        {"reason": "?"},
        world.fin,
        match="exactly one of disbursement, allocation",
    )

    world.append("fund.reversed", {"disbursement": "D-1", "reason": "项目取消"}, world.fin)
    world.append("fund.reversed", {"allocation": "A-1", "reason": "项目取消，资金收回"}, world.fin)
    assert source_row(world, "S-2019-C")["allocated_fen"] == 0
    world.refused(
        RuleViolation,
        "fund.disbursed",
        world.payment("D-3", "A-1", 1),
        *world.approvers,
        match="allocation A-1 was reversed",
    )
    world.allocate("A-2", 1_000_000)  # the whole source is free again
    check_ledger(world.ledger.engine)


# --- schemas agree with the checks ------------------------------------------------------------


VALID: dict[str, dict[str, Any]] = {
    "fund.source": {
        "id": "S-1",
        "type": "donation",
        "name": {"zh": "东西部协作捐赠"},
        "amount_fen": 5_000_000,
        "year": 2019,
        "payer": "广东省佛山市",
    },
    "fund.allocated": {
        "id": "A-1",
        "source": "S-1",
        "amount_fen": 1_000,
        "purpose": "other",
        "programme": "P-1",
        "policy": {"approvals": [], "once_per_period": True, "max_per_recipient_fen": 500},
    },
    "fund.disbursed": {
        "id": "D-1",
        "allocation": "A-1",
        "recipient": {"household": "HH-0001"},
        "amount_fen": 100,
        "purpose": "micro_loan",
        "period": "2019-H1",
        "loan": {"term_months": 36, "interest_subsidy_bp": 435},
    },
    "fund.exception": {
        "programme": "P-1",
        "household": "HH-0001",
        "period": "2019-Q3",
        "reason": "补发",
    },
    "fund.received": {"disbursement": "D-1", "date": "2019-01-01", "evidence": [DOC]},
    "fund.repaid": {"disbursement": "D-1", "amount_fen": 1, "date": "2019-01-01"},
    "fund.reversed": {"allocation": "A-1", "reason": "撤销"},
    "fund.corrected": {"disbursement": "D-1", "amount_fen": 1, "reason": "更正"},
}

INVALID: list[tuple[str, dict[str, Any]]] = [
    ("fund.source", {"type": "lottery"}),
    ("fund.source", {"name": {"en": "no zh"}}),
    ("fund.source", {"payer": ""}),
    ("fund.source", {"evidence": [{"sha256": "x"}]}),
    ("fund.allocated", {"purpose": "bribe"}),
    ("fund.allocated", {"project": "PRJ-1"}),  # with programme: both
    ("fund.allocated", {"policy": {"approvals": ["producer"]}}),
    ("fund.allocated", {"policy": {"approvals": ["village_approver"] * 6}}),
    ("fund.allocated", {"policy": {"max_per_recipient_fen": 0}}),
    ("fund.allocated", {"policy": {"color": "red"}}),
    ("fund.disbursed", {"recipient": {}}),
    ("fund.disbursed", {"recipient": {"contractor": CONTRACTOR, "credit_code": "lower"}}),
    ("fund.disbursed", {"purpose": "dividend"}),  # a loan on a dividend
    ("fund.disbursed", {"period": "2019-Q5"}),
    ("fund.disbursed", {"loan": {"term_months": 0, "interest_subsidy_bp": 0}}),
    ("fund.disbursed", {"loan": {"term_months": 12, "interest_subsidy_bp": 10_001}}),
    ("fund.disbursed", {"gate": {"project": "PRJ-1"}}),
    ("fund.exception", {"reason": ""}),
    ("fund.exception", {"project": "PRJ-1"}),
    ("fund.received", {"evidence": []}),
    ("fund.received", {"date": "2019/01/01"}),
    ("fund.repaid", {"amount_fen": "1"}),
    ("fund.reversed", {"disbursement": "D-1"}),
    ("fund.corrected", {"amount_fen": 0}),
]


def _run_check(kind: str, body: Mapping[str, Any]) -> None:
    """The kind's check against an empty state and no signers: the body is validated first,
    so a body error is InvalidEntry and a valid body ends in a RuleViolation."""
    KINDS[kind].check(_Fake(body), RuleState(origin="x"))  # type: ignore[arg-type]


class _Fake:
    """Just enough of an Entry for body validation."""

    def __init__(self, body: Mapping[str, Any]) -> None:
        self.body = body
        self.kind = "test"
        self.seq = 5
        self.time = "2019-06-01T00:00:00.000000Z"

        class _Statement:
            created = "2019-06-01T00:00:00.000000Z"

        class _Signed:
            @staticmethod
            def key_ids() -> tuple[str, ...]:
                return ()

        self.statement = _Statement()
        self.signed = _Signed()


@pytest.mark.parametrize("kind", sorted(VALID))
def test_valid_examples_pass_schema_and_body_checks(kind: str) -> None:
    jsonschema.Draft202012Validator(KINDS[kind].schema).validate(VALID[kind])
    with pytest.raises(RuleViolation):  # the body passed; the signer check refused it
        _run_check(kind, VALID[kind])


@pytest.mark.parametrize(("kind", "change"), INVALID)
def test_schema_and_check_refuse_the_same_bodies(kind: str, change: dict[str, Any]) -> None:
    body = copy.deepcopy(VALID[kind]) | change
    validator = jsonschema.Draft202012Validator(
        KINDS[kind].schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    assert list(validator.iter_errors(body)), f"schema accepts {body}"
    with pytest.raises(InvalidEntry):
        _run_check(kind, body)


def test_every_fund_kind_is_registered_with_schema_and_signers() -> None:
    for kind in VALID:
        spec = KINDS[kind]
        assert spec.schema is not None and spec.schema["title"] == kind
        assert spec.signers
        jsonschema.Draft202012Validator.check_schema(spec.schema)


# --- tampering -------------------------------------------------------------------------------------


def test_tampered_running_sum_is_named(sqlite_ledger: Ledger) -> None:
    world = make_world(sqlite_ledger)
    world.household("HH-0001")
    world.source()
    world.allocate("A-1", 500_000)
    paid = world.pay("D-1", "A-1", 400_000)
    check_ledger(sqlite_ledger.engine)
    # Raise the disbursed sum as if the payment had been made twice.
    sqlite_ledger.execute("UPDATE fund_allocations SET disbursed_fen = 500000 WHERE id = 'A-1'")
    with pytest.raises(VerificationError, match=rf"^seq {paid.seq}: table fund_allocations"):
        check_ledger(sqlite_ledger.engine)


def test_tampered_disbursement_recipient_is_named(sqlite_ledger: Ledger) -> None:
    world = make_world(sqlite_ledger)
    world.household("HH-0001")
    world.household("HH-0002")
    world.source()
    world.allocate("A-1", 500_000)
    paid = world.pay("D-1", "A-1", 400_000)
    world.pay("D-2", "A-1", 1_000, household="HH-0002")
    sqlite_ledger.execute("UPDATE fund_disbursements SET household = 'HH-0002' WHERE id = 'D-1'")
    with pytest.raises(
        VerificationError, match=rf"^seq {paid.seq}: table fund_disbursements .*household"
    ):
        check_ledger(sqlite_ledger.engine)


# --- check and apply -------------------------------------------------------------------------------


def test_apply_without_the_checks_memo_writes_the_same_rows(sqlite_ledger: Ledger) -> None:
    """fund.disbursed's check hands the rows it read to its apply (Projection.remember);
    an apply that does not get them reads them again and writes exactly the same."""
    world = make_world(sqlite_ledger)
    world.household("HH-0001")
    world.household("HH-0002", village="那洒村")
    world.source()
    world.allocate("A-1", 500_000)
    world.allocate(
        "A-2", 500_000, programme="P-COOP-2019", policy={"max_per_recipient_fen": 300_000}
    )
    world.pay("D-1", "A-1", 100_000)
    world.pay("D-2", "A-1", 100_000, household="HH-0002")
    world.pay("D-3", "A-2", 200_000, recipient={"cooperative": COOP, "credit_code": COOP_CODE})
    with sqlite_ledger.engine.connect() as conn:
        leaves = conn.execute(text("SELECT leaf FROM entries ORDER BY seq")).scalars().all()
    entries = [decode_entry(bytes(leaf)) for leaf in leaves]

    def replay(*, forget: bool) -> dict[Any, Any]:
        state = RuleState(origin=entries[0].statement.origin)
        for entry in entries:
            check_entry(entry, state)
            if forget:
                memo = state.rows.recall(entry, object)  # taken here, so apply has none
                assert (memo is not None) == (entry.kind == "fund.disbursed"), entry.kind
            apply_entry(entry, state)
        return state.rows.changes

    assert replay(forget=True) == replay(forget=False)


# --- the documentation ------------------------------------------------------------------------


def _doc_sections() -> dict[str, str]:
    """kind → the text of its section in docs/DOMAIN.md."""
    return domain_doc_text("fund.")


def test_doc_examples_pass_the_schema_and_the_body_checks() -> None:
    for kind, section in _doc_sections().items():
        validator = jsonschema.Draft202012Validator(
            KINDS[kind].schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )
        examples = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", section, re.DOTALL)][1:]
        assert examples, kind
        for example in examples:
            validator.validate(example)
            with pytest.raises(RuleViolation):  # past the body checks, refused for want of state
                _run_check(kind, example)
