"""``/log/…`` exactly per C2SP tlog-tiles (https://c2sp.org/tlog-tiles).

The shared log has 600 entries published in seven checkpoints (sizes 1, 100,
200, …, 600), so it has full and partial tiles at level 0, a partial tile at
level 1, and partial tiles of *past* checkpoints that the spec says MUST still
be served.  Everything a client needs is fetched through the HTTP routes only
and checked against the signed checkpoint.
"""

from __future__ import annotations

import gzip
import random
import re
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient

from ledger.checkpoint import Checkpoint
from ledger.entry import decode_entry
from ledger.errors import VerificationError
from ledger.merkle import (
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    tree_root,
    verify_consistency,
    verify_inclusion,
)
from ledger.note import Verifier
from ledger.tiles import (
    Tile,
    TileHashReader,
    decode_entry_bundle,
    entry_bundles_for_size,
    split_tile,
    tiles_for_size,
)
from tests.conftest import Site
from tests.helpers import check_ledger
from tests.web.support import ModuleSite, add_notes, checked, make_site, served_verifier

SIZE = 600
SIZES = [1, 100, 200, 300, 400, 500, 600]  # every non-empty checkpoint the shared log signs
IMMUTABLE_AT_LEAST = 86_400  # "long-lived": a day at the very least


@pytest.fixture(scope="module")
def tiled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleSite]:
    with make_site(tmp_path_factory.mktemp("tiled")) as site:
        add_notes(site.log, site.admin, 99, batch=99)  # genesis + 99: size 100
        assert site.log.size() == 100
        add_notes(site.log, site.admin, SIZE - 100, batch=100, prefix="more")
        assert [c.size for c in site.log.checkpoints()][::-1] == [0, *SIZES]
        yield site


@pytest.fixture(scope="module")
def client(tiled: ModuleSite) -> FlaskClient:
    return tiled.client


@pytest.fixture(scope="module")
def verifier(client: FlaskClient) -> Verifier:
    return served_verifier(client)


@pytest.fixture(scope="module")
def checkpoint(client: FlaskClient, verifier: Verifier) -> Checkpoint:
    return checked(client.get("/log/checkpoint").get_data(as_text=True), verifier)


def fetch(client: FlaskClient, path: str) -> bytes:
    response = client.get("/log/" + path)
    assert response.status_code == 200, (path, response.get_data(as_text=True))
    assert response.content_type == "application/octet-stream", path
    assert "Content-Encoding" not in response.headers, path
    return response.get_data()


def tile_reader(client: FlaskClient, size: int) -> TileHashReader:
    return TileHashReader(lambda tile: fetch(client, tile.path()), size)


def max_age(cache_control: str) -> int:
    found = re.search(r"(?:^|[ ,])max-age=(\d+)", cache_control)
    assert found, cache_control
    return int(found.group(1))


def mth_of_full_tile(hashes: list[bytes]) -> bytes:
    """MTH of 256 consecutive hashes (a perfect subtree): hash pairs up to one."""
    assert len(hashes) == 256
    row = hashes
    while len(row) > 1:
        row = [node_hash(row[i], row[i + 1]) for i in range(0, len(row), 2)]
    return row[0]


def past_checkpoints(client: FlaskClient, verifier: Verifier) -> dict[int, Checkpoint]:
    body = client.get("/api/v1/checkpoints?limit=500").get_json()
    return {c["size"]: checked(c["note"], verifier) for c in body["checkpoints"]}


# --- checkpoint and vkey --------------------------------------------------------------


def test_checkpoint_is_signed_text_with_short_caching(
    client: FlaskClient, verifier: Verifier
) -> None:
    response = client.get("/log/checkpoint")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    cache = response.headers["Cache-Control"]
    assert max_age(cache) <= 10, cache
    assert "immutable" not in cache
    cp = checked(response.get_data(as_text=True), verifier)
    assert cp.size == SIZE
    assert cp.origin == verifier.name


def test_vkey_is_plain_text(client: FlaskClient, tiled: ModuleSite) -> None:
    response = client.get("/log/vkey")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.get_data(as_text=True) == tiled.log.verifier.vkey + "\n"


def test_checkpoint_follows_appends_and_full_tiles_never_change(site: Site) -> None:
    client = site.app.test_client()
    log = site.log
    add_notes(log, site.admin, 299)
    verifier = served_verifier(client)
    before = checked(client.get("/log/checkpoint").get_data(as_text=True), verifier)
    assert before.size == 300
    full = {t.path(): fetch(client, t.path()) for t in tiles_for_size(300) if t.is_full}
    full |= {b.path(): fetch(client, b.path()) for b in entry_bundles_for_size(300) if b.is_full}
    add_notes(log, site.admin, 300, prefix="later")
    after = checked(client.get("/log/checkpoint").get_data(as_text=True), verifier)
    assert after.size == 600
    assert full and all(fetch(client, path) == body for path, body in full.items())
    # ... and the new tree extends the old one, as proven from tiles alone.
    reader = tile_reader(client, 600)
    verify_consistency(300, 600, consistency_proof(300, 600, reader), before.root, after.root)
    check_ledger(site.instance.engine)


