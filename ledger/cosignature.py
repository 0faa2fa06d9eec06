"""Witness cosignatures: C2SP tlog-cosignature, Ed25519 ``cosignature/v1`` (signature type 0x04).

A cosignature is a note signature line added to a checkpoint by a *cosigner*
(a witness) that verified the checkpoint's consistency with everything it saw
before (https://c2sp.org/tlog-cosignature, "Format")::

    — <witness name> base64(key ID || timestamp || Ed25519 signature)

* The key ID is ``SHA-256(name || 0x0A || 0x04 || 32-byte public key)[:4]``
  ("Format"; signed-note.md "Signature types": 0x04 is "Timestamped Ed25519
  witness cosignatures").
* The signature is a ``timestamped_signature``: a big-endian ``u64`` POSIX
  timestamp (at most 2**63 - 1) followed by the 64-byte Ed25519 signature,
  72 bytes in all.
* The Ed25519 signature covers ("Ed25519 signed message")::

      cosignature/v1\\n
      time <timestamp in decimal, no leading zeroes>\\n
      <the whole checkpoint note text, final newline included>

  which does not commit to the cosigner's name: one key MUST NOT serve two
  cosigners.
* The public key travels as a vkey ``name+hex8+base64(0x04 || public key)``
  (signed-note "Verifier keys" with signature type 0x04).

:class:`CosignatureSigner` and :class:`CosignatureVerifier` implement
:class:`ledger.note.NoteSigner` / :class:`ledger.note.NoteVerifier`: they
receive the note text and build the cosigned message themselves, so
:func:`ledger.note.sign_note` and :func:`ledger.note.open_note` work with them
unchanged.  Semantically a cosignature says: as of ``timestamp``, the largest
consistent tree the witness has seen for the checkpoint's origin has this
root hash.

Pure core: no I/O; the signer's clock is injected.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ledger.errors import InvalidInput, VerificationError
from ledger.note import KEY_HASH_SIZE, Signature, _show, check_key_name, split_note

__all__ = [
    "ALG_COSIGNATURE_V1",
    "COSIGNATURE_HEADER",
    "COSIGNATURE_SIZE",
    "MAX_TIMESTAMP",
    "Clock",
    "Cosignature",
    "CosignatureSigner",
    "CosignatureVerifier",
    "cosign_line",
    "cosignature_key_hash",
    "cosignature_message",
    "format_witness_vkey",
    "open_cosignatures",
    "parse_timestamped_signature",
    "parse_witness_vkey",
    "verify_cosignatures",
]

ALG_COSIGNATURE_V1 = 0x04
"""Signature type byte of Ed25519 ``cosignature/v1`` (signed-note.md "Signature types")."""

COSIGNATURE_HEADER = b"cosignature/v1\n"
"""First line of the cosigned message: domain separation ("Ed25519 signed message")."""

COSIGNATURE_SIZE = 8 + 64
"""Bytes after the key ID: u64 big-endian timestamp || 64-byte Ed25519 signature."""

MAX_TIMESTAMP = (1 << 63) - 1
"""A cosignature timestamp MUST NOT exceed 2**63 - 1 ("Format")."""

Clock = Callable[[], float]
"""Returns the current POSIX time in seconds (``time.time`` in production)."""

_ED25519_PUBLIC_SIZE = 32
_HEX8 = re.compile(r"[0-9a-f]{8}")


def _raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _check_timestamp(timestamp: object) -> int:
    if not isinstance(timestamp, int) or isinstance(timestamp, bool):
        raise InvalidInput(f"expected an int timestamp, found {type(timestamp).__name__}")
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise InvalidInput(f"expected a timestamp in 0..2**63-1, found {timestamp}")
    return timestamp


def cosignature_key_hash(name: str, public_key_bytes: bytes) -> bytes:
    """Key ID of an Ed25519 cosigner: ``SHA-256(name || 0x0A || 0x04 || key)[:4]``.

    ``name`` MUST be a valid note key name and ``public_key_bytes`` the raw
    32-byte Ed25519 public key; InvalidInput otherwise.
    """
    check_key_name(name)
    if not isinstance(public_key_bytes, bytes) or len(public_key_bytes) != _ED25519_PUBLIC_SIZE:
        found = (
            f"{len(public_key_bytes)} bytes"
            if isinstance(public_key_bytes, bytes)
            else type(public_key_bytes).__name__
        )
        raise InvalidInput(
            f"expected a {_ED25519_PUBLIC_SIZE}-byte Ed25519 public key, found {found}"
        )
    data = name.encode("utf-8") + b"\n" + bytes([ALG_COSIGNATURE_V1]) + public_key_bytes
    return hashlib.sha256(data).digest()[:KEY_HASH_SIZE]


def cosignature_message(text: str | bytes, timestamp: int) -> bytes:
    """The message an Ed25519 cosignature signs ("Ed25519 signed message").

    ``cosignature/v1\\n`` + ``time <timestamp>\\n`` + the checkpoint note text
    (the body including its final newline, without the blank line or any
    signature line).  ``text`` MUST be non-empty and end with a newline and
    ``timestamp`` MUST be in 0..2**63-1; InvalidInput otherwise.
    """
    _check_timestamp(timestamp)
    if isinstance(text, str):
        try:
            body = text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput("expected the note text as valid UTF-8, found a surrogate") from None
    elif isinstance(text, bytes):
        body = text
    else:
        raise InvalidInput(f"expected the note text as str or bytes, found {type(text).__name__}")
    if not body.endswith(b"\n"):
        raise InvalidInput(
            f"expected the note text to end with a newline, found {_show(repr(body[-20:]))}"
        )
    return COSIGNATURE_HEADER + b"time " + str(timestamp).encode("ascii") + b"\n" + body


def parse_timestamped_signature(signature: bytes) -> tuple[int, bytes]:
    """Split a 72-byte ``timestamped_signature`` into (timestamp, 64-byte Ed25519 signature).

    Raises VerificationError if the length is not 72 or the timestamp exceeds
    2**63 - 1 (it arrives inside a signature line, so a bad one is a failed
    verification rather than a malformed note).
    """
    if not isinstance(signature, bytes) or len(signature) != COSIGNATURE_SIZE:
        found = len(signature) if isinstance(signature, bytes) else type(signature).__name__
        raise VerificationError(
            f"expected a {COSIGNATURE_SIZE}-byte timestamped cosignature, found {found}"
        )
    timestamp = int.from_bytes(signature[:8], "big")
    if timestamp > MAX_TIMESTAMP:
        raise VerificationError(f"cosignature timestamp {timestamp} exceeds 2**63-1")
    return timestamp, signature[8:]


@dataclass(frozen=True, eq=False)
class CosignatureVerifier:
    """An Ed25519 cosigner's public key under its name (a :class:`ledger.note.NoteVerifier`).

    Construction checks the name and that ``key_hash`` is the type-0x04 key ID
    of (``name``, ``public_key``); :meth:`from_public_key` computes it.
    """

    name: str
    key_hash: bytes
    public_key: Ed25519PublicKey

    def __post_init__(self) -> None:
        if not isinstance(self.public_key, Ed25519PublicKey):
            raise InvalidInput(
                f"expected an Ed25519 public key, found {type(self.public_key).__name__}"
            )
        expected = cosignature_key_hash(self.name, _raw_public(self.public_key))
        if not isinstance(self.key_hash, bytes) or self.key_hash != expected:
            found = (
                self.key_hash.hex()
                if isinstance(self.key_hash, bytes)
                else type(self.key_hash).__name__
            )
            raise InvalidInput(
                f"expected cosigner key hash {expected.hex()} for {_show(self.name)}, found {found}"
            )

    @classmethod
    def from_public_key(cls, name: str, public_key: Ed25519PublicKey) -> CosignatureVerifier:
        """Build the verifier of ``public_key`` under ``name``, computing the key ID."""
        if not isinstance(public_key, Ed25519PublicKey):
            raise InvalidInput(f"expected an Ed25519 public key, found {type(public_key).__name__}")
        return cls(name, cosignature_key_hash(name, _raw_public(public_key)), public_key)

    @cached_property
    def public_key_bytes(self) -> bytes:
        """The raw 32-byte public key."""
        return _raw_public(self.public_key)

    @cached_property
    def key_id(self) -> str:
        """``name+hex8``."""
        return f"{self.name}+{self.key_hash.hex()}"

    @cached_property
    def vkey(self) -> str:
        """The vkey ``name+hex8+base64(0x04 || public key)``."""
        raw = bytes([ALG_COSIGNATURE_V1]) + self.public_key_bytes
        return f"{self.key_id}+{base64.b64encode(raw).decode('ascii')}"

    def timestamp(self, message: bytes, signature: bytes) -> int:
        """Verify like :meth:`verify` and return the cosignature's timestamp."""
        timestamp, raw = parse_timestamped_signature(signature)
        if not isinstance(message, bytes):
            raise VerificationError(
                f"cosignature by {self.key_id}: expected the note text as bytes, "
                f"found {type(message).__name__}"
            )
        try:
            signed = cosignature_message(message, timestamp)
        except InvalidInput as exc:
            raise VerificationError(f"cosignature by {self.key_id}: {exc}") from None
        try:
            self.public_key.verify(raw, signed)
        except InvalidSignature:
            raise VerificationError(
                f"cosignature by {self.key_id} (time {timestamp}) does not verify"
            ) from None
        return timestamp

    def verify(self, message: bytes, signature: bytes) -> None:
        """Check a cosignature over the note text ``message``; raise VerificationError if bad.

        ``signature`` is the 72 bytes after the key ID; the signed message is
        rebuilt with :func:`cosignature_message` from its timestamp.
        """
        self.timestamp(message, signature)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CosignatureVerifier):
            return NotImplemented
        return (self.name, self.key_hash, self.public_key_bytes) == (
            other.name,
            other.key_hash,
            other.public_key_bytes,
        )

    def __hash__(self) -> int:
        return hash((self.name, self.key_hash, self.public_key_bytes))

    def __repr__(self) -> str:
        return f"CosignatureVerifier({self.vkey!r})"


