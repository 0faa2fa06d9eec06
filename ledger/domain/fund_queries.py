"""Read side of the fund trails: trails, balances, disbursement pages and the anomaly report.

Every function takes a SQLAlchemy :class:`~sqlalchemy.Connection`, runs plain
SELECTs on the projection tables of ``ledger.domain.funds`` (and, read-only,
the households, projects and refusals tables), and returns JSON-serialisable
dicts and lists: ints, strs, bools, None.  Money is integer fen.

"The entries behind each number" are seqs:

* a source's ``amount_fen`` comes from ``source_seq``; an allocation's from
  ``allocated_seq``; a disbursement's ``amount_fen`` from ``disbursed_seq`` or,
  if corrected, from ``corrected_seq`` (a correction states the new amount);
* a running sum (``allocated_fen``, ``disbursed_fen``, a group's ``amount_fen``)
  is the sum of the rows one level down, each with its seqs; ``seq`` is the
  entry that last changed the number.  A group's rows are paged with
  :func:`disbursements` using the ``page`` filter the group carries.

The trails read precomputed running sums (``fund_groups``) and page the
individual disbursements by keyset (``after`` = the last ``disbursed_seq``
seen), so a county's trail costs a few indexed reads whatever the number of
households.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from sqlalchemy import Connection, Select, and_, func, inspect, or_, select

from ledger.domain.funds import (
    ACTIVE,
    PROGRAMME,
    PROJECT,
    RECIPIENT_TYPES,
    fund_allocations,
    fund_disbursements,
    fund_exceptions,
    fund_groups,
    fund_loans,
    fund_payments,
    fund_sources,
)
from ledger.domain.projects import overdue_milestones
from ledger.errors import InvalidInput, NotFound
from ledger.schema import metadata

DEFAULT_LIMIT = 100
MAX_LIMIT = 1_000
#: Codes of the refusals the anomaly report lists (``ledger.errors`` class names, snake case).
REFUSAL_CODES = ("overspend", "duplicate_payment")

Json = dict[str, Any]
#: A result row (``Connection.execute(…).mappings()``) or any mapping with its columns.
RowLike = Mapping[Any, Any]


def _limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be an integer from 1 to {MAX_LIMIT}, got {limit!r}")
    return limit


def _after(after: int | None) -> int | None:
    if after is not None and (isinstance(after, bool) or not isinstance(after, int)):
        raise InvalidInput(
            f"after must be the seq of the last item seen (an integer), got {after!r}"
        )
    return after


# --- row shapes -----------------------------------------------------------------------------


def _source_json(row: RowLike, disbursed: int) -> Json:
    return {
        "id": row["id"],
        "type": row["type"],
        "name": row["name"],
        "year": row["year"],
        "payer": row["payer"],
        "amount_fen": row["amount_fen"],
        "allocated_fen": row["allocated_fen"],
        "remaining_fen": row["amount_fen"] - row["allocated_fen"],
        "disbursed_fen": disbursed,
        "allocations": row["allocations"],
        "source_seq": row["source_seq"],
        "seq": row["seq"],
    }


def _allocation_json(row: RowLike) -> Json:
    return {
        "id": row["id"],
        "source": row["source"],
        "programme": row["scope"] if row["scope_type"] == PROGRAMME else None,
        "project": row["scope"] if row["scope_type"] == PROJECT else None,
        "purpose": row["purpose"],
        "name": row["name"],
        "status": row["status"],
        "amount_fen": row["amount_fen"],
        "disbursed_fen": row["disbursed_fen"],
        "remaining_fen": row["amount_fen"] - row["disbursed_fen"],
        "disbursements": row["disbursements"],
        "policy": {
            "approvals": row["approvals"].split(),
            "once_per_period": bool(row["once_per_period"]),
            "max_per_recipient_fen": row["max_per_recipient_fen"],
        },
        "allocated_seq": row["allocated_seq"],
        "reversed_seq": row["reversed_seq"],
        "seq": row["seq"],
    }


def _recipient_json(row: RowLike) -> Json:
    kind = row["recipient_type"]
    if kind == "household":
        return {"household": row["household"]}
    out: Json = {kind: row["org"]}
    if row["credit_code"] is not None:
        out["credit_code"] = row["credit_code"]
    return out


def _disbursement_json(row: RowLike) -> Json:
    household = row["recipient_type"] == "household"
    return {
        "id": row["id"],
        "allocation": row["allocation"],
        "purpose": row["purpose"],
        "recipient": _recipient_json(row),
        "place": (
            {"county": row["county"], "township": row["township"], "village": row["village"]}
            if household
            else None
        ),
        "period": row["period"],
        "amount_fen": row["amount_fen"],
        "original_fen": row["original_fen"],
        "status": row["status"],
        "gate": (
            {"project": row["gate_project"], "stage": row["gate_stage"]}
            if row["gate_project"] is not None
            else None
        ),
        "disbursed_seq": row["disbursed_seq"],
        "corrected_seq": row["corrected_seq"],
        "reversed_seq": row["reversed_seq"],
        "received_seq": row["received_seq"],
        "seq": row["seq"],
    }


def _group_json(row: RowLike) -> Json:
    return {
        "recipient_type": row["recipient_type"],
        "county": row["county"] or None,
        "township": row["township"] or None,
        "village": row["village"] or None,
        "count": row["count"],
        "amount_fen": row["amount_fen"],
        "seq": row["seq"],
        "page": {
            "allocation": row["allocation"],
            "recipient_type": row["recipient_type"],
            "county": row["county"],
            "township": row["township"],
            "village": row["village"],
            "status": ACTIVE,
        },
    }


def _loan_json(row: RowLike, today: str | None = None) -> Json:
    out = {
        "disbursement": row["disbursement"],
        "household": row["household"],
        "principal_fen": row["principal_fen"],
        "repaid_fen": row["repaid_fen"],
        "outstanding_fen": row["outstanding_fen"],
        "term_months": row["term_months"],
        "interest_subsidy_bp": row["interest_subsidy_bp"],
        "start": row["start"],
        "due": row["due"],
        "status": row["status"],
        "last_repaid_seq": row["last_repaid_seq"],
        "seq": row["seq"],
    }
    if today is not None:
        out["overdue"] = (
            row["status"] == ACTIVE and row["outstanding_fen"] > 0 and row["due"] < today
        )
    return out


# --- building blocks ------------------------------------------------------------------------


def _groups_by_allocation(conn: Connection, ids: list[str]) -> dict[str, list[Json]]:
    """Every non-empty group of each allocation, in place order."""
    out: dict[str, list[Json]] = {i: [] for i in ids}
    if not ids:
        return out
    g = fund_groups.c
    query = (
        select(fund_groups)
        .where(g.allocation.in_(ids), g.count > 0)
        .order_by(g.allocation, g.recipient_type, g.county, g.township, g.village)
    )
    for row in conn.execute(query).mappings():
        out[row["allocation"]].append(_group_json(row))
    return out


def _allocation_nodes(
    conn: Connection, query: Select[Any], limit: int
) -> tuple[list[Json], int | None]:
    """One page of allocations (ordered by allocated_seq) with their groups; next ``after``."""
    rows = list(
        conn.execute(query.order_by(fund_allocations.c.allocated_seq).limit(limit + 1)).mappings()
    )
    more = len(rows) > limit
    rows = rows[:limit]
    groups = _groups_by_allocation(conn, [r["id"] for r in rows])
    nodes = []
    for row in rows:
        node = _allocation_json(row)
        node["groups"] = groups[row["id"]]
        nodes.append(node)
    return nodes, rows[-1]["allocated_seq"] if more else None


def _sum_allocations(conn: Connection, *where: Any) -> Json:
    a = fund_allocations.c
    row = conn.execute(
        select(
            func.count(),
            func.coalesce(func.sum(a.amount_fen), 0),
            func.coalesce(func.sum(a.disbursed_fen), 0),
            func.coalesce(func.sum(a.disbursements), 0),
        ).where(a.status == ACTIVE, *where)
    ).one()
    return {
        "allocations": int(row[0]),
        "allocated_fen": int(row[1]),
        "disbursed_fen": int(row[2]),
        "remaining_fen": int(row[1]) - int(row[2]),
        "disbursements": int(row[3]),
    }


def _by_purpose(conn: Connection, *where: Any) -> list[Json]:
    a = fund_allocations.c
    query = (
        select(
            a.purpose,
            func.count(),
            func.sum(a.amount_fen),
            func.sum(a.disbursed_fen),
            func.sum(a.disbursements),
        )
        .where(a.status == ACTIVE, *where)
        .group_by(a.purpose)
        .order_by(a.purpose)
    )
    return [
        {
            "purpose": r[0],
            "allocations": int(r[1]),
            "allocated_fen": int(r[2]),
            "disbursed_fen": int(r[3]),
            "disbursements": int(r[4]),
        }
        for r in conn.execute(query)
    ]


def _table_exists(conn: Connection, name: str) -> bool:
    return name in metadata.tables and inspect(conn).has_table(name)


# --- trail ----------------------------------------------------------------------------------


def trail(
    conn: Connection,
    *,
    source: str | None = None,
    project: str | None = None,
    household: str | None = None,
    limit: int = DEFAULT_LIMIT,
    after: int | None = None,
) -> Json:
    """The fund trail from a source, a project or a household (exactly one of them).

    **From a source** — ``{"node": "source", "source": {id, type, name, year, payer,
    amount_fen, allocated_fen, remaining_fen, disbursed_fen, allocations, source_seq,
    seq}, "by_purpose": [{purpose, allocations, allocated_fen, disbursed_fen,
    disbursements}], "allocations": [ALLOCATION], "next_after"}``.

    **From a project** — ``{"node": "project", "project": {id, name, status, budget_fen,
    registered_seq, seq} (None if the projects table lacks the row), "stages": [{stage,
    first_seq, evidence, date, seq}], "totals": {allocations, allocated_fen,
    disbursed_fen, remaining_fen, disbursements}, "allocations": [ALLOCATION],
    "next_after", "gated": {"count", "amount_fen", "disbursements": [DISBURSEMENT] (the
    first ``limit`` payments gated on the project's milestones, from any allocation),
    "next_after"}}``.

    ALLOCATION is ``{id, source, programme, project, purpose, name, status, amount_fen,
    disbursed_fen, remaining_fen, disbursements, policy: {approvals, once_per_period,
    max_per_recipient_fen}, allocated_seq, reversed_seq, seq, "groups": [{recipient_type,
    county, township, village, count, amount_fen, seq, "page": {…}}]}`` — a group sums the
    allocation's active payments to one recipient type in one village (places are None for
    cooperatives and contractors); pass its ``page`` as keywords to :func:`disbursements`
    for the active payments behind it (drop ``status`` to see reversed ones too).  Allocations are paged by ``allocated_seq``
    (``limit``/``after``); ``next_after`` is None on the last page.

    **From a household** — ``{"node": "household", "household": {code, status, county,
    township, village} (None if not registered), "totals": {count, amount_fen} (active
    payments), "by_purpose": [{purpose, count, amount_fen}], "disbursements":
    [DISBURSEMENT + "allocation_node": {id, programme, project, purpose, name},
    "source_node": {id, type, name, year}], "next_after", "loans": [LOAN], "exceptions":
    [{seq, programme, project, period}]}`` — the trail upward from each payment to its
    allocation and source.

    DISBURSEMENT is as in :func:`disbursements`; LOAN as in :func:`balances`.
    Raises :class:`InvalidInput` unless exactly one of source/project/household is given,
    :class:`NotFound` for an unknown source.
    """
    given = [
        n
        for n, v in (("source", source), ("project", project), ("household", household))
        if v is not None
    ]
    if len(given) != 1:
        raise InvalidInput(
            f"trail needs exactly one of source, project, household; got {given or 'none'}"
        )
    limit, after = _limit(limit), _after(after)
    if source is not None:
        return _source_trail(conn, source, limit, after)
    if project is not None:
        return _project_trail(conn, project, limit, after)
    assert household is not None
    return _household_trail(conn, household, limit, after)


def _source_trail(conn: Connection, source: str, limit: int, after: int | None) -> Json:
    row = conn.execute(select(fund_sources).where(fund_sources.c.id == source)).mappings().first()
    if row is None:
        raise NotFound(f"no fund source {source!r}")
    a = fund_allocations.c
    totals = _sum_allocations(conn, a.source == source)
    query = select(fund_allocations).where(a.source == source)
    if after is not None:
        query = query.where(a.allocated_seq > after)
    nodes, next_after = _allocation_nodes(conn, query, limit)
    return {
        "node": "source",
        "source": _source_json(row, totals["disbursed_fen"]),
        "by_purpose": _by_purpose(conn, a.source == source),
        "allocations": nodes,
        "next_after": next_after,
    }


def _project_trail(conn: Connection, project: str, limit: int, after: int | None) -> Json:
    a, d = fund_allocations.c, fund_disbursements.c
    where = and_(a.scope_type == PROJECT, a.scope == project)
    query = select(fund_allocations).where(where)
    if after is not None:
        query = query.where(a.allocated_seq > after)
    nodes, next_after = _allocation_nodes(conn, query, limit)
    gated = conn.execute(
        select(func.count(), func.coalesce(func.sum(d.amount_fen), 0)).where(
            d.gate_project == project, d.status == ACTIVE
        )
    ).one()
    page = disbursements(conn, project=project, limit=limit)
    return {
        "node": "project",
        "project": _project_row(conn, project),
        "stages": _project_stages(conn, project),
        "totals": _sum_allocations(conn, where),
        "allocations": nodes,
        "next_after": next_after,
        "gated": {
            "count": int(gated[0]),
            "amount_fen": int(gated[1]),
            "disbursements": page["items"],
            "next_after": page["next_after"],
        },
    }


def _project_row(conn: Connection, project: str) -> Json | None:
    table = metadata.tables.get("projects")
    if table is None:
        return None
    row = conn.execute(select(table).where(table.c.id == project)).mappings().first()
    if row is None:
        return None
    wanted = ("id", "name_zh", "status", "budget_fen", "registered_seq", "seq")
    out = {k: row[k] for k in wanted if k in row}
    if "name_zh" in out:
        out["name"] = out.pop("name_zh")
    return out


def _project_stages(conn: Connection, project: str) -> list[Json]:
    table = metadata.tables["project_stages"]
    rows = conn.execute(
        select(table).where(table.c.project == project).order_by(table.c.first_seq)
    ).mappings()
    return [
        {
            "stage": r["stage"],
            "first_seq": r["first_seq"],
            "evidence": r["evidence"],
            "date": r.get("date"),
            "seq": r["seq"],
        }
        for r in rows
    ]


def _household_trail(conn: Connection, code: str, limit: int, after: int | None) -> Json:
    d = fund_disbursements.c
    households = metadata.tables["households"]
    row = conn.execute(select(households).where(households.c.code == code)).mappings().first()
    active = and_(d.household == code, d.status == ACTIVE)
    totals = conn.execute(
        select(func.count(), func.coalesce(func.sum(d.amount_fen), 0)).where(active)
    ).one()
    purposes = conn.execute(
        select(d.purpose, func.count(), func.sum(d.amount_fen))
        .where(active)
        .group_by(d.purpose)
        .order_by(d.purpose)
    )
    page = disbursements(conn, household=code, limit=limit, after=after)
    _attach_upstream(conn, page["items"])
    loans = conn.execute(
        select(fund_loans).where(fund_loans.c.household == code).order_by(fund_loans.c.start)
    ).mappings()
    e = fund_exceptions.c
    exceptions = conn.execute(
        select(fund_exceptions).where(e.household == code).order_by(e.seq)
    ).mappings()
    return {
        "node": "household",
        "household": (
            None
            if row is None
            else {k: row[k] for k in ("code", "status", "county", "township", "village")}
        ),
        "totals": {"count": int(totals[0]), "amount_fen": int(totals[1])},
        "by_purpose": [
            {"purpose": p, "count": int(c), "amount_fen": int(s)} for p, c, s in purposes
        ],
        "disbursements": page["items"],
        "next_after": page["next_after"],
        "loans": [_loan_json(r) for r in loans],
        "exceptions": [
            {
                "seq": r["seq"],
                "programme": r["scope"] if r["scope_type"] == PROGRAMME else None,
                "project": r["scope"] if r["scope_type"] == PROJECT else None,
                "period": r["period"],
            }
            for r in exceptions
        ],
    }


def _attach_upstream(conn: Connection, items: list[Json]) -> None:
    """Add each disbursement's allocation and source (the trail upward)."""
    ids = sorted({i["allocation"] for i in items})
    if not ids:
        return
    a, s = fund_allocations.c, fund_sources.c
    allocations = {
        r["id"]: r for r in conn.execute(select(fund_allocations).where(a.id.in_(ids))).mappings()
    }
    source_ids = sorted({r["source"] for r in allocations.values()})
    sources = {
        r["id"]: r
        for r in conn.execute(select(fund_sources).where(s.id.in_(source_ids))).mappings()
    }
    for item in items:
        alloc = allocations[item["allocation"]]
        src = sources[alloc["source"]]
        item["allocation_node"] = {
            "id": alloc["id"],
            "programme": alloc["scope"] if alloc["scope_type"] == PROGRAMME else None,
            "project": alloc["scope"] if alloc["scope_type"] == PROJECT else None,
            "purpose": alloc["purpose"],
            "name": alloc["name"],
            "allocated_seq": alloc["allocated_seq"],
        }
        item["source_node"] = {
            "id": src["id"],
            "type": src["type"],
            "name": src["name"],
            "year": src["year"],
            "source_seq": src["source_seq"],
        }


