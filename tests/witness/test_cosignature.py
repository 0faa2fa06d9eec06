"""C2SP tlog-cosignature/v1 (Ed25519, type 0x04): known answers, round trips, refusals."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import string

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ledger.cosignature import (
    COSIGNATURE_SIZE,
    MAX_TIMESTAMP,
    CosignatureSigner,
    CosignatureVerifier,
    cosign_line,
    cosignature_key_hash,
    cosignature_message,
    format_witness_vkey,
    open_cosignatures,
    parse_timestamped_signature,
    parse_witness_vkey,
    verify_cosignatures,
)
from ledger.errors import InvalidInput, VerificationError
from ledger.note import Signature, Signer, open_note, parse_skey, parse_vkey, sign_note, split_note
from tests.helpers import VECTORS
from tests.witness.support import FixedClock, cosigner

# --- known answers from the spec and published implementations ----------------------

# c2sp.org/tlog-cosignature, "Ed25519 signed message": the example checkpoint and message.
SPEC_TEXT = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
SPEC_MESSAGE = (
    "cosignature/v1\n"
    "time 1679315147\n"
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)
# The spec's example cosignature line (witness.example.com/w1) carries that timestamp.
SPEC_LINE_B64 = (
    "jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZ"
    "qhf5nNo0xUe+mbIUBkBIfZ+qnA=="
)
# transparency-dev/formats note/note_cosigv1_test.go, TestCoSigV1Timestamp "works".
FORMATS_SIG_B64 = (
    "ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEB"
    "YJXORmnFBOBA=="
)
FORMATS_SIG_TIME = 1727964367
# ... TestCoSigV1NewVerifier "works: native algEd25519CosignatureV1 verifier" (a real witness key).
REMORA_VKEY = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
# ... "works: convert from algEd25519": a plain note key (type 0x01).
GO_ED25519_VKEY = "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6"
# ... the cases that must fail.
GO_BAD_VKEYS = [
    "bananas.sigstore.dev+12344556",
    "rekor.sigstore.dev+12345678+THIS_IS_NOT_BASE64!",
    "rekor.sigstore.dev+12345678+AwEB",
    "rekor.sigstore.dev+NOT_A_NUMBER+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",
    "rekor.sigstore.dev+00000000+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",
]


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def test_message_is_the_spec_example() -> None:
    assert cosignature_message(SPEC_TEXT, 1679315147) == SPEC_MESSAGE.encode()
    assert cosignature_message(SPEC_TEXT.encode(), 1679315147) == SPEC_MESSAGE.encode()


def test_timestamps_of_published_signatures() -> None:
    spec = base64.b64decode(SPEC_LINE_B64)
    assert len(spec) == 4 + COSIGNATURE_SIZE
    timestamp, sig = parse_timestamped_signature(spec[4:])
    assert timestamp == 1679315147  # the time line of the spec's example message
    assert len(sig) == 64
    formats = base64.b64decode(FORMATS_SIG_B64)
    assert parse_timestamped_signature(formats[4:])[0] == FORMATS_SIG_TIME


def test_published_witness_vkey() -> None:
    verifier = parse_witness_vkey(REMORA_VKEY)
    assert verifier.name == "remora.n621.de"
    assert verifier.key_hash.hex() == "da77ade7"
    assert verifier.vkey == REMORA_VKEY
    # The key ID, recomputed here from the spec's formula.
    raw = base64.b64decode(REMORA_VKEY.split("+", 2)[2])
    assert raw[0] == 0x04
    expected = hashlib.sha256(b"remora.n621.de\n\x04" + raw[1:]).digest()[:4]
    assert verifier.key_hash == expected
    assert format_witness_vkey("remora.n621.de", raw[1:]) == REMORA_VKEY
    assert format_witness_vkey(verifier) == REMORA_VKEY


def test_plain_note_vkey_is_not_a_witness_key() -> None:
    note_key = parse_vkey(GO_ED25519_VKEY)  # valid as a type-0x01 key
    with pytest.raises(InvalidInput, match="0x04"):
        parse_witness_vkey(GO_ED25519_VKEY)
    # The same public key as a cosigner has another key ID (the type byte is hashed in).
    as_witness = CosignatureVerifier.from_public_key("TEST", note_key.public_key)
    assert as_witness.key_hash != note_key.key_hash
    assert as_witness.key_hash == cosignature_key_hash("TEST", note_key.public_key_bytes)
    assert as_witness.vkey.startswith(f"TEST+{as_witness.key_hash.hex()}+B")


@pytest.mark.parametrize("vkey", GO_BAD_VKEYS)
def test_bad_vkeys_from_go(vkey: str) -> None:
    with pytest.raises(InvalidInput):
        parse_witness_vkey(vkey)


def test_signed_note_vectors_still_verify_beside_a_cosignature() -> None:
    vectors = json.loads((VECTORS / "signed-note.json").read_text())["ed25519_note"]
    log = parse_skey(vectors["skey"])
    assert sign_note(vectors["text"], [log]) == vectors["signed_note"]
    witness = cosigner(FixedClock(1679315147))
    line = cosign_line(witness, vectors["text"])
    both = vectors["signed_note"] + line
    opened = open_note(both, [parse_vkey(vectors["vkey"]), witness.verifier])
    assert [s.name for s in opened.verified] == ["PeterNeumann", witness.name]
    assert verify_cosignatures(both, [witness.verifier]) == [(witness.name, 1679315147)]


# --- the signature bytes, checked by hand -------------------------------------------


def test_signature_line_layout_checked_by_hand() -> None:
    clock = FixedClock(1_700_000_123.9)
    witness = cosigner(clock)
    line = cosign_line(witness, SPEC_TEXT)
    assert line.startswith(f"\u2014 {witness.name} ") and line.endswith("\n")
    raw = base64.b64decode(line.rstrip("\n").split(" ", 2)[2])
    assert len(raw) == 4 + 8 + 64
    public = _raw(witness.private_key.public_key())
    assert raw[:4] == hashlib.sha256(witness.name.encode() + b"\n\x04" + public).digest()[:4]
    assert raw[4:12] == (1_700_000_123).to_bytes(8, "big")  # whole seconds, big-endian
    message = b"cosignature/v1\ntime 1700000123\n" + SPEC_TEXT.encode()
    witness.private_key.public_key().verify(raw[12:], message)  # raises if wrong


def test_signer_is_a_note_signer_and_verifier_a_note_verifier() -> None:
    log = Signer("example.com/behind-the-sofa", Ed25519PrivateKey.generate())
    witness = cosigner(FixedClock(1679315147))
    note = sign_note(SPEC_TEXT, [log, witness])
    opened = open_note(note, [log.verifier, witness.verifier])
    assert len(opened.verified) == 2
    # A client that knows only the log key keeps the cosignature unchecked.
    assert [s.name for s in open_note(note, [log.verifier]).unverified] == [witness.name]
    found = open_cosignatures(note, [witness.verifier])
    assert [(c.name, c.timestamp, c.key_id) for c in found] == [
        (witness.name, 1679315147, witness.verifier.key_id)
    ]
    assert found[0].line in note


def test_cosignature_covers_extension_lines() -> None:
    text = "test\n123\nf+7CoKgXKE/tNys9TTXcr/ad6U/K3xvznmzew9y6SP0=\nExtendo\n"
    witness = cosigner()
    note = sign_note(text, [witness])
    assert verify_cosignatures(note, [witness.verifier]) == [(witness.name, 1_700_000_000)]
    tampered = note.replace("Extendo", "Extend@")
    with pytest.raises(VerificationError):
        verify_cosignatures(tampered, [witness.verifier])


def test_tampering_is_caught() -> None:
    witness = cosigner(FixedClock(1679315147))
    note = sign_note(SPEC_TEXT, [witness])
    text, (sig,) = split_note(note)
    bad = [
        # another size
        sign_note(SPEC_TEXT, [witness]).replace("20852163", "20852164"),
        # another timestamp, same Ed25519 signature
        text
        + "\n"
        + Signature(
            sig.name, sig.key_hash, (1679315148).to_bytes(8, "big") + sig.signature[8:]
        ).line(),
        # Ed25519 signature bit flipped
        text
        + "\n"
        + Signature(
            sig.name, sig.key_hash, sig.signature[:-1] + bytes([sig.signature[-1] ^ 1])
        ).line(),
        # 64 bytes only (a plain Ed25519 signature under the cosigner's key ID)
        text + "\n" + Signature(sig.name, sig.key_hash, sig.signature[8:]).line(),
        # a timestamp beyond 2**63 - 1
        text + "\n" + Signature(sig.name, sig.key_hash, b"\x80" + sig.signature[1:]).line(),
    ]
    for note_text in bad:
        with pytest.raises(VerificationError):
            verify_cosignatures(note_text, [witness.verifier])
        with pytest.raises(VerificationError):
            open_note(note_text, [witness.verifier])


def test_other_keys_are_ignored_and_nothing_is_fine() -> None:
    log = Signer("example.com/behind-the-sofa", Ed25519PrivateKey.generate())
    w1, w2, w3 = (
        cosigner(name="w1.example"),
        cosigner(name="w2.example"),
        cosigner(name="w1.example"),
    )
    note = sign_note(SPEC_TEXT, [log, w1, w2])
    assert verify_cosignatures(note, [w2.verifier]) == [("w2.example", 1_700_000_000)]
    # Same name, other key: not the same cosigner, its line is ignored.
    assert verify_cosignatures(note, [w3.verifier]) == []
    assert verify_cosignatures(sign_note(SPEC_TEXT, [log]), [w1.verifier, w2.verifier]) == []
    # A plain Ed25519 verifier of the witness's key does not accept a cosignature.
    plain = Signer("w1.example", w1.private_key).verifier
    with pytest.raises(VerificationError, match="no signature by a known key"):
        open_note(sign_note(SPEC_TEXT, [w1]), [plain])


def test_signer_clock_and_inputs() -> None:
    with pytest.raises(InvalidInput):
        CosignatureSigner("bad name", Ed25519PrivateKey.generate(), FixedClock())
    with pytest.raises(InvalidInput):
        CosignatureSigner("w", "not a key", FixedClock())  # type: ignore[arg-type]
    for bad in (-1.0, float("nan"), float("inf"), 2.0**63):
        with pytest.raises(InvalidInput):
            cosigner(FixedClock(bad)).sign(SPEC_TEXT.encode())
    with pytest.raises(InvalidInput):
        cosignature_message(SPEC_TEXT, MAX_TIMESTAMP + 1)
    with pytest.raises(InvalidInput):
        cosignature_message("no newline", 1)
    assert cosignature_message("x\n", MAX_TIMESTAMP).startswith(
        b"cosignature/v1\ntime 9223372036854775807\n"
    )
    with pytest.raises(InvalidInput):
        verify_cosignatures(SPEC_TEXT, [cosigner().verifier])  # no signature block
    with pytest.raises(InvalidInput):
        verify_cosignatures(SPEC_TEXT, [parse_vkey(GO_ED25519_VKEY)])  # type: ignore[list-item]


def test_parsers_raise_only_suyuan_errors() -> None:
    rng = random.Random(6)
    alphabet = string.ascii_letters + string.digits + "+/=.\u2014 \n"
    candidates = [REMORA_VKEY[:i] for i in range(len(REMORA_VKEY))]
    candidates += [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80))) for _ in range(300)
    ]
    candidates += [REMORA_VKEY.replace("B", "A", 1), REMORA_VKEY + "=", "a+da77ade7+" + "B" * 44]
    for value in candidates:
        try:
            parsed = parse_witness_vkey(value)
        except InvalidInput:
            continue
        assert parsed.vkey == value  # only canonical, matching vkeys get through
    for value in [b"", b"\xff", b"\x00" * 71, b"\x00" * 73, "str"]:
        with pytest.raises(VerificationError):
            parse_timestamped_signature(value)  # type: ignore[arg-type]
    verifier = cosigner().verifier
    for message in [b"", b"no newline", "str", b"\xff\n"]:
        with pytest.raises(VerificationError):
            verifier.verify(message, b"\x00" * 72)  # type: ignore[arg-type]
