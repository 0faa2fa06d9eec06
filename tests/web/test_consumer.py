"""What a QR code opens (web/consumer.py), on the small demo ledger built once for the module.

Product pages show the lot, its producer, household counts per village (never who), the
journey, inspections and recalls, and refuse malformed codes; notice boards show budgets
and payments in exact yuan; ``?h=`` labels are confirmed or flagged; the page cache
answers revalidations and follows the ledger.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Connection, select, text

from ledger import canonical, demo
from ledger.domain import gs1
from ledger.domain.batches import batch_events, batch_households, batches
from ledger.domain.households import households
from ledger.domain.projects import project_view
from ledger.entry import decode_entry
from ledger.private import PrivateStore
from ledger.schema import entries
from qr import manual
from tests.helpers import check_ledger
from tests.web.portal import add_user, login
from tests.web.support import ModuleSite, make_site

SMALL = 20  # households: every product, programme and anomaly of the demo
EN = {"Accept-Language": "en"}
#: CBV bizSteps as an English-speaking visitor reads them (independent of web/consumer.py).
STEP_WORDS = {
    "inspecting": "Inspected",
    "packing": "Packed",
    "storing": "Stored",
    "shipping": "Shipped",
    "transporting": "In transport",
    "receiving": "Received",
    "retail_selling": "On sale",
}
ROAD = "HL-NH-2018-ROAD-01"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleSite]:
    with make_site(tmp_path_factory.mktemp("consumer")) as made:
        demo.load_demo(made.instance, households=SMALL)
        made.app.config["SUYUAN_SCAN_FLUSH_THREAD"] = False
        yield made


@pytest.fixture
def client(site: ModuleSite) -> FlaskClient:
    return site.app.test_client()


@pytest.fixture
def conn(site: ModuleSite) -> Iterator[Connection]:
    with site.instance.engine.connect() as connection:
        yield connection


def page_text(response: Any) -> str:
    return html.unescape(response.get_data(as_text=True))


def get(client: FlaskClient, url: str, **kwargs: Any) -> Any:
    headers = {**EN, **kwargs.pop("headers", {})}
    return client.get(url, headers=headers, **kwargs)


def supplied_lot(conn: Connection) -> tuple[str, str, int]:
    """A directly registered, active lot that registered households supplied."""
    row = conn.execute(
        select(batches.c.gtin, batches.c.lot, batches.c.registered_seq)
        .where(
            batches.c.status == "active",
            batches.c.inspection == "pass",
            select(batch_households.c.household)
            .where(batch_households.c.gtin == batches.c.gtin)
            .where(batch_households.c.lot == batches.c.lot)
            .exists(),
        )
        .order_by(batches.c.registered_seq)
    ).first()
    assert row is not None
    return str(row[0]), str(row[1]), int(row[2])


def path_of(gtin: str, lot: str) -> str:
    return gs1.batch_path(gtin or None, lot)


def lot_row(conn: Connection, lot: str) -> Any:
    row = conn.execute(select(batches).where(batches.c.lot == lot)).mappings().first()
    assert row is not None, lot
    return row


def leaf_hash_hex(conn: Connection, seq: int) -> str:
    leaf = conn.execute(select(entries.c.leaf).where(entries.c.seq == seq)).scalar_one()
    return decode_entry(bytes(leaf)).leaf_hash().hex()


def panel(page: str) -> dict[str, Any]:
    """The verification panel's attributes, decoded."""
    found = re.search(r"<section class=\"verify-panel\"[^>]*>", page)
    assert found, "no verification panel"
    tag = found.group(0)
    seqs = re.search(r'data-seqs="([^"]*)"', tag)
    expect = re.search(r"data-expect='([^']*)'", tag)
    prefix = re.search(r'data-hash-prefix="([^"]*)"', tag)
    hash_seq = re.search(r'data-hash-seq="([^"]*)"', tag)
    return {
        "seqs": [int(s) for s in seqs.group(1).split(",")] if seqs else [],
        "expect": json.loads(html.unescape(expect.group(1))) if expect else {},
        "hash_prefix": html.unescape(prefix.group(1)) if prefix else None,
        "hash_seq": int(hash_seq.group(1)) if hash_seq else None,
    }


