"""``suyuan serve --read-only``: the read path works without the log's key; writes are 503."""

from __future__ import annotations

from tests.conftest import Site
from tests.helpers import TEST_CONFIG, dump
from tests.web.support import note_json


def test_a_read_only_app_serves_reads_and_refuses_writes(site: Site) -> None:
    from ledger.tokens import create_token
    from web import create_app

    token = create_token(site.instance.engine, "t1")
    app = create_app({**TEST_CONFIG, "SUYUAN_READ_ONLY": True})
    client = app.test_client()
    before = dump(site.instance.engine)
    assert client.get("/log/checkpoint").status_code == 200
    assert client.get("/e/0").status_code == 200
    response = client.post(
        "/api/v1/entries",
        json=note_json(site.log, "hello", site.admin),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "not_configured"
    assert "read-only" in response.get_json()["error"]["message"]
    assert dump(site.instance.engine) == before