# --- disbursements --------------------------------------------------------------------------


def disbursements(
    conn: Connection,
    *,
    allocation: str | None = None,
    household: str | None = None,
    project: str | None = None,
    recipient_type: str | None = None,
    county: str | None = None,
    township: str | None = None,
    village: str | None = None,
    status: str | None = None,
    limit: int = DEFAULT_LIMIT,
    after: int | None = None,
) -> Json:
    """One page of disbursements, oldest first: ``{"items": [DISBURSEMENT], "next_after"}``.

    Give at least one of ``allocation``, ``household`` or ``project`` (payments gated on
    that project's milestones) — each is served by an index.  ``recipient_type`` and the
    place (exact values; ``""`` matches organisations, which have no place) narrow an
    allocation to one of its trail groups; ``status`` is ``active`` or ``reversed``.
    ``after`` is the ``disbursed_seq`` of the last item seen; ``next_after`` is None on
    the last page.

    DISBURSEMENT is ``{id, allocation, purpose, recipient: {household} | {cooperative[,
    credit_code]} | {contractor[, credit_code]}, place: {county, township, village} (None
    for organisations), period, amount_fen (current), original_fen, status, gate:
    {project, stage} | None, disbursed_seq, corrected_seq (the latest correction, which
    set amount_fen), reversed_seq, received_seq (the acknowledgement), seq}``.
    """
    limit, after = _limit(limit), _after(after)
    d = fund_disbursements.c
    if allocation is None and household is None and project is None:
        raise InvalidInput("disbursements needs an allocation, a household or a project")
    if recipient_type is not None and recipient_type not in RECIPIENT_TYPES:
        raise InvalidInput(
            f"recipient_type must be one of {', '.join(RECIPIENT_TYPES)}, got {recipient_type!r}"
        )
    if status is not None and status not in (ACTIVE, "reversed"):
        raise InvalidInput(f"status must be active or reversed, got {status!r}")
    filters = {
        d.allocation: allocation,
        d.household: household,
        d.gate_project: project,
        d.recipient_type: recipient_type,
        d.county: county,
        d.township: township,
        d.village: village,
        d.status: status,
    }
    query = select(fund_disbursements).where(*[c == v for c, v in filters.items() if v is not None])
    if after is not None:
        query = query.where(d.disbursed_seq > after)
    rows = list(conn.execute(query.order_by(d.disbursed_seq).limit(limit + 1)).mappings())
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "items": [_disbursement_json(r) for r in rows],
        "next_after": rows[-1]["disbursed_seq"] if more else None,
    }


