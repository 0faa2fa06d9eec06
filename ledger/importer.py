"""Importing a spreadsheet as entries of one kind: every row checked first, then all or nothing.

A row becomes one entry body.  Columns name body fields; a dotted name fills a
nested object (``origin.province``).  A cell for a list or object field holds
JSON.  The kind's JSON schema (``KindSpec.schema``) says what type each field
has, and cells are converted strictly:

* integer fields take ASCII digits only (``2000``); ``2000.5``, ``2,000``, full-width
  digits (``２０００``), digits of other scripts (``٢٠٠٠``) and superscripts are refused
  with a message naming the character and its code point (:func:`non_ascii_in_number`).  A field
  named ``…_fen`` may instead come as a column ``…_yuan`` holding yuan with at
  most two decimals (``1500``, ``1500.50``), converted exactly to fen;
* text fields take text; an integer cell becomes its digits (a lot code typed
  as a number), a date cell its ``YYYY-MM-DD``;
* empty cells leave the field out.

**Personal data** (``household.identified`` only): columns ``personal.name``,
``personal.id_number``, ``personal.phone`` and ``personal.address`` never reach
the ledger.  For each such row a salt is drawn and the body's ``commitment`` is
computed from the record (``ledger.private``); once every row has passed, the
encrypted records are stored and *then* the entries appended (the order
``ledger.private`` documents for crash safety).  If the append is refused after
all (another writer got in between), the records just stored are discarded.

Then every row is checked against the rules as if appended in order
(:meth:`ledger.log.Log.check`), all errors are reported with the row's line
number, and only a file without a single error is appended — in one request,
which the log commits whole or not at all.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from ledger import canonical
from ledger.entry import Entry, SignedStatement, format_time, make_statement, nfc, sign_statement
from ledger.errors import Error, InvalidInput
from ledger.log import Log
from ledger.note import Signer
from ledger.private import PrivateStore, normalise_personal
from ledger.rules import KINDS
from ledger.tabular import Cell, read_rows

_ASCII_INT = re.compile(r"^-?[0-9]+$")
_YUAN = re.compile(r"^(-?[0-9]+)(?:\.([0-9]{1,2}))?$")


def non_ascii_in_number(text: str) -> str | None:
    """Why ``text``, typed as a number, is refused for a non-ASCII character; None if all ASCII.

    Amounts and integers are typed with ASCII digits only, everywhere (import, portal forms;
    the API takes JSON integers): a full-width ``２０００``, an Arabic-Indic ``٢٠٠٠``, a
    superscript ``²`` or a full-width ``，``/``．`` is refused naming the character and its
    code point, never silently converted.
    """
    for char in text:
        if char.isascii():
            continue
        code = f"{char!r} (U+{ord(char):04X})"
        plain = unicodedata.normalize("NFKC", char)
        if unicodedata.decimal(char, None) is not None:
            what = "a full-width digit" if plain.isascii() else "a digit of another script"
        elif char.isdigit() or char.isnumeric():
            what = "a superscript, circled or other digit form"
        elif plain.isascii() and plain:
            what = f"a full-width form of {plain!r}"
        else:
            what = "not an ASCII character"
        return f"{code} is {what}; type numbers with the ASCII digits 0-9 (and '.' for decimals)"
    return None


@dataclass(frozen=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class ImportRefused(InvalidInput):
    """The file has bad rows; nothing was appended.  ``errors`` lists every one."""

    def __init__(self, errors: Sequence[RowError]) -> None:
        self.errors = list(errors)
        shown = "\n".join(str(e) for e in self.errors[:200])
        more = f"\n… and {len(self.errors) - 200} more" if len(self.errors) > 200 else ""
        super().__init__(f"{len(self.errors)} bad row(s); nothing was appended:\n{shown}{more}")


@dataclass(frozen=True)
class _Personal:
    code: str
    record: dict[str, str]
    salt: bytes


def import_file(
    log: Log,
    path: Path,
    kind: str,
    signers: Sequence[Signer],
    *,
    sheet: str | None = None,
    dry_run: bool = False,
    private: PrivateStore | None = None,
) -> list[Entry]:
    """Append one ``kind`` entry per row of ``path``, signed by ``signers``; all or nothing.

    Raises :class:`ImportRefused` listing every bad row (nothing appended), or
    another :class:`Error` for an unreadable file.  ``dry_run`` checks and
    returns ``[]`` without appending.  ``private`` is where personal-data
    columns go (required when the file has any).
    """
    rows = read_rows(path, sheet=sheet)
    personal: list[_Personal] = []
    statements = build_statements(log, rows, kind, signers, personal=personal)
    if personal and private is None:
        raise InvalidInput("the file has personal.* columns but no private store was given")
    if dry_run:
        return []
    stored = []
    try:
        for item in personal:
            assert private is not None
            private.store(item.code, item.record, item.salt)
            stored.append(item.code)
        return log.append([s for _, s in statements])
    except Error as exc:
        for code in stored:  # the entries committing to them were not appended
            assert private is not None
            private.discard(code)
        # Another writer got in between the check and the append: name the row if we can.
        match = re.match(r"statement (\d+): (.*)", str(exc), re.DOTALL)
        if match and 0 < int(match.group(1)) <= len(statements):
            line = statements[int(match.group(1)) - 1][0]
            raise ImportRefused([RowError(line, match.group(2))]) from None
        raise


def build_statements(
    log: Log,
    rows: Sequence[tuple[int, Mapping[str, Cell]]],
    kind: str,
    signers: Sequence[Signer],
    *,
    personal: list[_Personal] | None = None,
) -> list[tuple[int, SignedStatement]]:
    """Convert and sign every row, then check them all; raise ImportRefused listing every error.

    Personal-data columns are split off into ``personal`` (one item per row that has them).
    """
    spec = KINDS.get(kind)
    if spec is None:
        raise InvalidInput(f"unknown kind {kind!r}; known kinds: {', '.join(sorted(KINDS))}")
    if spec.schema is None:
        raise InvalidInput(f"kind {kind} has no published schema and cannot be imported")
    if not signers:
        raise InvalidInput("at least one signing key is needed (--key NAME)")
    errors: list[RowError] = []
    statements: list[tuple[int, SignedStatement]] = []
    created = format_time(datetime.now(UTC))
    for line, cells in rows:
        try:
            cells, record = _split_personal(cells, kind)
            body = row_to_body(cells, spec.schema)
            if record is not None:
                if "commitment" in body:
                    raise InvalidInput("give either personal.* columns or a commitment, not both")
                salt, body["commitment"] = PrivateStore.prepare(record)
                if personal is not None:
                    code = body.get("code")
                    personal.append(_Personal(str(code), normalise_personal(record), salt))
            statement = make_statement(kind, nfc(body), log.origin, created)
            statements.append((line, sign_statement(statement, signers)))
        except Error as exc:
            errors.append(RowError(line, str(exc)))
    if statements:
        for (line, _), outcome in zip(
            statements, log.check([s for _, s in statements]), strict=True
        ):
            if outcome is not None:
                errors.append(RowError(line, str(outcome)))
    if errors:
        raise ImportRefused(sorted(errors, key=lambda e: e.line))
    return statements


PERSONAL_PREFIX = "personal."


def _split_personal(
    cells: Mapping[str, Cell], kind: str
) -> tuple[dict[str, Cell], dict[str, str] | None]:
    """The row without its personal.* columns, and the personal record (None if none given)."""
    rest = {k: v for k, v in cells.items() if not k.startswith(PERSONAL_PREFIX)}
    given = {
        k[len(PERSONAL_PREFIX) :]: v for k, v in cells.items() if k.startswith(PERSONAL_PREFIX)
    }
    if len(given) == 0:
        return rest, None
    if kind != "household.identified":
        raise InvalidInput(
            "personal.* columns are only for household.identified (personal data never goes "
            "on the ledger)"
        )
    if all(v is None for v in given.values()):
        return rest, None
    record = {}
    for name, value in given.items():
        if value is None:
            continue
        if isinstance(value, bool | float):
            raise InvalidInput(f"column 'personal.{name}' must be text")
        record[name] = value.strip() if isinstance(value, str) else str(value)
    return rest, record


def row_to_body(cells: Mapping[str, Cell], schema: Mapping[str, Any]) -> dict[str, Any]:
    """One spreadsheet row as an entry body, typed by the body's JSON schema."""
    body: dict[str, Any] = {}
    for column, cell in cells.items():
        if cell is None:
            continue
        path = column.split(".")
        field_schema = _field_schema(schema, path)
        name = path[-1]
        if field_schema is None and name.endswith("_yuan"):
            fen_path = [*path[:-1], name[: -len("_yuan")] + "_fen"]
            fen_schema = _field_schema(schema, fen_path)
            if fen_schema is not None and _type(fen_schema) == "integer":
                _put(body, fen_path, yuan_to_fen(cell, column), column)
                continue
        if field_schema is None:
            known = ", ".join(sorted(schema.get("properties", {})))
            raise InvalidInput(f"column {column!r} is not a field of this kind (fields: {known})")
        _put(body, path, convert(cell, field_schema, column), column)
    return body


