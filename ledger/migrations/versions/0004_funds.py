"""Funds: projection tables of the fund.* entries (ledger/domain/funds.py).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fund_sources",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("year", sa.Integer, nullable=False),
        sa.Column("payer", sa.Text, nullable=False),
        sa.Column("amount_fen", sa.BigInteger, nullable=False),
        sa.Column("allocated_fen", sa.BigInteger, nullable=False),
        sa.Column("allocations", sa.Integer, nullable=False),
        sa.Column("source_seq", sa.BigInteger, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "fund_scopes",
        sa.Column("scope_type", sa.String(16), primary_key=True),
        sa.Column("scope", sa.String(64), primary_key=True),
        sa.Column("purpose", sa.String(32), nullable=True),
        sa.Column("period_form", sa.String(8), nullable=True),
        sa.Column("first_seq", sa.BigInteger, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "fund_allocations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("scope_type", sa.String(16), nullable=False),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("name", sa.Text, nullable=True),
        sa.Column("amount_fen", sa.BigInteger, nullable=False),
        sa.Column("disbursed_fen", sa.BigInteger, nullable=False),
        sa.Column("disbursements", sa.Integer, nullable=False),
        sa.Column("approvals", sa.Text, nullable=False),
        sa.Column("once_per_period", sa.Integer, nullable=False),
        sa.Column("max_per_recipient_fen", sa.BigInteger, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("allocated_seq", sa.BigInteger, nullable=False),
        sa.Column("reversed_seq", sa.BigInteger, nullable=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_fund_allocations_source", "fund_allocations", ["source", "allocated_seq"])
    op.create_index(
        "ix_fund_allocations_scope", "fund_allocations", ["scope_type", "scope", "allocated_seq"]
    )
    op.create_table(
        "fund_disbursements",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("allocation", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("recipient_type", sa.String(16), nullable=False),
        sa.Column("household", sa.String(32), nullable=True),
        sa.Column("org", sa.Text, nullable=True),
        sa.Column("credit_code", sa.String(18), nullable=True),
        sa.Column("county", sa.Text, nullable=False),
        sa.Column("township", sa.Text, nullable=False),
        sa.Column("village", sa.Text, nullable=False),
        sa.Column("period", sa.String(8), nullable=False),
        sa.Column("amount_fen", sa.BigInteger, nullable=False),
        sa.Column("original_fen", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("gate_project", sa.String(64), nullable=True),
        sa.Column("gate_stage", sa.String(16), nullable=True),
        sa.Column("disbursed_seq", sa.BigInteger, nullable=False),
        sa.Column("corrected_seq", sa.BigInteger, nullable=True),
        sa.Column("reversed_seq", sa.BigInteger, nullable=True),
        sa.Column("received_seq", sa.BigInteger, nullable=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ix_fund_disbursements_allocation", "fund_disbursements", ["allocation", "disbursed_seq"]
    )
    op.create_index(
        "ix_fund_disbursements_group",
        "fund_disbursements",
        ["allocation", "recipient_type", "county", "township", "village", "disbursed_seq"],
    )
    op.create_index(
        "ix_fund_disbursements_household", "fund_disbursements", ["household", "disbursed_seq"]
    )
    op.create_index(
        "ix_fund_disbursements_gate", "fund_disbursements", ["gate_project", "disbursed_seq"]
    )
    op.create_index("ix_fund_disbursements_credit_code", "fund_disbursements", ["credit_code"])
    op.create_table(
        "fund_groups",
        sa.Column("allocation", sa.String(64), primary_key=True),
        sa.Column("recipient_type", sa.String(16), primary_key=True),
        sa.Column("county", sa.String(100), primary_key=True),
        sa.Column("township", sa.String(100), primary_key=True),
        sa.Column("village", sa.String(100), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("amount_fen", sa.BigInteger, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "fund_payments",
        sa.Column("scope_type", sa.String(16), primary_key=True),
        sa.Column("scope", sa.String(64), primary_key=True),
        sa.Column("period", sa.String(8), primary_key=True),
        sa.Column("household", sa.String(32), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("allowed", sa.Integer, nullable=False),
        sa.Column("first_seq", sa.BigInteger, nullable=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_fund_payments_household", "fund_payments", ["household"])
    op.create_table(
        "fund_exceptions",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("scope_type", sa.String(16), nullable=False),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("period", sa.String(8), nullable=False),
        sa.Column("household", sa.String(32), nullable=False),
    )
    op.create_index("ix_fund_exceptions_household", "fund_exceptions", ["household"])
    op.create_table(
        "fund_recipient_totals",
        sa.Column("allocation", sa.String(64), primary_key=True),
        sa.Column("recipient", sa.String(220), primary_key=True),
        sa.Column("period", sa.String(8), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("amount_fen", sa.BigInteger, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "fund_loans",
        sa.Column("disbursement", sa.String(64), primary_key=True),
        sa.Column("household", sa.String(32), nullable=False),
        sa.Column("principal_fen", sa.BigInteger, nullable=False),
        sa.Column("repaid_fen", sa.BigInteger, nullable=False),
        sa.Column("outstanding_fen", sa.BigInteger, nullable=False),
        sa.Column("term_months", sa.Integer, nullable=False),
        sa.Column("interest_subsidy_bp", sa.Integer, nullable=False),
        sa.Column("start", sa.String(10), nullable=False),
        sa.Column("due", sa.String(10), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("last_repaid_seq", sa.BigInteger, nullable=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_fund_loans_household", "fund_loans", ["household"])


def downgrade() -> None:
    for table in (
        "fund_loans",
        "fund_recipient_totals",
        "fund_exceptions",
        "fund_payments",
        "fund_groups",
        "fund_disbursements",
        "fund_allocations",
        "fund_scopes",
        "fund_sources",
    ):
        op.drop_table(table)
