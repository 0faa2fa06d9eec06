"""Projects (扶贫项目) and their milestones.

A project (a cold store, 2.8 km of village road hardening, a drinking-water
works) is registered with its budget, location, owner, optional contractor and
plan (a due date per milestone stage).  Milestones follow a fixed order — 立项
approved, 招标 tendered, 签约 contracted, 开工 started, 进度 progress (repeatable,
optional), 完工 completed, 验收 accepted, 公示 notice — each with evidence documents
whose hashes go on the ledger and whose files go to the blob store
(``ledger.blobs``).

Kinds: ``project.registered``, ``project.milestone``, ``project.evidence`` (more
documents for a stage already reached), ``project.amended`` (budget, plan and
other registration data), ``project.corrected`` (fix a milestone entry by a new
entry naming its seq).

Interface other domain modules rely on (keep it stable):

* table ``projects`` (projection), primary key ``id``;
* :func:`get_project` — the project's row, or None;
* table ``project_stages`` (projection), primary key (``project``, ``stage``),
  with ``first_seq`` and ``evidence`` (how many evidence documents that stage has);
* :func:`stage_reached` — the seq of the first entry that brought a project to a
  milestone stage (``approved``, ``tendered``, ``contracted``, ``started``,
  ``progress``, ``completed``, ``accepted``, ``notice``), or None.

Read side: :func:`project_view`, :func:`list_projects`, :func:`overdue_milestones`,
:func:`stages_without_evidence`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from itertools import pairwise
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    Integer,
    String,
    Table,
    Text,
    select,
)

from ledger import canonical, schema
from ledger.domain import common
from ledger.entry import Entry, decode_entry
from ledger.errors import Conflict, InvalidEntry, InvalidInput, NotFound, RuleViolation
from ledger.projection import Projection, Row, register_projection
from ledger.rules import KindSpec, RuleState, register_kind, signer_roles
from ledger.schema import metadata

STAGES = (
    "approved",
    "tendered",
    "contracted",
    "started",
    "progress",
    "completed",
    "accepted",
    "notice",
)

projects = Table(
    "projects",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("name_zh", Text, nullable=False),
    Column("name_en", Text, nullable=True),
    Column("category", String(16), nullable=False),
    Column("budget_fen", BigInteger, nullable=False),
    Column("province", Text, nullable=False),
    Column("city", Text, nullable=False),
    Column("county", Text, nullable=False),
    Column("township", Text, nullable=True),
    Column("village", Text, nullable=True),
    Column("division_code", String(12), nullable=True),
    Column("owner", Text, nullable=False),
    Column("contractor", Text, nullable=True),
    Column("contract_fen", BigInteger, nullable=True),
    Column("quantities", Text, nullable=False),  # canonical JSON object, "{}" if none
    Column("status", String(16), nullable=False),  # "registered" or the latest stage reached
    Column("progress_pct", Integer, nullable=False),  # latest progress report; 100 once completed
    Column("progress_date", String(10), nullable=True),
    Column("progress_seq", BigInteger, nullable=True),
    Column("notice_start", String(10), nullable=True),
    Column("notice_end", String(10), nullable=True),
    Column("registered_seq", BigInteger, nullable=False),
    Index("ix_projects_county", "county"),
)
register_projection(projects)

#: The plan: when each stage is due.  Rows exist for the planned stages only.
project_plan = Table(
    "project_plan",
    metadata,
    Column("project", String(64), primary_key=True),
    Column("stage", String(16), primary_key=True),
    Column("due", String(10), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Index("ix_project_plan_due", "due"),
)
register_projection(project_plan)

project_stages = Table(
    "project_stages",
    metadata,
    Column("project", String(64), primary_key=True),
    Column("stage", String(16), primary_key=True),
    Column("first_seq", BigInteger, nullable=False),
    Column(
        "evidence", Integer, nullable=False
    ),  # evidence documents recorded for this stage so far
    Column("seq", BigInteger, nullable=False),
    Column("date", String(10), nullable=False),  # the date of the first_seq milestone
)
register_projection(project_stages)

#: One row per project.* entry about a project (registration, milestone, evidence,
#: amendment, correction); a corrected milestone's row carries the corrected values
#: and the correction's seq.
project_events = Table(
    "project_events",
    metadata,
    Column("project", String(64), primary_key=True),
    Column("entry_seq", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(32), nullable=False),
    Column("stage", String(16), nullable=True),
    Column("date", String(10), nullable=True),
    Column("evidence", Integer, nullable=False),
    Column("percent", Integer, nullable=True),
    Column("prev_percent", Integer, nullable=True),
    Column("seq", BigInteger, nullable=False),
)
register_projection(project_events)


def get_project(rows: Projection, project_id: str) -> Row | None:
    """The project's projection row, or None if unregistered."""
    return rows.get("projects", project_id)


def stage_reached(rows: Projection, project_id: str, stage: str) -> int | None:
    """Seq of the first entry that recorded ``stage`` for the project, or None."""
    row = rows.get("project_stages", project_id, stage)
    return None if row is None else int(row["first_seq"])


# --- vocabulary and policies ------------------------------------------------------------------

