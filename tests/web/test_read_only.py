"""``suyuan serve --read-only``: the read path works without the log's key; writes are 503."""

from __future__ import annotations

import sqlite3

import pytest
from flask import Flask
from sqlalchemy.exc import IntegrityError, OperationalError

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


def test_a_full_disk_met_by_a_view_is_a_503_that_says_so(app: Flask) -> None:
    # Views that use an engine directly (not through the Log, which maps driver errors
    # itself) meet the raw driver error: the app's handler must still name the cause.
    def full() -> str:
        raise OperationalError(
            "INSERT INTO scans …", {}, sqlite3.OperationalError("database or disk is full")
        )

    def broken() -> str:
        raise IntegrityError("INSERT …", {}, sqlite3.IntegrityError("UNIQUE constraint"))

    app.add_url_rule("/test-full", "test_full", full)
    app.add_url_rule("/test-broken", "test_broken", broken)
    client = app.test_client()
    response = client.get("/test-full")
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert "the database is full (disk or quota)" in response.get_data(as_text=True)
    with pytest.raises(IntegrityError):  # other database errors are bugs: not turned into 503
        client.get("/test-broken")
