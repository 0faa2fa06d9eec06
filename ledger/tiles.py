"""C2SP tlog-tiles addressing and encoding for the Suyuan log.

The log is served as static tiles (https://c2sp.org/tlog-tiles): a tile at
level ``L`` and index ``N`` holds up to 256 consecutive hashes of the RFC 9162
tree at level ``8 * L`` (perfect nodes ``(8 * L, N * 256 + i)``), and entry
bundles hold the log entries themselves.  This module maps between tiles,
their paths and the :data:`ledger.merkle.NodeId` they contain, encodes and
decodes tile and bundle bodies, and provides :class:`TileHashReader`, a
:data:`ledger.merkle.HashReader` for clients that only have tiles.

Everything here is pure: fetching is the caller's callback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from ledger.errors import InvalidInput
from ledger.merkle import HASH_SIZE, NodeId, node_hash

__all__ = [
    "MAX_ENTRY_SIZE",
    "MAX_INDEX",
    "MAX_LEVEL",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "EntryBundle",
    "Tile",
    "TileHashReader",
    "decode_entry_bundle",
    "encode_entry_bundle",
    "encode_index",
    "entry_bundles_for_size",
    "iter_entry_bundles",
    "parse_tile_path",
    "split_tile",
    "tile_node_ids",
    "tiles_for_size",
]

TILE_HEIGHT = 8
"""Tree levels spanned by one tile."""

TILE_WIDTH = 1 << TILE_HEIGHT
"""Hashes (or entries) in a full tile (or bundle): 256."""

MAX_LEVEL = 63
"""Largest tile level a path may carry."""

MAX_ENTRY_SIZE = 0xFFFF
"""Largest entry an entry bundle can carry (uint16 length prefix)."""

MAX_INDEX = ((1 << 64) - 1) >> TILE_HEIGHT
"""Largest tile or bundle index a path may carry: that of the last tile of a 2**64-leaf tree."""

_MAX_INDEX_ELEMENTS = -(-len(str(MAX_INDEX)) // 3)  # 17 digits: 6 elements
_DIGITS = frozenset("0123456789")


def _require_int(name: str, value: object, low: int, high: int | None = None) -> int:
    """Return ``value`` if it is an int in ``[low, high]``; raise InvalidInput otherwise."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput(f"{name}: expected an integer, found {type(value).__name__}")
    if value < low or (high is not None and value > high):
        wanted = f">= {low}" if high is None else f"in {low}..{high}"
        raise InvalidInput(f"{name}: expected an integer {wanted}, found {value}")
    return value


