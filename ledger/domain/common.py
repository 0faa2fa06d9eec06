"""Field validators and signing-policy helpers shared by the domain kinds.

Every validator takes the body, the field name and ``where`` (the kind, for the
message), returns the value, and raises :class:`InvalidEntry` saying what was
expected and what was found.  They are pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from ledger.canonical import MAX_SAFE_INTEGER
from ledger.entry import Entry
from ledger.errors import InvalidEntry, RuleViolation
from ledger.rules import KeyRecord, RuleState, signer_roles

#: Identifiers chosen by authors (fund source ids, project ids, lot codes are separate).
_IDENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$")
#: 一户一码: pseudonymous household codes, upper-case ASCII letters, digits and hyphens.
_HOUSEHOLD_RE = re.compile(r"^[A-Z0-9][A-Z0-9-]{3,31}$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_PERIOD_RE = re.compile(r"^(\d{4})(?:-(0[1-9]|1[0-2])|-(Q[1-4])|-(H[12]))?$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_DIVISION_RE = re.compile(r"^\d{6}(\d{3}(\d{3})?)?$")
_MEDIA_TYPE_RE = re.compile(r"^[a-z]+/[A-Za-z0-9.+-]{1,100}$")
MAX_EVIDENCE = 32
MAX_TEXT = 2_000
#: The largest amount in fen any field accepts: 2^53 - 1 fen (≈ 90 trillion yuan).
MAX_FEN = MAX_SAFE_INTEGER


def ident(body: Mapping[str, Any], name: str, where: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not _IDENT_RE.match(value):
        raise InvalidEntry(
            f"{where}: {name} must be an identifier of 1–64 ASCII letters, digits and . _ : / - "
            f"(starting with a letter or digit), got {value!r}"
        )
    return value


def household_code(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _HOUSEHOLD_RE.match(value):
        raise InvalidEntry(
            f"{where}: a household code is 4–32 upper-case ASCII letters, digits and hyphens "
            f"(e.g. GX-GN-000123), got {value!r}"
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


def count_field(body: Mapping[str, Any], name: str, where: str, *, low: int = 1) -> int:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_FEN:
        raise InvalidEntry(f"{where}: {name} must be an integer of at least {low}, got {value!r}")
    return value


def date_field(body: Mapping[str, Any], name: str, where: str) -> str:
    """A calendar date, ``YYYY-MM-DD``."""
    value = body.get(name)
    if isinstance(value, str) and _DATE_RE.match(value):
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
        m = _PERIOD_RE.match(value)
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
    if not isinstance(value, str) or not _SHA256_RE.match(value):
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
        if not isinstance(doc["media_type"], str) or not _MEDIA_TYPE_RE.match(doc["media_type"]):
            raise InvalidEntry(f"{at}: media_type must look like application/pdf")
        count_field(doc, "size", at, low=0)
        out.append(dict(doc))
    return out


def location(body: Mapping[str, Any], name: str, where: str) -> dict[str, str]:
    """An administrative location: province, city, county required; township, village and the
    administrative division code (6, 9 or 12 digits) optional."""
    value = body.get(name)
    allowed = {"province", "city", "county", "township", "village", "division_code"}
    if not isinstance(value, dict) or set(value) - allowed:
        raise InvalidEntry(f"{where}: {name} must be an object with keys from {sorted(allowed)}")
    for part in ("province", "city", "county"):
        text(value, part, f"{where}: {name}", 100)
    for part in ("township", "village"):
        if part in value:
            text(value, part, f"{where}: {name}", 100)
    code = value.get("division_code")
    if code is not None and (not isinstance(code, str) or not _DIVISION_RE.match(code)):
        raise InvalidEntry(f"{where}: {name}.division_code must be 6, 9 or 12 digits, got {code!r}")
    return dict(value)


def optional(body: Mapping[str, Any], name: str) -> bool:
    return name in body


def only_fields(
    body: Mapping[str, Any], where: str, required: Iterable[str], optional_: Iterable[str] = ()
) -> None:
    """Refuse missing required fields and any field not listed."""
    required, allowed = set(required), set(required) | set(optional_)
    missing = sorted(required - set(body))
    extra = sorted(set(body) - allowed)
    if missing or extra:
        raise InvalidEntry(f"{where}: body fields missing {missing}, unexpected {extra}")


def signers_with_roles(entry: Entry, state: RuleState) -> dict[str, list[KeyRecord]]:
    """The entry's signing keys grouped by role (every key is distinct by construction)."""
    out: dict[str, list[KeyRecord]] = {}
    for record in signer_roles(entry, state).values():
        out.setdefault(record.role, []).append(record)
    return out


def require_roles(entry: Entry, state: RuleState, roles: Iterable[str]) -> list[KeyRecord]:
    """Raise unless, for every role in ``roles`` (repeats mean "that many"), a distinct signing
    key holds it; return the keys used.  E.g. 双认定: ``["village_approver", "township_approver"]``."""
    by_role = signers_with_roles(entry, state)
    used: list[KeyRecord] = []
    missing: list[str] = []
    for role in roles:
        available = [k for k in by_role.get(role, []) if k not in used]
        if available:
            used.append(available[0])
        else:
            missing.append(role)
    if missing:
        raise RuleViolation(
            f"{entry.kind} needs signatures by distinct registered keys with roles "
            f"{', '.join(missing)} (signed by: "
            f"{', '.join(sorted(f'{k.name} ({k.role})' for k in signer_roles(entry, state).values())) or 'nobody'})"
        )
    return used
