"""The domain queries and evidence documents under /api/v1, on a small demo data set.

Ids are discovered through the API itself (balances, lists), as a client would.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from openpyxl import load_workbook

from ledger.demo import load_demo
from ledger.queries import QUERIES
from ledger.tokens import create_token
from tests.helpers import check_ledger, dump
from tests.web.support import ModuleSite, make_site
from tests.web.test_api import assert_json_error
from web.openapi import OPENAPI


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleSite]:
    with make_site(tmp_path_factory.mktemp("demo")) as site:
        load_demo(site.instance, households=40)
        yield site


@pytest.fixture
def api(demo_site: ModuleSite) -> FlaskClient:
    return demo_site.client


def _json(client: FlaskClient, url: str) -> Any:
    response = client.get(url)
    assert response.status_code == 200, (url, response.get_data(as_text=True)[:500])
    assert response.content_type == "application/json"
    return response.get_json()


def test_the_trail_from_every_source_adds_up(api: FlaskClient) -> None:
    balances = _json(api, "/api/v1/funds/balances")
    assert balances["sources"], "the demo has fund sources"
    for source in balances["sources"]:
        trail = _json(api, f"/api/v1/funds/trail?source={source['id']}")
        allocations = trail["allocations"]
        assert (
            sum(a["amount_fen"] for a in allocations if a["status"] == "active")
            == (trail["source"]["allocated_fen"])
        )
        for allocation in allocations:
            groups = allocation.get("groups", [])
            assert sum(g["amount_fen"] for g in groups) == allocation["disbursed_fen"]
            assert all(isinstance(g["seq"], int) for g in groups)


def test_a_household_trail_and_view_carry_no_personal_data(api: FlaskClient) -> None:
    households = _json(api, "/api/v1/households?limit=5")
    assert len(households) == 5
    code = households[0]["code"]
    view = _json(api, f"/api/v1/households/view?code={code}")
    assert view["code"] == code and view["history"]
    trail = _json(api, f"/api/v1/funds/trail?household={code}")
    text = str(view) + str(trail)
    assert "示例户主" not in text and "999999" not in text  # the demo's fake private records


def test_a_recalled_batch_shows_its_recall_and_provenance(api: FlaskClient) -> None:
    listed = _json(api, "/api/v1/batches?limit=1000")["batches"]
    recalled = [b for b in listed if b["status"] == "recalled"]
    assert len(recalled) >= 2  # the recalled lot and what was derived from it
    derived = next(
        b for b in recalled if b["recalled_seq"] and b["registered_seq"] != b["recalled_seq"]
    )
    query = f"lot={derived['lot']}" + (f"&gtin={derived['gtin']}" if derived["gtin"] else "")
    view = _json(api, f"/api/v1/batches/view?{query}")
    assert view["recall"]["seq"] == derived["recalled_seq"]
    graph = _json(api, f"/api/v1/batches/provenance?{query}")
    assert len(graph["nodes"]) >= 2 and graph["edges"]


def test_exports_as_csv_and_xlsx(api: FlaskClient) -> None:
    csv = api.get("/api/v1/funds/anomalies?format=csv&today=2021-01-01")
    assert csv.status_code == 200
    assert csv.mimetype == "text/csv"
    assert "attachment" in csv.headers["Content-Disposition"]
    text = csv.get_data().decode("utf-8")
    assert text.startswith("\ufeffanomaly,")
    assert "overspend_attempts" not in text and "overdue_milestones" in text
    xlsx = api.get("/api/v1/projects?format=xlsx")
    assert xlsx.status_code == 200
    sheet = load_workbook(io.BytesIO(xlsx.get_data())).active
    assert sheet is not None
    header = [c.value for c in next(sheet.iter_rows(max_row=1))]
    assert "id" in header and "budget_fen" in header


@pytest.mark.parametrize(
    ("url", "status", "needle"),
    [
        ("/api/v1/funds/trail", 400, "exactly one of"),
        ("/api/v1/funds/trail?source=a&project=b", 400, "exactly one of"),
        ("/api/v1/funds/trail?source=a&source=b", 400, "2 times"),
        ("/api/v1/funds/trail?source=NO-SUCH", 404, "NO-SUCH"),
        ("/api/v1/funds/trail?source=x&colour=red", 400, "colour"),
        ("/api/v1/households?limit=%EF%BC%95", 400, "ASCII digits"),
        ("/api/v1/households?limit=100000", 400, "at most"),
        ("/api/v1/households?status=rich", 400, "status"),
        ("/api/v1/households/view?code=GX-GN-404404", 404, "GX-GN-404404"),
        ("/api/v1/projects/overdue?as_of=2020-13-01", 400, "YYYY-MM-DD"),
        ("/api/v1/batches/view?lot=%00", 400, "lot"),
        ("/api/v1/projects?format=pdf", 400, "format"),
    ],
)
def test_bad_parameters_are_json_errors(
    api: FlaskClient, url: str, status: int, needle: str
) -> None:
    error = assert_json_error(api.get(url), status)
    assert needle in error["message"]


def test_openapi_describes_every_query(api: FlaskClient) -> None:
    document = _json(api, "/api/v1/openapi.json")
    assert document == OPENAPI
    for query in QUERIES.values():
        operation = document["paths"][query.path]["get"]
        names = {p["name"] for p in operation["parameters"]}
        assert names == {p.name for p in query.params} | {"format"}
        required = {p["name"] for p in operation["parameters"] if p["required"]}
        assert required == {p.name for p in query.params if p.required}


def test_evidence_documents_download_and_upload(demo_site: ModuleSite, api: FlaskClient) -> None:
    store = Path(demo_site.instance.settings.instance) / "blobs" / "sha256"
    digest = next(p.name for p in store.rglob("*") if p.is_file())
    response = api.get(f"/api/v1/blobs/{digest}")
    assert response.status_code == 200
    assert hashlib.sha256(response.get_data()).hexdigest() == digest
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert_json_error(api.get("/api/v1/blobs/" + "0" * 64), 404)
    assert_json_error(api.get("/api/v1/blobs/..%2F..%2Fprivate.key"), 404)  # no such route
    assert_json_error(api.get("/api/v1/blobs/..private.key"), 400)
    assert_json_error(api.get("/api/v1/blobs/" + "A" * 64), 400)  # upper-case hex is not a name

    before = dump(demo_site.instance.engine)
    assert_json_error(api.post("/api/v1/blobs", data=b"report"), 401)
    token = create_token(demo_site.instance.engine, "uploader")
    headers = {"Authorization": f"Bearer {token}"}
    assert_json_error(api.post("/api/v1/blobs", data=b"", headers=headers), 400)
    made = api.post(
        "/api/v1/blobs?name=验收报告.pdf",
        data=b"%PDF-1.4 acceptance",
        headers={**headers, "Content-Type": "application/pdf"},
    )
    assert made.status_code == 201
    record = made.get_json()
    assert record == {
        "sha256": hashlib.sha256(b"%PDF-1.4 acceptance").hexdigest(),
        "name": "验收报告.pdf",
        "media_type": "application/pdf",
        "size": len(b"%PDF-1.4 acceptance"),
    }
    assert api.get(f"/api/v1/blobs/{record['sha256']}").get_data() == b"%PDF-1.4 acceptance"
    after = dump(demo_site.instance.engine)
    after.pop("api_tokens"), before.pop("api_tokens")
    assert after == before  # storing a document writes nothing to the ledger
    check_ledger(demo_site.instance.engine)
