"""Field validators, their JSON-schema fragments and signing-policy helpers shared by the
domain kinds.

Every validator takes the body, the field name and ``where`` (the kind, for the
message), returns the value, and raises :class:`InvalidEntry` saying what was
expected and what was found.  They are pure.

Each ``*_SCHEMA`` fragment (and :func:`text_schema`) stands next to the validator that
enforces it and MUST say no more than that validator enforces: a published schema
never refuses what a check accepts, nor promises what it does not check.  Where a
pattern is shared, the fragment uses the validator's own regular expression.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

from ledger.canonical import MAX_SAFE_INTEGER
from ledger.entry import Entry, parse_time
from ledger.errors import InvalidEntry, RuleViolation
from ledger.rules import KeyRecord, RuleState, signer_roles

#: Identifiers chosen by authors (fund source ids, project ids, lot codes are separate).
_IDENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$")
#: 一户一码: pseudonymous household codes, upper-case ASCII letters, digits and hyphens.
_HOUSEHOLD_RE = re.compile(r"^[A-Z0-9][A-Z0-9-]{3,31}$")
# ASCII digits: date.fromisoformat refuses any other digits, so [0-9] is what date_field enforces.
_DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_PERIOD_RE = re.compile(r"^([0-9]{4})(?:-(0[1-9]|1[0-2])|-(Q[1-4])|-(H[12]))?$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_DIVISION_RE = re.compile(r"^[0-9]{6}([0-9]{3}([0-9]{3})?)?$")
_MEDIA_TYPE_RE = re.compile(r"^[a-z]+/[A-Za-z0-9.+-]{1,100}$")
MAX_EVIDENCE = 32
MAX_TEXT = 2_000
#: The largest amount in fen any field accepts: 2^53 - 1 fen (≈ 90 trillion yuan).
MAX_FEN = MAX_SAFE_INTEGER
#: A date in a body may be at most this far past the statement's creation (UTC) day:
#: China is UTC+8, so "today" there may be "tomorrow" in UTC terms.
DATE_SLACK = timedelta(days=1)
#: The parts of an administrative location, largest first.
LOCATION_PARTS = ("province", "city", "county", "township", "village", "division_code")
_LOCATION_KEYS = frozenset(LOCATION_PARTS)


# --- schema fragments ---------------------------------------------------------------------


def text_schema(max_length: int) -> dict[str, Any]:
    """What :func:`text` enforces: 1–``max_length`` characters, not all white space."""
    return {"type": "string", "minLength": 1, "maxLength": max_length, "pattern": "\\S"}


IDENT_SCHEMA: dict[str, Any] = {"type": "string", "pattern": _IDENT_RE.pattern}
HOUSEHOLD_SCHEMA: dict[str, Any] = {"type": "string", "pattern": _HOUSEHOLD_RE.pattern}
FEN_SCHEMA: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": MAX_FEN}
DATE_SCHEMA: dict[str, Any] = {"type": "string", "pattern": _DATE_RE.pattern, "format": "date"}
SHA256_SCHEMA: dict[str, Any] = {"type": "string", "pattern": _SHA256_RE.pattern}
BILINGUAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"zh": text_schema(200), "en": text_schema(200)},
    "required": ["zh"],
    "additionalProperties": False,
}
EVIDENCE_SCHEMA: dict[str, Any] = {
    "type": "array",
    "maxItems": MAX_EVIDENCE,
    "items": {
        "type": "object",
        "properties": {
            "sha256": SHA256_SCHEMA,
            "name": text_schema(200),
            "media_type": {"type": "string", "pattern": _MEDIA_TYPE_RE.pattern},
            "size": {"type": "integer", "minimum": 0, "maximum": MAX_FEN},
        },
        "required": ["sha256", "name", "media_type", "size"],
        "additionalProperties": False,
    },
}
LOCATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        **{part: text_schema(100) for part in LOCATION_PARTS[:-1]},
        "division_code": {"type": "string", "pattern": _DIVISION_RE.pattern},
    },
    "required": ["province", "city", "county"],
    "additionalProperties": False,
}


# --- field validators ---------------------------------------------------------------------


def non_ascii(value: Any) -> str:
    """`` (character 2, 'А' U+0410 CYRILLIC CAPITAL LETTER A, is not ASCII)`` for the first
    non-ASCII character of an identifier, else ``""``: a look-alike letter of another
    script, a full-width form or an invisible character would otherwise be shown as if it
    were the ASCII one."""
    if not isinstance(value, str):
        return ""
    for position, char in enumerate(value, start=1):
        if not char.isascii():
            name = unicodedata.name(char, "")
            return (
                f" (character {position}, {char!r} U+{ord(char):04X}"
                f"{' ' + name if name else ''}, is not ASCII)"
            )
    return ""


def ident(body: Mapping[str, Any], name: str, where: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not _IDENT_RE.fullmatch(value):
        raise InvalidEntry(
            f"{where}: {name} must be an identifier of 1–64 ASCII letters, digits and . _ : / - "
            f"(starting with a letter or digit), got {value!r}{non_ascii(value)}"
        )
    return value


def household_code(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _HOUSEHOLD_RE.fullmatch(value):
        raise InvalidEntry(
            f"{where}: a household code is 4–32 upper-case ASCII letters, digits and hyphens "
            f"(e.g. GX-GN-000123), got {value!r}{non_ascii(value)}"
        )
    return value


def amount_fen(body: Mapping[str, Any], name: str, where: str, *, allow_zero: bool = False) -> int:
    """An amount of money in integer fen (1 yuan = 100 fen); floats and strings are refused."""
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEntry(
            f"{where}: {name} must be an integer number of fen (1 yuan = 100 fen), "
            f"got {type(value).__name__} {value!r}"
        )
    low = 0 if allow_zero else 1
    if not low <= value <= MAX_FEN:
        raise InvalidEntry(f"{where}: {name} must be between {low} and {MAX_FEN} fen, got {value}")
    return value


def yuan_text(fen: int) -> str:
    """``123456`` fen → ``"1,234.56"`` (yuan): exact, integer arithmetic only.  The one
    fen-to-yuan formatting every page, poster and export uses."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(int(fen)), 100)
    return f"{sign}{whole:,}.{cents:02d}"


