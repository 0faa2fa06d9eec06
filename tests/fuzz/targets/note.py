"""A signed note (``ledger.note.split_note`` and ``open_note``) from raw bytes.

Invariants: the str and bytes forms parse alike; ``open_note`` refuses as
malformed exactly what ``split_note`` refuses; an accepted note re-assembles
byte for byte from its text and signature lines; ``open_note`` accepts only a
text a fixed key really signed (the fuzzer cannot forge one) and splits the
signatures into verified (known keys) and unverified (the rest), in order.
"""

from __future__ import annotations

from ledger.errors import Error, InvalidInput
from ledger.note import open_note, split_note
from tests.fuzz import fixtures

VERIFIERS = [fixtures.LOG_VERIFIER, fixtures.OTHER_VERIFIER]
KNOWN = {(v.name, v.key_hash): v for v in VERIFIERS}
SIGNED = fixtures.signed_texts()


def one(data: bytes) -> None:
    try:
        text, signatures = split_note(data)
    except InvalidInput as exc:
        fixtures.check_refusal(exc)
        try:
            open_note(data, VERIFIERS)
        except InvalidInput:
            return
        raise AssertionError("open_note accepted a note split_note refused") from None
    whole = data.decode("utf-8")
    assert split_note(whole) == (text, signatures)
    assert text + "\n" + "".join(s.line() for s in signatures) == whole
    try:
        opened = open_note(data, VERIFIERS)
    except Error as exc:
        assert not isinstance(exc, InvalidInput), f"split accepted, open refused: {exc}"
        fixtures.check_refusal(exc)
        return
    assert opened.text == text
    assert text in SIGNED, f"forged note verified: {text[:80]!r}"
    assert opened.verified and all((s.name, s.key_hash) in KNOWN for s in opened.verified)
    assert not any((s.name, s.key_hash) in KNOWN for s in opened.unverified)
    assert len(opened.verified) + len(opened.unverified) == len(signatures)
    for sig in opened.verified:
        KNOWN[(sig.name, sig.key_hash)].verify(text.encode("utf-8"), sig.signature)