# --- balances -------------------------------------------------------------------------------


def balances(
    conn: Connection,
    *,
    source: str | None = None,
    programme: str | None = None,
    project: str | None = None,
    year: int | None = None,
) -> Json:
    """Balances of sources, allocations and micro-loans.

    Filters (any combination): ``source``, ``programme`` or ``project`` (the allocations
    of that source/programme/project, and their sources), ``year`` (sources of that
    year).  Returns ``{"sources": [{id, type, name, year, payer, amount_fen,
    allocated_fen, remaining_fen, disbursed_fen, allocations, source_seq, seq}],
    "allocations": [ALLOCATION without groups] (reversed ones too, with their status),
    "totals": {amount_fen (of the sources), allocated_fen, disbursed_fen, remaining_fen
    (unallocated), undisbursed_fen (allocated, not yet paid)}, "loans": {count,
    principal_fen, repaid_fen, outstanding_fen} (active micro-loans of the listed
    allocations)}``.  Sorted by id.
    """
    a, s = fund_allocations.c, fund_sources.c
    alloc_query = select(fund_allocations)
    if source is not None:
        alloc_query = alloc_query.where(a.source == source)
    if programme is not None:
        alloc_query = alloc_query.where(a.scope_type == PROGRAMME, a.scope == programme)
    if project is not None:
        alloc_query = alloc_query.where(a.scope_type == PROJECT, a.scope == project)
    if year is not None:
        alloc_query = alloc_query.where(a.source.in_(select(s.id).where(s.year == year)))
    allocations = list(conn.execute(alloc_query.order_by(a.id)).mappings())
    source_query = select(fund_sources)
    if source is not None:
        source_query = source_query.where(s.id == source)
    if year is not None:
        source_query = source_query.where(s.year == year)
    if programme is not None or project is not None:
        source_query = source_query.where(s.id.in_(sorted({r["source"] for r in allocations})))
    sources = list(conn.execute(source_query.order_by(s.id)).mappings())
    disbursed: dict[str, int] = {}
    for row in conn.execute(
        select(a.source, func.sum(a.disbursed_fen))
        .where(a.status == ACTIVE, a.source.in_([r["id"] for r in sources]))
        .group_by(a.source)
    ):
        disbursed[row[0]] = int(row[1])
    active = [r for r in allocations if r["status"] == ACTIVE]
    loans = _loan_totals(conn, [r["id"] for r in active if r["purpose"] == "micro_loan"])
    return {
        "sources": [_source_json(r, disbursed.get(r["id"], 0)) for r in sources],
        "allocations": [_allocation_json(r) for r in allocations],
        "totals": {
            "amount_fen": sum(int(r["amount_fen"]) for r in sources),
            "allocated_fen": sum(int(r["amount_fen"]) for r in active),
            "disbursed_fen": sum(int(r["disbursed_fen"]) for r in active),
            "remaining_fen": sum(int(r["amount_fen"]) - int(r["allocated_fen"]) for r in sources),
            "undisbursed_fen": sum(int(r["amount_fen"]) - int(r["disbursed_fen"]) for r in active),
        },
        "loans": loans,
    }


