"""Tests for ledger.note: C2SP signed notes with Ed25519, against the published vectors."""

from __future__ import annotations

import base64
import contextlib
import functools
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ledger.errors import InvalidInput, VerificationError
from ledger.note import (
    MAX_NOTE_BYTES,
    MAX_SIGNATURES,
    Note,
    Signature,
    Signer,
    Verifier,
    check_key_name,
    format_skey,
    key_hash,
    open_note,
    parse_skey,
    parse_vkey,
    sign_note,
)

VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "vectors"
REJECTED = (InvalidInput, VerificationError)


@functools.cache
def _load_vectors() -> dict[str, Any]:
    path = VECTORS / "signed-note.json"
    if not path.is_file():
        pytest.fail(f"published test vectors missing: {path}")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


@pytest.fixture
def vectors() -> dict[str, Any]:
    return _load_vectors()


@pytest.fixture
def ed(vectors: dict[str, Any]) -> dict[str, str]:
    entry: dict[str, str] = vectors["ed25519_note"]
    return entry


def _signer(name: str = "example.com/log", seed: int = 1) -> Signer:
    return Signer(name, Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32))


SIGNER = _signer()
WITNESS = _signer("witness.example/w1", 2)


# --- the published vectors -------------------------------------------------------------


def test_vector_skey_gives_vkey(ed: dict[str, str]) -> None:
    signer = parse_skey(ed["skey"])
    assert signer.name == "PeterNeumann"
    assert signer.verifier.vkey == ed["vkey"]
    assert signer.verifier.key_id == "PeterNeumann+c74f20a3"
    assert format_skey(signer) == ed["skey"]


def test_vector_sign_is_exact(ed: dict[str, str]) -> None:
    assert sign_note(ed["text"], [parse_skey(ed["skey"])]) == ed["signed_note"]


@pytest.mark.parametrize("as_bytes", [False, True])
def test_vector_opens(ed: dict[str, str], as_bytes: bool) -> None:
    verifier = parse_vkey(ed["vkey"])
    raw: str | bytes = ed["signed_note"].encode() if as_bytes else ed["signed_note"]
    note = open_note(raw, [verifier])
    assert note.text == ed["text"]
    assert [s.key_id for s in note.verified] == ["PeterNeumann+c74f20a3"]
    assert note.unverified == ()
    assert note.verified[0].line() == ed["signed_note"][len(ed["text"]) + 1 :]


def test_vector_key_hash(ed: dict[str, str]) -> None:
    verifier = parse_vkey(ed["vkey"])
    assert key_hash("PeterNeumann", verifier.public_key_bytes).hex() == "c74f20a3"
    assert Verifier.from_public_key("PeterNeumann", verifier.public_key) == verifier
    assert parse_vkey(verifier.vkey) == verifier
    assert hash(parse_vkey(verifier.vkey)) == hash(verifier)


def test_vector_second_vkey(vectors: dict[str, Any], ed: dict[str, str]) -> None:
    second = parse_vkey(vectors["second_vkey"])
    assert second.key_id == "EnochRoot+af0cfe78"
    assert second.vkey == vectors["second_vkey"]
    with pytest.raises(VerificationError, match="no signature by a known key"):
        open_note(ed["signed_note"], [second])
    # With both keys known, only PeterNeumann's signature is present and verified.
    note = open_note(ed["signed_note"], [second, parse_vkey(ed["vkey"])])
    assert len(note.verified) == 1


def test_vector_bad_vkeys_rejected(vectors: dict[str, Any]) -> None:
    assert len(vectors["bad_vkeys"]) == 2
    for bad in vectors["bad_vkeys"]:
        with pytest.raises(InvalidInput):
            parse_vkey(bad)


def test_vector_c2sp_example_vkey(vectors: dict[str, Any]) -> None:
    verifier = parse_vkey(vectors["c2sp_example"]["vkey"])
    assert verifier.name == "example.com/foo"
    assert verifier.key_id == "example.com/foo+530d903a"
    assert verifier.vkey == vectors["c2sp_example"]["vkey"]


# --- key names and key encodings ---------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["example.com/log", "PeterNeumann", "溯源.example/日志", "a—b", "oid/1.3.6.1"]
)
def test_valid_key_names(name: str) -> None:
    assert check_key_name(name) == name
    assert parse_vkey(_signer(name).verifier.vkey).name == name


@pytest.mark.parametrize(
    "name",
    ["", "a b", "a+b", "a\tb", "a\nb", "a\u00a0b", "a\u2028b", "a\u3000b", "a\x00b", "a\ud800"],
)
def test_invalid_key_names(name: str) -> None:
    with pytest.raises(InvalidInput):
        check_key_name(name)
    with pytest.raises(InvalidInput):
        Signer(name, Ed25519PrivateKey.generate())


