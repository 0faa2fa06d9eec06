"""``/api/v1`` routes for the domain queries (``ledger.queries``): one GET route each.

Parameters come from the query string; ``format=csv`` or ``format=xlsx``
downloads the result as a table.  A repeated or unknown parameter is a 400
with a JSON error, like every other bad request under ``/api/v1``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, jsonify, request

from ledger.domain import catalog as _catalog  # noqa: F401  (registers the queries)
from ledger.errors import InvalidInput
from ledger.queries import QUERIES, Param, Query, render
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
        with reader().engine.connect() as conn:
            result = query(conn, raw)
        if fmt == "json":
            return jsonify(result)
        response = Response(render(query, result, fmt), mimetype=_MEDIA[fmt])
        response.headers["Content-Disposition"] = f'attachment; filename="{query.name}.{fmt}"'
        return response

    view.__name__ = f"query_{query.name}"
    return view


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
