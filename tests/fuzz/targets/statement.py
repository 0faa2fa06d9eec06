"""A signed statement from JSON (``canonical.parse`` → ``ledger.entry.signed_statement_from_json``
→ ``verify_signatures``): what ``suyuan append`` and the API read from authors.

Invariants: an accepted statement round-trips through ``to_json`` (same
canonical bytes as the input value); a statement whose signatures all verify
under the fixed author keys is one they really signed.
"""

from __future__ import annotations

from ledger import canonical
from ledger.entry import signed_statement_from_json, verify_signatures
from ledger.errors import Error
from tests.fuzz import fixtures

SIGNED = fixtures.signed_digests()


def one(data: bytes) -> None:
    try:
        value = canonical.parse(data)
        signed = signed_statement_from_json(value)
    except Error as exc:
        fixtures.check_refusal(exc)
        return
    assert canonical.dumps(signed.to_json()) == canonical.dumps(value)
    assert signed_statement_from_json(signed.to_json()) == signed
    try:
        verify_signatures(signed, fixtures.AUTHORS)
    except Error as exc:
        fixtures.check_refusal(exc)
        return
    assert signed.statement.digest() in SIGNED, "forged statement verified"
