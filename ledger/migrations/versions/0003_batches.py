"""Batches: projection tables of the batch.* entries.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("gtin", sa.String(14), primary_key=True),
        sa.Column("lot", sa.String(20), primary_key=True),
        sa.Column("product_zh", sa.Text, nullable=False),
        sa.Column("product_en", sa.Text, nullable=True),
        sa.Column("producer", sa.Text, nullable=False),
        sa.Column("province", sa.Text, nullable=True),
        sa.Column("city", sa.Text, nullable=True),
        sa.Column("county", sa.Text, nullable=True),
        sa.Column("township", sa.Text, nullable=True),
        sa.Column("village", sa.Text, nullable=True),
        sa.Column("division_code", sa.String(12), nullable=True),
        sa.Column("produced", sa.String(10), nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("remaining", sa.BigInteger, nullable=False),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.Column("net_quantity", sa.BigInteger, nullable=True),
        sa.Column("net_unit", sa.String(16), nullable=True),
        sa.Column("inspection", sa.String(8), nullable=False),
        sa.Column("inspection_seq", sa.BigInteger, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("disposition", sa.String(32), nullable=False),
        sa.Column("recalled_seq", sa.BigInteger, nullable=True),
        sa.Column("recall_gtin", sa.String(14), nullable=True),
        sa.Column("recall_lot", sa.String(20), nullable=True),
        sa.Column("destroyed_seq", sa.BigInteger, nullable=True),
        sa.Column("parents", sa.Integer, nullable=False),
        sa.Column("children", sa.Integer, nullable=False),
        sa.Column("registered_seq", sa.BigInteger, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_batches_registered_seq", "batches", ["registered_seq"])
    op.create_index("ix_batches_producer", "batches", ["producer", "registered_seq"])
    op.create_table(
        "batch_lot_folds",
        sa.Column("gtin", sa.String(14), primary_key=True),
        sa.Column("fold", sa.String(20), primary_key=True),
        sa.Column("lot", sa.String(20), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "batch_links",
        sa.Column("parent_gtin", sa.String(14), primary_key=True),
        sa.Column("parent_lot", sa.String(20), primary_key=True),
        sa.Column("n", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("child_gtin", sa.String(14), nullable=False),
        sa.Column("child_lot", sa.String(20), nullable=False),
        sa.Column("consumed", sa.BigInteger, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_batch_links_child", "batch_links", ["child_gtin", "child_lot"])
    op.create_table(
        "batch_households",
        sa.Column("gtin", sa.String(14), primary_key=True),
        sa.Column("lot", sa.String(20), primary_key=True),
        sa.Column("household", sa.String(32), primary_key=True),
        sa.Column("share_permille", sa.Integer, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_batch_households_household", "batch_households", ["household"])
    op.create_table(
        "batch_certifications",
        sa.Column("gtin", sa.String(14), primary_key=True),
        sa.Column("lot", sa.String(20), primary_key=True),
        sa.Column("scheme", sa.String(32), primary_key=True),
        sa.Column("number", sa.String(64), primary_key=True),
        sa.Column("valid_until", sa.String(10), nullable=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "batch_events",
        sa.Column("gtin", sa.String(14), primary_key=True),
        sa.Column("lot", sa.String(20), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("biz_step", sa.String(32), nullable=True),
        sa.Column("disposition", sa.String(32), nullable=True),
        sa.Column("time", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "batch_events",
        "batch_certifications",
        "batch_households",
        "batch_links",
        "batch_lot_folds",
        "batches",
    ):
        op.drop_table(table)
