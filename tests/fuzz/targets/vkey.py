"""Key texts from outside: note verifier keys (``ledger.note.parse_vkey``), witness
vkeys (``ledger.cosignature.parse_witness_vkey``) and Go-style signer keys
(``ledger.note.parse_skey``).

Invariants: an accepted key text is canonical (re-encoding gives the input);
a vkey is never accepted as both a note key and a witness key; a refused
skey's message never contains the key material.
"""

from __future__ import annotations

from ledger.cosignature import parse_witness_vkey
from ledger.errors import Error
from ledger.note import format_skey, parse_skey, parse_vkey
from tests.fuzz import fixtures


def one(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")
    note_key = witness_key = False
    try:
        verifier = parse_vkey(text)
    except Error as exc:
        fixtures.check_refusal(exc)
    else:
        assert verifier.vkey == text
        note_key = True
    try:
        witness = parse_witness_vkey(text)
    except Error as exc:
        fixtures.check_refusal(exc)
    else:
        assert witness.vkey == text
        witness_key = True
    assert not (note_key and witness_key)
    try:
        signer = parse_skey(text)
    except Error as exc:
        fixtures.check_refusal(exc)
        _check_skey_refusal(text, str(exc))
    else:
        assert format_skey(signer) == text


def _check_skey_refusal(text: str, message: str) -> None:
    """The key material (the third field, as parse_skey splits) never appears in a refusal.

    The name and hex8 fields may be quoted; a secret that also occurs inside
    them proves nothing, so it is skipped.
    """
    prefix = "PRIVATE+KEY+"
    if not text.startswith(prefix):
        return
    fields = text[len(prefix) :].split("+", 2)
    if len(fields) != 3:
        return
    name, hex8, secret = fields
    if len(secret) >= 8 and secret not in name and secret not in hex8:
        assert secret not in message, "skey refusal leaks key material"
