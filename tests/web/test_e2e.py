"""End to end in headless Chromium: the site as its people use it, on a small demo ledger.

One demo ledger (``ledger.demo.load_demo``, 40 households) with the demo's portal accounts
(``web.demo_users``), one live server and one Chromium serve the whole module.

(a) A consumer scans a demo lot's label (with its ``?h=``) on a phone: the product page shows
    the product and producer and the verification panel reaches ``verified``; a recalled lot
    shows the recall banner and verifies the recall entry too.
(b) Tampering on the wire — one proof hash of ``/api/v1/entries/…``, the root of
    ``/log/checkpoint`` — ends ``failed``.
(c) A cooperative signs in, registers a lot through the form, follows its public page, which
    verifies; a wrong GTIN check digit is explained beside the field and writes nothing.
(d) An auditor downloads the checkpoint, the ledger grows, and "prove nothing changed" is
    confirmed by the server and by the browser.
(e) Chinese by default for a Chinese browser; the switch shows the English page.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select

from ledger import demo as demo_data
from ledger.domain.batches import batch_households, batches
from ledger.domain.households import households
from ledger.entry import decode_entry
from ledger.log import Log
from ledger.schema import entries
from qr.urls import batch_url, entry_leaf_hash
from tests.helpers import check_ledger
from tests.web.browser import chromium, live_server
from tests.web.support import ModuleSite, make_site
from web.demo_users import ensure_demo_users

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Route

pytestmark = pytest.mark.browser

PASSWORD = "demo-password-e2e"
HOUSEHOLDS = 40  # demo households: every product, recall and programme, in about two seconds
PHONE = {"width": 390, "height": 844}
MUSHROOM_GTIN = "09520001000010"  # 讷河赤松茸 (ledger/demo.py: _gtin("0001", "00001"))
RECALLED_LOT = "DY-MY19-003-G1"  # a gift box made from the recalled pomelo lot DY-MY19-003
PANEL = "[data-verify-panel]"


@dataclass
class World:
    site: ModuleSite
    base: str
    accounts: dict[str, tuple[str, str]]  # user name -> (role, organisation)

    @property
    def log(self) -> Log:
        return self.site.instance.reader()

    def size(self) -> int:
        return self.log.latest_checkpoint().size

    def label_url(self, gtin: str, lot: str) -> str:
        """What the lot's QR label holds (qr.urls), pointed at the live server."""
        with self.site.instance.engine.connect() as conn:
            seq = self.batch(lot)["registered_seq"]
            url = batch_url(urlsplit(self.base).netloc, gtin, lot, entry_leaf_hash(conn, seq))
        assert url.startswith("https://")
        return "http://" + url.removeprefix("https://")

    def batch(self, lot: str) -> dict[str, Any]:
        with self.site.instance.engine.connect() as conn:
            row = conn.execute(select(batches).where(batches.c.lot == lot)).mappings().first()
        assert row is not None, f"the demo has no lot {lot}"
        return dict(row)

    def entry(self, seq: int) -> Any:
        with self.site.instance.engine.connect() as conn:
            leaf = conn.execute(select(entries.c.leaf).where(entries.c.seq == seq)).scalar_one()
        return decode_entry(bytes(leaf))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with make_site(tmp_path_factory.mktemp("e2e")) as site:
        demo_data.load_demo(site.instance, households=HOUSEHOLDS)
        made = ensure_demo_users(site.instance, PASSWORD, log_n=4)
        site.app.config["SUYUAN_SCAN_FLUSH_THREAD"] = False
        with live_server(site.app) as base:
            yield World(site, base, {name: (role, org) for name, role, org in made})
        scans = site.app.extensions.get("suyuan_scans")
        if scans is not None:
            scans.close()  # write the scan counts while the database is still open


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@contextmanager
def opened(browser: Browser, *, locale: str = "en-US", phone: bool = False) -> Iterator[Page]:
    """A page in a fresh context; ``phone`` gives it a phone's viewport and touch."""
    options: dict[str, Any] = {"locale": locale}
    if phone:
        options.update(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    context: BrowserContext = browser.new_context(**options)
    context.set_default_timeout(20_000)
    page = context.new_page()
    try:
        yield page
        # Let route handlers still answering the page's other requests finish: closing
        # under them makes their route.fetch() fail inside the next test.
        page.unroute_all(behavior="wait")
    finally:
        context.close()


def watch(page: Page) -> list[str]:
    """Collect script errors, console errors (a CSP violation is one) and failed requests."""
    problems: list[str] = []

    def console(msg: Any) -> None:
        if msg.type == "error":
            problems.append(f"console: {msg.text}")

    def response(answer: Any) -> None:
        if answer.status >= 400:
            problems.append(f"HTTP {answer.status}: {answer.url}")

    page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
    page.on("console", console)
    page.on("response", response)
    return problems


def settled(page: Page, selector: str = PANEL) -> str:
    """Wait until the panel leaves ``pending``; return its status."""
    page.wait_for_function(
        "sel => { const el = document.querySelector(sel);"
        " return !!el && el.dataset.verifyStatus !== 'pending'; }",
        arg=selector,
        timeout=20_000,
    )
    return str(page.locator(selector).get_attribute("data-verify-status"))


def panel_seqs(page: Page) -> list[int]:
    """The entries the panel checks (``data-seqs``)."""
    listed = page.locator(PANEL).get_attribute("data-seqs") or ""
    return [int(s) for s in listed.split(",") if s]


def entry_requests(page: Page) -> list[int]:
    """The seqs whose ``/api/v1/entries/<seq>`` the page fetches."""
    seen: list[int] = []

    def note(request: Any) -> None:
        found = re.search(r"/api/v1/entries/(\d+)", request.url)
        if found:
            seen.append(int(found.group(1)))

    page.on("request", note)
    return seen


def sign_in(page: Page, world: World, username: str) -> None:
    page.goto(f"{world.base}/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("form.card button[type=submit]")
    page.wait_for_url(lambda url: urlsplit(url).path != "/login")


def flip(b64: str) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[0] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


# --- (a) a consumer scans a label -------------------------------------------------------------


def test_scanned_label_verifies_on_a_phone(world: World, browser: Browser) -> None:
    lot = world.batch("NH-CSR19-B01")
    assert (lot["gtin"], lot["status"]) == (MUSHROOM_GTIN, "active")
    url = world.label_url(MUSHROOM_GTIN, "NH-CSR19-B01")
    assert "?h=" in url
    with opened(browser, phone=True) as page:
        problems = watch(page)
        fetched = entry_requests(page)
        page.goto(url)
        assert settled(page) == "verified"
        assert page.locator("h1").first.inner_text() == lot["product_zh"]
        facts = page.locator("dl.facts").inner_text()
        assert lot["producer"] in facts and "NH-CSR19-B01" in facts
        # the coop-nehe account's cooperative made it
        assert lot["producer"] == world.accounts["coop-nehe"][1]
        assert page.locator('[data-label-check="ok"]').count() == 1
        assert page.locator("[data-recall]").count() == 0
        shown = panel_seqs(page)
        assert lot["registered_seq"] in shown and sorted(set(fetched)) == sorted(shown)
        headline = page.locator("[data-verify-headline]").inner_text()
        assert headline and page.locator("[data-verify-result]").is_visible()
        # a phone shows the page without sideways scrolling
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"the page is {width}px wide on a {PHONE['width']}px phone"
        assert not problems, problems


def test_recalled_lot_shows_the_banner_and_verifies_the_recall(
    world: World, browser: Browser
) -> None:
    lot = world.batch(RECALLED_LOT)
    recall_seq = lot["recalled_seq"]
    assert lot["status"] == "recalled" and recall_seq is not None
    recall = world.entry(recall_seq)
    assert recall.kind == "batch.recalled"
    with opened(browser, phone=True, locale="zh-CN") as page:
        problems = watch(page)
        fetched = entry_requests(page)
        page.goto(world.label_url(lot["gtin"], RECALLED_LOT))
        assert settled(page) == "verified"
        banner = page.locator(f'[data-recall="{recall_seq}"]')
        assert banner.is_visible()
        assert recall.body["reason"] in banner.inner_text()
        shown = panel_seqs(page)
        assert recall_seq in shown and recall_seq in fetched  # the recall itself was checked
        expect = json.loads(page.locator(PANEL).get_attribute("data-expect") or "{}")
        assert expect[str(recall_seq)]["kind"] == "batch.recalled"
        assert not problems, problems


# --- (b) tampering on the wire ---------------------------------------------------------------


def test_a_rewritten_inclusion_proof_fails(world: World, browser: Browser) -> None:
    rewritten: list[str] = []

    def handler(route: Route) -> None:
        response = route.fetch()
        body = response.json()
        if not rewritten:  # one hash of one answer is enough
            hashes = body["inclusion_proof"]["hashes"]
            assert hashes, "the log is big enough for every proof to have hashes"
            hashes[len(hashes) // 2] = flip(hashes[len(hashes) // 2])
            rewritten.append(route.request.url)
        route.fulfill(response=response, body=json.dumps(body))

    with opened(browser, phone=True) as page:
        page.route("**/api/v1/entries/**", handler)
        page.goto(world.label_url(MUSHROOM_GTIN, "NH-CSR19-B02"))
        assert settled(page) == "failed"
        assert rewritten
        assert "inclusion" in (page.locator(PANEL).get_attribute("data-verify-reason") or "")
        assert page.locator("[data-verify-headline]").inner_text() == "NOT VERIFIED"


def test_a_rewritten_checkpoint_fails(world: World, browser: Browser) -> None:
    served: list[str] = []

    def handler(route: Route) -> None:
        response = route.fetch()
        lines = response.text().split("\n")
        lines[2] = flip(lines[2])  # origin, size, root: another root, same signature
        served.append(lines[2])
        route.fulfill(response=response, body="\n".join(lines))

    with opened(browser, phone=True) as page:
        page.route("**/log/checkpoint", handler)
        page.goto(world.label_url(MUSHROOM_GTIN, "NH-CSR19-B03"))
        assert settled(page) == "failed"
        assert served
        assert page.locator(PANEL).get_attribute("data-verify-error") == "signature"


# --- (c) a cooperative registers a lot -------------------------------------------------------


def county_households(world: World, org: str) -> list[str]:
    """Registered households of the county where ``org``'s lots come from."""
    with world.site.instance.engine.connect() as conn:
        county = conn.execute(
            select(batches.c.county).where(batches.c.producer == org).limit(1)
        ).scalar_one()
        codes = conn.execute(
            select(households.c.code).where(households.c.county == county).order_by("code")
        ).scalars()
        return list(codes)


def register_form(page: Page, world: World, fields: dict[str, str], shares: str) -> None:
    page.goto(f"{world.base}/producer/")
    page.click("nav.producer-nav a[href='/producer/batches/new']")
    page.wait_for_url(f"{world.base}/producer/batches/new")
    for name, value in fields.items():
        page.fill(f"#{name}", value)
    page.select_option("#unit", "kg")
    page.fill("#households", shares)
    page.click("form.producer-form button[type=submit]")
    page.wait_for_load_state()


def lot_fields(lot: str, gtin: str) -> dict[str, str]:
    return {
        "lot": lot,
        "gtin": gtin,
        "product_zh": "讷河赤松茸（鲜品）",
        "product_en": "Nehe wine-cap mushrooms (fresh)",
        "province": "黑龙江省",
        "city": "齐齐哈尔市",
        "county": "讷河市",
        "township": "老莱镇",
        "village": "红旗村",
        "produced": "2019-09-02",
        "quantity": "640",
    }


def test_producer_registers_a_lot_that_verifies_publicly(world: World, browser: Browser) -> None:
    role, org = world.accounts["coop-nehe"]
    assert role == "producer"
    codes = county_households(world, org)[:3]
    assert len(codes) == 3
    lot = "NH-CSR19-E2E1"
    before = world.size()
    with opened(browser) as page:
        problems = watch(page)
        sign_in(page, world, "coop-nehe")
        register_form(
            page,
            world,
            lot_fields(lot, MUSHROOM_GTIN),
            f"{codes[0]} 300\n{codes[1]} 250‰\n{codes[2].lower()}, 200",
        )
        landed = urlsplit(page.url)
        assert landed.path == "/producer/lot"
        assert parse_qs(landed.query) == {"gtin": [MUSHROOM_GTIN], "lot": [lot]}
        flash = page.locator(".flash").inner_text()
        seq = before  # the only entry this form appends
        assert f"Lot {lot} registered in the ledger at seq {seq}." in flash
        assert world.size() == before + 1
        entry = world.entry(seq)
        assert entry.kind == "batch.registered"
        assert entry.body["producer"] == org and entry.body["gtin"] == MUSHROOM_GTIN
        assert {h["household"]: h["share_permille"] for h in entry.body["households"]} == {
            codes[0]: 300,
            codes[1]: 250,
            codes[2]: 200,
        }
        page.click("a.public-link")
        page.wait_for_url(f"{world.base}/01/{MUSHROOM_GTIN}/10/{lot}")
        assert settled(page) == "verified"
        assert page.locator("h1").first.inner_text() == "讷河赤松茸（鲜品）"
        assert org in page.locator("dl.facts").inner_text()
        assert page.locator("[data-households]").get_attribute("data-households") == "3"
        shown = panel_seqs(page)
        assert seq in shown
        assert not problems, problems
    with world.site.instance.engine.connect() as conn:
        stored = conn.execute(
            select(func.count()).where(batch_households.c.lot == lot)
        ).scalar_one()
    assert stored == 3
    check_ledger(world.site.instance.engine)


def test_wrong_gtin_check_digit_is_explained_and_writes_nothing(
    world: World, browser: Browser
) -> None:
    _role, org = world.accounts["coop-nehe"]
    codes = county_households(world, org)[:1]
    bad = MUSHROOM_GTIN[:-1] + str((int(MUSHROOM_GTIN[-1]) + 1) % 10)
    before = world.size()
    with opened(browser) as page:
        sign_in(page, world, "coop-nehe")
        register_form(page, world, lot_fields("NH-CSR19-E2E2", bad), f"{codes[0]} 500")
        assert urlsplit(page.url).path == "/producer/batches/new"
        field = page.locator(".field:has(#gtin)")
        assert "has-error" in (field.get_attribute("class") or "")
        errors = field.locator(".errors").inner_text()
        assert "Wrong check digit" in errors and f"should be {MUSHROOM_GTIN[-1]}" in errors
        assert page.locator("#gtin").get_attribute("aria-invalid") == "true"
        assert page.locator("#gtin").input_value() == bad  # kept for correcting
        assert page.locator(".field:has(#lot) .errors").count() == 0
    assert world.size() == before
    with world.site.instance.engine.connect() as conn:
        assert conn.execute(select(batches).where(batches.c.lot == "NH-CSR19-E2E2")).first() is None


# --- (d) an auditor proves nothing changed ----------------------------------------------------


def test_auditor_proves_nothing_changed_since_a_saved_checkpoint(
    world: World, browser: Browser, tmp_path: Path
) -> None:
    assert world.accounts["auditor"][0] == "auditor"
    with opened(browser) as page:
        problems = watch(page)
        sign_in(page, world, "auditor")
        page.goto(f"{world.base}/audit/consistency")
        with page.expect_download() as info:
            page.click("a[href='/audit/checkpoint.txt']")
        saved = tmp_path / "checkpoint.txt"
        info.value.save_as(saved)
        old_note = saved.read_text(encoding="utf-8")
        old = world.log.latest_checkpoint()
        assert old_note == old.note

        log = world.site.log
        for n in range(3):
            world.site.instance.sign_and_append(
                log, "note", {"text": f"审计后新增 note {n} after the audit"}, [world.site.admin]
            )
        new_size = world.size()
        assert new_size == old.size + 3

        page.goto(f"{world.base}/audit/consistency")
        page.fill("#checkpoint", old_note)
        page.click("form[enctype] button[type=submit]")
        assert settled(page, "[data-consistency-panel]") == "verified"
        server = page.locator("section[data-consistency]")
        assert server.get_attribute("data-consistency") == "consistent"
        assert "3 entries were added" in server.inner_text()
        panel = page.locator("[data-consistency-panel]")
        assert panel.get_attribute("data-verify-new-size") == str(new_size)
        assert not problems, problems
    check_ledger(world.site.instance.engine)


# --- (e) languages ---------------------------------------------------------------------------


def test_chinese_by_default_and_the_switch_to_english(world: World, browser: Browser) -> None:
    lot = world.batch("NH-CSR19-B04")
    url = world.label_url(MUSHROOM_GTIN, "NH-CSR19-B04")
    with opened(browser, locale="zh-CN", phone=True) as page:
        page.goto(url)
        assert page.locator("html").get_attribute("lang") == "zh-CN"
        assert page.locator(".product-en").count() == 0
        assert settled(page) == "verified"
        page.click(".lang-switch a[hreflang=en]")
        page.wait_for_function("() => document.documentElement.lang === 'en'")
        assert page.url == url  # back on the scanned page, its ?h= kept
        assert page.locator(".lang-switch strong").inner_text() == "English"
        assert page.locator(".product-en").inner_text() == lot["product_en"]
        assert "Producer" in page.locator("dl.facts").inner_text()
        assert settled(page) == "verified"
        assert page.locator("[data-verify-headline]").inner_text() == "Verified in your browser"
        page.goto(world.label_url(MUSHROOM_GTIN, "NH-CSR19-B05"))  # the choice is remembered
        assert page.locator("html").get_attribute("lang") == "en"