CATEGORIES: dict[str, str] = {
    "cold_store": "冷库 cold store",
    "road": "道路硬化 road hardening",
    "water": "饮水工程 drinking-water works",
    "housing": "住房 housing (危房改造, 易地扶贫搬迁)",
    "industry_base": "产业基地 industry base",
    "other": "其他 other",
}
#: Optional physical quantities, all integers (no floats on the ledger).
QUANTITIES: dict[str, str] = {
    "length_m": "length in metres",
    "width_m": "width in metres",
    "area_m2": "area in square metres",
    "volume_m3": "volume in cubic metres",
    "capacity_t": "storage capacity in tonnes",
    "water_m3_per_day": "water supply in cubic metres per day",
    "households_served": "households served",
    "persons_served": "persons served",
}
#: The stage each stage requires first (``progress`` is optional between started and completed).
PREREQUISITE: dict[str, str | None] = {
    "approved": None,
    "tendered": "approved",
    "contracted": "tendered",
    "started": "contracted",
    "progress": "started",
    "completed": "started",
    "accepted": "completed",
    "notice": "accepted",
}
PLANNED_STAGES = tuple(s for s in STAGES if s != "progress")
#: Stages whose milestone entry MUST carry at least one evidence document.
EVIDENCE_REQUIRED = frozenset({"approved", "tendered", "contracted", "accepted", "notice"})
#: 公示: a notice period is at least this many calendar days, both ends counted.
NOTICE_MIN_DAYS = 7

COUNTY = "county_approver"
TOWNSHIP = "township_approver"
VILLAGE = "village_approver"
CONTRACTOR = "contractor"
_OWNER: tuple[tuple[str, ...], ...] = ((COUNTY,), (TOWNSHIP,))
_SITE: tuple[tuple[str, ...], ...] = ((CONTRACTOR,), (TOWNSHIP,), (COUNTY,))
#: Who records each stage (alternatives of roles held by distinct keys).
STAGE_SIGNERS: dict[str, tuple[tuple[str, ...], ...]] = {
    "approved": ((COUNTY,),),
    "tendered": _OWNER,
    "contracted": _OWNER,
    "started": _SITE,
    "progress": _SITE,
    "completed": _SITE,
    "accepted": ((COUNTY, TOWNSHIP),),
    "notice": ((VILLAGE,), (TOWNSHIP,)),
}
#: Who may add documents to a stage already reached (one key suffices even for accepted).
EVIDENCE_SIGNERS: dict[str, tuple[tuple[str, ...], ...]] = {
    **STAGE_SIGNERS,
    "accepted": _OWNER,
}
MAX_NOTE = 2_000
MAX_REASON = 500

# --- schemas ------------------------------------------------------------------------------------

_TEXT_SCHEMA = common.text_schema(200)
_PLAN_SCHEMA: dict[str, Any] = {
    "type": "array",
    "maxItems": len(PLANNED_STAGES),
    "items": {
        "type": "object",
        "properties": {
            "stage": {"type": "string", "enum": list(PLANNED_STAGES)},
            "due": common.DATE_SCHEMA,
        },
        "required": ["stage", "due"],
        "additionalProperties": False,
    },
}
_QUANTITIES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        q: {"type": "integer", "minimum": 0, "maximum": common.MAX_FEN} for q in QUANTITIES
    },
    "additionalProperties": False,
}
_REASON_SCHEMA = common.text_schema(MAX_REASON)
_NOTE_SCHEMA = common.text_schema(MAX_NOTE)
_PERCENT_SCHEMA: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": 99}


def _only_for(stage: str, fields: Sequence[str]) -> dict[str, Any]:
    return {
        "if": {"properties": {"stage": {"const": stage}}},
        "then": {"required": list(fields)},
        "else": {"not": {"anyOf": [{"required": [f]} for f in fields]}},
    }


REGISTERED_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "project.registered",
    "type": "object",
    "properties": {
        "id": common.IDENT_SCHEMA,
        "name": common.BILINGUAL_SCHEMA,
        "category": {"type": "string", "enum": list(CATEGORIES)},
        "budget_fen": common.FEN_SCHEMA,
        "location": common.LOCATION_SCHEMA,
        "owner": _TEXT_SCHEMA,
        "contractor": _TEXT_SCHEMA,
        "plan": _PLAN_SCHEMA,
        "quantities": _QUANTITIES_SCHEMA,
    },
    "required": ["id", "name", "category", "budget_fen", "location", "owner", "plan"],
    "additionalProperties": False,
}

MILESTONE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "project.milestone",
    "type": "object",
    "properties": {
        "project": common.IDENT_SCHEMA,
        "stage": {"type": "string", "enum": list(STAGES)},
        "date": common.DATE_SCHEMA,
        "evidence": common.EVIDENCE_SCHEMA,
        "note": _NOTE_SCHEMA,
        "percent": _PERCENT_SCHEMA,
        "contract_fen": common.FEN_SCHEMA,
        "contractor": _TEXT_SCHEMA,
        "notice_start": common.DATE_SCHEMA,
        "notice_end": common.DATE_SCHEMA,
    },
    "required": ["project", "stage", "date"],
    "additionalProperties": False,
    "allOf": [
        _only_for("progress", ["percent"]),
        _only_for("contracted", ["contract_fen", "contractor"]),
        _only_for("notice", ["notice_start", "notice_end"]),
        {
            "if": {"properties": {"stage": {"enum": sorted(EVIDENCE_REQUIRED)}}},
            "then": {"required": ["evidence"], "properties": {"evidence": {"minItems": 1}}},
        },
    ],
}

EVIDENCE_ENTRY_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "project.evidence",
    "type": "object",
    "properties": {
        "project": common.IDENT_SCHEMA,
        "stage": {"type": "string", "enum": list(STAGES)},
        "evidence": {**common.EVIDENCE_SCHEMA, "minItems": 1},
        "note": _NOTE_SCHEMA,
    },
    "required": ["project", "stage", "evidence"],
    "additionalProperties": False,
}

