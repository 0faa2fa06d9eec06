"""The administration portal (web/admin.py): users, keys, tokens and posters, through HTTP.

Every write goes through the real forms with real CSRF tokens; after each test that
writes, the whole ledger is audited (``check_ledger``), and refused writes are shown to
change nothing (``dump`` of the ledger's tables, the users table and the key files).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from typing import Any

import pypdfium2 as pdfium  # type: ignore[import-untyped]
import pytest
from flask.testing import FlaskClient
from pyzbar import pyzbar  # type: ignore[import-untyped]
from sqlalchemy import select, text

from ledger import demo, schema
from ledger.domain.projects import projects
from ledger.entry import Entry
from ledger.errors import ConfigError
from ledger.instance import Instance
from qr.urls import hash_prefix
from tests.conftest import Site
from tests.helpers import check_ledger, dump, new_signer
from tests.web.portal import PASSWORD, add_user, csrf_token, login, post_form
from tests.web.support import ModuleSite, make_site, register
from web.auth import role_required
from web.demo_users import DEMO_USERS, ensure_demo_users
from web.users import create_user, get_user

ADMIN = "boss"
_SECRET_RE = re.compile(r'<p class="secret"><code>([^<]+)</code></p>')


def _producer_write() -> tuple[str, int]:
    """What any producer portal write does: sign with the user's key and append."""
    from web.signing import append

    [entry] = append([("note", {"text": "a producer's remark"})])
    return str(entry.seq), 201


@pytest.fixture
def portal(site: Site) -> Site:
    """The site with an administrator account ``boss`` bound to the genesis ``admin`` key,
    and a producer-style write at ``/_test/producer-write`` (added before any request)."""
    site.app.add_url_rule(
        "/_test/producer-write",
        "test_producer_write",
        role_required("producer")(_producer_write),
        methods=["POST"],
    )
    create_user(site.instance.engine, ADMIN, "Administrator", PASSWORD, "admin", log_n=4)
    return site


def signed_in(app: Any, username: str, password: str = PASSWORD) -> FlaskClient:
    """A client signed in as ``username`` that reads the site in English (the assertions'
    language, whatever the Chinese catalogue says)."""
    client = english(app.test_client())
    login(client, username, password)
    return client


def english(client: FlaskClient) -> FlaskClient:
    client.set_cookie("lang", "en")
    return client


@pytest.fixture
def admin(portal: Site) -> FlaskClient:
    return signed_in(portal.app, ADMIN)


def users_table(instance: Instance) -> list[tuple[Any, ...]]:
    with instance.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text("SELECT * FROM users ORDER BY username"))]


def snapshot(instance: Instance) -> tuple[Any, ...]:
    """Everything an admin write could change: ledger tables, users, key files."""
    return dump(instance.engine), users_table(instance), instance.keystore.author_names()


def page(response: Any) -> str:
    return str(response.get_data(as_text=True))


def newest(site: Site) -> Entry:
    log = site.log
    return log.entry(log.size() - 1)


def new_user_form(**overrides: str) -> dict[str, str]:
    form = {
        "username": "coop-li",
        "display_name": "李会计 Li",
        "key_mode": "new",
        "key_name": "",
        "existing_key": "",
        "role": "producer",
        "org": "讷河市老莱镇赤松茸种植专业合作社",
        "password": "",
        "repeat": "",
    }
    form.update(overrides)
    return form


# --- role checks -----------------------------------------------------------------------------

PAGES = ["/admin/", "/admin/users", "/admin/users/new", "/admin/keys", "/admin/keys/register"]
PAGES += ["/admin/tokens", "/admin/projects", f"/admin/users/{ADMIN}"]


def test_signed_out_is_sent_to_sign_in(portal: Site) -> None:
    client = english(portal.app.test_client())
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/login?next="), path


