"""Statements, signatures and entries: the bytes that become leaves of the log.

An author (a cooperative, an official, a bureau) signs a *statement*::

    {"kind": "note", "body": {...}, "origin": "<log origin>", "created": "<RFC 3339 UTC>"}

The signed message is ``STATEMENT_CONTEXT || RFC8785(statement)``; the context
string keeps a statement signature from ever being mistaken for a signed note or
any other message.  Several authors may sign one statement (multi-party
approval); signatures are listed sorted by key id, one per key.

The log turns a signed statement into an *entry* and its leaf::

    {"v": 1, "seq": n, "prev": "<hex leaf hash of n-1, or empty>",
     "time": "<log time>", "statement": {...}, "signatures": [{"key": …, "sig": …}]}

The leaf is the RFC 8785 encoding of the entry, at most :data:`MAX_LEAF_SIZE`
bytes.  Everything here is pure: no clock, no storage.  docs/FORMAT.md is the
normative description; this module MUST stay in step with it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from ledger import canonical
from ledger.errors import InvalidEntry, InvalidInput, VerificationError
from ledger.merkle import leaf_hash
from ledger.note import Signer, Verifier

FORMAT_VERSION = 1
#: A leaf must fit a tlog-tiles entry bundle's uint16 length prefix.
MAX_LEAF_SIZE = 65_535
STATEMENT_CONTEXT = b"suyuan/statement/v1\n"
#: How far an author's ``created`` may run ahead of the log's clock.
MAX_CLOCK_SKEW_SECONDS = 300
MAX_SIGNATURES = 16

_KIND_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
_CREATED_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z$")
_LOG_TIME_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$")
_KEY_ID_RE = re.compile(r"^[^+\s]+\+[0-9a-f]{8}$")
_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
_STATEMENT_FIELDS = frozenset({"kind", "body", "origin", "created"})
_ENTRY_FIELDS = frozenset({"v", "seq", "prev", "time", "statement", "signatures"})


def format_time(moment: datetime) -> str:
    """The log's time format: RFC 3339 UTC with exactly six fractional digits and ``Z``.

    Fixed width, so string order equals time order.
    """
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str, *, log_format: bool = False) -> datetime:
    """Parse an RFC 3339 UTC time (``...Z``); ``log_format`` demands the log's fixed form."""
    pattern = _LOG_TIME_RE if log_format else _CREATED_RE
    if not isinstance(text, str) or not pattern.fullmatch(text):
        want = "YYYY-MM-DDTHH:MM:SS.ffffffZ" if log_format else "YYYY-MM-DDTHH:MM:SS[.f]Z (UTC)"
        raise InvalidEntry(f"time {text!r} is not of the form {want}")
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise InvalidEntry(f"time {text!r} is not a real date and time") from None


@dataclass(frozen=True)
class Statement:
    """What authors sign.  Construct with :func:`make_statement` or :func:`statement_from_json`."""

    kind: str
    body: Mapping[str, Any]
    origin: str
    created: str

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "body": self.body,
            "origin": self.origin,
            "created": self.created,
        }

    @cached_property
    def canonical_bytes(self) -> bytes:
        """RFC 8785 encoding of :meth:`to_json` (computed once; the statement is immutable)."""
        return canonical.dumps(self.to_json())

    def canonical(self) -> bytes:
        return self.canonical_bytes

    def signed_message(self) -> bytes:
        """The exact bytes every author signature covers."""
        return STATEMENT_CONTEXT + self.canonical()

    def digest(self) -> bytes:
        """SHA-256 of the canonical statement: the replay-protection key."""
        return hashlib.sha256(self.canonical()).digest()


@dataclass(frozen=True)
class SignatureRecord:
    key_id: str  # C2SP key id: "name+hex8"
    sig: bytes  # 64-byte Ed25519 signature

    def to_json(self) -> dict[str, str]:
        return {"key": self.key_id, "sig": base64.b64encode(self.sig).decode("ascii")}


@dataclass(frozen=True)
class SignedStatement:
    statement: Statement
    signatures: tuple[SignatureRecord, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "statement": self.statement.to_json(),
            "signatures": [s.to_json() for s in self.signatures],
        }

    def key_ids(self) -> tuple[str, ...]:
        return tuple(s.key_id for s in self.signatures)


@dataclass(frozen=True)
class Entry:
    """One leaf of the log, decoded.  ``leaf`` holds the exact canonical bytes."""

    seq: int
    prev: bytes  # leaf hash of seq-1; b"" for seq 0
    time: str
    signed: SignedStatement
    leaf: bytes

    @property
    def statement(self) -> Statement:
        return self.signed.statement

    @property
    def kind(self) -> str:
        return self.signed.statement.kind

    @property
    def body(self) -> Mapping[str, Any]:
        return self.signed.statement.body

    def leaf_hash(self) -> bytes:
        return leaf_hash(self.leaf)