_MISSING = object()


def lookup_path(entry: dict[str, Any], path: str) -> Any:
    """A dotted path in an entry's JSON, as verify.js reads it (statement members by default)."""
    parts = path.split(".")
    at: Any = entry if parts[0] in entry else entry["statement"]
    for part in parts:
        if isinstance(at, list) and part.isdigit() and int(part) < len(at):
            at = at[int(part)]
        elif isinstance(at, dict) and part in at:
            at = at[part]
        else:
            return _MISSING
    return at


def assert_expectations_hold(conn: Connection, page: str) -> dict[str, Any]:
    """Every field the page ties to an entry is what the logged leaf holds (what the browser
    will check), and the page says the server checked its entries."""
    found = panel(page)
    assert found["seqs"] and found["expect"]
    for seq_text, fields in found["expect"].items():
        seq = int(seq_text)
        assert seq in found["seqs"]
        leaf = conn.execute(select(entries.c.leaf).where(entries.c.seq == seq)).scalar_one()
        entry = canonical.parse(bytes(leaf))
        for path, want in fields.items():
            assert lookup_path(entry, path) == want, (seq, path)
    return found


# --- product pages -------------------------------------------------------------------------


def test_product_page_shows_product_producer_households_journey_and_inspection(
    client: FlaskClient, conn: Connection
) -> None:
    gtin, lot, registered = supplied_lot(conn)
    row = lot_row(conn, lot)
    response = get(client, path_of(gtin, lot))
    assert response.status_code == 200
    assert response.content_type == "text/html; charset=utf-8"
    page = page_text(response)
    assert row["product_zh"] in page and row["producer"] in page
    assert row["village"] in page and row["county"] in page  # the origin
    codes = [
        r[0]
        for r in conn.execute(
            select(batch_households.c.household).where(
                batch_households.c.gtin == gtin, batch_households.c.lot == lot
            )
        )
    ]
    villages = {
        r[0] for r in conn.execute(select(households.c.village).where(households.c.code.in_(codes)))
    }
    assert f'data-households="{len(codes)}"' in page
    for village in villages:
        assert f'data-village="{village}"' in page
    events = list(
        conn.execute(
            select(batch_events.c.seq, batch_events.c.biz_step).where(
                batch_events.c.gtin == gtin, batch_events.c.lot == lot
            )
        )
    )
    shown = {int(s) for s in re.findall(r'<li class="[^"]*" data-seq="(\d+)"', page)}
    assert {int(seq) for seq, _step in events} <= shown
    for _seq, step in events:
        if step in STEP_WORDS:
            assert STEP_WORDS[step] in page
    assert "Latest inspection: passed" in page
    inspection_entry = decode_entry(
        bytes(conn.execute(select(entries.c.leaf).where(entries.c.seq == registered)).scalar_one())
    )
    report = inspection_entry.body["inspections"][0]
    assert report["lab"] in page and f"/api/v1/blobs/{report['report_sha256']}" in page
    assert manual.encode(registered) in page
    assert "data-recall" not in page and "data-clone-warning" not in page
    assert "Checked by the server: included in the signed log" in page
    found = assert_expectations_hold(conn, page)
    assert registered in found["seqs"]
    assert found["expect"][str(registered)]["body.lot"] == lot


def test_evidence_documents_linked_from_pages_are_served(
    client: FlaskClient, conn: Connection
) -> None:
    gtin, lot, _ = supplied_lot(conn)
    page = page_text(get(client, path_of(gtin, lot)))
    links = set(re.findall(r'href="(/api/v1/blobs/[0-9a-f]{64})"', page))
    assert links
    for link in links:
        response = client.get(link)
        assert response.status_code == 200 and "溯源演示数据".encode() in response.data


def _personal_markers(site: ModuleSite, conn: Connection) -> tuple[list[str], list[str]]:
    """Every household code, and every name and ID number in the private store."""
    codes = [r[0] for r in conn.execute(select(households.c.code))]
    store = PrivateStore.for_instance(
        site.instance.engine, site.instance.settings.instance, site.instance.env
    )
    private = [r[0] for r in conn.execute(text("SELECT code FROM household_private"))]
    assert private, "the demo stores a few private records"
    personal: list[str] = []
    for code in private:
        record = store.open(code)
        personal += [record["name"], record["id_number"]]
    return codes, personal


