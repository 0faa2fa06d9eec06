"""Fund trails (扶贫资金): sources, allocations, disbursements, receipts, repayments.

Money flows source → allocation → disbursement, every amount in integer fen:

* ``fund.source`` — money available to the county: a central, provincial,
  municipal or county special fund (专项资金), bank micro-credit, a donation, a
  contribution (e.g. an elder-care fund paid by children).
* ``fund.allocated`` — part of a source assigned to a *programme* (a shared id
  such as ``2019-industry-subsidy``, with one fixed purpose) or to a registered
  *project*, with a *policy*: the approval roles a payment needs (双认定 by
  default), whether a household may be paid once per period, a per-recipient cap.
* ``fund.disbursed`` — a payment from an allocation to a household, a
  cooperative or a contractor, for a purpose and period, optionally gated on a
  project milestone.
* ``fund.exception`` — a county approver allows one more payment of a
  programme (or project) to a household in a period.
* ``fund.received`` — the recipient's acknowledgement of a payment.
* ``fund.repaid`` — a repayment of a micro-loan's principal.
* ``fund.reversed`` / ``fund.corrected`` — corrections never edit: they are new
  entries naming the original, and the running sums follow them.

Invariants the rules keep (and ``suyuan verify`` re-checks by replay):

* a source's active allocations never exceed its amount; an allocation's active
  disbursements never exceed its amount (:class:`~ledger.errors.Overspend`);
* with ``once_per_period``, a household receives at most ``1 + exceptions``
  payments of one programme (or project) in one period
  (:class:`~ledger.errors.DuplicatePayment`);
* every running sum in the projection tables equals the sum of the active rows
  it summarises.

The running sums live in projection tables so that the append-time checks and
the fund-trail queries (``ledger.domain.fund_queries``) read a handful of
indexed rows, never the whole history.  ``check`` functions read, ``apply``
functions write; both see the same rows, so a check that passed is exactly what
apply assumes.  Appends are serialised by the log lock, so two payments racing
for the last of an allocation are checked one after the other: exactly one wins.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from ledger.domain import common
from ledger.domain.households import get_household
from ledger.domain.projects import STAGES, get_project, stage_reached
from ledger.entry import Entry
from ledger.errors import Conflict, DuplicatePayment, InvalidEntry, Overspend, RuleViolation
from ledger.projection import Projection, Row, register_projection
from ledger.rules import ROLES, KindSpec, RuleState, register_kind, signer_roles
from ledger.schema import metadata

# --- vocabularies -----------------------------------------------------------------------

SOURCE_TYPES = (
    "central",
    "provincial",
    "municipal",
    "county",
    "bank_credit",
    "donation",
    "contribution",
    "other",
)
PURPOSES = (
    "industry_subsidy",  # 产业奖补
    "education_grant",  # 雨露计划
    "micro_loan",  # 扶贫小额信贷
    "interest_subsidy",  # 贴息
    "insurance_topup",  # 防贫保险
    "dividend",  # 资产收益分红
    "public_welfare_wage",  # 公益岗位工资
    "project_payment",  # 项目资金
    "elder_care",  # 赡养金
    "other",
)
#: Roles an allocation's policy may require on its payments (besides the finance officer).
APPROVER_ROLES = (
    "village_approver",
    "township_approver",
    "county_approver",
    "finance_officer",
    "auditor",
)
DEFAULT_APPROVALS = ("village_approver", "township_approver")  # 双认定
MAX_APPROVALS = 5
MAX_LOAN_MONTHS = 36
MAX_REASON = 2_000
RECIPIENT_TYPES = ("household", "cooperative", "contractor")
ACTIVE, REVERSED = "active", "reversed"
PROGRAMME, PROJECT = "programme", "project"

assert set(APPROVER_ROLES) <= ROLES

# 统一社会信用代码 (GB 32100-2015): 18 characters from this alphabet, the last a check character.
_CREDIT_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CREDIT_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_CREDIT_RE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$")


# --- projection tables --------------------------------------------------------------------

fund_sources = Table(
    "fund_sources",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("type", String(16), nullable=False),
    Column("name", Text, nullable=False),  # the Chinese name
    Column("year", Integer, nullable=False),
    Column("payer", Text, nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("allocated_fen", BigInteger, nullable=False),  # running: active allocations
    Column("allocations", Integer, nullable=False),  # active allocations
    Column("source_seq", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
)

# One row per programme id or project id that has allocations: a programme's fixed
# purpose, and the period form (year, half, quarter, month) its household payments use.
fund_scopes = Table(
    "fund_scopes",
    metadata,
    Column("scope_type", String(16), primary_key=True),
    Column("scope", String(64), primary_key=True),
    Column("purpose", String(32), nullable=True),  # programmes only
    Column("period_form", String(8), nullable=True),  # set by the first household payment
    Column("first_seq", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
)

fund_allocations = Table(
    "fund_allocations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("source", String(64), nullable=False),
    Column("scope_type", String(16), nullable=False),
    Column("scope", String(64), nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("name", Text, nullable=True),
    Column("amount_fen", BigInteger, nullable=False),
    Column("disbursed_fen", BigInteger, nullable=False),  # running: active disbursements
    Column("disbursements", Integer, nullable=False),  # active disbursements
    Column("approvals", Text, nullable=False),  # space-separated roles, in policy order
    Column("once_per_period", Integer, nullable=False),  # 0/1
    Column("max_per_recipient_fen", BigInteger, nullable=True),
    Column("status", String(16), nullable=False),
    Column("allocated_seq", BigInteger, nullable=False),
    Column("reversed_seq", BigInteger, nullable=True),
    Column("seq", BigInteger, nullable=False),
    Index("ix_fund_allocations_source", "source", "allocated_seq"),
    Index("ix_fund_allocations_scope", "scope_type", "scope", "allocated_seq"),
)

fund_disbursements = Table(
    "fund_disbursements",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("allocation", String(64), nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("recipient_type", String(16), nullable=False),
    Column("household", String(32), nullable=True),
    Column("org", Text, nullable=True),  # cooperative or contractor name
    Column("credit_code", String(18), nullable=True),
    # the household's place when paid ('' for organisations): the trail's groups
    Column("county", Text, nullable=False),
    Column("township", Text, nullable=False),
    Column("village", Text, nullable=False),
    Column("period", String(8), nullable=False),
    Column("amount_fen", BigInteger, nullable=False),  # current (after corrections)
    Column("original_fen", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("gate_project", String(64), nullable=True),
    Column("gate_stage", String(16), nullable=True),
    Column("disbursed_seq", BigInteger, nullable=False),
    Column("corrected_seq", BigInteger, nullable=True),  # the latest correction
    Column("reversed_seq", BigInteger, nullable=True),
    Column("received_seq", BigInteger, nullable=True),
    Column("seq", BigInteger, nullable=False),
    Index("ix_fund_disbursements_allocation", "allocation", "disbursed_seq"),
    Index(
        "ix_fund_disbursements_group",
        "allocation",
        "recipient_type",
        "county",
        "township",
        "village",
        "disbursed_seq",
    ),
    Index("ix_fund_disbursements_household", "household", "disbursed_seq"),
    Index("ix_fund_disbursements_gate", "gate_project", "disbursed_seq"),
    Index("ix_fund_disbursements_credit_code", "credit_code"),
)

# Running count and sum of the active disbursements of an allocation per recipient type
# and place: the fund trail's leaves, so a county trail never scans the disbursements.
fund_groups = Table(
    "fund_groups",
    metadata,
    Column("allocation", String(64), primary_key=True),
    Column("recipient_type", String(16), primary_key=True),
    Column("county", String(100), primary_key=True),
    Column("township", String(100), primary_key=True),
    Column("village", String(100), primary_key=True),
    Column("count", Integer, nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
)

# The duplicate rule's key: how many active payments a household has from one programme
# (or project) in one period, and how many it may have (1 + exceptions).
fund_payments = Table(
    "fund_payments",
    metadata,
    Column("scope_type", String(16), primary_key=True),
    Column("scope", String(64), primary_key=True),
    Column("period", String(8), primary_key=True),
    Column("household", String(32), primary_key=True),
    Column("count", Integer, nullable=False),
    Column("allowed", Integer, nullable=False),
    Column("first_seq", BigInteger, nullable=True),  # the first payment
    Column("seq", BigInteger, nullable=False),
    Index("ix_fund_payments_household", "household"),
)

fund_exceptions = Table(
    "fund_exceptions",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("scope_type", String(16), nullable=False),
    Column("scope", String(64), nullable=False),
    Column("period", String(8), nullable=False),
    Column("household", String(32), nullable=False),
    Index("ix_fund_exceptions_household", "household"),
)

# Per-recipient totals, kept only for allocations whose policy caps them.
fund_recipient_totals = Table(
    "fund_recipient_totals",
    metadata,
    Column("allocation", String(64), primary_key=True),
    Column("recipient", String(220), primary_key=True),
    Column("period", String(8), primary_key=True),
    Column("count", Integer, nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
)

fund_loans = Table(
    "fund_loans",
    metadata,
    Column("disbursement", String(64), primary_key=True),
    Column("household", String(32), nullable=False),
    Column("principal_fen", BigInteger, nullable=False),
    Column("repaid_fen", BigInteger, nullable=False),
    Column("outstanding_fen", BigInteger, nullable=False),
    Column("term_months", Integer, nullable=False),
    Column("interest_subsidy_bp", Integer, nullable=False),
    Column("start", String(10), nullable=False),
    Column("due", String(10), nullable=False),
    Column("status", String(16), nullable=False),
    Column("last_repaid_seq", BigInteger, nullable=True),
    Column("seq", BigInteger, nullable=False),
    Index("ix_fund_loans_household", "household"),
)

for _table in (
    fund_sources,
    fund_scopes,
    fund_allocations,
    fund_disbursements,
    fund_groups,
    fund_payments,
    fund_exceptions,
    fund_recipient_totals,
    fund_loans,
):
    register_projection(_table)


# --- JSON Schemas (published in docs/DOMAIN.md) ---------------------------------------


PERIOD_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": "^\\d{4}(-(0[1-9]|1[0-2])|-Q[1-4]|-H[12])?$",
}
REASON_SCHEMA = common.text_schema(MAX_REASON)
CREDIT_CODE_SCHEMA: dict[str, Any] = {"type": "string", "pattern": _CREDIT_RE.pattern}

SOURCE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "fund.source",
    "type": "object",
    "properties": {
        "id": common.IDENT_SCHEMA,
        "type": {"enum": list(SOURCE_TYPES)},
        "name": common.BILINGUAL_SCHEMA,
        "amount_fen": common.FEN_SCHEMA,
        "year": {"type": "integer", "minimum": 1900, "maximum": 2200},
        "payer": common.text_schema(200),
        "reference": common.text_schema(200),
        "evidence": common.EVIDENCE_SCHEMA,
    },
    "required": ["id", "type", "name", "amount_fen", "year", "payer"],
    "additionalProperties": False,
}

ALLOCATED_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "fund.allocated",
    "type": "object",
    "properties": {
        "id": common.IDENT_SCHEMA,
        "source": common.IDENT_SCHEMA,
        "amount_fen": common.FEN_SCHEMA,
        "purpose": {"enum": list(PURPOSES)},
        "programme": common.IDENT_SCHEMA,
        "project": common.IDENT_SCHEMA,
        "name": common.BILINGUAL_SCHEMA,
        "policy": {
            "type": "object",
            "properties": {
                "approvals": {
                    "type": "array",
                    "maxItems": MAX_APPROVALS,
                    "items": {"enum": list(APPROVER_ROLES)},
                },
                "once_per_period": {"type": "boolean"},
                "max_per_recipient_fen": common.FEN_SCHEMA,
            },
            "additionalProperties": False,
        },
        "reference": common.text_schema(200),
        "evidence": common.EVIDENCE_SCHEMA,
    },
    "required": ["id", "source", "amount_fen", "purpose"],
    "oneOf": [{"required": ["programme"]}, {"required": ["project"]}],
    "additionalProperties": False,
}


def _org_schema(field: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {field: common.text_schema(200), "credit_code": CREDIT_CODE_SCHEMA},
        "required": [field],
        "additionalProperties": False,
    }


DISBURSED_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "fund.disbursed",
    "type": "object",
    "properties": {
        "id": common.IDENT_SCHEMA,
        "allocation": common.IDENT_SCHEMA,
        "recipient": {
            "oneOf": [
                {
                    "type": "object",
                    "properties": {"household": common.HOUSEHOLD_SCHEMA},
                    "required": ["household"],
                    "additionalProperties": False,
                },
                _org_schema("cooperative"),
                _org_schema("contractor"),
            ]
        },
        "amount_fen": common.FEN_SCHEMA,
        "purpose": {"enum": list(PURPOSES)},
        "period": PERIOD_SCHEMA,
        "date": common.DATE_SCHEMA,
        "gate": {
            "type": "object",
            "properties": {"project": common.IDENT_SCHEMA, "stage": {"enum": list(STAGES)}},
            "required": ["project", "stage"],
            "additionalProperties": False,
        },
        "loan": {
            "type": "object",
            "properties": {
                "term_months": {"type": "integer", "minimum": 1, "maximum": MAX_LOAN_MONTHS},
                "interest_subsidy_bp": {"type": "integer", "minimum": 0, "maximum": 10_000},
            },
            "required": ["term_months", "interest_subsidy_bp"],
            "additionalProperties": False,
        },
        "reference": common.text_schema(200),
        "evidence": common.EVIDENCE_SCHEMA,
    },
    "required": ["id", "allocation", "recipient", "amount_fen", "purpose", "period"],
    "if": {"properties": {"purpose": {"const": "micro_loan"}}},
    "then": {"required": ["loan"]},
    "else": {"not": {"required": ["loan"]}},
    "additionalProperties": False,
}

EXCEPTION_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "fund.exception",
    "type": "object",
    "properties": {
        "programme": common.IDENT_SCHEMA,
        "project": common.IDENT_SCHEMA,
        "household": common.HOUSEHOLD_SCHEMA,
        "period": PERIOD_SCHEMA,
        "reason": REASON_SCHEMA,
        "evidence": common.EVIDENCE_SCHEMA,
    },
    "required": ["household", "period", "reason"],
    "oneOf": [{"required": ["programme"]}, {"required": ["project"]}],
    "additionalProperties": False,
}

RECEIVED_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "fund.received",
    "type": "object",
    "properties": {
        "disbursement": common.IDENT_SCHEMA,
        "date": common.DATE_SCHEMA,
        "evidence": {**common.EVIDENCE_SCHEMA, "minItems": 1},
    },
    "required": ["disbursement", "date", "evidence"],
    "additionalProperties": False,
}

REPAID_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "fund.repaid",
    "type": "object",
    "properties": {
        "disbursement": common.IDENT_SCHEMA,
        "amount_fen": common.FEN_SCHEMA,
        "date": common.DATE_SCHEMA,
        "evidence": common.EVIDENCE_SCHEMA,
    },
    "required": ["disbursement", "amount_fen", "date"],
    "additionalProperties": False,
}

REVERSED_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "fund.reversed",
    "type": "object",
    "properties": {
        "disbursement": common.IDENT_SCHEMA,
        "allocation": common.IDENT_SCHEMA,
        "reason": REASON_SCHEMA,
        "evidence": common.EVIDENCE_SCHEMA,
    },
    "required": ["reason"],
    "oneOf": [{"required": ["disbursement"]}, {"required": ["allocation"]}],
    "additionalProperties": False,
}

CORRECTED_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "fund.corrected",
    "type": "object",
    "properties": {
        "disbursement": common.IDENT_SCHEMA,
        "amount_fen": common.FEN_SCHEMA,
        "reason": REASON_SCHEMA,
        "evidence": common.EVIDENCE_SCHEMA,
    },
    "required": ["disbursement", "amount_fen", "reason"],
    "additionalProperties": False,
}


# --- field validators ---------------------------------------------------------------------


def _choice(body: Mapping[str, Any], name: str, where: str, values: tuple[str, ...]) -> str:
    value = body.get(name)
    if not isinstance(value, str) or value not in values:
        raise InvalidEntry(f"{where}: {name} must be one of {', '.join(values)}, got {value!r}")
    return value


def _flag(body: Mapping[str, Any], name: str, where: str) -> bool:
    value = body.get(name)
    if not isinstance(value, bool):
        raise InvalidEntry(f"{where}: {name} must be true or false, got {value!r}")
    return value


def _int_in(body: Mapping[str, Any], name: str, where: str, low: int, high: int) -> int:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidEntry(
            f"{where}: {name} must be an integer from {low} to {high}, got {value!r}"
        )
    return value


def _object(body: Mapping[str, Any], name: str, where: str) -> Mapping[str, Any]:
    value = body.get(name)
    if not isinstance(value, Mapping):
        raise InvalidEntry(f"{where}: {name} must be an object, got {value!r}")
    return value


def _exactly_one(body: Mapping[str, Any], where: str, names: tuple[str, ...]) -> str:
    present = [n for n in names if n in body]
    if len(present) != 1:
        raise InvalidEntry(
            f"{where}: exactly one of {', '.join(names)} is required, found {present or 'none'}"
        )
    return present[0]


def credit_code_valid(code: str) -> bool:
    """True if ``code`` is a well-formed 统一社会信用代码 whose check character is right."""
    if not _CREDIT_RE.fullmatch(code):
        return False
    total = sum(_CREDIT_ALPHABET.index(c) * w for c, w in zip(code, _CREDIT_WEIGHTS, strict=False))
    return code[17] == _CREDIT_ALPHABET[(31 - total % 31) % 31]


def _credit_code(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _CREDIT_RE.fullmatch(value):
        raise InvalidEntry(
            f"{where}: credit_code must be an 18-character 统一社会信用代码 "
            f"(digits and upper-case letters without I, O, S, V, Z), got {value!r}"
        )
    if not credit_code_valid(value):
        raise InvalidEntry(f"{where}: credit_code {value} has a wrong check character")
    return value


def _evidence(body: Mapping[str, Any], where: str, *, required: bool = False) -> None:
    docs = common.evidence(body, "evidence", where)
    if required and not docs:
        raise InvalidEntry(f"{where}: evidence must list at least one document (the receipt)")


def period_form(period: str) -> str:
    """``year``, ``half``, ``quarter`` or ``month``: the granularity of a period."""
    if len(period) == 4:
        return "year"
    return {"H": "half", "Q": "quarter"}.get(period[5], "month")


def add_months(start: str, months: int) -> str:
    """``start`` plus ``months`` calendar months (the day clamped to the month's end)."""
    day = date.fromisoformat(start)
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1])).isoformat()