@dataclass(frozen=True, eq=False)
class CosignatureSigner:
    """A witness's Ed25519 cosigning key (a :class:`ledger.note.NoteSigner`).

    ``clock`` returns POSIX seconds; each :meth:`sign` reads it once and
    truncates to whole seconds.  The private key MUST NOT be printed or logged;
    ``repr`` leaves it out.  The caller (the witness) MUST only sign a
    checkpoint it has checked is consistent with every one it cosigned before.
    """

    name: str
    private_key: Ed25519PrivateKey = field(repr=False)
    clock: Clock = field(repr=False)

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if not isinstance(self.private_key, Ed25519PrivateKey):
            raise InvalidInput(
                f"expected an Ed25519 private key, found {type(self.private_key).__name__}"
            )
        if not callable(self.clock):
            raise InvalidInput(f"expected a clock callable, found {type(self.clock).__name__}")

    @cached_property
    def verifier(self) -> CosignatureVerifier:
        """The matching verifier (public half)."""
        return CosignatureVerifier.from_public_key(self.name, self.private_key.public_key())

    @property
    def key_hash(self) -> bytes:
        """The 4-byte type-0x04 key ID."""
        return self.verifier.key_hash

    @property
    def vkey(self) -> str:
        """The witness's vkey ``name+hex8+base64(0x04 || public key)``."""
        return self.verifier.vkey

    def now(self) -> int:
        """The clock's time in whole seconds, checked to be in 0..2**63-1."""
        value = self.clock()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidInput(f"expected the clock to return seconds, found {value!r}")
        if value != value or value in (float("inf"), float("-inf")):
            raise InvalidInput(f"expected the clock to return finite seconds, found {value!r}")
        return _check_timestamp(int(value))

    def sign_at(self, message: bytes, timestamp: int) -> bytes:
        """Return ``timestamp (u64 BE) || Ed25519(cosignature_message(message, timestamp))``."""
        signed = cosignature_message(message, timestamp)
        return timestamp.to_bytes(8, "big") + self.private_key.sign(signed)

    def sign(self, message: bytes) -> bytes:
        """Cosign the note text ``message`` at the clock's current time (72 bytes)."""
        return self.sign_at(message, self.now())


