"""Tests for ledger.tiles: C2SP tlog-tiles paths, tile sets, bundles, TileHashReader."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import InvalidInput
from ledger.merkle import (
    HASH_SIZE,
    NodeId,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    tree_root,
)
from ledger.tiles import (
    TILE_HEIGHT,
    TILE_WIDTH,
    EntryBundle,
    Tile,
    TileHashReader,
    decode_entry_bundle,
    encode_entry_bundle,
    encode_index,
    entry_bundles_for_size,
    parse_tile_path,
    split_tile,
    tile_node_ids,
    tiles_for_size,
)

# --------------------------------------------------------------------------
# paths


def test_constants() -> None:
    assert TILE_HEIGHT == 8
    assert TILE_WIDTH == 256


@pytest.mark.parametrize(
    ("n", "encoded"),
    [
        (0, "000"),
        (5, "005"),
        (999, "999"),
        (1000, "x001/000"),
        (273, "273"),
        (1234067, "x001/x234/067"),
        (1_000_000, "x001/x000/000"),
        (12_345_678_901, "x012/x345/x678/901"),
    ],
)
def test_encode_index(n: int, encoded: str) -> None:
    assert encode_index(n) == encoded


def test_paths_from_the_spec() -> None:
    assert Tile(0, 1234067).path() == "tile/0/x001/x234/067"
    assert Tile(1, 1, 17).path() == "tile/1/001.p/17"
    assert Tile(63, 0, 255).path() == "tile/63/000.p/255"
    assert EntryBundle(273, 112).path() == "tile/entries/273.p/112"
    assert EntryBundle(1234067).path() == "tile/entries/x001/x234/067"
    assert parse_tile_path("tile/0/x001/234.p/7") == Tile(0, 1234, 7)
    assert parse_tile_path("tile/entries/000") == EntryBundle(0)
    assert parse_tile_path("tile/2/000.p/1") == Tile(2, 0, 1)
    assert Tile(0, 0).is_full and not Tile(0, 0, 1).is_full
    assert EntryBundle(0).is_full and not EntryBundle(0, 255).is_full


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 63),
    st.one_of(st.integers(0, 2000), st.integers(0, 10**15)),
    st.one_of(st.just(256), st.integers(1, 256)),
)
def test_path_round_trip(level: int, index: int, width: int) -> None:
    tile = Tile(level, index, width)
    assert parse_tile_path(tile.path()) == tile
    bundle = EntryBundle(index, width)
    assert parse_tile_path(bundle.path()) == bundle
    encoded = encode_index(index)
    assert int(encoded.replace("x", "").replace("/", "")) == index
    elements = encoded.split("/")
    assert all(len(e) == 4 and e[0] == "x" for e in elements[:-1]) and len(elements[-1]) == 3


@pytest.mark.parametrize(
    "path",
    [
        "",
        "tile",
        "tile/0",
        "tiles/0/000",
        "/tile/0/000",
        "tile/0/000/",
        "tile//000",
        "tile/00/000",
        "tile/01/000",
        "tile/64/000",
        "tile/100/000",
        "tile/-1/000",
        "tile/+1/000",
        "tile/a/000",
        "tile/ 1/000",
        "tile/0/",
        "tile/0/00",
        "tile/0/0000",
        "tile/0/1234067",
        "tile/0/00a",
        "tile/0/+00",
        "tile/0/ 00",
        "tile/0/\u0660\u0660\u0660",
        "tile/\u0661/000",
        "tile/0/001/234",
        "tile/0/x001/x234",
        "tile/0/X001/234",
        "tile/0/xx01/234",
        "tile/0/x01/234",
        "tile/0/x0001/234",
        "tile/0/x000/001",
        "tile/0/x000/x001/234",
        "tile/0/000.p",
        "tile/0/000.p/",
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/0/000.p/007",
        "tile/0/000.p/1x",
        "tile/0/000.p/-1",
        "tile/0/000.p/1.p/2",
        "tile/0/000.p/5/6",
        "tile/0/000.P/5",
        "tile/0/000/extra",
        "tile/0/000\n",
        "tile/0/000.p/5\n",
        " tile/0/000",
        "tile/entries",
        "tile/entries/",
        "tile/entries/00",
        "tile/entries/000.p/256",
        "tile/entries/000.p/00",
        "tile/entries/x000/000",
        "tile/entries/1/000",
    ],
)
def test_parse_tile_path_rejects(path: str) -> None:
    with pytest.raises(InvalidInput, match="expected"):
        parse_tile_path(path)


def test_parse_tile_path_rejects_non_strings() -> None:
    for value in (None, b"tile/0/000", 5):
        with pytest.raises(InvalidInput, match="expected a string"):
            parse_tile_path(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "args",
    [(64, 0, 256), (-1, 0, 256), (0, -1, 256), (0, 0, 0), (0, 0, 257), (True, 0, 256), ("0", 0, 1)],
)
def test_tile_validation(args: tuple[Any, Any, Any]) -> None:
    with pytest.raises(InvalidInput, match="expected"):
        Tile(*args)


@pytest.mark.parametrize("args", [(-1, 256), (0, 0), (0, 300), (0.0, 1)])
def test_bundle_validation(args: tuple[Any, Any]) -> None:
    with pytest.raises(InvalidInput, match="expected"):
        EntryBundle(*args)


def test_encode_index_rejects_negative() -> None:
    with pytest.raises(InvalidInput):
        encode_index(-1)


# --------------------------------------------------------------------------
# which tiles a tree has


def test_tiles_for_size_examples_from_the_spec() -> None:
    tiles = tiles_for_size(70_000)
    assert tiles == [
        *(Tile(0, n) for n in range(273)),
        Tile(0, 273, 112),
        Tile(1, 0),
        Tile(1, 1, 17),
        Tile(2, 0, 1),
    ]
    assert tiles_for_size(256) == [Tile(0, 0), Tile(1, 0, 1)]
    assert tiles_for_size(0) == []
    assert tiles_for_size(1) == [Tile(0, 0, 1)]
    assert tiles_for_size(65536) == [*(Tile(0, n) for n in range(256)), Tile(1, 0), Tile(2, 0, 1)]
    assert entry_bundles_for_size(70_000) == [
        *(EntryBundle(n) for n in range(273)),
        EntryBundle(273, 112),
    ]
    assert entry_bundles_for_size(512) == [EntryBundle(0), EntryBundle(1)]
    assert entry_bundles_for_size(0) == []
    for bad in (-1, "5"):
        with pytest.raises(InvalidInput):
            tiles_for_size(bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidInput):
            entry_bundles_for_size(bad)  # type: ignore[arg-type]


def test_tile_node_ids() -> None:
    assert tile_node_ids(Tile(0, 0, 2)) == [(0, 0), (0, 1)]
    assert tile_node_ids(Tile(1, 2, 3)) == [(8, 512), (8, 513), (8, 514)]
    assert len(tile_node_ids(Tile(2, 7))) == 256


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.integers(0, 70_000), st.integers(0, 1 << 21)))
def test_tiles_for_size_cover_the_tile_levels(size: int) -> None:
    tiles = tiles_for_size(size)
    for tile in tiles:
        assert tile.width == min(
            TILE_WIDTH, (size >> (TILE_HEIGHT * tile.level)) - tile.index * TILE_WIDTH
        )
        assert tile.width == TILE_WIDTH or tile.width == (size >> (8 * tile.level)) % 256
    levels = {tile.level for tile in tiles}
    for level in levels:
        at_level = [tile for tile in tiles if tile.level == level]
        assert [tile.index for tile in at_level] == list(range(len(at_level)))
        # Exactly the perfect nodes of tree level 8 * level, in order.
        count = sum(tile.width for tile in at_level)
        assert count == size >> (TILE_HEIGHT * level)
        if size < 1 << 16:
            ids = [node for tile in at_level for node in tile_node_ids(tile)]
            assert ids == [(8 * level, i) for i in range(count)]
    assert levels == set(range(len(levels)))
    bundles = entry_bundles_for_size(size)
    assert [(b.index, b.width) for b in bundles] == [
        (t.index, t.width) for t in tiles if t.level == 0
    ]


# --------------------------------------------------------------------------
# entry bundles and tile bodies


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=300), max_size=TILE_WIDTH))
def test_entry_bundle_round_trip(entries: list[bytes]) -> None:
    data = encode_entry_bundle(entries)
    assert len(data) == sum(2 + len(e) for e in entries)
    assert decode_entry_bundle(data) == entries
    assert decode_entry_bundle(data, len(entries)) == entries


def test_entry_bundle_format() -> None:
    assert encode_entry_bundle([b"a", b"bc"]) == b"\x00\x01a\x00\x02bc"
    big = b"\xff" * 0xFFFF
    data = encode_entry_bundle([big, b"z"])
    assert data[:2] == b"\xff\xff"
    assert decode_entry_bundle(data, 2) == [big, b"z"]
    assert encode_entry_bundle([]) == b""
    assert decode_entry_bundle(b"") == []


@pytest.mark.parametrize(
    "entries",
    [[b""], [b"a", b""], [b"x" * 0x10000], [b"a"] * 257, ["text"], [None]],
)
def test_encode_entry_bundle_rejects(entries: list[Any]) -> None:
    with pytest.raises(InvalidInput, match="expected"):
        encode_entry_bundle(entries)


@pytest.mark.parametrize(
    ("data", "count"),
    [
        (b"\x00", None),  # truncated length prefix
        (b"\x00\x01a\x00", None),  # trailing byte: truncated second prefix
        (b"\x00\x05abc", None),  # truncated body
        (b"\x00\x01a\x00\x03ab", None),  # truncated second body
        (b"\x00\x01a", 2),  # count mismatch
        (b"\x00\x01a\x00\x01b", 1),  # count mismatch
        (b"", 1),
        (b"\x00\x01a" * 257, None),  # too many entries
        (b"\x00\x01a", 257),  # impossible expected count
        (b"\x00\x01a", -1),
        ("\x00\x01a", None),  # not bytes
    ],
)
def test_decode_entry_bundle_rejects(data: Any, count: int | None) -> None:
    with pytest.raises(InvalidInput, match="expected"):
        decode_entry_bundle(data, count)


def test_decode_entry_bundle_accepts_empty_entries() -> None:
    # C2SP tlog-tiles allows zero-length entries (Go's sumdb/tlog logs may hold them).
    assert decode_entry_bundle(b"\x00\x00") == [b""]
    assert decode_entry_bundle(b"\x00\x01a\x00\x00\x00\x01b", 3) == [b"a", b"", b"b"]


def test_split_tile() -> None:
    hashes = [bytes([i]) * HASH_SIZE for i in range(3)]
    assert split_tile(b"".join(hashes), Tile(0, 0, 3)) == hashes
    for data in (b"", b"\x00" * 95, b"\x00" * 97, b"\x00" * 8192):
        with pytest.raises(InvalidInput, match="expected 96 bytes"):
            split_tile(data, Tile(0, 0, 3))
    assert len(split_tile(b"\x01" * 8192, Tile(0, 0))) == 256


# --------------------------------------------------------------------------
# TileHashReader against the direct node store

MAX_SIZE = 70_000


@functools.cache
def store() -> dict[NodeId, bytes]:
    """Every perfect node of a tree of MAX_SIZE leaves, built level by level."""
    nodes: dict[NodeId, bytes] = {}
    row = [leaf_hash(b"tile test %d" % i) for i in range(MAX_SIZE)]
    level = 0
    while row:
        nodes.update(((level, i), h) for i, h in enumerate(row))
        row = [node_hash(row[i], row[i + 1]) for i in range(0, len(row) - 1, 2)]
        level += 1
    return nodes


def direct_reader(size: int) -> Any:
    nodes = store()

    def read(ids: Sequence[NodeId]) -> list[bytes]:
        for level, index in ids:
            assert (index + 1) << level <= size
        return [nodes[node] for node in ids]

    return read


class Fetcher:
    """Serves tile bodies from the store; checks that only the tree's tiles are asked for."""

    def __init__(self, size: int) -> None:
        self.allowed = set(tiles_for_size(size))
        self.fetched: list[Tile] = []

    def __call__(self, tile: Tile) -> bytes:
        assert tile in self.allowed, f"{tile.path()} is not a tile of this tree"
        assert tile not in self.fetched, f"{tile.path()} fetched twice"
        self.fetched.append(tile)
        nodes = store()
        return b"".join(nodes[node] for node in tile_node_ids(tile))


