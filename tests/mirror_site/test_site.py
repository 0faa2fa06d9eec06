"""``suyuan serve --mirror DIR`` for a Suyuan log: the whole read-only site from a verified copy.

The origin is the small demo ledger (products, funds, projects, households) built
once for the module through the real init path, exported as ``suyuan export``
writes it (the layout ``suyuan mirror`` keeps).  The mirror's app must show the
same facts on the same pages, serve proofs that verify against the checkpoint the
origin signed, serve the origin's tiles byte for byte, refuse every write, and keep
a database that ``suyuan verify`` passes — without ever holding a key or a
household's personal data.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from ledger import demo
from ledger.checkpoint import verify_checkpoint
from ledger.cli import main
from ledger.db import make_engine
from ledger.domain import gs1
from ledger.ingest import database_url
from ledger.merkle import leaf_hash, verify_inclusion
from ledger.note import Verifier
from ledger.projection import PROJECTIONS
from ledger.queries import QUERIES
from ledger.tiles import entry_bundles_for_size, tiles_for_size
from tests.helpers import TEST_CONFIG, dump
from tests.mirror_site.support import UPSTREAM, mirror_of
from tests.web.support import ModuleSite, make_site, note_json

EN = {"Accept-Language": "en"}
CONFIG = {**TEST_CONFIG, "SUYUAN_MIRROR_SYNC_SECONDS": 0, "SUYUAN_SCAN_FLUSH_THREAD": False}


@dataclass
class Mirrored:
    origin: ModuleSite
    directory: Path
    app: Flask
    engine: Engine  # the mirror's database

    @property
    def client(self) -> FlaskClient:
        return self.app.test_client()

    @property
    def verifier(self) -> Verifier:
        """The origin's key, from the origin itself (never from the mirror)."""
        return self.origin.log.verifier


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mirrored]:
    from web.mirror import create_mirror_app

    root = tmp_path_factory.mktemp("mirror_site")
    with make_site(root / "origin") as origin:
        demo.load_demo(origin.instance, households=20)
        origin.app.config["SUYUAN_SCAN_FLUSH_THREAD"] = False
        directory = mirror_of(origin.log, root / "mirror")
        app = create_mirror_app(directory, CONFIG)
        engine = make_engine(database_url(directory))
        yield Mirrored(origin, directory, app, engine)
        engine.dispose()
        app.extensions["suyuan"]["instance"].engine.dispose()


def origin_conn_rows(site: ModuleSite, sql: str) -> list[tuple[object, ...]]:
    with site.instance.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def public_urls(site: ModuleSite) -> list[str]:
    """Product pages, project boards, payment notices, entries and the API's read endpoints."""
    lots = origin_conn_rows(site, "SELECT gtin, lot FROM batches ORDER BY registered_seq LIMIT 8")
    recalled = origin_conn_rows(site, "SELECT gtin, lot FROM batches WHERE status = 'recalled'")
    urls = [gs1.batch_path(str(g) if g else None, str(lot)) for g, lot in lots + recalled]
    urls += [f"/p/{r[0]}" for r in origin_conn_rows(site, "SELECT id FROM projects")]
    urls += [
        f"/n/{r[0]}"
        for r in origin_conn_rows(
            site, "SELECT disbursed_seq FROM fund_disbursements ORDER BY disbursed_seq LIMIT 4"
        )
    ]
    size = site.log.size()
    urls += ["/notices", "/notices?page=2", "/e/0", f"/e/{size // 2}", f"/e/{size - 1}"]
    urls += ["/api/v1/keys", f"/api/v1/entries/{size - 3}", f"/api/v1/entries/7?size={size}"]
    urls += [
        f"/api/v1{q.path}"
        for q in QUERIES.values()
        if not any(p.required for p in q.params) and not q.one_of
    ]
    return urls


def test_pages_show_the_same_facts_as_the_origins(mirrored: Mirrored) -> None:
    origin, mirror = mirrored.origin.client, mirrored.client
    urls = public_urls(mirrored.origin)
    assert any(u.startswith("/01/") for u in urls) and any(u.startswith("/p/") for u in urls)
    ok = 0
    for url in urls:
        theirs, ours = origin.get(url, headers=EN), mirror.get(url, headers=EN)
        assert ours.status_code == theirs.status_code, url
        assert ours.data == theirs.data, url
        ok += theirs.status_code == 200
    assert ok >= len(urls) - 3  # a few queries refuse to run without a filter, on both


def test_the_front_page_differs_only_in_when_the_checkpoint_was_stored(
    mirrored: Mirrored,
) -> None:
    """The origin records the moment it signed; the mirror the log time of its last entry."""
    theirs = mirrored.origin.client.get("/", headers=EN).get_data(as_text=True)
    ours = mirrored.client.get("/", headers=EN).get_data(as_text=True)
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z"
    assert re.sub(stamp, "T", ours) == re.sub(stamp, "T", theirs)
    assert f"Entries: <strong>{mirrored.origin.log.size()}</strong>" in ours