def _loan_totals(conn: Connection, allocation_ids: list[str]) -> Json:
    out = {"count": 0, "principal_fen": 0, "repaid_fen": 0, "outstanding_fen": 0}
    if not allocation_ids:
        return out
    loan, d = fund_loans.c, fund_disbursements.c
    row = conn.execute(
        select(
            func.count(),
            func.coalesce(func.sum(loan.principal_fen), 0),
            func.coalesce(func.sum(loan.repaid_fen), 0),
            func.coalesce(func.sum(loan.outstanding_fen), 0),
        )
        .select_from(fund_loans.join(fund_disbursements, d.id == loan.disbursement))
        .where(loan.status == ACTIVE, d.allocation.in_(allocation_ids))
    ).one()
    return {
        "count": int(row[0]),
        "principal_fen": int(row[1]),
        "repaid_fen": int(row[2]),
        "outstanding_fen": int(row[3]),
    }


# --- anomalies ------------------------------------------------------------------------------


def anomalies(conn: Connection, today: str, *, limit: int = DEFAULT_LIMIT) -> Json:
    """The anomaly report as of ``today`` (``YYYY-MM-DD``); each list holds at most ``limit``.

    Returns ``{"today", "overspend_attempts": [REFUSAL], "duplicate_payment_attempts":
    [REFUSAL], "duplicate_payees": [...], "shared_credit_codes": [...],
    "unevidenced_payments": [...], "overdue_milestones": [...], "overdue_loans": [LOAN]}``:

    * REFUSAL — a signed fund.* statement the rules refused, from the ``refusals`` table:
      ``{id, time, kind, code, reason, key_ids: [...], body}`` (``body`` None if the stored
      statement cannot be read), newest first;
    * duplicate payees — households with more than one active payment of one programme
      (or project) in one period, which only an exception (or a policy without
      ``once_per_period``) allows: ``{programme, project, period, household, count,
      allowed, exception_seqs, disbursements: [{id, allocation, amount_fen,
      disbursed_seq}]}``;
    * shared credit codes — one 统一社会信用代码 paid under more than one name: ``{credit_code,
      names: [...], count, amount_fen, disbursed_seqs}``;
    * unevidenced payments — active payments to a cooperative or contractor from a project
      allocation, or gated on a project, with no milestone evidence behind them:
      ``{disbursement: DISBURSEMENT, project, reason}``.  A gated payment needs evidence
      documents on its gate stage; an ungated one on some stage the project reached
      before the payment;
    * overdue milestones — planned project stages due before ``today`` and not reached, as
      :func:`ledger.domain.projects.overdue_milestones` gives them (``{project, name, county,
      township, village, status, stage, due, days_overdue, plan_seq}``) plus the project's
      ``allocated_fen`` and ``disbursed_fen`` (its active allocations);
    * overdue loans — active micro-loans past their due date with principal outstanding.
    """
    try:
        day = date.fromisoformat(today)
    except (TypeError, ValueError):
        raise InvalidInput(f"today must be a date YYYY-MM-DD, got {today!r}") from None
    limit = _limit(limit)
    loan = fund_loans.c
    overdue_loans = conn.execute(
        select(fund_loans)
        .where(loan.status == ACTIVE, loan.outstanding_fen > 0, loan.due < today)
        .order_by(loan.due, loan.disbursement)
        .limit(limit)
    ).mappings()
    return {
        "today": today,
        "overspend_attempts": _refusals(conn, "overspend", limit),
        "duplicate_payment_attempts": _refusals(conn, "duplicate_payment", limit),
        "duplicate_payees": _duplicate_payees(conn, limit),
        "shared_credit_codes": _shared_credit_codes(conn, limit),
        "unevidenced_payments": _unevidenced_payments(conn, limit),
        "overdue_milestones": _overdue_milestones(conn, day, limit),
        "overdue_loans": [_loan_json(r, today) for r in overdue_loans],
    }


