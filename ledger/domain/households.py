"""Households (建档立卡户): pseudonymous codes (一户一码) and status changes.

A household appears on the ledger only under its code.  Its personal data (name,
ID number, phone, address) lives off the ledger in ``ledger.private``; the ledger
holds a salted SHA-256 *commitment* to that record, so an authorised auditor can
show that a private record matches, and erasing the record (crypto-shredding)
leaves every entry — and ``suyuan verify`` — intact.

Kinds: ``household.identified`` (识别, a new code), ``household.status`` (a status
change along :data:`TRANSITIONS`), ``household.corrected`` (location, members,
causes or commitment fixed by a new entry).

Interface other domain modules rely on (keep it stable):

* table ``households`` (projection), primary key ``code``;
* :func:`get_household` — the row for a code, or None.

Read side (plain SELECTs on a ``Connection``): :func:`household_view`,
:func:`list_households`, :func:`household_counts`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import BigInteger, Column, Connection, Index, Integer, String, Table, Text, select

import ledger.private  # noqa: F401  (defines household_private on the same metadata)
from ledger.domain import common
from ledger.entry import Entry
from ledger.errors import Conflict, InvalidEntry, InvalidInput, NotFound, RuleViolation
from ledger.projection import Projection, Row, register_projection
from ledger.rules import KindSpec, RuleState, register_kind
from ledger.schema import metadata

households = Table(
    "households",
    metadata,
    Column("code", String(32), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("province", Text, nullable=False),
    Column("city", Text, nullable=False),
    Column("county", Text, nullable=False),
    Column("township", Text, nullable=True),
    Column("village", Text, nullable=True),
    Column("commitment", String(64), nullable=False),
    Column("identified_seq", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("division_code", String(12), nullable=True),
    Column("members", Integer, nullable=False),
    Column("causes", Text, nullable=False),  # comma-separated cause codes, main cause first
    Column("year", Integer, nullable=False),  # year identified (识别年度)
    Column("status_date", String(10), nullable=True),  # None until the first status change
    Column("status_seq", BigInteger, nullable=False),  # entry that set the current status
    Index("ix_households_place", "county", "township", "village"),
)
register_projection(households)

#: One row per household.* entry: the household's history (status after the entry).
household_events = Table(
    "household_events",
    metadata,
    Column("code", String(32), primary_key=True),
    Column("entry_seq", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("date", String(10), nullable=True),
    Column("reason", Text, nullable=True),
    Column("seq", BigInteger, nullable=False),
)
register_projection(household_events)


def get_household(rows: Projection, code: str) -> Row | None:
    """The household's projection row (status, location, commitment), or None if unregistered."""
    return rows.get("households", code)


# --- vocabulary -------------------------------------------------------------------------

#: 致贫原因: the poverty causes of the national registration system.
CAUSES: dict[str, str] = {
    "illness": "因病",
    "disability": "因残",
    "education": "因学",
    "disaster": "因灾",
    "lack_of_land": "缺土地",
    "lack_of_water": "缺水",
    "lack_of_skills": "缺技术",
    "lack_of_labour": "缺劳力",
    "lack_of_funds": "缺资金",
    "poor_transport": "交通条件落后",
    "other": "其他",
}

#: Household statuses.
STATUSES: dict[str, str] = {
    "identified": "建档立卡 (registered as poor, receiving support)",
    "exited": "脱贫 (exited poverty)",
    "monitoring": "监测 (exited, under relapse monitoring)",
    "relapsed": "返贫 (fell back into poverty)",
}

VILLAGE = "village_approver"
TOWNSHIP = "township_approver"
DUAL: tuple[tuple[str, ...], ...] = ((VILLAGE, TOWNSHIP),)  # 双认定: both, distinct keys
EITHER: tuple[tuple[str, ...], ...] = ((VILLAGE,), (TOWNSHIP,))

#: from status → {to status: signing policy}.  A policy is a list of alternatives; an
#: alternative is a list of roles that distinct signing keys must hold.
TRANSITIONS: dict[str, dict[str, tuple[tuple[str, ...], ...]]] = {
    "identified": {"exited": DUAL},
    "exited": {"monitoring": EITHER, "relapsed": ((VILLAGE,),), "identified": DUAL},
    "monitoring": {"exited": DUAL, "relapsed": ((VILLAGE,),)},
    "relapsed": {"identified": ((VILLAGE,),)},
}

FIRST_YEAR = 2014  # 建档立卡 began in 2014
LAST_YEAR = 2100
MAX_MEMBERS = 30
MAX_REASON = 500

# --- schema fragments (the shared ones are in ledger.domain.common) ------------------------