AMENDABLE = ("name", "budget_fen", "location", "owner", "plan", "quantities")
AMENDED_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "project.amended",
    "type": "object",
    "properties": {
        "project": common.IDENT_SCHEMA,
        "reason": _REASON_SCHEMA,
        "name": common.BILINGUAL_SCHEMA,
        "budget_fen": common.FEN_SCHEMA,
        "location": common.LOCATION_SCHEMA,
        "owner": _TEXT_SCHEMA,
        "plan": {**_PLAN_SCHEMA, "minItems": 1},
        "quantities": _QUANTITIES_SCHEMA,
    },
    "required": ["project", "reason"],
    "minProperties": 3,
    "additionalProperties": False,
}

#: Stage-specific fields of project.milestone.
_STAGE_FIELDS: dict[str, tuple[str, ...]] = {
    "progress": ("percent",),
    "contracted": ("contract_fen", "contractor"),
    "notice": ("notice_start", "notice_end"),
}
#: Fields project.corrected may change, by the stage of the milestone it corrects.
CORRECTABLE: dict[str, tuple[str, ...]] = {
    stage: ("date", *_STAGE_FIELDS.get(stage, ())) for stage in STAGES
}
_ALL_CORRECTABLE = ("date", "percent", "contract_fen", "contractor", "notice_start", "notice_end")
CORRECTED_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "project.corrected",
    "type": "object",
    "properties": {
        "project": common.IDENT_SCHEMA,
        "ref": {"type": "integer", "minimum": 0, "maximum": common.MAX_FEN},
        "reason": _REASON_SCHEMA,
        "date": common.DATE_SCHEMA,
        "percent": _PERCENT_SCHEMA,
        "contract_fen": common.FEN_SCHEMA,
        "contractor": _TEXT_SCHEMA,
        "notice_start": common.DATE_SCHEMA,
        "notice_end": common.DATE_SCHEMA,
    },
    "required": ["project", "ref", "reason"],
    "minProperties": 4,
    "additionalProperties": False,
}


# --- field validators ---------------------------------------------------------------------------


def _category(body: Mapping[str, Any], where: str) -> str:
    value = body.get("category")
    if not isinstance(value, str) or value not in CATEGORIES:
        raise InvalidEntry(
            f"{where}: category must be one of {', '.join(CATEGORIES)}, got {value!r}"
        )
    return value


def _plan(body: Mapping[str, Any], where: str, *, empty_ok: bool) -> dict[str, str]:
    """``[{"stage", "due"}]`` → {stage: due}; stages distinct, never ``progress``."""
    value = body.get("plan")
    if (
        not isinstance(value, list)
        or len(value) > len(PLANNED_STAGES)
        or (not value and not empty_ok)
    ):
        raise InvalidEntry(
            f"{where}: plan must be a list of {'0' if empty_ok else '1'}–{len(PLANNED_STAGES)} "
            f"items {{'stage', 'due'}}, got {value!r}"
        )
    plan: dict[str, str] = {}
    for index, item in enumerate(value):
        at = f"{where}: plan[{index}]"
        if not isinstance(item, dict) or set(item) != {"stage", "due"}:
            raise InvalidEntry(f"{at} must be an object with exactly stage and due")
        stage = item["stage"]
        if not isinstance(stage, str) or stage not in PLANNED_STAGES:
            raise InvalidEntry(
                f"{at}: stage must be one of {', '.join(PLANNED_STAGES)} (progress reports are "
                f"not planned), got {stage!r}"
            )
        if stage in plan:
            raise InvalidEntry(f"{at}: stage {stage} is planned twice")
        plan[stage] = common.date_field(item, "due", at)
    return plan


def _check_plan_order(plan: Mapping[str, str], where: str) -> None:
    """Due dates MUST NOT decrease along the stage order."""
    ordered = [(s, plan[s]) for s in STAGES if s in plan]
    for (a, due_a), (b, due_b) in pairwise(ordered):
        if due_b < due_a:
            raise RuleViolation(
                f"{where}: plan has {b} due {due_b}, before {a} due {due_a}; "
                f"stages come in the order {', '.join(PLANNED_STAGES)}"
            )


def _quantities(body: Mapping[str, Any], where: str) -> dict[str, int]:
    value = body.get("quantities")
    if not isinstance(value, dict) or set(value) - set(QUANTITIES):
        raise InvalidEntry(
            f"{where}: quantities must be an object with keys from {', '.join(QUANTITIES)}"
        )
    for name in value:
        common.count_field(value, name, f"{where}: quantities", low=0)
    return dict(value)


def _percent(body: Mapping[str, Any], where: str) -> int:
    value = body.get("percent")
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 99:
        raise InvalidEntry(
            f"{where}: percent must be an integer from 1 to 99 (100 is the completed milestone), "
            f"got {value!r}"
        )
    return value


def _stage(body: Mapping[str, Any], where: str) -> str:
    value = body.get("stage")
    if not isinstance(value, str) or value not in STAGES:
        raise InvalidEntry(f"{where}: stage must be one of {', '.join(STAGES)}, got {value!r}")
    return value


def _ref(body: Mapping[str, Any], where: str, seq: int) -> int:
    value = body.get("ref")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < seq:
        raise InvalidEntry(
            f"{where}: ref must be the seq of an earlier entry (0..{seq - 1}), got {value!r}"
        )
    return value