def _field_schema(schema: Mapping[str, Any], path: Sequence[str]) -> Mapping[str, Any] | None:
    node: Mapping[str, Any] | None = schema
    for part in path:
        if node is None or _type(node) != "object":
            return None
        node = node.get("properties", {}).get(part)
    return node


def _type(schema: Mapping[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        return kinds[0] if len(kinds) == 1 else None
    if kind is None and "oneOf" in schema:
        return None
    return kind if isinstance(kind, str) else None


def _put(body: dict[str, Any], path: Sequence[str], value: Any, column: str) -> None:
    node = body
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise InvalidInput(f"column {column!r} conflicts with another column for {part!r}")
        node = child
    if path[-1] in node:
        raise InvalidInput(f"column {column!r} sets a field another column already set")
    node[path[-1]] = value


def convert(cell: Cell, schema: Mapping[str, Any], column: str) -> Any:
    """A cell as the JSON value the field's schema wants; clear errors otherwise."""
    kind = _type(schema)
    if kind == "integer":
        return _integer(cell, column)
    if kind == "string":
        return _string(cell, schema, column)
    if kind == "boolean":
        if isinstance(cell, str) and cell.strip().lower() in ("true", "yes", "是", "1"):
            return True
        if isinstance(cell, str) and cell.strip().lower() in ("false", "no", "否", "0"):
            return False
        if isinstance(cell, int) and cell in (0, 1):
            return bool(cell)
        raise InvalidInput(f"column {column!r}: expected true/false (是/否), got {cell!r}")
    # objects, lists and anything else: JSON text in the cell
    if not isinstance(cell, str):
        raise InvalidInput(f"column {column!r}: expected JSON text, got {cell!r}")
    try:
        return canonical.parse(cell.strip())
    except Error as exc:
        raise InvalidInput(f"column {column!r}: not valid JSON ({exc})") from None


def _integer(cell: Cell, column: str) -> int:
    if isinstance(cell, bool):
        raise InvalidInput(f"column {column!r}: expected an integer, got {cell!r}")
    if isinstance(cell, int):
        return cell
    if isinstance(cell, float):
        raise InvalidInput(
            f"column {column!r}: expected an integer, got {cell!r} (a number with a fraction; "
            "amounts are whole fen)"
        )
    if isinstance(cell, str):
        text = cell.strip()
        if _ASCII_INT.fullmatch(text):
            return int(text)
        problem = non_ascii_in_number(text)
        if problem is not None:
            raise InvalidInput(f"column {column!r}: {text!r}: {problem}")
        if "," in text:
            raise InvalidInput(
                f"column {column!r}: {text!r}: type the integer without thousands separators"
            )
        raise InvalidInput(f"column {column!r}: expected an integer in ASCII digits, got {text!r}")
    raise InvalidInput(f"column {column!r}: expected an integer, got {cell!r}")


def yuan_to_fen(cell: Cell, column: str) -> int:
    """Yuan with at most two decimals, exactly in fen.  XLSX stores numbers as binary
    floats; a float cell is accepted only if its shortest decimal form has at most two
    decimals (1500.5 → 150050), never by multiplying floats."""
    if isinstance(cell, bool):
        raise InvalidInput(f"column {column!r}: expected an amount in yuan, got {cell!r}")
    if isinstance(cell, int):
        return cell * 100
    if isinstance(cell, float):
        text = repr(cell)
    elif isinstance(cell, str):
        text = cell.strip()
        problem = non_ascii_in_number(text)
        if problem is not None:
            raise InvalidInput(f"column {column!r}: {text!r}: {problem}")
        if "," in text:
            raise InvalidInput(
                f"column {column!r}: {text!r}: type the amount without thousands separators "
                "(e.g. 2000.50)"
            )
    else:
        raise InvalidInput(f"column {column!r}: expected an amount in yuan, got {cell!r}")
    match = _YUAN.fullmatch(text)
    if not match:
        raise InvalidInput(
            f"column {column!r}: expected yuan with at most two decimals (e.g. 1500.50), got {text!r}"
        )
    try:
        amount = Decimal(text) * 100
    except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
        raise InvalidInput(f"column {column!r}: not an amount: {text!r}") from None
    return int(amount)


def _string(cell: Cell, schema: Mapping[str, Any], column: str) -> str:
    if isinstance(cell, str):
        return cell.strip()
    if isinstance(cell, bool):
        raise InvalidInput(f"column {column!r}: expected text, got {cell!r}")
    if isinstance(cell, int):
        return str(cell)
    if isinstance(cell, datetime):
        if schema.get("format") == "date" or "\\d{2}$" in str(schema.get("pattern", "")):
            return cell.date().isoformat()
        return format_time(cell if cell.tzinfo else cell.replace(tzinfo=UTC))
    if isinstance(cell, date):
        return cell.isoformat()
    if isinstance(cell, float):
        raise InvalidInput(
            f"column {column!r}: expected text, got the number {cell!r}; format the column as text"
        )
    raise InvalidInput(f"column {column!r}: expected text, got {cell!r}")


def error_report(errors: Sequence[RowError]) -> str:
    """Machine-readable errors (one JSON object per line) for scripts."""
    return "\n".join(
        json.dumps({"line": e.line, "error": e.message}, ensure_ascii=False) for e in errors
    )