@dataclass(frozen=True)
class Cosignature:
    """A verified cosignature: which witness, at what time, the raw signature line."""

    name: str
    key_hash: bytes
    timestamp: int
    line: str

    @property
    def key_id(self) -> str:
        """``name+hex8`` of the witness key."""
        return f"{self.name}+{self.key_hash.hex()}"


def cosign_line(signer: CosignatureSigner, text: str, timestamp: int | None = None) -> str:
    """The signature line (with its newline) of ``signer``'s cosignature on note text ``text``.

    This is what a witness returns from add-checkpoint (tlog-witness
    "add-checkpoint": one note signature line per witness key).  ``timestamp``
    defaults to the signer's clock.
    """
    if not isinstance(text, str):
        raise InvalidInput(f"expected the note text as str, found {type(text).__name__}")
    try:
        message = text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("expected the note text as valid UTF-8, found a surrogate") from None
    stamp = signer.now() if timestamp is None else _check_timestamp(timestamp)
    return Signature(signer.name, signer.key_hash, signer.sign_at(message, stamp)).line()


def parse_witness_vkey(vkey: str) -> CosignatureVerifier:
    """Parse a witness vkey ``name+hex8+base64(0x04 || 32-byte Ed25519 public key)``.

    Splits on the first two ``+`` only.  The name MUST be a valid key name,
    ``hex8`` 8 lowercase hex digits equal to the type-0x04 key ID, the base64
    canonical and of 33 bytes starting with 0x04.  Raises InvalidInput (a plain
    Ed25519 note vkey, type 0x01, is refused with a message that says so).
    """
    if not isinstance(vkey, str):
        raise InvalidInput(f"expected a vkey string, found {type(vkey).__name__}")
    parts = vkey.split("+", 2)
    if len(parts) != 3:
        raise InvalidInput(f"expected a witness vkey 'name+hex8+base64', found {_show(vkey)}")
    name, hex8, b64 = parts
    check_key_name(name)
    if not _HEX8.fullmatch(hex8):
        raise InvalidInput(
            f"expected 8 lowercase hex digits after the vkey name, found {_show(hex8)}"
        )
    try:
        raw = base64.b64decode(b64, validate=True)
    except ValueError:
        raise InvalidInput(
            f"expected standard base64 key in the vkey, found {_show(b64)}"
        ) from None
    if base64.b64encode(raw).decode("ascii") != b64:
        raise InvalidInput(f"expected canonical base64 key in the vkey, found {_show(b64)}")
    if not raw or raw[0] != ALG_COSIGNATURE_V1:
        found = f"0x{raw[0]:02x}" if raw else "nothing"
        hint = " (a log's note key, not a witness key)" if raw and raw[0] == 0x01 else ""
        raise InvalidInput(
            f"expected signature type 0x04 (cosignature/v1) in the witness vkey, "
            f"found {found}{hint}"
        )
    if len(raw) != 1 + _ED25519_PUBLIC_SIZE:
        raise InvalidInput(
            f"expected a {_ED25519_PUBLIC_SIZE}-byte Ed25519 key in the witness vkey, "
            f"found {len(raw) - 1} bytes"
        )
    expected = cosignature_key_hash(name, raw[1:])
    if expected.hex() != hex8:
        raise InvalidInput(f"expected key hash {expected.hex()} in the witness vkey, found {hex8}")
    return CosignatureVerifier(name, expected, Ed25519PublicKey.from_public_bytes(raw[1:]))


