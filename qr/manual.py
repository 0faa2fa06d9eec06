"""The short human-readable code printed under a QR code, for looking a label up by hand.

It is the seq of the label's registering entry written in **Crockford base32** (digits and
upper-case letters without I, L, O, U), a hyphen, and Crockford's **mod-37 check symbol**
(one of the 32 digits or ``* ~ $ = U``): seq 394 → ``CA-R``.  The check symbol catches every
single wrong character and every swap of two adjacent characters.  Reading is forgiving the
way Crockford specifies: case is ignored, ``I``/``L`` read as ``1``, ``O`` as ``0``, and
hyphens and spaces are dropped.
"""

from __future__ import annotations

from ledger.errors import InvalidInput

DIGITS = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CHECK_SYMBOLS = DIGITS + "*~$=U"
_READ = {c: i for i, c in enumerate(DIGITS)} | {"I": 1, "L": 1, "O": 0}


def encode(seq: int) -> str:
    """``seq`` (≥ 0) as ``<base32>-<check>``."""
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise InvalidInput(f"a manual code encodes an entry seq (integer ≥ 0), got {seq!r}")
    digits = ""
    n = seq
    while True:
        n, r = divmod(n, 32)
        digits = DIGITS[r] + digits
        if n == 0:
            break
    return f"{digits}-{CHECK_SYMBOLS[seq % 37]}"


def decode(text: str) -> int:
    """The seq of a manual code as typed; raises InvalidInput for a bad character or check."""
    if not isinstance(text, str):
        raise InvalidInput(f"a manual code is text, got {type(text).__name__}")
    cleaned = text.upper().replace("-", "").replace(" ", "")
    if len(cleaned) < 2 or len(cleaned) > 14:
        raise InvalidInput(f"a manual code looks like CA-R (base32 digits, check), got {text!r}")
    body, check = cleaned[:-1], cleaned[-1]
    seq = 0
    for char in body:
        if char not in _READ:
            raise InvalidInput(f"manual code {text!r}: {char!r} is not a Crockford base32 digit")
        seq = seq * 32 + _READ[char]
    check = {"I": "1", "L": "1", "O": "0"}.get(check, check)
    if check not in CHECK_SYMBOLS:
        raise InvalidInput(f"manual code {text!r}: {check!r} is not a check symbol")
    expected = CHECK_SYMBOLS[seq % 37]
    if check != expected:
        raise InvalidInput(
            f"manual code {text!r}: check symbol should be {expected}, found {check} "
            "(a character was mistyped)"
        )
    return seq
