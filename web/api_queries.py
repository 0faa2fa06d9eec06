"""``/api/v1`` routes for the domain queries (``ledger.queries``): one GET route each.

Parameters come from the query string; ``format=csv`` or ``format=xlsx``
downloads the result as a table.  A repeated or unknown parameter is a 400
with a JSON error, like every other bad request under ``/api/v1``.

The anomaly report (``/funds/anomalies``) is public in what it computes from the
ledger — duplicate payees, shared credit codes, payments without milestone
evidence, overdue milestones and loans: all of it is on the public log anyway.
Its two lists of *refused attempts* (``overspend_attempts``,
``duplicate_payment_attempts``) are not: they come from the ``refusals`` table
beside the ledger — signed statements the rules refused, with their bodies and
key ids, never appended, not verifiable by anyone outside, and not on mirrors.
Those lists MUST be empty unless the caller is signed in to the portal as an
auditor (``web.auditor.AUDITORS``) — the same rule, through the same function,
as the auditor portal's own report and export, which officials see without
them.  API tokens carry no role (they authorise submission only), so a token
does not unlock them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, jsonify, request

from ledger.db import read_snapshot
from ledger.domain import catalog as _catalog  # noqa: F401  (registers the queries)
from ledger.errors import InvalidInput
from ledger.queries import QUERIES, Param, Query, render
from web.auditor import REFUSALS, hide_refusals, is_auditor
from web.extensions import reader

_MEDIA = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def add_query_routes(bp: Blueprint) -> None:
    for query in QUERIES.values():
        bp.add_url_rule(query.path, endpoint=f"query_{query.name}", view_func=_view(query))


def _view(query: Query) -> Callable[[], Response]:
    def view() -> Response:
        fmt = request.args.get("format", "json")
        if fmt not in ("json", "csv", "xlsx"):
            raise InvalidInput(f"format must be json, csv or xlsx, got {fmt!r}")
        raw: dict[str, str | None] = {}
        for name in request.args:
            values = request.args.getlist(name)
            if len(values) > 1:
                raise InvalidInput(f"parameter {name!r} given {len(values)} times")
            if name != "format":
                raw[name] = values[0]
        _refuse_empty_typed(query, raw)
        with read_snapshot(reader().engine) as conn:  # totals and rows agree
            result = query(conn, raw)
        withheld = query.name == "anomalies"
        if withheld and not is_auditor():
            result = hide_refusals(result)
        if fmt == "json":
            response = jsonify(result)
        else:
            response = Response(render(query, result, fmt), mimetype=_MEDIA[fmt])
            response.headers["Content-Disposition"] = f'attachment; filename="{query.name}.{fmt}"'
        if withheld:  # the answer depends on who asks: no shared cache may keep it
            response.headers["Cache-Control"] = "private, no-store"
            response.vary.add("Cookie")
        return response

    view.__name__ = f"query_{query.name}"
    return view


def _refuse_empty_typed(query: Query, raw: dict[str, str | None]) -> None:
    """``?limit=`` is not an integer.  The portal's forms send empty fields for filters left
    blank, and ``ledger.queries`` reads those as absent; an API client that sends an empty
    number, date or choice has made a mistake, and is told so rather than given a default."""
    for param in query.params:
        if raw.get(param.name) == "" and (param.type != "str" or param.choices):
            raise InvalidInput(
                f"parameter {param.name!r} is empty: give a value or leave the parameter out"
            )


def openapi_paths() -> dict[str, Any]:
    """OpenAPI path items for every query."""
    paths: dict[str, Any] = {}
    for query in QUERIES.values():
        parameters = [_parameter(p) for p in query.params]
        parameters.append(
            {
                "name": "format",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "enum": ["json", "csv", "xlsx"], "default": "json"},
            }
        )
        description = query.summary
        if query.one_of:
            description += f" Give exactly one of: {', '.join(query.one_of)}."
        if query.name == "anomalies":
            description += (
                f" The refused attempts ({', '.join(REFUSALS)}) are kept beside the ledger, not "
                "on it: they are empty lists unless the caller is signed in to the portal as an "
                "auditor (session cookie); an API token does not unlock them."
            )
        paths[query.path] = {
            "get": {
                "summary": query.summary.split(". ")[0].rstrip("."),
                "description": description,
                "tags": list(query.tags) or ["domain"],
                "parameters": parameters,
                "responses": {
                    "200": {
                        "description": "The result (JSON), or a CSV/XLSX table",
                        "content": {
                            "application/json": {"schema": {}},
                            "text/csv": {"schema": {"type": "string"}},
                            _MEDIA["xlsx"]: {"schema": {"type": "string", "format": "binary"}},
                        },
                    },
                    "400": {"$ref": "#/components/responses/Error"},
                    "404": {"$ref": "#/components/responses/Error"},
                },
            }
        }
    return paths


def _parameter(param: Param) -> dict[str, Any]:
    schema: dict[str, Any]
    if param.type in ("int", "seq"):
        schema = {"type": "integer", "minimum": 0}
        if param.maximum is not None:
            schema["maximum"] = param.maximum
    elif param.type == "date":
        schema = {"type": "string", "format": "date"}
    else:
        schema = {"type": "string", "maxLength": 500}
        if param.choices:
            schema["enum"] = list(param.choices)
    if param.default is not None:
        schema["default"] = param.default
    return {
        "name": param.name,
        "in": "query",
        "required": param.required,
        "description": param.help,
        "schema": schema,
    }
