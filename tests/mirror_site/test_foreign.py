"""``suyuan serve --mirror DIR`` for a log that is not Suyuan's: its tiles and a home page only.

The log is built in the test from ledger.merkle, ledger.tiles and ledger.note:
opaque leaves, its own origin and key.  The mirror serves its files at the C2SP
paths with the caching of ``/log/`` on a Suyuan server, never a file outside the
tree whatever the path says, and nothing of the Suyuan site.
"""

from __future__ import annotations

import gzip
import html
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from ledger.checkpoint import verify_checkpoint
from ledger.errors import ConfigError, VerificationError
from ledger.merkle import leaf_hash, verify_inclusion
from ledger.note import parse_vkey
from ledger.tiles import TileHashReader, entry_bundles_for_size, tiles_for_size
from tests.mirror_site.support import ForeignLog, foreign_log
from web.mirror import create_mirror_app, inspect_mirror

SIZE = 300  # a full and a partial bundle, tiles on two levels


@pytest.fixture
def log(tmp_path: Path) -> ForeignLog:
    made = foreign_log(tmp_path / "mirror", SIZE)
    (tmp_path / "secret.txt").write_text("outside the tree")
    return made


@pytest.fixture
def client(log: ForeignLog) -> FlaskClient:
    return create_mirror_app(log.directory, {"TESTING": True}).test_client()


def test_the_files_are_served_at_the_c2sp_paths_as_the_tree_holds_them(
    log: ForeignLog, client: FlaskClient
) -> None:
    checkpoint = client.get("/log/checkpoint")
    assert checkpoint.data == (log.directory / "checkpoint").read_bytes()
    assert checkpoint.headers["Cache-Control"] == "public, max-age=2, must-revalidate"
    assert checkpoint.mimetype == "text/plain"
    paths = [t.path() for t in tiles_for_size(SIZE)] + [
        b.path() for b in entry_bundles_for_size(SIZE)
    ]
    assert "tile/1/000.p/1" in paths and "tile/entries/001.p/44" in paths
    for path in paths:
        response = client.get(f"/log/{path}")
        assert response.status_code == 200, path
        assert response.data == (log.directory / path).read_bytes(), path
        assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert response.mimetype == "application/octet-stream"
    zipped = client.get("/log/tile/entries/000", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped.data) == (log.directory / "tile/entries/000").read_bytes()
    vkey = client.get("/log/vkey").get_data(as_text=True).strip()
    assert vkey == log.vkey


def test_a_client_proves_inclusion_from_the_mirror_alone(
    log: ForeignLog, client: FlaskClient
) -> None:
    from ledger.merkle import inclusion_proof

    verifier = parse_vkey(client.get("/log/vkey").get_data(as_text=True).strip())
    checkpoint, _ = verify_checkpoint(client.get("/log/checkpoint").data, verifier)
    reader = TileHashReader(lambda tile: client.get(f"/log/{tile.path()}").data, checkpoint.size)
    for index in (0, 255, 256, SIZE - 1):
        proof = inclusion_proof(index, checkpoint.size, reader)
        verify_inclusion(leaf_hash(log.leaves[index]), index, SIZE, proof, checkpoint.root)


@pytest.mark.parametrize(
    "path",
    [
        "/log/tile/../checkpoint",
        "/log/tile/../../secret.txt",
        "/log/tile/entries/../../.mirror/vkey",
        "/log/tile/0/..%2f..%2fsecret.txt",
        "/log/tile/%2e%2e/%2e%2e/secret.txt",
        "/log/tile/0/x000/000",
        "/log/tile/0/000.p/0",
        "/log/tile/0/000.p/256",
        "/log/tile/64/000",
        "/log/tile/0//000",
        "/log/tile/entries/000.p/44/../../../secret.txt",
        "/log/tile/0/002",  # well-formed, beyond the tree: no such file
        "/log/tile/2/000",
    ],
)
def test_no_path_reaches_a_file_the_tree_does_not_hold(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404, path
    assert b"outside the tree" not in response.data and b"+" not in response.data


def test_the_home_page_says_whose_mirror_it_is(log: ForeignLog, client: FlaskClient) -> None:
    response = client.get("/", headers={"Accept-Language": "en"})
    assert response.status_code == 200
    page = html.unescape(response.get_data(as_text=True))
    assert "Mirror of example.org/foreign-log" in page
    assert f'data-mirror-size="{SIZE}"' in page
    assert (log.directory / "checkpoint").read_text().split("\n— ")[0] in page
    assert f"suyuan mirror http://localhost/log --vkey '{log.vkey}' --dir DIR" in page
    assert "not a Suyuan ledger" in page
    assert "not recorded" in page  # no upstream URL in this mirror's state
    assert "suyuan verify" not in page  # it audits Suyuan entries: not for this log
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert client.get("/mirror", headers={"Accept-Language": "en"}).data == response.data
    health = client.get("/healthz").get_json()
    assert health == {
        "status": "ok",
        "mirror": True,
        "origin": "example.org/foreign-log",
        "size": SIZE,
        "updated": health["updated"],
    }
    status = client.get("/mirror.json").get_json()
    assert status["suyuan"] is False and "site" not in status and status["upstream"] is None


def test_a_hostile_upstream_url_is_shown_as_text_never_as_a_link(
    log: ForeignLog, client: FlaskClient
) -> None:
    (log.directory / ".mirror" / "state.json").write_text('{"url": "javascript:alert(1)"}')
    page = client.get("/", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "<code>javascript:alert(1)</code>" in page and 'href="javascript' not in page


def test_the_mirror_follows_the_tree_as_it_grows(log: ForeignLog, client: FlaskClient) -> None:
    log.grow(SIZE + 300)
    verifier = parse_vkey(log.vkey)
    checkpoint, _ = verify_checkpoint(client.get("/log/checkpoint").data, verifier)
    assert checkpoint.size == SIZE + 300
    assert client.get("/log/tile/entries/002.p/88").status_code == 200
    assert client.get("/healthz").get_json()["size"] == SIZE + 300


def test_nothing_can_be_written_and_no_suyuan_route_exists(client: FlaskClient) -> None:
    for method, path in [
        ("POST", "/log/checkpoint"),
        ("PUT", "/log/tile/0/000"),
        ("DELETE", "/log/tile/entries/000"),
        ("POST", "/"),
        ("POST", "/mirror"),
    ]:
        assert client.open(path, method=method).status_code == 405, (method, path)
    for path in ["/e/0", "/api/v1/entries/0", "/login", "/notices", "/api/v1/entries"]:
        assert client.get(path).status_code == 404, path
    assert client.post("/api/v1/entries", json={}).status_code == 404


def test_a_tree_whose_checkpoint_does_not_verify_is_refused(log: ForeignLog) -> None:
    other = foreign_log(log.directory.parent / "other", 3)
    (log.directory / ".mirror" / "vkey").write_text(other.vkey)
    with pytest.raises(VerificationError, match="does not verify with the mirror's key"):
        inspect_mirror(log.directory)
    (log.directory / ".mirror" / "vkey").unlink()
    with pytest.raises(ConfigError, match=r"\.mirror/vkey is missing"):
        create_mirror_app(log.directory)
