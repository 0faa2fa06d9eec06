"""The site's own tables: portal users, and scan counts for clone detection.

Neither is part of the ledger: a user's authority comes from the ledger key it
is bound to (role and organisation are the key's), and scan counts are
statistics.  No IP address is stored: a scan's visitor is an HMAC of the
address under a key that changes every day.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("username", sa.String(64), primary_key=True),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("key_name", sa.String(64), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("session_version", sa.Integer, nullable=False),
        sa.Column("created", sa.String(32), nullable=False),
        sa.Column("last_login", sa.String(32), nullable=True),
    )
    op.create_table(
        "scans",
        sa.Column("code", sa.String(200), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("scans", sa.BigInteger, nullable=False),
        sa.Column("visitors", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "scan_visitors",
        sa.Column("code", sa.String(200), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("visitor", sa.LargeBinary(16), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("scan_visitors")
    op.drop_table("scans")
    op.drop_table("users")
