"""A log leaf (``ledger.entry.decode_entry``) from raw bytes: what an auditor or mirror
reads from an entry bundle.

Invariants: an accepted leaf is byte for byte the entry's canonical encoding
(``entry.leaf == data``) and also what the strict parser and ``canonical.dumps``
make of it (the fast ``json.loads`` path cannot let a non-canonical leaf
through); rebuilding the entry from its parts gives the same leaf; if its
signatures verify under the fixed author keys, the statement is one they
really signed.
"""

from __future__ import annotations

from ledger import canonical
from ledger.entry import build_entry, decode_entry, verify_signatures
from ledger.errors import Error
from tests.fuzz import fixtures

SIGNED = fixtures.signed_digests()


def one(data: bytes) -> None:
    try:
        entry = decode_entry(data)
    except Error as exc:
        fixtures.check_refusal(exc)
        return
    assert entry.leaf == data
    assert canonical.dumps(canonical.parse(data)) == data
    assert build_entry(entry.seq, entry.prev, entry.time, entry.signed).leaf == data
    assert (entry.seq == 0) == (entry.prev == b"")
    try:
        verify_signatures(entry.signed, fixtures.AUTHORS)
    except Error as exc:
        fixtures.check_refusal(exc)
        return
    assert entry.statement.digest() in SIGNED, "forged statement verified"