_COMMITMENT_SCHEMA = common.SHA256_SCHEMA
_MEMBERS_SCHEMA: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": MAX_MEMBERS}
_CAUSES_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {"type": "string", "enum": list(CAUSES)},
    "minItems": 1,
    "maxItems": len(CAUSES),
    "uniqueItems": True,
}
_REASON_SCHEMA = common.text_schema(MAX_REASON)


# --- body validation ------------------------------------------------------------------------


def _members(body: Mapping[str, Any], where: str) -> int:
    value = body.get("members")
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_MEMBERS:
        raise InvalidEntry(
            f"{where}: members must be an integer from 1 to {MAX_MEMBERS}, got {value!r}"
        )
    return value


def _causes(body: Mapping[str, Any], where: str) -> list[str]:
    value = body.get("causes")
    if not isinstance(value, list) or not value:
        raise InvalidEntry(
            f"{where}: causes must be a non-empty list of cause codes (main cause first), got {value!r}"
        )
    unknown = [c for c in value if not isinstance(c, str) or c not in CAUSES]
    if unknown:
        raise InvalidEntry(f"{where}: causes {unknown!r} not among {', '.join(CAUSES)}")
    if len(set(value)) != len(value):
        raise InvalidEntry(f"{where}: causes lists a cause twice: {value!r}")
    return list(value)


def _commitment(body: Mapping[str, Any], where: str) -> str:
    try:
        return common.sha256_hex(body.get("commitment"), f"{where}: commitment")
    except InvalidEntry:
        raise InvalidEntry(
            f"{where}: commitment must be the salted SHA-256 of the private record, 64 lower-case "
            f"hex digits, got {body.get('commitment')!r}"
        ) from None


def _year(body: Mapping[str, Any], where: str) -> int:
    value = body.get("year")
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not FIRST_YEAR <= value <= LAST_YEAR
    ):
        raise InvalidEntry(
            f"{where}: year must be the year identified, {FIRST_YEAR}–{LAST_YEAR}, got {value!r}"
        )
    return value


def _existing(state: RuleState, code: str, where: str) -> Row:
    row = get_household(state.rows, code)
    if row is None:
        raise RuleViolation(
            f"{where}: household {code} is not registered (no household.identified)"
        )
    return row


def _event(entry: Entry, code: str, status: str, when: str | None, reason: str | None) -> Row:
    return {
        "code": code,
        "entry_seq": entry.seq,
        "kind": entry.kind,
        "status": status,
        "date": when,
        "reason": reason,
        "seq": entry.seq,
    }


# --- household.identified ---------------------------------------------------------------------

IDENTIFIED_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "household.identified",
    "type": "object",
    "properties": {
        "code": common.HOUSEHOLD_SCHEMA,
        "location": common.LOCATION_SCHEMA,
        "members": _MEMBERS_SCHEMA,
        "causes": _CAUSES_SCHEMA,
        "year": {"type": "integer", "minimum": FIRST_YEAR, "maximum": LAST_YEAR},
        "commitment": _COMMITMENT_SCHEMA,
    },
    "required": ["code", "location", "members", "causes", "year", "commitment"],
    "additionalProperties": False,
}


def _check_identified(entry: Entry, state: RuleState) -> None:
    where = entry.kind
    body = entry.body
    common.only_fields(body, where, IDENTIFIED_SCHEMA["required"])
    code = common.household_code(body["code"], where)
    common.location(body, "location", where)
    _members(body, where)
    _causes(body, where)
    _year(body, where)
    _commitment(body, where)
    common.require_one_of(entry, state, ((VILLAGE,),))
    existing = get_household(state.rows, code)
    if existing is not None:
        raise Conflict(
            f"{where}: household {code} is already registered (seq {existing['identified_seq']}); "
            "a code is identified once — use household.status or household.corrected"
        )


def _apply_identified(entry: Entry, state: RuleState) -> None:
    body = entry.body
    code = body["code"]
    state.rows.put(
        "households",
        {
            "code": code,
            "status": "identified",
            **common.location_columns(body["location"]),
            "commitment": body["commitment"],
            "identified_seq": entry.seq,
            "seq": entry.seq,
            "members": body["members"],
            "causes": ",".join(body["causes"]),
            "year": body["year"],
            "status_date": None,
            "status_seq": entry.seq,
        },
    )
    state.rows.put("household_events", _event(entry, code, "identified", None, None))


# --- household.status -------------------------------------------------------------------------

STATUS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "household.status",
    "type": "object",
    "properties": {
        "code": common.HOUSEHOLD_SCHEMA,
        "status": {"type": "string", "enum": list(STATUSES)},
        "date": common.DATE_SCHEMA,
        "reason": _REASON_SCHEMA,
        "evidence": common.EVIDENCE_SCHEMA,
    },
    "required": ["code", "status", "date", "reason"],
    "additionalProperties": False,
}


