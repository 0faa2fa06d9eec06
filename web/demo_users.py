"""Portal accounts for the demo (``suyuan demo``), so ``make run`` has people to sign in as.

One account per audience, each bound to a key that ``suyuan init`` (``admin``) or the demo
data set (:func:`ledger.demo.key_specs`) registered and whose private key the instance
holds.  Idempotent: an account that exists is left exactly as it is (its password too).

These accounts share one password, given by the caller: they are for demonstrations,
never for a real log.
"""

from __future__ import annotations

from ledger import demo
from ledger.errors import ConfigError, Error
from ledger.instance import Instance
from ledger.rules import KeyRecord
from web.passwords import DEFAULT_LOG_N, check_new_password
from web.users import bindable_key, create_user, get_user

#: (user name, key name, display name) of the demo's accounts, in the order they are listed.
DEMO_USERS: tuple[tuple[str, str, str], ...] = (
    ("admin", "admin", "演示管理员 Demo administrator"),
    ("auditor", demo.AUDITOR, "演示审计员 Demo auditor"),
    ("coop-nehe", f"{demo.KEY_PREFIX}hl-nh-coop-csr1", "老莱镇赤松茸合作社 Laolai mushroom co-op"),
    ("finance-nehe", f"{demo.KEY_PREFIX}hl-nh-finance", "讷河市财政局 Nehe finance bureau"),
    ("township-laolai", f"{demo.KEY_PREFIX}hl-nh-laolai", "老莱镇人民政府 Laolai township"),
)


def ensure_demo_users(
    instance: Instance, password: str, *, log_n: int = DEFAULT_LOG_N
) -> list[tuple[str, str, str]]:
    """Make the demo's accounts that do not exist yet; return every demo account as
    (user name, role, organisation).  Raises :class:`ConfigError` when a key they need is
    not an active registered key held here (load the demo first), and the password's
    :class:`~ledger.errors.InvalidInput` when it is too short."""

    check_new_password(password)
    keys = instance.reader().registered_keys()
    records: dict[str, KeyRecord] = {}
    for username, key_name, _display in DEMO_USERS:  # every key first: all or nothing
        try:
            records[username] = bindable_key(instance.keystore, keys, key_name)
        except Error as exc:
            raise ConfigError(f"demo user {username}: {exc} (run `suyuan demo` first)") from None
        existing = get_user(instance.engine, username, keys)
        if existing is not None and existing.key_name != key_name:
            raise ConfigError(
                f"a user named {username!r} exists but is bound to key {existing.key_name!r}, "
                f"not the demo's {key_name!r}; rename or remove it"
            )
    for username, key_name, display_name in DEMO_USERS:
        if get_user(instance.engine, username, keys) is None:
            create_user(instance.engine, username, display_name, password, key_name, log_n=log_n)
    return [
        (username, records[username].role, records[username].org) for username, *_ in DEMO_USERS
    ]
