"""Witness cosignature lines on a checkpoint note (``ledger.cosignature.open_cosignatures``)
from raw bytes, plus the 72-byte timestamped signature inside each line.

Invariants: every cosignature reported is a line of the note, by the fixed
witness, with its 72-byte signature's timestamp, over a text the witness
really cosigned (the fuzzer cannot forge one); ``verify_cosignatures`` agrees.
"""

from __future__ import annotations

from ledger.cosignature import (
    open_cosignatures,
    parse_timestamped_signature,
    verify_cosignatures,
)
from ledger.errors import Error
from ledger.note import split_note
from tests.fuzz import fixtures

WITNESSES = [fixtures.WITNESS_VERIFIER]
COSIGNED = {fixtures.checkpoint(n).text() for n in fixtures.CHECKPOINT_SIZES}


def one(data: bytes) -> None:
    try:
        found = open_cosignatures(data, WITNESSES)
    except Error as exc:
        fixtures.check_refusal(exc)
        return
    text, signatures = split_note(data)
    whole = data.decode("utf-8")
    assert verify_cosignatures(data, WITNESSES) == [(c.name, c.timestamp) for c in found]
    for cosig in found:
        assert cosig.line in whole and cosig.name == fixtures.WITNESS_NAME
        assert text in COSIGNED, f"forged cosignature verified: {text[:80]!r}"
    for sig in signatures:
        try:
            timestamp, raw = parse_timestamped_signature(sig.signature)
        except Error as exc:
            fixtures.check_refusal(exc)
            continue
        assert timestamp.to_bytes(8, "big") + raw == sig.signature