def format_witness_vkey(
    key: str | CosignatureVerifier | CosignatureSigner,
    public_key: Ed25519PublicKey | bytes | None = None,
) -> str:
    """Encode a witness vkey ``name+hex8+base64(0x04 || public key)``.

    Either ``format_witness_vkey(name, public_key)`` with an Ed25519 public key
    (object or 32 raw bytes), or ``format_witness_vkey(verifier_or_signer)``.
    """
    if isinstance(key, (CosignatureVerifier, CosignatureSigner)):
        if public_key is not None:
            raise InvalidInput("expected no public key beside a verifier or signer")
        return key.vkey
    if not isinstance(key, str):
        raise InvalidInput(f"expected a witness name, found {type(key).__name__}")
    if isinstance(public_key, bytes):
        if len(public_key) != _ED25519_PUBLIC_SIZE:
            raise InvalidInput(
                f"expected a {_ED25519_PUBLIC_SIZE}-byte Ed25519 public key, "
                f"found {len(public_key)} bytes"
            )
        public_key = Ed25519PublicKey.from_public_bytes(public_key)
    if not isinstance(public_key, Ed25519PublicKey):
        raise InvalidInput(f"expected an Ed25519 public key, found {type(public_key).__name__}")
    return CosignatureVerifier.from_public_key(key, public_key).vkey


