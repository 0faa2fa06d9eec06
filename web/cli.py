"""``suyuan user``: portal accounts from the command line (the first administrator's, say).

Attached to the ``suyuan`` group of :mod:`ledger.cli` on import, like :mod:`qr.cli`; the same
exit codes (0 done, 1 storage problem, 2 refused input — and then nothing was written).

Passwords come from ``SUYUAN_NEW_PASSWORD`` or are asked twice on the terminal, never echoed
and never taken from an argument (arguments show in ``ps`` and shell history).  An account is
bound to an active registered key whose private key this instance holds (``suyuan keys new``
makes one); its role and organisation are the key's.
"""

from __future__ import annotations

import os

import click

from ledger.cli import _instance, main
from ledger.errors import Conflict, NotFound
from web.passwords import DEFAULT_LOG_N, check_new_password
from web.users import (
    bindable_key,
    check_display_name,
    check_username,
    create_user,
    get_user,
    list_users,
    set_active,
    set_password,
)

PASSWORD_ENV = "SUYUAN_NEW_PASSWORD"


def _new_password() -> str:
    password = os.environ.get(PASSWORD_ENV)
    if not password:
        password = click.prompt(
            "New password", hide_input=True, confirmation_prompt="Repeat the password"
        )
    return check_new_password(password)


@main.group("user")
def user() -> None:
    """Portal users: make, change password, disable, enable, list."""


@user.command("new")
@click.argument("username")
@click.option("--key", "key_name", required=True, help="The key the user signs with.")
@click.option("--display-name", help="The person's name (default: the user name).")
def user_new(username: str, key_name: str, display_name: str | None) -> None:
    """Make the account USERNAME bound to key KEY (password: $SUYUAN_NEW_PASSWORD or asked)."""

    instance = _instance()
    keys = instance.reader().registered_keys()
    check_username(username)
    display = check_display_name(display_name or username)
    record = bindable_key(instance.keystore, keys, key_name)
    if get_user(instance.engine, username, keys) is not None:
        raise Conflict(f"a user named {username!r} exists already")
    password = _new_password()
    create_user(instance.engine, username, display, password, key_name, log_n=DEFAULT_LOG_N)
    click.echo(f"created user {username}: {record.role} for {record.org} (key {record.key_id})")


@user.command("passwd")
@click.argument("username")
def user_passwd(username: str) -> None:
    """Set a new password for USERNAME (ends their sessions)."""
    instance = _instance()
    if get_user(instance.engine, username, instance.reader().registered_keys()) is None:
        raise NotFound(f"no user named {username!r}")
    set_password(instance.engine, username, _new_password(), log_n=DEFAULT_LOG_N)
    click.echo(f"password of {username} changed; their sessions have ended")


@user.command("disable")
@click.argument("username")
def user_disable(username: str) -> None:
    """Deactivate USERNAME: no sign-in, sessions end at once."""
    instance = _instance()
    instance.reader()  # a clear error when there is no log here
    set_active(instance.engine, username, False)
    click.echo(f"disabled {username}")


@user.command("enable")
@click.argument("username")
def user_enable(username: str) -> None:
    """Reactivate USERNAME."""
    instance = _instance()
    instance.reader()
    set_active(instance.engine, username, True)
    click.echo(f"enabled {username}")


@user.command("list")
def user_list() -> None:
    """One line per user: name, key, role, organisation, account state, last sign-in."""
    instance = _instance()
    for u in list_users(instance.engine, instance.reader().registered_keys()):
        state = "active" if u.active else "disabled"
        signing = "" if u.role else " (key not active: cannot sign)"
        click.echo(
            "\t".join(
                [
                    u.username,
                    u.key_name,
                    u.role or "-",
                    u.org or "-",
                    state + signing,
                    u.last_login or "never",
                    u.display_name,
                ]
            )
        )