def count_field(body: Mapping[str, Any], name: str, where: str, *, low: int = 1) -> int:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_FEN:
        raise InvalidEntry(f"{where}: {name} must be an integer of at least {low}, got {value!r}")
    return value


def date_field(body: Mapping[str, Any], name: str, where: str) -> str:
    """A calendar date, ``YYYY-MM-DD``."""
    value = body.get(name)
    if isinstance(value, str) and _DATE_RE.fullmatch(value):
        try:
            date.fromisoformat(value)
            return value
        except ValueError:
            pass
    raise InvalidEntry(f"{where}: {name} must be a date YYYY-MM-DD, got {value!r}")


def period_field(body: Mapping[str, Any], name: str, where: str) -> str:
    """A payment period: a year ``2019``, month ``2019-07``, quarter ``2019-Q3`` or half ``2019-H2``."""
    value = body.get(name)
    if isinstance(value, str):
        m = _PERIOD_RE.fullmatch(value)
        if m and 1900 <= int(m.group(1)) <= 2200:
            return value
    raise InvalidEntry(
        f"{where}: {name} must be a period like 2019, 2019-07, 2019-Q3 or 2019-H2, got {value!r}"
    )


def text(body: Mapping[str, Any], name: str, where: str, max_length: int = 200) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        raise InvalidEntry(
            f"{where}: {name} must be non-empty text of at most {max_length} characters, got {value!r}"
        )
    return value


def bilingual(body: Mapping[str, Any], name: str, where: str) -> dict[str, str]:
    """``{"zh": …, "en": …}``: Chinese required, English optional."""
    value = body.get(name)
    if not isinstance(value, dict) or "zh" not in value or set(value) - {"zh", "en"}:
        raise InvalidEntry(
            f"{where}: {name} must be an object {{'zh': …, 'en': …}} (zh required), got {value!r}"
        )
    for lang in value:
        text(value, lang, f"{where}: {name}")
    return dict(value)


