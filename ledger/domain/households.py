"""Households (建档立卡户): pseudonymous codes and status changes.

Interface other domain modules rely on (keep it stable):

* table ``households`` (projection), primary key ``code``;
* :func:`get_household` — the row for a code, or None.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, String, Table, Text

from ledger.projection import Projection, Row, register_projection
from ledger.schema import metadata

households = Table(
    "households",
    metadata,
    Column("code", String(32), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("province", Text, nullable=False),
    Column("city", Text, nullable=False),
    Column("county", Text, nullable=False),
    Column("township", Text, nullable=True),
    Column("village", Text, nullable=True),
    Column("commitment", String(64), nullable=False),
    Column("identified_seq", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
)
register_projection(households)


def get_household(rows: Projection, code: str) -> Row | None:
    """The household's projection row (status, location, commitment), or None if unregistered."""
    return rows.get("households", code)
