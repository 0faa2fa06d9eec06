"""Privilege escalation is refused, and a refusal changes nothing.

* Every portal route (``app.url_map``) answers 403 to a signed-in user whose role it is not
  for, GET and POST alike (with a valid CSRF token, so the refusal is the role's), and sends
  an anonymous visitor to sign in.  The roles are written out here, as the specification.
* A producer cannot post a disbursement: not through the officials' form, not through the
  API with a producer key.  One key cannot approve twice; a revoked key cannot sign; a
  finance officer's own draft cannot be approved by the same key again.
* One organisation cannot act on another's lot through any of the lot forms.
* Drafts: a guessed id is 404, another officer's draft cannot be withdrawn or re-appended.
"""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from flask.testing import FlaskClient

from ledger.entry import make_statement, sign_statement
from ledger.note import Signer
from tests.helpers import check_ledger, now
from tests.security.sitekit import GTIN, LOT_MARKUP, LOT_URL, ROLES, Hostile, snapshot
from tests.web.portal import add_user, csrf_token

_tokens = itertools.count()
VERIFY = {"auditor.verify_index", "auditor.verify_start", "auditor.verify_job"}
VERIFY |= {"auditor.verify_job_json"}
READERS = {
    "auditor",
    "admin",
    "finance_officer",
    "county_approver",
    "township_approver",
    "village_approver",
}
OFFICIALS = {"finance_officer", "village_approver", "township_approver", "county_approver"}
OFFICIALS |= {"auditor"}  # a policy may ask an auditor to co-sign


def allowed(endpoint: str) -> set[str] | None:
    """The roles a portal endpoint is for (None: not a portal endpoint)."""
    blueprint = endpoint.partition(".")[0]
    if blueprint == "producer":
        return {"producer"}
    if blueprint == "admin":
        return {"admin"}
    if blueprint == "auditor":
        return {"auditor", "admin"} if endpoint in VERIFY else READERS
    if endpoint in ("officials.new_draft", "officials.withdraw"):
        return {"finance_officer"}
    if blueprint == "officials":
        return OFFICIALS
    return None


def _url(h: Hostile, rule: Any) -> str:
    values = {
        "draft_id": h.drafts[0],
        "key_id": h.key_ids[0],
        "username": "prod2",
        "name": "balances",
        "project_id": h.projects[0],
        "job_id": "a" * 32,
        "size": str(h.instance.reader().size()),
        "fmt": "svg",
    }
    url = rule.rule
    for arg in rule.arguments:
        url = url.replace(f"<{arg}>", quote(values[arg], safe="")).replace("<int:size>", "1")
    if rule.endpoint.startswith("producer."):
        url += "?" + urlencode({"gtin": GTIN, "lot": LOT_MARKUP})
    return url


def test_every_portal_route_refuses_the_roles_it_is_not_for(hostile: Hostile) -> None:
    rules = [r for r in hostile.site.app.url_map.iter_rules() if allowed(r.endpoint) is not None]
    assert len(rules) >= 40
    clients = {role: hostile.client(name) for role, name in ROLES.items()}
    tokens = {role: csrf_token(client, "/account") for role, client in clients.items()}
    anonymous = hostile.client()
    anonymous_token = csrf_token(anonymous, "/login")
    before = snapshot(hostile.instance)
    wrong: list[str] = []
    checked = 0
    for rule in rules:
        url = _url(hostile, rule)
        for role, client in clients.items():
            if role in (allowed(rule.endpoint) or set()):
                continue
            if "GET" in (rule.methods or ()):
                status = client.get(url).status_code
                checked += 1
                if status != 403:
                    wrong.append(f"GET {url} as {role}: {status}")
            if "POST" in (rule.methods or ()):
                data = {"csrf_token": tokens[role], "reason": "escalate", "amount": "1"}
                status = client.post(url, data=data).status_code
                checked += 1
                if status != 403:
                    wrong.append(f"POST {url} as {role}: {status}")
        method = "get" if "GET" in (rule.methods or ()) else "post"
        response = getattr(anonymous, method)(url, data={"csrf_token": anonymous_token})
        location = response.headers.get("Location", "")
        if response.status_code != 302 or not location.startswith("/login"):
            wrong.append(f"{method.upper()} {url} signed out: {response.status_code} {location}")
    assert checked > 150
    assert not wrong, "\n".join(wrong)
    assert snapshot(hostile.instance) == before


