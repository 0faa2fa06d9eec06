"""The officials' portal (web/officials.py, web/drafts.py): a finance officer prepares a
payment, the approvers the allocation's policy lists co-sign it (双认定), and only then is it
appended — or refused by the ledger, which then stays exactly as it was.

One site serves the module (keys and accounts are the slow part); every test pays from an
allocation and programme of its own, so the tests do not depend on each other's payments.
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Iterator
from html import unescape
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from ledger.blobs import default_store
from ledger.note import Signer
from ledger.schema import drafts as drafts_table
from tests.helpers import check_ledger, dump
from tests.web.portal import add_user, csrf_token, signed_in
from tests.web.support import ModuleSite, make_site
from web import drafts

PLACE = {"province": "云南省", "city": "文山壮族苗族自治州", "county": "广南县"}
SOURCE = "S-2019-C"
NEW = "/officials/drafts/new"
_DRAFT_URL = re.compile(r"/officials/drafts/([A-Za-z0-9_-]+)$")
_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleSite]:
    with make_site(tmp_path_factory.mktemp("officials")) as made:
        if "officials" not in made.app.blueprints:
            from web import officials

            made.app.register_blueprint(officials.bp)
        keys = {
            "fin": add_user(made.instance, made.admin, "fin", "finance_officer", "广南县财政局"),
            "fin2": add_user(made.instance, made.admin, "fin2", "finance_officer", "广南县财政局"),
            "village": add_user(
                made.instance, made.admin, "village", "village_approver", "坡荷村民委员会"
            ),
            "village2": add_user(
                made.instance, made.admin, "village2", "village_approver", "那洒村民委员会"
            ),
            "township": add_user(
                made.instance, made.admin, "township", "township_approver", "城厢镇人民政府"
            ),
            "county": add_user(
                made.instance, made.admin, "county", "county_approver", "广南县扶贫办"
            ),
            "coop": add_user(made.instance, made.admin, "coop", "producer", "坡荷种植合作社"),
        }
        made.app.config["TEST_KEYS"] = keys
        append(made, "fund.source", source_body(SOURCE, 100_000_000), keys["fin"])
        yield made


def keys_of(site: ModuleSite) -> dict[str, Signer]:
    keys: dict[str, Signer] = site.app.config["TEST_KEYS"]
    return keys


def append(site: ModuleSite, kind: str, body: dict[str, Any], *signers: Signer) -> int:
    return site.instance.sign_and_append(site.log, kind, body, list(signers)).seq


def source_body(source_id: str, amount: int) -> dict[str, Any]:
    return {
        "id": source_id,
        "type": "central",
        "name": {"zh": "2019年中央财政专项扶贫资金", "en": "2019 central special fund"},
        "amount_fen": amount,
        "year": 2019,
        "payer": "财政部",
    }


def household(site: ModuleSite) -> str:
    """A newly registered household (signed by the village approver, as the rules want)."""
    code = f"GX-GN-{next(_numbers):06d}"
    body = {
        "code": code,
        "location": {**PLACE, "township": "城厢镇", "village": "坡荷村"},
        "members": 4,
        "causes": ["illness"],
        "year": 2016,
        "commitment": "cd" * 32,
    }
    append(site, "household.identified", body, keys_of(site)["village"])
    return code


def allocation(site: ModuleSite, amount: int, **policy: Any) -> str:
    """A new allocation of its own programme (so duplicate-payment rules never cross tests)."""
    number = next(_numbers)
    body: dict[str, Any] = {
        "id": f"A-{number}",
        "source": SOURCE,
        "amount_fen": amount,
        "purpose": "industry_subsidy",
        "programme": f"P-{number}",
        "name": {"zh": "2019年产业奖补", "en": "2019 industry subsidy"},
    }
    if policy:
        body["policy"] = policy
    append(site, "fund.allocated", body, keys_of(site)["fin"])
    return str(body["id"])


def pay_directly(site: ModuleSite, allocation_id: str, code: str, amount: int) -> int:
    """A payment signed outside the portal (fin + village + township), e.g. by another office."""
    keys = keys_of(site)
    body = {
        "id": f"D-{next(_numbers)}",
        "allocation": allocation_id,
        "recipient": {"household": code},
        "amount_fen": amount,
        "purpose": "industry_subsidy",
        "period": "2019",
    }
    return append(site, "fund.disbursed", body, keys["fin"], keys["village"], keys["township"])


def english(client: FlaskClient) -> FlaskClient:
    client.set_cookie("lang", "en")
    return client


def client_of(site: ModuleSite, username: str) -> FlaskClient:
    return english(signed_in(site.app, username))


def text_of(response: TestResponse) -> str:
    return unescape(response.get_data(as_text=True))


def post_draft(client: FlaskClient, **fields: Any) -> TestResponse:
    data = {
        "csrf_token": csrf_token(client, NEW),
        "recipient_type": "household",
        "period": "2019",
        **fields,
    }
    return client.post(NEW, data=data, content_type="multipart/form-data")


def draft_id(response: TestResponse) -> str:
    assert response.status_code == 302, text_of(response)[:2000]
    found = _DRAFT_URL.search(response.headers["Location"])
    assert found, response.headers["Location"]
    return found.group(1)


def act(client: FlaskClient, draft: str, action: str, **data: Any) -> TestResponse:
    path = f"/officials/drafts/{draft}"
    token = csrf_token(client, path)
    return client.post(f"{path}/{action}", data={"csrf_token": token, **data})


def stored(site: ModuleSite, draft: str) -> drafts.Draft:
    found = drafts.get(site.instance.engine, draft)
    assert found is not None
    return found


def count_drafts(site: ModuleSite) -> int:
    with site.instance.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(drafts_table)).scalar_one())


def prepared(site: ModuleSite, amount: str = "1500.50", **policy: Any) -> tuple[str, str, str]:
    """(allocation, household, draft id): a pending draft made through the form."""
    alloc = allocation(site, 1_000_000, **policy)
    code = household(site)
    fin = client_of(site, "fin")
    return alloc, code, draft_id(post_draft(fin, allocation=alloc, household=code, amount=amount))


# --- the whole path -----------------------------------------------------------------------------


def test_draft_village_township_appended(site: ModuleSite) -> None:
    alloc = allocation(site, 1_000_000)
    code = household(site)
    fin = client_of(site, "fin")
    form = fin.get(f"{NEW}?allocation={alloc}")
    assert form.status_code == 200
    assert f'<option selected value="{alloc}">' in form.get_data(as_text=True)
    size = site.log.size()
    document = b"%PDF-1.4 acceptance form"
    response = post_draft(
        fin,
        allocation=alloc,
        household=code,
        amount="2,000.05",
        reference="记-2019-07-0331",
        note="验收合格",
        evidence=[(io.BytesIO(document), "验收表.pdf", "application/pdf")],
    )
    draft = draft_id(response)
    assert site.log.size() == size  # a draft is not an entry
    pending = stored(site, draft)
    assert pending.status == drafts.PENDING
    assert pending.waiting == ("village_approver", "township_approver")
    assert pending.required == ("finance_officer", "village_approver", "township_approver")
    body = pending.body
    assert body["amount_fen"] == 200_005 and isinstance(body["amount_fen"], int)
    assert body["recipient"] == {"household": code}
    assert body["purpose"] == "industry_subsidy" and body["reference"] == "记-2019-07-0331"
    (doc,) = body["evidence"]
    assert default_store(site.instance.settings.instance).get(doc["sha256"]) == document
    assert doc["name"] == "验收表.pdf" and doc["size"] == len(document)
    assert pending.signed.key_ids() == (keys_of(site)["fin"].verifier.key_id,)

    # The village approver sees it waiting, with the trail, and signs.
    village = client_of(site, "village")
    board = text_of(village.get("/officials/"))
    assert body["id"] in board
    page = text_of(village.get(f"/officials/drafts/{draft}"))
    assert "Approve and sign" in page and "广南县财政局" in page and "坡荷村" in page
    assert "验收合格" in page and "10,000.00" in page  # the note; the allocation's amount
    assert "would accept this payment" in page
    response = act(village, draft, "approve")
    assert response.status_code == 302
    half = stored(site, draft)
    assert half.status == drafts.PENDING and half.waiting == ("township_approver",)
    assert half.signed.statement == pending.signed.statement  # the very same bytes
    assert len(half.signed.signatures) == 2
    assert body["id"] not in text_of(village.get("/officials/"))  # nothing left for the village
    assert site.log.size() == size

    # The township approver's signature completes it: appended, all or nothing.
    township = client_of(site, "township")
    assert body["id"] in text_of(township.get("/officials/"))
    response = act(township, draft, "approve")
    assert response.status_code == 302
    done = stored(site, draft)
    assert done.status == drafts.APPENDED and done.seq == size
    entry = site.log.entry(size)
    assert entry.kind == "fund.disbursed" and entry.body == body
    keys = keys_of(site)
    expected = {keys[n].verifier.key_id for n in ("fin", "village", "township")}
    assert set(entry.signed.key_ids()) == expected and len(entry.signed.signatures) == 3
    assert check_ledger(site.instance.engine).size == site.log.size()
    page = text_of(township.get(f"/officials/drafts/{draft}"))
    assert f"/e/{size}" in page and f"/n/{size}" in page
    board = text_of(fin.get("/officials/"))
    assert f'href="/e/{size}"' in board and f'href="/n/{size}"' in board


def test_policy_with_county_approval(site: ModuleSite) -> None:
    """The policy decides the roles: here a county approver alone, not the default pair."""
    _alloc, _code, draft = prepared(site, approvals=["county_approver"])
    assert stored(site, draft).waiting == ("county_approver",)
    village = client_of(site, "village")
    response = act(village, draft, "approve")
    assert response.status_code == 403
    assert "does not ask for a Village approver" in text_of(response)
    assert len(stored(site, draft).signed.signatures) == 1
    size = site.log.size()
    assert act(client_of(site, "county"), draft, "approve").status_code == 302
    assert stored(site, draft).seq == size
    assert check_ledger(site.instance.engine).size == size + 1


# --- refusals -------------------------------------------------------------------------------------


def test_overspend_refused_at_once_nothing_stored(site: ModuleSite) -> None:
    alloc = allocation(site, 100_000)  # 1,000.00 yuan
    code = household(site)
    fin = client_of(site, "fin")
    before, drafts_before = dump(site.instance.engine), count_drafts(site)
    response = post_draft(fin, allocation=alloc, household=code, amount="1000.01")
    assert response.status_code == 422
    page = text_of(response)
    assert "The ledger would refuse this payment" in page
    assert "exceeds what remains of allocation" in page and "100000 fen" in page
    assert count_drafts(site) == drafts_before
    assert dump(site.instance.engine) == before


def test_unregistered_household_refused_at_once(site: ModuleSite) -> None:
    alloc = allocation(site, 100_000)
    fin = client_of(site, "fin")
    drafts_before = count_drafts(site)
    response = post_draft(fin, allocation=alloc, household="GX-GN-999999", amount="10")
    assert response.status_code == 422
    assert "GX-GN-999999 is not registered" in text_of(response)
    assert count_drafts(site) == drafts_before


def test_form_errors_are_explained(site: ModuleSite) -> None:
    alloc = allocation(site, 100_000)
    fin = client_of(site, "fin")
    drafts_before = count_drafts(site)
    response = post_draft(fin, allocation=alloc, household="gx", amount="12.345", period="2019-13")
    assert response.status_code == 400
    page = text_of(response)
    assert "at most two decimals" in page and "12.345" in page
    assert "2019-13" in page and "capital letters" in page
    assert count_drafts(site) == drafts_before


def test_allocation_used_up_before_last_approval(site: ModuleSite) -> None:
    alloc = allocation(site, 300_000)
    code, other = household(site), household(site)
    fin = client_of(site, "fin")
    draft = draft_id(post_draft(fin, allocation=alloc, household=code, amount="2000"))
    assert act(client_of(site, "village"), draft, "approve").status_code == 302
    pay_directly(site, alloc, other, 200_000)  # another office pays from it meanwhile

    township = client_of(site, "township")
    page = text_of(township.get(f"/officials/drafts/{draft}"))
    assert "the ledger would refuse this payment" in page  # the page warns before signing
    before = dump(site.instance.engine)
    response = act(township, draft, "approve")
    assert response.status_code == 302
    refused = stored(site, draft)
    assert refused.status == drafts.REFUSED and refused.seq is None
    assert refused.reason is not None and "exceeds what remains of allocation" in refused.reason
    assert dump(site.instance.engine) == before  # nothing written to the ledger
    check_ledger(site.instance.engine)
    page = text_of(township.get(f"/officials/drafts/{draft}"))
    assert "the ledger refused the payment" in page and "exceeds what remains" in page
    assert draft in text_of(fin.get("/officials/"))  # the officer sees it among theirs
    assert act(township, draft, "approve").status_code == 409  # nothing left to sign


def test_one_key_signs_once(site: ModuleSite) -> None:
    _alloc, _code, draft = prepared(site)
    village = client_of(site, "village")
    assert act(village, draft, "approve").status_code == 302
    once = stored(site, draft)
    response = act(village, draft, "approve")
    assert response.status_code == 409
    assert "already signed this draft" in text_of(response)
    # another village approver's key cannot fill the role a second time either
    response = act(client_of(site, "village2"), draft, "approve")
    assert response.status_code == 409 and "already given by another key" in text_of(response)
    # nor may a finance officer's second key (the policy lists no second finance officer)
    assert act(client_of(site, "fin2"), draft, "approve").status_code == 409
    assert stored(site, draft).signed == once.signed
    assert stored(site, draft).version == once.version


# --- who may do what ---------------------------------------------------------------------------


def test_producer_gets_403_everywhere(site: ModuleSite) -> None:
    _alloc, _code, draft = prepared(site)
    coop = client_of(site, "coop")
    for path in ("/officials/", NEW, f"/officials/drafts/{draft}"):
        assert coop.get(path).status_code == 403, path
    token = csrf_token(coop, "/account")
    for action in ("approve", "decline", "withdraw", "append"):
        response = coop.post(
            f"/officials/drafts/{draft}/{action}", data={"csrf_token": token, "reason": "no"}
        )
        assert response.status_code == 403, action
    response = coop.post(NEW, data={"csrf_token": token, "amount": "1"})
    assert response.status_code == 403
    assert stored(site, draft).version == 1 and stored(site, draft).status == drafts.PENDING


def test_signed_out_is_sent_to_login(site: ModuleSite) -> None:
    response = english(site.app.test_client()).get("/officials/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_missing_csrf_is_400_and_changes_nothing(site: ModuleSite) -> None:
    alloc, code, draft = prepared(site)
    village = client_of(site, "village")
    village.get(f"/officials/drafts/{draft}")
    assert village.post(f"/officials/drafts/{draft}/approve").status_code == 400
    assert village.post(f"/officials/drafts/{draft}/decline", data={"reason": "x"}).status_code == (
        400
    )
    fin = client_of(site, "fin")
    assert fin.post(f"/officials/drafts/{draft}/withdraw").status_code == 400
    drafts_before = count_drafts(site)
    response = fin.post(NEW, data={"allocation": alloc, "household": code, "amount": "5"})
    assert response.status_code == 400
    assert count_drafts(site) == drafts_before
    unchanged = stored(site, draft)
    assert unchanged.version == 1 and len(unchanged.signed.signatures) == 1


def test_withdraw(site: ModuleSite) -> None:
    _alloc, _code, draft = prepared(site)
    assert act(client_of(site, "fin2"), draft, "withdraw").status_code == 403  # not theirs
    size = site.log.size()
    fin = client_of(site, "fin")
    response = act(fin, draft, "withdraw", reason="金额有误")
    assert response.status_code == 302
    gone = stored(site, draft)
    assert gone.status == drafts.WITHDRAWN and gone.reason == "金额有误"
    assert gone.decided_by == "fin"
    village = client_of(site, "village")
    assert draft not in text_of(village.get("/officials/"))
    assert act(village, draft, "approve").status_code == 409
    assert act(fin, draft, "withdraw").status_code == 409
    assert site.log.size() == size


def test_decline(site: ModuleSite) -> None:
    _alloc, _code, draft = prepared(site)
    township = client_of(site, "township")
    response = act(township, draft, "decline", reason="")
    assert response.status_code == 400
    assert stored(site, draft).status == drafts.PENDING
    size = site.log.size()
    response = act(township, draft, "decline", reason="<b>户主已迁出</b>")
    assert response.status_code == 302
    declined = stored(site, draft)
    assert declined.status == drafts.DECLINED and declined.decided_by == "township"
    page = client_of(site, "fin").get(f"/officials/drafts/{draft}").get_data(as_text=True)
    assert "&lt;b&gt;户主已迁出&lt;/b&gt;" in page and "<b>户主已迁出" not in page  # escaped
    assert act(client_of(site, "village"), draft, "approve").status_code == 409
    assert site.log.size() == size


def test_crashed_append_is_settled_from_the_log(site: ModuleSite) -> None:
    """A draft claimed and appended whose outcome was never recorded is found in the log."""
    _alloc, _code, draft = prepared(site)
    assert act(client_of(site, "village"), draft, "approve").status_code == 302
    half = stored(site, draft)
    keys = keys_of(site)
    from ledger.entry import add_signatures, sign_statement

    full = add_signatures(
        half.signed, sign_statement(half.signed.statement, [keys["township"]]).signatures
    )
    assert drafts.claim(site.instance.engine, half, full)
    (entry,) = site.log.append([full])  # ... and the process dies here
    assert stored(site, draft).status == drafts.APPENDING
    page = text_of(client_of(site, "fin").get(f"/officials/drafts/{draft}"))
    assert f"seq {entry.seq}" in page
    settled = stored(site, draft)
    assert settled.status == drafts.APPENDED and settled.seq == entry.seq


def test_organisation_recipient_and_gate(site: ModuleSite) -> None:
    alloc = allocation(site, 1_000_000)
    fin = client_of(site, "fin")
    coop = {"recipient_type": "cooperative", "org_name": "广南县坡荷种植专业合作社"}
    response = post_draft(
        fin, allocation=alloc, amount="300", credit_code="93532627MA6K1B2C3X", **coop
    )
    assert response.status_code == 400
    assert "The last character (the check character) is wrong." in text_of(response)
    draft = draft_id(
        post_draft(fin, allocation=alloc, amount="300", credit_code="91350100M000100Y43", **coop)
    )
    assert stored(site, draft).body["recipient"] == {
        "cooperative": "广南县坡荷种植专业合作社",
        "credit_code": "91350100M000100Y43",
    }
    # a payment gated on a milestone the project has not reached is refused at once
    drafts_before = count_drafts(site)
    response = post_draft(
        fin, allocation=alloc, amount="300", gate_project="PRJ-NONE", gate_stage="accepted", **coop
    )
    assert response.status_code == 422
    assert "gate project 'PRJ-NONE' is not registered" in text_of(response)
    assert count_drafts(site) == drafts_before


def test_policy_without_approvals_is_appended_at_once(site: ModuleSite) -> None:
    """A policy asking for nobody but the finance officer: the draft needs no co-signer."""
    alloc = allocation(site, 500_000, approvals=[])
    code = household(site)
    size = site.log.size()
    draft = draft_id(
        post_draft(client_of(site, "fin"), allocation=alloc, household=code, amount="12")
    )
    done = stored(site, draft)
    assert done.status == drafts.APPENDED and done.seq == size and done.waiting == ()
    assert site.log.entry(size).signed.key_ids() == (keys_of(site)["fin"].verifier.key_id,)
    check_ledger(site.instance.engine)
