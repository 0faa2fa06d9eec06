"""``suyuan user …`` (web/cli.py) on a real instance folder, through the real ``suyuan`` group.

Importing :mod:`web.cli` attaches the group to :data:`ledger.cli.main`, so these runs get the
command line's own error handling: refusals print ``error: …`` and exit 2, writing nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text

import web.cli  # noqa: F401  (attaches `suyuan user`)
from ledger.cli import main
from ledger.instance import Instance
from tests.conftest import Site
from tests.helpers import new_signer
from tests.web.portal import PASSWORD, add_user, login, post_form
from web.users import get_user

NEW = "a new password 1"


def run(*args: str, password: str | None = None, input: str | None = None) -> Result:
    env = {"SUYUAN_NEW_PASSWORD": password} if password is not None else {}
    return CliRunner().invoke(main, list(args), env=env, input=input, catch_exceptions=False)


def users_table(instance: Instance) -> list[tuple[Any, ...]]:
    with instance.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text("SELECT * FROM users ORDER BY username"))]


@pytest.fixture
def held_key(site: Site) -> str:
    """A registered producer key whose private key the instance holds, with no user yet."""
    signer = site.instance.keystore.new_author("nehe-coop", site.instance.passphrase())
    site.instance.sign_and_append(
        site.log,
        "key.registered",
        {
            "name": "nehe-coop",
            "vkey": signer.verifier.vkey,
            "role": "producer",
            "org": "讷河合作社",
        },
        [site.admin],
    )
    return "nehe-coop"


def test_the_group_is_attached() -> None:
    listed = run("--help").output
    assert "user" in listed
    assert {"new", "passwd", "disable", "enable", "list"} <= set(
        line.split()[0]
        for line in run("user", "--help").output.split("Commands:")[1].splitlines()
        if line.strip()
    )


def test_new_user_from_the_environment_signs_in(site: Site, held_key: str) -> None:
    result = run("user", "new", "li", "--key", held_key, "--display-name", "李 Li", password=NEW)
    assert result.exit_code == 0, result.output
    assert "producer for 讷河合作社" in result.output
    user = get_user(site.instance.engine, "li", site.log.registered_keys())
    assert user is not None and user.display_name == "李 Li" and user.can_sign
    assert NEW not in result.output
    login(site.app.test_client(), "li", NEW)


def test_new_user_with_a_prompted_password(site: Site, held_key: str) -> None:
    result = run("user", "new", "li", "--key", held_key, input=f"{NEW}\n{NEW}\n")
    assert result.exit_code == 0, result.output
    assert NEW not in result.output  # hidden input is not echoed
    login(site.app.test_client(), "li", NEW)
    # Two different entries: asked again; at the end of the input, nothing is made.
    mismatch = run("user", "new", "wang", "--key", held_key, input=f"{NEW}\nsomething else\n")
    assert mismatch.exit_code != 0
    assert get_user(site.instance.engine, "wang", []) is None


@pytest.mark.parametrize(
    ("username", "key", "password", "message"),
    [
        ("li", "no-such-key", NEW, "no registered key named 'no-such-key'"),
        ("li", "outside", NEW, "does not hold its private key"),
        ("li", "revoked", NEW, "was revoked at seq"),
        ("Li Wang", "nehe-coop", NEW, "a user name is 2-64 lower-case letters"),
        ("farmer", "nehe-coop", NEW, "a user named 'farmer' exists already"),
        ("li", "nehe-coop", "short", "a password needs at least 10 characters"),
    ],
)
def test_new_user_refusals(
    site: Site, held_key: str, username: str, key: str, password: str, message: str
) -> None:
    add_user(site.instance, site.admin, "farmer", "producer")
    outside = new_signer("outside")  # an organisation's own key: registered, not held here
    site.instance.sign_and_append(
        site.log,
        "key.registered",
        {"name": "outside", "vkey": outside.verifier.vkey, "role": "producer", "org": "x"},
        [site.admin],
    )
    gone = add_user(site.instance, site.admin, "old", "producer", key_name="revoked")
    site.instance.sign_and_append(
        site.log, "key.revoked", {"key": gone.verifier.key_id, "reason": "left"}, [site.admin]
    )
    before = users_table(site.instance)
    result = run("user", "new", username, "--key", key, password=password)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert users_table(site.instance) == before


def test_passwd_ends_sessions_and_refuses_unknown_users(site: Site) -> None:
    add_user(site.instance, site.admin, "farmer", "producer")
    client = site.app.test_client()
    login(client, "farmer")
    result = run("user", "passwd", "farmer", password=NEW)
    assert result.exit_code == 0, result.output
    assert client.get("/account").status_code == 302  # the old session ended
    assert (
        post_form(
            site.app.test_client(), "/login", {"username": "farmer", "password": PASSWORD}
        ).status_code
        == 400
    )
    login(site.app.test_client(), "farmer", NEW)
    before = users_table(site.instance)
    unknown = run("user", "passwd", "nobody", password=NEW)
    assert unknown.exit_code == 2 and "no user named 'nobody'" in unknown.stderr
    short = run("user", "passwd", "farmer", password="short")
    assert short.exit_code == 2 and "at least 10" in short.stderr
    assert users_table(site.instance) == before


def test_disable_enable_list(site: Site, held_key: str) -> None:
    add_user(site.instance, site.admin, "farmer", "producer", "南河县香菇专业合作社")
    client = site.app.test_client()
    login(client, "farmer")
    assert run("user", "disable", "farmer").exit_code == 0
    assert client.get("/account").status_code == 302
    refused = post_form(
        site.app.test_client(), "/login", {"username": "farmer", "password": PASSWORD}
    )
    assert refused.status_code == 400
    lines = {
        line.split("\t")[0]: line.split("\t") for line in run("user", "list").output.splitlines()
    }
    assert lines["farmer"][:5] == [
        "farmer",
        "farmer",
        "producer",
        "南河县香菇专业合作社",
        "disabled",
    ]
    assert run("user", "enable", "farmer").exit_code == 0
    login(site.app.test_client(), "farmer")
    listed = run("user", "list").output
    assert "\tactive\t" in listed and "disabled" not in listed
    missing = run("user", "disable", "nobody")
    assert missing.exit_code == 2 and "no user named 'nobody'" in missing.stderr