def test_other_roles_get_403_on_every_admin_page_and_write(portal: Site) -> None:
    add_user(portal.instance, portal.admin, "farmer", "producer")
    add_user(portal.instance, portal.admin, "checker", "auditor", "审计组")
    clients = {name: signed_in(portal.app, name) for name in ("farmer", "checker")}
    before = snapshot(portal.instance)  # after signing in (that records the last login)
    for username, client in clients.items():
        for path in PAGES:
            assert client.get(path).status_code == 403, (username, path)
        token = csrf_token(client, "/account")
        for path in ["/admin/users/new", "/admin/tokens", "/admin/keys/register"]:
            response = client.post(path, data={"csrf_token": token, **new_user_form()})
            assert response.status_code == 403, (username, path)
        assert (
            client.post("/admin/tokens", data={"csrf_token": token, "name": "t"}).status_code == 403
        )
    assert snapshot(portal.instance) == before


def test_dashboard_counts_and_organisations(portal: Site, admin: FlaskClient) -> None:
    add_user(portal.instance, portal.admin, "farmer", "producer", "南河县香菇专业合作社")
    add_user(
        portal.instance,
        portal.admin,
        "farmer2",
        "producer",
        "南河县香菇专业合作社",
        key_name="farmer2key",
    )
    response = admin.get("/admin/")
    assert response.status_code == 200
    html = page(response)
    assert "县扶贫办 County office" in html and "南河县香菇专业合作社" in html
    row = re.search(
        r"<td>南河县香菇专业合作社</td>\s*<td class=\"num\">(\d+)</td>.*?"
        r"<td class=\"num\">(\d+)</td>",
        html,
        re.S,
    )
    assert row is not None and row.groups() == ("2", "2")
    counts = dict(re.findall(r'data-count="(\w+)"><strong>(\d+)</strong>', html))
    assert counts == {
        "entries": str(portal.log.size()),
        "users": "3",  # boss, farmer, farmer2
        "keys_active": "3",
        "orgs": "2",
        "tokens": "0",
        "projects": "0",
    }


# --- users ------------------------------------------------------------------------------------


def test_create_user_with_a_new_key(portal: Site, admin: FlaskClient) -> None:
    size = portal.log.size()
    decomposed = unicodedata.normalize("NFD", "  Café 赤松茸合作社 ")
    response = post_form(admin, "/admin/users/new", new_user_form(org=decomposed))
    assert response.status_code == 200, page(response)
    assert response.headers["Cache-Control"] == "no-store"
    [password] = _SECRET_RE.findall(page(response))
    assert len(password) >= 10
    # The ledger has the registration, signed by the admin's key, the org trimmed and NFC.
    assert portal.log.size() == size + 1
    entry = newest(portal)
    assert entry.kind == "key.registered"
    assert entry.signed.key_ids() == (portal.admin.verifier.key_id,)
    assert entry.body["name"] == "coop-li" and entry.body["role"] == "producer"
    assert (
        entry.body["org"]
        == "Café 赤松茸合作社"
        == unicodedata.normalize("NFC", "Café 赤松茸合作社")
    )
    assert "coop-li" in portal.instance.keystore.author_names()
    # The user signs in with the shown password, has the key's role, and can sign.
    user = signed_in(portal.app, "coop-li", password)
    account = page(user.get("/account"))
    assert "Café 赤松茸合作社" in account and "coop-li+" in account
    written = post_form(user, "/_test/producer-write", {}, form_path="/account")
    assert written.status_code == 201
    new_key = next(k for k in portal.log.registered_keys() if k.name == "coop-li")
    assert new_key.vkey == entry.body["vkey"]
    assert portal.log.entry(int(page(written))).signed.key_ids() == (new_key.key_id,)
    check_ledger(portal.instance.engine)


