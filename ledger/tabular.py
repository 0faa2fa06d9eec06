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
import lzma
import xml.parsers.expat
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any, BinaryIO

from ledger.errors import InvalidInput

#: An import file holds at most this many data rows (one all-or-nothing append).
MAX_ROWS = 10_000
#: ... and at most this many lines, empty ones included (the header is line 1).
MAX_LINES = 5 * MAX_ROWS
#: ... and at most this many columns (a kind has a few dozen fields at most); an .xlsx is
#: read no further right than this.
MAX_COLUMNS = 500
MAX_FILE_BYTES = 20 * 1024 * 1024
#: An .xlsx is a zip: the sum of its members' uncompressed sizes, as the zip declares them
#: (zipfile never inflates a member beyond its declared size), may be at most this.  A
#: 20 MB workbook of 10,000 rows unpacks to well under this; a decompression bomb does not.
MAX_XLSX_UNPACKED = 64 * 1024 * 1024
MAX_XLSX_MEMBERS = 1_000
#: What Excel stores in a cell whose formula failed; never imported as text.
XLSX_ERRORS = frozenset({"#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A"})

Cell = str | int | float | date | datetime | None


def read_rows(path: Path, *, sheet: str | None = None) -> list[tuple[int, dict[str, Cell]]]:
    """The data rows of a ``.csv`` or ``.xlsx`` file, with their line numbers."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".xlsx"):
        raise InvalidInput(f"{path}: expected a .csv or .xlsx file, got {suffix or 'no extension'}")
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InvalidInput(f"{path} is {size} bytes; the limit is {MAX_FILE_BYTES}")
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
    return rows_from_bytes(data, suffix, sheet=sheet, name=str(path))


def rows_from_bytes(
    data: bytes, suffix: str, *, sheet: str | None = None, name: str = "the file"
) -> list[tuple[int, dict[str, Cell]]]:
    """The data rows of a file's bytes; ``suffix`` is ``.csv`` or ``.xlsx``.

    Raises :class:`InvalidInput` (naming ``name``) for anything unreadable, and within
    bounded time and memory for any input of at most ``MAX_FILE_BYTES``: too many lines,
    columns or rows, a zip that would unpack to more than ``MAX_XLSX_UNPACKED``.
    """
    if len(data) > MAX_FILE_BYTES:
        raise InvalidInput(f"{name} is {len(data)} bytes; the limit is {MAX_FILE_BYTES}")
    suffix = suffix.lower()
    if suffix == ".csv":
        if sheet is not None:
            raise InvalidInput("--sheet applies to .xlsx files only")
        return _rows(_csv_lines(data, name))
    if suffix == ".xlsx":
        return _rows(_xlsx_lines(data, name, sheet))
    raise InvalidInput(f"{name}: expected a .csv or .xlsx file, got {suffix or 'no extension'}")


def _csv_lines(data: bytes, name: str) -> Iterator[list[Cell]]:
    # Excel saves "CSV UTF-8" with a BOM and plain "CSV" in the ANSI code page, GB18030 on
    # Chinese Windows (GBK is a subset); anything else is refused rather than guessed.
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise InvalidInput(
            f"{name}: not UTF-8 or GB18030 text (save it from Excel as 'CSV UTF-8' or as .xlsx)"
        )
    try:
        yield from csv.reader(io.StringIO(text, newline=""), strict=True)
    except csv.Error as exc:
        raise InvalidInput(f"{name}: not valid CSV: {exc}") from None


def _check_zip(data: bytes, name: str) -> None:
    """Refuse what is not a zip, or would unpack to too much, before openpyxl sees it."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        NotImplementedError,  # a zip version or compression method zipfile does not support
        ValueError,
        OSError,
        EOFError,
    ) as exc:
        raise InvalidInput(
            f"{name}: not a readable .xlsx workbook (not a zip file: {exc})"
        ) from None
    with archive:
        members = archive.infolist()
        if len(members) > MAX_XLSX_MEMBERS:
            raise InvalidInput(
                f"{name}: not a plausible .xlsx workbook ({len(members)} parts in the zip; "
                f"at most {MAX_XLSX_MEMBERS})"
            )
        unpacked = sum(m.file_size for m in members)
        if unpacked > MAX_XLSX_UNPACKED:
            raise InvalidInput(
                f"{name}: the workbook would unpack to {unpacked} bytes, more than the "
                f"{MAX_XLSX_UNPACKED} allowed (a decompression bomb?); save it again or split it"
            )
        for member in members:
            if member.filename.lower().endswith((".xml", ".rels")):
                _refuse_dtd(archive, member, name)


class _RootReached(Exception):
    pass


class _HasDtd(Exception):
    pass


