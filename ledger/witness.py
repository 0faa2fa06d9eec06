"""The witness's add-checkpoint decision (C2SP tlog-witness), as pure functions.

A witness keeps, for every log it trusts, the latest checkpoint it cosigned
(tlog-witness "Introduction").  A log submits each new checkpoint with a
consistency proof from the size the witness holds; the witness checks it and
answers with its cosignature (:mod:`ledger.cosignature`) or refuses.

The request body (tlog-witness "add-checkpoint")::

    old <size>\\n
    <base64 consistency proof hash>\\n      (0 to 63 lines)
    \\n
    <checkpoint signed note>

The checks, in the order of the spec, and their HTTP status codes:

* malformed body (sizes, line format, base64, more than 63 proof lines, a
  proof with ``old 0``, a note that is not a signed checkpoint) → 400;
* the checkpoint origin is not a trusted log → 404;
* no signature by a trusted key of that log verifies → 403;
* ``old`` larger than the checkpoint size → 400;
* ``old`` differs from the size the witness holds (0 if none) → 409, the body
  being the witness's size and a newline, ``Content-Type: text/x.tlog.size``;
* the checkpoint has the witness's size but another root hash → 409 (a fork:
  two signed, different trees of one size);
* the consistency proof from ``old`` to the checkpoint size does not verify
  (RFC 9162 §2.1.4.2, :func:`ledger.merkle.verify_consistency`) → 422;
* otherwise: 200, and the witness MUST persist the new state before answering
  with its cosignature line.  A checkpoint equal to the one held (same size,
  same root) is cosigned again; only the time of the last cosignature moves.

Refusals of requests whose checkpoint verified under a trusted log key are
*evidence* (tlog-witness: the witness "MAY log the request even if the
consistency proof doesn't verify ... as it might be proof of log
misbehavior"): :attr:`Refused.evidence` says whether to keep one.  A stale
``old`` is not evidence — logs use ``old 0`` on purpose to learn the size.

:func:`check_submission` does everything that does not depend on the
witness's stored state (parsing, trust, signatures); :func:`decide` does the
rest given that state.  The store (:mod:`ledger.witness_store`) MUST run
:func:`decide` and the write of its result in one transaction that no other
submission for the same origin can interleave with, or two racing requests
could roll the state back (tlog-witness, the race of requests A and B).

Pure: no I/O; the clock is the cosigner's.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ledger.checkpoint import MAX_TREE_SIZE, Checkpoint, parse_checkpoint_text
from ledger.cosignature import CosignatureSigner, cosign_line
from ledger.errors import InvalidInput, VerificationError
from ledger.merkle import EMPTY_ROOT, HASH_SIZE, verify_consistency
from ledger.note import NoteVerifier, _show, open_note

__all__ = [
    "CONTENT_TYPE_SIZE",
    "MAX_PROOF_LINES",
    "MAX_REQUEST_BYTES",
    "Accepted",
    "AddCheckpointRequest",
    "LogState",
    "Refused",
    "Submission",
    "add_checkpoint",
    "check_submission",
    "decide",
    "format_add_checkpoint",
    "parse_add_checkpoint",
]

MAX_PROOF_LINES = 63
"""A client MUST NOT send more than 63 consistency proof lines (tlog-witness)."""

MAX_REQUEST_BYTES = 128 * 1024
"""Largest add-checkpoint body accepted: room for 63 proof lines and a checkpoint
with many signatures (even post-quantum ones); anything bigger is refused unread."""

CONTENT_TYPE_SIZE = "text/x.tlog.size"
"""Content-Type of a 409 response: the witness's tree size in decimal and a newline."""

_OLD = re.compile(r"old (0|[1-9][0-9]{0,19})")
_B64_HASH = re.compile(r"[A-Za-z0-9+/]{43}=")


@dataclass(frozen=True)
class AddCheckpointRequest:
    """A parsed add-checkpoint body: old size, proof hashes and the checkpoint note."""

    old_size: int
    proof: tuple[bytes, ...]
    note: str


@dataclass(frozen=True)
class LogState:
    """What the witness holds for one log: the latest checkpoint it cosigned.

    ``timestamp`` is the time of the newest cosignature the witness gave for
    the log (0 if unknown): later cosignatures never carry an earlier time,
    even if the clock steps back, so no two cosignatures of the witness read
    as "at time T the largest tree was X" and "at an earlier time, a larger one".
    """

    size: int
    root: bytes
    note: str
    timestamp: int = 0


@dataclass(frozen=True)
class Submission:
    """A request that passed every state-independent check.

    ``text`` is the verified checkpoint note text (what gets cosigned).
    """

    request: AddCheckpointRequest
    checkpoint: Checkpoint
    text: str

    @property
    def origin(self) -> str:
        return self.checkpoint.origin


