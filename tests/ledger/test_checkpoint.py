"""Tests for ledger.checkpoint: C2SP tlog-checkpoint text, signing and verification."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import struct
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.checkpoint import (
    MAX_TREE_SIZE,
    Checkpoint,
    parse_checkpoint_text,
    sign_checkpoint,
    verify_checkpoint,
)
from ledger.errors import InvalidInput, VerificationError
from ledger.note import Signature, Signer, open_note, sign_note

ORIGIN = "example.com/behind-the-sofa"
ROOT = base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
SPEC_TEXT = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"


def _signer(name: str, seed: int) -> Signer:
    return Signer(name, Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32))


LOG = _signer(ORIGIN, 1)
OTHER_LOG = _signer(ORIGIN, 2)  # same name, different key
WITNESS = _signer("witness.example.com/w1", 3)


def _cosignature_line(name: str, timestamp: int) -> str:
    """A tlog-cosignature-shaped line (key hash, u64 timestamp, 64-byte signature), unsigned."""
    khash = hashlib.sha256(name.encode() + b"\n\x04" + bytes(32)).digest()[:4]
    return Signature(name, khash, struct.pack(">Q", timestamp) + bytes(64)).line()


def test_text_matches_spec_example() -> None:
    cp = Checkpoint(ORIGIN, 20852163, ROOT)
    assert cp.text() == SPEC_TEXT
    assert parse_checkpoint_text(SPEC_TEXT) == cp


def test_text_with_extensions_round_trips() -> None:
    cp = Checkpoint(ORIGIN, 0, bytes(32), ("ext one", "ext/two"))
    assert cp.text().endswith("\next one\next/two\n")
    assert parse_checkpoint_text(cp.text()) == cp


def test_sign_and_verify_round_trip() -> None:
    cp = Checkpoint(ORIGIN, 5, ROOT)
    note = sign_checkpoint(cp, LOG)
    assert note.startswith(SPEC_TEXT.replace("20852163", "5") + "\n\u2014 " + ORIGIN + " ")
    got, opened = verify_checkpoint(note, LOG.verifier)
    assert got == cp
    assert opened.text == cp.text()
    assert [s.key_id for s in opened.verified] == [LOG.verifier.key_id]
    assert verify_checkpoint(note.encode(), LOG.verifier, origin=ORIGIN)[0] == cp


def test_extreme_sizes() -> None:
    for size in (0, 1, MAX_TREE_SIZE):
        cp = Checkpoint(ORIGIN, size, ROOT)
        assert parse_checkpoint_text(cp.text()).size == size
    assert Checkpoint(ORIGIN, 0, ROOT).text().split("\n")[1] == "0"


def _text(origin: str = ORIGIN, size: str = "5", root: str = "", *ext: str) -> str:
    root = root or base64.b64encode(ROOT).decode()
    return "".join(line + "\n" for line in (origin, size, root, *ext))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "end with a newline"),
        (_text().rstrip("\n"), "end with a newline"),
        (_text() + "\n", "non-empty extension line"),
        (_text() + "x", "end with a newline"),
        ("\n" + _text(), "at least 3|non-empty origin|size"),
        (f"{ORIGIN}\n5\n", "at least 3 checkpoint lines"),
        (_text(origin=""), "non-empty origin"),
        (_text(origin=" " + ORIGIN), "leading or trailing whitespace"),
        (_text(origin=ORIGIN + " "), "leading or trailing whitespace"),
        (_text(origin=ORIGIN + "\r"), "control characters"),
        (_text(size=""), "tree size"),
        (_text(size="01"), "leading\\s+zeros"),
        (_text(size="00"), "tree size"),
        (_text(size="+5"), "without sign"),
        (_text(size="-5"), "without sign"),
        (_text(size=" 5"), "tree size"),
        (_text(size="5 "), "tree size"),
        (_text(size="5.0"), "tree size"),
        (_text(size="0x5"), "tree size"),
        (_text(size="\u0665"), "tree size"),  # ARABIC-INDIC DIGIT FIVE
        (_text(size="5_0"), "tree size"),
        (_text(size=str(MAX_TREE_SIZE + 1)), "at most 2\\*\\*64-1"),
        (_text(size="1" * 30), "tree size"),
        (_text(root="not base64!"), "base64 root hash"),
        (_text(root=base64.b64encode(ROOT).decode().rstrip("=")), "base64 root hash"),
        (_text(root=base64.urlsafe_b64encode(b"\xff" * 32).decode()), "base64 root hash"),
        (_text(root=base64.b64encode(ROOT[:31]).decode()), "32-byte root hash.*found 31"),
        (_text(root=base64.b64encode(ROOT + b"\x00").decode()), "32-byte root hash.*found 33"),
        (_text(root="CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J="), "canonical base64"),
        (_text("o", "5", "", "ext", ""), "non-empty extension line on checkpoint line 5"),
        (_text("o", "5", "", "ext\x00"), "control characters"),
    ],
)
def test_parse_rejections(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_checkpoint_text(text)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"origin": ""}, "non-empty origin"),
        ({"origin": "a\nb"}, "control characters"),
        ({"origin": "a\ud800"}, "UTF-8"),
        ({"size": -1}, "0..2\\*\\*64-1"),
        ({"size": MAX_TREE_SIZE + 1}, "0..2\\*\\*64-1"),
        ({"size": True}, "as int"),
        ({"size": "5"}, "as int"),
        ({"root": ROOT[:31]}, "32-byte root hash"),
        ({"root": bytearray(ROOT)}, "as bytes"),
        ({"extensions": ["ext"]}, "as a tuple"),
        ({"extensions": ("",)}, "non-empty extension line"),
        ({"extensions": ("a\nb",)}, "control characters"),
    ],
)
def test_checkpoint_field_rejections(kwargs: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {"origin": ORIGIN, "size": 5, "root": ROOT, **kwargs}
    with pytest.raises(InvalidInput, match=message):
        Checkpoint(**fields)


def test_signer_name_must_be_origin() -> None:
    with pytest.raises(InvalidInput, match="log key name to equal the origin"):
        sign_checkpoint(Checkpoint("example.com/other", 5, ROOT), LOG)


def test_wrong_key_rejected() -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 5, ROOT), OTHER_LOG)
    with pytest.raises(VerificationError, match="no signature by a known key"):
        verify_checkpoint(note, LOG.verifier)


def test_witness_signature_alone_is_not_enough() -> None:
    note = sign_note(Checkpoint(ORIGIN, 5, ROOT).text(), [WITNESS])
    with pytest.raises(VerificationError, match="no signature by a known key"):
        verify_checkpoint(note, LOG.verifier)


def test_origin_mismatch() -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 5, ROOT), LOG)
    with pytest.raises(VerificationError, match="expected origin"):
        verify_checkpoint(note, LOG.verifier, origin="example.com/elsewhere")
    # A log key that signs a checkpoint for another origin is refused too.
    foreign = sign_note(Checkpoint("example.com/elsewhere", 5, ROOT).text(), [LOG])
    with pytest.raises(VerificationError, match="does not match the log key name"):
        verify_checkpoint(foreign, LOG.verifier)


def test_tampered_checkpoint_rejected() -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 5, ROOT), LOG)
    with pytest.raises(VerificationError, match="does not verify"):
        verify_checkpoint(note.replace("\n5\n", "\n6\n", 1), LOG.verifier)


def test_malformed_signed_text_is_invalid_input() -> None:
    note = sign_note(f"{ORIGIN}\n05\n{base64.b64encode(ROOT).decode()}\n", [LOG])
    with pytest.raises(InvalidInput, match="leading"):
        verify_checkpoint(note, LOG.verifier)


def test_unknown_cosignature_is_kept_unverified() -> None:
    cp = Checkpoint(ORIGIN, 5, ROOT)
    cosig = _cosignature_line("witness.example.com/w2", 1679315147)
    note = sign_checkpoint(cp, LOG) + cosig
    got, opened = verify_checkpoint(note, LOG.verifier, origin=ORIGIN)
    assert got == cp
    assert [s.key_id for s in opened.verified] == [LOG.verifier.key_id]
    (unknown,) = opened.unverified
    assert unknown.name == "witness.example.com/w2"
    assert unknown.line() == cosig
    assert struct.unpack(">Q", unknown.signature[:8])[0] == 1679315147
    assert len(unknown.signature) == 8 + 64


def test_extra_note_signature_by_witness_is_kept_unverified() -> None:
    cp = Checkpoint(ORIGIN, 5, ROOT)
    note = sign_note(cp.text(), [LOG, WITNESS])
    got, opened = verify_checkpoint(note, LOG.verifier)
    assert got == cp
    assert [s.name for s in opened.unverified] == [WITNESS.name]
    # The witness's signature can be checked separately by whoever knows its key.
    assert open_note(note, [WITNESS.verifier]).verified[0].name == WITNESS.name


_ORIGINS = st.text(
    st.characters(exclude_categories=["Cs", "Zs", "Zl", "Zp", "Cc"], exclude_characters="+"),
    min_size=1,
    max_size=40,
).filter(lambda s: not any(c.isspace() for c in s))
_EXTENSIONS = st.lists(
    st.text(st.characters(exclude_categories=["Cs", "Cc"]), min_size=1, max_size=20),
    max_size=3,
).map(tuple)


@settings(max_examples=150, deadline=None)
@given(
    origin=_ORIGINS,
    size=st.integers(0, MAX_TREE_SIZE),
    root=st.binary(min_size=32, max_size=32),
    extensions=_EXTENSIONS,
)
def test_random_checkpoints_round_trip(
    origin: str, size: int, root: bytes, extensions: tuple[str, ...]
) -> None:
    cp = Checkpoint(origin, size, root, extensions)
    assert parse_checkpoint_text(cp.text()) == cp
    signer = Signer(origin, LOG.private_key)
    got, opened = verify_checkpoint(sign_checkpoint(cp, signer), signer.verifier, origin=origin)
    assert got == cp
    assert opened.text == cp.text()


_LINES = st.one_of(
    st.sampled_from(["", "0", "01", "-1", "5", ORIGIN, "AAAA", base64.b64encode(ROOT).decode()]),
    st.text(max_size=50),
)


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(_LINES, max_size=6), tail=st.sampled_from(["", "\n", "x"]))
def test_parser_raises_only_invalid_input(lines: list[str], tail: str) -> None:
    with contextlib.suppress(InvalidInput):
        parse_checkpoint_text("\n".join(lines) + tail)