def test_vkey_with_plus_in_base64_round_trips() -> None:
    for seed in range(1, 60):
        verifier = _signer("k", seed).verifier
        if "+" in verifier.vkey.split("+", 2)[2]:
            assert parse_vkey(verifier.vkey) == verifier
            return
    pytest.fail("no test key with '+' in its base64")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda v: v.replace("+", "", 1), "expected a vkey"),
        (lambda v: v.replace("+", "++", 1), "8 lowercase hex"),
        (lambda v: v.rsplit("+", 1)[0], "expected a vkey"),
        (lambda v: v.replace("c74f20a3", "C74F20A3"), "lowercase hex"),
        (lambda v: v.replace("c74f20a3", "c74f20a4"), "expected key hash c74f20a3"),
        (lambda v: v.replace("PeterNeumann", "Peter Neumann"), "without spaces"),
        (lambda v: v.replace("PeterNeumann", ""), "non-empty"),
        (lambda v: v[:-1], "base64"),
        (lambda v: v + "=", "base64"),
        (lambda v: v.replace("/", "_"), "standard base64"),
        (lambda v: v + "\n", "standard base64"),
        (lambda v: v.replace("+AR", "+AB"), "signature type 0x01"),
        (lambda v: v.replace("+AR", "+Ag"), "signature type 0x01"),
        (lambda v: v + "AAAA", "32-byte"),
    ],
)
def test_vkey_rejections(ed: dict[str, str], mutate: Any, message: str) -> None:
    bad = mutate(ed["vkey"])
    assert bad != ed["vkey"]
    with pytest.raises(InvalidInput, match=message):
        parse_vkey(bad)


def test_verifier_must_match_its_key_hash() -> None:
    verifier = SIGNER.verifier
    with pytest.raises(InvalidInput, match="expected key hash"):
        Verifier(verifier.name, b"\x00\x00\x00\x00", verifier.public_key)
    with pytest.raises(InvalidInput, match="expected key hash"):
        Verifier("other.example/log", verifier.key_hash, verifier.public_key)


def test_skey_rejections_hide_key_material(ed: dict[str, str]) -> None:
    secret = ed["skey"].rsplit("+", 1)[1]
    for bad in [
        ed["skey"].replace("PRIVATE+KEY+", ""),
        ed["skey"].replace("c74f20a3", "00000000"),
        ed["skey"][:-1],
        ed["skey"][:-2] + "X" + ed["skey"][-1],
        ed["skey"].replace("+AY", "+Ag"),
    ]:
        with pytest.raises(InvalidInput) as info:
            parse_skey(bad)
        assert secret[4:20] not in str(info.value)


def test_signer_repr_hides_private_key() -> None:
    seed = b"\x01" * 32
    assert base64.b64encode(seed).decode() not in repr(SIGNER)
    assert "private_key" not in repr(SIGNER)


# --- signing and opening -----------------------------------------------------------------


def test_two_signers_and_unknown_keys() -> None:
    note = sign_note("hello\n\nworld\n", [SIGNER, WITNESS])
    opened = open_note(note, [SIGNER.verifier])
    assert opened.text == "hello\n\nworld\n"
    assert [s.name for s in opened.verified] == ["example.com/log"]
    assert [s.name for s in opened.unverified] == ["witness.example/w1"]
    assert opened.unverified[0].key_hash == WITNESS.key_hash
    both = open_note(note, [WITNESS.verifier, SIGNER.verifier])
    assert [s.name for s in both.verified] == ["example.com/log", "witness.example/w1"]
    assert both.unverified == ()


def test_note_is_text_plus_blank_line_plus_signatures() -> None:
    note = sign_note("a\n", [SIGNER])
    sig = open_note(note, [SIGNER.verifier]).verified[0]
    assert note == "a\n\n" + sig.line()
    assert sig.line().startswith("\u2014 example.com/log ")
    assert len(base64.b64decode(sig.line().split(" ")[2])) == 4 + 64


def test_bad_signature_by_known_key_rejects_whole_note() -> None:
    good = sign_note("text\n", [SIGNER])
    other = _signer("witness.example/w1", 3)  # same name as WITNESS, different key
    forged = sign_note("text\n", [other])
    sig = open_note(forged, [other.verifier]).verified[0]
    bad_line = Signature(WITNESS.name, WITNESS.key_hash, sig.signature).line()
    with pytest.raises(VerificationError, match="does not verify"):
        open_note(good + bad_line, [SIGNER.verifier, WITNESS.verifier])
    # Unknown to the caller, the same line is merely kept unverified.
    assert open_note(good + bad_line, [SIGNER.verifier]).unverified[0].name == WITNESS.name


