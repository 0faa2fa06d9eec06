"""The producer portal (web/producer.py): role checks, registering lots through the form,
events, splits and merges, labels, scan figures, and the organisation boundary.

One small demo ledger serves the module (its households and cooperatives are real ledger
records); every test that writes uses lots of its own and checks what the ledger holds.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pypdfium2 as pdfium  # type: ignore[import-untyped]
import pytest
from flask.testing import FlaskClient
from PIL import Image
from pyzbar import pyzbar  # type: ignore[import-untyped]
from sqlalchemy import select, text
from werkzeug.test import TestResponse

from ledger import demo
from ledger.blobs import default_store
from ledger.domain import gs1
from ledger.domain.batch_queries import find_batch
from ledger.domain.households import households
from ledger.entry import Entry
from ledger.note import Signer
from ledger.schema import scans
from qr.urls import check_label
from tests.helpers import check_ledger, dump
from tests.web.portal import add_user, csrf_token, signed_in
from tests.web.support import ModuleSite, make_site
from web import producer as producer_module
from web import scans as scans_module

SMALL = 40
MILLET = demo.HY_MILLET_COOP
GARLIC = demo.DY_GARLIC_COOP
CHINA = timezone(timedelta(hours=8))
REGISTER = "/producer/batches/new"
GTIN = "06901234567892"  # valid check digit


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleSite]:
    with make_site(tmp_path_factory.mktemp("producer")) as made:
        made.app.config["SUYUAN_SCAN_FLUSH_THREAD"] = False  # no writes behind a test's back
        demo.load_demo(made.instance, households=SMALL)
        keys = {
            "millet": add_user(made.instance, made.admin, "millet", "producer", MILLET),
            "garlic": add_user(made.instance, made.admin, "garlic", "producer", GARLIC),
            "auditor1": add_user(made.instance, made.admin, "auditor1", "auditor", "审计局"),
        }
        made.app.config["TEST_KEYS"] = keys
        yield made


@pytest.fixture(scope="module")
def codes(site: ModuleSite) -> list[str]:
    """Registered household codes (the demo's)."""
    with site.instance.engine.connect() as conn:
        return list(conn.execute(select(households.c.code).order_by(households.c.code)).scalars())


def english(client: FlaskClient) -> FlaskClient:
    """Pages in English: the tests read messages by their English text (zh is the default)."""
    client.set_cookie("lang", "en")
    return client


@pytest.fixture
def millet(site: ModuleSite) -> FlaskClient:
    return english(signed_in(site.app, "millet"))


@pytest.fixture
def garlic(site: ModuleSite) -> FlaskClient:
    return english(signed_in(site.app, "garlic"))


def key_of(site: ModuleSite, user: str) -> Signer:
    signer: Signer = site.app.config["TEST_KEYS"][user]
    return signer


def size(site: ModuleSite) -> int:
    return site.instance.reader().size()


def last_entry(site: ModuleSite) -> Entry:
    log = site.instance.reader()
    return log.entry(log.size() - 1)


def today() -> str:
    return datetime.now(CHINA).date().isoformat()


def page(response: TestResponse) -> str:
    return unescape(response.get_data(as_text=True))


def field_errors(response: TestResponse, field_id: str) -> str:
    """The text of the error list the form macro renders for ``field_id``."""
    html = response.get_data(as_text=True)
    found = re.search(rf'<ul id="{re.escape(field_id)}-errors"[^>]*>(.*?)</ul>', html, re.S)
    return unescape(re.sub(r"<[^>]+>", " ", found.group(1))) if found else ""


def form_level_errors(response: TestResponse) -> str:
    html = response.get_data(as_text=True)
    found = re.search(r'<div class="form-errors"[^>]*>(.*?)</div>', html, re.S)
    return unescape(re.sub(r"<[^>]+>", " ", found.group(1))) if found else ""


def post(
    client: FlaskClient, path: str, data: dict[str, Any], form_path: str | None = None
) -> TestResponse:
    token = csrf_token(client, form_path or path)
    return client.post(path, data={"csrf_token": token, **data})


def lot_form(codes: list[str], lot: str, **over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "lot": lot,
        "product_zh": "浑源小米",
        "product_en": "Hunyuan millet",
        "province": "山西省",
        "city": "大同市",
        "county": "浑源县",
        "township": "永安镇",
        "village": "双河村",
        "division_code": "140225",
        "produced": today(),
        "quantity": "100",
        "unit": "kg",
        "households": f"{codes[0]} 300\n{codes[1]} 200",
    }
    data.update(over)
    return data


def register(client: FlaskClient, codes: list[str], lot: str, **over: Any) -> TestResponse:
    response = post(client, REGISTER, lot_form(codes, lot, **over))
    assert response.status_code == 302, field_summary(response)
    return response


def field_summary(response: TestResponse) -> str:
    html = response.get_data(as_text=True)
    return (
        " | ".join(
            unescape(re.sub(r"<[^>]+>", " ", m))
            for m in re.findall(r'class="errors"[^>]*>(.*?)</ul>', html, re.S)
        )
        + " || "
        + form_level_errors(response)
    )


# --- access -------------------------------------------------------------------------------

PAGES = [
    "/producer/",
    REGISTER,
    "/producer/event",
    "/producer/transform",
    "/producer/labels",
    "/producer/lot?gtin=09520002000019&lot=HY-XM19-001",
    "/producer/lot/scans?gtin=09520002000019&lot=HY-XM19-001",
    "/producer/lot/qr.png?gtin=09520002000019&lot=HY-XM19-001",
    "/producer/recall?gtin=09520002000019&lot=HY-XM19-001",
]


@pytest.mark.parametrize("path", PAGES)
def test_signed_out_goes_to_login(site: ModuleSite, path: str) -> None:
    response = site.app.test_client().get(path)
    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == "/login"


@pytest.mark.parametrize("path", PAGES)
def test_other_roles_are_forbidden(site: ModuleSite, path: str) -> None:
    client = signed_in(site.app, "auditor1")
    assert client.get(path).status_code == 403


def test_auditor_cannot_register_by_posting(site: ModuleSite, codes: list[str]) -> None:
    client = signed_in(site.app, "auditor1")
    before = dump(site.instance.engine)
    response = post(client, REGISTER, lot_form(codes, "AUD-1"), form_path="/account")
    assert response.status_code == 403
    assert dump(site.instance.engine) == before


def test_missing_csrf_token_is_refused(
    site: ModuleSite, millet: FlaskClient, codes: list[str]
) -> None:
    before = dump(site.instance.engine)
    response = millet.post(REGISTER, data=lot_form(codes, "NOCSRF-1"))
    assert response.status_code == 400
    assert dump(site.instance.engine) == before


def test_dashboard_lists_only_own_lots(site: ModuleSite, millet: FlaskClient) -> None:
    response = millet.get("/producer/")
    assert response.status_code == 200
    html = page(response)
    assert "HY-XM19-001" in html and MILLET in html
    assert "/01/09520002000019/10/HY-XM19-001" in html  # link to the public page
    assert "DY-" not in html  # the garlic cooperative's lots
    with site.instance.engine.connect() as conn:
        own = (
            conn.execute(text("SELECT lot FROM batches WHERE producer = :p"), {"p": MILLET})
            .scalars()
            .all()
        )
    assert own and all(lot in html for lot in own)


# --- registering a lot --------------------------------------------------------------------


def test_register_lot_through_the_form(
    site: ModuleSite, millet: FlaskClient, codes: list[str]
) -> None:
    first = size(site)
    report = b"%PDF-1.4 test report for REG-1\n"
    data = lot_form(
        codes,
        "REG-2024/1",
        gtin="6901234567892",  # GTIN-13: padded to 14 digits
        **{
            "inspections-0-lab": "浑源县农产品质量安全检测站",
            "inspections-0-result": "pass",
            "inspections-0-date": today(),
            "inspections-0-report": (io.BytesIO(report), "report.pdf"),
            "certifications-0-scheme": "green_food",
            "certifications-0-number": "LB-18-1234",
        },
    )
    response = post(millet, REGISTER, data)
    assert response.status_code == 302, field_summary(response)
    location = response.headers["Location"]
    assert urlsplit(location).path == "/producer/lot"
    assert parse_qs(urlsplit(location).query) == {"gtin": [GTIN], "lot": ["REG-2024/1"]}

    assert size(site) == first + 1
    entry = last_entry(site)
    assert entry.kind == "batch.registered"
    assert key_of(site, "millet").verifier.key_id in entry.signed.key_ids()
    body = entry.body
    assert body["gtin"] == GTIN and body["lot"] == "REG-2024/1"
    assert body["producer"] == MILLET
    assert body["product"] == {"zh": "浑源小米", "en": "Hunyuan millet"}
    assert body["origin"]["division_code"] == "140225"
    assert body["quantity"] == 100 and body["unit"] == "kg"
    assert body["households"] == [
        {"household": codes[0], "share_permille": 300},
        {"household": codes[1], "share_permille": 200},
    ]
    (inspection,) = body["inspections"]
    assert inspection["result"] == "pass"
    assert default_store(site.instance.settings.instance).get(inspection["report_sha256"]) == report
    assert body["certifications"] == [{"scheme": "green_food", "number": "LB-18-1234"}]

    shown = millet.get(location)
    html = page(shown)
    assert f"seq {entry.seq}" in html  # the flash names the seq
    public = gs1.digital_link_path(GTIN, "REG-2024/1")
    assert public == "/01/06901234567892/10/REG-2024%2F1"
    assert f'href="{public}"' in shown.get_data(as_text=True)
    assert gs1.parse_batch_path(public) == (GTIN, "REG-2024/1")
    consumer = site.app.test_client().get(public)
    assert consumer.status_code == 200 and "REG-2024/1" in page(consumer)
    scans_module.counter(site.app).flush()  # the page counted a scan of that code
    assert scans_module.scan_stats(site.instance.engine, [public])[public].scans == 1
    check_ledger(site.instance.engine)


def test_register_without_gtin_links_to_short_path(
    site: ModuleSite, millet: FlaskClient, codes: list[str]
) -> None:
    response = register(millet, codes, "HYXM-NOGTIN-7")
    assert parse_qs(urlsplit(response.headers["Location"]).query) == {"lot": ["HYXM-NOGTIN-7"]}
    assert "gtin" not in last_entry(site).body
    html = millet.get(response.headers["Location"]).get_data(as_text=True)
    assert 'href="/b/HYXM-NOGTIN-7"' in html


BAD_GTIN = GTIN[:-1] + "3"


@pytest.mark.parametrize(
    ("over", "field_id", "expected"),
    [
        ({"gtin": BAD_GTIN}, "gtin", f"Did you mean {GTIN}"),
        ({"gtin": "０６９０１２３４５６７８９２"}, "gtin", "ASCII"),
        ({"lot": "批次 1"}, "lot", "Character 1"),
        ({"lot": "LOT 1"}, "lot", "space"),
        ({"lot": "ＴＹ-1"}, "lot", "full-width"),
        ({"quantity": "-5"}, "quantity", "at least 1"),
        ({"quantity": "12.5"}, "quantity", "whole number"),
        ({"quantity": "１２"}, "quantity", "ASCII"),
        ({"quantity": ""}, "quantity", "whole number"),
        ({"households": "{a} 600\n{b} 500"}, "households", "1100‰"),
        ({"households": "{a} 0"}, "households", "Line 1"),
        ({"households": "{a} 2.5"}, "households", "per-mille"),
        ({"households": "{a} 100\n\n{a} 100"}, "households", "already listed on line 1"),
        (
            {"households": "{a} 100\nZZ-NOPE-0001 100"},
            "households",
            "Line 2: household ZZ-NOPE-0001 is not registered",
        ),
        ({"households": "{a}"}, "households", "Line 1"),
        ({"households": ""}, "households", "at least one"),
        ({"unit": "kg", "net_quantity": "5", "net_unit": "kg"}, "net_quantity", "counted units"),
        ({"division_code": "1402"}, "division_code", "6, 9 or 12"),
        ({"product_zh": ""}, "product_zh", "required"),
        ({"produced": "2019-02-30"}, "produced", "date"),
        # refused by the ledger's own dry run, shown next to the field
        ({"lot": "hy-xm19-001", "gtin": "09520002000019"}, "lot", "only by case"),
        ({"produced": (date.today() + timedelta(days=5)).isoformat()}, "produced", "future"),
    ],
)
def test_invalid_registration_changes_nothing(
    site: ModuleSite,
    millet: FlaskClient,
    codes: list[str],
    over: dict[str, str],
    field_id: str,
    expected: str,
) -> None:
    over = {k: v.format(a=codes[0], b=codes[1]) for k, v in over.items()}
    data = lot_form(codes, over.pop("lot", "BAD-" + field_id.upper()[:8]), **over)
    token = csrf_token(millet, REGISTER)
    before, first = dump(site.instance.engine), size(site)
    response = millet.post(REGISTER, data={"csrf_token": token, **data})
    assert response.status_code == 400
    errors = field_errors(response, field_id)
    assert errors, field_summary(response)
    assert expected in errors
    assert size(site) == first
    assert dump(site.instance.engine) == before
    # what was typed is shown again, escaped
    assert 'name="product_zh"' in response.get_data(as_text=True)


def test_registration_shows_several_bad_lines(
    site: ModuleSite, millet: FlaskClient, codes: list[str]
) -> None:
    lines = f"{codes[0]} 100\nnot a line at all\n{codes[1]} １０\nZZ-GONE-1 5"
    response = post(millet, REGISTER, lot_form(codes, "MULTI-1", households=lines))
    errors = field_errors(response, "households")
    assert "Line 2" in errors and "Line 3" in errors
    assert response.status_code == 400


def test_user_text_is_escaped(site: ModuleSite, millet: FlaskClient, codes: list[str]) -> None:
    evil = "<script>alert(1)</script>"
    response = post(millet, REGISTER, lot_form(codes, "ESC-1", product_zh=evil, quantity="x"))
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert evil not in html and "&lt;script&gt;" in html


def test_kept_report_must_be_in_the_store(
    site: ModuleSite, millet: FlaskClient, codes: list[str]
) -> None:
    data = lot_form(
        codes,
        "KEPT-1",
        **{
            "inspections-0-lab": "检测站",
            "inspections-0-date": today(),
            "inspections-0-report_sha256": "ab" * 32,
        },
    )
    first = size(site)
    response = post(millet, REGISTER, data)
    assert response.status_code == 400
    assert "gone" in field_errors(response, "inspections-0-report")
    assert size(site) == first


# --- events ---------------------------------------------------------------------------------


def ref(gtin: str | None, lot: str) -> str:
    return f"{gtin or ''}|{lot}"


def now_local() -> str:
    return (datetime.now(CHINA) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")


def test_record_event(site: ModuleSite, millet: FlaskClient, codes: list[str]) -> None:
    register(millet, codes, "EV-1")
    first = size(site)
    response = post(
        millet,
        "/producer/event",
        {
            "batch": ref(None, "EV-1"),
            "step": "shipping:in_transit",
            "time": now_local(),
            "read_point": "合作社仓库",
            "temperature": "-18.5",
            "note": "第一车",
        },
    )
    assert response.status_code == 302, field_summary(response)
    assert size(site) == first + 1
    entry = last_entry(site)
    assert entry.kind == "batch.event"
    assert key_of(site, "millet").verifier.key_id in entry.signed.key_ids()
    assert entry.body["batch"] == {"lot": "EV-1"}
    assert (entry.body["biz_step"], entry.body["disposition"]) == ("shipping", "in_transit")
    assert entry.body["temperature_dc"] == -185
    assert entry.body["time"].endswith("+08:00")
    with site.instance.engine.connect() as conn:
        assert find_batch(conn, None, lot="EV-1")["disposition"] == "in_transit"  # type: ignore[index]
    check_ledger(site.instance.engine)


def test_record_failed_inspection(site: ModuleSite, millet: FlaskClient, codes: list[str]) -> None:
    register(millet, codes, "EV-INSP")
    report = b"inspection: lead above the limit"
    response = post(
        millet,
        "/producer/event",
        {
            "batch": ref(None, "EV-INSP"),
            "step": "inspecting:non_conformant",
            "time": now_local(),
            "read_point": "检测站",
            "inspection_lab": "浑源县检测站",
            "inspection_date": today(),
            "inspection_report": (io.BytesIO(report), "r.pdf"),
        },
    )
    assert response.status_code == 302, field_summary(response)
    inspection = last_entry(site).body["inspection"]
    assert inspection["result"] == "fail"
    assert default_store(site.instance.settings.instance).get(inspection["report_sha256"]) == report
    # failed lots may not be sold: the ledger's reason is shown and nothing is written
    first = size(site)
    response = post(
        millet,
        "/producer/event",
        {
            "batch": ref(None, "EV-INSP"),
            "step": "retail_selling:sellable_accessible",
            "time": now_local(),
            "read_point": "扶贫专柜",
        },
    )
    assert response.status_code == 400
    assert "failed its latest inspection" in form_level_errors(response) + field_summary(response)
    assert size(site) == first


@pytest.mark.parametrize(
    ("over", "field_id", "expected"),
    [
        ({"step": "shipping:active"}, "step", "Choose one of the listed steps"),
        ({"step": "commissioning:active"}, "step", "Choose one of the listed steps"),
        ({"temperature": "4.55"}, "temperature", "one decimal"),
        ({"temperature": "99"}, "temperature", "between"),
        ({"read_point": ""}, "read_point", "required"),
        ({"step": "inspecting:conformant"}, "inspection_lab", "laboratory"),
        ({"batch": "|NO-SUCH-LOT"}, "batch", "not registered"),
        ({"time": "2001-01-01T08:00"}, "time", "before the batch was produced"),
        ({"time": "2099-01-01T08:00"}, "time", "later than the log time"),
    ],
)
def test_invalid_event_changes_nothing(
    site: ModuleSite,
    millet: FlaskClient,
    codes: list[str],
    over: dict[str, str],
    field_id: str,
    expected: str,
) -> None:
    if find_lot(site, "EV-BAD") is None:
        register(millet, codes, "EV-BAD")
    data = {
        "batch": ref(None, "EV-BAD"),
        "step": "storing:active",
        "time": now_local(),
        "read_point": "仓库",
    }
    data.update(over)
    token = csrf_token(millet, "/producer/event")
    before = dump(site.instance.engine)
    response = millet.post("/producer/event", data={"csrf_token": token, **data})
    assert response.status_code == 400
    assert expected in field_errors(response, field_id), field_summary(response)
    assert dump(site.instance.engine) == before


def find_lot(site: ModuleSite, lot: str, gtin: str | None = None) -> dict[str, Any] | None:
    with site.instance.engine.connect() as conn:
        return find_batch(conn, gtin, lot=lot)


# --- split and merge --------------------------------------------------------------------------


def test_split_a_lot(site: ModuleSite, millet: FlaskClient, codes: list[str]) -> None:
    register(millet, codes, "SPLIT-1", quantity="100", unit="kg")
    form = millet.get("/producer/transform?lot=SPLIT-1")
    assert 'selected value="|SPLIT-1"' in form.get_data(as_text=True)
    response = post(
        millet,
        "/producer/transform",
        {
            "inputs-0-batch": ref(None, "SPLIT-1"),
            "inputs-0-quantity": "100",
            "outputs-0-lot": "SPLIT-1-5KG",
            "outputs-0-quantity": "10",
            "outputs-0-unit": "box",
            "outputs-0-net_quantity": "5",
            "outputs-0-net_unit": "kg",
            "outputs-1-lot": "SPLIT-1-BULK",
            "outputs-1-gtin": GTIN,
            "outputs-1-quantity": "80",
            "outputs-1-unit": "jin",
            "date": today(),
            "work": "分拣包装 graded and packed",
        },
    )
    assert response.status_code == 302, field_summary(response)
    entry = last_entry(site)
    assert entry.kind == "batch.transformed"
    assert key_of(site, "millet").verifier.key_id in entry.signed.key_ids()
    assert entry.body["inputs"] == [{"batch": {"lot": "SPLIT-1"}, "quantity": 100}]
    assert entry.body["outputs"] == [
        {
            "lot": "SPLIT-1-5KG",
            "quantity": 10,
            "unit": "box",
            "net_content": {"quantity": 5, "unit": "kg"},
        },
        {"lot": "SPLIT-1-BULK", "quantity": 80, "unit": "jin", "gtin": GTIN},
    ]
    assert find_lot(site, "SPLIT-1")["remaining"] == 0  # type: ignore[index]
    bulk = find_lot(site, "SPLIT-1-BULK", GTIN)
    assert bulk is not None and bulk["producer"] == MILLET and bulk["quantity"] == 80
    check_ledger(site.instance.engine)


def test_merge_lots(site: ModuleSite, millet: FlaskClient, codes: list[str]) -> None:
    register(millet, codes, "MERGE-A", quantity="20", unit="kg")
    register(millet, codes, "MERGE-B", quantity="60", unit="jin")
    response = post(
        millet,
        "/producer/transform",
        {
            "inputs-0-batch": ref(None, "MERGE-A"),
            "inputs-0-quantity": "20",
            "inputs-1-batch": ref(None, "MERGE-B"),
            "inputs-1-quantity": "60",
            "outputs-0-lot": "MERGE-AB",
            "outputs-0-quantity": "50000",
            "outputs-0-unit": "g",
            "date": today(),
            "work": "混合 merged",
        },
    )
    assert response.status_code == 302, field_summary(response)
    body = last_entry(site).body
    assert [i["batch"]["lot"] for i in body["inputs"]] == ["MERGE-A", "MERGE-B"]
    merged = find_lot(site, "MERGE-AB")
    assert merged is not None and merged["quantity"] == 50000 and merged["unit"] == "g"
    check_ledger(site.instance.engine)


@pytest.mark.parametrize(
    ("outputs", "where", "expected"),
    [
        # 10 kg in, 12 kg out: conservation
        ({"outputs-0-quantity": "12", "outputs-0-unit": "kg"}, "form", "more than the 10,000 g"),
        # boxes with no net content cannot be compared with kg
        ({"outputs-0-quantity": "3", "outputs-0-unit": "box"}, "form", "cannot compare"),
        ({"outputs-0-quantity": "2.5", "outputs-0-unit": "kg"}, "outputs-0-quantity", "whole"),
        (
            {"outputs-0-quantity": "5", "outputs-0-unit": "kg", "outputs-0-lot": "批"},
            "outputs-0-lot",
            "Character 1",
        ),
        (
            {"outputs-0-quantity": "5", "outputs-0-unit": "kg", "inputs-0-quantity": "11"},
            "inputs-0-quantity",
            "Only 10",
        ),
        # an output lot that exists already: the ledger's reason, next to that row
        (
            {"outputs-0-quantity": "5", "outputs-0-unit": "kg", "outputs-0-lot": "CONS-1"},
            "outputs-0-lot",
            "already registered",
        ),
    ],
)
def test_invalid_transformation_changes_nothing(
    site: ModuleSite,
    millet: FlaskClient,
    codes: list[str],
    outputs: dict[str, str],
    where: str,
    expected: str,
) -> None:
    if find_lot(site, "CONS-1") is None:
        register(millet, codes, "CONS-1", quantity="10", unit="kg")
    data = {
        "inputs-0-batch": ref(None, "CONS-1"),
        "inputs-0-quantity": "10",
        "outputs-0-lot": "CONS-1-OUT",
        "date": today(),
        "work": "包装",
    }
    data.update(outputs)
    token = csrf_token(millet, "/producer/transform")
    before = dump(site.instance.engine)
    response = millet.post("/producer/transform", data={"csrf_token": token, **data})
    assert response.status_code == 400
    found = form_level_errors(response) if where == "form" else field_errors(response, where)
    assert expected in found, field_summary(response)
    assert dump(site.instance.engine) == before


def test_add_row_buttons_add_rows_without_writing(site: ModuleSite, millet: FlaskClient) -> None:
    before = size(site)
    response = post(millet, "/producer/transform", {"add_input": "1", "inputs-0-quantity": "3"})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'name="inputs-2-batch"' in html  # two rows, and one more
    assert size(site) == before


# --- the organisation boundary ------------------------------------------------------------------


def test_other_organisations_lots_are_refused(
    site: ModuleSite, garlic: FlaskClient, codes: list[str]
) -> None:
    millet_lot = "gtin=09520002000019&lot=HY-XM19-002"
    for path in (
        "/producer/lot",
        "/producer/lot/scans",
        "/producer/lot/qr.svg",
        "/producer/event",
        "/producer/transform",
        "/producer/labels",
        "/producer/recall",
    ):
        assert garlic.get(f"{path}?{millet_lot}").status_code == 403, path
    before = dump(site.instance.engine)
    event = post(
        garlic,
        "/producer/event",
        {
            "batch": ref("09520002000019", "HY-XM19-002"),
            "step": "storing:active",
            "time": now_local(),
            "read_point": "仓库",
        },
    )
    assert event.status_code == 403
    transform = post(
        garlic,
        "/producer/transform",
        {
            "inputs-0-batch": ref("09520002000019", "HY-XM19-002"),
            "inputs-0-quantity": "1",
            "outputs-0-lot": "STOLEN-1",
            "outputs-0-quantity": "1",
            "outputs-0-unit": "jin",
            "date": today(),
            "work": "偷",
        },
    )
    assert transform.status_code == 403
    labels = post(
        garlic,
        "/producer/labels",
        {
            "rows-0-ref": ref("09520002000019", "HY-XM19-002"),
            "rows-0-copies": "3",
            "layout": "3x8",
            "level": "M",
        },
    )
    assert labels.status_code == 403
    assert dump(site.instance.engine) == before
    # and the select offers none of them
    html = garlic.get("/producer/event").get_data(as_text=True)
    assert "HY-XM19" not in html and "DY-" in html


def test_registering_for_another_organisation_is_impossible(
    site: ModuleSite, garlic: FlaskClient, codes: list[str]
) -> None:
    """The body's producer is always the signer's organisation: a posted field cannot change it."""
    response = register(garlic, codes, "GARLIC-OWN-1", producer=MILLET)
    assert last_entry(site).body["producer"] == GARLIC
    html = garlic.get(response.headers["Location"]).get_data(as_text=True)
    assert "GARLIC-OWN-1" in html


# --- labels and codes -----------------------------------------------------------------------------


def decode(image: Image.Image) -> list[str]:
    return [d.data.decode("utf-8") for d in pyzbar.decode(image) if d.type == "QRCODE"]


def test_labels_pdf(site: ModuleSite, millet: FlaskClient, codes: list[str]) -> None:
    register(millet, codes, "LBL-1", gtin=GTIN)
    form = millet.get(f"/producer/labels?gtin={GTIN}&lot=LBL-1")
    html = page(form)
    assert "LBL-1" in html and "DY-" not in html
    rows = re.findall(r'name="(rows-\d+)-ref"[^>]*value="([^"]*)"', form.get_data(as_text=True))
    row = next(name for name, value in rows if unescape(value) == ref(GTIN, "LBL-1"))
    response = post(
        millet,
        "/producer/labels",
        {f"{row}-ref": ref(GTIN, "LBL-1"), f"{row}-copies": "4", "layout": "2x5", "level": "Q"},
        form_path="/producer/labels",
    )
    assert response.status_code == 200, field_summary(response)
    assert response.mimetype == "application/pdf"
    pdf = response.get_data()
    assert pdf.startswith(b"%PDF")
    document = pdfium.PdfDocument(pdf)
    try:
        assert len(document) == 1
        textpage = document[0].get_textpage().get_text_range()
        image = document[0].render(scale=200 / 72).to_pil().convert("L")
    finally:
        document.close()
    assert textpage.count("LBL-1") == 4
    found = decode(image)
    assert found and len(set(found)) == 1
    url = found[0]
    assert urlsplit(url).netloc == "localhost"
    assert urlsplit(url).path == gs1.digital_link_path(GTIN, "LBL-1")
    with site.instance.engine.connect() as conn:
        assert check_label(conn, url) == find_lot(site, "LBL-1", GTIN)["registered_seq"]  # type: ignore[index]


def test_labels_need_a_count_and_respect_the_limit(site: ModuleSite, millet: FlaskClient) -> None:
    response = post(millet, "/producer/labels", {"layout": "3x8", "level": "M"})
    assert response.status_code == 400
    assert "at least one lot" in form_level_errors(response) + field_summary(response)
    big = {"layout": "3x8", "level": "M"}
    for n, (lot, copies) in enumerate([("001", 1000), ("002", 1000), ("003", 1)]):
        big[f"rows-{n}-ref"] = ref("09520002000019", f"HY-XM19-{lot}")
        big[f"rows-{n}-copies"] = str(copies)
    response = post(millet, "/producer/labels", big)
    assert response.status_code == 400
    assert "At most 2000 labels per PDF; you asked for 2001" in field_summary(response)
    big["rows-2-copies"] = "1001"
    response = post(millet, "/producer/labels", big)
    assert response.status_code == 400
    assert "at most 1000" in field_summary(response)


def test_labels_use_the_configured_host(site: ModuleSite, millet: FlaskClient) -> None:
    site.app.config["SUYUAN_PUBLIC_HOST"] = "trace.example.cn"
    try:
        response = millet.get("/producer/lot/qr.png?gtin=09520002000019&lot=HY-XM19-002&level=H")
    finally:
        del site.app.config["SUYUAN_PUBLIC_HOST"]
    assert response.status_code == 200 and response.mimetype == "image/png"
    (url,) = decode(Image.open(io.BytesIO(response.get_data())))
    assert url.startswith("https://trace.example.cn/01/09520002000019/10/HY-XM19-002?h=")
    svg = millet.get("/producer/lot/qr.svg?gtin=09520002000019&lot=HY-XM19-002")
    assert svg.mimetype == "image/svg+xml" and b"<svg" in svg.get_data()
    assert millet.get("/producer/lot/qr.gif?gtin=09520002000019&lot=HY-XM19-002").status_code == 404


# --- scan figures ---------------------------------------------------------------------------------


def test_scan_figures_and_clone_flag(
    site: ModuleSite, millet: FlaskClient, codes: list[str]
) -> None:
    register(millet, codes, "SCAN-1", quantity="5", unit="box")
    register(millet, codes, "SCAN-2", quantity="500", unit="box")
    days = [(datetime.now(UTC).date() - timedelta(days=n)).isoformat() for n in range(3)]
    with site.instance.engine.begin() as conn:
        conn.execute(
            scans.insert(),
            [{"code": "/b/SCAN-1", "day": d, "scans": 40, "visitors": 30} for d in days]
            + [{"code": "/b/SCAN-2", "day": days[0], "scans": 7, "visitors": 5}],
        )
    html = page(millet.get("/producer/"))
    rows = {
        lot: html.split(f"<code>{lot}</code>")[1].split("</tr>")[0] for lot in ("SCAN-1", "SCAN-2")
    }
    assert ">120<" in rows["SCAN-1"] and 'data-flag="suspicious"' in rows["SCAN-1"]
    assert ">7<" in rows["SCAN-2"] and "suspicious" not in rows["SCAN-2"]
    detail = page(millet.get("/producer/lot/scans?lot=SCAN-1"))
    assert 'data-flag="suspicious"' in detail
    for day in days:
        assert re.search(
            rf"<td>{day}</td><td class=\"num\">40</td><td class=\"num\">30</td>", detail
        )
    lot_page = page(millet.get("/producer/lot?lot=SCAN-1"))
    assert 'data-flag="suspicious"' in lot_page and "120" in lot_page
    quiet = page(millet.get("/producer/lot?lot=SCAN-2"))
    assert 'data-flag="suspicious"' not in quiet


def test_lot_page_shows_the_lot(site: ModuleSite, millet: FlaskClient) -> None:
    html = page(millet.get("/producer/lot?gtin=09520002000019&lot=HY-XM19-001"))
    assert "浑源小米" in html and "HY-XM19-001-2J" in html  # the split's outputs
    assert "/01/09520002000019/10/HY-XM19-001" in html
    assert "SX-HY-000001" in html  # its own households' codes, for its own producer
    assert millet.get("/producer/lot?lot=NOPE-404").status_code == 404
    assert millet.get("/producer/lot?lot=bad lot").status_code == 404


def test_revoked_key_can_no_longer_sign(site: ModuleSite, codes: list[str]) -> None:
    add_user(site.instance, site.admin, "millet2", "producer", MILLET)
    client = signed_in(site.app, "millet2")
    token = csrf_token(client, REGISTER)
    log = site.instance.writer()
    key_id = next(k.key_id for k in log.registered_keys() if k.name == "millet2")
    site.instance.sign_and_append(
        log, "key.revoked", {"key": key_id, "reason": "lost phone"}, [site.admin]
    )
    before = dump(site.instance.engine)
    response = client.post(REGISTER, data={"csrf_token": token, **lot_form(codes, "REV-1")})
    assert response.status_code == 403
    assert dump(site.instance.engine) == before


def test_recalled_lot_is_shown_and_gets_no_labels(
    site: ModuleSite, millet: FlaskClient, codes: list[str]
) -> None:
    register(millet, codes, "RECALL-1")
    log = site.instance.writer()
    site.instance.sign_and_append(
        log,
        "batch.recalled",
        {"batch": {"lot": "RECALL-1"}, "reason": "农残超标 pesticide residue"},
        [key_of(site, "millet")],
    )
    dashboard = page(millet.get("/producer/"))
    row = dashboard.split("<code>RECALL-1</code>")[1].split("</tr>")[0]
    assert "recalled" in row
    lot_page = page(millet.get("/producer/lot?lot=RECALL-1"))
    assert 'class="recall-banner"' in lot_page and "农残超标" in lot_page
    assert "RECALL-1" not in page(millet.get("/producer/labels"))
    before = dump(site.instance.engine)
    response = post(
        millet,
        "/producer/labels",
        {"rows-0-ref": ref(None, "RECALL-1"), "rows-0-copies": "2", "layout": "3x8", "level": "M"},
    )
    assert response.status_code == 400
    assert "recalled or destroyed" in field_summary(response)
    # selling it is refused by the ledger, with its reason
    response = post(
        millet,
        "/producer/event",
        {
            "batch": ref(None, "RECALL-1"),
            "step": "retail_selling:sellable_accessible",
            "time": now_local(),
            "read_point": "扶贫专柜",
        },
    )
    assert response.status_code == 400
    assert "was recalled" in form_level_errors(response) + field_summary(response)
    assert dump(site.instance.engine) == before


@pytest.mark.parametrize("path", PAGES)
def test_pages_render_in_chinese(site: ModuleSite, path: str) -> None:
    client = signed_in(site.app, "millet")  # no language cookie: zh, the default
    response = client.get(path)
    assert response.status_code == 200
    if response.mimetype == "text/html":
        assert '<html lang="zh-CN">' in response.get_data(as_text=True)


def test_dashboard_pages_newest_first(
    site: ModuleSite, codes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    add_user(site.instance, site.admin, "pager", "producer", "翻页测试合作社")
    client = english(signed_in(site.app, "pager"))
    for n in range(3):
        register(client, codes, f"PAGER-{n}")
    monkeypatch.setattr(producer_module, "PAGE", 2)
    first = page(client.get("/producer/"))
    assert "PAGER-2" in first and "PAGER-1" in first and "PAGER-0" not in first
    assert first.index("PAGER-2") < first.index("PAGER-1")
    found = re.search(r'href="(/producer/\?before=\d+)"', first)
    assert found is not None
    second = page(client.get(found.group(1)))
    assert "PAGER-0" in second and "PAGER-1" not in second
    assert "before=" not in second


def test_ledger_reasons_find_their_row(
    site: ModuleSite, millet: FlaskClient, codes: list[str]
) -> None:
    """Rows left blank do not shift where a refusal is shown."""
    register(millet, codes, "ROW-1", quantity="10", unit="kg")
    before = dump(site.instance.engine)
    response = post(
        millet,
        "/producer/transform",
        {
            "inputs-0-batch": "",  # blank rows, as a browser sends them
            "inputs-0-quantity": "",
            "outputs-0-lot": "",
            "outputs-1-lot": "",
            "inputs-1-batch": ref(None, "ROW-1"),
            "inputs-1-quantity": "10",
            "outputs-2-lot": "ROW-1",  # exists already
            "outputs-2-quantity": "5",
            "outputs-2-unit": "kg",
            "date": today(),
            "work": "包装",
        },
    )
    assert response.status_code == 400
    assert "already registered" in field_errors(response, "outputs-2-lot")
    # an expired certificate is about the certificate, though its text names the production date
    response = post(
        millet,
        REGISTER,
        lot_form(
            codes,
            "ROW-2",
            **{
                "certifications-0-scheme": "",  # a blank row first, as a browser sends it
                "certifications-0-number": "",
                "certifications-1-scheme": "organic",
                "certifications-1-number": "OG-1",
                "certifications-1-valid_until": "2001-01-01",
            },
        ),
    )
    assert response.status_code == 400
    assert "expired on 2001-01-01" in field_summary(response)
    assert not field_errors(response, "produced")
    assert dump(site.instance.engine) == before


# --- recall ----------------------------------------------------------------------------------

RECALL_REASON = (
    "市场监管抽检：噻虫嗪残留超标 <b>thiamethoxam</b> above the GB 2763 limit\nDo not eat."
)


def recall_path(lot: str, gtin: str | None = None) -> str:
    return f"/producer/recall?gtin={gtin}&lot={lot}" if gtin else f"/producer/recall?lot={lot}"


def hidden_fields(response: TestResponse) -> dict[str, str]:
    """The hidden inputs of a page, as a browser would post them back."""
    fields: dict[str, str] = {}
    for tag in re.findall(r"<input[^>]*>", response.get_data(as_text=True)):
        if 'type="hidden"' not in tag:
            continue
        name = re.search(r'name="([^"]*)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if name:
            fields[unescape(name.group(1))] = unescape(value.group(1)) if value else ""
    return fields


def split(client: FlaskClient, source: str, quantity: int, *outputs: tuple[str, int]) -> None:
    data: dict[str, str] = {
        "inputs-0-batch": ref(None, source),
        "inputs-0-quantity": str(quantity),
        "date": today(),
        "work": "分装 packed",
    }
    for n, (lot, kg) in enumerate(outputs):
        data.update(
            {f"outputs-{n}-lot": lot, f"outputs-{n}-quantity": str(kg), f"outputs-{n}-unit": "kg"}
        )
    response = post(client, "/producer/transform", data)
    assert response.status_code == 302, field_summary(response)


def review(client: FlaskClient, lot: str, data: dict[str, Any]) -> TestResponse:
    token = csrf_token(client, recall_path(lot))
    return client.post(recall_path(lot), data={"csrf_token": token, "review": "1", **data})


def test_recall_through_the_form(site: ModuleSite, millet: FlaskClient, codes: list[str]) -> None:
    register(millet, codes, "RCL-1", quantity="100", unit="kg")
    split(millet, "RCL-1", 100, ("RCL-1-A", 60), ("RCL-1-B", 40))
    split(millet, "RCL-1-A", 60, ("RCL-1-A1", 50))
    lot_page = millet.get("/producer/lot?lot=RCL-1").get_data(as_text=True)
    assert f'href="{recall_path("RCL-1")}"' in lot_page

    notice = b"%PDF-1.4 recall notice RCL-1\n"
    photo = b"\x89PNG fake photo of the label"
    first, before = size(site), dump(site.instance.engine)
    shown = review(
        millet,
        "RCL-1",
        {
            "reason": RECALL_REASON.replace("\n", "\r\n"),
            "evidence": [
                (io.BytesIO(notice), "抽检通知书.pdf", "application/pdf"),
                (io.BytesIO(photo), "photos/label.png", "image/png"),
            ],
        },
    )
    # the confirmation step: nothing written yet, every derived lot named
    assert shown.status_code == 200, field_summary(shown)
    assert size(site) == first and dump(site.instance.engine) == before
    html = shown.get_data(as_text=True)
    assert 'data-derived-count="3"' in html
    for lot in ("RCL-1-A", "RCL-1-B", "RCL-1-A1"):
        assert f'data-derived="{lot}"' in html
    assert "&lt;b&gt;thiamethoxam" in html and "<b>thiamethoxam" not in html  # escaped

    fields = hidden_fields(shown)
    assert fields["reason"] == RECALL_REASON
    # going back to change it keeps the reason and the documents (not uploaded again)
    edit = millet.post(recall_path("RCL-1"), data={**fields, "edit": "1"})
    assert edit.status_code == 200
    assert "thiamethoxam" in page(edit) and 'name="kept-1-keep"' in edit.get_data(as_text=True)
    assert hidden_fields(edit)["kept-0-sha256"] == hashlib.sha256(notice).hexdigest()
    assert size(site) == first
    response = millet.post(recall_path("RCL-1"), data={**fields, "confirm": "1"})
    assert response.status_code == 302, field_summary(response)
    assert urlsplit(response.headers["Location"]).path == "/producer/lot"

    assert size(site) == first + 1
    entry = last_entry(site)
    assert entry.kind == "batch.recalled"
    assert key_of(site, "millet").verifier.key_id in entry.signed.key_ids()
    assert entry.body == {
        "batch": {"lot": "RCL-1"},
        "reason": RECALL_REASON,
        "evidence": [
            {
                "sha256": hashlib.sha256(notice).hexdigest(),
                "name": "抽检通知书.pdf",
                "media_type": "application/pdf",
                "size": len(notice),
            },
            {
                "sha256": hashlib.sha256(photo).hexdigest(),
                "name": "label.png",
                "media_type": "image/png",
                "size": len(photo),
            },
        ],
    }
    store = default_store(site.instance.settings.instance)
    assert store.get(hashlib.sha256(notice).hexdigest()) == notice
    for lot in ("RCL-1", "RCL-1-A", "RCL-1-B", "RCL-1-A1"):
        assert find_lot(site, lot)["recalled_seq"] == entry.seq, lot  # type: ignore[index]

    # the flash names the seq and links to the public page; no second recall is offered
    lot_html = millet.get(response.headers["Location"]).get_data(as_text=True)
    flash = re.search(r'<p class="flash[^"]*"[^>]*>(.*?)</p>', lot_html, re.S)
    assert flash is not None
    assert f"seq {entry.seq}" in flash.group(1) and "3 lot(s) made from it" in flash.group(1)
    assert '<a href="/b/RCL-1">' in flash.group(1)
    assert 'data-action="recall"' not in lot_html and 'class="recall-banner"' in lot_html

    public = site.app.test_client()
    own = public.get("/b/RCL-1")
    assert own.status_code == 200
    assert f'data-recall="{entry.seq}"' in own.get_data(as_text=True)
    assert "噻虫嗪残留超标" in page(own) and "抽检通知书.pdf" in page(own)
    derived = public.get("/b/RCL-1-A1")
    assert f'data-recall="{entry.seq}"' in derived.get_data(as_text=True)
    assert "噻虫嗪残留超标" in page(derived) and 'href="/b/RCL-1"' in derived.get_data(as_text=True)

    # nothing may be made from a recalled lot any more
    refused = post(
        millet,
        "/producer/transform",
        {
            "inputs-0-batch": ref(None, "RCL-1-B"),
            "inputs-0-quantity": "10",
            "outputs-0-lot": "RCL-1-B1",
            "outputs-0-quantity": "10",
            "outputs-0-unit": "kg",
            "date": today(),
            "work": "分装",
        },
    )
    assert refused.status_code == 400
    assert "was recalled" in field_errors(refused, "inputs-0-batch")
    assert find_lot(site, "RCL-1-B1") is None
    check_ledger(site.instance.engine)


def test_recall_of_another_organisations_lot_is_forbidden(
    site: ModuleSite, millet: FlaskClient, garlic: FlaskClient, codes: list[str]
) -> None:
    register(millet, codes, "RCL-THEIRS")
    assert garlic.get(recall_path("RCL-THEIRS")).status_code == 403
    evidence = b"garlic's forged notice"
    token = csrf_token(garlic, "/producer/event")
    before = dump(site.instance.engine)
    for step in ("review", "confirm"):
        response = garlic.post(
            recall_path("RCL-THEIRS"),
            data={
                "csrf_token": token,
                step: "1",
                "reason": "不是我们的批次",
                "evidence": [(io.BytesIO(evidence), "forged.pdf")],
            },
        )
        assert response.status_code == 403
    assert dump(site.instance.engine) == before
    store = default_store(site.instance.settings.instance)
    assert not store.has(hashlib.sha256(evidence).hexdigest())  # refused before storing
    assert find_lot(site, "RCL-THEIRS")["recalled_seq"] is None  # type: ignore[index]


@pytest.mark.parametrize(
    ("reason", "step", "expected"),
    [
        ("", "review", "Give the reason for the recall"),
        ("  \r\n\t ", "review", "Give the reason for the recall"),
        ("", "confirm", "Give the reason for the recall"),  # an edited confirmation
        ("长" * 2001, "review", "At most 2000 characters; you wrote 2001"),
    ],
)
def test_recall_needs_a_reason(
    site: ModuleSite,
    millet: FlaskClient,
    codes: list[str],
    reason: str,
    step: str,
    expected: str,
) -> None:
    if find_lot(site, "RCL-NOREASON") is None:
        register(millet, codes, "RCL-NOREASON")
    document = b"%PDF-1.4 notice without a reason"
    token = csrf_token(millet, recall_path("RCL-NOREASON"))
    before = dump(site.instance.engine)
    response = millet.post(
        recall_path("RCL-NOREASON"),
        data={
            "csrf_token": token,
            step: "1",
            "reason": reason,
            "evidence": [(io.BytesIO(document), "notice.pdf")],
        },
    )
    assert response.status_code == 400
    assert expected in field_errors(response, "reason"), field_summary(response)
    assert dump(site.instance.engine) == before
    # the uploaded document is kept for the next try (not asked for again)
    fields = hidden_fields(response)
    assert fields["kept-0-sha256"] == hashlib.sha256(document).hexdigest()
    assert fields["kept-0-name"] == "notice.pdf"


def test_recalling_twice_is_refused_clearly(
    site: ModuleSite, millet: FlaskClient, codes: list[str]
) -> None:
    register(millet, codes, "RCL-TWICE", quantity="10", unit="kg")
    split(millet, "RCL-TWICE", 10, ("RCL-TWICE-A", 10))
    first = review(
        millet,
        "RCL-TWICE",
        {
            "reason": "发霉 mould",
            "evidence": [(io.BytesIO(b"photo 1"), "a.jpg"), (io.BytesIO(b"photo 2"), "b.jpg")],
        },
    )
    # back to the form, one document unticked (a browser leaves an unticked box out)
    fields = {k: v for k, v in hidden_fields(first).items() if k != "kept-0-keep"}
    shown = millet.post(recall_path("RCL-TWICE"), data={**fields, "review": "1"})
    assert shown.status_code == 200, field_summary(shown)
    assert 'data-derived-count="1"' in shown.get_data(as_text=True)
    fields = hidden_fields(shown)
    assert "kept-1-sha256" not in fields and fields["kept-0-name"] == "b.jpg"
    done = millet.post(recall_path("RCL-TWICE"), data={**fields, "confirm": "1"})
    assert done.status_code == 302, field_summary(done)
    seq = last_entry(site).seq
    assert [d["name"] for d in last_entry(site).body["evidence"]] == ["b.jpg"]

    before = dump(site.instance.engine)
    again = millet.post(recall_path("RCL-TWICE"), data={**fields, "confirm": "1"})
    assert again.status_code == 409
    message = form_level_errors(again)
    assert f"Lot RCL-TWICE is already recalled (seq {seq})" in message
    assert "Sign and recall" not in page(again)
    # a derived lot, recalled through its input, says where its recall came from
    page_html = millet.get(recall_path("RCL-TWICE-A"))
    assert page_html.status_code == 200
    derived = form_level_errors(page_html)
    assert f"already recalled (seq {seq})" in derived and "through lot RCL-TWICE" in derived
    assert 'name="reason"' not in page_html.get_data(as_text=True)
    assert dump(site.instance.engine) == before
    check_ledger(site.instance.engine)


def test_recall_without_csrf_token_is_refused(
    site: ModuleSite, millet: FlaskClient, codes: list[str]
) -> None:
    register(millet, codes, "RCL-NOCSRF")
    before = dump(site.instance.engine)
    for step in ("review", "confirm"):
        response = millet.post(recall_path("RCL-NOCSRF"), data={step: "1", "reason": "no token"})
        assert response.status_code == 400
    assert dump(site.instance.engine) == before
    assert find_lot(site, "RCL-NOCSRF")["recalled_seq"] is None  # type: ignore[index]
