"""Portal users: accounts bound to ledger keys.

A user's *authority* is the ledger key it is bound to: its role and
organisation are the key's, as the key registry entries say, and a revoked key
makes the user unable to do anything but read.  The ``users`` table holds only
what the ledger does not: the login name, a display name, the password hash,
and a ``session_version`` that is bumped to end every session of the user
(password change, deactivation, signing out).  The private keys themselves are the
operator's, in the instance key store (docs/SITE.md, "Key custody").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from keys.store import KeyStore
from ledger import schema
from ledger.db import write_connection
from ledger.entry import format_time
from ledger.errors import Conflict, InvalidInput, NotFound
from ledger.rules import KeyRecord
from web.passwords import check_new_password, check_password, dummy_hash, hash_password

USERNAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")
_DUMMY: dict[int, str] = {}


@dataclass(frozen=True)
class User:
    """A user as a request sees it: the account plus its key's role and organisation.

    ``role`` and ``org`` are None when the bound key is not (or no longer) an
    active registered key; such a user may sign in and read, never write.
    """

    username: str
    display_name: str
    key_name: str
    active: bool
    session_version: int
    created: str
    last_login: str | None
    role: str | None = None
    org: str | None = None
    key_id: str | None = None

    @property
    def can_sign(self) -> bool:
        return self.active and self.role is not None


def check_username(username: str) -> str:
    if not isinstance(username, str) or not USERNAME_RE.fullmatch(username):
        raise InvalidInput(
            "a user name is 2-64 lower-case letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit; got {username!r}"
        )
    return username


def check_display_name(name: str) -> str:
    name = (name or "").strip()
    if not 1 <= len(name) <= 100 or any(ord(ch) < 32 for ch in name):
        raise InvalidInput("a display name is 1-100 printable characters")
    return name


def active_key(keys: list[KeyRecord], key_name: str) -> KeyRecord | None:
    """The newest registered, unrevoked key named ``key_name``."""
    found = [k for k in keys if k.name == key_name and k.revoked_seq is None]
    return max(found, key=lambda k: k.registered_seq) if found else None


def _user(row: Any, keys: list[KeyRecord]) -> User:
    key = active_key(keys, row.key_name)
    return User(
        username=row.username,
        display_name=row.display_name,
        key_name=row.key_name,
        active=bool(row.active),
        session_version=int(row.session_version),
        created=row.created,
        last_login=row.last_login,
        role=key.role if key else None,
        org=key.org if key else None,
        key_id=key.key_id if key else None,
    )


def create_user(
    engine: Engine,
    username: str,
    display_name: str,
    password: str,
    key_name: str,
    *,
    log_n: int,
) -> None:
    """Add an account bound to ``key_name``; Conflict if the user name is taken."""
    check_username(username)
    display_name = check_display_name(display_name)
    check_new_password(password)
    row = {
        "username": username,
        "display_name": display_name,
        "password_hash": hash_password(password, log_n),
        "key_name": key_name,
        "active": True,
        "session_version": 1,
        "created": format_time(datetime.now(UTC)),
        "last_login": None,
    }
    try:
        with write_connection(engine) as conn:
            conn.execute(insert(schema.users).values(**row))
    except IntegrityError:
        raise Conflict(f"a user named {username!r} exists already") from None


def _row(conn: Connection, username: str) -> Any:
    return conn.execute(select(schema.users).where(schema.users.c.username == username)).first()


def get_user(engine: Engine, username: str, keys: list[KeyRecord]) -> User | None:
    with engine.connect() as conn:
        row = _row(conn, username)
    return None if row is None else _user(row, keys)


def list_users(engine: Engine, keys: list[KeyRecord]) -> list[User]:
    with engine.connect() as conn:
        rows = conn.execute(select(schema.users).order_by(schema.users.c.username)).all()
    return [_user(r, keys) for r in rows]


def authenticate(
    engine: Engine, username: str, password: str, keys: list[KeyRecord], *, log_n: int
) -> User | None:
    """The active user whose password this is, else None (same cost either way)."""
    with engine.connect() as conn:
        row = _row(conn, username) if USERNAME_RE.fullmatch(username or "") else None
    if row is None or not row.active:
        check_password(_DUMMY.setdefault(log_n, dummy_hash(log_n)), password)
        return None
    if not check_password(row.password_hash, password):
        return None
    values: dict[str, Any] = {"last_login": format_time(datetime.now(UTC))}
    if row.password_hash.split("$")[1] != str(log_n):
        values["password_hash"] = hash_password(password, log_n)
    with write_connection(engine) as conn:
        conn.execute(
            update(schema.users).where(schema.users.c.username == username).values(**values)
        )
    return _user(row, keys)


def set_password(engine: Engine, username: str, password: str, *, log_n: int) -> None:
    """New password; ends the user's other sessions."""
    check_new_password(password)
    _update(engine, username, password_hash=hash_password(password, log_n))


def set_active(engine: Engine, username: str, active: bool) -> None:
    _update(engine, username, active=active)


def end_sessions(engine: Engine, username: str) -> None:
    """End every session of the user (signing out): their session cookies, copied or not,
    stop working, since a signed cookie cannot be taken back any other way."""
    _update(engine, username)


def _update(engine: Engine, username: str, **values: Any) -> None:
    u = schema.users.c
    with write_connection(engine) as conn:
        done = conn.execute(
            update(schema.users)
            .where(u.username == username)
            .values(session_version=u.session_version + 1, **values)
        ).rowcount
    if not done:
        raise NotFound(f"no user named {username!r}")


# --- which keys an account can be bound to (the admin portal, `suyuan user`, the demo) ---


def held_active_keys(keystore: KeyStore, keys: Sequence[KeyRecord]) -> list[KeyRecord]:
    """Active registered keys whose private key this instance holds: what a user can sign with."""
    held = set(keystore.author_names())
    return [
        k
        for k in keys
        if k.name in held and k.revoked_seq is None and active_key(list(keys), k.name) is k
    ]


def key_name_used(keystore: KeyStore, keys: Sequence[KeyRecord], name: str) -> str | None:
    """Why ``name`` cannot be given to a new key — ``"registered"`` (some key had it) or
    ``"held"`` (a key file has it) — or None when it is free."""
    if any(k.name == name for k in keys):
        return "registered"
    if name in keystore.author_names():
        return "held"
    return None


def bindable_key(keystore: KeyStore, keys: Sequence[KeyRecord], key_name: str) -> KeyRecord:
    """The key a new account named ``key_name`` would sign with; raises unless it is an
    active registered key whose private key this instance holds."""
    record = active_key(list(keys), key_name)
    if record is None:
        revoked = [k for k in keys if k.name == key_name]
        if revoked:
            raise InvalidInput(
                f"key {key_name!r} was revoked at seq {revoked[-1].revoked_seq}: "
                "a user bound to it could not sign; give an active key"
            )
        raise NotFound(f"no registered key named {key_name!r} (`suyuan keys list` shows them)")
    if key_name not in keystore.author_names():
        raise InvalidInput(
            f"key {key_name!r} is registered (seq {record.registered_seq}) but this instance "
            "does not hold its private key: portal users sign with keys held here"
        )
    return record


def bound_key(keys: Sequence[KeyRecord], key_name: str) -> KeyRecord | None:
    """The key an account bound to ``key_name`` refers to: the active one, else the newest."""
    found = active_key(list(keys), key_name)
    if found is not None:
        return found
    named = [k for k in keys if k.name == key_name]
    return named[-1] if named else None