def test_same_name_other_key_is_unknown() -> None:
    note = sign_note("text\n", [_signer("example.com/log", 9)])
    with pytest.raises(VerificationError, match="no signature by a known key"):
        open_note(note, [SIGNER.verifier])


def test_tampered_text(ed: dict[str, str]) -> None:
    tampered = ed["signed_note"].replace("cryptography", "cryptographY")
    with pytest.raises(VerificationError, match="does not verify"):
        open_note(tampered, [parse_vkey(ed["vkey"])])


def test_tampered_signature(ed: dict[str, str]) -> None:
    text, line = ed["signed_note"].split("\n\n")
    prefix, b64 = line.rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(b64))
    raw[10] ^= 0x01
    tampered = f"{text}\n\n{prefix} {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(VerificationError):
        open_note(tampered, [parse_vkey(ed["vkey"])])


def test_wrong_key(ed: dict[str, str]) -> None:
    with pytest.raises(VerificationError):
        open_note(ed["signed_note"], [SIGNER.verifier])


@pytest.mark.parametrize("cut", [1, 2, 10, 50, 97, 98])
def test_truncated_note(ed: dict[str, str], cut: int) -> None:
    with pytest.raises(REJECTED):
        open_note(ed["signed_note"][:-cut], [parse_vkey(ed["vkey"])])


@pytest.mark.parametrize(
    "junk",
    ["junk", "\n", "\n\n", "— ", "— PeterNeumann\n", "— x AAAA\n", " ", "\u2014 a b c\n"],
)
def test_extra_junk(ed: dict[str, str], junk: str) -> None:
    with pytest.raises(REJECTED):
        open_note(ed["signed_note"] + junk, [parse_vkey(ed["vkey"])])


def _line(name: str, raw: bytes) -> str:
    return f"— {name} {base64.b64encode(raw).decode()}\n"


