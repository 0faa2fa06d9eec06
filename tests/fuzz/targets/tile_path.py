"""A tile or entry-bundle path (``ledger.tiles.parse_tile_path``) from URL text.

The bytes are decoded as UTF-8 with ``surrogateescape`` (what a WSGI server
may hand over).  Invariants: an accepted path is canonical — the parsed
tile's ``path()`` is exactly the input — and parses back to the same value.
"""

from __future__ import annotations

from ledger.errors import Error
from ledger.tiles import EntryBundle, Tile, parse_tile_path
from tests.fuzz import fixtures


def one(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")
    try:
        parsed = parse_tile_path(text)
    except Error as exc:
        fixtures.check_refusal(exc)
        return
    assert isinstance(parsed, Tile | EntryBundle)
    assert parsed.path() == text, (parsed, text)
    assert parse_tile_path(parsed.path()) == parsed