def _refusals(conn: Connection, code: str, limit: int) -> list[Json]:
    if not _table_exists(conn, "refusals"):
        return []
    table = metadata.tables["refusals"]
    c = table.c
    query = (
        select(table)
        .where(c.code == code, c.kind.like("fund.%"))
        .order_by(c.id.desc())
        .limit(limit)
    )
    out = []
    for row in conn.execute(query).mappings():
        out.append(
            {
                "id": row["id"],
                "time": row["time"],
                "kind": row["kind"],
                "code": row["code"],
                "reason": row["reason"],
                "key_ids": row["key_ids"].split(),
                "body": _statement_body(row["statement"]),
            }
        )
    return out


def _statement_body(text: str) -> Json | None:
    try:
        value = json.loads(text)
        body = value["statement"]["body"]
    except (ValueError, TypeError, KeyError):
        return None
    return body if isinstance(body, dict) else None


def _duplicate_payees(conn: Connection, limit: int) -> list[Json]:
    p, d, a, e = fund_payments.c, fund_disbursements.c, fund_allocations.c, fund_exceptions.c
    rows = list(
        conn.execute(
            select(fund_payments).where(p.count > 1).order_by(p.first_seq).limit(limit)
        ).mappings()
    )
    out = []
    for row in rows:
        paid = conn.execute(
            select(d.id, d.allocation, d.amount_fen, d.disbursed_seq)
            .select_from(fund_disbursements.join(fund_allocations, a.id == d.allocation))
            .where(
                d.household == row["household"],
                d.period == row["period"],
                d.status == ACTIVE,
                a.scope_type == row["scope_type"],
                a.scope == row["scope"],
            )
            .order_by(d.disbursed_seq)
        ).mappings()
        exceptions = conn.execute(
            select(e.seq)
            .where(
                e.household == row["household"],
                e.scope_type == row["scope_type"],
                e.scope == row["scope"],
                e.period == row["period"],
            )
            .order_by(e.seq)
        ).scalars()
        out.append(
            {
                "programme": row["scope"] if row["scope_type"] == PROGRAMME else None,
                "project": row["scope"] if row["scope_type"] == PROJECT else None,
                "period": row["period"],
                "household": row["household"],
                "count": row["count"],
                "allowed": row["allowed"],
                "exception_seqs": [int(s) for s in exceptions],
                "disbursements": [dict(r) for r in paid],
            }
        )
    return out


