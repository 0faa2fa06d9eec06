"""Spreadsheet import from a raw .csv file's bytes: ``ledger.tabular.rows_from_bytes`` (what
``suyuan import`` reads), then every row through the importer's cell conversion
(``ledger.importer.row_to_body``), the statement format and the rules of several kinds
(``tests.fuzz.tiny_log.check_rows``).

Invariants: reading refuses with a ledger.errors.Error (non-empty message) or gives at most
``MAX_ROWS`` rows with line numbers that increase; an accepted row's statement is all NFC
text and its canonical bytes parse back to it; nothing but ledger.errors.Error escapes.
"""

from __future__ import annotations

from ledger.errors import Error
from ledger.tabular import MAX_ROWS, rows_from_bytes
from tests.fuzz import tiny_log


def one(data: bytes) -> None:
    read_and_check(data, ".csv")


def read_and_check(data: bytes, suffix: str) -> None:
    """The whole target for a file of type ``suffix`` (``.csv`` or ``.xlsx``)."""
    try:
        rows = rows_from_bytes(data, suffix, name=f"fuzz{suffix}")
    except Error as exc:
        assert str(exc), repr(exc)
        return
    assert 0 < len(rows) <= MAX_ROWS
    lines = [line for line, _ in rows]
    assert lines == sorted(set(lines)) and lines[0] >= 2
    tiny_log.check_rows(rows)
