"""Households and projects: projection tables of the household.* and project.* entries,
and the off-ledger table of households' encrypted personal data.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "households",
        sa.Column("code", sa.String(32), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("province", sa.Text, nullable=False),
        sa.Column("city", sa.Text, nullable=False),
        sa.Column("county", sa.Text, nullable=False),
        sa.Column("township", sa.Text, nullable=True),
        sa.Column("village", sa.Text, nullable=True),
        sa.Column("commitment", sa.String(64), nullable=False),
        sa.Column("identified_seq", sa.BigInteger, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("division_code", sa.String(12), nullable=True),
        sa.Column("members", sa.Integer, nullable=False),
        sa.Column("causes", sa.Text, nullable=False),
        sa.Column("year", sa.Integer, nullable=False),
        sa.Column("status_date", sa.String(10), nullable=True),
        sa.Column("status_seq", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_households_place", "households", ["county", "township", "village"])
    op.create_table(
        "household_events",
        sa.Column("code", sa.String(32), primary_key=True),
        sa.Column("entry_seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("date", sa.String(10), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "household_private",
        sa.Column("code", sa.String(32), primary_key=True),
        sa.Column("wrapped_key", sa.LargeBinary, nullable=True),
        sa.Column("nonce", sa.LargeBinary, nullable=True),
        sa.Column("ciphertext", sa.LargeBinary, nullable=True),
        sa.Column("commitment", sa.String(64), nullable=True),
        sa.Column("stored", sa.String(32), nullable=False),
        sa.Column("erased", sa.String(32), nullable=True),
    )
    op.create_table(
        "projects",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("name_zh", sa.Text, nullable=False),
        sa.Column("name_en", sa.Text, nullable=True),
        sa.Column("category", sa.String(16), nullable=False),
        sa.Column("budget_fen", sa.BigInteger, nullable=False),
        sa.Column("province", sa.Text, nullable=False),
        sa.Column("city", sa.Text, nullable=False),
        sa.Column("county", sa.Text, nullable=False),
        sa.Column("township", sa.Text, nullable=True),
        sa.Column("village", sa.Text, nullable=True),
        sa.Column("division_code", sa.String(12), nullable=True),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("contractor", sa.Text, nullable=True),
        sa.Column("contract_fen", sa.BigInteger, nullable=True),
        sa.Column("quantities", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("progress_pct", sa.Integer, nullable=False),
        sa.Column("progress_date", sa.String(10), nullable=True),
        sa.Column("progress_seq", sa.BigInteger, nullable=True),
        sa.Column("notice_start", sa.String(10), nullable=True),
        sa.Column("notice_end", sa.String(10), nullable=True),
        sa.Column("registered_seq", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_projects_county", "projects", ["county"])
    op.create_table(
        "project_plan",
        sa.Column("project", sa.String(64), primary_key=True),
        sa.Column("stage", sa.String(16), primary_key=True),
        sa.Column("due", sa.String(10), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_project_plan_due", "project_plan", ["due"])
    op.create_table(
        "project_stages",
        sa.Column("project", sa.String(64), primary_key=True),
        sa.Column("stage", sa.String(16), primary_key=True),
        sa.Column("first_seq", sa.BigInteger, nullable=False),
        sa.Column("evidence", sa.Integer, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("date", sa.String(10), nullable=False),
    )
    op.create_table(
        "project_events",
        sa.Column("project", sa.String(64), primary_key=True),
        sa.Column("entry_seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("stage", sa.String(16), nullable=True),
        sa.Column("date", sa.String(10), nullable=True),
        sa.Column("evidence", sa.Integer, nullable=False),
        sa.Column("percent", sa.Integer, nullable=True),
        sa.Column("prev_percent", sa.Integer, nullable=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "project_events",
        "project_stages",
        "project_plan",
        "projects",
        "household_private",
        "household_events",
        "households",
    ):
        op.drop_table(table)
