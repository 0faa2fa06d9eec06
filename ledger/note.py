"""C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 keys.

A signed note is a UTF-8 text ending in a newline, a blank line, and one or
more signature lines ``— <key name> <base64(key ID || signature)>``.  Suyuan's
checkpoints (:mod:`ledger.checkpoint`) are signed notes; witness cosignatures
(c2sp.org/tlog-cosignature) will travel as further signature lines.

This module is a pure core: no clock, no files, no logging.  It offers

* key names, key hashes (key IDs) and the ``vkey`` / Go-style ``skey`` text
  encodings of Ed25519 note keys (signature type ``0x01``);
* :func:`sign_note`, which signs a text with one or more signers;
* :func:`open_note`, which parses a note strictly and verifies the signatures
  of the keys the caller knows.

Signing and verifying go through two small protocols, :class:`NoteSigner`
and :class:`NoteVerifier` (name, 4-byte key hash, ``sign`` / ``verify`` over
the note text).  :class:`Signer` and :class:`Verifier` implement them for plain
Ed25519 note signatures; a later cosignature type (``0x04``, whose signed
message is a prefix plus the text) can implement the same protocols without
changes here.

The note text MUST be ignored unless :func:`open_note` returned it: it has
been verified by a known key only then.
"""

from __future__ import annotations

import base64
import hashlib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from ledger.errors import InvalidInput, VerificationError

__all__ = [
    "ALG_ED25519",
    "KEY_HASH_SIZE",
    "MAX_NOTE_BYTES",
    "MAX_SIGNATURES",
    "Note",
    "NoteSigner",
    "NoteVerifier",
    "Signature",
    "Signer",
    "Verifier",
    "check_key_name",
    "format_skey",
    "key_hash",
    "open_note",
    "parse_skey",
    "parse_vkey",
    "sign_note",
    "split_note",
]

ALG_ED25519 = 0x01
"""Signature type byte of plain Ed25519 note signatures (signed-note.md)."""

KEY_HASH_SIZE = 4
"""Length in bytes of a key hash (the spec's "key ID")."""

MAX_NOTE_BYTES = 1 << 20
"""Largest note (UTF-8 bytes) :func:`open_note` accepts and :func:`sign_note` makes."""

MAX_SIGNATURES = 100
"""Most signature lines a note may carry (the spec requires at least 16)."""

_ED25519_PUBLIC_SIZE = 32
_ED25519_SIGNATURE_SIZE = 64
_SIG_PREFIX = "\u2014 "  # em dash, space
_SKEY_PREFIX = "PRIVATE+KEY+"
_HEX8 = re.compile(r"[0-9a-f]{8}")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_SHOW_MAX = 60


def _show(value: str) -> str:
    """Quote ``value`` for an error message, shortened to keep messages small."""
    if len(value) > _SHOW_MAX:
        return repr(value[:_SHOW_MAX]) + "…"
    return repr(value)


def _b64decode(value: str, what: str) -> bytes:
    """Decode canonical standard base64 (RFC 4648 §4, padded) or raise InvalidInput.

    Non-canonical encodings (non-zero trailing bits) are refused so that one
    byte string has exactly one textual form.
    """
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:  # binascii.Error and non-ASCII input are ValueErrors
        raise InvalidInput(f"expected standard base64 for {what}, found {_show(value)}") from None
    if base64.b64encode(raw).decode("ascii") != value:
        raise InvalidInput(f"expected canonical base64 for {what}, found {_show(value)}")
    return raw


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def check_key_name(name: str) -> str:
    """Return ``name`` if it is a valid note key name, else raise InvalidInput.

    A key name MUST be a non-empty string of valid UTF-8 (no lone surrogates)
    with no Unicode space (``str.isspace`` or category Zs/Zl/Zp), no ``+`` and
    no ASCII control character (a note may not contain one anyway).
    """
    if not isinstance(name, str):
        raise InvalidInput(f"expected a key name string, found {type(name).__name__}")
    if not name:
        raise InvalidInput("expected a non-empty key name, found ''")
    for ch in name:
        if ch.isspace() or unicodedata.category(ch) in ("Zs", "Zl", "Zp"):
            raise InvalidInput(f"expected a key name without spaces, found {_show(name)}")
        if ch == "+":
            raise InvalidInput(f"expected a key name without '+', found {_show(name)}")
        if ch < " ":
            raise InvalidInput(
                f"expected a key name without control characters, found {_show(name)}"
            )
        if "\ud800" <= ch <= "\udfff":
            raise InvalidInput(
                f"expected a key name of valid UTF-8, found a lone surrogate in {_show(name)}"
            )
    return name


