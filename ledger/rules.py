"""The rules every entry must pass, at append time and again in ``suyuan verify``.

Two layers, both pure (no storage, no clock):

* **Signers.**  Seq 0 is the *genesis*: a ``key.registered`` entry for an
  ``admin`` key, signed by that key alone.  Every later entry's signatures MUST
  be by keys registered at an earlier seq and not revoked at an earlier seq;
  each signature MUST verify over the statement (see ``ledger.entry``).
* **Kinds.**  Every kind has a :class:`KindSpec`: ``check`` validates the body
  and the kind's signing policy against the state; ``apply`` updates the state.
  The core defines ``key.registered``, ``key.revoked`` and ``note``; the domain
  modules register theirs with :func:`register_kind`.  Unknown kinds are refused.

The state is a :class:`RuleState`.  Appending checks and applies entries on a
:meth:`RuleState.fork` and adopts it only when the whole batch passed, so a
refused batch leaves the state exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ledger.entry import MAX_CLOCK_SKEW_SECONDS, Entry, parse_time, verify_signatures
from ledger.errors import InvalidEntry, InvalidInput, RuleViolation
from ledger.note import Verifier, parse_vkey
from ledger.projection import Projection

#: Roles a key may hold.  ``admin`` manages the key registry.
ROLES = frozenset(
    {
        "admin",
        "producer",
        "inspector",
        "logistics",
        "retailer",
        "village_approver",
        "township_approver",
        "county_approver",
        "finance_officer",
        "auditor",
        "contractor",
    }
)
MAX_NOTE_LENGTH = 10_000
MAX_LABEL_LENGTH = 200


@dataclass(frozen=True)
class KeyRecord:
    """A registered author key, as the registry entries made it."""

    key_id: str
    name: str
    vkey: str
    role: str
    org: str
    registered_seq: int
    revoked_seq: int | None = None

    def active_at(self, seq: int) -> bool:
        """True if an entry at ``seq`` may carry this key's signature."""
        return self.registered_seq < seq and (self.revoked_seq is None or seq <= self.revoked_seq)


@dataclass
class RuleState:
    """Everything the rules need to know about the log so far.

    ``keys`` maps key id → record.  Domain modules keep their state in
    projection tables read and written through ``rows`` (see
    ``ledger.projection``); ``extra`` is for small in-memory state, which they
    MUST copy on write (:meth:`fork` copies only the dict), never mutating a
    parent's objects.
    """

    origin: str
    size: int = 0
    keys: dict[str, KeyRecord] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    rows: Projection = field(default_factory=Projection)
    _verifiers: dict[str, Verifier] = field(default_factory=dict, repr=False)

    def fork(self) -> RuleState:
        """A copy to try a batch on; the original is untouched until the caller adopts the copy."""
        return RuleState(
            origin=self.origin,
            size=self.size,
            keys=dict(self.keys),
            extra=dict(self.extra),
            rows=self.rows.fork(),
            _verifiers=self._verifiers,  # parsed vkeys are immutable: sharing is safe
        )

    def verifier(self, key_id: str) -> Verifier:
        record = self.keys[key_id]
        verifier = self._verifiers.get(key_id)
        if verifier is None or verifier.vkey != record.vkey:
            verifier = parse_vkey(record.vkey)
            self._verifiers[key_id] = verifier
        return verifier

    def active_admins(self, seq: int) -> list[KeyRecord]:
        return [k for k in self.keys.values() if k.role == "admin" and k.active_at(seq)]


Check = Callable[[Entry, RuleState], None]
Apply = Callable[[Entry, RuleState], None]


@dataclass(frozen=True)
class KindSpec:
    """One entry kind.  ``schema`` is the body's JSON Schema (draft 2020-12) as published in
    docs/DOMAIN.md and used by the importer to type spreadsheet cells; ``signers`` says in
    words who must sign.  ``check`` is the authority: it enforces everything the schema says
    and the rules a schema cannot express."""

    kind: str
    summary: str
    check: Check
    apply: Apply
    schema: Mapping[str, Any] | None = field(default=None, compare=False)
    signers: str = ""


KINDS: dict[str, KindSpec] = {}


def register_kind(spec: KindSpec) -> None:
    """Add a kind; a second registration of the same name MUST be the same spec."""
    existing = KINDS.get(spec.kind)
    if existing is not None and existing != spec:
        raise RuntimeError(f"kind {spec.kind} registered twice")
    KINDS[spec.kind] = spec