def test_pages_never_show_who_the_households_are(
    site: ModuleSite, client: FlaskClient, conn: Connection
) -> None:
    codes, personal = _personal_markers(site, conn)
    lots = list(
        conn.execute(
            select(batches.c.gtin, batches.c.lot)
            .where(
                select(batch_households.c.household)
                .where(batch_households.c.gtin == batches.c.gtin)
                .where(batch_households.c.lot == batches.c.lot)
                .exists()
            )
            .order_by(batches.c.registered_seq)
            .limit(12)
        )
    )
    lots += list(
        conn.execute(
            select(batches.c.gtin, batches.c.lot).where(batches.c.lot.like("DY-MY19-003%"))
        )
    )
    household_payments = [
        r[0]
        for r in conn.execute(
            text(
                "SELECT disbursed_seq FROM fund_disbursements WHERE recipient_type = 'household' "
                "ORDER BY disbursed_seq LIMIT 5"
            )
        )
    ]
    exception_seqs = [r[0] for r in conn.execute(text("SELECT seq FROM fund_exceptions"))]
    urls = [path_of(g, lot) for g, lot in lots]
    urls += [f"/p/{r[0]}" for r in conn.execute(text("SELECT id FROM projects"))]
    urls += [f"/n/{s}" for s in household_payments + exception_seqs] + ["/", "/notices"]
    for url in urls:
        response = get(client, url)
        assert response.status_code == 200, url
        page = response.get_data(as_text=True)
        for code in codes:
            assert code not in page, (url, code)
        for value in personal:
            assert value not in page, url
        assert "示例户主" not in page and not re.search(r"999999\d{11}[\dX]", page), url


def test_recalled_lot_and_the_lots_made_from_it_show_the_banner(
    client: FlaskClient, conn: Connection
) -> None:
    whole = lot_row(conn, "DY-MY19-003")
    recall = decode_entry(
        bytes(
            conn.execute(
                select(entries.c.leaf).where(entries.c.seq == whole["recalled_seq"])
            ).scalar_one()
        )
    )
    assert recall.kind == "batch.recalled"
    date = recall.time[:10]
    page = page_text(get(client, path_of(whole["gtin"], whole["lot"])))
    assert f'data-recall="{whole["recalled_seq"]}"' in page
    assert "RECALLED" in page and recall.body["reason"] in page and date in page
    assert "was made from lot" not in page
    for box in ("DY-MY19-003-G1", "DY-MY19-003-G2"):
        derived = lot_row(conn, box)
        assert derived["recalled_seq"] == whole["recalled_seq"]
        page = page_text(get(client, path_of(derived["gtin"], box)))
        assert f'data-recall="{whole["recalled_seq"]}"' in page
        assert recall.body["reason"] in page
        assert "This lot was made from lot DY-MY19-003, which was recalled." in page
        assert f'href="{path_of(whole["gtin"], whole["lot"])}"' in page  # made from
        found = assert_expectations_hold(conn, page)
        assert found["expect"][str(whole["recalled_seq"])]["kind"] == "batch.recalled"
    failed = page_text(get(client, path_of(derived["gtin"], "DY-MY19-003-G2")))
    assert "Latest inspection: FAILED" in failed


def test_short_gtins_redirect_to_the_gtin14_path(client: FlaskClient, conn: Connection) -> None:
    gtin, lot, _ = supplied_lot(conn)
    assert gtin.startswith("0")
    response = client.get(f"/01/{gtin[1:]}/10/{lot}?h=0011aabb")
    assert response.status_code == 301
    assert response.headers["Location"] == f"{path_of(gtin, lot)}?h=0011aabb"
    response = client.get("/01/96385074/10/L1")  # GTIN-8
    assert response.status_code == 301
    assert response.headers["Location"] == "/01/00000096385074/10/L1"
    assert client.get(response.headers["Location"]).status_code == 404
    response = client.get("/01/614141000036/10/A%2FB")  # GTIN-12, an encoded lot
    assert response.headers["Location"] == "/01/00614141000036/10/A%2FB"


