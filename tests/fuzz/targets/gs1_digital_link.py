"""GS1 Digital Link URIs and scan paths (``ledger.domain.gs1.parse_batch_path``,
``parse_digital_link``, ``decode_segment``, ``normalize_gtin``, ``validate_lot``) from raw
bytes (UTF-8; other bytes are first read as Latin-1, as a server might).

Invariants: every parser returns or raises ledger.errors.Error with a non-empty message; an
accepted batch path gives a valid GTIN-14 (or None) and a valid lot, whose own scan path
parses back to the same pair; ``decode_segment`` inverts ``encode_segment``; a lot's fold is
stable (folding twice changes nothing) and case-blind.
"""

from __future__ import annotations

from ledger.domain import gs1
from ledger.errors import Error


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _refused(call: object, *args: object) -> object:
    try:
        return call(*args)  # type: ignore[operator]
    except Error as exc:
        assert str(exc), repr(exc)
        return None


def one(data: bytes) -> None:
    text = _text(data)
    found = _refused(gs1.parse_batch_path, text)
    if found is not None:
        gtin, lot = found  # type: ignore[misc]
        assert gtin is None or (len(gtin) == 14 and gs1.normalize_gtin(gtin) == gtin)
        assert gs1.validate_lot(lot) == lot
        path = gs1.batch_path(gtin, lot)
        assert gs1.parse_batch_path(path) == (gtin, lot), (path, gtin, lot)
        if gtin is not None:  # a Digital Link may sit under any host and path prefix
            assert gs1.parse_batch_path("https://id.example.org/shop" + path) == (gtin, lot)
    link = _refused(gs1.parse_digital_link, text)
    if link is not None:
        assert gs1.digital_link_path(*link) == gs1.batch_path(*link)  # type: ignore[misc]
    decoded = _refused(gs1.decode_segment, text)
    if decoded is not None:
        assert isinstance(decoded, str)
        assert gs1.decode_segment(gs1.encode_segment(decoded)) == decoded
    assert gs1.decode_segment(gs1.encode_segment(text.replace("/", ""))) == text.replace("/", "")
    gtin14 = _refused(gs1.normalize_gtin, text)
    if gtin14 is not None:
        assert gs1.validate_gtin14(gtin14) == gtin14
    lot = _refused(gs1.validate_lot, text)
    if lot is not None:
        fold = gs1.lot_fold(text)
        assert gs1.lot_fold(fold) == fold
        assert gs1.lot_fold(text.upper()) == gs1.lot_fold(text.lower()) == fold