# --- payments -----------------------------------------------------------------------------------


def _statement(h: Hostile, kind: str, body: dict[str, Any], *signers: Signer) -> dict[str, Any]:
    statement = make_statement(kind, body, h.site.log.origin, now())
    return sign_statement(statement, list(signers)).to_json()


def _api_post(h: Hostile, statement: dict[str, Any]) -> Any:
    from ledger.tokens import create_token

    token = create_token(h.instance.engine, f"priv-{next(_tokens)}")
    return h.site.app.test_client().post(
        "/api/v1/entries", json=statement, headers={"Authorization": f"Bearer {token}"}
    )


def _payment(number: int) -> dict[str, Any]:
    return {
        "id": f"X-PAY-{number}",
        "allocation": "X-ALLOC-1",
        "recipient": {"cooperative": "Co-op", "credit_code": "91350100M000100Y43"},
        "amount_fen": 100,
        "purpose": "industry_subsidy",
        "period": "2019",
    }


def test_a_producer_cannot_pay(hostile: Hostile) -> None:
    h = hostile
    author = h.instance.author
    prod, vill, town = (author(n) for n in ("prod", "vill", "town"))
    prod_client = h.clients["prod"]
    token = csrf_token(prod_client, "/account")
    before = snapshot(h.instance)
    form = {
        "csrf_token": token,
        "allocation": "X-ALLOC-1",
        "recipient_type": "cooperative",
        "org_name": "Co-op",
        "credit_code": "91350100M000100Y43",
        "amount": "1",
        "period": "2019",
    }
    assert prod_client.post("/officials/drafts/new", data=form).status_code == 403
    for number, signers in enumerate([(prod,), (prod, vill, town), (vill, town)]):
        response = _api_post(h, _statement(h, "fund.disbursed", _payment(number), *signers))
        assert response.status_code == 422, response.get_json()
        assert response.get_json()["error"]["code"] == "rule_violation"
    after = snapshot(h.instance)
    assert after["entries"] == before["entries"] and after["drafts"] == before["drafts"]
    check_ledger(h.instance.engine)


def test_one_key_signs_once(hostile: Hostile) -> None:
    """The village key signing twice does not make two approvals (API), and the finance
    officer cannot approve their own draft (portal)."""
    h = hostile
    fin, vill = h.instance.author("fin"), h.instance.author("vill")
    before = snapshot(h.instance)
    twice = _statement(h, "fund.disbursed", _payment(10), fin, vill, vill)
    response = _api_post(h, twice)
    assert response.status_code in (400, 422), response.get_json()
    fin_client = h.client("fin")
    draft = f"/officials/drafts/{h.drafts[0]}"
    own = fin_client.post(f"{draft}/approve", data={"csrf_token": csrf_token(fin_client, draft)})
    assert own.status_code == 409
    assert "already signed" in own.get_data(as_text=True)
    after = snapshot(h.instance)
    assert after["entries"] == before["entries"] and after["drafts"] == before["drafts"]


@pytest.fixture
def revoked(hostile: Hostile) -> tuple[FlaskClient, Signer]:
    """A village approver signed in, whose key is then revoked."""
    name = f"vrev{len(hostile.instance.reader().registered_keys())}"
    signer = add_user(hostile.instance, hostile.site.admin, name, "village_approver", "Village")
    client = hostile.client(name)
    log = hostile.instance.writer()
    key = {"key": signer.verifier.key_id, "reason": "left the job"}
    hostile.instance.sign_and_append(log, "key.revoked", key, [hostile.site.admin])
    return client, signer