def _roles_list(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_APPROVALS:
        raise InvalidEntry(
            f"{where}: policy.approvals must be a list of at most {MAX_APPROVALS} roles, got {value!r}"
        )
    for role in value:
        if role not in APPROVER_ROLES:
            raise InvalidEntry(
                f"{where}: policy.approvals: {role!r} is not one of {', '.join(APPROVER_ROLES)}"
            )
    return tuple(value)


# --- shared lookups -----------------------------------------------------------------------


def _source(rows: Projection, source_id: str, where: str) -> Row:
    row = rows.get("fund_sources", source_id)
    if row is None:
        raise RuleViolation(f"{where}: fund source {source_id!r} is not registered")
    return row


def _allocation(rows: Projection, allocation_id: str, where: str) -> Row:
    row = rows.get("fund_allocations", allocation_id)
    if row is None:
        raise RuleViolation(f"{where}: allocation {allocation_id!r} is not registered")
    if row["status"] != ACTIVE:
        raise RuleViolation(
            f"{where}: allocation {allocation_id} was reversed at seq {row['reversed_seq']}"
        )
    return row


def _disbursement(rows: Projection, disbursement_id: str, where: str) -> Row:
    row = rows.get("fund_disbursements", disbursement_id)
    if row is None:
        raise RuleViolation(f"{where}: disbursement {disbursement_id!r} is not registered")
    if row["status"] != ACTIVE:
        raise RuleViolation(
            f"{where}: disbursement {disbursement_id} was reversed at seq {row['reversed_seq']}"
        )
    return row


def _registered_household(rows: Projection, code: str, where: str) -> Row:
    household = get_household(rows, code)
    if household is None:
        raise RuleViolation(
            f"{where}: household {code} is not registered (no household.identified)"
        )
    return household


def _require_payment_signers(entry: Entry, state: RuleState, allocation: Row) -> None:
    """A finance officer plus the allocation's approvals, every one a distinct key."""
    approvals = allocation["approvals"].split()
    common.require_roles(entry, state, ["finance_officer", *approvals])


def _recipient_key(row: Mapping[str, Any]) -> str:
    """The per-recipient key of a disbursement row: ``household:CODE`` or
    ``cooperative:<credit code or name>`` / ``contractor:<credit code or name>``."""
    if row["recipient_type"] == "household":
        return f"household:{row['household']}"
    return f"{row['recipient_type']}:{row['credit_code'] or row['org']}"


def _remaining(allocation: Row) -> int:
    return int(allocation["amount_fen"]) - int(allocation["disbursed_fen"])


def _check_room(where: str, allocation: Row, amount: int, what: str) -> None:
    remaining = _remaining(allocation)
    if amount > remaining:
        raise Overspend(
            f"{where}: {what} {amount} fen exceeds what remains of allocation {allocation['id']}: "
            f"{remaining} fen (amount {allocation['amount_fen']}, disbursed "
            f"{allocation['disbursed_fen']} in {allocation['disbursements']} payments, "
            f"last changed at seq {allocation['seq']})"
        )


def _check_cap(
    where: str, rows: Projection, allocation: Row, recipient: str, period: str, extra: int
) -> None:
    cap = allocation["max_per_recipient_fen"]
    if cap is None:
        return
    total = rows.get("fund_recipient_totals", allocation["id"], recipient, period)
    already = 0 if total is None else int(total["amount_fen"])
    if already + extra > cap:
        seen = "" if total is None else f" (last at seq {total['seq']})"
        raise Overspend(
            f"{where}: {recipient} would receive {already + extra} fen from allocation "
            f"{allocation['id']} in period {period}; its policy allows at most {cap} fen per "
            f"recipient and period, {already} fen already paid{seen}"
        )


# --- fund.source ---------------------------------------------------------------------------


def _check_source(entry: Entry, state: RuleState) -> None:
    where, body = "fund.source", entry.body
    common.only_fields(
        body,
        where,
        ("id", "type", "name", "amount_fen", "year", "payer"),
        ("reference", "evidence"),
    )
    source_id = common.ident(body, "id", where)
    _choice(body, "type", where, SOURCE_TYPES)
    common.bilingual(body, "name", where)
    common.amount_fen(body, "amount_fen", where)
    _int_in(body, "year", where, 1900, 2200)
    common.text(body, "payer", where)
    if "reference" in body:
        common.text(body, "reference", where)
    _evidence(body, where)
    common.require_roles(entry, state, ["finance_officer"])
    existing = state.rows.get("fund_sources", source_id)
    if existing is not None:
        raise Conflict(
            f"{where}: source id {source_id} is already used (seq {existing['source_seq']})"
        )


def _apply_source(entry: Entry, state: RuleState) -> None:
    body = entry.body
    state.rows.put(
        "fund_sources",
        {
            "id": body["id"],
            "type": body["type"],
            "name": body["name"]["zh"],
            "year": body["year"],
            "payer": body["payer"],
            "amount_fen": body["amount_fen"],
            "allocated_fen": 0,
            "allocations": 0,
            "source_seq": entry.seq,
            "seq": entry.seq,
        },
    )


# --- fund.allocated ------------------------------------------------------------------------


def _policy(body: Mapping[str, Any], where: str) -> tuple[tuple[str, ...], bool, int | None]:
    """(approvals, once_per_period, max_per_recipient_fen) with the defaults filled in."""
    if "policy" not in body:
        return DEFAULT_APPROVALS, True, None
    policy = _object(body, "policy", where)
    common.only_fields(
        policy,
        f"{where}: policy",
        (),
        ("approvals", "once_per_period", "max_per_recipient_fen"),
    )
    approvals = (
        _roles_list(policy["approvals"], where) if "approvals" in policy else DEFAULT_APPROVALS
    )
    once = (
        _flag(policy, "once_per_period", f"{where}: policy")
        if "once_per_period" in policy
        else True
    )
    cap = (
        common.amount_fen(policy, "max_per_recipient_fen", f"{where}: policy")
        if "max_per_recipient_fen" in policy
        else None
    )
    return approvals, once, cap


def _allocation_scope(body: Mapping[str, Any]) -> tuple[str, str]:
    return (PROGRAMME, body["programme"]) if "programme" in body else (PROJECT, body["project"])


def _check_allocated(entry: Entry, state: RuleState) -> None:
    where, body = "fund.allocated", entry.body
    common.only_fields(
        body,
        where,
        ("id", "source", "amount_fen", "purpose"),
        ("programme", "project", "name", "policy", "reference", "evidence"),
    )
    allocation_id = common.ident(body, "id", where)
    source_id = common.ident(body, "source", where)
    amount = common.amount_fen(body, "amount_fen", where)
    purpose = _choice(body, "purpose", where, PURPOSES)
    scope_field = _exactly_one(body, where, ("programme", "project"))
    scope = common.ident(body, scope_field, where)
    if "name" in body:
        common.bilingual(body, "name", where)
    _policy(body, where)
    if "reference" in body:
        common.text(body, "reference", where)
    _evidence(body, where)
    common.require_roles(entry, state, ["finance_officer"])

    rows = state.rows
    existing = rows.get("fund_allocations", allocation_id)
    if existing is not None:
        raise Conflict(
            f"{where}: allocation id {allocation_id} is already used (seq {existing['allocated_seq']})"
        )
    source = _source(rows, source_id, where)
    if scope_field == "project":
        if get_project(rows, scope) is None:
            raise RuleViolation(f"{where}: project {scope!r} is not registered")
    else:
        known = rows.get("fund_scopes", PROGRAMME, scope)
        if known is not None and known["purpose"] != purpose:
            raise RuleViolation(
                f"{where}: programme {scope} pays {known['purpose']} (since seq "
                f"{known['first_seq']}); this allocation says {purpose}"
            )
    remaining = int(source["amount_fen"]) - int(source["allocated_fen"])
    if amount > remaining:
        raise Overspend(
            f"{where}: allocation {allocation_id} of {amount} fen exceeds what remains of source "
            f"{source_id}: {remaining} fen (amount {source['amount_fen']}, allocated "
            f"{source['allocated_fen']} in {source['allocations']} allocations, last changed at "
            f"seq {source['seq']})"
        )


def _apply_allocated(entry: Entry, state: RuleState) -> None:
    body, rows, seq = entry.body, state.rows, entry.seq
    scope_type, scope = _allocation_scope(body)
    approvals, once, cap = _policy(body, "fund.allocated")
    source = rows.get("fund_sources", body["source"])
    assert source is not None
    source["allocated_fen"] += body["amount_fen"]
    source["allocations"] += 1
    source["seq"] = seq
    rows.put("fund_sources", source)
    if rows.get("fund_scopes", scope_type, scope) is None:
        rows.put(
            "fund_scopes",
            {
                "scope_type": scope_type,
                "scope": scope,
                "purpose": body["purpose"] if scope_type == PROGRAMME else None,
                "period_form": None,
                "first_seq": seq,
                "seq": seq,
            },
        )
    rows.put(
        "fund_allocations",
        {
            "id": body["id"],
            "source": body["source"],
            "scope_type": scope_type,
            "scope": scope,
            "purpose": body["purpose"],
            "name": body["name"]["zh"] if "name" in body else None,
            "amount_fen": body["amount_fen"],
            "disbursed_fen": 0,
            "disbursements": 0,
            "approvals": " ".join(approvals),
            "once_per_period": int(once),
            "max_per_recipient_fen": cap,
            "status": ACTIVE,
            "allocated_seq": seq,
            "reversed_seq": None,
            "seq": seq,
        },
    )


# --- fund.disbursed ------------------------------------------------------------------------


def _recipient(body: Mapping[str, Any], where: str) -> dict[str, str | None]:
    """Validate the recipient; return it as disbursement-row columns (:func:`_recipient_columns`)."""
    value = _object(body, "recipient", where)
    at = f"{where}: recipient"
    kind = _exactly_one(value, at, RECIPIENT_TYPES)
    if kind == "household":
        common.only_fields(value, at, ("household",))
        common.household_code(value["household"], at)
    else:
        common.only_fields(value, at, (kind,), ("credit_code",))
        common.text(value, kind, at)
        if "credit_code" in value:
            _credit_code(value["credit_code"], at)
    return _recipient_columns(value)


def _recipient_columns(recipient: Mapping[str, Any]) -> dict[str, str | None]:
    """A validated recipient as disbursement-row columns: type, household, org, credit_code."""
    if "household" in recipient:
        household: str = recipient["household"]
        return {
            "recipient_type": "household",
            "household": household,
            "org": None,
            "credit_code": None,
        }
    kind = "cooperative" if "cooperative" in recipient else "contractor"
    return {
        "recipient_type": kind,
        "household": None,
        "org": recipient[kind],
        "credit_code": recipient.get("credit_code"),
    }


def _loan(body: Mapping[str, Any], where: str) -> tuple[int, int]:
    loan = _object(body, "loan", where)
    at = f"{where}: loan"
    common.only_fields(loan, at, ("term_months", "interest_subsidy_bp"))
    return (
        _int_in(loan, "term_months", at, 1, MAX_LOAN_MONTHS),
        _int_in(loan, "interest_subsidy_bp", at, 0, 10_000),
    )


def _gate(body: Mapping[str, Any], where: str) -> tuple[str, str]:
    gate = _object(body, "gate", where)
    at = f"{where}: gate"
    common.only_fields(gate, at, ("project", "stage"))
    return common.ident(gate, "project", at), _choice(gate, "stage", at, STAGES)


def _validate_disbursed(entry: Entry) -> dict[str, str | None]:
    where, body = "fund.disbursed", entry.body
    common.only_fields(
        body,
        where,
        ("id", "allocation", "recipient", "amount_fen", "purpose", "period"),
        ("date", "gate", "loan", "reference", "evidence"),
    )
    common.ident(body, "id", where)
    common.ident(body, "allocation", where)
    recipient = _recipient(body, where)
    common.amount_fen(body, "amount_fen", where)
    purpose = _choice(body, "purpose", where, PURPOSES)
    common.period_field(body, "period", where)
    if "date" in body:
        common.not_after_created(entry, common.date_field(body, "date", where), "date", where)
    if "gate" in body:
        _gate(body, where)
    if purpose == "micro_loan":
        if "loan" not in body:
            raise InvalidEntry(f"{where}: a micro_loan payment needs loan terms (loan)")
        _loan(body, where)
        if recipient["recipient_type"] != "household":
            raise InvalidEntry(f"{where}: a micro_loan (扶贫小额信贷) is paid to a household")
    elif "loan" in body:
        raise InvalidEntry(f"{where}: loan terms belong to micro_loan payments, not {purpose}")
    if "reference" in body:
        common.text(body, "reference", where)
    _evidence(body, where)
    return recipient


@dataclass
class _Payment:
    """What the check of a fund.disbursed read, for its apply (``Projection.remember``):
    the recipient's row columns, the allocation row, the household's place (``""`` for an
    organisation) and, for a household, the scope's and the payment count's rows."""

    recipient: dict[str, str | None]
    allocation: Row
    place: dict[str, str]
    scope: Row | None = None
    paid: Row | None = None


def _place(household: Row | None) -> dict[str, str]:
    """A disbursement's place columns: the household's county, township and village."""
    if household is None:
        return {"county": "", "township": "", "village": ""}
    return {
        "county": household["county"] or "",
        "township": household["township"] or "",
        "village": household["village"] or "",
    }


def _check_disbursed(entry: Entry, state: RuleState) -> None:
    where, body, rows = "fund.disbursed", entry.body, state.rows
    recipient = _validate_disbursed(entry)
    disbursement_id, amount, period = body["id"], body["amount_fen"], body["period"]
    existing = rows.get("fund_disbursements", disbursement_id)
    if existing is not None:
        raise Conflict(
            f"{where}: disbursement id {disbursement_id} is already used "
            f"(seq {existing['disbursed_seq']})"
        )
    allocation = _allocation(rows, body["allocation"], where)
    where = f"fund.disbursed {disbursement_id}"
    if body["purpose"] != allocation["purpose"]:
        raise RuleViolation(
            f"{where}: allocation {allocation['id']} pays {allocation['purpose']}, "
            f"this payment says {body['purpose']}"
        )
    _require_payment_signers(entry, state, allocation)
    payment = _Payment(recipient, allocation, _place(None))
    household = recipient["household"]
    if household is not None:
        payment.place = _place(_registered_household(rows, household, where))
        payment.scope, payment.paid = _check_household_rules(
            where, rows, allocation, household, period
        )
    if "gate" in body:
        project, stage = _gate(body, where)
        if get_project(rows, project) is None:
            raise RuleViolation(f"{where}: gate project {project!r} is not registered")
        if stage_reached(rows, project, stage) is None:
            raise RuleViolation(
                f"{where}: payment is gated on project {project} reaching stage {stage}, "
                f"which it has not (no project.milestone for {stage} yet)"
            )
    _check_cap(where, rows, allocation, _recipient_key(recipient), period, amount)
    _check_room(where, allocation, amount, "payment")
    rows.remember(entry, payment)


def _payment_of(entry: Entry, rows: Projection) -> _Payment:
    """The rows :func:`_check_disbursed` reads, read again (for an apply without its memo)."""
    body = entry.body
    recipient = _recipient_columns(body["recipient"])
    allocation = rows.get("fund_allocations", body["allocation"])
    assert allocation is not None
    household = recipient["household"]
    if household is None:
        return _Payment(recipient, allocation, _place(None))
    registered = get_household(rows, household)
    assert registered is not None
    scope_type, scope = allocation["scope_type"], allocation["scope"]
    return _Payment(
        recipient,
        allocation,
        _place(registered),
        rows.get("fund_scopes", scope_type, scope),
        rows.get("fund_payments", scope_type, scope, body["period"], household),
    )


def _check_household_rules(
    where: str, rows: Projection, allocation: Row, household: str, period: str
) -> tuple[Row, Row | None]:
    """The period form of the scope, and the once-per-period rule (unless an exception allows).
    Returns the scope's row and the household's payment count row for the period (or None)."""
    scope_type, scope = allocation["scope_type"], allocation["scope"]
    scope_row = rows.get("fund_scopes", scope_type, scope)
    assert scope_row is not None
    form = period_form(period)
    if scope_row["period_form"] is not None and scope_row["period_form"] != form:
        raise RuleViolation(
            f"{where}: {scope_type} {scope} pays households by {scope_row['period_form']} "
            f"(set at seq {scope_row['seq']}); period {period} is a {form}"
        )
    paid = rows.get("fund_payments", scope_type, scope, period, household)
    if allocation["once_per_period"] and paid is not None and paid["count"] >= paid["allowed"]:
        raise DuplicatePayment(
            f"{where}: household {household} already has {paid['count']} payment(s) of "
            f"{scope_type} {scope} for period {period} (first at seq {paid['first_seq']}, last "
            f"change at seq {paid['seq']}); {paid['allowed']} allowed — a fund.exception signed "
            "by a county_approver allows one more"
        )
    return scope_row, paid


def _adjust_group(rows: Projection, row: Row, count: int, amount: int, seq: int) -> None:
    key = (row["allocation"], row["recipient_type"], row["county"], row["township"], row["village"])
    group = rows.get("fund_groups", *key) or {
        "allocation": key[0],
        "recipient_type": key[1],
        "county": key[2],
        "township": key[3],
        "village": key[4],
        "count": 0,
        "amount_fen": 0,
    }
    group["count"] += count
    group["amount_fen"] += amount
    group["seq"] = seq
    rows.put("fund_groups", group)


def _adjust_allocation(
    rows: Projection, allocation_id: str, count: int, amount: int, seq: int
) -> Row:
    allocation = rows.get("fund_allocations", allocation_id)
    assert allocation is not None
    return _count_in_allocation(rows, allocation, count, amount, seq)


def _count_in_allocation(
    rows: Projection, allocation: Row, count: int, amount: int, seq: int
) -> Row:
    allocation["disbursements"] += count
    allocation["disbursed_fen"] += amount
    allocation["seq"] = seq
    rows.put("fund_allocations", allocation)
    return allocation


def _adjust_recipient_total(
    rows: Projection, allocation: Row, row: Row, count: int, amount: int, seq: int
) -> None:
    if allocation["max_per_recipient_fen"] is None:
        return
    key = (allocation["id"], _recipient_key(row), row["period"])
    total = rows.get("fund_recipient_totals", *key) or {
        "allocation": key[0],
        "recipient": key[1],
        "period": key[2],
        "count": 0,
        "amount_fen": 0,
    }
    total["count"] += count
    total["amount_fen"] += amount
    total["seq"] = seq
    rows.put("fund_recipient_totals", total)


def _adjust_payments(rows: Projection, allocation: Row, row: Row, count: int, seq: int) -> None:
    key = (allocation["scope_type"], allocation["scope"], row["period"], row["household"])
    _count_payment(rows, rows.get("fund_payments", *key), key, count, seq)


def _count_payment(
    rows: Projection, paid: Row | None, key: tuple[str, str, str, str], count: int, seq: int
) -> None:
    """Add ``count`` to the household's payment count row ``paid`` (None: not made yet)."""
    paid = paid or {
        "scope_type": key[0],
        "scope": key[1],
        "period": key[2],
        "household": key[3],
        "count": 0,
        "allowed": 1,
        "first_seq": None,
    }
    paid["count"] += count
    if paid["first_seq"] is None and count > 0:
        paid["first_seq"] = seq
    paid["seq"] = seq
    rows.put("fund_payments", paid)


def _apply_disbursed(entry: Entry, state: RuleState) -> None:
    body, rows, seq = entry.body, state.rows, entry.seq
    payment = rows.recall(entry, _Payment) or _payment_of(entry, rows)
    gate = body.get("gate") or {}
    row: Row = {
        "id": body["id"],
        "allocation": body["allocation"],
        "purpose": body["purpose"],
        **payment.recipient,
        **payment.place,
        "period": body["period"],
        "amount_fen": body["amount_fen"],
        "original_fen": body["amount_fen"],
        "status": ACTIVE,
        "gate_project": gate.get("project"),
        "gate_stage": gate.get("stage"),
        "disbursed_seq": seq,
        "corrected_seq": None,
        "reversed_seq": None,
        "received_seq": None,
        "seq": seq,
    }
    rows.put("fund_disbursements", row)
    allocation = _count_in_allocation(rows, payment.allocation, 1, body["amount_fen"], seq)
    _adjust_group(rows, row, 1, body["amount_fen"], seq)
    _adjust_recipient_total(rows, allocation, row, 1, body["amount_fen"], seq)
    if row["household"] is not None:
        key = (allocation["scope_type"], allocation["scope"], row["period"], row["household"])
        _count_payment(rows, payment.paid, key, 1, seq)
        scope = payment.scope
        assert scope is not None
        if scope["period_form"] is None:
            scope["period_form"] = period_form(body["period"])
            scope["seq"] = seq
            rows.put("fund_scopes", scope)
    if "loan" in body:
        start = body.get("date", entry.time[:10])
        term = body["loan"]["term_months"]
        rows.put(
            "fund_loans",
            {
                "disbursement": body["id"],
                "household": row["household"],
                "principal_fen": body["amount_fen"],
                "repaid_fen": 0,
                "outstanding_fen": body["amount_fen"],
                "term_months": term,
                "interest_subsidy_bp": body["loan"]["interest_subsidy_bp"],
                "start": start,
                "due": add_months(start, term),
                "status": ACTIVE,
                "last_repaid_seq": None,
                "seq": seq,
            },
        )


# --- fund.exception ------------------------------------------------------------------------


def _check_exception(entry: Entry, state: RuleState) -> None:
    where, body, rows = "fund.exception", entry.body, state.rows
    common.only_fields(
        body, where, ("household", "period", "reason"), ("programme", "project", "evidence")
    )
    scope_field = _exactly_one(body, where, ("programme", "project"))
    scope = common.ident(body, scope_field, where)
    household = common.household_code(body.get("household"), where)
    period = common.period_field(body, "period", where)
    common.text(body, "reason", where, MAX_REASON)
    _evidence(body, where)
    common.require_roles(entry, state, ["county_approver"])
    _registered_household(rows, household, where)
    scope_row = rows.get("fund_scopes", scope_field, scope)
    if scope_row is None:
        raise RuleViolation(f"{where}: {scope_field} {scope} has no allocation to pay from")
    form = period_form(period)
    if scope_row["period_form"] is not None and scope_row["period_form"] != form:
        raise RuleViolation(
            f"{where}: {scope_field} {scope} pays households by {scope_row['period_form']}; "
            f"period {period} is a {form}"
        )


def _apply_exception(entry: Entry, state: RuleState) -> None:
    body, rows, seq = entry.body, state.rows, entry.seq
    scope_type, scope = _allocation_scope(body)
    key = (scope_type, scope, body["period"], body["household"])
    paid = rows.get("fund_payments", *key) or {
        "scope_type": scope_type,
        "scope": scope,
        "period": body["period"],
        "household": body["household"],
        "count": 0,
        "allowed": 1,
        "first_seq": None,
    }
    paid["allowed"] += 1
    paid["seq"] = seq
    rows.put("fund_payments", paid)
    rows.put(
        "fund_exceptions",
        {
            "seq": seq,
            "scope_type": scope_type,
            "scope": scope,
            "period": body["period"],
            "household": body["household"],
        },
    )


# --- fund.received -------------------------------------------------------------------------


def _check_received(entry: Entry, state: RuleState) -> None:
    where, body = "fund.received", entry.body
    common.only_fields(body, where, ("disbursement", "date", "evidence"))
    disbursement_id = common.ident(body, "disbursement", where)
    common.not_after_created(entry, common.date_field(body, "date", where), "date", where)
    _evidence(body, where, required=True)
    row = _disbursement(state.rows, disbursement_id, where)
    signers = signer_roles(entry, state).values()
    if row["recipient_type"] == "household":
        if not any(k.role == "village_approver" for k in signers):
            raise RuleViolation(
                f"{where}: a household's receipt for {disbursement_id} is acknowledged by a "
                "village_approver on its behalf; no signer holds that role"
            )
    elif not any(k.org == row["org"] for k in signers):
        raise RuleViolation(
            f"{where}: the receipt for {disbursement_id} must be signed by a key of the "
            f"recipient {row['org']!r}; signed by keys of {sorted({k.org for k in signers})}"
        )
    if row["received_seq"] is not None:
        raise Conflict(
            f"{where}: disbursement {disbursement_id} was already acknowledged at seq "
            f"{row['received_seq']}"
        )


def _apply_received(entry: Entry, state: RuleState) -> None:
    row = state.rows.get("fund_disbursements", entry.body["disbursement"])
    assert row is not None
    row["received_seq"] = row["seq"] = entry.seq
    state.rows.put("fund_disbursements", row)


# --- fund.repaid ---------------------------------------------------------------------------


def _check_repaid(entry: Entry, state: RuleState) -> None:
    where, body = "fund.repaid", entry.body
    common.only_fields(body, where, ("disbursement", "amount_fen", "date"), ("evidence",))
    disbursement_id = common.ident(body, "disbursement", where)
    amount = common.amount_fen(body, "amount_fen", where)
    common.not_after_created(entry, common.date_field(body, "date", where), "date", where)
    _evidence(body, where)
    common.require_roles(entry, state, ["finance_officer"])
    _disbursement(state.rows, disbursement_id, where)
    loan = state.rows.get("fund_loans", disbursement_id)
    if loan is None:
        raise RuleViolation(f"{where}: disbursement {disbursement_id} is not a micro_loan")
    if amount > loan["outstanding_fen"]:
        raise RuleViolation(
            f"{where}: repayment of {amount} fen exceeds the outstanding principal of loan "
            f"{disbursement_id}: {loan['outstanding_fen']} fen (principal "
            f"{loan['principal_fen']}, repaid {loan['repaid_fen']})"
        )


def _apply_repaid(entry: Entry, state: RuleState) -> None:
    loan = state.rows.get("fund_loans", entry.body["disbursement"])
    assert loan is not None
    amount = entry.body["amount_fen"]
    loan["repaid_fen"] += amount
    loan["outstanding_fen"] -= amount
    loan["last_repaid_seq"] = loan["seq"] = entry.seq
    state.rows.put("fund_loans", loan)


# --- fund.reversed -------------------------------------------------------------------------


def _check_reversed(entry: Entry, state: RuleState) -> None:
    where, body, rows = "fund.reversed", entry.body, state.rows
    common.only_fields(body, where, ("reason",), ("disbursement", "allocation", "evidence"))
    target = _exactly_one(body, where, ("disbursement", "allocation"))
    target_id = common.ident(body, target, where)
    common.text(body, "reason", where, MAX_REASON)
    _evidence(body, where)
    common.require_roles(entry, state, ["finance_officer"])
    if target == "allocation":
        allocation = _allocation(rows, target_id, where)
        if allocation["disbursements"]:
            raise RuleViolation(
                f"{where}: allocation {target_id} still has {allocation['disbursements']} active "
                f"payments ({allocation['disbursed_fen']} fen); reverse them first"
            )
        return
    _disbursement(rows, target_id, where)
    loan = rows.get("fund_loans", target_id)
    if loan is not None and loan["repaid_fen"]:
        raise RuleViolation(
            f"{where}: loan {target_id} has repayments of {loan['repaid_fen']} fen (last at seq "
            f"{loan['last_repaid_seq']}); a loan with repayments cannot be reversed, correct it"
        )


def _apply_reversed(entry: Entry, state: RuleState) -> None:
    body, rows, seq = entry.body, state.rows, entry.seq
    if "allocation" in body:
        allocation = rows.get("fund_allocations", body["allocation"])
        assert allocation is not None
        allocation["status"] = REVERSED
        allocation["reversed_seq"] = allocation["seq"] = seq
        rows.put("fund_allocations", allocation)
        source = rows.get("fund_sources", allocation["source"])
        assert source is not None
        source["allocated_fen"] -= allocation["amount_fen"]
        source["allocations"] -= 1
        source["seq"] = seq
        rows.put("fund_sources", source)
        return
    row = rows.get("fund_disbursements", body["disbursement"])
    assert row is not None
    row["status"] = REVERSED
    row["reversed_seq"] = row["seq"] = seq
    rows.put("fund_disbursements", row)
    amount = int(row["amount_fen"])
    allocation = _adjust_allocation(rows, row["allocation"], -1, -amount, seq)
    _adjust_group(rows, row, -1, -amount, seq)
    _adjust_recipient_total(rows, allocation, row, -1, -amount, seq)
    if row["household"] is not None:
        _adjust_payments(rows, allocation, row, -1, seq)
    loan = rows.get("fund_loans", row["id"])
    if loan is not None:
        loan["status"] = REVERSED
        loan["outstanding_fen"] = 0
        loan["seq"] = seq
        rows.put("fund_loans", loan)


# --- fund.corrected ------------------------------------------------------------------------


def _check_corrected(entry: Entry, state: RuleState) -> None:
    where, body, rows = "fund.corrected", entry.body, state.rows
    common.only_fields(body, where, ("disbursement", "amount_fen", "reason"), ("evidence",))
    disbursement_id = common.ident(body, "disbursement", where)
    amount = common.amount_fen(body, "amount_fen", where)
    common.text(body, "reason", where, MAX_REASON)
    _evidence(body, where)
    row = _disbursement(rows, disbursement_id, where)
    allocation = rows.get("fund_allocations", row["allocation"])
    assert allocation is not None
    where = f"fund.corrected {disbursement_id}"
    _require_payment_signers(entry, state, allocation)
    delta = amount - int(row["amount_fen"])
    if delta == 0:
        raise RuleViolation(f"{where}: the amount is already {amount} fen; nothing to correct")
    loan = rows.get("fund_loans", disbursement_id)
    if loan is not None and amount < loan["repaid_fen"]:
        raise RuleViolation(
            f"{where}: loan principal {amount} fen would be less than the {loan['repaid_fen']} "
            "fen already repaid"
        )
    if delta > 0:
        _check_cap(where, rows, allocation, _recipient_key(row), row["period"], delta)
        _check_room(where, allocation, delta, f"increase from {row['amount_fen']} to {amount}:")


def _apply_corrected(entry: Entry, state: RuleState) -> None:
    body, rows, seq = entry.body, state.rows, entry.seq
    row = rows.get("fund_disbursements", body["disbursement"])
    assert row is not None
    delta = body["amount_fen"] - int(row["amount_fen"])
    row["amount_fen"] = body["amount_fen"]
    row["corrected_seq"] = row["seq"] = seq
    rows.put("fund_disbursements", row)
    allocation = _adjust_allocation(rows, row["allocation"], 0, delta, seq)
    _adjust_group(rows, row, 0, delta, seq)
    _adjust_recipient_total(rows, allocation, row, 0, delta, seq)
    loan = rows.get("fund_loans", row["id"])
    if loan is not None:
        loan["principal_fen"] = body["amount_fen"]
        loan["outstanding_fen"] = body["amount_fen"] - loan["repaid_fen"]
        loan["seq"] = seq
        rows.put("fund_loans", loan)


# --- registration --------------------------------------------------------------------------

register_kind(
    KindSpec(
        "fund.source",
        "money available for poverty alleviation: a special fund, credit, donation or contribution",
        _check_source,
        _apply_source,
        schema=SOURCE_SCHEMA,
        signers="a finance_officer",
    )
)
register_kind(
    KindSpec(
        "fund.allocated",
        "part of a fund source assigned to a programme or a project, with its payment policy",
        _check_allocated,
        _apply_allocated,
        schema=ALLOCATED_SCHEMA,
        signers="a finance_officer",
    )
)
register_kind(
    KindSpec(
        "fund.disbursed",
        "a payment from an allocation to a household, cooperative or contractor",
        _check_disbursed,
        _apply_disbursed,
        schema=DISBURSED_SCHEMA,
        signers="a finance_officer plus distinct keys holding every role the allocation's "
        "policy.approvals lists (default village_approver and township_approver: 双认定)",
    )
)
register_kind(
    KindSpec(
        "fund.exception",
        "allow one more payment of a programme or project to a household in a period",
        _check_exception,
        _apply_exception,
        schema=EXCEPTION_SCHEMA,
        signers="a county_approver",
    )
)
register_kind(
    KindSpec(
        "fund.received",
        "the recipient's acknowledgement of a payment, with the signed receipt as evidence",
        _check_received,
        _apply_received,
        schema=RECEIVED_SCHEMA,
        signers="for a household, a village_approver on its behalf; for a cooperative or "
        "contractor, a key whose org is the recipient's name",
    )
)
register_kind(
    KindSpec(
        "fund.repaid",
        "a repayment of a micro-loan's principal",
        _check_repaid,
        _apply_repaid,
        schema=REPAID_SCHEMA,
        signers="a finance_officer",
    )
)
register_kind(
    KindSpec(
        "fund.reversed",
        "reverse a disbursement or an allocation; balances are restored",
        _check_reversed,
        _apply_reversed,
        schema=REVERSED_SCHEMA,
        signers="a finance_officer",
    )
)
register_kind(
    KindSpec(
        "fund.corrected",
        "correct a disbursement's amount by a new entry naming the original",
        _check_corrected,
        _apply_corrected,
        schema=CORRECTED_SCHEMA,
        signers="a finance_officer plus the approvals the allocation's policy lists, as for "
        "fund.disbursed",
    )
)