def _existing(state: RuleState, project_id: str, where: str) -> Row:
    row = get_project(state.rows, project_id)
    if row is None:
        raise RuleViolation(
            f"{where}: project {project_id} is not registered (no project.registered)"
        )
    return row


def _reached(state: RuleState, project_id: str) -> dict[str, Row]:
    """The project's reached stages, by stage."""
    out = {}
    for stage in STAGES:
        row = state.rows.get("project_stages", project_id, stage)
        if row is not None:
            out[stage] = row
    return out


def _check_notice(
    where: str, start: str, end: str, posted: str, reached: Mapping[str, Row]
) -> None:
    days = (date.fromisoformat(end) - date.fromisoformat(start)).days + 1
    if days < NOTICE_MIN_DAYS:
        raise RuleViolation(
            f"{where}: notice period {start} to {end} is {days} days; 公示 lasts at least "
            f"{NOTICE_MIN_DAYS} days (both ends counted)"
        )
    accepted = reached.get("accepted")
    if accepted is not None and start < accepted["date"]:
        raise RuleViolation(
            f"{where}: notice_start {start} is before acceptance on {accepted['date']} "
            f"(seq {accepted['first_seq']})"
        )
    if posted < start:
        raise RuleViolation(
            f"{where}: date {posted} is before notice_start {start}; record a notice once posted"
        )


def _check_signers(
    entry: Entry, state: RuleState, project: Row, policy: Sequence[Sequence[str]], what: str
) -> None:
    """The signers satisfy ``policy``; a contractor key signs only for its own projects
    (its org MUST equal the project's contractor)."""
    for record in signer_roles(entry, state).values():
        if record.role == CONTRACTOR and record.org != project["contractor"]:
            raise RuleViolation(
                f"{entry.kind}: key {record.name} is a contractor key of {record.org!r}; project "
                f"{project['id']}'s contractor is {project['contractor']!r}"
            )
    common.require_one_of(entry, state, policy, what)


# --- project.registered ---------------------------------------------------------------------------


def _check_registered(entry: Entry, state: RuleState) -> None:
    where = entry.kind
    body = entry.body
    common.only_fields(body, where, REGISTERED_SCHEMA["required"], ["contractor", "quantities"])
    project_id = common.ident(body, "id", where)
    common.bilingual(body, "name", where)
    _category(body, where)
    common.amount_fen(body, "budget_fen", where)
    common.location(body, "location", where)
    common.text(body, "owner", where)
    if "contractor" in body:
        common.text(body, "contractor", where)
    _check_plan_order(_plan(body, where, empty_ok=True), where)
    if "quantities" in body:
        _quantities(body, where)
    common.require_one_of(entry, state, _OWNER)
    existing = get_project(state.rows, project_id)
    if existing is not None:
        raise Conflict(
            f"{where}: project {project_id} is already registered (seq {existing['registered_seq']})"
        )


def _apply_registered(entry: Entry, state: RuleState) -> None:
    body = entry.body
    project_id = body["id"]
    state.rows.put(
        "projects",
        {
            "id": project_id,
            "seq": entry.seq,
            "name_zh": body["name"]["zh"],
            "name_en": body["name"].get("en"),
            "category": body["category"],
            "budget_fen": body["budget_fen"],
            **common.location_columns(body["location"]),
            "owner": body["owner"],
            "contractor": body.get("contractor"),
            "contract_fen": None,
            "quantities": canonical.dumps(body.get("quantities", {})).decode("utf-8"),
            "status": "registered",
            "progress_pct": 0,
            "progress_date": None,
            "progress_seq": None,
            "notice_start": None,
            "notice_end": None,
            "registered_seq": entry.seq,
        },
    )
    for item in body["plan"]:
        _put_plan(state, project_id, item["stage"], item["due"], entry.seq)
    state.rows.put("project_events", _event(entry, project_id, None, None, 0))


def _put_plan(state: RuleState, project_id: str, stage: str, due: str, seq: int) -> None:
    state.rows.put("project_plan", {"project": project_id, "stage": stage, "due": due, "seq": seq})


def _event(
    entry: Entry,
    project_id: str,
    stage: str | None,
    when: str | None,
    evidence: int,
    percent: int | None = None,
    prev_percent: int | None = None,
) -> Row:
    return {
        "project": project_id,
        "entry_seq": entry.seq,
        "kind": entry.kind,
        "stage": stage,
        "date": when,
        "evidence": evidence,
        "percent": percent,
        "prev_percent": prev_percent,
        "seq": entry.seq,
    }


# --- project.milestone ------------------------------------------------------------------------------


def _check_milestone_body(body: Mapping[str, Any], where: str) -> str:
    """Validate the shape; return the stage."""
    stage = _stage(body, where)
    specific = _STAGE_FIELDS.get(stage, ())
    common.only_fields(body, where, ["project", "stage", "date", *specific], ["evidence", "note"])
    common.ident(body, "project", where)
    common.date_field(body, "date", where)
    docs = common.evidence(body, "evidence", where)
    if stage in EVIDENCE_REQUIRED and not docs:
        raise InvalidEntry(f"{where}: a {stage} milestone needs at least one evidence document")
    if "note" in body:
        common.text(body, "note", where, MAX_NOTE)
    if stage == "progress":
        _percent(body, where)
    if stage == "contracted":
        common.amount_fen(body, "contract_fen", where)
        common.text(body, "contractor", where)
    if stage == "notice":
        common.date_field(body, "notice_start", where)
        common.date_field(body, "notice_end", where)
    return stage


