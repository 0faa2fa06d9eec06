"""Witnessing: the witnesses the log submits its checkpoints to, and their cosignatures.

Beside the ledger, not part of it (C2SP tlog-witness / tlog-cosignature): a cosignature
is a witness's signed statement about a checkpoint the log had already signed, so these
rows can be lost without losing or changing any entry.  See ledger/witnessing.py.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "witnesses",
        sa.Column("key_id", sa.String(300), primary_key=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("vkey", sa.Text, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("added", sa.String(32), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
    )
    op.create_table(
        "witness_state",
        sa.Column("key_id", sa.String(300), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("attempted", sa.String(32), nullable=True),
        sa.Column("acknowledged", sa.String(32), nullable=True),
    )
    op.create_table(
        "cosignatures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("key_id", sa.String(300), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("line", sa.Text, nullable=False),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
        sa.Column("received", sa.String(32), nullable=False),
        sa.UniqueConstraint("size", "key_id", name="uq_cosignatures_size_key"),
    )


def downgrade() -> None:
    op.drop_table("cosignatures")
    op.drop_table("witness_state")
    op.drop_table("witnesses")