def test_proofs_verify_against_the_checkpoint_the_origin_signed(mirrored: Mirrored) -> None:
    size = mirrored.origin.log.size()
    origin_note = mirrored.origin.client.get("/log/checkpoint").get_data(as_text=True)
    for seq in (0, 1, size // 3, size - 1):
        body = mirrored.client.get(f"/api/v1/entries/{seq}?size={size}").get_json()
        assert body["checkpoint"] == origin_note
        checkpoint, _ = verify_checkpoint(body["checkpoint"], mirrored.verifier)
        leaf = base64.b64decode(body["leaf"])
        assert leaf == mirrored.origin.log.leaves(seq, seq + 1)[0]
        proof = [base64.b64decode(h) for h in body["inclusion_proof"]["hashes"]]
        verify_inclusion(leaf_hash(leaf), seq, checkpoint.size, proof, checkpoint.root)
    page = mirrored.client.get(f"/e/{size - 1}", headers=EN).get_data(as_text=True)
    assert 'data-verify-status="pending"' in page  # the browser re-checks it, as on the origin


def test_tiles_bundles_checkpoint_and_vkey_are_byte_identical(mirrored: Mirrored) -> None:
    origin, mirror = mirrored.origin.client, mirrored.client
    size = mirrored.origin.log.size()
    paths = ["/log/checkpoint", "/log/vkey"]
    paths += [f"/log/{t.path()}" for t in tiles_for_size(size)]
    paths += [f"/log/{b.path()}" for b in entry_bundles_for_size(size)]
    for path in paths:
        theirs, ours = origin.get(path), mirror.get(path)
        assert ours.status_code == theirs.status_code == 200, path
        assert ours.data == theirs.data, path
        assert ours.headers["Cache-Control"] == theirs.headers["Cache-Control"], path
        if "/tile/" in path:
            assert ours.data == (mirrored.directory / path.removeprefix("/log/")).read_bytes()
    gzipped = mirror.get("/log/tile/entries/000", headers={"Accept-Encoding": "gzip"})
    assert gzipped.headers["Content-Encoding"] == "gzip"
    assert mirror.get("/log/tile/0/x999/999").status_code == 404


def test_every_write_is_refused_and_nothing_changes(mirrored: Mirrored) -> None:
    client = mirrored.client
    before = dump(mirrored.engine)
    statement = note_json(mirrored.origin.log, "via the mirror", mirrored.origin.admin)
    response = client.post("/api/v1/entries", json=statement)
    assert response.status_code == 503
    error = response.get_json()["error"]
    assert error["code"] == "not_configured" and "read-only mirror" in error["message"]
    for method, path in [
        ("POST", "/login"),
        ("POST", "/logout"),
        ("POST", "/api/v1/blobs"),
        ("POST", "/log/checkpoint"),
        ("PUT", "/log/tile/0/000"),
        ("DELETE", "/e/0"),
        ("POST", "/producer/batches/new"),
        ("POST", "/admin/users/new"),
        ("PATCH", "/mirror"),
    ]:
        answer = client.open(path, method=method, data={"username": "admin", "password": "x"})
        assert answer.status_code == 503, (method, path)
        assert "read-only mirror of test.suyuan.example/log" in answer.get_data(as_text=True)
    assert client.get("/audit/trail").status_code == 302  # portals need a login: there is none
    assert dump(mirrored.engine) == before


def test_the_mirror_page_says_whose_copy_it_is_and_how_to_check_it(mirrored: Mirrored) -> None:
    response = mirrored.client.get("/mirror", headers=EN)
    assert response.status_code == 200
    page = html.unescape(response.get_data(as_text=True))
    size = mirrored.origin.log.size()
    vkey = mirrored.verifier.vkey
    assert "Mirror of test.suyuan.example/log" in page
    assert f'data-mirror-size="{size}"' in page
    assert mirrored.origin.log.latest_checkpoint().note.split("\n— ")[0] in page
    assert f'<a href="{UPSTREAM}"' in page
    assert f"suyuan verify --url http://localhost/log --vkey '{vkey}'" in page
    assert f"suyuan verify --url {UPSTREAM} --vkey '{vkey}' --since" in page
    assert "data-mirror-sync" not in page  # no failed sync to report
    status = mirrored.client.get("/mirror.json").get_json()
    assert status["origin"] == "test.suyuan.example/log" and status["size"] == size
    assert status["suyuan"] is True and status["upstream"] == UPSTREAM
    assert status["site"]["size"] == size and status["site"]["error"] is None
    assert status["checkpoint"] == (mirrored.directory / "checkpoint").read_text()


def test_suyuan_verify_passes_on_the_mirror_database(mirrored: Mirrored, tmp_path: Path) -> None:
    env = {"SUYUAN_DATABASE_URL": database_url(mirrored.directory)}
    env["SUYUAN_INSTANCE"] = str(tmp_path / "no-instance")
    result = CliRunner().invoke(main, ["verify", "--workers", "0"], env=env)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"OK {mirrored.origin.log.size()} entries"


def test_the_mirror_database_holds_the_origins_ledger_and_no_personal_data(
    mirrored: Mirrored,
) -> None:
    theirs, ours = dump(mirrored.origin.instance.engine), dump(mirrored.engine)
    for table in ["meta", "log_state", "entries", "tree_nodes", "keys", *sorted(PROJECTIONS)]:
        assert ours[table] == theirs[table], table
    assert theirs["household_private"], "the demo keeps a few private records"
    assert ours["household_private"] == []
    assert ours["api_tokens"] == []
    with mirrored.engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM users")).scalar_one() == 0