@pytest.mark.parametrize(
    ("note", "message"),
    [
        ("text\n", "blank line"),
        ("text\n\n", "signature lines"),
        ("text\n\n— a AAAAAAA=", "end with a newline"),
        ("te\rxt\n\n— a AAAAAAA=\n", "control characters"),
        ("text\n\n— a\tb AAAAAAA=\n", "control characters"),
        ("text\n\n- a AAAAAAA=\n", "start with '— '"),
        ("text\n\n—  a AAAAAAA=\n", "non-empty key name"),
        ("text\n\n— a+b AAAAAAA=\n", "without '\\+'"),
        ("text\n\n— a\n", "'name base64'"),
        ("text\n\n— a \n", "'name base64'"),
        ("text\n\n— a AAAAAAA\n", "standard base64"),
        ("text\n\n— a AAAAAAB=\n", "canonical base64"),
        ("text\n\n— a AAAAAAA= \n", "base64"),
        ("text\n\n— a AAAAAA==\n", "more than 4 bytes"),
        ("text\n\n— a AAAAAAA=\n— a AAAAAAA=\n", "one signature per key"),
        ("text\n\n\ud800\n— a AAAAAAA=\n", "UTF-8"),
    ],
)
def test_malformed_notes(note: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        open_note(note, [SIGNER.verifier])


def test_invalid_utf8_bytes() -> None:
    note = sign_note("text\n", [SIGNER]).encode()
    with pytest.raises(InvalidInput, match="valid UTF-8"):
        open_note(b"\xff" + note, [SIGNER.verifier])
    with pytest.raises(InvalidInput, match="expected a note as str or bytes"):
        open_note(bytearray(note), [SIGNER.verifier])  # type: ignore[arg-type]


def test_limits() -> None:
    note = sign_note("text\n", [SIGNER])
    many = note + "".join(_line(f"w{i}", bytes(68)) for i in range(MAX_SIGNATURES))
    with pytest.raises(InvalidInput, match="at most 100 signature lines"):
        open_note(many, [SIGNER.verifier])
    ok = note + "".join(_line(f"w{i}", bytes(68)) for i in range(MAX_SIGNATURES - 1))
    assert len(open_note(ok, [SIGNER.verifier]).unverified) == MAX_SIGNATURES - 1
    big = "x" * MAX_NOTE_BYTES + "\n"
    with pytest.raises(InvalidInput, match="at most"):
        sign_note(big, [SIGNER])
    with pytest.raises(InvalidInput, match="at most"):
        open_note(big + note, [SIGNER.verifier])
    with pytest.raises(InvalidInput, match="at most"):
        open_note((big + note).encode(), [SIGNER.verifier])
    with pytest.raises(InvalidInput, match="at most"):  # under the limit in chars, over in bytes
        open_note("溯" * (MAX_NOTE_BYTES // 2) + "\n" + note, [SIGNER.verifier])


@pytest.mark.parametrize(
    ("text", "signers", "message"),
    [
        ("", [SIGNER], "non-empty"),
        ("text", [SIGNER], "end with a newline"),
        ("a\rb\n", [SIGNER], "control characters"),
        ("a\x00\n", [SIGNER], "control characters"),
        ("a\ud800\n", [SIGNER], "UTF-8"),
        ("text\n", [], "at least one signer"),
        ("text\n", [SIGNER, SIGNER], "distinct signers"),
    ],
)
def test_sign_note_rejections(text: str, signers: list[Signer], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        sign_note(text, signers)


def test_open_note_needs_verifiers() -> None:
    note = sign_note("text\n", [SIGNER])
    with pytest.raises(InvalidInput, match="at least one verifier"):
        open_note(note, [])


def test_every_bit_flip_of_vector_is_rejected(ed: dict[str, str]) -> None:
    verifier = parse_vkey(ed["vkey"])
    original = ed["signed_note"].encode()
    for i in range(len(original)):
        for bit in range(8):
            mutated = bytearray(original)
            mutated[i] ^= 1 << bit
            with pytest.raises(REJECTED):
                open_note(bytes(mutated), [verifier])


# --- properties ---------------------------------------------------------------------------

_TEXT_CHARS = st.characters(
    exclude_categories=["Cs"],
    exclude_characters="".join(chr(c) for c in range(0x20) if c != 0x0A),
)
_TEXTS = st.text(_TEXT_CHARS, max_size=200).map(lambda t: t + "\n")


@settings(max_examples=150, deadline=None)
@given(text=_TEXTS)
def test_random_texts_round_trip(text: str) -> None:
    note = sign_note(text, [SIGNER, WITNESS])
    for raw in (note, note.encode()):
        opened = open_note(raw, [SIGNER.verifier])
        assert opened == Note(text, opened.verified, opened.unverified)  # text comes back exactly
        assert [s.key_id for s in opened.verified] == [SIGNER.verifier.key_id]
        assert [s.name for s in opened.unverified] == [WITNESS.name]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_TEXTS, data=st.data())
def test_any_single_byte_change_is_rejected(text: str, data: st.DataObject) -> None:
    original = sign_note(text, [SIGNER]).encode()
    index = data.draw(st.integers(0, len(original) - 1))
    value = data.draw(st.integers(0, 255))
    assume(original[index] != value)
    mutated = original[:index] + bytes([value]) + original[index + 1 :]
    try:
        opened = open_note(mutated, [SIGNER.verifier])
    except REJECTED:
        return
    pytest.fail(f"mutated note accepted with text {opened.text!r}")


@settings(max_examples=200, deadline=None)
@given(text=_TEXTS, data=st.data())
def test_any_byte_insertion_or_deletion_is_rejected(text: str, data: st.DataObject) -> None:
    original = sign_note(text, [SIGNER]).encode()
    index = data.draw(st.integers(0, len(original) - 1))
    if data.draw(st.booleans()):
        mutated = original[:index] + original[index + 1 :]
    else:
        mutated = original[:index] + bytes([data.draw(st.integers(0, 255))]) + original[index:]
    with pytest.raises(REJECTED):
        open_note(mutated, [SIGNER.verifier])


_NOTE_PIECES = st.sampled_from(
    ["\n", "\n\n", "— ", "\u2014", " ", "+", "=", "a", "AAAA", "example.com/log", "\r", "\x00"]
)
_NOTEISH = st.lists(st.one_of(_NOTE_PIECES, st.text(max_size=8)), max_size=20).map("".join)


@settings(max_examples=400, deadline=None)
@given(raw=st.one_of(st.text(), st.binary(), _NOTEISH, _NOTEISH.map(str.encode)))
def test_open_note_raises_only_library_errors(raw: str | bytes) -> None:
    with contextlib.suppress(*REJECTED):
        open_note(raw, [SIGNER.verifier])


@settings(max_examples=200, deadline=None)
@given(text=_TEXTS, junk=_NOTEISH)
def test_signature_block_fuzz_raises_only_library_errors(text: str, junk: str) -> None:
    note = sign_note(text, [SIGNER])
    for raw in (note + junk, note[: len(text) + 1] + junk):
        with contextlib.suppress(*REJECTED):
            open_note(raw, [SIGNER.verifier])


_KEYISH = st.lists(
    st.one_of(
        st.sampled_from(["+", "PRIVATE+KEY+", "c74f20a3", "AR", "AY", "=", "PeterNeumann", " "]),
        st.text(max_size=12),
    ),
    max_size=8,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(raw=st.one_of(st.text(), _KEYISH))
def test_key_parsers_raise_only_invalid_input(raw: str) -> None:
    for parse in (parse_vkey, parse_skey, check_key_name):
        with contextlib.suppress(InvalidInput):
            parse(raw)
