"""C2SP transparency-log checkpoints (https://c2sp.org/tlog-checkpoint).

A checkpoint is the signed tree head of Suyuan's RFC 9162 Merkle log: a signed
note (:mod:`ledger.note`) whose text is exactly::

    <origin>\\n
    <tree size in decimal>\\n
    <base64 of the 32-byte root hash>\\n
    [<extension line>\\n ...]

By Suyuan's convention (the C2SP "SHOULD"), the log key's name equals the
origin line.  Witness cosignatures (c2sp.org/tlog-cosignature) are extra
signature lines on the same note; :func:`verify_checkpoint` keeps them, unchecked,
in ``Note.unverified`` so a later witness policy can check them.

Pure core: no clock, no I/O.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from ledger.errors import InvalidInput, VerificationError
from ledger.note import Note, NoteSigner, NoteVerifier, _show, open_note, sign_note

__all__ = [
    "HASH_SIZE",
    "MAX_TREE_SIZE",
    "Checkpoint",
    "parse_checkpoint_text",
    "sign_checkpoint",
    "verify_checkpoint",
]

HASH_SIZE = 32
"""Size in bytes of an RFC 9162 (SHA-256) root hash."""

MAX_TREE_SIZE = (1 << 64) - 1
"""Largest tree size a checkpoint may state (RFC 9162 tree sizes are uint64)."""

_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")
_CONTROL = re.compile(r"[\x00-\x1f]")


def _check_line(value: object, what: str) -> str:
    """A non-empty line with no control characters (so no newline) and valid UTF-8."""
    if not isinstance(value, str):
        raise InvalidInput(f"expected {what} as str, found {type(value).__name__}")
    if not value:
        raise InvalidInput(f"expected a non-empty {what}, found ''")
    bad = _CONTROL.search(value)
    if bad is not None:
        raise InvalidInput(
            f"expected no control characters in {what}, found U+{ord(bad.group()):04X} "
            f"in {_show(value)}"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"expected {what} to be valid UTF-8, found a lone surrogate") from None
    return value


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head: origin, tree size, root hash and optional extension lines.

    Construction checks the fields (InvalidInput otherwise): ``origin`` MUST be
    a non-empty line without control characters and without leading or
    trailing whitespace; ``size`` an ``int`` (not ``bool``) in 0..2**64-1;
    ``root`` exactly 32 bytes; ``extensions`` a tuple of non-empty lines
    without control characters.  Extension lines are NOT RECOMMENDED by the
    spec; Suyuan does not write any.
    """

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "origin")
        if self.origin != self.origin.strip():
            raise InvalidInput(
                f"expected an origin without leading or trailing whitespace, "
                f"found {_show(self.origin)}"
            )
        if not isinstance(self.size, int) or isinstance(self.size, bool):
            raise InvalidInput(f"expected the tree size as int, found {type(self.size).__name__}")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise InvalidInput(f"expected a tree size in 0..2**64-1, found {self.size}")
        if not isinstance(self.root, bytes):
            raise InvalidInput(f"expected the root hash as bytes, found {type(self.root).__name__}")
        if len(self.root) != HASH_SIZE:
            raise InvalidInput(
                f"expected a {HASH_SIZE}-byte root hash, found {len(self.root)} bytes"
            )
        if not isinstance(self.extensions, tuple):
            raise InvalidInput(
                f"expected the extension lines as a tuple, found {type(self.extensions).__name__}"
            )
        for line in self.extensions:
            _check_line(line, "extension line")

    def text(self) -> str:
        """The note text: origin, size, base64 root and extension lines, each with a newline."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode("ascii")]
        lines.extend(self.extensions)
        return "".join(line + "\n" for line in lines)


def parse_checkpoint_text(text: str) -> Checkpoint:
    """Parse a checkpoint note text strictly.

    The text MUST be at least three lines, each ending in a newline, with
    nothing before the origin and nothing after the last newline: a non-empty
    origin; the size in ASCII decimal without sign or leading zeros (``0`` for
    the empty tree), at most 2**64-1; the canonical standard base64 of a
    32-byte root hash; then optional non-empty extension lines.  Raises
    InvalidInput with what was expected and what was found.

    This parses text only: a caller MUST NOT trust the result unless it came
    from a verified note (use :func:`verify_checkpoint`).
    """
    if not isinstance(text, str):
        raise InvalidInput(f"expected the checkpoint text as str, found {type(text).__name__}")
    if not text.endswith("\n"):
        raise InvalidInput(
            f"expected the checkpoint text to end with a newline, found {_show(text[-20:])}"
        )
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise InvalidInput(
            f"expected at least 3 checkpoint lines (origin, size, root hash), found {len(lines)}"
        )
    origin, size_line, root_line, *extensions = lines
    if not origin:
        raise InvalidInput("expected a non-empty origin on checkpoint line 1, found ''")
    if not _SIZE.fullmatch(size_line):
        raise InvalidInput(
            "expected the tree size on checkpoint line 2 in decimal without sign or leading "
            f"zeros, found {_show(size_line)}"
        )
    size = int(size_line)
    if size > MAX_TREE_SIZE:
        raise InvalidInput(f"expected a tree size of at most 2**64-1, found {size_line}")
    try:
        root = base64.b64decode(root_line, validate=True)
    except ValueError:
        raise InvalidInput(
            f"expected the base64 root hash on checkpoint line 3, found {_show(root_line)}"
        ) from None
    if len(root) != HASH_SIZE:
        raise InvalidInput(
            f"expected a {HASH_SIZE}-byte root hash on checkpoint line 3, found {len(root)} bytes"
        )
    if base64.b64encode(root).decode("ascii") != root_line:
        raise InvalidInput(
            f"expected canonical base64 for the root hash on checkpoint line 3, "
            f"found {_show(root_line)}"
        )
    for number, line in enumerate(extensions, start=4):
        if not line:
            raise InvalidInput(f"expected a non-empty extension line on checkpoint line {number}")
    return Checkpoint(origin, size, root, tuple(extensions))


def sign_checkpoint(cp: Checkpoint, signer: NoteSigner) -> str:
    """Sign ``cp`` as a note with the log key ``signer``; return the note.

    ``signer.name`` MUST equal ``cp.origin`` (the log key is named after the
    origin), else InvalidInput.  The caller MUST NOT sign a checkpoint that is
    inconsistent with one it signed before (tlog-checkpoint "Signatures").
    """
    if not isinstance(cp, Checkpoint):
        raise InvalidInput(f"expected a Checkpoint, found {type(cp).__name__}")
    if signer.name != cp.origin:
        raise InvalidInput(
            f"expected the log key name to equal the origin {_show(cp.origin)}, "
            f"found {_show(signer.name)}"
        )
    return sign_note(cp.text(), [signer])


def verify_checkpoint(
    note: str | bytes, verifier: NoteVerifier, origin: str | None = None
) -> tuple[Checkpoint, Note]:
    """Verify a checkpoint note signed by the log key ``verifier``; return it and the note.

    The note MUST carry a valid signature by ``verifier`` itself (signatures
    by any other key, e.g. witness cosignatures, are returned unchecked in
    ``Note.unverified``).  Its text MUST parse as a checkpoint whose origin
    equals ``verifier.name`` and, if given, ``origin``.

    Raises InvalidInput for a malformed note or checkpoint text and
    VerificationError for a missing or bad log signature or an origin mismatch.
    """
    opened = open_note(note, [verifier])
    cp = parse_checkpoint_text(opened.text)
    if cp.origin != verifier.name:
        raise VerificationError(
            f"checkpoint origin {_show(cp.origin)} does not match the log key name "
            f"{_show(verifier.name)}"
        )
    if origin is not None and cp.origin != origin:
        raise VerificationError(
            f"checkpoint origin {_show(cp.origin)} is not the expected origin {_show(origin)}"
        )
    return cp, opened
