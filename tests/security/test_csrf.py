"""Forged requests and stolen sessions.

* Every POST route of the portals (``app.url_map``, all but the token-authenticated API and
  the log) refuses a post without a CSRF token and one with a token from another session
  (another visitor's, or the same user's other sign-in), and nothing changes: not the ledger,
  the users, the drafts, the API tokens nor the blob store.
* The API never takes a session cookie for authority: a signed-in browser cannot be made
  to append or upload through it.
* Sessions: a cookie from before sign-in, or one an attacker chose, is never the one after;
  signing out makes every copy of the old cookie worthless; brute force is limited.
"""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient
from werkzeug.routing import Rule

from tests.helpers import TEST_CONFIG
from tests.security.sitekit import GTIN, LOT_URL, Hostile, snapshot
from tests.web.portal import PASSWORD, add_user, csrf_token, login
from tests.web.support import note_json

#: Who posts to each portal's routes (a user the route is meant for).
POSTER = {"producer": "prod", "officials": "fin", "admin": "adm", "auditor": "aud", "auth": "prod"}
COOKIE = "suyuan_session"


def _portal_posts(h: Hostile) -> list[Rule]:
    rules = [
        r
        for r in h.site.app.url_map.iter_rules()
        if r.methods & {"POST", "PUT", "PATCH", "DELETE"}
        and r.endpoint.partition(".")[0] not in ("api", "log")
    ]
    assert not [r for r in rules if r.endpoint.partition(".")[0] not in POSTER], rules
    return rules


def _target(h: Hostile, rule: Rule) -> tuple[str, dict[str, Any]]:
    """The URL (real ids: the hostile draft, key and users) and plausible data for a route."""
    values = {
        "draft_id": h.drafts[0],
        "key_id": h.key_ids[0],
        "username": "prod2",
        "name": "erp-1",
    }
    url = rule.rule
    for arg in rule.arguments:
        url = url.replace(f"<{arg}>", quote(values[arg], safe=""))
    if rule.endpoint.startswith("producer."):
        url += f"?lot={quote(LOT_URL)}"
    data = {
        "reason": "forged",
        "note": "forged",
        "name": "forged-token",
        "username": "prod",
        "password": PASSWORD,
        "vkey": "forged+00000000+AAAA",
        "current": PASSWORD,
        "new": "a forged new password",
        "repeat": "a forged new password",
        "allocation": "X-ALLOC-1",
        "amount": "1",
        "confirm": "1",
        "gtin": GTIN,
        "batch": f"|{LOT_URL}",
        "step": "shipping:in_transit",
        "evidence": (io.BytesIO(b"forged"), "forged.pdf"),
    }
    return url, data


def _poster(h: Hostile, rule: Rule) -> FlaskClient:
    blueprint = rule.endpoint.partition(".")[0]
    return h.client(None if rule.endpoint == "auth.login" else POSTER[blueprint])


def test_every_portal_post_needs_this_sessions_csrf_token(hostile: Hostile) -> None:
    rules = _portal_posts(hostile)
    assert len(rules) >= 20
    # The attacker's own session (another account) and the victim's second sign-in.
    others = {name: hostile.client(name) for name in ("prod2", "prod", "adm", "fin", "aud")}
    victims = {rule.endpoint: _poster(hostile, rule) for rule in rules}
    foreign = {name: csrf_token(client, "/account") for name, client in others.items()}
    foreign[None] = csrf_token(hostile.client(), "/login")  # type: ignore[index]
    before = snapshot(hostile.instance)
    refused: list[str] = []
    for rule in rules:
        url, data = _target(hostile, rule)
        client = victims[rule.endpoint]
        poster = None if rule.endpoint == "auth.login" else POSTER[rule.endpoint.partition(".")[0]]
        attempts = {
            "no token": {},
            "empty token": {"csrf_token": ""},
            "another user's token": {
                "csrf_token": foreign["prod2" if poster != "prod2" else "adm"]
            },
            "own other session's token": {"csrf_token": foreign[poster]},  # type: ignore[index]
        }
        for what, token in attempts.items():
            sent = {**data, **token}
            if "evidence" in sent:
                sent["evidence"] = (io.BytesIO(b"forged"), "forged.pdf")
            response = client.post(url, data=sent, content_type="multipart/form-data")
            body = response.get_data(as_text=True)
            if response.status_code != 400 or "CSRF" not in body:
                refused.append(f"{rule.endpoint} {url} with {what}: {response.status_code}")
        assert snapshot(hostile.instance) == before, rule.endpoint
    assert not refused, "\n".join(refused)
    # The same kind of post with the session's own token gets past CSRF to the view's own
    # checks (aimed at things that do not exist, so that nothing is written): the refusals
    # above are about the token.
    for rule in rules:
        if rule.endpoint in ("auth.logout", "auditor.verify_start"):
            continue
        url = rule.rule
        for arg in rule.arguments:
            url = url.replace(f"<{arg}>", "no-such-thing")
        if rule.endpoint.startswith("producer."):
            url += "?lot=NO-SUCH-LOT"
        client = victims[rule.endpoint]
        form = "/login" if rule.endpoint == "auth.login" else "/account"
        data = {"csrf_token": csrf_token(client, form), "name": "no spaces allowed", "new": "x"}
        response = client.post(url, data=data)
        assert response.status_code < 500, (rule.endpoint, response.status_code)
        assert "CSRF" not in response.get_data(as_text=True), rule.endpoint
    assert snapshot(hostile.instance) == before


