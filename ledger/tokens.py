"""API tokens: bearer secrets that let a client submit signed statements over HTTP.

A token authorises *submission*; what a statement may do is decided by its
authors' signatures and the ledger's rules, never by the token.  Only the
SHA-256 of a token is stored; the token is shown once when it is made.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from ledger import schema
from ledger.db import write_connection
from ledger.entry import format_time
from ledger.errors import Conflict, InvalidInput, NotFound

PREFIX = "syt_"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def create_token(engine: Engine, name: str) -> str:
    """Make a token named ``name``; return the secret (it is not stored)."""
    if not _NAME_RE.fullmatch(name):
        raise InvalidInput(f"token name {name!r}: use 1-128 letters, digits, '.', '_' or '-'")
    token = PREFIX + secrets.token_urlsafe(32)
    try:
        with write_connection(engine) as conn:
            conn.execute(
                insert(schema.api_tokens).values(
                    name=name,
                    token_hash=_digest(token),
                    created=format_time(datetime.now(UTC)),
                    revoked=None,
                )
            )
    except IntegrityError:
        raise Conflict(f"a token named {name!r} exists already") from None
    return token


def revoke_token(engine: Engine, name: str) -> None:
    with write_connection(engine) as conn:
        done = conn.execute(
            update(schema.api_tokens)
            .where(schema.api_tokens.c.name == name, schema.api_tokens.c.revoked.is_(None))
            .values(revoked=format_time(datetime.now(UTC)))
        ).rowcount
    if not done:
        raise NotFound(f"no active token named {name!r}")


def check_token(engine: Engine, token: str) -> str | None:
    """The name of the active token ``token``, or None."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    t = schema.api_tokens.c
    with engine.connect() as conn:
        row = conn.execute(
            select(t.name, t.token_hash).where(t.token_hash == _digest(token), t.revoked.is_(None))
        ).first()
    if row is None or not hmac.compare_digest(bytes(row.token_hash), _digest(token)):
        return None
    return str(row.name)


def list_tokens(engine: Engine) -> list[tuple[str, str, str | None]]:
    t = schema.api_tokens.c
    with engine.connect() as conn:
        return [
            (r.name, r.created, r.revoked)
            for r in conn.execute(select(t.name, t.created, t.revoked).order_by(t.name))
        ]