def nfc(value: Any) -> Any:
    """Return ``value`` with every string (keys included) normalised to NFC."""
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, Mapping):
        return {nfc(k): nfc(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [nfc(v) for v in value]
    return value


def make_statement(kind: str, body: Mapping[str, Any], origin: str, created: str) -> Statement:
    """Build and validate a statement (see :func:`statement_from_json` for the rules)."""
    return statement_from_json({"kind": kind, "body": body, "origin": origin, "created": created})


def statement_from_json(value: Any) -> Statement:
    """Validate the JSON form of a statement.

    Rules: exactly the fields kind, body, origin, created; kind is dotted
    lower-case; body is an object; origin a non-empty string; created an RFC 3339
    UTC time; all text NFC; the canonical encoding must succeed (so no floats
    beyond what the kind allows — kinds refuse floats in their own rules).
    """
    if not isinstance(value, Mapping):
        raise InvalidEntry(f"statement must be a JSON object, got {type(value).__name__}")
    fields = set(value)
    if fields != _STATEMENT_FIELDS:
        missing = sorted(_STATEMENT_FIELDS - fields)
        extra = sorted(fields - _STATEMENT_FIELDS)
        raise InvalidEntry(f"statement fields: missing {missing}, unexpected {extra}")
    kind, body, origin, created = value["kind"], value["body"], value["origin"], value["created"]
    if not isinstance(kind, str) or not _KIND_RE.fullmatch(kind) or len(kind) > 64:
        raise InvalidEntry(f"kind {kind!r} is not a dotted lower-case name like 'batch.registered'")
    if not isinstance(body, Mapping):
        raise InvalidEntry(f"{kind}: body must be a JSON object, got {type(body).__name__}")
    if not isinstance(origin, str) or not origin or len(origin) > 256:
        raise InvalidEntry(f"statement origin must be a non-empty string, got {origin!r}")
    parse_time(created)
    statement = Statement(kind=kind, body=body, origin=origin, created=created)
    try:
        # One walk validates everything: encodable, no floats, I-JSON integers, NFC text.
        statement.__dict__["canonical_bytes"] = canonical.dumps(statement.to_json(), strict=True)
    except InvalidInput as exc:
        raise InvalidEntry(f"statement: {exc}") from None
    return statement


def sign_statement(statement: Statement, signers: Iterable[Signer]) -> SignedStatement:
    """Sign ``statement`` with every signer; signatures are sorted by key id."""
    message = statement.signed_message()
    records = {
        s.verifier.key_id: SignatureRecord(s.verifier.key_id, s.sign(message)) for s in signers
    }
    return add_signatures(SignedStatement(statement, ()), records.values())


def add_signatures(signed: SignedStatement, extra: Iterable[SignatureRecord]) -> SignedStatement:
    """Merge signatures (e.g. a township's on top of a village's), one per key, sorted."""
    merged = {s.key_id: s for s in signed.signatures}
    for record in extra:
        merged[record.key_id] = record
    ordered = tuple(merged[k] for k in sorted(merged))
    return SignedStatement(signed.statement, ordered)


def _signatures_from_json(value: Any) -> tuple[SignatureRecord, ...]:
    if not isinstance(value, list) or not value:
        raise InvalidEntry('signatures must be a non-empty list of {"key", "sig"} objects')
    if len(value) > MAX_SIGNATURES:
        raise InvalidEntry(f"at most {MAX_SIGNATURES} signatures, found {len(value)}")
    records: list[SignatureRecord] = []
    for index, item in enumerate(value):
        if not isinstance(item, Mapping) or set(item) != {"key", "sig"}:
            raise InvalidEntry(
                f"signatures[{index}] must be an object with exactly 'key' and 'sig'"
            )
        key_id, sig = item["key"], item["sig"]
        if not isinstance(key_id, str) or not _KEY_ID_RE.fullmatch(key_id):
            raise InvalidEntry(f"signatures[{index}].key {key_id!r} is not a key id 'name+hex8'")
        if not isinstance(sig, str):
            raise InvalidEntry(f"signatures[{index}].sig must be a base64 string")
        try:
            raw = base64.b64decode(sig, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidEntry(f"signatures[{index}].sig is not valid base64") from None
        if len(raw) != 64 or base64.b64encode(raw).decode("ascii") != sig:
            raise InvalidEntry(f"signatures[{index}].sig must be 64 bytes in canonical base64")
        records.append(SignatureRecord(key_id, raw))
    key_ids = [r.key_id for r in records]
    if key_ids != sorted(set(key_ids)):
        raise InvalidEntry("signatures must be sorted by key id with no key twice")
    return tuple(records)


def signed_statement_from_json(value: Any) -> SignedStatement:
    """Validate ``{"statement": {...}, "signatures": [...]}`` (signatures not yet checked)."""
    if not isinstance(value, Mapping) or set(value) != {"statement", "signatures"}:
        raise InvalidEntry(
            'a signed statement is an object with exactly "statement" and "signatures"'
        )
    return SignedStatement(
        statement_from_json(value["statement"]), _signatures_from_json(value["signatures"])
    )


def verify_signatures(signed: SignedStatement, verifiers: Mapping[str, Verifier]) -> None:
    """Check every signature against the verifier registered under its key id.

    Raises :class:`VerificationError` naming the key whose signature fails, or
    :class:`InvalidEntry` if a key id has no verifier (callers that know the
    registry raise a clearer rule violation first).
    """
    message = signed.statement.signed_message()
    for record in signed.signatures:
        verifier = verifiers.get(record.key_id)
        if verifier is None:
            raise InvalidEntry(f"signature by unknown key {record.key_id}")
        try:
            verifier.verify(message, record.sig)
        except VerificationError:
            raise VerificationError(f"signature by {record.key_id} does not verify") from None


def build_entry(seq: int, prev: bytes, time: str, signed: SignedStatement) -> Entry:
    """Sequence a signed statement: give it its seq, prev link and log time; encode the leaf."""
    # RFC 8785 of the entry object, assembled from parts that are already canonical:
    # the keys are written in their sorted order (prev < seq < signatures < statement
    # < time < v) and every scalar is ASCII with nothing to escape.  A test checks this
    # against canonical.dumps of the same object.
    signatures = ",".join(
        f'{{"key":{_json_string(s.key_id)},"sig":"{base64.b64encode(s.sig).decode("ascii")}"}}'
        for s in signed.signatures
    )
    leaf = b"".join(
        (
            b'{"prev":"',
            prev.hex().encode("ascii"),
            b'","seq":',
            str(seq).encode("ascii"),
            b',"signatures":[',
            signatures.encode("utf-8"),
            b'],"statement":',
            signed.statement.canonical_bytes,
            b',"time":"',
            time.encode("ascii"),
            b'","v":',
            str(FORMAT_VERSION).encode("ascii"),
            b"}",
        )
    )
    if len(leaf) > MAX_LEAF_SIZE:
        raise InvalidEntry(
            f"entry is {len(leaf)} bytes once encoded; the limit is {MAX_LEAF_SIZE} "
            "(put large documents in the blob store and record their hash)"
        )
    return Entry(seq=seq, prev=prev, time=time, signed=signed, leaf=leaf)


def _json_string(text: str) -> str:
    return canonical.dumps(text).decode("utf-8")


def decode_entry(leaf: bytes) -> Entry:
    """Parse a leaf, checking that it is exactly the canonical encoding of a valid entry.

    Raises :class:`InvalidInput`/:class:`InvalidEntry`; does not check signatures,
    chain links or registry rules (see ``ledger.verify``).
    """
    if len(leaf) > MAX_LEAF_SIZE:
        raise InvalidEntry(f"leaf is {len(leaf)} bytes; the limit is {MAX_LEAF_SIZE}")
    # Plain C-speed parsing is enough here: the leaf MUST equal the canonical re-encoding
    # of what it parses to (checked below), and that re-encoding refuses everything the
    # strict parser would (floats, NaN, big integers, lone surrogates), while duplicate
    # keys or any other non-canonical spelling make the bytes differ.
    try:
        value = json.loads(leaf)
    except (ValueError, RecursionError) as exc:
        raise InvalidEntry(f"leaf is invalid JSON: {exc}") from None
    if not isinstance(value, dict) or set(value) != _ENTRY_FIELDS:
        found = sorted(value) if isinstance(value, dict) else type(value).__name__
        raise InvalidEntry(
            f"entry must have exactly the fields {sorted(_ENTRY_FIELDS)}, found {found}"
        )
    if value["v"] != FORMAT_VERSION or isinstance(value["v"], bool):
        raise InvalidEntry(
            f"entry format version {value['v']!r} is not supported (expected {FORMAT_VERSION})"
        )
    seq = value["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise InvalidEntry(f"seq {str(seq)[:40]} is not a non-negative integer")
    if seq > canonical.MAX_SAFE_INTEGER:
        # RFC 8785 writes numbers as IEEE doubles: a larger integer has no canonical form
        # that reads back as itself, and the strict parser refuses it.
        raise InvalidEntry(f"seq {str(seq)[:40]} is outside the I-JSON range 0..2**53-1")
    prev_hex = value["prev"]
    if not isinstance(prev_hex, str) or not (prev_hex == "" or _HEX64_RE.fullmatch(prev_hex)):
        raise InvalidEntry(
            f"prev {prev_hex!r} is not 64 lower-case hex digits (or empty for seq 0)"
        )
    if (seq == 0) != (prev_hex == ""):
        raise InvalidEntry("prev must be empty exactly for seq 0")
    time = value["time"]
    parse_time(time, log_format=True)
    signed = SignedStatement(
        statement_from_json(value["statement"]), _signatures_from_json(value["signatures"])
    )
    # The statement's canonical bytes were computed while validating it; the rest of
    # the entry is rebuilt around them exactly as the log builds leaves.
    entry = build_entry(seq, bytes.fromhex(prev_hex), time, signed)
    if entry.leaf != leaf:
        raise InvalidEntry("leaf is not in RFC 8785 canonical form")
    return entry
