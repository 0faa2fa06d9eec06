"""The OpenAPI 3.1 document served at ``/api/v1/openapi.json``.

Every error under ``/api/v1`` is ``components/responses/Error``; the document lists,
per operation, each status the API answers (tests/web/test_api.py drives each
outcome, and tests/security/test_api_schemathesis.py fuzzes the API against it).
"""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/responses/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Suyuan (溯源) ledger API",
        "version": "1",
        "description": "Entries, Merkle proofs and checkpoints of a Suyuan log, and appends of signed "
        "statements. The log itself is also served per C2SP tlog-tiles under /log/. "
        "docs/FORMAT.md is the normative format.",
    },
    "servers": [{"url": "/api/v1"}],
    "components": {
        "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {
                            "code": {
                                "type": "string",
                                "examples": ["invalid_entry", "rule_violation", "not_found"],
                            },
                            "message": {"type": "string"},
                        },
                    }
                },
            },
            "SignedStatement": {
                "type": "object",
                "required": ["statement", "signatures"],
                "additionalProperties": False,
                "properties": {
                    "statement": {
                        "type": "object",
                        "required": ["kind", "body", "origin", "created"],
                        "additionalProperties": False,
                        "properties": {
                            "kind": {
                                "type": "string",
                                "pattern": "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)*$",
                            },
                            "body": {"type": "object"},
                            "origin": {"type": "string"},
                            "created": {"type": "string", "format": "date-time"},
                        },
                    },
                    "signatures": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 16,
                        "items": {
                            "type": "object",
                            "required": ["key", "sig"],
                            "additionalProperties": False,
                            "properties": {
                                "key": {"type": "string"},
                                "sig": {"type": "string", "contentEncoding": "base64"},
                            },
                        },
                    },
                },
            },
        },
        "responses": {
            "Error": _json({"$ref": "#/components/schemas/Error"}, "An error, with a stable code")
        },
    },
    "paths": {
        "/entries/{seq}": {
            "get": {
                "summary": "An entry with its leaf hash and an inclusion proof",
                "parameters": [
                    {
                        "name": "seq",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer", "minimum": 0},
                    },
                    {
                        "name": "size",
                        "in": "query",
                        "required": False,
                        "description": "Prove against the checkpoint of this size (default: newest)",
                        "schema": {"type": "integer", "minimum": 1},
                    },
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": [
                                "seq",
                                "leaf_hash",
                                "entry",
                                "leaf",
                                "checkpoint",
                                "inclusion_proof",
                            ],
                        },
                        "The entry",
                    ),
                    "400": _ERROR,
                    "404": _ERROR,
                },
            }
        },
        "/entries": {
            "post": {
                "summary": "Append signed statements, all or nothing",
                "security": [{"token": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    {"$ref": "#/components/schemas/SignedStatement"},
                                    {
                                        "type": "object",
                                        "required": ["statements"],
                                        "properties": {
                                            "statements": {
                                                "type": "array",
                                                "minItems": 1,
                                                "items": {
                                                    "$ref": "#/components/schemas/SignedStatement"
                                                },
                                            }
                                        },
                                    },
                                ]
                            }
                        }
                    },
                },
                "responses": {
                    "201": _json(
                        {"type": "object", "required": ["entries", "checkpoint"]}, "Appended"
                    ),
                    "400": _ERROR,
                    "401": _ERROR,
                    "409": _ERROR,
                    "413": _ERROR,
                    "415": _ERROR,
                    "422": _ERROR,
                    "503": _ERROR,
                },
            }
        },
        "/proofs/consistency": {
            "get": {
                "summary": "An RFC 9162 consistency proof between two checkpoint sizes",
                "parameters": [
                    {
                        "name": "from",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "integer", "minimum": 1},
                    },
                    {
                        "name": "to",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1},
                    },
                ],
                "responses": {
                    "200": _json(
                        {"type": "object", "required": ["from", "to", "hashes", "checkpoint"]},
                        "The proof",
                    ),
                    "400": _ERROR,
                    "404": _ERROR,
                },
            }
        },
        "/checkpoints": {
            "get": {
                "summary": "Signed checkpoints, newest first",
                "parameters": [
                    {
                        "name": "before",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 0},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                    },
                ],
                "responses": {
                    "200": _json({"type": "object", "required": ["checkpoints"]}, "A page"),
                    "400": _ERROR,
                },
            }
        },
        "/blobs/{digest}": {
            "get": {
                "summary": "An evidence document by its SHA-256 (re-hashed before it is served)",
                "parameters": [
                    {
                        "name": "digest",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "The document",
                        "content": {
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        },
                    },
                    "400": _ERROR,
                    "404": _ERROR,
                },
            }
        },
        "/blobs": {
            "post": {
                "summary": "Store an evidence document; returns the evidence record for an entry",
                "security": [{"token": []}],
                "parameters": [
                    {
                        "name": "name",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "media_type",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                },
                "responses": {
                    "201": _json(
                        {
                            "type": "object",
                            "required": ["sha256", "name", "media_type", "size"],
                        },
                        "The evidence record",
                    ),
                    "400": _ERROR,
                    "401": _ERROR,
                    "413": _ERROR,
                },
            }
        },
        "/keys": {
            "get": {
                "summary": "Registered author keys",
                "responses": {"200": _json({"type": "object", "required": ["keys"]}, "The keys")},
            }
        },
    },
}


def add_paths(paths: dict[str, Any]) -> None:
    """Add path items to :data:`OPENAPI`; every operation may also answer 503 (the database
    or the log key unavailable: retry later), which the document says once, here."""
    OPENAPI["paths"].update(paths)
    for item in OPENAPI["paths"].values():
        for operation in item.values():
            operation["responses"].setdefault("503", _ERROR)
