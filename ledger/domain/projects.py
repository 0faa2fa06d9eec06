"""Projects (扶贫项目) and their milestones.

Interface other domain modules rely on (keep it stable):

* table ``projects`` (projection), primary key ``id``;
* :func:`get_project` — the project's row, or None;
* table ``project_stages`` (projection), primary key (``project``, ``stage``),
  with ``first_seq`` and ``evidence`` (how many evidence documents that stage has);
* :func:`stage_reached` — the seq of the first entry that brought a project to a
  milestone stage (``approved``, ``tendered``, ``contracted``, ``started``,
  ``progress``, ``completed``, ``accepted``, ``notice``), or None.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, String, Table

from ledger.projection import Projection, Row, register_projection
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
)
register_projection(projects)

project_stages = Table(
    "project_stages",
    metadata,
    Column("project", String(64), primary_key=True),
    Column("stage", String(16), primary_key=True),
    Column("first_seq", BigInteger, nullable=False),
    Column("evidence", Integer, nullable=False),  # evidence documents recorded for this stage so far
    Column("seq", BigInteger, nullable=False),
)
register_projection(project_stages)


def get_project(rows: Projection, project_id: str) -> Row | None:
    return rows.get("projects", project_id)


def stage_reached(rows: Projection, project_id: str, stage: str) -> int | None:
    """Seq of the first entry that recorded ``stage`` for the project, or None."""
    row = rows.get("project_stages", project_id, stage)
    return None if row is None else int(row["first_seq"])
