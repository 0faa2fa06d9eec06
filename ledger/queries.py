"""The read side's catalogue: every domain query, once, for the CLI and the JSON API.

A :class:`Query` names its parameters and types; ``suyuan query NAME --param
value`` and ``GET /api/v1/<path>?param=value`` are both generated from it, as
is the API's OpenAPI description.  ``?format=csv|xlsx`` (``--format`` on the
command line) exports the query's :attr:`Query.table` — its result flattened
into rows — for spreadsheets.

Parameters arrive as text (command-line options, URL query strings) and are
converted here, strictly: a bad value is an :class:`InvalidInput` that names
the parameter, never a 500.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection

from ledger.errors import InvalidInput
from ledger.tabular import write_csv, write_xlsx

MAX_LIMIT = 1000


@dataclass(frozen=True)
class Param:
    """One query parameter.  ``type``: ``str``, ``int``, ``date`` (YYYY-MM-DD) or ``seq``."""

    name: str
    type: str = "str"
    required: bool = False
    help: str = ""
    default: Any = None
    choices: tuple[str, ...] = ()
    maximum: int | None = None


@dataclass(frozen=True)
class Query:
    """A named read-only query.

    ``run(conn, **params)`` returns JSON-ready data; ``table(result)`` flattens it
    into rows for CSV/XLSX (default: the result if it is a list, else ``[result]``).
    At most one of ``params`` may be ``one_of`` a group (e.g. source | project |
    household): exactly one of that group must be given.
    """

    name: str
    path: str
    summary: str
    params: tuple[Param, ...]
    run: Callable[..., Any]
    table: Callable[[Any], list[dict[str, Any]]] | None = None
    one_of: tuple[str, ...] = ()
    tags: tuple[str, ...] = field(default=())

    def rows(self, result: Any) -> list[dict[str, Any]]:
        if self.table is not None:
            return self.table(result)
        if isinstance(result, list):
            return [r if isinstance(r, dict) else {"value": r} for r in result]
        return [result] if isinstance(result, dict) else [{"value": result}]

    def parse(self, raw: Mapping[str, str | None]) -> dict[str, Any]:
        """Convert text parameters; refuse unknown, missing and malformed ones."""
        known = {p.name for p in self.params}
        unknown = sorted(k for k in raw if k not in known and raw[k] is not None)
        if unknown:
            raise InvalidInput(
                f"{self.name}: unknown parameter(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known)) or 'none'}"
            )
        out: dict[str, Any] = {}
        for param in self.params:
            text = raw.get(param.name)
            if text is None or text == "":
                if param.required:
                    raise InvalidInput(f"{self.name}: parameter {param.name!r} is required")
                if param.default is not None:
                    out[param.name] = param.default
                continue
            out[param.name] = convert(param, text)
        if self.one_of:
            given = [n for n in self.one_of if n in out]
            if len(given) != 1:
                raise InvalidInput(
                    f"{self.name}: give exactly one of {', '.join(self.one_of)} "
                    f"(got {', '.join(given) or 'none'})"
                )
        return out

    def __call__(self, conn: Connection, raw: Mapping[str, str | None]) -> Any:
        return self.run(conn, **self.parse(raw))


_INT = re.compile(r"^[0-9]{1,16}$")


def convert(param: Param, text: str) -> Any:
    if len(text) > 500:
        raise InvalidInput(f"parameter {param.name!r} is too long")
    if param.type in ("int", "seq"):
        if not _INT.fullmatch(text):
            raise InvalidInput(
                f"parameter {param.name!r} must be a non-negative integer in ASCII digits, "
                f"got {text!r}"
            )
        value = int(text)
        if param.maximum is not None and value > param.maximum:
            raise InvalidInput(f"parameter {param.name!r} must be at most {param.maximum}")
        return value
    if param.type == "date":
        try:
            if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
                raise ValueError
            return date.fromisoformat(text)
        except ValueError:
            raise InvalidInput(
                f"parameter {param.name!r} must be a date YYYY-MM-DD, got {text!r}"
            ) from None
    if param.choices and text not in param.choices:
        raise InvalidInput(
            f"parameter {param.name!r} must be one of {', '.join(param.choices)}, got {text!r}"
        )
    return text


def render(query: Query, result: Any, fmt: str) -> bytes:
    """The result as ``json`` (UTF-8, indented), ``csv`` (UTF-8 with BOM) or ``xlsx`` bytes."""
    if fmt == "json":
        return (json.dumps(result, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    buffer = io.BytesIO()
    if fmt == "csv":
        write_csv(query.rows(result), buffer)
    elif fmt == "xlsx":
        write_xlsx(query.rows(result), buffer, title=query.name)
    else:
        raise InvalidInput(f"format must be json, csv or xlsx, got {fmt!r}")
    return buffer.getvalue()


def today() -> date:
    return datetime.now(UTC).date()


QUERIES: dict[str, Query] = {}


def register_query(query: Query) -> Query:
    if query.name in QUERIES and QUERIES[query.name] is not query:
        raise RuntimeError(f"query {query.name} registered twice")
    QUERIES[query.name] = query
    return query


__all__ = ["QUERIES", "Param", "Query", "register_query"]