@pytest.mark.parametrize(
    ("url", "status", "message"),
    [
        ("/01/09520003000031/10/X1", 400, "check digit should be 2, found 1"),
        ("/01/123/10/X1", 400, "8, 12, 13 or 14 digits"),
        ("/01/0952000300003X/10/X1", 400, "GTIN"),
        ("/01/09520003000032/10/" + "X" * 21, 400, "1 to 20 characters"),
        ("/01/09520003000032/10/%E6%89%B9%E5%8F%B7", 400, "not in the GS1 AI 10 character set"),
        ("/b/A%20B", 400, "spaces are not allowed"),
        ("/b/%EF%BC%A11", 400, "full-width"),
        ("/01/09520003000032/10/NO-SUCH-LOT", 404, "is not registered"),
        ("/b/NO-SUCH-LOT", 404, "is not registered"),
    ],
)
def test_bad_codes_are_clear_error_pages(
    client: FlaskClient, url: str, status: int, message: str
) -> None:
    response = get(client, url)
    assert response.status_code == status
    assert response.content_type == "text/html; charset=utf-8"
    page = page_text(response)
    assert message in page
    headline = "This code is not valid" if status == 400 else "Not found in the ledger"
    assert headline in page
    assert 'action="/lookup"' in page  # somewhere to go next


@pytest.fixture(scope="module")
def odd_lot(site: ModuleSite) -> str:
    """A lot without a GTIN whose code needs percent-encoding, registered by a demo producer."""
    lot = "DY/T%1(a)"
    instance = site.instance
    coop = instance.author("demo-gd-hy-coop-pomelo")
    with instance.engine.connect() as c:
        code = c.execute(
            select(households.c.code).where(households.c.code.like("GD-HY-%")).limit(1)
        ).scalar_one()
        whole = lot_row(c, "DY-MY19-003")
    body = {
        "lot": lot,
        "product": {"zh": "东源蜜柚（散装）", "en": "Dongyuan pomelo, loose"},
        "origin": {p: whole[p] for p in ("province", "city", "county", "township", "village")},
        "producer": whole["producer"],
        "households": [{"household": code, "share_permille": 1000}],
        "produced": "2020-01-05",
        "quantity": 40,
        "unit": "kg",
    }
    instance.sign_and_append(instance.writer(), "batch.registered", body, [coop])
    check_ledger(instance.engine)
    return lot


def test_percent_encoded_lots_round_trip(client: FlaskClient, odd_lot: str) -> None:
    path = gs1.short_path(odd_lot)
    assert path == "/b/DY%2FT%251%28a%29"
    response = get(client, path)
    assert response.status_code == 200
    page = page_text(response)
    assert "东源蜜柚（散装）" in page and f"<code>{odd_lot}</code>" in page
    assert 'data-households="1"' in page
    # lower-case escapes name the same lot
    assert (
        get(client, "/b/DY%2ft%251%28a%29").status_code == 404
    )  # 't' ≠ 'T': lots are case-sensitive
    assert get(client, "/b/DY%2fT%251%28a%29").status_code == 200


def test_label_hash_prefix_is_confirmed_or_flagged(client: FlaskClient, conn: Connection) -> None:
    gtin, lot, registered = supplied_lot(conn)
    good = leaf_hash_hex(conn, registered)[:8]
    page = page_text(get(client, f"{path_of(gtin, lot)}?h={good}"))
    assert 'data-label-check="ok"' in page and "matches the ledger entry" in page
    assert "does not belong" not in page
    found = panel(page)
    assert (found["hash_prefix"], found["hash_seq"]) == (good, registered)
    assert "Checked by the server: included" in page
    bad = f"{(int(good, 16) ^ 1):08x}"
    for given in (bad, "zz", good[:4]):
        page = page_text(get(client, f"{path_of(gtin, lot)}?h={given}"))
        assert 'data-label-check="mismatch"' in page, given
        assert "Warning: this label does not belong to this ledger entry" in page
        assert "counterfeit or mis-printed" in page
        assert "The server’s own check FAILED" in page
        assert panel(page)["hash_prefix"] == given
    plain = page_text(get(client, path_of(gtin, lot)))
    assert "data-label-check" not in plain and panel(plain)["hash_prefix"] is None


