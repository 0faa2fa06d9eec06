"""The tlog-tiles auditor (``ledger.remote.audit_remote``, ``suyuan verify --url``) against a
served log one of whose resources is fuzzer bytes (see ``tests.fuzz.tiny_log.replaced``):
a signed checkpoint text, a raw checkpoint note, a tile or an entry bundle.

Invariants: the audit either passes — and then the checkpoint it reports is the one served,
of the size served, and the log it audited is the genuine one (same root) — or refuses with
a ledger.errors.Error whose message is non-empty text.
"""

from __future__ import annotations

from ledger.errors import Error
from ledger.remote import audit_remote
from tests.fuzz import tiny_log


def one(data: bytes) -> None:
    served = tiny_log.replaced(data)
    try:
        audit = audit_remote(tiny_log.fetcher(served), tiny_log.VERIFIER, workers=0)
    except Error as exc:
        assert isinstance(str(exc), str) and str(exc), repr(exc)
        return
    assert audit.note.encode("utf-8") == served["checkpoint"]
    assert audit.result.size == audit.checkpoint.size
    # An accepted tree of entries is the genuine log's prefix (entries cannot be forged).
    if audit.checkpoint.size <= tiny_log.SIZE:
        genuine = tiny_log.tree(audit.checkpoint.size)["checkpoint"].decode()
        assert genuine.split("\n")[2] == audit.note.split("\n")[2], "accepted a forged root"