def allowed_transitions(status: str) -> list[str]:
    """The statuses a household in ``status`` may move to."""
    return list(TRANSITIONS.get(status, {}))


def _check_status(entry: Entry, state: RuleState) -> None:
    where = entry.kind
    body = entry.body
    common.only_fields(body, where, STATUS_SCHEMA["required"], ["evidence"])
    code = common.household_code(body["code"], where)
    target = body["status"]
    if not isinstance(target, str) or target not in STATUSES:
        raise InvalidEntry(f"{where}: status must be one of {', '.join(STATUSES)}, got {target!r}")
    when = common.date_field(body, "date", where)
    common.text(body, "reason", where, MAX_REASON)
    common.evidence(body, "evidence", where)
    row = _existing(state, code, where)
    current = row["status"]
    policy = TRANSITIONS.get(current, {}).get(target)
    if policy is None:
        allowed = ", ".join(allowed_transitions(current)) or "none"
        raise RuleViolation(
            f"{where}: household {code} is {current} (since seq {row['status_seq']}); it cannot "
            f"become {target} — allowed from {current}: {allowed}"
        )
    earliest = row["status_date"] or f"{row['year']}-01-01"
    if when < earliest:
        raise RuleViolation(
            f"{where}: date {when} is before the household's previous status date {earliest} "
            f"(seq {row['status_seq']})"
        )
    common.not_after_created(entry, when, "date")
    common.require_one_of(entry, state, policy, f" to {target}")


def _apply_status(entry: Entry, state: RuleState) -> None:
    body = entry.body
    code = body["code"]
    row = get_household(state.rows, code)
    assert row is not None  # check_status ran
    row.update(status=body["status"], status_date=body["date"], status_seq=entry.seq, seq=entry.seq)
    state.rows.put("households", row)
    state.rows.put(
        "household_events", _event(entry, code, body["status"], body["date"], body["reason"])
    )


# --- household.corrected ----------------------------------------------------------------------

CORRECTABLE = ("location", "members", "causes", "commitment")

CORRECTED_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "household.corrected",
    "type": "object",
    "properties": {
        "code": common.HOUSEHOLD_SCHEMA,
        "reason": _REASON_SCHEMA,
        "location": common.LOCATION_SCHEMA,
        "members": _MEMBERS_SCHEMA,
        "causes": _CAUSES_SCHEMA,
        "commitment": _COMMITMENT_SCHEMA,
    },
    "required": ["code", "reason"],
    "minProperties": 3,
    "additionalProperties": False,
}


def _check_corrected(entry: Entry, state: RuleState) -> None:
    where = entry.kind
    body = entry.body
    common.only_fields(body, where, ["code", "reason"], CORRECTABLE)
    code = common.household_code(body["code"], where)
    common.text(body, "reason", where, MAX_REASON)
    if not any(name in body for name in CORRECTABLE):
        raise InvalidEntry(f"{where}: name at least one of {', '.join(CORRECTABLE)} to correct")
    if "location" in body:
        common.location(body, "location", where)
    if "members" in body:
        _members(body, where)
    if "causes" in body:
        _causes(body, where)
    if "commitment" in body:
        _commitment(body, where)
    row = _existing(state, code, where)
    common.require_one_of(entry, state, ((VILLAGE,),))
    if "commitment" in body and body["commitment"] == row["commitment"]:
        raise RuleViolation(
            f"{where}: household {code} already has this commitment (seq {row['seq']}); "
            "nothing to correct"
        )


def _apply_corrected(entry: Entry, state: RuleState) -> None:
    body = entry.body
    code = body["code"]
    row = get_household(state.rows, code)
    assert row is not None  # check_corrected ran
    if "location" in body:
        row.update(common.location_columns(body["location"]))
    if "members" in body:
        row["members"] = body["members"]
    if "causes" in body:
        row["causes"] = ",".join(body["causes"])
    if "commitment" in body:
        row["commitment"] = body["commitment"]
    row["seq"] = entry.seq
    state.rows.put("households", row)
    state.rows.put("household_events", _event(entry, code, row["status"], None, body["reason"]))


register_kind(
    KindSpec(
        "household.identified",
        "register a poor household (建档立卡) under its pseudonymous code",
        _check_identified,
        _apply_identified,
        schema=IDENTIFIED_SCHEMA,
        signers="a village_approver",
    )
)
register_kind(
    KindSpec(
        "household.status",
        "change a household's status: exited (脱贫), monitoring (监测), relapsed (返贫), identified",
        _check_status,
        _apply_status,
        schema=STATUS_SCHEMA,
        signers=(
            "depends on the transition: to exited, village_approver + township_approver "
            "(双认定, distinct keys); to monitoring, a village_approver or township_approver; "
            "to relapsed, a village_approver; relapsed → identified, a village_approver; "
            "exited → identified (错退纠正), village_approver + township_approver"
        ),
    )
)
register_kind(
    KindSpec(
        "household.corrected",
        "correct a household's location, members, causes or commitment",
        _check_corrected,
        _apply_corrected,
        schema=CORRECTED_SCHEMA,
        signers="a village_approver",
    )
)