def key_hash(name: str, public_key_bytes: bytes) -> bytes:
    """Key hash (key ID) of an Ed25519 note key: SHA-256(name || 0x0A || 0x01 || key)[:4].

    ``name`` MUST be a valid key name and ``public_key_bytes`` the 32-byte raw
    Ed25519 public key; InvalidInput otherwise.
    """
    check_key_name(name)
    if not isinstance(public_key_bytes, bytes):
        raise InvalidInput(
            f"expected the public key as bytes, found {type(public_key_bytes).__name__}"
        )
    if len(public_key_bytes) != _ED25519_PUBLIC_SIZE:
        raise InvalidInput(
            f"expected a {_ED25519_PUBLIC_SIZE}-byte Ed25519 public key, "
            f"found {len(public_key_bytes)} bytes"
        )
    data = name.encode("utf-8") + b"\n" + bytes([ALG_ED25519]) + public_key_bytes
    return hashlib.sha256(data).digest()[:KEY_HASH_SIZE]


def _raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


class NoteVerifier(Protocol):
    """What :func:`open_note` needs to check one kind of note signature.

    ``verify`` receives the note text's UTF-8 bytes and the signature bytes
    that follow the 4-byte key hash; it MUST raise VerificationError unless the
    signature is valid, and MUST NOT raise anything but VerificationError.
    """

    @property
    def name(self) -> str: ...

    @property
    def key_hash(self) -> bytes: ...

    def verify(self, message: bytes, signature: bytes) -> None: ...


class NoteSigner(Protocol):
    """What :func:`sign_note` needs to add one signature line.

    ``sign`` receives the note text's UTF-8 bytes and returns the signature
    bytes that will follow the 4-byte key hash in the signature line.
    """

    @property
    def name(self) -> str: ...

    @property
    def key_hash(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


@dataclass(frozen=True, eq=False)
class Verifier:
    """An Ed25519 note verifier key (signature type 0x01).

    Construction checks the name rules and that ``key_hash`` is the key hash
    of (``name``, ``public_key``); use :meth:`from_public_key` to compute it.
    Two verifiers are equal when name, key hash and public key are.
    """

    name: str
    key_hash: bytes
    public_key: Ed25519PublicKey

    def __post_init__(self) -> None:
        if not isinstance(self.public_key, Ed25519PublicKey):
            raise InvalidInput(
                f"expected an Ed25519 public key, found {type(self.public_key).__name__}"
            )
        expected = key_hash(self.name, _raw_public(self.public_key))
        if not isinstance(self.key_hash, bytes):
            raise InvalidInput(f"expected key hash bytes, found {type(self.key_hash).__name__}")
        if self.key_hash != expected:
            raise InvalidInput(
                f"expected key hash {expected.hex()} for key {_show(self.name)}, "
                f"found {self.key_hash.hex()}"
            )

    @classmethod
    def from_public_key(cls, name: str, public_key: Ed25519PublicKey) -> Verifier:
        """Build the verifier of ``public_key`` under ``name``, computing the key hash."""
        if not isinstance(public_key, Ed25519PublicKey):
            raise InvalidInput(f"expected an Ed25519 public key, found {type(public_key).__name__}")
        return cls(name, key_hash(name, _raw_public(public_key)), public_key)

    @cached_property  # immutable object: computed once (hot on the append path)
    def public_key_bytes(self) -> bytes:
        """The raw 32-byte public key."""
        return _raw_public(self.public_key)

    @cached_property  # immutable object: computed once (hot on the append path)
    def key_id(self) -> str:
        """``name+hex8``: the name and the key hash in lowercase hex."""
        return f"{self.name}+{self.key_hash.hex()}"

    @cached_property  # immutable object: computed once (hot on the append path)
    def vkey(self) -> str:
        """The verifier key text ``name+hex8+base64(0x01 || public key)``."""
        return f"{self.key_id}+{_b64encode(bytes([ALG_ED25519]) + self.public_key_bytes)}"

    def verify(self, message: bytes, signature: bytes) -> None:
        """Check an Ed25519 signature over ``message``; raise VerificationError if bad."""
        if not isinstance(signature, bytes) or len(signature) != _ED25519_SIGNATURE_SIZE:
            raise VerificationError(
                f"signature by {self.key_id} is not {_ED25519_SIGNATURE_SIZE} bytes long"
            )
        try:
            self.public_key.verify(signature, message)
        except InvalidSignature:
            raise VerificationError(f"signature by {self.key_id} does not verify") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Verifier):
            return NotImplemented
        return (self.name, self.key_hash, self.public_key_bytes) == (
            other.name,
            other.key_hash,
            other.public_key_bytes,
        )

    def __hash__(self) -> int:
        return hash((self.name, self.key_hash, self.public_key_bytes))

    def __repr__(self) -> str:
        return f"Verifier({self.vkey!r})"