def check_equivalence(size: int, indices: Sequence[int], sizes1: Sequence[int]) -> None:
    direct = direct_reader(size)
    fetcher = Fetcher(size)
    tiled = TileHashReader(fetcher, size)
    assert tree_root(size, tiled) == tree_root(size, direct)
    for index in indices:
        assert inclusion_proof(index, size, tiled) == inclusion_proof(index, size, direct)
    for size1 in sizes1:
        assert consistency_proof(size1, size, tiled) == consistency_proof(size1, size, direct)


@pytest.mark.parametrize(
    "size", [1, 2, 3, 255, 256, 257, 511, 512, 513, 65535, 65536, 65537, MAX_SIZE]
)
def test_tile_reader_edges(size: int) -> None:
    check_equivalence(
        size,
        sorted({0, size // 2, size - 1, max(0, size - 257)}),
        sorted({1, size // 3 or 1, max(1, size - 1), 256 if size >= 256 else 1}),
    )


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_tile_reader_matches_direct_reader(data: st.DataObject) -> None:
    size = data.draw(st.one_of(st.integers(1, 2000), st.integers(1, MAX_SIZE)), label="size")
    indices = data.draw(st.lists(st.integers(0, size - 1), min_size=1, max_size=4))
    sizes1 = data.draw(st.lists(st.integers(1, size), min_size=1, max_size=4))
    check_equivalence(size, indices, sizes1)


def test_tile_reader_caches_tiles() -> None:
    size = 1000
    fetcher = Fetcher(size)
    tiled = TileHashReader(fetcher, size)
    for index in range(0, size, 37):
        inclusion_proof(index, size, tiled)
    assert len(fetcher.fetched) == len(set(fetcher.fetched))
    assert set(fetcher.fetched) <= set(tiles_for_size(size))


def test_tile_reader_tile_for() -> None:
    tiled = TileHashReader(Fetcher(70_000), 70_000)
    assert tiled.tile_for((0, 5)) == Tile(0, 0)
    assert tiled.tile_for((0, 69_999)) == Tile(0, 273, 112)
    assert tiled.tile_for((3, 8)) == Tile(0, 0)  # leaves 64..71
    assert tiled.tile_for((8, 272)) == Tile(1, 1, 17)
    assert tiled.tile_for((12, 16)) == Tile(1, 1, 17)  # level-8 nodes 256..271
    assert tiled.tile_for((16, 0)) == Tile(2, 0, 1)


def test_tile_reader_rejects() -> None:
    tiled = TileHashReader(Fetcher(300), 300)
    for node in [(0, 300), (1, 150), (9, 0), (-1, 0), (0, -1)]:
        with pytest.raises(InvalidInput, match="expected"):
            tiled([node])
    with pytest.raises(InvalidInput):
        tiled([(0,)])  # type: ignore[list-item]
    with pytest.raises(InvalidInput):
        TileHashReader(Fetcher(1), -1)

    def short(tile: Tile) -> bytes:
        return b"\x00" * (tile.width * HASH_SIZE - 1)

    with pytest.raises(InvalidInput, match="expected"):
        tree_root(300, TileHashReader(short, 300))
