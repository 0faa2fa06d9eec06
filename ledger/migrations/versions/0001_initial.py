"""The first schema: entries, tree nodes, checkpoints, key registry projection, API tokens.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SeqType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "meta",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "log_state",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("last_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("last_time", sa.String(32), nullable=False),
        sa.Column("registry_seq", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "entries",
        sa.Column("seq", SeqType, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("stmt_hash", sa.LargeBinary(32), nullable=False, unique=True),
        sa.Column("leaf", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "tree_nodes",
        sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "checkpoints",
        sa.Column("size", SeqType, primary_key=True, autoincrement=False),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("created", sa.String(32), nullable=False),
    )
    op.create_table(
        "keys",
        sa.Column("key_id", sa.String(300), primary_key=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("vkey", sa.Text, nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("org", sa.String(256), nullable=False),
        sa.Column("registered_seq", sa.BigInteger, nullable=False),
        sa.Column("revoked_seq", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "api_tokens",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("token_hash", sa.LargeBinary(32), nullable=False, unique=True),
        sa.Column("created", sa.String(32), nullable=False),
        sa.Column("revoked", sa.String(32), nullable=True),
    )


def downgrade() -> None:
    for table in (
        "api_tokens",
        "keys",
        "checkpoints",
        "tree_nodes",
        "entries",
        "log_state",
        "meta",
    ):
        op.drop_table(table)
