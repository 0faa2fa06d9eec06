"""Spreadsheets in and out: reading CSV/XLSX rows, writing tables as CSV or XLSX.

Villages and cooperatives keep their books in Excel; auditors want reports in
Excel.  This module only moves cells: turning cells into entry bodies is
``ledger.importer``'s job.

Reading yields ``(line, {header: cell})`` with the spreadsheet's own line
numbers (the header is line 1), skipping wholly empty rows.  Cells are ``str``
(CSV; XLSX text), ``int`` (XLSX integers), ``float`` (XLSX non-integers — the
importer decides what they may mean), ``datetime``/``date`` (XLSX dates) or None.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any, BinaryIO

from ledger.errors import InvalidInput

#: An import file holds at most this many data rows (one all-or-nothing append).
MAX_ROWS = 10_000
MAX_FILE_BYTES = 20 * 1024 * 1024

Cell = str | int | float | date | datetime | None


def read_rows(path: Path, *, sheet: str | None = None) -> list[tuple[int, dict[str, Cell]]]:
    """The data rows of a ``.csv`` or ``.xlsx`` file, with their line numbers."""
    suffix = path.suffix.lower()
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
    if size > MAX_FILE_BYTES:
        raise InvalidInput(f"{path} is {size} bytes; the limit is {MAX_FILE_BYTES}")
    if suffix == ".csv":
        if sheet is not None:
            raise InvalidInput("--sheet applies to .xlsx files only")
        return _rows(_csv_lines(path.read_bytes(), path))
    if suffix == ".xlsx":
        return _rows(_xlsx_lines(path, sheet))
    raise InvalidInput(f"{path}: expected a .csv or .xlsx file, got {suffix or 'no extension'}")


def _csv_lines(data: bytes, path: Path) -> Iterator[list[Cell]]:
    # Excel saves "CSV UTF-8" with a BOM and plain "CSV" in the ANSI code page, GB18030 on
    # Chinese Windows; anything else is refused rather than guessed.
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:  # pragma: no cover - gb18030 decodes every byte string
        raise InvalidInput(f"{path}: not UTF-8 or GB18030 text")
    try:
        yield from csv.reader(io.StringIO(text, newline=""), strict=True)
    except csv.Error as exc:
        raise InvalidInput(f"{path}: not valid CSV: {exc}") from None


def _xlsx_lines(path: Path, sheet: str | None) -> Iterator[list[Cell]]:
    from openpyxl import load_workbook  # only the import path pays for it

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a broken file
        raise InvalidInput(f"{path}: not a readable .xlsx workbook ({exc})") from None
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise InvalidInput(f"{path}: no sheet {sheet!r}; sheets: {', '.join(book.sheetnames)}")
        ws = book[sheet] if sheet is not None else book.worksheets[0]
        for values in ws.iter_rows(values_only=True):
            yield list(values)
    finally:
        book.close()


def _rows(lines: Iterable[list[Cell]]) -> list[tuple[int, dict[str, Cell]]]:
    iterator = iter(lines)
    header_cells = next(iterator, None)
    if header_cells is None:
        raise InvalidInput("the file is empty: expected a header row naming the fields")
    header = [str(c).strip() if c is not None else "" for c in header_cells]
    while header and not header[-1]:
        header.pop()
    if not header or any(not h for h in header):
        raise InvalidInput("line 1: every column needs a header naming its field")
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        raise InvalidInput(f"line 1: columns named more than once: {', '.join(duplicates)}")
    out: list[tuple[int, dict[str, Cell]]] = []
    for line, cells in enumerate(iterator, start=2):
        values = [None if c is None or (isinstance(c, str) and not c.strip()) else c for c in cells]
        if all(v is None for v in values):
            continue
        if len(values) > len(header) and any(v is not None for v in values[len(header) :]):
            raise InvalidInput(f"line {line}: more cells than the header has columns")
        values += [None] * (len(header) - len(values))
        out.append((line, dict(zip(header, values[: len(header)], strict=True))))
        if len(out) > MAX_ROWS:
            raise InvalidInput(f"more than {MAX_ROWS} rows; split the file")
    if not out:
        raise InvalidInput("no data rows below the header")
    return out


# --- writing tables -------------------------------------------------------------------


def flatten(row: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects become dotted columns; lists become JSON text in one cell."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, list | tuple):
            out[name] = json.dumps(value, ensure_ascii=False, sort_keys=True)
        else:
            out[name] = value
    return out


def columns_of(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every column any row has, in first-seen order."""
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(key, None)
    return list(seen)


def write_csv(rows: Sequence[Mapping[str, Any]], out: BinaryIO) -> None:
    """UTF-8 with a BOM, so Excel opens Chinese text correctly."""
    flat = [flatten(r) for r in rows]
    columns = columns_of(flat)
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(columns)
    for row in flat:
        writer.writerow(["" if row.get(c) is None else _safe_cell(row[c]) for c in columns])
    out.write(b"\xef\xbb\xbf" + text.getvalue().encode("utf-8"))


def write_xlsx(rows: Sequence[Mapping[str, Any]], out: BinaryIO, *, title: str = "report") -> None:
    from openpyxl import Workbook

    flat = [flatten(r) for r in rows]
    columns = columns_of(flat)
    book = Workbook(write_only=True)
    sheet = book.create_sheet(title=title[:31] or "report")
    sheet.append(columns)
    for row in flat:
        sheet.append([_xlsx_cell(row.get(c)) for c in columns])
    book.save(out)


def _safe_cell(value: Any) -> Any:
    """Text that a spreadsheet would run as a formula is prefixed with ' (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _xlsx_cell(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        return str(value)
    return _safe_cell(value)