def verify_cosignatures(
    note_text: str | bytes, witnesses: Sequence[CosignatureVerifier]
) -> list[tuple[str, int]]:
    """Return ``(witness name, timestamp)`` for each known witness that cosigned the note.

    ``note_text`` is a whole signed note (a checkpoint with its signature
    lines); it is parsed strictly (:func:`ledger.note.split_note`,
    InvalidInput if malformed).  Signature lines whose (name, key ID) match no
    witness are ignored (signed-note "Signatures"); a line that matches a
    witness MUST verify, else VerificationError names the witness (the spec's
    SHOULD reject the whole note).  The result follows the note's order and may
    be empty.

    This checks cosignatures only: the caller MUST verify the log's own
    signature (:func:`ledger.checkpoint.verify_checkpoint`) before believing the
    checkpoint, and decides how many witnesses are enough.  Witnesses MUST NOT
    hold two keys with one (name, key ID) (InvalidInput).
    """
    return [(c.name, c.timestamp) for c in open_cosignatures(note_text, witnesses)]


def open_cosignatures(
    note_text: str | bytes, witnesses: Sequence[CosignatureVerifier]
) -> list[Cosignature]:
    """Like :func:`verify_cosignatures`, returning :class:`Cosignature` records with their lines."""
    known: dict[tuple[str, bytes], CosignatureVerifier] = {}
    for witness in witnesses:
        if not isinstance(witness, CosignatureVerifier):
            raise InvalidInput(
                f"expected CosignatureVerifier witnesses, found {type(witness).__name__}"
            )
        ident = (witness.name, witness.key_hash)
        if ident in known and known[ident] != witness:
            raise InvalidInput(f"expected distinct witness keys, found two for {witness.key_id}")
        known[ident] = witness
    text, signatures = split_note(note_text)
    message = text.encode("utf-8")
    found: list[Cosignature] = []
    for sig in signatures:
        match = known.get((sig.name, sig.key_hash))
        if match is None:
            continue
        timestamp = match.timestamp(message, sig.signature)
        found.append(Cosignature(sig.name, sig.key_hash, timestamp, sig.line()))
    return found