def _check_milestone(entry: Entry, state: RuleState) -> None:
    where = entry.kind
    body = entry.body
    stage = _check_milestone_body(body, where)
    project_id = body["project"]
    when = body["date"]
    project = _existing(state, project_id, where)
    reached = _reached(state, project_id)
    if stage in reached and stage != "progress":
        raise Conflict(
            f"{where}: project {project_id} reached {stage} already (seq {reached[stage]['first_seq']}); "
            "fix a milestone with project.corrected"
        )
    needed = PREREQUISITE[stage]
    if needed is not None and needed not in reached:
        raise RuleViolation(
            f"{where}: project {project_id} cannot record {stage} before {needed} "
            f"(status {project['status']}); stages come in the order {', '.join(STAGES)}"
        )
    if stage == "progress":
        if "completed" in reached:
            raise RuleViolation(
                f"{where}: project {project_id} was completed (seq {reached['completed']['first_seq']}); "
                "no more progress reports"
            )
        if body["percent"] <= project["progress_pct"]:
            raise RuleViolation(
                f"{where}: progress {body['percent']}% must exceed the last report's "
                f"{project['progress_pct']}% (seq {project['progress_seq']})"
            )
    latest = max(
        [(r["date"], r["first_seq"]) for r in reached.values()]
        + (
            [(project["progress_date"], project["progress_seq"])]
            if project["progress_date"]
            else []
        ),
        default=None,
    )
    if latest is not None and when < latest[0]:
        raise RuleViolation(
            f"{where}: date {when} is before the project's previous milestone on {latest[0]} "
            f"(seq {latest[1]})"
        )
    common.not_after_created(entry, when, "date")
    if stage == "contracted" and body["contract_fen"] > project["budget_fen"]:
        raise RuleViolation(
            f"{where}: contract amount {body['contract_fen']} fen exceeds project {project_id}'s "
            f"budget {project['budget_fen']} fen"
        )
    if stage == "notice":
        _check_notice(where, body["notice_start"], body["notice_end"], when, reached)
    if stage == "contracted":
        project = {**project, "contractor": body["contractor"]}
    _check_signers(entry, state, project, STAGE_SIGNERS[stage], f" ({stage})")


def _apply_milestone(entry: Entry, state: RuleState) -> None:
    body = entry.body
    project_id, stage, when = body["project"], body["stage"], body["date"]
    docs = len(body.get("evidence", []))
    row = state.rows.get("project_stages", project_id, stage)
    if row is None:
        row = {
            "project": project_id,
            "stage": stage,
            "first_seq": entry.seq,
            "evidence": 0,
            "date": when,
        }
    row.update(evidence=row["evidence"] + docs, seq=entry.seq)
    state.rows.put("project_stages", row)
    project = get_project(state.rows, project_id)
    assert project is not None  # check_milestone ran
    previous = project["progress_pct"]
    project.update(status=stage, seq=entry.seq)
    if stage == "contracted":
        project.update(contractor=body["contractor"], contract_fen=body["contract_fen"])
    elif stage == "progress":
        project.update(progress_pct=body["percent"], progress_date=when, progress_seq=entry.seq)
    elif stage == "completed":
        project["progress_pct"] = 100
    elif stage == "notice":
        project.update(notice_start=body["notice_start"], notice_end=body["notice_end"])
    state.rows.put("projects", project)
    percent = body.get("percent")
    state.rows.put(
        "project_events",
        _event(entry, project_id, stage, when, docs, percent, previous if percent else None),
    )


# --- project.evidence ---------------------------------------------------------------------------------


def _check_evidence(entry: Entry, state: RuleState) -> None:
    where = entry.kind
    body = entry.body
    common.only_fields(body, where, EVIDENCE_ENTRY_SCHEMA["required"], ["note"])
    project_id = common.ident(body, "project", where)
    stage = _stage(body, where)
    if not common.evidence(body, "evidence", where):
        raise InvalidEntry(f"{where}: evidence must list at least one document")
    if "note" in body:
        common.text(body, "note", where, MAX_NOTE)
    project = _existing(state, project_id, where)
    if stage_reached(state.rows, project_id, stage) is None:
        raise RuleViolation(
            f"{where}: project {project_id} has not reached {stage} (status {project['status']}); "
            "record the milestone first"
        )
    _check_signers(entry, state, project, EVIDENCE_SIGNERS[stage], f" ({stage})")


def _apply_evidence(entry: Entry, state: RuleState) -> None:
    body = entry.body
    project_id, stage = body["project"], body["stage"]
    row = state.rows.get("project_stages", project_id, stage)
    assert row is not None  # check_evidence ran
    docs = len(body["evidence"])
    row.update(evidence=row["evidence"] + docs, seq=entry.seq)
    state.rows.put("project_stages", row)
    state.rows.put("project_events", _event(entry, project_id, stage, None, docs))


# --- project.amended ----------------------------------------------------------------------------------