def test_a_revoked_key_cannot_sign(hostile: Hostile, revoked: tuple[FlaskClient, Signer]) -> None:
    h = hostile
    client, signer = revoked
    fin, town = h.instance.author("fin"), h.instance.author("town")
    before = snapshot(h.instance)
    draft = f"/officials/drafts/{h.drafts[0]}"
    token = csrf_token(client, "/account")
    assert client.post(f"{draft}/approve", data={"csrf_token": token}).status_code == 403
    assert client.post(
        f"{draft}/decline", data={"csrf_token": token, "reason": "no"}
    ).status_code == (403)
    for statement in [
        _statement(h, "note", {"text": "still here"}, signer),
        _statement(h, "fund.disbursed", _payment(20), fin, signer, town),
    ]:
        response = _api_post(h, statement)
        assert response.status_code == 422, response.get_json()
        assert "revoked" in response.get_json()["error"]["message"]
    after = snapshot(h.instance)
    assert after["entries"] == before["entries"] and after["drafts"] == before["drafts"]


# --- lots of another organisation ---------------------------------------------------------------


def test_no_lot_form_reaches_another_organisations_lot(hostile: Hostile) -> None:
    """prod2 (another co-op) against prod's lots: every producer route that names a lot."""
    other = hostile.client("prod2")
    token = csrf_token(other, "/producer/")
    before = snapshot(hostile.instance)
    routes = [
        r
        for r in hostile.site.app.url_map.iter_rules()
        if r.endpoint.startswith("producer.")
        and r.endpoint not in ("producer.dashboard", "producer.register")
    ]
    assert len(routes) >= 7
    victims = [(GTIN, LOT_MARKUP), ("", LOT_URL)]
    for rule in routes:
        for gtin, lot in victims:
            query = urlencode({"gtin": gtin, "lot": lot})
            url = rule.rule.replace("<fmt>", "svg") + "?" + query
            if "GET" in (rule.methods or ()):
                assert other.get(url).status_code == 403, url
            if "POST" in (rule.methods or ()):
                ref = f"{gtin}|{lot}"
                data = {
                    "csrf_token": token,
                    "batch": ref,
                    "inputs-0-batch": ref,
                    "inputs-0-quantity": "1",
                    "outputs-0-lot": "STOLEN-9",
                    "outputs-0-quantity": "1",
                    "outputs-0-unit": "kg",
                    "rows-0-ref": ref,
                    "rows-0-copies": "1",
                    "step": "storing:active",
                    "reason": "not yours",
                    "review": "1",
                }
                assert other.post(url, data=data).status_code == 403, url
                # the lot named only in the body (the recall names it in the URL: 404 there)
                status = other.post(rule.rule, data=data).status_code
                assert status == (404 if rule.endpoint == "producer.recall" else 403), rule.rule
    assert snapshot(hostile.instance) == before


# --- drafts -------------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["approve", "decline", "withdraw", "append"])
def test_drafts_by_guessed_or_foreign_id(hostile: Hostile, action: str) -> None:
    h = hostile
    if "fin2" not in {u for u in _usernames(h)}:
        add_user(h.instance, h.site.admin, "fin2", "finance_officer", "Finance")
    fin2 = h.client("fin2")
    token = csrf_token(fin2, "/account")
    before = snapshot(h.instance)
    data = {"csrf_token": token, "reason": "mine now"}
    for guessed in ["0" * 16, h.drafts[0][:-1] + ("A" if h.drafts[0][-1] != "A" else "B")]:
        assert fin2.get(f"/officials/drafts/{guessed}").status_code == 404
        assert fin2.post(f"/officials/drafts/{guessed}/{action}", data=data).status_code == 404
    # another finance officer's draft: fin2 may look, but not withdraw or re-append it
    response = fin2.post(f"/officials/drafts/{h.drafts[0]}/{action}", data=data)
    expected = {"withdraw": 403, "append": 403, "approve": 409, "decline": 409}[action]
    assert response.status_code == expected, response.get_data(as_text=True)[:500]
    after = snapshot(h.instance)
    assert after["entries"] == before["entries"] and after["drafts"] == before["drafts"]


def _usernames(h: Hostile) -> list[str]:
    from sqlalchemy import select

    from ledger import schema

    with h.instance.engine.connect() as conn:
        return list(conn.execute(select(schema.users.c.username)).scalars())
