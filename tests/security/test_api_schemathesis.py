"""``/api/v1`` fuzzed against its own OpenAPI document with schemathesis, in process.

Every documented operation gets positive (schema-conforming) and negative
(schema-violating) requests through the Flask app, on a site loaded with the
demo data set (batches with GTINs and lots, fund trails, projects, households,
refused attempts) and with a valid API token, so that the write operations get
past authentication and their bodies are judged.

Checks, on every response: no 5xx; the status is one the document lists for the
operation; the content type and the body match what the document says
(schemathesis' conformance checks); data that violates the document is refused;
and our own :func:`error_is_json_with_code`: every 4xx is JSON
``{"error": {"code", "message"}}`` with a machine-readable code.

Deterministic: hypothesis runs derandomized, without an example database, with a
fixed number of examples per operation and mode (the CI budget is ~60 s).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

import web.api  # noqa: F401  (adds the domain queries' paths to the document)
from ledger.demo import load_demo
from ledger.tokens import create_token
from tests.helpers import check_ledger
from tests.web.support import ModuleSite, make_site
from web.openapi import OPENAPI

SCHEMA = schemathesis.openapi.from_dict(OPENAPI)


def _cases() -> list[tuple[str, GenerationMode]]:
    """Every operation in both modes; negative data needs something to violate."""
    cases = []
    for path, item in OPENAPI["paths"].items():
        for method, operation in item.items():
            label = f"{method.upper()} {path}"
            cases.append((label, GenerationMode.POSITIVE))
            if operation.get("parameters") or operation.get("requestBody"):
                cases.append((label, GenerationMode.NEGATIVE))
    return sorted(cases)


#: Examples per operation and mode: ~20 operations x 2 modes x this stays within the budget.
EXAMPLES = 20
_CODE = re.compile(r"[a-z][a-z0-9_]*")


def error_is_json_with_code(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """Every 4xx (and 5xx) is ``{"error": {"code": <snake_case>, "message": <text>}}``."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.split(";")[0].strip() == "application/json", (
        f"{case.operation.label}: a {response.status_code} answered as {content_type!r}, "
        f"not JSON: {response.text[:200]!r}"
    )
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict), body
    assert isinstance(error.get("code"), str) and _CODE.fullmatch(error["code"]), body
    assert isinstance(error.get("message"), str) and error["message"].strip(), body
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    error_is_json_with_code,
]


@dataclass
class Fuzzed:
    site: ModuleSite
    token: str


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    with make_site(tmp_path_factory.mktemp("schemathesis")) as site:
        load_demo(site.instance, households=20)
        token = create_token(site.instance.engine, "schemathesis")
        yield Fuzzed(site, token)
        check_ledger(site.instance.engine)


@pytest.mark.parametrize(("label", "mode"), _cases())
def test_operation_conforms(fuzzed: Fuzzed, label: str, mode: GenerationMode) -> None:
    operation = SCHEMA.find_operation_by_label(label)
    assert operation is not None
    app = fuzzed.site.app
    headers = {"Authorization": f"Bearer {fuzzed.token}"}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Case[Any]) -> None:
        kwargs: dict[str, Any] = {"app": app}
        if case.headers is None or "Authorization" not in case.headers:
            kwargs["headers"] = headers
        response = case.call(**kwargs)
        case.validate_response(response, checks=CHECKS)

    run()


def test_the_error_check_refuses_html_and_codeless_errors(fuzzed: Fuzzed) -> None:
    """The custom check can fail: an HTML error page, and JSON errors without a proper code."""
    operation = SCHEMA.find_operation_by_label("GET /keys")
    assert operation is not None
    case = operation.Case()
    client = fuzzed.site.client
    check = error_is_json_with_code
    good = client.get("/api/v1/entries/999999")
    assert check(None, Response.from_any(good), case) is None  # type: ignore[arg-type]
    html = client.get("/e/999999")  # a page's error: HTML, as it should be there
    assert html.status_code == 404 and html.mimetype == "text/html"
    with pytest.raises(AssertionError, match="not JSON"):
        check(None, Response.from_any(html), case)  # type: ignore[arg-type]
    for body in [
        b'{"error": "not_found"}',
        b'{"error": {"code": "Not Found", "message": "x"}}',
        b'{"error": {"code": "not_found", "message": " "}}',
        b'{"message": "x"}',
    ]:
        fake = client.get("/api/v1/entries/999999")  # a JSON 404, its body replaced
        fake.set_data(body)
        with pytest.raises(AssertionError):
            check(None, Response.from_any(fake), case)  # type: ignore[arg-type]