def test_a_token_issued_before_sign_in_dies_with_that_session(hostile: Hostile) -> None:
    client = hostile.client()
    planted = csrf_token(client, "/login")
    login(client, "prod")
    response = client.post("/logout", data={"csrf_token": planted})
    assert response.status_code == 400 and "CSRF" in response.get_data(as_text=True)
    assert client.get("/account").status_code == 200  # still signed in


def test_the_api_takes_no_authority_from_a_session_cookie(hostile: Hostile) -> None:
    """Signed in as the administrator, a page on another site can make the browser post
    to the API with its cookies: the API wants a bearer token and refuses."""
    admin = hostile.client("adm")
    site = hostile.site
    before = snapshot(hostile.instance)
    body = note_json(site.log, "forged through the browser", site.admin)
    for response in [
        admin.post("/api/v1/entries", json=body),
        admin.post("/api/v1/entries", data={"statement": "x"}),
        admin.post("/api/v1/blobs?name=x.html&media_type=text/html", data=b"<b>forged</b>"),
        admin.post("/api/v1/entries", json=body, headers={"Authorization": "Bearer " + "x" * 40}),
    ]:
        assert response.status_code == 401, response.get_data(as_text=True)
        assert response.get_json()["error"]["code"] == "unauthorized"
    assert snapshot(hostile.instance) == before


# --- sessions -----------------------------------------------------------------------------------


def _cookie(client: FlaskClient) -> str | None:
    found = client.get_cookie(COOKIE)
    return found.value if found else None


def test_the_session_cookie_changes_at_sign_in(hostile: Hostile) -> None:
    client = hostile.client()
    csrf_token(client, "/login")  # an anonymous session (it holds the CSRF secret)
    before = _cookie(client)
    assert before
    login(client, "prod")
    after = _cookie(client)
    assert after and after != before
    # the anonymous cookie, replayed, is no one's session
    replay = hostile.site.app.test_client()
    replay.set_cookie(COOKIE, before)
    assert replay.get("/account").status_code == 302


@pytest.mark.parametrize(
    "chosen", ["attacker-chosen", "eyJ1c2VyIjoicHJvZCIsInYiOjF9", "eyJ1c2VyIjoicHJvZCJ9.x.y"]
)
def test_an_attacker_chosen_cookie_is_never_adopted(hostile: Hostile, chosen: str) -> None:
    """A session id planted by an attacker (a sibling domain, a shared computer) — even one
    spelling a signed-in session's content — is neither honoured nor kept at sign-in."""
    client = hostile.site.app.test_client()
    client.set_cookie(COOKIE, chosen)
    assert client.get("/account").status_code == 302
    login(client, "prod")
    assert _cookie(client) not in (None, chosen)
    victim_cookie = _cookie(client)
    attacker = hostile.site.app.test_client()
    attacker.set_cookie(COOKIE, chosen)
    assert attacker.get("/account").status_code == 302
    assert victim_cookie != chosen


def test_signing_out_makes_a_copied_cookie_worthless(hostile: Hostile) -> None:
    add_user(hostile.instance, hostile.site.admin, "leaver", "producer", hostile.orgs["garlic"])
    client = hostile.client("leaver")
    stolen = _cookie(client)
    assert stolen
    thief = hostile.site.app.test_client()
    thief.set_cookie(COOKIE, stolen)
    assert thief.get("/account").status_code == 200  # the copy works while the session lives
    token = csrf_token(client, "/account")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/account").status_code == 302
    assert thief.get("/account").status_code == 302
    assert thief.get("/producer/").status_code == 302
    login(client, "leaver")  # and the user can sign in again
    assert client.get("/producer/").status_code == 200


def test_sign_in_is_limited_per_address_whatever_the_account(
    hostile: Hostile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limit is per client address (web/auth.py keys Flask-Limiter on it): guessing
    across many accounts from one address is stopped as fast as guessing one; another
    address is unaffected."""
    from web import create_app
    from web.extensions import limiter

    # One Limiter serves every app of the process and init_app switches it on: switch it
    # back off afterwards, for the other tests' site.
    monkeypatch.setattr(limiter, "enabled", limiter.enabled)
    for name, value in hostile.instance.env.items():
        if name.startswith("SUYUAN_"):
            monkeypatch.setenv(name, value)
    app = create_app({**TEST_CONFIG, "RATELIMIT_ENABLED": True, "SUYUAN_LOGIN_LIMIT": "3/minute"})

    def attempt(client: FlaskClient, user: str, address: str) -> int:
        token = csrf_token(client, "/login")
        return client.post(
            "/login",
            data={"csrf_token": token, "username": user, "password": "guess guess guess"},
            environ_base={"REMOTE_ADDR": address},
        ).status_code

    attacker = app.test_client()
    statuses = [attempt(attacker, user, "198.51.100.7") for user in ("prod", "fin", "adm", "aud")]
    assert statuses == [400, 400, 400, 429]
    assert attempt(app.test_client(), "prod", "198.51.100.8") == 400
    # the limited address cannot sign in even with the right password
    token = csrf_token(attacker, "/login")
    right = attacker.post(
        "/login",
        data={"csrf_token": token, "username": "prod", "password": PASSWORD},
        environ_base={"REMOTE_ADDR": "198.51.100.7"},
    )
    assert right.status_code == 429
