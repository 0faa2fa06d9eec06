"""Canonical JSON from outside (``ledger.canonical.parse``, strict and with floats) and
its re-encoding (``ledger.canonical.dumps``).

Invariants: everything ``parse`` accepts ``dumps`` can encode; ``dumps`` is a
fixed point (parse(dumps(v)) == v and dumps of that is the same bytes); the
``check_strings=False`` fast path parses the same value whenever the strict
one does; strict ``dumps`` refuses only non-NFC text; bytes that are already
canonical re-encode to themselves.  With ``allow_floats`` the same holds for
the values that stay in range.
"""

from __future__ import annotations

import math
from typing import Any

from ledger import canonical
from ledger.errors import Error, InvalidInput
from tests.fuzz import fixtures


def _same(a: Any, b: Any) -> bool:
    """Equality that also tells 1 from 1.0 from True (Python's == does not)."""
    if type(a) is not type(b):
        return isinstance(a, int | float) and isinstance(b, int | float) and a == b
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def one(data: bytes) -> None:
    try:
        value = canonical.parse(data)
    except Error as exc:
        fixtures.check_refusal(exc)
    else:
        encoded = canonical.dumps(value)
        again = canonical.parse(encoded)
        assert _same(again, value)
        assert canonical.dumps(again) == encoded
        assert _same(canonical.parse(data, check_strings=False), value)
        if data == encoded:
            assert canonical.dumps(canonical.parse(encoded)) == data
        try:
            strict = canonical.dumps(value, strict=True)
        except InvalidInput as exc:
            assert "NFC" in str(exc), exc
        else:
            assert strict == encoded

    try:
        loose = canonical.parse(data, allow_floats=True)
    except Error as exc:
        fixtures.check_refusal(exc)
        return
    encoded = canonical.dumps(loose)  # every accepted value MUST be encodable
    try:
        again = canonical.parse(encoded, allow_floats=True)
    except InvalidInput as exc:
        # A float like 1e20 encodes as the integer 100000000000000000000 (RFC 8785
        # number form), which is beyond the I-JSON integer range the parser allows.
        assert "I-JSON" in str(exc), exc
        return
    assert canonical.dumps(again) == encoded
    assert _close(again, loose)


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return math.isfinite(a) and a == b
    return bool(a == b)