def parse_vkey(vkey: str) -> Verifier:
    """Parse a verifier key ``name+hex8+base64(0x01 || 32-byte public key)``.

    Splits on the first two ``+`` only (the base64 may contain ``+``).  The
    name MUST be valid, ``hex8`` MUST be 8 lowercase hex digits equal to the
    computed key hash, the base64 MUST be canonical standard base64 of 33 bytes
    whose first byte is 0x01.  Raises InvalidInput otherwise.
    """
    if not isinstance(vkey, str):
        raise InvalidInput(f"expected a vkey string, found {type(vkey).__name__}")
    parts = vkey.split("+", 2)
    if len(parts) != 3:
        raise InvalidInput(f"expected a vkey 'name+hex8+base64', found {_show(vkey)}")
    name, hex8, b64 = parts
    check_key_name(name)
    if not _HEX8.fullmatch(hex8):
        raise InvalidInput(
            f"expected 8 lowercase hex digits after the vkey name, found {_show(hex8)}"
        )
    raw = _b64decode(b64, "the vkey's key")
    if not raw or raw[0] != ALG_ED25519:
        found = f"0x{raw[0]:02x}" if raw else "nothing"
        raise InvalidInput(f"expected signature type 0x01 (Ed25519) in the vkey, found {found}")
    if len(raw) != 1 + _ED25519_PUBLIC_SIZE:
        raise InvalidInput(
            f"expected a {_ED25519_PUBLIC_SIZE}-byte Ed25519 key in the vkey, "
            f"found {len(raw) - 1} bytes"
        )
    public_key = Ed25519PublicKey.from_public_bytes(raw[1:])
    expected = key_hash(name, raw[1:])
    if expected.hex() != hex8:
        raise InvalidInput(f"expected key hash {expected.hex()} in the vkey, found {hex8}")
    return Verifier(name, expected, public_key)