def _check_amended(entry: Entry, state: RuleState) -> None:
    where = entry.kind
    body = entry.body
    common.only_fields(body, where, ["project", "reason"], AMENDABLE)
    project_id = common.ident(body, "project", where)
    common.text(body, "reason", where, MAX_REASON)
    if not any(name in body for name in AMENDABLE):
        raise InvalidEntry(f"{where}: name at least one of {', '.join(AMENDABLE)} to amend")
    if "name" in body:
        common.bilingual(body, "name", where)
    if "budget_fen" in body:
        common.amount_fen(body, "budget_fen", where)
    if "location" in body:
        common.location(body, "location", where)
    if "owner" in body:
        common.text(body, "owner", where)
    plan = _plan(body, where, empty_ok=False) if "plan" in body else {}
    if "quantities" in body:
        _quantities(body, where)
    project = _existing(state, project_id, where)
    if (
        "budget_fen" in body
        and project["contract_fen"] is not None
        and body["budget_fen"] < project["contract_fen"]
    ):
        raise RuleViolation(
            f"{where}: budget {body['budget_fen']} fen is below project {project_id}'s contract "
            f"amount {project['contract_fen']} fen"
        )
    if plan:
        merged = {}
        for stage in PLANNED_STAGES:
            row = state.rows.get("project_plan", project_id, stage)
            if row is not None:
                merged[stage] = row["due"]
        _check_plan_order({**merged, **plan}, where)
    common.require_one_of(entry, state, ((COUNTY,),))


def _apply_amended(entry: Entry, state: RuleState) -> None:
    body = entry.body
    project_id = body["project"]
    project = get_project(state.rows, project_id)
    assert project is not None  # check_amended ran
    if "name" in body:
        project.update(name_zh=body["name"]["zh"], name_en=body["name"].get("en"))
    if "budget_fen" in body:
        project["budget_fen"] = body["budget_fen"]
    if "location" in body:
        project.update(common.location_columns(body["location"]))
    if "owner" in body:
        project["owner"] = body["owner"]
    if "quantities" in body:
        project["quantities"] = canonical.dumps(body["quantities"]).decode("utf-8")
    project["seq"] = entry.seq
    state.rows.put("projects", project)
    for item in body.get("plan", []):
        _put_plan(state, project_id, item["stage"], item["due"], entry.seq)
    state.rows.put("project_events", _event(entry, project_id, None, None, 0))


# --- project.corrected --------------------------------------------------------------------------------


def _check_corrected(entry: Entry, state: RuleState) -> None:
    where = entry.kind
    body = entry.body
    common.only_fields(body, where, ["project", "ref", "reason"], _ALL_CORRECTABLE)
    project_id = common.ident(body, "project", where)
    ref = _ref(body, where, entry.seq)
    common.text(body, "reason", where, MAX_REASON)
    changes = [name for name in _ALL_CORRECTABLE if name in body]
    if not changes:
        raise InvalidEntry(
            f"{where}: name at least one of {', '.join(_ALL_CORRECTABLE)} to correct"
        )
    for name in ("date", "notice_start", "notice_end"):
        if name in body:
            common.date_field(body, name, where)
    if "percent" in body:
        _percent(body, where)
    if "contract_fen" in body:
        common.amount_fen(body, "contract_fen", where)
    if "contractor" in body:
        common.text(body, "contractor", where)
    project = _existing(state, project_id, where)
    target = state.rows.get("project_events", project_id, ref)
    if target is None or target["kind"] != "project.milestone":
        raise RuleViolation(f"{where}: seq {ref} is not a milestone entry of project {project_id}")
    stage = target["stage"]
    wrong = [name for name in changes if name not in CORRECTABLE[stage]]
    if wrong:
        raise InvalidEntry(
            f"{where}: {', '.join(wrong)} cannot be corrected on a {stage} milestone (seq {ref}); "
            f"correctable: {', '.join(CORRECTABLE[stage])}"
        )
    reached = _reached(state, project_id)
    when = body.get("date", target["date"])
    if "date" in body:
        _check_date_bounds(where, when, stage, reached, ref)
        common.not_after_created(entry, when, "date")
    if "percent" in body:
        if project["status"] != "progress" or project["progress_seq"] != ref:
            raise RuleViolation(
                f"{where}: only the latest progress report may have its percent corrected, and only "
                f"before completion (latest: seq {project['progress_seq']}, status {project['status']})"
            )
        if body["percent"] <= target["prev_percent"]:
            raise RuleViolation(
                f"{where}: corrected progress {body['percent']}% must exceed the report before it, "
                f"{target['prev_percent']}%"
            )
    if "contract_fen" in body and body["contract_fen"] > project["budget_fen"]:
        raise RuleViolation(
            f"{where}: contract amount {body['contract_fen']} fen exceeds project {project_id}'s "
            f"budget {project['budget_fen']} fen"
        )
    if stage == "notice":
        start = body.get("notice_start", project["notice_start"])
        end = body.get("notice_end", project["notice_end"])
        _check_notice(where, start, end, when, reached)
    common.require_one_of(entry, state, ((COUNTY,),))


def _check_date_bounds(
    where: str, when: str, stage: str, reached: Mapping[str, Row], ref: int
) -> None:
    """A corrected date MUST stay between the dates of the stages before and after it."""
    position = STAGES.index(stage)
    for other, row in reached.items():
        before = STAGES.index(other) < position
        if other == stage:
            continue
        if (before and when < row["date"]) or (not before and when > row["date"]):
            raise RuleViolation(
                f"{where}: date {when} for the {stage} milestone (seq {ref}) would fall "
                f"{'before' if before else 'after'} {other} on {row['date']} (seq {row['first_seq']})"
            )