# --- queries ----------------------------------------------------------------------------------

LEVELS = ("province", "city", "county", "township", "village")


def _household_json(row: Mapping[Any, Any]) -> dict[str, Any]:
    return {
        "code": row["code"],
        "status": row["status"],
        "location": common.location_of(row),
        "members": row["members"],
        "causes": row["causes"].split(","),
        "year": row["year"],
        "commitment": row["commitment"],
        "identified_seq": row["identified_seq"],
        "status_date": row["status_date"],
        "status_seq": row["status_seq"],
        "seq": row["seq"],
    }


def household_view(conn: Connection, code: str) -> dict[str, Any]:
    """One household and its history.

    Returns ``{"code", "status", "location": {province, city, county[, township, village,
    division_code]}, "members", "causes": [cause codes, main first], "year",
    "commitment", "identified_seq", "status_date" (None until the first status change),
    "status_seq" (entry that set the status), "seq" (entry that last changed the row),
    "allowed": [statuses it may move to], "history": [{"seq", "kind", "status" (after
    the entry), "date", "reason"}, …] oldest first}``.  Raises :class:`NotFound`.
    """
    row = conn.execute(select(households).where(households.c.code == code)).mappings().first()
    if row is None:
        raise NotFound(f"no household with code {code!r}")
    events = conn.execute(
        select(household_events)
        .where(household_events.c.code == code)
        .order_by(household_events.c.entry_seq)
    ).mappings()
    out = _household_json(row)
    out["allowed"] = allowed_transitions(row["status"])
    out["history"] = [
        {
            "seq": e["entry_seq"],
            "kind": e["kind"],
            "status": e["status"],
            "date": e["date"],
            "reason": e["reason"],
        }
        for e in events
    ]
    return out


def _place_filters(place: Mapping[str, str | None]) -> list[Any]:
    unknown = sorted(set(place) - set(LEVELS))
    if unknown:
        raise InvalidInput(f"unknown location filters {unknown}; use {', '.join(LEVELS)}")
    return [households.c[name] == value for name, value in place.items() if value is not None]


def list_households(
    conn: Connection,
    *,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
    **place: str | None,
) -> list[dict[str, Any]]:
    """Households (the fields of :func:`household_view` without history), by code, filtered by
    ``status`` and any of province/city/county/township/village given as keywords."""
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    query = select(households).where(*_place_filters(place))
    if status is not None:
        query = query.where(households.c.status == status)
    query = query.order_by(households.c.code).limit(max(0, limit)).offset(max(0, offset))
    return [_household_json(row) for row in conn.execute(query).mappings()]


def household_counts(
    conn: Connection, *, level: str = "village", **place: str | None
) -> list[dict[str, Any]]:
    """Households by status, grouped down to ``level`` (county, township or village …).

    ``place`` keywords (province … village) restrict the households counted.  Returns one
    item per place, sorted: ``{"place": {province, city, … down to level; None where the
    households have no such part}, "total": n, "counts": {status: n for every status},
    "seqs": {status: [seq, …]}}`` where ``seqs`` are the entries that put each counted
    household in that status (``status_seq``), ascending — the entries behind each number.
    """
    if level not in LEVELS:
        raise InvalidInput(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    parts = LEVELS[: LEVELS.index(level) + 1]
    query = select(*[households.c[p] for p in parts], households.c.status, households.c.status_seq)
    groups: dict[tuple[str | None, ...], dict[str, Any]] = {}
    for row in conn.execute(query.where(*_place_filters(place))):
        key = tuple(row[: len(parts)])
        group = groups.get(key)
        if group is None:
            group = groups[key] = {
                "place": dict(zip(parts, key, strict=True)),
                "total": 0,
                "counts": dict.fromkeys(STATUSES, 0),
                "seqs": {s: [] for s in STATUSES},
            }
        status, seq = row[len(parts)], row[len(parts) + 1]
        group["total"] += 1
        group["counts"][status] += 1
        group["seqs"][status].append(seq)
    for group in groups.values():
        for seqs in group["seqs"].values():
            seqs.sort()
    return [groups[k] for k in sorted(groups, key=_sort_key)]


def _sort_key(key: Iterable[str | None]) -> tuple[tuple[int, str], ...]:
    return tuple((0, "") if part is None else (1, part) for part in key)