@dataclass(frozen=True)
class Accepted:
    """Cosign: persist ``state`` (replacing ``previous``), then answer 200 with ``cosignature``."""

    origin: str
    checkpoint: Checkpoint
    previous: LogState | None
    state: LogState
    cosignature: str

    status = 200
    content_type = "text/plain; charset=utf-8"

    @property
    def body(self) -> str:
        return self.cosignature

    @property
    def advanced(self) -> bool:
        """True when the tree grew (False when the same checkpoint was cosigned again)."""
        return self.previous is None or self.previous.size != self.state.size


@dataclass(frozen=True)
class Refused:
    """Refuse with ``status``.  ``reason`` is a stable code, ``message`` says why in words.

    ``witness_size`` is set for 409 (the response body).  ``evidence`` is
    True when the refused checkpoint verified under a trusted log key and the
    refusal may show log misbehaviour (fork, rollback, bad proof, ...).
    """

    status: int
    reason: str
    message: str
    origin: str | None = None
    checkpoint: Checkpoint | None = None
    witness_size: int | None = None
    evidence: bool = False

    @property
    def content_type(self) -> str:
        if self.status == 409:
            return CONTENT_TYPE_SIZE
        return "text/plain; charset=utf-8"

    @property
    def body(self) -> str:
        if self.status == 409:
            return f"{self.witness_size}\n"
        return self.message + "\n"


Decision = Accepted | Refused


def parse_add_checkpoint(body: bytes) -> AddCheckpointRequest:
    """Parse an add-checkpoint request body strictly; raise InvalidInput if malformed.

    The body MUST be at most :data:`MAX_REQUEST_BYTES` of valid UTF-8: the line
    ``old N`` (decimal, no leading zeroes, at most 2**64-1), 0 to 63 lines each
    the canonical standard base64 of one 32-byte hash, an empty line, then a
    non-empty checkpoint note (parsed later, by :func:`check_submission`).
    Every line ends in a newline.  The proof MUST be empty when ``old`` is 0.
    """
    if not isinstance(body, bytes):
        raise InvalidInput(f"expected the request body as bytes, found {type(body).__name__}")
    if len(body) > MAX_REQUEST_BYTES:
        raise InvalidInput(
            f"expected a request body of at most {MAX_REQUEST_BYTES} bytes, found {len(body)}"
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"expected the request body as UTF-8, found an invalid byte at offset {exc.start}"
        ) from None
    head, blank, note = text.partition("\n\n")
    if not blank:
        raise InvalidInput("expected an empty line between the proof and the checkpoint")
    lines = head.split("\n")
    if not _OLD.fullmatch(lines[0]):
        raise InvalidInput(
            f"expected the first line 'old <size>' in decimal, found {_show(lines[0])}"
        )
    old = int(lines[0][4:])
    if old > MAX_TREE_SIZE:
        raise InvalidInput(f"expected an old size of at most 2**64-1, found {old}")
    proof_lines = lines[1:]
    if len(proof_lines) > MAX_PROOF_LINES:
        raise InvalidInput(
            f"expected at most {MAX_PROOF_LINES} consistency proof lines, found {len(proof_lines)}"
        )
    proof: list[bytes] = []
    for number, line in enumerate(proof_lines, start=2):
        if not _B64_HASH.fullmatch(line):
            raise InvalidInput(
                f"expected the base64 of a {HASH_SIZE}-byte hash on line {number}, "
                f"found {_show(line)}"
            )
        raw = base64.b64decode(line, validate=True)
        if base64.b64encode(raw).decode("ascii") != line:
            raise InvalidInput(f"expected canonical base64 on line {number}, found {_show(line)}")
        proof.append(raw)
    if old == 0 and proof:
        raise InvalidInput(
            f"expected no consistency proof with 'old 0', found {len(proof)} proof lines"
        )
    if not note:
        raise InvalidInput("expected a checkpoint after the empty line, found nothing")
    return AddCheckpointRequest(old, tuple(proof), note)


def format_add_checkpoint(old_size: int, proof: Sequence[bytes], note: str) -> bytes:
    """Build an add-checkpoint request body (the log side's half of the format)."""
    if isinstance(old_size, bool) or not isinstance(old_size, int):
        raise InvalidInput(f"expected the old size as int, found {type(old_size).__name__}")
    if not 0 <= old_size <= MAX_TREE_SIZE:
        raise InvalidInput(f"expected an old size in 0..2**64-1, found {old_size}")
    if len(proof) > MAX_PROOF_LINES:
        raise InvalidInput(f"expected at most {MAX_PROOF_LINES} proof hashes, found {len(proof)}")
    for i, item in enumerate(proof):
        if not isinstance(item, bytes) or len(item) != HASH_SIZE:
            raise InvalidInput(f"expected proof[{i}] as a {HASH_SIZE}-byte hash")
    if not isinstance(note, str) or not note:
        raise InvalidInput("expected the checkpoint note as a non-empty str")
    lines = [f"old {old_size}"] + [base64.b64encode(h).decode("ascii") for h in proof]
    return ("".join(line + "\n" for line in lines) + "\n" + note).encode("utf-8")