def check_entry(entry: Entry, state: RuleState, *, signatures_checked: bool = False) -> None:
    """Raise unless ``entry`` may follow the log described by ``state``.

    ``signatures_checked`` lets ``suyuan verify`` skip the Ed25519 checks that
    its worker processes already did against the same verifier keys.
    """
    seq = entry.seq
    statement = entry.statement
    if statement.origin != state.origin:
        raise RuleViolation(
            f"statement is for log {statement.origin!r}, this log is {state.origin!r}"
        )
    created = parse_time(statement.created)
    logged = parse_time(entry.time, log_format=True)
    if (created - logged).total_seconds() > MAX_CLOCK_SKEW_SECONDS:
        raise RuleViolation(
            f"statement created {statement.created}, later than the log time {entry.time} "
            f"by more than {MAX_CLOCK_SKEW_SECONDS} s"
        )
    spec = KINDS.get(entry.kind)
    if spec is None:
        raise InvalidEntry(f"unknown kind {entry.kind!r}; known kinds: {', '.join(sorted(KINDS))}")
    if seq == 0:
        _check_genesis(entry)
    else:
        verifiers: dict[str, Verifier] = {}
        for key_id in entry.signed.key_ids():
            record = state.keys.get(key_id)
            if record is None or record.registered_seq >= seq:
                raise RuleViolation(f"signed by unknown key {key_id}")
            if not record.active_at(seq):
                raise RuleViolation(f"signed by key {key_id}, revoked at seq {record.revoked_seq}")
            verifiers[key_id] = state.verifier(key_id)
        if not signatures_checked:
            verify_signatures(entry.signed, verifiers)
    try:
        spec.check(entry, state)
    except RuleViolation as exc:
        exc.signed_attempt = seq > 0  # every signer is registered, active and verified
        raise


def apply_entry(entry: Entry, state: RuleState) -> None:
    """Update ``state`` with an entry that passed :func:`check_entry`."""
    KINDS[entry.kind].apply(entry, state)
    state.size = entry.seq + 1


def signer_roles(entry: Entry, state: RuleState) -> dict[str, KeyRecord]:
    """The records of the keys that signed ``entry``, by key id."""
    return {k: state.keys[k] for k in entry.signed.key_ids() if k in state.keys}


def require_role(entry: Entry, state: RuleState, *roles: str) -> KeyRecord:
    """Raise unless some signer holds one of ``roles``; return that signer."""
    for record in signer_roles(entry, state).values():
        if record.role in roles:
            return record
    raise RuleViolation(f"{entry.kind} must be signed by a key with role {' or '.join(roles)}")


# --- helpers for body validation, shared with the domain modules ------------------


def body_fields(
    entry: Entry,
    required: Mapping[str, type | tuple[type, ...]],
    optional: Mapping[str, type | tuple[type, ...]] = {},
) -> dict[str, Any]:
    """Check the body has exactly these fields with these JSON types; return it as a dict."""
    body = dict(entry.body)
    where = entry.kind
    missing = [k for k in required if k not in body]
    extra = [k for k in body if k not in required and k not in optional]
    if missing or extra:
        raise InvalidEntry(f"{where}: body fields missing {missing}, unexpected {extra}")
    for name, kinds in {**required, **optional}.items():
        if name not in body:
            continue
        value = body[name]
        wanted = kinds if isinstance(kinds, tuple) else (kinds,)
        if isinstance(value, bool) and bool not in wanted:
            raise InvalidEntry(f"{where}: {name} must be {_type_names(wanted)}, got a boolean")
        if not isinstance(value, wanted):
            raise InvalidEntry(
                f"{where}: {name} must be {_type_names(wanted)}, got {type(value).__name__}"
            )
    return body


def _type_names(types: tuple[type, ...]) -> str:
    names = {
        str: "a string",
        int: "an integer",
        bool: "a boolean",
        dict: "an object",
        list: "a list",
    }
    return " or ".join(names.get(t, t.__name__) for t in types)


def text_field(
    body: Mapping[str, Any], name: str, where: str, max_length: int = MAX_LABEL_LENGTH
) -> str:
    value = body[name]
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        raise InvalidEntry(
            f"{where}: {name} must be non-empty text of at most {max_length} characters"
        )
    return value


# --- core kinds ----------------------------------------------------------------------


def _check_genesis(entry: Entry) -> None:
    if entry.kind != "key.registered":
        raise RuleViolation("seq 0 must be the genesis key.registered entry of an admin key")
    body = entry.body
    if body.get("role") != "admin":
        raise RuleViolation("the genesis key (seq 0) must have role admin")
    key_ids = entry.signed.key_ids()
    verifier = _parse_registered_vkey(entry)
    if key_ids != (verifier.key_id,):
        raise RuleViolation(
            "the genesis entry must be signed by the key it registers, and only by it"
        )
    verify_signatures(entry.signed, {verifier.key_id: verifier})


