"""Signing in and out, sessions, roles, CSRF, rate limits, languages and headers."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import select, update

from ledger import schema
from tests.conftest import Site
from tests.helpers import TEST_CONFIG, check_ledger
from tests.web.portal import PASSWORD, add_user, csrf_token, login, post_form, signed_in
from tests.web.support import revoke
from web.passwords import check_password, hash_password, needs_rehash
from web.users import set_active, set_password


@pytest.fixture
def coop(site: Site) -> Site:
    add_user(site.instance, site.admin, "coop1", "producer", display_name="香菇合作社")
    add_user(site.instance, site.admin, "audit1", "auditor", "审计局 Audit bureau")
    return site


# --- passwords -------------------------------------------------------------------


def test_password_hash_round_trip_and_cost() -> None:
    stored = hash_password("a long enough secret", 4)
    assert stored.startswith("scrypt$4$8$1$")
    assert check_password(stored, "a long enough secret")
    assert not check_password(stored, "a long enough secreT")
    assert hash_password("a long enough secret", 4) != stored  # salted
    assert needs_rehash(stored, 5) and not needs_rehash(stored, 4)


@pytest.mark.parametrize(
    "stored", ["", "plain", "scrypt$4$8$1$!!$!!", "scrypt$40$8$1$AAAA$AAAA", "bcrypt$x$y$z$a$b"]
)
def test_malformed_hashes_never_match(stored: str) -> None:
    assert not check_password(stored, "anything at all")


# --- signing in ------------------------------------------------------------------


def test_sign_in_lands_on_the_roles_portal_and_shows_the_user(coop: Site) -> None:
    client = coop.app.test_client()
    response = login(client, "coop1")
    assert response.headers["Location"] == "/producer/"
    page = client.get("/account").get_data(as_text=True)
    assert "香菇合作社" in page and "南河县香菇专业合作社" in page
    assert client.get("/account").status_code == 200


@pytest.mark.parametrize(
    ("username", "password"), [("coop1", "wrong password!"), ("nobody", PASSWORD)]
)
def test_wrong_credentials_are_refused_alike(coop: Site, username: str, password: str) -> None:
    client = coop.app.test_client()
    response = post_form(client, "/login", {"username": username, "password": password})
    assert response.status_code == 400
    assert "Wrong user name or password" in response.get_data(as_text=True) or "用户名或密码" in (
        response.get_data(as_text=True)
    )
    assert client.get("/account").status_code == 302  # still signed out


def test_login_without_csrf_token_is_refused(coop: Site) -> None:
    client = coop.app.test_client()
    response = client.post("/login", data={"username": "coop1", "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/account").status_code == 302


def test_signing_in_starts_a_new_session(coop: Site) -> None:
    client = coop.app.test_client()
    with client.session_transaction() as session:
        session["planted"] = "by an attacker"
    login(client, "coop1")
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session["user"] == "coop1"


def test_sign_out_needs_a_post_with_csrf(coop: Site) -> None:
    client = signed_in(coop.app, "coop1")
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 400  # no token: a third party cannot sign you out
    assert client.get("/account").status_code == 200
    token = csrf_token(client, "/account")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/account").status_code == 302


def test_deactivating_a_user_ends_their_sessions(coop: Site) -> None:
    client = signed_in(coop.app, "coop1")
    set_active(coop.instance.engine, "coop1", False)
    assert client.get("/account").status_code == 302
    # and they cannot sign in again
    response = post_form(
        coop.app.test_client(), "/login", {"username": "coop1", "password": PASSWORD}
    )
    assert response.status_code == 400


def test_changing_the_password_ends_other_sessions_but_not_this_one(coop: Site) -> None:
    other = signed_in(coop.app, "coop1")
    client = signed_in(coop.app, "coop1")
    response = post_form(
        client,
        "/account",
        {"current": PASSWORD, "new": "another long secret", "repeat": "another long secret"},
    )
    assert response.status_code == 302
    assert client.get("/account").status_code == 200
    assert other.get("/account").status_code == 302
    login(coop.app.test_client(), "coop1", "another long secret")


def test_password_change_errors_are_explained(coop: Site) -> None:
    client = signed_in(coop.app, "coop1")
    for data, message in [
        (
            {
                "current": "not it at all",
                "new": "another long secret",
                "repeat": "another long secret",
            },
            "current password is wrong",
        ),
        ({"current": PASSWORD, "new": "short", "repeat": "short"}, "10"),
        (
            {"current": PASSWORD, "new": "another long secret", "repeat": "different long one"},
            "differ",
        ),
    ]:
        response = post_form(client, "/account?lang=en", data, form_path="/account")
        assert response.status_code == 200
        assert message in response.get_data(as_text=True)
    login(coop.app.test_client(), "coop1")  # the old password still works


def test_an_old_password_hash_is_upgraded_at_sign_in(coop: Site) -> None:
    set_password(coop.instance.engine, "coop1", PASSWORD, log_n=3)
    login(coop.app.test_client(), "coop1")
    with coop.instance.engine.connect() as conn:
        stored = conn.execute(
            select(schema.users.c.password_hash).where(schema.users.c.username == "coop1")
        ).scalar_one()
    assert stored.startswith("scrypt$4$")


# --- roles -----------------------------------------------------------------------


def test_portals_need_sign_in_and_the_right_role(coop: Site) -> None:
    anonymous = coop.app.test_client()
    response = anonymous.get("/audit/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")
    producer = signed_in(coop.app, "coop1")
    assert producer.get("/audit/").status_code == 403
    assert producer.get("/admin/").status_code == 403
    auditor = signed_in(coop.app, "audit1")
    assert auditor.get("/producer/").status_code == 403


def test_a_revoked_key_leaves_the_user_without_a_role(coop: Site) -> None:
    client = signed_in(coop.app, "coop1")
    signer = coop.instance.author("coop1")
    revoke(coop.log, coop.admin, signer)
    assert client.get("/producer/").status_code == 403
    assert "can read but not sign" in client.get("/account?lang=en").get_data(as_text=True)
    check_ledger(coop.instance.engine)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/account", "/account"),
        ("//evil.example/x", "/producer/"),
        ("https://evil.example/", "/producer/"),
        ("/\\evil.example", "/producer/"),
        ("javascript:alert(1)", "/producer/"),
    ],
)
def test_sign_in_redirects_only_within_the_site(coop: Site, target: str, expected: str) -> None:
    client = coop.app.test_client()
    token = csrf_token(client, "/login")
    response = client.post(
        "/login",
        query_string={"next": target},
        data={"csrf_token": token, "username": "coop1", "password": PASSWORD},
    )
    assert response.headers["Location"] == expected


# --- rate limits -----------------------------------------------------------------


def test_sign_in_attempts_are_rate_limited(coop: Site) -> None:
    from web import create_app

    app: Flask = create_app(
        {**TEST_CONFIG, "RATELIMIT_ENABLED": True, "SUYUAN_LOGIN_LIMIT": "3 per minute"}
    )
    client = app.test_client()
    statuses = [
        post_form(
            client, "/login", {"username": "coop1", "password": "wrong password!"}
        ).status_code
        for _ in range(4)
    ]
    assert statuses == [400, 400, 400, 429]
    # the page itself (GET) stays reachable
    assert client.get("/login").status_code == 200


# --- languages -------------------------------------------------------------------


def test_chinese_is_the_default_and_english_follows_the_browser(client) -> None:  # type: ignore[no-untyped-def]
    assert '<html lang="zh-CN">' in client.get("/login").get_data(as_text=True)
    page = client.get("/login", headers={"Accept-Language": "en-GB,en;q=0.9"})
    assert '<html lang="en">' in page.get_data(as_text=True)
    assert '<html lang="en">' in client.get("/login?lang=en").get_data(as_text=True)


def test_the_language_switch_remembers_the_choice_and_goes_back(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/lang/en?next=/login")
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert "lang=en" in response.headers["Set-Cookie"]
    assert '<html lang="en">' in client.get("/login").get_data(as_text=True)
    assert client.get("/lang/en?next=https://evil.example/").headers["Location"] == "/"
    unknown = client.get("/lang/xx?next=/login")
    assert "Set-Cookie" not in unknown.headers


# --- headers and cookies -----------------------------------------------------------


def test_security_headers_on_pages(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/login")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_session_cookie_flags(coop: Site) -> None:
    from web import create_app

    app = create_app({**TEST_CONFIG, "SESSION_COOKIE_SECURE": True})
    client = app.test_client()
    token = csrf_token(client, "/login")
    response = client.post(
        "/login", data={"csrf_token": token, "username": "coop1", "password": PASSWORD}
    )
    cookies = response.headers.getlist("Set-Cookie")
    cookie = next(c for c in cookies if c.startswith("suyuan_session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie


def test_oversized_form_is_refused(coop: Site) -> None:
    client = coop.app.test_client()
    response = client.post("/login", data={"username": "x" * (9 * 1024 * 1024), "password": "y"})
    assert response.status_code == 413
    token = csrf_token(client, "/login")
    field = {"csrf_token": token, "username": "x" * (2 * 1024 * 1024), "password": PASSWORD}
    assert client.post("/login", data=field).status_code in (400, 413)
    assert client.get("/account").status_code == 302


def test_the_users_table_never_holds_a_password(coop: Site) -> None:
    with coop.instance.engine.connect() as conn:
        rows = conn.execute(select(schema.users)).all()
    assert rows and all(PASSWORD not in str(tuple(r)) for r in rows)
    with coop.instance.engine.begin() as conn:
        conn.execute(update(schema.users).values(active=True))
