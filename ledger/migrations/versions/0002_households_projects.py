"""Households and projects: projection tables of the household.* and project.* entries.

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
    )
    op.create_table(
        "projects",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "project_stages",
        sa.Column("project", sa.String(64), primary_key=True),
        sa.Column("stage", sa.String(16), primary_key=True),
        sa.Column("first_seq", sa.BigInteger, nullable=False),
        sa.Column("evidence", sa.Integer, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("project_stages")
    op.drop_table("projects")
    op.drop_table("households")