def _parse_registered_vkey(entry: Entry) -> Verifier:
    body = body_fields(entry, {"name": str, "vkey": str, "role": str, "org": str})
    try:
        verifier = parse_vkey(body["vkey"])
    except InvalidInput as exc:
        raise InvalidEntry(f"key.registered: vkey: {exc}") from None
    if verifier.name != body["name"]:
        raise InvalidEntry(
            f"key.registered: name {body['name']!r} differs from the vkey's name {verifier.name!r}"
        )
    if body["role"] not in ROLES:
        raise InvalidEntry(f"key.registered: role {body['role']!r} is not one of {sorted(ROLES)}")
    text_field(body, "org", "key.registered")
    return verifier


def _check_key_registered(entry: Entry, state: RuleState) -> None:
    verifier = _parse_registered_vkey(entry)
    if entry.seq > 0:
        require_role(entry, state, "admin")
    if verifier.key_id in state.keys:
        raise RuleViolation(
            f"key {verifier.key_id} is already registered (seq {state.keys[verifier.key_id].registered_seq}); "
            "a key id is registered once, and a revoked key never returns"
        )


def _apply_key_registered(entry: Entry, state: RuleState) -> None:
    body = entry.body
    verifier = parse_vkey(body["vkey"])
    state.keys[verifier.key_id] = KeyRecord(
        key_id=verifier.key_id,
        name=verifier.name,
        vkey=verifier.vkey,
        role=body["role"],
        org=body["org"],
        registered_seq=entry.seq,
    )


def _check_key_revoked(entry: Entry, state: RuleState) -> None:
    body = body_fields(entry, {"key": str, "reason": str})
    text_field(body, "reason", "key.revoked", MAX_NOTE_LENGTH)
    require_role(entry, state, "admin")
    record = state.keys.get(body["key"])
    if record is None:
        raise RuleViolation(f"key.revoked: key {body['key']} is not registered")
    if record.revoked_seq is not None:
        raise RuleViolation(
            f"key.revoked: key {body['key']} was already revoked at seq {record.revoked_seq}"
        )
    if record.role == "admin" and [a.key_id for a in state.active_admins(entry.seq + 1)] == [
        record.key_id
    ]:
        raise RuleViolation("key.revoked: refusing to revoke the last active admin key")


def _apply_key_revoked(entry: Entry, state: RuleState) -> None:
    key_id = entry.body["key"]
    state.keys[key_id] = replace(state.keys[key_id], revoked_seq=entry.seq)


def _check_note(entry: Entry, state: RuleState) -> None:
    body = body_fields(entry, {"text": str}, {"ref": int})
    text_field(body, "text", "note", MAX_NOTE_LENGTH)
    ref = body.get("ref")
    if ref is not None and not 0 <= ref < entry.seq:
        raise InvalidEntry(
            f"note: ref {ref} must be the seq of an earlier entry (0..{entry.seq - 1})"
        )


def _apply_nothing(entry: Entry, state: RuleState) -> None:
    return None


_LABEL: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": MAX_LABEL_LENGTH}

register_kind(
    KindSpec(
        "key.registered",
        "register an author key with its role and organisation",
        _check_key_registered,
        _apply_key_registered,
        schema={
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "vkey": {"type": "string", "description": "C2SP signed-note verifier key"},
                "role": {"type": "string", "enum": sorted(ROLES)},
                "org": _LABEL,
            },
            "required": ["name", "vkey", "role", "org"],
            "additionalProperties": False,
        },
        signers="an active admin key (seq 0: the key it registers, alone)",
    )
)
register_kind(
    KindSpec(
        "key.revoked",
        "revoke an author key; later entries may not carry its signature",
        _check_key_revoked,
        _apply_key_revoked,
        schema={
            "type": "object",
            "properties": {
                "key": {"type": "string", "description": "the key id, name+hex8"},
                "reason": {"type": "string", "minLength": 1, "maxLength": MAX_NOTE_LENGTH},
            },
            "required": ["key", "reason"],
            "additionalProperties": False,
        },
        signers="an active admin key",
    )
)
register_kind(
    KindSpec(
        "note",
        "a free annotation: remarks, auditors' findings, problem-list items",
        _check_note,
        _apply_nothing,
        schema={
            "type": "object",
            "properties": {
                "text": {"type": "string", "minLength": 1, "maxLength": MAX_NOTE_LENGTH},
                "ref": {"type": "integer", "minimum": 0, "description": "seq commented on"},
            },
            "required": ["text"],
            "additionalProperties": False,
        },
        signers="any active registered key",
    )
)