def encode_index(n: int) -> str:
    """Encode a tile index as zero-padded 3-digit path elements, all but the last ``x``-prefixed.

    ``1234067`` gives ``"x001/x234/067"``; ``5`` gives ``"005"``.  Raises
    InvalidInput for a negative index.
    """
    _require_int("tile index", n, 0)
    digits = str(n)
    digits = digits.zfill(-(-len(digits) // 3) * 3)
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "/".join(["x" + g for g in groups[:-1]] + groups[-1:])


def _suffix(width: int) -> str:
    return "" if width == TILE_WIDTH else f".p/{width}"


@dataclass(frozen=True, slots=True)
class Tile:
    """A Merkle tree tile: ``width`` hashes at tree level ``8 * level`` (256 = full).

    Construction validates: ``level`` in 0..63, ``index`` >= 0, ``width`` in
    1..256; anything else raises InvalidInput.
    """

    level: int
    index: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        _require_int("tile level", self.level, 0, MAX_LEVEL)
        _require_int("tile index", self.index, 0)
        _require_int("tile width", self.width, 1, TILE_WIDTH)

    @property
    def is_full(self) -> bool:
        """True for a full (256-hash) tile, False for a partial one."""
        return self.width == TILE_WIDTH

    def path(self) -> str:
        """Return the path relative to the log prefix: ``tile/<L>/<N>[.p/<W>]``."""
        return f"tile/{self.level}/{encode_index(self.index)}{_suffix(self.width)}"


@dataclass(frozen=True, slots=True)
class EntryBundle:
    """An entry bundle: log entries ``index * 256`` to ``index * 256 + width - 1``.

    Construction validates ``index`` >= 0 and ``width`` in 1..256 (256 = full);
    anything else raises InvalidInput.
    """

    index: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        _require_int("bundle index", self.index, 0)
        _require_int("bundle width", self.width, 1, TILE_WIDTH)

    @property
    def is_full(self) -> bool:
        """True for a full (256-entry) bundle, False for a partial one."""
        return self.width == TILE_WIDTH

    def path(self) -> str:
        """Return the path relative to the log prefix: ``tile/entries/<N>[.p/<W>]``."""
        return f"tile/entries/{encode_index(self.index)}{_suffix(self.width)}"


def _parse_decimal(what: str, text: str, low: int, high: int) -> int:
    """Parse a decimal ASCII integer in ``[low, high]`` with no leading zeros."""
    if not text or not _DIGITS.issuperset(text):
        raise InvalidInput(f"{what}: expected decimal digits, found {text!r}")
    if len(text) > 1 and text[0] == "0":
        raise InvalidInput(f"{what}: expected no leading zeros, found {text!r}")
    if len(text) > len(str(high)) or not low <= int(text) <= high:
        raise InvalidInput(f"{what}: expected {low}..{high}, found {text!r}")
    return int(text)


def _parse_index(elements: list[str], path: str) -> int:
    """Parse ``x001/x234/067``-style elements strictly (canonical encoding only)."""
    if not elements:
        raise InvalidInput(f"tile path {path!r}: expected an index after the level, found none")
    if len(elements) > _MAX_INDEX_ELEMENTS:
        # Checked before any int() so a path of thousands of elements cannot hit
        # Python's int-conversion digit limit (a ValueError).
        raise InvalidInput(
            f"tile path {path[:60]!r}…: expected at most {_MAX_INDEX_ELEMENTS} index elements "
            f"(an index of at most {MAX_INDEX}), found {len(elements)}"
        )
    digits = []
    for i, element in enumerate(elements):
        last = i == len(elements) - 1
        group = element if last else element[1:]
        if not last and not element.startswith("x"):
            raise InvalidInput(
                f"tile path {path!r}: expected index element {element!r} to start with 'x'"
            )
        if len(group) != 3 or not _DIGITS.issuperset(group):
            wanted = "3 digits" if last else "'x' and 3 digits"
            raise InvalidInput(
                f"tile path {path!r}: expected index element of {wanted}, found {element!r}"
            )
        digits.append(group)
    if len(digits) > 1 and digits[0] == "000":
        raise InvalidInput(f"tile path {path!r}: expected no leading 'x000' index element")
    index = int("".join(digits))
    if index > MAX_INDEX:
        raise InvalidInput(f"tile path {path!r}: expected an index of at most {MAX_INDEX}")
    return index


def parse_tile_path(path: str) -> Tile | EntryBundle:
    """Parse a relative tile or entry-bundle path, strictly.

    Accepts exactly what :meth:`Tile.path` / :meth:`EntryBundle.path` produce:
    ``tile/<L>/<N>[.p/<W>]`` or ``tile/entries/<N>[.p/<W>]``.  MUST reject
    (InvalidInput): a level with leading zeros or outside 0..63, a width with
    leading zeros or outside 1..255 (a full tile has no ``.p``), non-ASCII or
    non-digit characters, index elements that are not 3 digits, missing or
    stray ``x`` prefixes, a non-canonical ``x000`` first element, empty or
    extra elements, an index above :data:`MAX_INDEX` (no tree of at most
    2**64 leaves has that tile), and a leading or trailing slash.
    """
    if not isinstance(path, str):
        raise InvalidInput(f"tile path: expected a string, found {type(path).__name__}")
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise InvalidInput(f"tile path {path!r}: expected 'tile/<L>/<N>' or 'tile/entries/<N>'")
    width = TILE_WIDTH
    rest = parts[2:]
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        width = _parse_decimal(f"tile path {path!r}: width", rest[-1], 1, TILE_WIDTH - 1)
        rest = [*rest[:-2], rest[-2][:-2]]
    index = _parse_index(rest, path)
    if parts[1] == "entries":
        return EntryBundle(index, width)
    level = _parse_decimal(f"tile path {path!r}: level", parts[1], 0, MAX_LEVEL)
    return Tile(level, index, width)


def tile_node_ids(tile: Tile) -> list[NodeId]:
    """Return the merkle node ids whose hashes make up ``tile``, in order.

    Hash ``i`` of the tile is node ``(8 * level, index * 256 + i)``.
    """
    level = tile.level * TILE_HEIGHT
    first = tile.index * TILE_WIDTH
    return [(level, first + i) for i in range(tile.width)]


def tiles_for_size(size: int) -> list[Tile]:
    """Return every tile a tree of ``size`` leaves has, level by level, left to right.

    Per level: the full tiles, then the partial tile of width
    ``floor(size / 256**level) mod 256`` if that is not zero (empty tiles do
    not exist).  Size 0 gives ``[]``.  Raises InvalidInput for a negative size.
    """
    _require_int("tree size", size, 0)
    tiles: list[Tile] = []
    level = 0
    count = size  # hashes at tree level 8 * level
    while count > 0:
        full, partial = divmod(count, TILE_WIDTH)
        tiles.extend(Tile(level, n) for n in range(full))
        if partial:
            tiles.append(Tile(level, full, partial))
        count = full
        level += 1
    return tiles


def entry_bundles_for_size(size: int) -> list[EntryBundle]:
    """Return every entry bundle of a log of ``size`` entries: full ones, then the partial one."""
    return list(iter_entry_bundles(size))


def iter_entry_bundles(size: int, start: int = 0) -> Iterator[EntryBundle]:
    """The entry bundles of a log of ``size`` entries from the one holding entry ``start``,
    made as they are needed, never listed: a signed checkpoint from outside may claim any
    size up to 2**64-1, and a caller stops at the first bundle it cannot get."""
    _require_int("tree size", size, 0)
    _require_int("start", start, 0)
    full, partial = divmod(size, TILE_WIDTH)
    return _bundles(start // TILE_WIDTH, full, partial)


def _bundles(first: int, full: int, partial: int) -> Iterator[EntryBundle]:
    for index in range(first, full):
        yield EntryBundle(index)
    if partial:
        yield EntryBundle(full, partial)


def encode_entry_bundle(entries: Sequence[bytes]) -> bytes:
    """Encode entries as big-endian uint16 length-prefixed records.

    Each entry MUST be 1..65535 bytes (Suyuan never logs an empty entry); at
    most 256 entries.  Raises InvalidInput otherwise.
    """
    if len(entries) > TILE_WIDTH:
        raise InvalidInput(
            f"entry bundle: expected at most {TILE_WIDTH} entries, found {len(entries)}"
        )
    out = bytearray()
    for i, entry in enumerate(entries):
        if not isinstance(entry, (bytes, bytearray)):
            raise InvalidInput(
                f"entry bundle: entry {i}: expected bytes, found {type(entry).__name__}"
            )
        if not 1 <= len(entry) <= MAX_ENTRY_SIZE:
            raise InvalidInput(
                f"entry bundle: entry {i}: expected 1..{MAX_ENTRY_SIZE} bytes, found {len(entry)}"
            )
        out += len(entry).to_bytes(2, "big")
        out += entry
    return bytes(out)


def decode_entry_bundle(data: bytes, expected_count: int | None = None) -> list[bytes]:
    """Decode an entry bundle strictly.

    Zero-length entries are valid: C2SP tlog-tiles allows them (Suyuan never
    writes one, and its auditor refuses an empty leaf as an entry), and a mirror
    of any tlog-tiles log must read them.
    Raises InvalidInput for a truncated length prefix, a truncated entry,
    more than 256 entries, or (if ``expected_count`` is
    given) a different number of entries.  No trailing bytes are possible:
    the data MUST be consumed exactly by whole records.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise InvalidInput(f"entry bundle: expected bytes, found {type(data).__name__}")
    if expected_count is not None:
        _require_int("expected entry count", expected_count, 0, TILE_WIDTH)
    entries: list[bytes] = []
    view = memoryview(data)
    pos, end = 0, len(data)
    while pos < end:
        if len(entries) == TILE_WIDTH:
            raise InvalidInput(
                f"entry bundle: expected at most {TILE_WIDTH} entries, found more "
                f"({end - pos} bytes after entry {TILE_WIDTH - 1})"
            )
        if end - pos < 2:
            raise InvalidInput(
                f"entry bundle: entry {len(entries)}: expected a 2-byte length at offset {pos}, "
                f"found {end - pos} byte"
            )
        length = (data[pos] << 8) | data[pos + 1]
        pos += 2
        if end - pos < length:
            raise InvalidInput(
                f"entry bundle: entry {len(entries)}: expected {length} bytes, "
                f"found {end - pos} (truncated)"
            )
        entries.append(bytes(view[pos : pos + length]))
        pos += length
    if expected_count is not None and len(entries) != expected_count:
        raise InvalidInput(f"entry bundle: expected {expected_count} entries, found {len(entries)}")
    return entries


def split_tile(data: bytes, tile: Tile) -> list[bytes]:
    """Split a tile body into its ``tile.width`` hashes.

    Raises InvalidInput unless ``len(data) == tile.width * 32``.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise InvalidInput(f"tile {tile.path()}: expected bytes, found {type(data).__name__}")
    expected = tile.width * HASH_SIZE
    if len(data) != expected:
        raise InvalidInput(
            f"tile {tile.path()}: expected {expected} bytes ({tile.width} hashes), found {len(data)}"
        )
    return [bytes(data[i : i + HASH_SIZE]) for i in range(0, expected, HASH_SIZE)]


class TileHashReader:
    """A :data:`ledger.merkle.HashReader` that answers from tiles of a tree of ``size``.

    ``fetch(tile)`` MUST return the body of ``tile``; it is called at most once
    per tile (bodies are cached in this reader) and only with tiles the tree
    ``size`` has: full tiles where complete, the partial width on the right
    edge.  A node at tree level ``h`` comes from the tile at level ``h // 8``:
    read directly when ``h % 8 == 0``, otherwise hashed up from the
    ``2**(h % 8)`` tile hashes below it.

    Tile contents are not authenticated here: the caller MUST check whatever it
    computes (roots, proofs) against a verified checkpoint.  Errors from
    ``fetch`` propagate; a body of the wrong length raises InvalidInput; a node
    outside the tree of ``size`` raises InvalidInput.
    """

    def __init__(self, fetch: Callable[[Tile], bytes], size: int) -> None:
        self.fetch = fetch
        self.size = _require_int("tree size", size, 0)
        self._tiles: dict[Tile, list[bytes]] = {}

    def tile_for(self, node: NodeId) -> Tile:
        """Return the tile, with the width implied by ``size``, holding ``node``.

        Raises InvalidInput if ``node`` is not a perfect node of the tree.
        """
        if not isinstance(node, tuple) or len(node) != 2:
            raise InvalidInput(f"node: expected a (level, index) pair, found {node!r}")
        level, index = node
        _require_int("node level", level, 0)
        _require_int("node index", index, 0)
        if (index + 1) << level > self.size:
            raise InvalidInput(
                f"node {node}: expected a perfect subtree of the tree of size {self.size}, "
                f"found one ending at leaf {(index + 1) << level}"
            )
        tile_level, rise = divmod(level, TILE_HEIGHT)
        if tile_level > MAX_LEVEL:
            raise InvalidInput(f"node {node}: level {level} is beyond the last tile level")
        tile_index = (index << rise) >> TILE_HEIGHT
        hashes_at_level = self.size >> (tile_level * TILE_HEIGHT)
        width = min(TILE_WIDTH, hashes_at_level - tile_index * TILE_WIDTH)
        return Tile(tile_level, tile_index, width)

    def _hashes(self, tile: Tile) -> list[bytes]:
        hashes = self._tiles.get(tile)
        if hashes is None:
            hashes = split_tile(self.fetch(tile), tile)
            self._tiles[tile] = hashes
        return hashes

    def __call__(self, ids: Sequence[NodeId]) -> list[bytes]:
        """Return the hash of each requested perfect node, in order."""
        out: list[bytes] = []
        for node in ids:
            tile = self.tile_for(node)
            hashes = self._hashes(tile)
            rise = node[0] % TILE_HEIGHT
            first = (node[1] << rise) % TILE_WIDTH
            if rise == 0:
                out.append(hashes[first])
                continue
            row = hashes[first : first + (1 << rise)]
            while len(row) > 1:
                row = [node_hash(row[i], row[i + 1]) for i in range(0, len(row), 2)]
            out.append(row[0])
        return out
