"""An entry bundle (``ledger.tiles.decode_entry_bundle``) from raw bytes.

Invariants: the records consume the input exactly (re-encoding the entries
gives the input back; ``encode_entry_bundle`` does so whenever no entry is
empty, and refuses otherwise); at most 256 entries; ``expected_count`` equal
to the count is accepted and any other count refused.
"""

from __future__ import annotations

from ledger.errors import Error, InvalidInput
from ledger.tiles import TILE_WIDTH, decode_entry_bundle, encode_entry_bundle
from tests.fuzz import fixtures


def one(data: bytes) -> None:
    try:
        entries = decode_entry_bundle(data)
    except Error as exc:
        fixtures.check_refusal(exc)
        return
    assert len(entries) <= TILE_WIDTH
    assert b"".join(len(e).to_bytes(2, "big") + e for e in entries) == data
    assert decode_entry_bundle(data, len(entries)) == entries
    wrong = (len(entries) + 1) % (TILE_WIDTH + 1)
    try:
        decode_entry_bundle(data, wrong)
    except InvalidInput:
        pass
    else:
        raise AssertionError(f"bundle of {len(entries)} entries accepted as {wrong}")
    if all(entries):
        assert encode_entry_bundle(entries) == data
    else:
        try:
            encode_entry_bundle(entries)
        except InvalidInput:
            return
        raise AssertionError("encode_entry_bundle wrote an empty entry")
