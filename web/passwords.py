"""Password hashing with scrypt (RFC 7914, via OpenSSL in :mod:`hashlib`).

A stored hash reads ``scrypt$<log2 N>$<r>$<p>$<salt b64>$<hash b64>``, so the
cost can be raised later and old hashes still check (and are re-hashed at the
next login: :func:`needs_rehash`).  Comparison is constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from ledger.errors import InvalidInput

#: Production cost: N = 2**15, r = 8 (32 MiB, ~50-100 ms here).  Tests lower LOG_N.
DEFAULT_LOG_N = 15
_R = 8
_P = 1
MIN_LENGTH = 10
MAX_LENGTH = 256


def check_new_password(password: str) -> str:
    """Refuse passwords too short or too long (the length cap bounds hashing time)."""
    if not isinstance(password, str) or len(password) < MIN_LENGTH:
        raise InvalidInput(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise InvalidInput(f"a password has at most {MAX_LENGTH} characters")
    return password


def _scrypt(password: str, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    n = 1 << log_n
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + (1 << 20), dklen=32
    )


def hash_password(password: str, log_n: int = DEFAULT_LOG_N) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, log_n, _R, _P)
    b64 = base64.b64encode
    return f"scrypt${log_n}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return None
    try:
        log_n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, digest = base64.b64decode(parts[4]), base64.b64decode(parts[5])
    except ValueError:
        return None
    if not (1 <= log_n <= 20 and 1 <= r <= 32 and 1 <= p <= 4):
        return None
    return log_n, r, p, salt, digest


def check_password(stored: str, password: str) -> bool:
    """True when ``password`` matches ``stored``; False for a wrong or malformed hash."""
    parsed = _parse(stored)
    if parsed is None or len(password) > MAX_LENGTH:
        return False
    log_n, r, p, salt, digest = parsed
    return hmac.compare_digest(_scrypt(password, salt, log_n, r, p), digest)


def needs_rehash(stored: str, log_n: int = DEFAULT_LOG_N) -> bool:
    parsed = _parse(stored)
    return parsed is None or parsed[0] < log_n


#: A hash of nothing anyone knows: checked when the user does not exist, so a
#: wrong user name costs as much time as a wrong password.
def dummy_hash(log_n: int) -> str:
    return hash_password(secrets.token_urlsafe(24), log_n)