# --- tiles and entry bundles ------------------------------------------------------------


def test_tile_set_for_the_shared_size_matches_the_spec() -> None:
    # floor(s / 256**l) mod 256 hashes in the partial tile of level l; no empty tiles.
    assert [t.path() for t in tiles_for_size(SIZE)] == [
        "tile/0/000",
        "tile/0/001",
        "tile/0/002.p/88",
        "tile/1/000.p/2",
    ]
    assert [b.path() for b in entry_bundles_for_size(SIZE)] == [
        "tile/entries/000",
        "tile/entries/001",
        "tile/entries/002.p/88",
    ]


def test_every_tile_and_bundle_is_served_immutable_and_consistent(
    client: FlaskClient, checkpoint: Checkpoint
) -> None:
    size = checkpoint.size
    leaves: list[bytes] = []
    for bundle in entry_bundles_for_size(size):
        response = client.get("/log/" + bundle.path())
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/octet-stream"
        cache = response.headers["Cache-Control"]
        assert "immutable" in cache and max_age(cache) >= IMMUTABLE_AT_LEAST, cache
        entries = decode_entry_bundle(response.get_data(), bundle.width)
        for offset, leaf in enumerate(entries):
            assert decode_entry(leaf).seq == bundle.index * 256 + offset
        leaves.extend(entries)
    assert len(leaves) == size

    levels: dict[int, list[bytes]] = {}
    for tile in tiles_for_size(size):
        response = client.get("/log/" + tile.path())
        assert response.status_code == 200, tile.path()
        assert response.headers["Content-Type"] == "application/octet-stream"
        cache = response.headers["Cache-Control"]
        assert "immutable" in cache and max_age(cache) >= IMMUTABLE_AT_LEAST, cache
        levels.setdefault(tile.level, []).extend(split_tile(response.get_data(), tile))

    # Level 0 holds the leaf hashes of the bundle entries, in order.
    assert levels[0] == [leaf_hash(leaf) for leaf in leaves]
    # Level 1 hash i is the MTH of full level-0 tile i (and no partial tile is hashed up).
    assert levels[1] == [
        mth_of_full_tile(levels[0][i * 256 : (i + 1) * 256]) for i in range(size // 256)
    ]
    assert sorted(levels) == [0, 1]


def test_root_from_tiles_is_the_checkpoint_root(
    client: FlaskClient, checkpoint: Checkpoint
) -> None:
    assert tree_root(checkpoint.size, tile_reader(client, checkpoint.size)) == checkpoint.root


def test_inclusion_proofs_from_tiles_verify(client: FlaskClient, checkpoint: Checkpoint) -> None:
    size = checkpoint.size
    reader = tile_reader(client, size)
    leaves = [
        leaf
        for bundle in entry_bundles_for_size(size)
        for leaf in decode_entry_bundle(fetch(client, bundle.path()), bundle.width)
    ]
    seqs = {0, 1, 255, 256, 511, 512, size - 1, *random.Random(9162).sample(range(size), 25)}
    for seq in sorted(seqs):
        proof = inclusion_proof(seq, size, reader)
        verify_inclusion(leaf_hash(leaves[seq]), seq, size, proof, checkpoint.root)
    # The same proof must not vouch for a neighbour.
    with pytest.raises(VerificationError, match="does not match"):
        verify_inclusion(
            leaf_hash(leaves[1]), 0, size, inclusion_proof(0, size, reader), checkpoint.root
        )


@pytest.mark.parametrize("size", SIZES)
def test_tiles_of_every_past_checkpoint_are_still_served(
    client: FlaskClient, verifier: Verifier, size: int
) -> None:
    """Spec: logs MUST serve partial tiles for tree sizes for which a checkpoint was produced."""
    past = past_checkpoints(client, verifier)[size]
    for tile in tiles_for_size(size):
        body = fetch(client, tile.path())
        assert len(body) == tile.width * 32
    leaves = [
        leaf
        for bundle in entry_bundles_for_size(size)
        for leaf in decode_entry_bundle(fetch(client, bundle.path()), bundle.width)
    ]
    assert len(leaves) == size
    reader = tile_reader(client, size)
    assert tree_root(size, reader) == past.root
    seq = size // 2
    verify_inclusion(
        leaf_hash(leaves[seq]), seq, size, inclusion_proof(seq, size, reader), past.root
    )
    if size < SIZE:
        # A client holding this old checkpoint can catch up from tiles of the new tree.
        latest = tile_reader(client, SIZE)
        head = past_checkpoints(client, verifier)[SIZE]
        proof = consistency_proof(size, SIZE, latest)
        verify_consistency(size, SIZE, proof, past.root, head.root)


# --- compression ------------------------------------------------------------------------


@pytest.mark.parametrize("bundle_path", ["tile/entries/000", "tile/entries/002.p/88"])
def test_entry_bundles_are_gzipped_on_request(client: FlaskClient, bundle_path: str) -> None:
    plain = client.get("/log/" + bundle_path)
    assert plain.status_code == 200
    assert "Content-Encoding" not in plain.headers
    assert "Accept-Encoding" in plain.headers.get("Vary", "")

    for accept in ["gzip", "gzip, identity", "br;q=1.0, gzip;q=0.8, *;q=0.1"]:
        zipped = client.get("/log/" + bundle_path, headers={"Accept-Encoding": accept})
        assert zipped.status_code == 200
        assert zipped.headers["Content-Encoding"] == "gzip", accept
        assert zipped.headers["Content-Type"] == "application/octet-stream"
        assert "Accept-Encoding" in zipped.headers.get("Vary", "")
        assert zipped.get_data() != plain.get_data()
        assert gzip.decompress(zipped.get_data()) == plain.get_data()

    identity = client.get("/log/" + bundle_path, headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in identity.headers
    assert identity.get_data() == plain.get_data()


def test_entry_bundles_are_not_gzipped_when_gzip_is_refused(client: FlaskClient) -> None:
    response = client.get(
        "/log/tile/entries/000", headers={"Accept-Encoding": "gzip;q=0, identity"}
    )
    assert "Content-Encoding" not in response.headers


def test_tiles_are_never_gzip_encoded(client: FlaskClient) -> None:
    response = client.get("/log/tile/0/000", headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers.get("Content-Encoding", "identity") == "identity"
    assert len(response.get_data()) == 8192


# --- what is not a tile ------------------------------------------------------------------

BAD_PATHS = [
    # leading zeros
    "tile/00/000",
    "tile/01/000",
    "tile/0/000.p/088",
    "tile/entries/002.p/088",
    # widths outside 1..255 in .p/
    "tile/0/000.p/0",
    "tile/0/000.p/256",
    "tile/entries/000.p/0",
    "tile/entries/000.p/256",
    "tile/0/000.p/",
    "tile/0/000.p/-1",
    # level outside 0..63
    "tile/64/000",
    "tile/100/000",
    "tile/-1/000",
    # beyond the tree
    "tile/0/003",
    "tile/0/002",
    "tile/entries/002",
    "tile/entries/003.p/1",
    "tile/1/000",
    "tile/1/001.p/1",
    "tile/2/000.p/1",
    "tile/0/x001/000",
    # a partial wider than the current partial
    "tile/0/002.p/89",
    "tile/entries/002.p/89",
    "tile/1/000.p/3",
    "tile/0/002.p/255",
    # the index encoding: 3-digit groups, x on all but the last, canonical
    "tile/0/x000",
    "tile/0/x000/000",
    "tile/0/x000/001",
    "tile/0/001/000",
    "tile/0/x01/000",
    "tile/0/xx001/000",
    "tile/0/1",
    "tile/0/0001",
    "tile/0/00a",
    "tile/entries/x000",
    "tile/entries/1",
    "tile/0/000.p/1.p/1",
    # not ASCII digits (str.isdigit() would say yes to these)
    "tile/" + quote("０") + "/000",
    "tile/0/" + quote("٠٠٠"),
    "tile/0/000.p/" + quote("²"),
    # traversal and empty elements
    "tile/../checkpoint",
    "tile/0/../../checkpoint",
    "tile/entries/../0/000",
    "tile/%2e%2e/vkey",
    "tile/0/000/",
    "tile/0",
    "tile/entries",
    "tile/x",
]


@pytest.mark.parametrize("path", BAD_PATHS)
def test_bad_tile_paths_are_404_with_a_text_body(client: FlaskClient, path: str) -> None:
    response = client.get("/log/" + path)
    assert response.status_code == 404, (path, response.status_code)
    assert response.content_type.startswith("text/"), response.content_type
    assert response.get_data(as_text=True).strip()
    assert response.headers.get("Cache-Control") != "public, max-age=31536000, immutable"


def test_the_tile_parser_and_the_route_agree_on_a_valid_path(client: FlaskClient) -> None:
    # Guard for the table above: the same shapes, valid, are served.
    for good in ["tile/0/000", "tile/0/002.p/88", "tile/entries/002.p/88", "tile/1/000.p/2"]:
        assert client.get("/log/" + good).status_code == 200, good
    assert Tile(0, 2, 88).path() == "tile/0/002.p/88"


def test_unknown_log_paths_are_404(client: FlaskClient) -> None:
    for path in ["/log/", "/log/checkpoints", "/log/tile/"]:
        response = client.get(path)
        assert response.status_code == 404, path