def _refuse_dtd(archive: zipfile.ZipFile, member: zipfile.ZipInfo, name: str) -> None:
    """An XML part of a workbook MUST NOT declare a DTD: Office never writes one, and its
    entities are how an "XML bomb" (billion laughs) blows up in memory and time.  Only the
    prolog is read, up to the root element, in whatever encoding the part declares."""
    parser = xml.parsers.expat.ParserCreate()

    def doctype(*_args: object) -> None:
        raise _HasDtd

    def root(*_args: object) -> None:
        raise _RootReached

    parser.StartDoctypeDeclHandler = doctype
    parser.StartElementHandler = root
    try:
        with archive.open(member) as part:
            for _ in range(16):  # a prolog longer than 1 MiB is not an Office file's
                chunk = part.read(65_536)
                parser.Parse(chunk, not chunk)
                if not chunk:
                    return
    except _RootReached:
        return
    except _HasDtd:
        raise InvalidInput(
            f"{name}: {member.filename} declares a DTD, which no spreadsheet program writes "
            "(an XML entity bomb?)"
        ) from None
    except xml.parsers.expat.ExpatError as exc:
        raise InvalidInput(f"{name}: {member.filename} is not well-formed XML ({exc})") from None
    except (
        zipfile.BadZipFile,  # e.g. a CRC mismatch
        NotImplementedError,  # a compression method zipfile lacks
        zlib.error,  # corrupt deflate data
        lzma.LZMAError,
        OSError,  # corrupt bzip2 data, among others
        EOFError,
        RuntimeError,  # an encrypted member
        ValueError,
    ) as exc:
        raise InvalidInput(f"{name}: cannot unpack {member.filename} ({exc})") from None
    raise InvalidInput(f"{name}: {member.filename}: no root element in its first 1 MiB")


def _xlsx_lines(data: bytes, name: str, sheet: str | None) -> Iterator[list[Cell]]:
    from openpyxl import load_workbook  # only the import path pays for it

    _check_zip(data, name)
    books = []
    try:
        try:
            # Formulas: the value Excel saved is imported; the second view of the same
            # file (formulas as text) tells a formula without a saved value from an empty
            # cell, which would otherwise leave a field out silently.
            books = [
                load_workbook(io.BytesIO(data), read_only=True, data_only=only)
                for only in (True, False)
            ]
            values, formulas = books
            if sheet is not None and sheet not in values.sheetnames:
                raise InvalidInput(
                    f"{name}: no sheet {sheet!r}; sheets: {', '.join(values.sheetnames)}"
                )
            if not values.worksheets:
                raise InvalidInput(f"{name}: the workbook has no worksheet")
            title = sheet if sheet is not None else values.worksheets[0].title
            for book in books:  # the <dimension> a file declares is not to be trusted
                book[title].reset_dimensions()
            bounds = {"max_row": MAX_LINES + 1, "max_col": MAX_COLUMNS + 1, "values_only": True}
            pairs = zip(
                values[title].iter_rows(**bounds),
                formulas[title].iter_rows(**bounds),
                strict=False,
            )
            for line, (row, formula_row) in enumerate(pairs, start=1):
                if row.count(None) == len(row) and formula_row.count(None) == len(formula_row):
                    yield []  # a missing or empty row (fast: up to MAX_LINES of them)
                    continue
                yield [
                    _xlsx_value(cell, formula, line, column, name)
                    for column, (cell, formula) in enumerate(
                        zip(row, formula_row, strict=False), start=1
                    )
                ]
        except InvalidInput:
            raise
        except Exception as exc:  # openpyxl raises many kinds for a broken file
            raise InvalidInput(
                f"{name}: not a readable .xlsx workbook ({type(exc).__name__}: {exc})"
            ) from None
    finally:
        for book in books:
            book.close()


def _column_name(column: int) -> str:
    letters = ""
    while column:
        column, rest = divmod(column - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def _xlsx_value(cell: Any, formula: Any, line: int, column: int, name: str) -> Cell:
    where = f"{name}: line {line}, cell {_column_name(column)}{line}"
    if cell is None and isinstance(formula, str) and formula.startswith("="):
        raise InvalidInput(
            f"{where} holds the formula {formula[:60]!r} without a saved value; open and save "
            "the file in Excel or WPS, or paste the values"
        )
    if isinstance(cell, str) and cell in XLSX_ERRORS:
        raise InvalidInput(f"{where} holds the spreadsheet error {cell}")
    if cell is None or isinstance(cell, str | int | float | date | datetime):
        return cell  # bool is an int; the importer refuses it where it matters
    if hasattr(formula, "text"):  # an array or data-table formula object
        raise InvalidInput(f"{where} holds an array formula; paste the values")
    raise InvalidInput(f"{where}: unsupported cell value of type {type(cell).__name__}")


def _rows(lines: Iterable[list[Cell]]) -> list[tuple[int, dict[str, Cell]]]:
    iterator = iter(lines)
    header_cells = next(iterator, None)
    if header_cells is None:
        raise InvalidInput("the file is empty: expected a header row naming the fields")
    if len(header_cells) > MAX_COLUMNS and any(c is not None for c in header_cells[MAX_COLUMNS:]):
        raise InvalidInput(f"line 1: more than {MAX_COLUMNS} columns")
    header = [str(c).strip() if c is not None else "" for c in header_cells[:MAX_COLUMNS]]
    while header and not header[-1]:
        header.pop()
    if not header or any(not h for h in header):
        raise InvalidInput("line 1: every column needs a header naming its field")
    duplicates = sorted(h for h, n in Counter(header).items() if n > 1)
    if duplicates:
        raise InvalidInput(f"line 1: columns named more than once: {', '.join(duplicates)}")
    out: list[tuple[int, dict[str, Cell]]] = []
    for line, cells in enumerate(iterator, start=2):
        if line > MAX_LINES:
            raise InvalidInput(f"more than {MAX_LINES} lines; split the file")
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