def test_create_user_on_a_held_key_with_a_typed_password(portal: Site, admin: FlaskClient) -> None:
    signer = portal.instance.keystore.new_author("heyuan-coop", portal.instance.passphrase())
    portal.instance.sign_and_append(
        portal.log,
        "key.registered",
        {"name": "heyuan-coop", "vkey": signer.verifier.vkey, "role": "producer", "org": "东源县"},
        [portal.admin],
    )
    form_page = page(admin.get("/admin/users/new"))
    assert 'value="heyuan-coop"' in form_page
    size = portal.log.size()
    response = post_form(
        admin,
        "/admin/users/new",
        new_user_form(
            username="clerk.wang",
            key_mode="existing",
            existing_key="heyuan-coop",
            role="",
            org="",
            password="typed password 1",
            repeat="typed password 1",
        ),
    )
    assert response.status_code == 200, page(response)
    assert not _SECRET_RE.findall(page(response))  # a typed password is not shown back
    assert portal.log.size() == size  # nothing on the ledger: the key was registered already
    user = get_user(portal.instance.engine, "clerk.wang", portal.log.registered_keys())
    assert user is not None and user.role == "producer" and user.org == "东源县"
    login(english(portal.app.test_client()), "clerk.wang", "typed password 1")


def test_a_refused_registration_leaves_no_key_and_no_account(
    portal: Site, admin: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import web.signing

    real = web.signing.append

    def tampered(items: list[tuple[str, dict[str, Any]]]) -> list[Entry]:
        # What reaches the ledger is not what the form checked: the ledger's rules refuse it.
        return real([(kind, {**body, "role": "emperor"}) for kind, body in items])

    monkeypatch.setattr(web.signing, "append", tampered)
    before = snapshot(portal.instance)
    response = post_form(admin, "/admin/users/new", new_user_form())
    assert response.status_code == 400
    assert "The ledger refused the key registration" in page(response)
    assert "emperor" in page(response)
    assert snapshot(portal.instance) == before
    assert not (portal.instance.settings.instance / "keys" / "coop-li.key").exists()
    assert get_user(portal.instance.engine, "coop-li", []) is None
    check_ledger(portal.instance.engine)


def test_an_account_that_cannot_be_made_after_registration_is_reported(
    portal: Site, admin: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user name taken between the check and the insert (a race): the key stays registered
    and held, the page names it, and no second account appears."""
    import web.admin

    form_page = csrf_token(admin, "/admin/users/new")
    monkeypatch.setattr(web.admin, "get_user", lambda *_args: None)
    response = admin.post(
        "/admin/users/new", data={"csrf_token": form_page, **new_user_form(username=ADMIN)}
    )
    assert response.status_code == 400
    entry = newest(portal)
    assert entry.kind == "key.registered" and entry.body["name"] == ADMIN
    assert f"Key {ADMIN} was registered (entry {entry.seq})" in page(response)
    assert ADMIN in portal.instance.keystore.author_names()  # registered: the file stays
    assert [r[0] for r in users_table(portal.instance)] == [ADMIN]
    check_ledger(portal.instance.engine)


def test_a_missing_csrf_token_is_refused_and_writes_nothing(
    portal: Site, admin: FlaskClient
) -> None:
    farmer = add_user(portal.instance, portal.admin, "farmer", "producer")
    before = snapshot(portal.instance)
    writes: list[tuple[str, dict[str, str]]] = [
        ("/admin/users/new", new_user_form()),
        (
            "/admin/keys/register",
            {"vkey": new_signer("x").verifier.vkey, "role": "producer", "org": "x"},
        ),
        (f"/admin/keys/{farmer.verifier.key_id}/revoke", {"reason": "lost"}),
        ("/admin/tokens", {"name": "erp"}),
        ("/admin/users/farmer/deactivate", {}),
        ("/admin/users/farmer/password", {"password": "0123456789ab", "repeat": "0123456789ab"}),
    ]
    for path, data in writes:
        assert admin.post(path, data=data).status_code == 400, path
        bad = admin.post(path, data={**data, "csrf_token": "forged"})
        assert bad.status_code == 400, path
    assert snapshot(portal.instance) == before


def test_deactivation_ends_the_users_session(portal: Site, admin: FlaskClient) -> None:
    add_user(portal.instance, portal.admin, "farmer", "producer")
    farmer = signed_in(portal.app, "farmer")
    assert farmer.get("/account").status_code == 200
    response = post_form(
        admin, "/admin/users/farmer/deactivate", {}, form_path="/admin/users/farmer"
    )
    assert response.status_code == 302
    gone = farmer.get("/account")
    assert gone.status_code == 302 and gone.headers["Location"].startswith("/login")
    refused = post_form(
        english(portal.app.test_client()), "/login", {"username": "farmer", "password": PASSWORD}
    )
    assert refused.status_code == 400
    user_page = page(admin.get("/admin/users/farmer"))
    assert '<span class="badge bad">deactivated</span>' in user_page
    assert "This account is deactivated" in user_page
    post_form(admin, "/admin/users/farmer/reactivate", {}, form_path="/admin/users/farmer")
    login(english(portal.app.test_client()), "farmer")


def test_an_admin_cannot_deactivate_themselves(portal: Site, admin: FlaskClient) -> None:
    token = csrf_token(admin, "/admin/users")
    response = admin.post(f"/admin/users/{ADMIN}/deactivate", data={"csrf_token": token})
    assert response.status_code == 302
    assert get_user(portal.instance.engine, ADMIN, []).active  # type: ignore[union-attr]
    assert admin.get("/admin/").status_code == 200


def test_password_reset(portal: Site, admin: FlaskClient) -> None:
    add_user(portal.instance, portal.admin, "farmer", "producer")
    farmer = signed_in(portal.app, "farmer")
    form_path = "/admin/users/farmer"
    # Too short, or the two differ: refused, nothing changes.
    before = users_table(portal.instance)
    for data in (
        {"password": "short", "repeat": "short"},
        {"password": "long enough 1", "repeat": "long enough 2"},
    ):
        response = post_form(admin, "/admin/users/farmer/password", data, form_path=form_path)
        assert response.status_code == 400
        assert "A password has 10–256 characters." in page(response) or "differ" in page(response)
    assert users_table(portal.instance) == before
    assert farmer.get("/account").status_code == 200
    # Typed: the old password stops working, the user's session ends.
    response = post_form(
        admin,
        "/admin/users/farmer/password",
        {"password": "brand new pass", "repeat": "brand new pass"},
        form_path=form_path,
    )
    assert response.status_code == 302
    assert farmer.get("/account").status_code == 302
    assert (
        post_form(
            english(portal.app.test_client()),
            "/login",
            {"username": "farmer", "password": PASSWORD},
        ).status_code
        == 400
    )
    login(english(portal.app.test_client()), "farmer", "brand new pass")
    # Generated: shown once, and it works.
    response = post_form(admin, "/admin/users/farmer/password", {}, form_path=form_path)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    [generated] = _SECRET_RE.findall(page(response))
    login(english(portal.app.test_client()), "farmer", generated)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"username": "Bad Name"}, "lower-case letters"),
        ({"username": "x"}, "lower-case letters"),
        ({"password": "too short", "repeat": "too short"}, "A password has 10–256 characters."),
        ({"password": "long enough 1", "repeat": "long enough 2"}, "The two passwords differ."),
        ({"org": "   "}, "organisation"),
        ({"org": "x" * 201}, "organisation"),
        ({"role": "emperor"}, "Choose a role."),
        ({"role": ""}, "Choose a role."),
        ({"key_name": "bad name"}, "letters, digits"),
        ({"key_mode": "existing", "existing_key": "nosuchkey"}, "Choose one of the keys"),
        ({"display_name": ""}, "This field is required."),
        ({"username": ADMIN}, "exists already"),  # duplicate user name
        ({"key_name": "admin"}, "a key name is used once"),  # duplicate key (registered)
    ],
)
def test_bad_new_user_input_is_explained_and_writes_nothing(
    portal: Site, admin: FlaskClient, overrides: dict[str, str], message: str
) -> None:
    before = snapshot(portal.instance)
    response = post_form(admin, "/admin/users/new", new_user_form(**overrides))
    assert response.status_code == 400
    assert message in page(response).replace("&#39;", "'")
    assert snapshot(portal.instance) == before


def test_a_key_name_is_used_once(portal: Site, admin: FlaskClient) -> None:
    # A key file held here but never registered (a crashed attempt) blocks its name too.
    portal.instance.keystore.new_author("orphan", portal.instance.passphrase())
    before = snapshot(portal.instance)
    response = post_form(admin, "/admin/users/new", new_user_form(key_name="orphan"))
    assert response.status_code == 400
    assert "already holds a private key named orphan" in page(response)
    # A revoked key's name never returns (its old users would get the new key).
    farmer = add_user(portal.instance, portal.admin, "farmer", "producer")
    portal.instance.sign_and_append(
        portal.log, "key.revoked", {"key": farmer.verifier.key_id, "reason": "left"}, [portal.admin]
    )
    (portal.instance.settings.instance / "keys" / "farmer.key").unlink()
    before = snapshot(portal.instance)
    response = post_form(
        admin, "/admin/users/new", new_user_form(username="newfarmer", key_name="farmer")
    )
    assert response.status_code == 400
    assert "a key name is used once" in page(response)
    assert snapshot(portal.instance) == before


def test_users_list_shows_accounts_and_their_keys(portal: Site, admin: FlaskClient) -> None:
    add_user(
        portal.instance,
        portal.admin,
        "farmer",
        "producer",
        "南河县香菇专业合作社",
        display_name="<b>张三</b>",
    )
    html = page(admin.get("/admin/users"))
    assert "farmer" in html and "南河县香菇专业合作社" in html
    assert "&lt;b&gt;张三&lt;/b&gt;" in html and "<b>张三</b>" not in html  # escaped
    assert "never" in html  # farmer never signed in
    assert ADMIN in html
    # Each user's page is about that user, not the administrator looking at it.
    farmer = page(admin.get("/admin/users/farmer"))
    assert "<h1>&lt;b&gt;张三&lt;/b&gt; <code" in farmer and "Administrator <code" not in farmer
    assert "/admin/users/farmer/password" in farmer and "/admin/users/farmer/deactivate" in farmer
    assert "南河县香菇专业合作社" in farmer
    assert admin.get("/admin/users/nobody").status_code == 404


# --- keys -------------------------------------------------------------------------------------


def test_revoking_a_key_stops_its_users_signing(portal: Site, admin: FlaskClient) -> None:
    farmer_key = add_user(portal.instance, portal.admin, "farmer", "producer")
    farmer = signed_in(portal.app, "farmer")
    assert post_form(farmer, "/_test/producer-write", {}, form_path="/account").status_code == 201
    key_id = farmer_key.verifier.key_id
    key_page = page(admin.get(f"/admin/keys/{key_id}"))
    assert "farmer" in key_page and "can no longer sign" in key_page
    # A reason is required.
    before = snapshot(portal.instance)
    empty = post_form(
        admin, f"/admin/keys/{key_id}/revoke", {"reason": " "}, form_path=f"/admin/keys/{key_id}"
    )
    assert empty.status_code == 400 and "Say why the key is revoked." in page(empty)
    assert snapshot(portal.instance) == before
    response = post_form(
        admin,
        f"/admin/keys/{key_id}/revoke",
        {"reason": "手机丢失 lost phone"},
        form_path=f"/admin/keys/{key_id}",
    )
    assert response.status_code == 302
    entry = newest(portal)
    assert entry.kind == "key.revoked" and entry.body == {
        "key": key_id,
        "reason": "手机丢失 lost phone",
    }
    assert entry.signed.key_ids() == (portal.admin.verifier.key_id,)
    # The farmer's session goes on (they can read) but no write gets through.
    assert farmer.get("/account").status_code == 200
    size = portal.log.size()
    assert post_form(farmer, "/_test/producer-write", {}, form_path="/account").status_code == 403
    assert portal.log.size() == size
    revoked_page = page(admin.get(f"/admin/keys/{key_id}"))
    assert (
        "This key is revoked: these users can sign in and read, but can no longer sign"
        in revoked_page
    )
    assert "Revoke the key" not in revoked_page
    # Revoking again is refused (the form is gone, but a replayed POST is answered).
    again = post_form(
        admin, f"/admin/keys/{key_id}/revoke", {"reason": "again"}, form_path="/admin/keys"
    )
    assert again.status_code == 409 and portal.log.size() == size
    check_ledger(portal.instance.engine)


def test_an_admin_cannot_revoke_their_own_key(portal: Site, admin: FlaskClient) -> None:
    key_id = portal.admin.verifier.key_id
    assert "another administrator must revoke it" in page(admin.get(f"/admin/keys/{key_id}"))
    before = snapshot(portal.instance)
    response = post_form(
        admin, f"/admin/keys/{key_id}/revoke", {"reason": "oops"}, form_path="/admin/keys"
    )
    assert response.status_code == 400
    assert "You cannot revoke the key you are signed in with" in page(response)
    assert snapshot(portal.instance) == before


def test_register_a_pasted_vkey(portal: Site, admin: FlaskClient) -> None:
    outside = new_signer("heyuan-erp")
    response = post_form(
        admin,
        "/admin/keys/register",
        {"vkey": outside.verifier.vkey + "\n", "role": "producer", "org": "东源县蜜柚合作社"},
    )
    assert response.status_code == 302
    entry = newest(portal)
    assert entry.kind == "key.registered"
    assert entry.body == {
        "name": "heyuan-erp",
        "vkey": outside.verifier.vkey,
        "role": "producer",
        "org": "东源县蜜柚合作社",
    }
    assert entry.signed.key_ids() == (portal.admin.verifier.key_id,)
    listed = page(admin.get("/admin/keys"))
    assert outside.verifier.key_id in listed and "held by the organisation" in listed
    # Not held here: no portal user can be bound to it.
    assert 'value="heyuan-erp"' not in page(admin.get("/admin/users/new"))
    before = snapshot(portal.instance)
    bind = new_user_form(key_mode="existing", existing_key="heyuan-erp")
    refused = post_form(admin, "/admin/users/new", bind)
    assert refused.status_code == 400 and "Choose one of the keys" in page(refused)
    assert snapshot(portal.instance) == before
    check_ledger(portal.instance.engine)


@pytest.mark.parametrize(
    ("vkey", "message"),
    [
        ("not a key", "This is not a verifier key"),
        ("name+00000000+AAAA", "This is not a verifier key"),
        ("DUPLICATE", "This key is registered already"),
        ("SAME-NAME", "a key name is used once"),
        ("BAD-NAME", "breaks the key name rules"),
        ("", "This field is required."),
    ],
)
def test_bad_vkeys_are_explained_and_write_nothing(
    portal: Site, admin: FlaskClient, vkey: str, message: str
) -> None:
    vkey = {
        "DUPLICATE": portal.admin.verifier.vkey,
        "SAME-NAME": new_signer("admin").verifier.vkey,
        "BAD-NAME": new_signer("县/key").verifier.vkey,
    }.get(vkey, vkey)
    before = snapshot(portal.instance)
    response = post_form(
        admin, "/admin/keys/register", {"vkey": vkey, "role": "producer", "org": "合作社"}
    )
    assert response.status_code == 400
    assert message in page(response)
    assert snapshot(portal.instance) == before


# --- API tokens -------------------------------------------------------------------------------


def test_tokens_create_use_revoke(portal: Site, admin: FlaskClient) -> None:
    from tests.web.support import note_json

    response = post_form(admin, "/admin/tokens", {"name": "heyuan-erp"})
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    [secret] = _SECRET_RE.findall(page(response))
    assert secret.startswith("syt_")
    listed = page(admin.get("/admin/tokens"))
    assert "heyuan-erp" in listed and secret not in listed
    api = english(portal.app.test_client())
    body = note_json(portal.log, "from the co-op's system", portal.admin)
    posted = api.post("/api/v1/entries", json=body, headers={"Authorization": f"Bearer {secret}"})
    assert posted.status_code == 201, posted.get_json()
    # A second token of the same name, a bad name: explained, nothing made.
    before = snapshot(portal.instance)
    dup = post_form(admin, "/admin/tokens", {"name": "heyuan-erp"})
    assert dup.status_code == 400 and "exists already" in page(dup)
    bad = post_form(admin, "/admin/tokens", {"name": "no spaces please"})
    assert bad.status_code == 400 and "letters, digits" in page(bad)
    assert snapshot(portal.instance) == before
    revoked = post_form(admin, "/admin/tokens/heyuan-erp/revoke", {}, form_path="/admin/tokens")
    assert revoked.status_code == 302
    again = note_json(portal.log, "after revocation", portal.admin)
    refused = api.post("/api/v1/entries", json=again, headers={"Authorization": f"Bearer {secret}"})
    assert refused.status_code == 401
    assert "revoked" in page(admin.get("/admin/tokens"))
    check_ledger(portal.instance.engine)


# --- posters and demo users (one small demo for the module) -----------------------------------


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleSite]:
    with make_site(tmp_path_factory.mktemp("admin-demo")) as made:
        demo.load_demo(made.instance, households=40)
        ensure_demo_users(made.instance, PASSWORD, log_n=4)
        yield made


def decode_pdf(pdf: bytes, dpi: int = 200) -> list[str]:
    document = pdfium.PdfDocument(pdf)
    try:
        found: list[str] = []
        for pdf_page in document:
            image = pdf_page.render(scale=dpi / 72).to_pil().convert("L")
            found += [d.data.decode() for d in pyzbar.decode(image) if d.type == "QRCODE"]
        return found
    finally:
        document.close()


def pdf_size_mm(pdf: bytes) -> tuple[int, int]:
    document = pdfium.PdfDocument(pdf)
    try:
        width, height = document[0].get_size()
        return round(width / 72 * 25.4), round(height / 72 * 25.4)
    finally:
        document.close()


def test_project_posters_download_and_their_code_opens_the_project(demo_site: ModuleSite) -> None:
    with demo_site.instance.engine.connect() as conn:
        project_id, registered = conn.execute(
            select(projects.c.id, projects.c.registered_seq).order_by(projects.c.id).limit(1)
        ).one()
        count = len(conn.execute(select(projects.c.id)).all())
    admin = signed_in(demo_site.app, "admin")
    listing = page(admin.get("/admin/projects"))
    assert listing.count("PDF A4") == count and count > 0
    response = admin.get(f"/admin/projects/{project_id}/notice.pdf?size=A4")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    pdf = response.get_data()
    assert pdf.startswith(b"%PDF-") and pdf_size_mm(pdf) == (210, 297)
    leaf = demo_site.log.entry(registered).leaf_hash()
    assert decode_pdf(pdf) == [f"https://localhost/p/{project_id}?h={hash_prefix(leaf)}"]
    a3 = admin.get(f"/admin/projects/{project_id}/notice.pdf?size=A3")
    assert a3.status_code == 200 and pdf_size_mm(a3.get_data()) == (297, 420)
    assert admin.get(f"/admin/projects/{project_id}/notice.pdf?size=A5").status_code == 400
    assert admin.get("/admin/projects/NO-SUCH/notice.pdf").status_code == 404
    # The configured public host wins over the request's.
    demo_site.app.config["SUYUAN_PUBLIC_HOST"] = "trace.example.cn"
    try:
        hosted = admin.get(f"/admin/projects/{project_id}/notice.pdf")
    finally:
        del demo_site.app.config["SUYUAN_PUBLIC_HOST"]
    assert decode_pdf(hosted.get_data()) == [
        f"https://trace.example.cn/p/{project_id}?h={hash_prefix(leaf)}"
    ]
    farmer = signed_in(demo_site.app, "coop-nehe")
    assert farmer.get(f"/admin/projects/{project_id}/notice.pdf").status_code == 403


def test_demo_users_are_idempotent_and_sign_in(demo_site: ModuleSite) -> None:
    before = users_table(demo_site.instance)
    again = ensure_demo_users(demo_site.instance, "another password", log_n=4)
    assert users_table(demo_site.instance) == before  # nothing changed, not even a password
    assert [u for u, _r, _o in again] == [u for u, _k, _d in DEMO_USERS]
    roles = {u: r for u, r, _o in again}
    assert roles == {
        "admin": "admin",
        "auditor": "auditor",
        "coop-nehe": "producer",
        "finance-nehe": "finance_officer",
        "township-laolai": "township_approver",
    }
    orgs = {u: o for u, _r, o in again}
    assert orgs["coop-nehe"] == demo.NH_MUSHROOM_COOPS[0]
    for username in roles:
        client = demo_site.app.test_client()
        response = login(client, username)
        assert response.headers["Location"] != "/account", username  # a portal, not the fallback
    admin = signed_in(demo_site.app, "admin")
    assert admin.get("/admin/").status_code == 200
    with demo_site.instance.engine.connect() as conn:
        bound = dict(conn.execute(select(schema.users.c.username, schema.users.c.key_name)).all())
    assert bound["coop-nehe"] == "demo-hl-nh-coop-csr1"


def test_demo_users_need_the_demo(site: Site) -> None:
    with pytest.raises(ConfigError, match="demo-auditor"):
        ensure_demo_users(site.instance, PASSWORD, log_n=4)
    assert users_table(site.instance) == []


def test_admin_writes_are_rate_limited(portal: Site) -> None:
    from tests.helpers import TEST_CONFIG
    from web import create_app

    app = create_app({**TEST_CONFIG, "RATELIMIT_ENABLED": True, "SUYUAN_WRITE_LIMIT": "2 per hour"})
    client = signed_in(app, ADMIN)
    statuses = [
        post_form(client, "/admin/tokens", {"name": "bad name"}).status_code for _ in range(3)
    ]
    assert statuses == [400, 400, 429]
    assert client.get("/admin/tokens").status_code == 200  # reading is not limited
    assert tokens_made(portal) == []


def tokens_made(site: Site) -> list[str]:
    with site.instance.engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT name FROM api_tokens"))]


def test_a_key_whose_name_holds_a_slash_can_be_opened_and_revoked(
    portal: Site, admin: FlaskClient
) -> None:
    """Signed-note key names may hold ``/`` (a key registered by the CLI or the API)."""
    signer = register(portal.log, portal.admin, "county/finance-2", "producer")
    key_id = signer.verifier.key_id
    assert "/" in key_id
    assert "county/finance-2" in page(admin.get(f"/admin/keys/{key_id}"))
    response = post_form(
        admin,
        f"/admin/keys/{key_id}/revoke",
        {"reason": "moved to another office"},
        form_path=f"/admin/keys/{key_id}",
    )
    assert response.status_code == 302
    entry = newest(portal)
    assert entry.kind == "key.revoked" and entry.body["key"] == key_id
    assert admin.get("/admin/keys/county/no-such-key+00000000").status_code == 404