def test_zh_is_the_default_and_en_is_chosen_by_the_browser_or_lang(
    client: FlaskClient, conn: Connection
) -> None:
    whole = lot_row(conn, "DY-MY19-003-G1")
    path = path_of(whole["gtin"], whole["lot"])
    zh = client.get(path).get_data(as_text=True)
    assert '<html lang="zh-CN">' in zh
    assert "东源蜜柚礼盒" in zh and "Dongyuan pomelo gift box" not in zh
    en = client.get(path, headers={"Accept-Language": "en-US,en;q=0.9"}).get_data(as_text=True)
    assert '<html lang="en">' in en and "Dongyuan pomelo gift box" in en
    forced = client.get(f"{path}?lang=en", headers={"Accept-Language": "zh-CN"})
    assert '<html lang="en">' in forced.get_data(as_text=True)
    back = client.get(f"{path}?lang=zh", headers=EN).get_data(as_text=True)
    assert '<html lang="zh-CN">' in back and "Dongyuan pomelo gift box" not in back
    project = client.get(f"/p/{ROAD}?lang=en").get_data(as_text=True)
    assert "Village road hardening" in project
    assert "Village road hardening" not in client.get(f"/p/{ROAD}").get_data(as_text=True)


# --- notice boards -------------------------------------------------------------------------


def _yuan(fen: int) -> str:
    """Exact yuan for the test, by another route than the site's: Decimal, then grouping."""
    return f"{Decimal(fen) / Decimal(100):,.2f}"


def test_project_notice_board_shows_budget_milestones_payments_and_signers(
    site: ModuleSite, client: FlaskClient, conn: Connection
) -> None:
    view = project_view(conn, ROAD)
    response = get(client, f"/p/{ROAD}")
    assert response.status_code == 200
    page = page_text(response)
    assert view["name"]["zh"] in page and view["owner"] in page and view["contractor"] in page
    assert _yuan(view["budget_fen"]) == "1,800,000.00"
    assert f'data-budget-fen="{view["budget_fen"]}"' in page
    assert f"{_yuan(view['budget_fen'])} yuan" in page
    assert f"{_yuan(view['contract_fen'])} yuan" in page
    for item in view["plan"]:
        assert f'data-stage="{item["stage"]}"' in page and item["due"] in page
        assert item["reached_date"] in page
    for stage in ("Approved", "Tendered", "Contract signed", "Accepted", "Public notice (公示)"):
        assert stage in page
    documents = [d for e in view["events"] for d in e["evidence"]]
    assert documents
    for doc in documents:
        assert f"/api/v1/blobs/{doc['sha256']}" in page and doc["name"] in page
    notice = view["notice"]
    assert f"{notice['start']} to {notice['end']}" in page
    assert 'data-notice-state="ended"' in page  # 2018
    payments = list(
        conn.execute(
            text(
                "SELECT id, amount_fen, disbursed_seq FROM fund_disbursements "
                "WHERE allocation = 'HL-NH-2018-ROAD' AND status = 'active'"
            )
        )
    )
    assert len(payments) == 3
    for pay_id, amount, seq in payments:
        assert f'data-payment="{pay_id}"' in page and _yuan(amount) in page
        assert f'href="/n/{seq}"' in page
    assert f"{_yuan(sum(p[1] for p in payments))} yuan" in page  # paid out
    # who signed: key names, roles and organisations from the registry
    for key in site.log.registered_keys():
        if key.name in ("demo-hl-nh-county", "demo-hl-nh-finance", "demo-hl-nh-road-contractor"):
            assert key.name in page and key.org in page
    assert "County approver" in page and "Finance officer" in page
    assert_expectations_hold(conn, page)


