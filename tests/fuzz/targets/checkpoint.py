"""A checkpoint: the signed form (``ledger.checkpoint.verify_checkpoint`` with the log
key and the origin) and the body parser (``parse_checkpoint_text``) fed directly.

The bytes are a checkpoint note.  The body parser gets the note's text part
(up to the last blank line) or, without one, the whole input, decoded with
``surrogateescape`` so lone surrogates reach it too.

Invariants: a parsed body re-serialises to exactly the text it came from; a
verified checkpoint has the log's origin, is one the log key really signed
(the fixed tree's root for its size), and its text is the note's text.
"""

from __future__ import annotations

from ledger.checkpoint import parse_checkpoint_text, verify_checkpoint
from ledger.errors import Error
from tests.fuzz import fixtures


def one(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")
    cut = text.rfind("\n\n")
    body = text[: cut + 1] if cut >= 0 else text
    try:
        parsed = parse_checkpoint_text(body)
    except Error as exc:
        fixtures.check_refusal(exc)
    else:
        assert parsed.text() == body
        assert parse_checkpoint_text(parsed.text()) == parsed

    try:
        cp, opened = verify_checkpoint(data, fixtures.LOG_VERIFIER, fixtures.ORIGIN)
    except Error as exc:
        fixtures.check_refusal(exc)
        return
    assert cp.origin == fixtures.ORIGIN
    assert cp.text() == opened.text
    assert 0 <= cp.size <= fixtures.TREE_SIZE and cp.root == fixtures.ROOTS[cp.size], "forged"
    assert any(s.key_hash == fixtures.LOG_VERIFIER.key_hash for s in opened.verified)
