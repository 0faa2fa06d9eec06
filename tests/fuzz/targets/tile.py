"""Hash tiles from outside (``ledger.tiles.split_tile`` via ``TileHashReader``).

Input: two bytes choose the tree size (1..600 of the fixed tree), one byte
which of its tiles is replaced, one byte a leaf index; the rest is the body
served for that tile (every other tile is genuine).  The reader computes the
tree root and an inclusion proof from the tiles, which are then verified
against the genuine root.

Invariants: only ledger errors; a body of the wrong length is refused; with
the genuine body the root and the proof check out; if the computed root is
the genuine one, the proof built from the same tiles verifies.
"""

from __future__ import annotations

from ledger.errors import Error
from ledger.merkle import inclusion_proof, tree_root, verify_inclusion
from ledger.tiles import Tile, TileHashReader, tiles_for_size
from tests.fuzz import fixtures

_TILES: dict[Tile, bytes] = {}
for _tile in tiles_for_size(fixtures.TREE_SIZE):
    _level = _tile.level * 8
    _first = _tile.index * 256
    _TILES[_tile] = b"".join(
        fixtures.read_nodes([(_level, _first + i) for i in range(_tile.width)])
    )


def genuine_tile(tile: Tile) -> bytes:
    """The genuine body of ``tile`` (a tile of the fixed tree; partial tiles are prefixes)."""
    full = _TILES.get(tile)
    if full is not None:
        return full
    wide = next(t for t in _TILES if (t.level, t.index) == (tile.level, tile.index))
    return _TILES[wide][: tile.width * 32]


def one(data: bytes) -> None:
    if len(data) < 4:
        return
    size = 1 + int.from_bytes(data[:2], "big") % fixtures.TREE_SIZE
    tiles = tiles_for_size(size)
    replaced = tiles[data[2] % len(tiles)]
    index = data[3] % size
    body = data[4:]
    genuine = genuine_tile(replaced)

    def fetch(tile: Tile) -> bytes:
        return body if tile == replaced else genuine_tile(tile)

    reader = TileHashReader(fetch, size)
    try:
        root = tree_root(size, reader)
        proof = inclusion_proof(index, size, reader)
    except Error as exc:
        assert len(body) != replaced.width * 32, f"refused a well-sized tile: {exc}"
        fixtures.check_refusal(exc)
        return
    if body == genuine:
        assert root == fixtures.ROOTS[size]
    leaf = fixtures.LEAF_HASHES[index]
    try:
        verify_inclusion(leaf, index, size, proof, fixtures.ROOTS[size])
    except Error as exc:
        assert body != genuine, f"genuine tiles gave a bad proof: {exc}"
        fixtures.check_refusal(exc)