def test_project_label_hash_and_unknown_projects(client: FlaskClient, conn: Connection) -> None:
    seq = conn.execute(
        text(f"SELECT registered_seq FROM projects WHERE id = '{ROAD}'")
    ).scalar_one()
    good = leaf_hash_hex(conn, seq)[:8]
    assert 'data-label-check="ok"' in page_text(get(client, f"/p/{ROAD}?h={good}"))
    assert 'data-label-check="mismatch"' in page_text(get(client, f"/p/{ROAD}?h=00000000"))
    response = get(client, "/p/NO-SUCH-PROJECT")
    assert response.status_code == 404 and "no project with id" in page_text(response)
    assert get(client, "/p/" + quote("a b")).status_code == 400


def test_notices_list_projects_a_page_at_a_time(
    client: FlaskClient, conn: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [r[0] for r in conn.execute(text("SELECT id FROM projects ORDER BY id"))]
    page = page_text(get(client, "/notices"))
    for project_id in ids:
        assert f'data-project="{project_id}"' in page
    assert set(assert_expectations_hold(conn, page)["seqs"]) == {
        r[0] for r in conn.execute(text("SELECT registered_seq FROM projects"))
    }
    monkeypatch.setattr("web.consumer.PROJECTS_PER_PAGE", 2)
    first = page_text(get(client, "/notices?page=1&x=1"))
    assert [p for p in ids if f'data-project="{p}"' in first] == ids[:2]
    assert 'rel="next"' in first and 'rel="prev"' not in first
    second = page_text(get(client, "/notices?page=2&x=1"))
    assert [p for p in ids if f'data-project="{p}"' in second] == ids[2:4]
    assert 'rel="prev"' in second
    county = conn.execute(text(f"SELECT county FROM projects WHERE id = '{ids[-1]}'")).scalar_one()
    only = page_text(get(client, f"/notices?county={quote(county)}&x=2"))
    assert f'data-project="{ids[-1]}"' in only
    for bad in ("0", "x", "-1"):
        assert get(client, f"/notices?page={bad}").status_code == 400


def test_disbursement_notice_is_readable_and_linked(client: FlaskClient, conn: Connection) -> None:
    seq, pay_id, amount, village, received = conn.execute(
        text(
            "SELECT disbursed_seq, id, amount_fen, village, received_seq FROM fund_disbursements "
            "WHERE recipient_type = 'household' AND received_seq IS NOT NULL "
            "ORDER BY disbursed_seq LIMIT 1"
        )
    ).one()
    response = get(client, f"/n/{seq}")
    assert response.status_code == 200
    page = page_text(response)
    assert "Disbursement notice" in page and pay_id in page
    assert f"{_yuan(amount)} yuan" in page and f'data-amount-fen="{amount}"' in page
    assert village in page and "A registered household (建档立卡户)" in page
    assert f'href="/n/{received}"' in page  # the receipt
    assert f'href="/e/{seq}"' in page  # the technical page
    assert "Village approver" in page and "Township approver" in page  # 双认定
    found = assert_expectations_hold(conn, page)
    assert found["expect"][str(seq)]["body.amount_fen"] == amount
    # a corrected payment shows both amounts
    corrected = conn.execute(
        text(
            "SELECT disbursed_seq, original_fen, amount_fen FROM fund_disbursements "
            "WHERE corrected_seq IS NOT NULL"
        )
    ).one()
    page = page_text(get(client, f"/n/{corrected[0]}"))
    assert _yuan(corrected[1]) in page and _yuan(corrected[2]) in page
    assert "Amount after correction" in page
    reversed_seq = conn.execute(
        text("SELECT disbursed_seq FROM fund_disbursements WHERE status = 'reversed'")
    ).scalar_one()
    assert "This payment was reversed." in page_text(get(client, f"/n/{reversed_seq}"))


def test_notice_of_other_entries_goes_where_people_read_them(
    client: FlaskClient, conn: Connection
) -> None:
    gtin, lot, registered = supplied_lot(conn)
    response = client.get(f"/n/{registered}?h=abc")
    assert response.status_code == 302 and response.headers["Location"] == (
        f"{path_of(gtin, lot)}?h=abc"
    )
    project_seq = conn.execute(
        text(f"SELECT registered_seq FROM projects WHERE id = '{ROAD}'")
    ).scalar_one()
    assert client.get(f"/n/{project_seq}").headers["Location"] == f"/p/{ROAD}"
    assert client.get("/n/0").headers["Location"] == "/e/0"  # the genesis key
    assert get(client, "/n/99999999").status_code == 404


# --- lookup --------------------------------------------------------------------------------


def test_lookup_by_manual_code_lot_project_or_url(client: FlaskClient, conn: Connection) -> None:
    assert get(client, "/lookup").status_code == 200
    gtin, lot, registered = supplied_lot(conn)
    code = manual.encode(registered)
    for typed in (code, code.lower().replace("-", " "), lot, lot.lower()):
        response = client.get(f"/lookup?code={quote(typed)}")
        assert response.status_code == 302, typed
        assert response.headers["Location"] == path_of(gtin, lot)
    boxes = lot_row(conn, "DY-MY19-003-G1")["registered_seq"]
    listed = page_text(get(client, f"/lookup?code={manual.encode(boxes)}"))
    assert "DY-MY19-003-G1" in listed and "DY-MY19-003-G2" in listed
    assert client.get(f"/lookup?code={ROAD}").headers["Location"] == f"/p/{ROAD}"
    url = f"https://trace.example.cn/p/{ROAD}?h=00112233"
    assert client.get(f"/lookup?code={quote(url)}").headers["Location"] == (f"/p/{ROAD}?h=00112233")
    assert client.get(f"/lookup?code={quote('/p/' + ROAD)}").headers["Location"] == f"/p/{ROAD}"
    odd = get(client, f"/lookup?code={quote('b/' + lot)}")  # a lot code with '/', not a path
    assert odd.status_code == 404
    evil = get(client, f"/lookup?code={quote('https://evil.example//evil.example/x')}")
    assert evil.status_code == 404 and "Location" not in evil.headers
    typo = code[:-1] + ("0" if code[-1] != "0" else "1")
    response = get(client, f"/lookup?code={quote(typo)}")
    assert response.status_code == 404 and "data-lookup-error" in page_text(response)


# --- the front page ------------------------------------------------------------------------


def test_front_page_introduces_counts_and_links_to_notices(
    site: ModuleSite, client: FlaskClient, conn: Connection
) -> None:
    page = page_text(get(client, "/"))
    latest = site.log.latest_checkpoint()
    assert f"<strong>{latest.size}</strong>" in page
    for name, sql in {
        "households": "SELECT COUNT(*) FROM households",
        "lots": "SELECT COUNT(*) FROM batches",
        "projects": "SELECT COUNT(*) FROM projects",
        "supplying": "SELECT COUNT(DISTINCT household) FROM batch_households",
    }.items():
        count = conn.execute(text(sql)).scalar_one()
        assert re.search(rf'data-count="{name}"><strong class="count">{count}</strong>', page), name
    assert 'action="/lookup"' in page and 'href="/notices"' in page
    assert f'href="/p/{ROAD}"' in page
    assert "DY-MY19-003" in page  # the recall
    assert "For auditors: the technical ledger" in page
    for key in site.log.registered_keys()[:3]:
        assert key.key_id in page


# --- caching -------------------------------------------------------------------------------


def test_pages_are_cached_and_revalidated_until_the_ledger_grows(
    site: ModuleSite, client: FlaskClient, conn: Connection
) -> None:
    from web.consumer import page_cache

    whole = lot_row(conn, "DY-MY19-003-G1")
    path = path_of(whole["gtin"], whole["lot"])
    first = get(client, path)
    etag = first.headers["ETag"]
    size = site.log.latest_checkpoint().size
    assert etag.startswith(f'W/"{size}-')
    assert first.headers["Cache-Control"] == "no-cache"
    assert "Accept-Language" in first.headers["Vary"]
    again = get(client, path)
    assert again.headers["ETag"] == etag and again.data == first.data
    cache = page_cache(site.app)
    assert len(cache) >= 1
    revalidated = get(client, path, headers={"If-None-Match": etag})
    assert revalidated.status_code == 304 and revalidated.data == b""
    other_lang = get(client, path, headers={"Accept-Language": "zh"})
    assert other_lang.headers["ETag"] != etag
    # a new entry about the lot: a new tree size, a new page
    logistics = site.instance.author("demo-gd-hy-logistics")
    site.instance.sign_and_append(
        site.instance.writer(),
        "batch.event",
        {
            "batch": {"gtin": whole["gtin"], "lot": whole["lot"]},
            "biz_step": "storing",
            "disposition": "non_sellable_other",
            "time": "2019-11-05T09:00:00+08:00",
            "read_point": "深河退货仓 returns store",
        },
        [logistics],
    )
    fresh = get(client, path, headers={"If-None-Match": etag})
    assert fresh.status_code == 200 and fresh.headers["ETag"] != etag
    assert "深河退货仓 returns store" in page_text(fresh)
    check_ledger(site.instance.engine)


def test_signed_in_visitors_get_uncached_pages(site: ModuleSite, conn: Connection) -> None:
    add_user(site.instance, site.admin, "shopper-auditor", "auditor", "审计组")
    client = site.app.test_client()
    login(client, "shopper-auditor")
    whole = lot_row(conn, "DY-MY19-003-G1")
    response = get(client, path_of(whole["gtin"], whole["lot"]))
    assert response.status_code == 200
    assert "ETag" not in response.headers
    assert response.headers["Cache-Control"] == "private, no-cache"
    assert "Sign out" in response.get_data(as_text=True)
    anonymous = get(site.app.test_client(), path_of(whole["gtin"], whole["lot"]))
    assert "Sign out" not in anonymous.get_data(as_text=True)
    check_ledger(site.instance.engine)


# --- in the browser ------------------------------------------------------------------------


@pytest.mark.browser
def test_product_page_verifies_in_the_browser(site: ModuleSite, conn: Connection) -> None:
    from tests.web.browser import chromium, live_server, new_page

    gtin, lot, registered = supplied_lot(conn)
    good = leaf_hash_hex(conn, registered)[:8]
    bad = f"{(int(good, 16) ^ 0xFF):08x}"
    wait = "() => document.querySelector('[data-verify-panel]').dataset.verifyStatus !== 'pending'"
    with chromium() as browser, live_server(site.app) as base:
        results = {}
        for name, url in {
            "plain": path_of(gtin, lot),
            "good": f"{path_of(gtin, lot)}?h={good}",
            "bad": f"{path_of(gtin, lot)}?h={bad}",
            "project": f"/p/{ROAD}",
        }.items():
            with new_page(browser) as page:
                problems: list[str] = []
                page.on("pageerror", lambda e, seen=problems: seen.append(str(e)))
                page.goto(base + url)
                page.wait_for_function(wait, timeout=20_000)
                status = page.locator("[data-verify-panel]").get_attribute("data-verify-status")
                results[name] = status
                assert not problems, problems
    assert results == {
        "plain": "verified",
        "good": "verified",
        "bad": "failed",
        "project": "verified",
    }


def test_certificates_and_cold_chain_temperatures_are_shown(
    client: FlaskClient, conn: Connection
) -> None:
    gtin, lot, _scheme, number, valid_until = conn.execute(
        text(
            "SELECT gtin, lot, scheme, number, valid_until FROM batch_certifications "
            "WHERE scheme = 'poverty_alleviation_product' ORDER BY seq LIMIT 1"
        )
    ).one()
    page = page_text(get(client, path_of(gtin, lot)))
    assert "Certified poverty-alleviation product" in page and number in page
    assert f"valid until {valid_until}" in page
    temperatures = []
    for (leaf,) in conn.execute(
        select(entries.c.leaf).where(entries.c.kind == "batch.event").order_by(entries.c.seq)
    ):
        body = decode_entry(bytes(leaf)).body
        if body["batch"]["lot"] == lot and "temperature_dc" in body:
            temperatures.append(body["temperature_dc"])
    assert temperatures
    for tenths in temperatures:  # tenths of a degree, shown exactly
        sign = "−" if tenths < 0 else ""
        assert f"Temperature: {sign}{abs(tenths) // 10}.{abs(tenths) % 10} °C" in page