def _apply_corrected(entry: Entry, state: RuleState) -> None:
    body = entry.body
    project_id, ref = body["project"], body["ref"]
    target = state.rows.get("project_events", project_id, ref)
    assert target is not None  # check_corrected ran
    stage = target["stage"]
    if "date" in body:
        target["date"] = body["date"]
        stage_row = state.rows.get("project_stages", project_id, stage)
        if stage_row is not None and stage_row["first_seq"] == ref:
            stage_row.update(date=body["date"], seq=entry.seq)
            state.rows.put("project_stages", stage_row)
    if "percent" in body:
        target["percent"] = body["percent"]
    target["seq"] = entry.seq
    state.rows.put("project_events", target)
    project = get_project(state.rows, project_id)
    assert project is not None
    if stage == "progress" and project["progress_seq"] == ref:
        project.update(progress_pct=target["percent"], progress_date=target["date"])
    for name in ("contract_fen", "contractor", "notice_start", "notice_end"):
        if name in body:
            project[name] = body[name]
    project["seq"] = entry.seq
    state.rows.put("projects", project)
    state.rows.put("project_events", _event(entry, project_id, stage, None, 0))


register_kind(
    KindSpec(
        "project.registered",
        "register a project (扶贫项目) with budget, location, owner and plan",
        _check_registered,
        _apply_registered,
        schema=REGISTERED_SCHEMA,
        signers="a county_approver or a township_approver",
    )
)
register_kind(
    KindSpec(
        "project.milestone",
        "record a project milestone (立项 … 验收, 公示) with its evidence documents",
        _check_milestone,
        _apply_milestone,
        schema=MILESTONE_SCHEMA,
        signers=(
            "approved: a county_approver; tendered, contracted: a county_approver or "
            "township_approver; started, progress, completed: the project's contractor (a "
            "contractor key whose org is the project's contractor), a township_approver or a "
            "county_approver; accepted: a county_approver and a township_approver (distinct "
            "keys); notice: a village_approver or a township_approver"
        ),
    )
)
register_kind(
    KindSpec(
        "project.evidence",
        "add evidence documents to a milestone stage already reached",
        _check_evidence,
        _apply_evidence,
        schema=EVIDENCE_ENTRY_SCHEMA,
        signers=(
            "whoever may record that stage (for accepted, one county_approver or township_approver)"
        ),
    )
)
register_kind(
    KindSpec(
        "project.amended",
        "amend a project's registration: name, budget, location, owner, plan, quantities",
        _check_amended,
        _apply_amended,
        schema=AMENDED_SCHEMA,
        signers="a county_approver",
    )
)
register_kind(
    KindSpec(
        "project.corrected",
        "correct a milestone entry (date, percent, contract, notice dates) by naming its seq",
        _check_corrected,
        _apply_corrected,
        schema=CORRECTED_SCHEMA,
        signers="a county_approver",
    )
)


# --- queries ----------------------------------------------------------------------------------------


def _check_date(value: str, name: str) -> str:
    try:
        return common.date_field({name: value}, name, "query")
    except InvalidEntry as exc:
        raise InvalidInput(str(exc)) from None


def _name(row: Mapping[Any, Any]) -> dict[str, str]:
    name = {"zh": row["name_zh"]}
    if row["name_en"] is not None:
        name["en"] = row["name_en"]
    return name