def _shared_credit_codes(conn: Connection, limit: int) -> list[Json]:
    d = fund_disbursements.c
    codes = (
        select(d.credit_code)
        .where(d.credit_code.is_not(None), d.status == ACTIVE)
        .group_by(d.credit_code)
        .having(func.count(func.distinct(d.org)) > 1)
        .order_by(d.credit_code)
        .limit(limit)
    )
    out = []
    for code in conn.execute(codes).scalars():
        rows = list(
            conn.execute(
                select(d.org, d.amount_fen, d.disbursed_seq)
                .where(d.credit_code == code, d.status == ACTIVE)
                .order_by(d.disbursed_seq)
            )
        )
        out.append(
            {
                "credit_code": code,
                "names": sorted({r[0] for r in rows}),
                "count": len(rows),
                "amount_fen": sum(int(r[1]) for r in rows),
                "disbursed_seqs": [int(r[2]) for r in rows],
            }
        )
    return out


def _unevidenced_payments(conn: Connection, limit: int) -> list[Json]:
    d, a = fund_disbursements.c, fund_allocations.c
    project_allocs = select(a.id).where(a.scope_type == PROJECT)
    query = (
        select(fund_disbursements, a.scope_type, a.scope)
        .select_from(fund_disbursements.join(fund_allocations, a.id == d.allocation))
        .where(
            d.status == ACTIVE,
            or_(
                d.gate_project.is_not(None),
                and_(d.allocation.in_(project_allocs), d.recipient_type != "household"),
            ),
        )
        .order_by(d.disbursed_seq)
    )
    stages = metadata.tables["project_stages"]
    out: list[Json] = []
    for row in conn.execute(query).mappings():
        project = row["gate_project"] or row["scope"]
        found = conn.execute(
            select(stages.c.stage, stages.c.first_seq, stages.c.evidence).where(
                stages.c.project == project
            )
        ).all()
        reason = _missing_evidence(row, found)
        if reason is None:
            continue
        out.append({"disbursement": _disbursement_json(row), "project": project, "reason": reason})
        if len(out) >= limit:
            break
    return out


def _missing_evidence(row: RowLike, stages: Sequence[Any]) -> str | None:
    """Why a project payment lacks milestone evidence, or None if it has some."""
    if row["gate_stage"] is not None:
        for stage, _first, evidence in stages:
            if stage == row["gate_stage"]:
                return None if evidence > 0 else f"gate stage {stage} has no evidence documents"
        return f"gate stage {row['gate_stage']} was never reached"
    if any(first < row["disbursed_seq"] and evidence > 0 for _stage, first, evidence in stages):
        return None
    return "no milestone with evidence documents was reached before the payment"


def _overdue_milestones(conn: Connection, day: date, limit: int) -> list[Json]:
    """``projects.overdue_milestones`` with each project's active allocations and payments."""
    out = []
    a = fund_allocations.c
    for item in overdue_milestones(conn, day.isoformat())[:limit]:
        money = _sum_allocations(conn, a.scope_type == PROJECT, a.scope == item["project"])
        out.append(
            {
                **item,
                "allocated_fen": money["allocated_fen"],
                "disbursed_fen": money["disbursed_fen"],
            }
        )
    return out
