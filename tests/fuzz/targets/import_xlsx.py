"""Spreadsheet import from a raw .xlsx file's bytes: the same reading, row conversion and
invariants as the ``import_csv`` target (see there), for a workbook instead of a CSV file.
"""

from __future__ import annotations

from tests.fuzz.targets.import_csv import read_and_check


def one(data: bytes) -> None:
    read_and_check(data, ".xlsx")