def _summary(row: Mapping[Any, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": _name(row),
        "category": row["category"],
        "budget_fen": row["budget_fen"],
        "location": common.location_of(row),
        "owner": row["owner"],
        "contractor": row["contractor"],
        "contract_fen": row["contract_fen"],
        "status": row["status"],
        "progress_pct": row["progress_pct"],
        "registered_seq": row["registered_seq"],
        "seq": row["seq"],
    }


def list_projects(
    conn: Connection,
    *,
    county: str | None = None,
    township: str | None = None,
    village: str | None = None,
    status: str | None = None,
    category: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Projects by id: ``[{"id", "name": {"zh"[, "en"]}, "category", "budget_fen", "location",
    "owner", "contractor", "contract_fen", "status", "progress_pct", "registered_seq", "seq"}]``,
    filtered by any of the keyword arguments."""
    if status is not None and status not in ("registered", *STAGES):
        raise InvalidInput(
            f"status must be registered or one of {', '.join(STAGES)}, got {status!r}"
        )
    if category is not None and category not in CATEGORIES:
        raise InvalidInput(f"category must be one of {', '.join(CATEGORIES)}, got {category!r}")
    filters = {
        "county": county,
        "township": township,
        "village": village,
        "status": status,
        "category": category,
    }
    query = select(projects).where(
        *[projects.c[name] == value for name, value in filters.items() if value is not None]
    )
    query = query.order_by(projects.c.id).limit(max(0, limit)).offset(max(0, offset))
    return [_summary(row) for row in conn.execute(query).mappings()]


def project_view(conn: Connection, project_id: str, *, as_of: str | None = None) -> dict[str, Any]:
    """Everything about one project.  Raises :class:`NotFound`.

    Returns the fields of :func:`list_projects` plus ``"quantities": {…}``,
    ``"progress_date"``, ``"progress_seq"``, ``"notice": {"start", "end"} | None``,
    ``"plan": [{"stage", "due", "seq", "reached_seq", "reached_date", "state"}]`` in stage
    order, where ``state`` is ``done`` (reached by the due date), ``late`` (reached after
    it), ``overdue`` (not reached, due before ``as_of``) or ``pending``;
    ``"stages": [{"stage", "first_seq", "date", "evidence" (documents so far), "seq"}]``
    in stage order; and ``"events": [{"seq", "kind", "stage", "date", "percent",
    "evidence": [{"sha256", "name", "media_type", "size"}], "corrected_seq" (the latest
    project.corrected of this milestone, or None), "body"}]`` oldest first, where
    ``date``/``percent`` are the corrected values and ``body`` is the entry as signed.
    """
    if as_of is not None:
        _check_date(as_of, "as_of")
    row = conn.execute(select(projects).where(projects.c.id == project_id)).mappings().first()
    if row is None:
        raise NotFound(f"no project with id {project_id!r}")
    stages = {
        r["stage"]: r
        for r in conn.execute(
            select(project_stages).where(project_stages.c.project == project_id)
        ).mappings()
    }
    plan = {
        r["stage"]: r
        for r in conn.execute(
            select(project_plan).where(project_plan.c.project == project_id)
        ).mappings()
    }
    events = list(
        conn.execute(
            select(project_events)
            .where(project_events.c.project == project_id)
            .order_by(project_events.c.entry_seq)
        ).mappings()
    )
    bodies = _bodies(conn, [e["entry_seq"] for e in events])
    out = _summary(row)
    out.update(
        quantities=canonical.parse(row["quantities"]),
        progress_date=row["progress_date"],
        progress_seq=row["progress_seq"],
        notice=(
            None
            if row["notice_start"] is None
            else {"start": row["notice_start"], "end": row["notice_end"]}
        ),
        plan=[_plan_item(plan[s], stages.get(s), as_of) for s in STAGES if s in plan],
        stages=[
            {k: stages[s][k] for k in ("stage", "first_seq", "date", "evidence", "seq")}
            for s in STAGES
            if s in stages
        ],
        events=[
            {
                "seq": e["entry_seq"],
                "kind": e["kind"],
                "stage": e["stage"],
                "date": e["date"],
                "percent": e["percent"],
                "evidence": list(bodies[e["entry_seq"]].get("evidence", [])),
                "corrected_seq": e["seq"] if e["seq"] != e["entry_seq"] else None,
                "body": bodies[e["entry_seq"]],
            }
            for e in events
        ],
    )
    return out


def _plan_item(
    plan: Mapping[Any, Any], stage: Mapping[Any, Any] | None, as_of: str | None
) -> dict[str, Any]:
    due = plan["due"]
    if stage is not None:
        state = "done" if stage["date"] <= due else "late"
    else:
        state = "overdue" if as_of is not None and due < as_of else "pending"
    return {
        "stage": plan["stage"],
        "due": due,
        "seq": plan["seq"],
        "reached_seq": None if stage is None else stage["first_seq"],
        "reached_date": None if stage is None else stage["date"],
        "state": state,
    }


def _bodies(conn: Connection, seqs: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The bodies of the entries ``seqs``, decoded from their leaves."""
    if not seqs:
        return {}
    rows = conn.execute(
        select(schema.entries.c.seq, schema.entries.c.leaf).where(schema.entries.c.seq.in_(seqs))
    )
    return {int(r.seq): dict(decode_entry(bytes(r.leaf)).body) for r in rows}


def overdue_milestones(
    conn: Connection, as_of: str, *, county: str | None = None
) -> list[dict[str, Any]]:
    """Planned stages due before ``as_of`` (YYYY-MM-DD) and not reached, most overdue first:
    ``[{"project", "name", "county", "township", "village", "status", "stage", "due",
    "days_overdue", "plan_seq" (the entry that set the due date)}]``."""
    _check_date(as_of, "as_of")
    query = (
        select(
            project_plan.c.project,
            project_plan.c.stage,
            project_plan.c.due,
            project_plan.c.seq,
            projects.c.name_zh,
            projects.c.name_en,
            projects.c.county,
            projects.c.township,
            projects.c.village,
            projects.c.status,
        )
        .join(projects, projects.c.id == project_plan.c.project)
        .outerjoin(
            project_stages,
            (project_stages.c.project == project_plan.c.project)
            & (project_stages.c.stage == project_plan.c.stage),
        )
        .where(project_plan.c.due < as_of, project_stages.c.first_seq.is_(None))
        .order_by(project_plan.c.due, project_plan.c.project)
    )
    if county is not None:
        query = query.where(projects.c.county == county)
    today = date.fromisoformat(as_of)
    return [
        {
            "project": r["project"],
            "name": _name(r),
            "county": r["county"],
            "township": r["township"],
            "village": r["village"],
            "status": r["status"],
            "stage": r["stage"],
            "due": r["due"],
            "days_overdue": (today - date.fromisoformat(r["due"])).days,
            "plan_seq": r["seq"],
        }
        for r in conn.execute(query).mappings()
    ]


def stages_without_evidence(
    conn: Connection, *, project: str | None = None
) -> list[dict[str, Any]]:
    """Reached stages with no evidence document at all, by project then stage order:
    ``[{"project", "name", "stage", "first_seq", "date", "seq"}]``."""
    query = (
        select(project_stages, projects.c.name_zh, projects.c.name_en)
        .join(projects, projects.c.id == project_stages.c.project)
        .where(project_stages.c.evidence == 0)
    )
    if project is not None:
        query = query.where(project_stages.c.project == project)
    rows = list(conn.execute(query).mappings())
    rows.sort(key=lambda r: (r["project"], STAGES.index(r["stage"])))
    return [
        {
            "project": r["project"],
            "name": _name(r),
            "stage": r["stage"],
            "first_seq": r["first_seq"],
            "date": r["date"],
            "seq": r["seq"],
        }
        for r in rows
    ]
