"""RFC 8785 canonical JSON, and the strict JSON parser every entry point uses.

Every leaf of the log is the RFC 8785 (JCS) encoding of one entry, and every
author signature covers the RFC 8785 encoding of a statement, so this module is
where byte-exactness lives.

:func:`dumps` takes a fast path for the values the ledger actually holds
(objects, arrays, strings, integers in the I-JSON range, booleans, null, all
object keys in the Basic Multilingual Plane): for those, Python's
``json.dumps(..., sort_keys=True, ensure_ascii=False)`` is byte-identical to
RFC 8785 — keys sort by code point, which equals UTF-16 code-unit order inside
the BMP, and both escape exactly ``"``, ``\\`` and the C0 controls with the same
short forms and lower-case ``\\u00xx``.  Anything else (floats, keys outside the
BMP) goes to the reference implementation ``rfc8785``.  The equivalence is
tested against the published vectors and with hypothesis.

:func:`parse` is the strict reader: duplicate keys, ``NaN``/``Infinity``,
lone surrogates, integers outside ±(2**53-1) and (unless asked for) any number
with a fraction or exponent are refused with :class:`~ledger.errors.InvalidInput`.
"""

from __future__ import annotations

import json
import math
import unicodedata
from typing import Any

import rfc8785

from ledger.errors import InvalidInput

#: I-JSON (RFC 7493) safe integer range; RFC 8785 serialises numbers as IEEE 754 doubles.
MAX_SAFE_INTEGER = 2**53 - 1
#: Nesting deeper than this is refused: no honest entry needs it, and it bounds recursion.
MAX_DEPTH = 32

_encoder = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
)


def dumps(value: Any, *, strict: bool = False) -> bytes:
    """Return the RFC 8785 canonical UTF-8 encoding of ``value``.

    ``strict`` applies the ledger's own rules on top of RFC 8785: no floats
    anywhere (amounts are integer fen), and every string (keys included) already
    in Unicode NFC form, so one visible text has exactly one byte form.

    ``value`` MUST be built from dict (str keys), list, str, int, bool, None and
    finite float.  Raises :class:`InvalidInput` for anything RFC 8785 cannot
    encode (other types, non-string keys, lone surrogates, integers outside the
    I-JSON range, NaN or infinities, nesting deeper than :data:`MAX_DEPTH`).
    """
    if _needs_reference(value, 0, strict):
        try:
            return bytes(rfc8785.dumps(value))
        except (rfc8785.CanonicalizationError, ValueError, TypeError) as exc:
            raise InvalidInput(f"cannot canonicalise value: {exc}") from None
    try:
        return _encoder.encode(value).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("string contains a lone surrogate (not valid Unicode)") from None


def _needs_reference(value: Any, depth: int, strict: bool) -> bool:
    """Validate ``value``; True if it holds something only the reference encoder handles."""
    if isinstance(value, str):
        if strict and not value.isascii() and not unicodedata.is_normalized("NFC", value):
            raise InvalidInput(f"text {value[:40]!r} is not in Unicode NFC form")
        return False
    if value is None or isinstance(value, bool):
        return False
    if isinstance(value, int):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise InvalidInput(f"integer {value} is outside the I-JSON range ±(2**53-1)")
        return False
    if depth >= MAX_DEPTH:
        raise InvalidInput(f"JSON nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        slow = False
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInput(f"object key {key!r} is not a string")
            if not key.isascii():
                if max(key) > "\uffff":
                    slow = True
                if strict and not unicodedata.is_normalized("NFC", key):
                    raise InvalidInput(f"object key {key[:40]!r} is not in Unicode NFC form")
            if _needs_reference(item, depth + 1, strict):
                slow = True
        return slow
    if isinstance(value, list | tuple):
        slow = False
        for item in value:
            if _needs_reference(item, depth + 1, strict):
                slow = True
        return slow
    if isinstance(value, float):
        if strict:
            raise InvalidInput(
                f"number {value!r} is not an integer (amounts are integer fen; no fractions)"
            )
        if not math.isfinite(value):
            raise InvalidInput(f"number {value} is not finite")
        return True
    raise InvalidInput(f"value of type {type(value).__name__} cannot be encoded as JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidInput(f"duplicate object key {key!r}")
        result[key] = value
    return result


def _refuse_constant(name: str) -> Any:
    raise InvalidInput(f"{name} is not valid JSON")


def _refuse_float(text: str) -> Any:
    raise InvalidInput(f"number {text} is not an integer (amounts are integer fen; no fractions)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 overflows to inf, which no JSON text can carry back
        raise InvalidInput(f"number {text[:40]} is out of range (not a finite double)")
    return value


def _check_int(text: str) -> int:
    value = int(text)
    if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        raise InvalidInput(f"integer {text} is outside the I-JSON range ±(2**53-1)")
    return value


def parse(data: bytes | str, *, allow_floats: bool = False, check_strings: bool = True) -> Any:
    """Parse one JSON text strictly.

    Raises :class:`InvalidInput` for: invalid UTF-8, invalid JSON, duplicate keys,
    ``NaN``/``Infinity`` (and numbers too large for a double), integers outside
    ±(2**53-1), lone surrogates, nesting
    deeper than :data:`MAX_DEPTH`, and — unless ``allow_floats`` — any number
    with a fraction or exponent.  ``check_strings=False`` skips the lone-surrogate
    walk for callers that re-encode the value with :func:`dumps` anyway (which
    refuses them).
    """
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"not valid UTF-8 at byte {exc.start}") from None
    elif isinstance(data, str):
        text = data
    else:
        raise InvalidInput(f"expected JSON text, got {type(data).__name__}")
    try:
        value = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_refuse_constant,
            parse_float=_finite_float if allow_floats else _refuse_float,
            parse_int=_check_int,
        )
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise InvalidInput(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # int() on absurdly long digit strings
        raise InvalidInput(f"invalid JSON number: {exc}") from None
    if check_strings:
        _check_strings(value, 0)
    return value


def _check_strings(value: Any, depth: int) -> None:
    """Refuse lone surrogates (which ``\\udXXX`` escapes can smuggle in) and deep nesting."""
    if depth > MAX_DEPTH:
        raise InvalidInput(f"JSON nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        _check_text(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            _check_strings(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_strings(item, depth + 1)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("string contains a lone surrogate (not valid Unicode)") from None