def check_submission(
    body: bytes, logs: Mapping[str, Sequence[NoteVerifier]]
) -> Submission | Refused:
    """Every check that does not need the witness's state: parse, trust, signatures.

    ``logs`` maps each trusted origin to the verifier keys the witness trusts
    for it.  Returns a :class:`Submission`, or a :class:`Refused` with status
    400 (malformed), 404 (unknown origin), 403 (no valid signature by a
    trusted key; a trusted key's signature that fails counts as none) or 400
    (``old`` beyond the checkpoint size; evidence, as the log signed it).
    """
    try:
        request = parse_add_checkpoint(body)
    except InvalidInput as exc:
        return Refused(400, "malformed", f"malformed request: {exc}")
    origin = request.note.partition("\n")[0]
    verifiers = logs.get(origin)
    if not verifiers:
        return Refused(404, "unknown-origin", f"unknown log origin {_show(origin)}", origin)
    try:
        opened = open_note(request.note, verifiers)
    except InvalidInput as exc:
        return Refused(400, "malformed", f"malformed checkpoint note: {exc}", origin)
    except VerificationError as exc:
        return Refused(
            403, "bad-signature", f"no valid signature by a trusted key of the log: {exc}", origin
        )
    try:
        checkpoint = parse_checkpoint_text(opened.text)
    except InvalidInput as exc:
        # Signed by the log, yet not a checkpoint: worth keeping.
        return Refused(400, "malformed", f"malformed checkpoint: {exc}", origin, evidence=True)
    if checkpoint.origin != origin:  # pragma: no cover - the origin is the text's first line
        return Refused(400, "malformed", "checkpoint origin changed while parsing", origin)
    if request.old_size > checkpoint.size:
        return Refused(
            400,
            "old-beyond-size",
            f"old size {request.old_size} is larger than the checkpoint size {checkpoint.size}",
            origin,
            checkpoint,
            evidence=True,
        )
    return Submission(request, checkpoint, opened.text)


def decide(submission: Submission, current: LogState | None, signer: CosignatureSigner) -> Decision:
    """Decide a checked submission against ``current``, the state held for its origin.

    ``current`` is None when the witness never cosigned for the origin (its size
    counts as 0).  On acceptance the cosignature is made here, with ``signer``'s
    clock; the caller MUST persist :attr:`Accepted.state` (in the same
    transaction that read ``current``) before returning the cosignature.
    """
    cp = submission.checkpoint
    request = submission.request
    origin = cp.origin
    held = current.size if current is not None else 0

    def refuse(status: int, reason: str, message: str, *, evidence: bool) -> Refused:
        size = held if status == 409 else None
        return Refused(status, reason, message, origin, cp, size, evidence)

    if current is not None and cp.size == current.size and cp.root != current.root:
        return refuse(
            409,
            "fork",
            f"checkpoint of size {cp.size} has root {cp.root.hex()}, but the witness cosigned "
            f"root {current.root.hex()} for that size",
            evidence=True,
        )
    if cp.size < held:
        return refuse(
            409,
            "rollback",
            f"checkpoint size {cp.size} is smaller than the witness's size {held}",
            evidence=True,
        )
    if request.old_size != held:
        return refuse(
            409,
            "stale-old",
            f"old size {request.old_size} does not match the witness's size {held}",
            evidence=False,
        )
    if cp.size == 0 and cp.root != EMPTY_ROOT:
        return refuse(
            422,
            "inconsistent",
            f"the empty tree's root is {EMPTY_ROOT.hex()}, the checkpoint says {cp.root.hex()}",
            evidence=True,
        )
    if current is not None and request.old_size > 0:
        try:
            verify_consistency(request.old_size, cp.size, request.proof, current.root, cp.root)
        except VerificationError as exc:
            return refuse(422, "inconsistent", f"consistency proof fails: {exc}", evidence=True)
    elif request.proof:  # pragma: no cover - parse_add_checkpoint refuses a proof with old 0
        return refuse(400, "malformed", "expected no proof with 'old 0'", evidence=False)
    # Cosignature times never go backwards for one log (see LogState).
    stamp = max(signer.now(), current.timestamp if current is not None else 0)
    if current is not None and current.size == cp.size:
        # The same checkpoint again: cosign it again; only the time moves.
        state = LogState(current.size, current.root, current.note, stamp)
    else:
        state = LogState(cp.size, cp.root, submission.request.note, stamp)
    line = cosign_line(signer, submission.text, stamp)
    return Accepted(origin, cp, current, state, line)


def add_checkpoint(
    body: bytes,
    logs: Mapping[str, Sequence[NoteVerifier]],
    current: Mapping[str, LogState],
    signer: CosignatureSigner,
) -> Decision:
    """:func:`check_submission` then :func:`decide`, for callers holding the state in memory."""
    checked = check_submission(body, logs)
    if isinstance(checked, Refused):
        return checked
    return decide(checked, current.get(checked.origin), signer)
