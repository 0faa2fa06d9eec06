"""The domain queries, registered in ``ledger.queries`` for the CLI and the API.

Each entry here adapts one read-side function of a domain module to text
parameters; the modules' docstrings describe the results.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Connection

from ledger import queries
from ledger.domain import batch_queries, fund_queries, households, projects
from ledger.errors import NotFound
from ledger.queries import Param, Query, register_query

# --- batches ------------------------------------------------------------------------------

_BATCH = (
    Param("gtin", help="GTIN-14 of the product (omit for a batch registered without one)"),
    Param("lot", required=True, help="lot code (GS1 AI 10)"),
)


def _ref(gtin: str | None, lot: str) -> dict[str, Any]:
    return {"lot": lot} if gtin is None else {"gtin": gtin, "lot": lot}


def _batch_view(conn: Connection, lot: str, gtin: str | None = None) -> Any:
    return batch_queries.batch_view(conn, _ref(gtin, lot))


def _batch_provenance(conn: Connection, lot: str, depth: int, gtin: str | None = None) -> Any:
    return batch_queries.provenance(conn, _ref(gtin, lot), depth)


def _batch_households(conn: Connection, lot: str, gtin: str | None = None) -> Any:
    return batch_queries.households_supported(conn, _ref(gtin, lot))


def _batch_by_seq(conn: Connection, seq: int) -> Any:
    found = batch_queries.batch_by_seq(conn, seq)
    if not found:
        raise NotFound(
            f"entry {seq} registered no batch (it is not a batch.registered or "
            "batch.transformed entry, or does not exist)"
        )
    return found


def _provenance_rows(result: Any) -> list[dict[str, Any]]:
    return [{"node": n} for n in result["nodes"]] + [{"edge": e} for e in result["edges"]]


register_query(
    Query(
        "batch",
        "/batches/view",
        "A batch as the scan page shows it: product, origin, producer, households supported per "
        "village, the timeline of events, inspections, certifications and any recall.",
        _BATCH,
        _batch_view,
        tags=("batches",),
    )
)
register_query(
    Query(
        "batch-provenance",
        "/batches/provenance",
        "The provenance graph of a batch: upstream and downstream lots with the transformations "
        "(entries) that link them.",
        (*_BATCH, Param("depth", "int", default=10, maximum=batch_queries.MAX_DEPTH)),
        _batch_provenance,
        table=_provenance_rows,
        tags=("batches",),
    )
)
register_query(
    Query(
        "batch-households",
        "/batches/households",
        "The registered households a batch supported, through its whole upstream graph "
        "(pseudonymous codes and shares; for auditors).",
        _BATCH,
        _batch_households,
        table=lambda r: list(r["households"]),
        tags=("batches",),
    )
)
register_query(
    Query(
        "batch-by-seq",
        "/batches/by-seq",
        "The batches an entry registered (a batch.registered entry, or a transformation's outputs).",
        (Param("seq", "seq", required=True, help="seq of the registering entry"),),
        _batch_by_seq,
        tags=("batches",),
    )
)
register_query(
    Query(
        "batches",
        "/batches",
        "Batches in registration order, optionally of one producer organisation; pass the "
        "returned next cursor as after for the next page.",
        (
            Param("producer", help="producer organisation"),
            Param("limit", "int", default=50, maximum=batch_queries.MAX_LIMIT),
            Param("after", help="cursor from the previous page"),
        ),
        batch_queries.list_batches,
        table=lambda r: list(r["batches"]),
        tags=("batches",),
    )
)


# --- funds --------------------------------------------------------------------------------

_PAGE = (
    Param("limit", "int", default=fund_queries.DEFAULT_LIMIT, maximum=fund_queries.MAX_LIMIT),
    Param("after", "int", help="seq from the previous page's next_after"),
)


def _trail_rows(result: Any) -> list[dict[str, Any]]:
    """A trail as a table: one row per group of payments (or per payment for a household)."""
    rows: list[dict[str, Any]] = []
    for allocation in result.get("allocations") or []:
        base = {k: v for k, v in allocation.items() if k != "groups"}
        groups = allocation.get("groups") or []
        rows.extend({"allocation": base, "group": g} for g in groups)
        if not groups:
            rows.append({"allocation": base})
    for payment in result.get("payments") or result.get("gated_payments") or []:
        rows.append({"payment": payment})
    return rows or [result]


def _anomaly_rows(result: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name, items in result.items():
        if isinstance(items, list):
            rows.extend({"anomaly": name, "detail": item} for item in items)
    return rows


def _anomalies(conn: Connection, limit: int, today: date | None = None) -> Any:
    return fund_queries.anomalies(conn, (today or queries.today()).isoformat(), limit=limit)


register_query(
    Query(
        "fund-trail",
        "/funds/trail",
        "The fund trail from a source, a project or a household, with sums at every node and the "
        "seqs of the entries behind each number; payments are grouped per allocation, recipient "
        "type and village (each group links to its page of payments).",
        (
            Param("source", help="fund source id"),
            Param("project", help="project id"),
            Param("household", help="household code"),
            *_PAGE,
        ),
        fund_queries.trail,
        table=_trail_rows,
        one_of=("source", "project", "household"),
        tags=("funds",),
    )
)
register_query(
    Query(
        "disbursements",
        "/funds/disbursements",
        "One page of disbursements (oldest first) of an allocation, a household or a project's "
        "gated payments, optionally narrowed to one trail group.",
        (
            Param("allocation"),
            Param("household"),
            Param("project"),
            Param("recipient_type", choices=("household", "cooperative", "contractor")),
            Param("county"),
            Param("township"),
            Param("village"),
            Param("status", choices=("active", "reversed")),
            *_PAGE,
        ),
        fund_queries.disbursements,
        table=lambda r: list(r["items"]),
        tags=("funds",),
    )
)
register_query(
    Query(
        "balances",
        "/funds/balances",
        "Balances of fund sources, allocations and micro-loans, optionally for one source, "
        "programme, project or year.",
        (
            Param("source"),
            Param("programme"),
            Param("project"),
            Param("year", "int", maximum=2200),
        ),
        fund_queries.balances,
        table=lambda r: (
            [{"source": s} for s in r["sources"]] + [{"allocation": a} for a in r["allocations"]]
        ),
        tags=("funds",),
    )
)
register_query(
    Query(
        "anomalies",
        "/funds/anomalies",
        "The anomaly report: attempted over-spends and duplicate payments (refused, signed), "
        "duplicate payees, shared credit codes, payments without milestone evidence, overdue "
        "milestones and overdue loans.",
        (
            Param("today", "date", help="the report date (default: today, UTC)"),
            Param(
                "limit", "int", default=fund_queries.DEFAULT_LIMIT, maximum=fund_queries.MAX_LIMIT
            ),
        ),
        _anomalies,
        table=_anomaly_rows,
        tags=("funds", "audit"),
    )
)


# --- households ---------------------------------------------------------------------------

_PLACE = tuple(Param(p) for p in ("province", "city", "county", "township", "village"))

register_query(
    Query(
        "household",
        "/households/view",
        "A household by its pseudonymous code: location, members, causes, status, the statuses it "
        "may move to, and its history with the seq of every entry. No personal data.",
        (Param("code", required=True, help="household code (一户一码)"),),
        households.household_view,
        table=lambda r: [
            {**{k: v for k, v in r.items() if k != "history"}, "event": e} for e in r["history"]
        ],
        tags=("households",),
    )
)
register_query(
    Query(
        "households",
        "/households",
        "Households by code, filtered by status and place.",
        (
            Param("status", choices=tuple(households.STATUSES)),
            *_PLACE,
            Param("limit", "int", default=100, maximum=queries.MAX_LIMIT),
            Param("offset", "int", default=0),
        ),
        households.list_households,
        tags=("households",),
    )
)
register_query(
    Query(
        "household-counts",
        "/households/counts",
        "Households by status per place (down to the level asked for), with the entries that set "
        "each counted status.",
        (Param("level", default="village", choices=tuple(households.LEVELS)), *_PLACE),
        households.household_counts,
        table=lambda r: [{k: v for k, v in g.items() if k != "seqs"} for g in r],
        tags=("households",),
    )
)

# --- projects -----------------------------------------------------------------------------


def _project_view(conn: Connection, id: str, as_of: date | None = None) -> Any:
    return projects.project_view(conn, id, as_of=None if as_of is None else as_of.isoformat())


def _overdue(conn: Connection, as_of: date | None = None, county: str | None = None) -> Any:
    return projects.overdue_milestones(conn, (as_of or queries.today()).isoformat(), county=county)


register_query(
    Query(
        "project",
        "/projects/view",
        "A project: budget, location, owner, contractor, its plan with each stage done, late, "
        "overdue or pending, the milestones reached with their evidence documents and seqs.",
        (Param("id", required=True), Param("as_of", "date", help="judge due dates as of this day")),
        _project_view,
        table=lambda r: [{"project": r["id"], "event": e} for e in r.get("events", [])],
        tags=("projects",),
    )
)
register_query(
    Query(
        "projects",
        "/projects",
        "Projects by id, filtered by place, status and category.",
        (
            Param("county"),
            Param("township"),
            Param("village"),
            Param("status", choices=("registered", *projects.STAGES)),
            Param("category", choices=tuple(projects.CATEGORIES)),
            Param("limit", "int", default=100, maximum=queries.MAX_LIMIT),
            Param("offset", "int", default=0),
        ),
        projects.list_projects,
        tags=("projects",),
    )
)
register_query(
    Query(
        "overdue-milestones",
        "/projects/overdue",
        "Planned milestones whose due date has passed without the stage being reached, most "
        "overdue first.",
        (Param("as_of", "date", help="default: today, UTC"), Param("county")),
        _overdue,
        tags=("projects", "audit"),
    )
)
register_query(
    Query(
        "stages-without-evidence",
        "/projects/unevidenced",
        "Milestones reached without any evidence document.",
        (Param("project"),),
        projects.stages_without_evidence,
        tags=("projects", "audit"),
    )
)