@dataclass(frozen=True, eq=False)
class Signer:
    """An Ed25519 note signer (signature type 0x01): a key name and a private key.

    The private key MUST NOT be printed or logged; ``repr`` leaves it out.
    """

    name: str
    private_key: Ed25519PrivateKey = field(repr=False)

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if not isinstance(self.private_key, Ed25519PrivateKey):
            raise InvalidInput(
                f"expected an Ed25519 private key, found {type(self.private_key).__name__}"
            )

    @cached_property  # immutable object: computed once (hot on the append path)
    def verifier(self) -> Verifier:
        """The matching verifier (public half)."""
        return Verifier.from_public_key(self.name, self.private_key.public_key())

    @cached_property  # immutable object: computed once (hot on the append path)
    def key_hash(self) -> bytes:
        """The 4-byte key hash of this key under this name."""
        return key_hash(self.name, _raw_public(self.private_key.public_key()))

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``message`` (deterministic)."""
        return self.private_key.sign(message)


def format_skey(signer: Signer) -> str:
    """Encode ``signer`` as Go's ``PRIVATE+KEY+name+hex8+base64(0x01 || seed)``.

    For tests and interoperability only: Suyuan stores private keys as
    encrypted PKCS#8 files (:mod:`keys.files`).  The result is secret and MUST
    NOT be printed, logged or stored unencrypted.
    """
    seed = signer.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    encoded = _b64encode(bytes([ALG_ED25519]) + seed)
    return f"{_SKEY_PREFIX}{signer.name}+{signer.key_hash.hex()}+{encoded}"


def parse_skey(skey: str) -> Signer:
    """Parse Go's ``PRIVATE+KEY+name+hex8+base64(0x01 || 32-byte seed)`` signer key.

    ``hex8`` MUST equal the key hash of the derived public key.  Raises
    InvalidInput; error messages never contain the key material.
    """
    if not isinstance(skey, str):
        raise InvalidInput(f"expected an skey string, found {type(skey).__name__}")
    if not skey.startswith(_SKEY_PREFIX):
        raise InvalidInput(f"expected an skey starting with {_SKEY_PREFIX!r}")
    parts = skey[len(_SKEY_PREFIX) :].split("+", 2)
    if len(parts) != 3:
        raise InvalidInput("expected an skey 'PRIVATE+KEY+name+hex8+base64'")
    name, hex8, b64 = parts
    check_key_name(name)
    if not _HEX8.fullmatch(hex8):
        raise InvalidInput(
            f"expected 8 lowercase hex digits after the skey name, found {_show(hex8)}"
        )
    try:
        raw = base64.b64decode(b64, validate=True)
    except ValueError:
        raise InvalidInput("expected standard base64 key material in the skey") from None
    if base64.b64encode(raw).decode("ascii") != b64:
        raise InvalidInput("expected canonical base64 key material in the skey")
    if len(raw) != 1 + _ED25519_PUBLIC_SIZE or raw[0] != ALG_ED25519:
        raise InvalidInput(
            "expected signature type 0x01 and a 32-byte Ed25519 seed in the skey, "
            f"found {len(raw)} bytes"
        )
    signer = Signer(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
    if signer.key_hash.hex() != hex8:
        raise InvalidInput(f"expected key hash {signer.key_hash.hex()} in the skey, found {hex8}")
    return signer


@dataclass(frozen=True)
class Signature:
    """One signature line of a note.

    ``signature`` holds the bytes after the 4-byte ``key_hash`` (for Ed25519
    note signatures, the 64-byte signature; for cosignatures, whatever their
    type defines).
    """

    name: str
    key_hash: bytes
    signature: bytes

    @property
    def key_id(self) -> str:
        """``name+hex8`` of the signing key."""
        return f"{self.name}+{self.key_hash.hex()}"

    def line(self) -> str:
        """The signature line, ``— name base64(key_hash || signature)`` and a newline."""
        return f"{_SIG_PREFIX}{self.name} {_b64encode(self.key_hash + self.signature)}\n"


@dataclass(frozen=True)
class Note:
    """An opened note: its text and its signatures, split by whether a known key verified them.

    ``verified`` holds at least one signature (else :func:`open_note` raises);
    ``unverified`` holds the well-formed signature lines of keys the caller
    did not pass in (for instance witness cosignatures), unchecked.
    Both keep the order of the note.
    """

    text: str
    verified: tuple[Signature, ...]
    unverified: tuple[Signature, ...] = ()


def _check_chars(text: str, what: str) -> bytes:
    """Refuse control characters other than newline and lone surrogates; return UTF-8 bytes."""
    bad = _CONTROL.search(text)
    if bad is not None:
        raise InvalidInput(
            f"expected no control characters other than newline in {what}, "
            f"found U+{ord(bad.group()):04X} at offset {bad.start()}"
        )
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(
            f"expected {what} to be valid UTF-8, found a lone surrogate at offset {exc.start}"
        ) from None


def sign_note(text: str, signers: Sequence[NoteSigner]) -> str:
    """Sign ``text`` with every signer and return the note.

    ``text`` MUST be non-empty, end with a newline, be valid UTF-8 and contain
    no control character other than newline.  ``signers`` MUST be non-empty
    with distinct (name, key hash) pairs.  The signed message is the UTF-8 text;
    the result is ``text + "\\n" + one signature line per signer``, in order, and
    MUST NOT exceed :data:`MAX_NOTE_BYTES`.  Raises InvalidInput.
    """
    if not isinstance(text, str):
        raise InvalidInput(f"expected the note text as str, found {type(text).__name__}")
    if not text:
        raise InvalidInput("expected a non-empty note text, found ''")
    if not text.endswith("\n"):
        raise InvalidInput(
            f"expected the note text to end with a newline, found {_show(text[-20:])}"
        )
    message = _check_chars(text, "the note text")
    if not signers:
        raise InvalidInput("expected at least one signer, found none")
    if len(signers) > MAX_SIGNATURES:
        raise InvalidInput(f"expected at most {MAX_SIGNATURES} signers, found {len(signers)}")
    seen: set[tuple[str, bytes]] = set()
    lines = []
    for signer in signers:
        name, khash = check_key_name(signer.name), signer.key_hash
        if len(khash) != KEY_HASH_SIZE:
            raise InvalidInput(f"expected a 4-byte key hash for {_show(name)}, found {len(khash)}")
        if (name, khash) in seen:
            raise InvalidInput(f"expected distinct signers, found {name}+{khash.hex()} twice")
        seen.add((name, khash))
        lines.append(Signature(name, khash, signer.sign(message)).line())
    note = text + "\n" + "".join(lines)
    size = len(note.encode("utf-8"))
    if size > MAX_NOTE_BYTES:
        raise InvalidInput(f"expected a note of at most {MAX_NOTE_BYTES} bytes, found {size}")
    return note


def _parse_signature_line(line: str, number: int) -> Signature:
    if not line.startswith(_SIG_PREFIX):
        raise InvalidInput(
            f"expected signature line {number} to start with '— ' (U+2014, space), "
            f"found {_show(line)}"
        )
    name, space, b64 = line[len(_SIG_PREFIX) :].partition(" ")
    if not space or not b64:
        raise InvalidInput(
            f"expected 'name base64' after '— ' on signature line {number}, found {_show(line)}"
        )
    try:
        check_key_name(name)
    except InvalidInput as exc:
        raise InvalidInput(f"signature line {number}: {exc}") from None
    raw = _b64decode(b64, f"the signature on signature line {number}")
    if len(raw) <= KEY_HASH_SIZE:
        raise InvalidInput(
            f"expected more than {KEY_HASH_SIZE} bytes of key hash and signature on "
            f"signature line {number}, found {len(raw)}"
        )
    return Signature(name, raw[:KEY_HASH_SIZE], raw[KEY_HASH_SIZE:])


def split_note(note: str | bytes) -> tuple[str, tuple[Signature, ...]]:
    """Parse a signed note strictly into its text and signature lines, verifying nothing.

    The note MUST be valid UTF-8 of at most :data:`MAX_NOTE_BYTES` bytes with no
    control character other than newline.  The text ends at the last blank line
    (it keeps its final newline); after it come 1 to :data:`MAX_SIGNATURES`
    signature lines ``— name base64(4-byte key hash || signature)``, each ending
    in a newline, with canonical base64 and no (name, key hash) twice.
    Malformed notes raise InvalidInput.

    The text MUST NOT be trusted on the strength of this call: it is for
    callers that verify the signatures they care about themselves (for example
    :func:`ledger.cosignature.verify_cosignatures`), and for :func:`open_note`.
    """
    if isinstance(note, bytes):
        if len(note) > MAX_NOTE_BYTES:
            raise InvalidInput(
                f"expected a note of at most {MAX_NOTE_BYTES} bytes, found {len(note)}"
            )
        try:
            text_all = note.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(
                f"expected the note to be valid UTF-8, found an invalid byte at offset {exc.start}"
            ) from None
        _check_chars(text_all, "the note")
    elif isinstance(note, str):
        if len(note) > MAX_NOTE_BYTES:
            raise InvalidInput(f"expected a note of at most {MAX_NOTE_BYTES} bytes, found more")
        text_all = note
        size = len(_check_chars(text_all, "the note"))
        if size > MAX_NOTE_BYTES:
            raise InvalidInput(f"expected a note of at most {MAX_NOTE_BYTES} bytes, found {size}")
    else:
        raise InvalidInput(f"expected a note as str or bytes, found {type(note).__name__}")

    split = text_all.rfind("\n\n")
    if split < 0:
        raise InvalidInput(
            "expected a blank line between the note text and its signatures, found none"
        )
    text, block = text_all[: split + 1], text_all[split + 2 :]
    if not block:
        raise InvalidInput("expected signature lines after the blank line, found none")
    if not block.endswith("\n"):
        raise InvalidInput(f"expected the note to end with a newline, found {_show(block[-20:])}")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise InvalidInput(f"expected at most {MAX_SIGNATURES} signature lines, found {len(lines)}")

    signatures = [_parse_signature_line(line, i) for i, line in enumerate(lines, start=1)]
    seen: set[tuple[str, bytes]] = set()
    for sig in signatures:
        if (sig.name, sig.key_hash) in seen:
            raise InvalidInput(f"expected one signature per key, found {sig.key_id} twice")
        seen.add((sig.name, sig.key_hash))
    return text, tuple(signatures)


def open_note(note: str | bytes, verifiers: Sequence[NoteVerifier]) -> Note:
    """Parse a signed note strictly and verify it with the known ``verifiers``.

    The note MUST be valid UTF-8 of at most :data:`MAX_NOTE_BYTES` bytes with no
    control character other than newline.  The text ends at the last blank line
    (it keeps its final newline); after it come 1 to :data:`MAX_SIGNATURES`
    signature lines ``— name base64(4-byte key hash || signature)``, each ending
    in a newline, with canonical base64 and no (name, key hash) twice.
    Malformed notes raise InvalidInput (see :func:`split_note`).

    Every signature whose (name, key hash) matches a verifier MUST verify, or
    VerificationError is raised; signatures of other keys are returned unchecked
    in ``unverified``.  If no signature is by a known key, VerificationError is
    raised.  ``verifiers`` MUST be non-empty and MUST NOT hold two different
    keys with the same (name, key hash) (InvalidInput).

    A verifier sees the note text and the bytes after the key hash; verifiers of
    other signature types (e.g. :class:`ledger.cosignature.CosignatureVerifier`,
    type 0x04, 72-byte timestamped signatures) build their own signed message.
    """
    # Malformed notes are refused before the verifier list is looked at, as before.
    text, signatures = split_note(note)

    known: dict[tuple[str, bytes], NoteVerifier] = {}
    for verifier in verifiers:
        ident = (verifier.name, bytes(verifier.key_hash))
        if ident in known and known[ident] != verifier:
            raise InvalidInput(
                f"expected distinct verifier keys, found two keys for {ident[0]}+{ident[1].hex()}"
            )
        known[ident] = verifier
    if not known:
        raise InvalidInput("expected at least one verifier, found none")

    message = text.encode("utf-8")
    verified: list[Signature] = []
    unverified: list[Signature] = []
    for sig in signatures:
        match = known.get((sig.name, sig.key_hash))
        if match is None:
            unverified.append(sig)
            continue
        match.verify(message, sig.signature)  # raises VerificationError
        verified.append(sig)
    if not verified:
        signed_by = ", ".join(_show(sig.key_id) for sig in unverified[:5])
        more = f" and {len(unverified) - 5} more" if len(unverified) > 5 else ""
        raise VerificationError(f"no signature by a known key: note signed by {signed_by}{more}")
    return Note(text, tuple(verified), tuple(unverified))