def sha256_hex(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _SHA256_RE.fullmatch(value):
        raise InvalidEntry(
            f"{where}: expected a SHA-256 as 64 lower-case hex digits, got {value!r}"
        )
    return value


def evidence(body: Mapping[str, Any], name: str, where: str) -> list[dict[str, Any]]:
    """Evidence documents: ``[{"sha256", "name", "media_type", "size"}]`` — the file lives in
    the blob store under its hash; only the hash and description go on the ledger."""
    value = body.get(name, [])
    if not isinstance(value, list) or len(value) > MAX_EVIDENCE:
        raise InvalidEntry(f"{where}: {name} must be a list of at most {MAX_EVIDENCE} documents")
    out = []
    for index, doc in enumerate(value):
        at = f"{where}: {name}[{index}]"
        if not isinstance(doc, dict) or set(doc) != {"sha256", "name", "media_type", "size"}:
            raise InvalidEntry(f"{at} must be an object with sha256, name, media_type and size")
        sha256_hex(doc["sha256"], at)
        text(doc, "name", at)
        if not isinstance(doc["media_type"], str) or not _MEDIA_TYPE_RE.fullmatch(
            doc["media_type"]
        ):
            raise InvalidEntry(f"{at}: media_type must look like application/pdf")
        count_field(doc, "size", at, low=0)
        out.append(dict(doc))
    return out


def location(body: Mapping[str, Any], name: str, where: str) -> dict[str, str]:
    """An administrative location: province, city, county required; township, village and the
    administrative division code (6, 9 or 12 digits) optional."""
    value = body.get(name)
    if not isinstance(value, dict) or not value.keys() <= _LOCATION_KEYS:
        raise InvalidEntry(
            f"{where}: {name} must be an object with keys from {sorted(_LOCATION_KEYS)}"
        )
    at = f"{where}: {name}"
    for part in ("province", "city", "county"):
        text(value, part, at, 100)
    for part in ("township", "village"):
        if part in value:
            text(value, part, at, 100)
    code = value.get("division_code")
    if code is not None and (not isinstance(code, str) or not _DIVISION_RE.fullmatch(code)):
        raise InvalidEntry(f"{where}: {name}.division_code must be 6, 9 or 12 digits, got {code!r}")
    return dict(value)


def location_columns(loc: Mapping[str, str]) -> dict[str, str | None]:
    """A validated location as the projection columns province … division_code."""
    return {part: loc.get(part) for part in LOCATION_PARTS}


def location_of(row: Mapping[str, Any]) -> dict[str, str]:
    """The location object of a projection row (absent parts left out)."""
    return {p: row[p] for p in LOCATION_PARTS if row[p] is not None}


def only_fields(
    body: Mapping[str, Any], where: str, required: Iterable[str], optional_: Iterable[str] = ()
) -> None:
    """Refuse missing required fields and any field not listed."""
    required, allowed = _field_sets(tuple(required), tuple(optional_))
    keys = body.keys()
    if required <= keys and keys <= allowed:
        return
    missing = sorted(required - set(keys))
    extra = sorted(set(keys) - allowed)
    raise InvalidEntry(f"{where}: body fields missing {missing}, unexpected {extra}")


@lru_cache(maxsize=256)
def _field_sets(
    required: tuple[str, ...], optional_: tuple[str, ...]
) -> tuple[frozenset[str], frozenset[str]]:
    return frozenset(required), frozenset(required) | frozenset(optional_)


@lru_cache(maxsize=64)
def latest_date(created: str) -> date:
    """The latest date a body may state in a statement created at ``created``: its UTC day
    plus :data:`DATE_SLACK`."""
    return parse_time(created).date() + DATE_SLACK


def not_after_created(entry: Entry, value: str, name: str, where: str | None = None) -> None:
    """Refuse a body date (already validated) later than :func:`latest_date` of the statement."""
    latest = latest_date(entry.statement.created)
    if date.fromisoformat(value) > latest:
        raise RuleViolation(
            f"{where or entry.kind}: {name} {value} is in the future (the statement was created "
            f"{entry.statement.created}; latest allowed date {latest.isoformat()})"
        )


# --- signing policies -----------------------------------------------------------------------


def signers_with_roles(entry: Entry, state: RuleState) -> dict[str, list[KeyRecord]]:
    """The entry's registered signing keys grouped by role, each key once, in signature order
    (as :func:`ledger.rules.signer_roles` lists them)."""
    out: dict[str, list[KeyRecord]] = {}
    keys = state.keys
    seen: set[str] = set()
    for key_id in entry.signed.key_ids():
        record = keys.get(key_id)
        if record is not None and key_id not in seen:
            seen.add(key_id)
            out.setdefault(record.role, []).append(record)
    return out


def _assign(
    by_role: Mapping[str, list[KeyRecord]], roles: Iterable[str]
) -> tuple[list[KeyRecord], list[str]]:
    """For each role in ``roles`` (repeats mean "that many") the next unused key holding it:
    (the keys used, the roles left without one).  A key holds one role, so "unused" is a
    per-role position."""
    used: list[KeyRecord] = []
    missing: list[str] = []
    taken: dict[str, int] = {}
    for role in roles:
        index = taken.get(role, 0)
        holders = by_role.get(role)
        if holders is not None and index < len(holders):
            used.append(holders[index])
            taken[role] = index + 1
        else:
            missing.append(role)
    return used, missing


def _signed_by(entry: Entry, state: RuleState) -> str:
    return ", ".join(sorted(f"{k.name} ({k.role})" for k in signer_roles(entry, state).values()))


def require_roles(entry: Entry, state: RuleState, roles: Iterable[str]) -> list[KeyRecord]:
    """Raise unless, for every role in ``roles`` (repeats mean "that many"), a distinct signing
    key holds it; return the keys used.  E.g. 双认定: ``["village_approver", "township_approver"]``."""
    used, missing = _assign(signers_with_roles(entry, state), roles)
    if missing:
        raise RuleViolation(
            f"{entry.kind} needs signatures by distinct registered keys with roles "
            f"{', '.join(missing)} (signed by: {_signed_by(entry, state) or 'nobody'})"
        )
    return used


def require_one_of(
    entry: Entry, state: RuleState, policy: Sequence[Sequence[str]], what: str = ""
) -> None:
    """Raise unless the signers satisfy one alternative of ``policy``: a list of alternatives,
    each a list of roles that distinct signing keys must hold (e.g. households' TRANSITIONS)."""
    by_role = signers_with_roles(entry, state)
    for roles in policy:
        if not _assign(by_role, roles)[1]:
            return
    wanted = " or ".join(" + ".join(roles) for roles in policy)
    raise RuleViolation(
        f"{entry.kind}{what} must be signed by {wanted} (distinct keys); "
        f"signed by: {_signed_by(entry, state) or 'nobody'}"
    )
