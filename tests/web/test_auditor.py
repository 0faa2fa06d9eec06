"""The auditor portal (``/audit/``): roles, fund trails against the entries, the anomaly
report, checkpoints, "prove nothing changed", full-ledger verification jobs and exports.

Read-only tests share one small demo ledger (``demo`` fixture, built once per module);
tests that write or tamper use the per-test ``site`` fixture.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import io
import json
import os
import re
import socket
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask.testing import FlaskClient
from openpyxl import load_workbook
from sqlalchemy import text

from ledger import demo as demo_data
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.db import make_engine, upgrade
from ledger.entry import decode_entry, make_statement, sign_statement
from ledger.log import Log
from ledger.note import Signer
from ledger.queries import QUERIES
from ledger.tabular import flatten
from tests.conftest import Site
from tests.helpers import ORIGIN, check_ledger, new_signer, now
from tests.web.browser import browser, live_server, new_page  # noqa: F401 (fixture)
from tests.web.portal import PASSWORD, add_user, csrf_token, signed_in
from tests.web.support import ModuleSite, add_notes, make_site
from web import jobs
from web.auditor import normalise_note, yuan

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

SMALL = 40  # demo households: every programme and planted anomaly, in about a second
READ_PAGES = [
    "/audit/",
    "/audit/trail?source=GX-GN-2017-IND-SRC",
    "/audit/disbursements?allocation=GX-GN-2017-IND",
    "/audit/anomalies",
    "/audit/checkpoints",
    "/audit/consistency",
    "/audit/export",
    "/audit/export/balances?format=csv",
    "/audit/checkpoint.txt",
]
AUDITOR_PAGES = ["/audit/verify", f"/audit/verify/{'a' * 32}", f"/audit/verify/{'a' * 32}.json"]


@dataclass
class Demo:
    site: ModuleSite
    auditor: FlaskClient
    official: FlaskClient  # a village approver: reads everything but refusals and jobs
    producer: FlaskClient

    @property
    def log(self) -> Log:
        return self.site.instance.reader()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with make_site(tmp_path_factory.mktemp("audit")) as site:
        demo_data.load_demo(site.instance, households=SMALL)
        add_user(site.instance, site.admin, "aud", "auditor", "审计局 Audit bureau")
        add_user(site.instance, site.admin, "vill", "village_approver", "新兴村村民委员会")
        add_user(site.instance, site.admin, "coop", "producer")
        yield Demo(
            site,
            signed_in(site.app, "aud"),
            signed_in(site.app, "vill"),
            signed_in(site.app, "coop"),
        )


def page(client: FlaskClient, path: str, status: int = 200) -> str:
    response = client.get(path)
    assert response.status_code == status, (path, response.status_code)
    return response.get_data(as_text=True)


def leaves(log: Log) -> list[Any]:
    return [decode_entry(leaf) for leaf in log.leaves(0, log.latest_checkpoint().size)]


# --- money ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fen", "text_"),
    [
        (0, "0.00"),
        (1, "0.01"),
        (100, "1.00"),
        (123456, "1,234.56"),
        (-5, "-0.05"),
        (1_946_800_000, "19,468,000.00"),
        (9_007_199_254_740_991, "90,071,992,547,409.91"),
    ],
)
def test_yuan_is_exact(fen: int, text_: str) -> None:
    assert yuan(fen) == text_


# --- roles ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", READ_PAGES + AUDITOR_PAGES)
def test_signed_out_goes_to_login(demo: Demo, path: str) -> None:
    response = demo.site.app.test_client().get(path)
    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == "/login"


@pytest.mark.parametrize("path", READ_PAGES + AUDITOR_PAGES)
def test_producer_is_refused(demo: Demo, path: str) -> None:
    assert demo.producer.get(path).status_code == 403


@pytest.mark.parametrize("path", READ_PAGES)
def test_officials_read_the_portal(demo: Demo, path: str) -> None:
    assert demo.official.get(path).status_code == 200


@pytest.mark.parametrize("path", AUDITOR_PAGES)
def test_only_auditors_run_and_see_verification_jobs(demo: Demo, path: str) -> None:
    assert demo.official.get(path).status_code == 403
    assert demo.auditor.get(path).status_code in (200, 404)  # the job does not exist


def test_officials_cannot_start_a_verification(demo: Demo) -> None:
    token = csrf_token(demo.official, "/audit/consistency")
    response = demo.official.post("/audit/verify", data={"csrf_token": token})
    assert response.status_code == 403


# --- fund trails ---------------------------------------------------------------------------


@dataclass
class Ledgered:
    """Active payments recomputed from the entries alone (corrections and reversals applied)."""

    amount: dict[str, int]  # disbursement id -> current amount
    allocation: dict[str, str]
    village: dict[str, tuple[str, str, str] | None]  # None: an organisation
    entry_amount: dict[int, int]  # seq of a fund.disbursed/corrected -> the amount it states
    allocated: dict[str, tuple[int, int]]  # allocation -> (seq, amount)
    sources: dict[str, tuple[int, int]]  # source -> (seq, amount)

    def by_allocation(self) -> dict[str, tuple[int, int]]:
        out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for pay_id, amount in self.amount.items():
            row = out[self.allocation[pay_id]]
            row[0] += 1
            row[1] += amount
        return {k: (v[0], v[1]) for k, v in out.items()}

    def groups(self, allocation: str) -> dict[tuple[str, str, str] | None, int]:
        out: dict[tuple[str, str, str] | None, int] = defaultdict(int)
        for pay_id, amount in self.amount.items():
            if self.allocation[pay_id] == allocation:
                out[self.village[pay_id]] += amount
        return dict(out)


def from_entries(log: Log) -> Ledgered:
    places: dict[str, tuple[str, str, str]] = {}
    amount: dict[str, int] = {}
    allocation: dict[str, str] = {}
    village: dict[str, tuple[str, str, str] | None] = {}
    entry_amount: dict[int, int] = {}
    allocated: dict[str, tuple[int, int]] = {}
    sources: dict[str, tuple[int, int]] = {}
    reversed_: set[str] = set()
    for entry in leaves(log):
        body = entry.body
        if entry.kind in ("household.identified", "household.corrected") and "location" in body:
            loc = body["location"]
            places[body["code"]] = (loc["county"], loc["township"], loc["village"])
        elif entry.kind == "fund.source":
            sources[body["id"]] = (entry.seq, body["amount_fen"])
        elif entry.kind == "fund.allocated":
            allocated[body["id"]] = (entry.seq, body["amount_fen"])
        elif entry.kind == "fund.disbursed":
            amount[body["id"]] = body["amount_fen"]
            allocation[body["id"]] = body["allocation"]
            household = body["recipient"].get("household")
            village[body["id"]] = places[household] if household else None
            entry_amount[entry.seq] = body["amount_fen"]
        elif entry.kind == "fund.corrected":
            amount[body["disbursement"]] = body["amount_fen"]
            entry_amount[entry.seq] = body["amount_fen"]
        elif entry.kind == "fund.reversed" and "disbursement" in body:
            reversed_.add(body["disbursement"])
    for pay_id in reversed_:
        amount.pop(pay_id)
    return Ledgered(amount, allocation, village, entry_amount, allocated, sources)


@pytest.fixture(scope="module")
def ledgered(demo: Demo) -> Ledgered:
    return from_entries(demo.log)


def sections(page_: str, marker: str) -> list[str]:
    """The HTML of each ``<section class="card allocation" …>`` (up to the next one)."""
    return page_.split(marker)[1:]


_ALLOC = re.compile(
    r'data-allocation="([^"]+)" data-amount-fen="(\d+)" data-disbursed-fen="(\d+)" '
    r'data-count="(\d+)"'
)
_GROUP = re.compile(
    r'<tr data-group data-amount-fen="(\d+)" data-count="(\d+)">.*?'
    r'<a class="group-page" href="([^"]+)">(\d+)</a>',
    re.S,
)
_MONEY = re.compile(r'<a class="num money" href="/e/(\d+)" data-fen="(-?\d+)" data-seq="(\d+)"')


def source_ids(demo: Demo) -> list[str]:
    with demo.log.engine.connect() as conn:
        return [s["id"] for s in QUERIES["balances"](conn, {})["sources"]]


def test_dashboard_lists_every_source_and_links_its_trail(demo: Demo) -> None:
    body = page(demo.auditor, "/audit/")
    ids = source_ids(demo)
    assert len(ids) >= 10
    for source in ids:
        assert f'href="/audit/trail?source={source}"' in body


def test_trail_sums_equal_the_payments_on_the_ledger(demo: Demo, ledgered: Ledgered) -> None:
    expected = ledgered.by_allocation()
    seen = 0
    for source in source_ids(demo):
        body = page(demo.auditor, f"/audit/trail?source={source}")
        source_total = 0
        for section in sections(body, '<section class="card allocation"'):
            found = _ALLOC.search(section)
            assert found, section[:300]
            alloc_id, amount, disbursed, count = (
                found.group(1),
                int(found.group(2)),
                int(found.group(3)),
                int(found.group(4)),
            )
            assert (count, disbursed) == expected.get(alloc_id, (0, 0)), alloc_id
            assert amount == ledgered.allocated[alloc_id][1]
            source_total += disbursed
            # Each village group sums that village's payments; together they are the allocation's.
            groups = ledgered.groups(alloc_id)
            shown = _GROUP.findall(section)
            assert sum(int(g[0]) for g in shown) == disbursed
            for group_fen, _count, href, _text in shown:
                query = parse_qs(urlsplit(html.unescape(href)).query)
                key = (
                    (query["county"][0], query["township"][0], query["village"][0])
                    if query["recipient_type"] == ["household"]
                    else None
                )
                assert groups[key] == int(group_fen), (alloc_id, key)
            seen += 1
        node = re.search(
            r'data-source="[^"]+" data-amount-fen="(\d+)".*?data-disbursed-fen="(\d+)"', body
        )
        assert node and int(node.group(2)) == source_total
        assert int(node.group(1)) == ledgered.sources[source][1]
    assert seen >= 10


def test_every_number_links_to_its_entry_and_proof(demo: Demo, ledgered: Ledgered) -> None:
    body = page(demo.auditor, "/audit/trail?source=GX-GN-2017-IND-SRC")
    size = demo.log.latest_checkpoint().size
    links = _MONEY.findall(body)
    assert len(links) > 5
    for href_seq, _fen, seq in links:
        assert href_seq == seq and int(seq) < size
        assert f'href="/api/v1/entries/{seq}"' in body
    # The source's and the allocation's amounts link to the entries that state them.
    src_seq, src_fen = ledgered.sources["GX-GN-2017-IND-SRC"]
    alloc_seq, alloc_fen = ledgered.allocated["GX-GN-2017-IND"]
    assert (str(src_seq), str(src_fen), str(src_seq)) in links
    assert (str(alloc_seq), str(alloc_fen), str(alloc_seq)) in links
    # The links work: the entry page and the proof.
    assert demo.auditor.get(f"/e/{alloc_seq}").status_code == 200
    proof = demo.auditor.get(f"/api/v1/entries/{alloc_seq}").get_json()
    assert proof["entry"]["statement"]["body"]["id"] == "GX-GN-2017-IND"


def test_group_links_page_the_payments_that_make_its_sum(demo: Demo, ledgered: Ledgered) -> None:
    body = page(demo.auditor, "/audit/trail?source=GX-GN-2017-IND-SRC")
    group_fen, count, href, _ = _GROUP.findall(body)[0]
    listing = page(demo.auditor, html.unescape(href))
    rows = re.findall(r'<tr data-disbursement="([^"]+)" data-amount-fen="(\d+)"', listing)
    assert len(rows) == int(count)
    assert sum(int(r[1]) for r in rows) == int(group_fen)
    assert f'data-page-sum="{group_fen}"' in listing
    for pay_id, fen in rows:
        assert ledgered.amount[pay_id] == int(fen)
    # Each payment's amount links to the entry stating it.
    for seq, fen, _ in _MONEY.findall(listing):
        assert ledgered.entry_amount[int(seq)] == int(fen)
    # Breadcrumbs lead back up the trail.
    assert 'href="/audit/trail?source=GX-GN-2017-IND-SRC"' in listing
    assert '<nav class="breadcrumbs"' in listing


def test_disbursement_pages_are_paged(demo: Demo, ledgered: Ledgered) -> None:
    expected = sorted(p for p, a in ledgered.allocation.items() if a == "GX-GN-2017-IND")
    seen: list[str] = []
    path = "/audit/disbursements?allocation=GX-GN-2017-IND&limit=7&status=active"
    for _ in range(10):
        listing = page(demo.auditor, path)
        seen += re.findall(r'<tr data-disbursement="([^"]+)"', listing)
        more = re.search(r'<a rel="next" href="([^"]+)"', listing)
        if not more:
            break
        path = html.unescape(more.group(1))
    assert sorted(seen) == expected and len(seen) > 7


def test_project_and_household_trails(demo: Demo, ledgered: Ledgered) -> None:
    body = page(demo.auditor, "/audit/trail?project=HL-NH-2018-ROAD-01")
    assert 'data-allocation="HL-NH-2018-ROAD"' in body
    disbursed = ledgered.by_allocation()["HL-NH-2018-ROAD"][1]
    assert f'data-disbursed-fen="{disbursed}"' in body
    assert "HL-NH-ROAD-PROG" in body and "HL-NH-ROAD-FINAL" in body  # gated payments
    household = next(
        p for p, a in ledgered.allocation.items() if a == "GX-HJ-2017-LOAN"
    )  # a borrower
    code = next(
        e.body["recipient"]["household"]
        for e in leaves(demo.log)
        if e.kind == "fund.disbursed" and e.body["id"] == household
    )
    body = page(demo.auditor, f"/audit/trail?household={code}")
    expected = sum(
        fen
        for pay_id, fen in ledgered.amount.items()
        if any(
            e.kind == "fund.disbursed"
            and e.body["id"] == pay_id
            and e.body["recipient"].get("household") == code
            for e in leaves(demo.log)
        )
    )
    assert f'data-household="{code}" data-amount-fen="{expected}"' in body
    assert 'href="/audit/trail?source=GX-HJ-2017-LOAN-SRC"' in body  # upward to the source


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/audit/trail", 400),
        ("/audit/trail?source=A&project=B", 400),
        ("/audit/trail?source=NO-SUCH-SOURCE", 404),
        ("/audit/trail?source=GX-GN-2017-IND-SRC&limit=0", 400),
        ("/audit/disbursements", 400),
        ("/audit/anomalies?today=2020-13-45", 400),
        ("/audit/checkpoints?before=x", 400),
        ("/audit/export/no-such-query", 404),
        ("/audit/export/balances?format=pdf", 400),
    ],
)
def test_bad_requests_are_explained(demo: Demo, path: str, status: int) -> None:
    body = page(demo.auditor, path, status)
    assert 'class="card problem"' in body


def test_pages_escape_what_authors_wrote(demo: Demo) -> None:
    body = page(demo.auditor, "/audit/trail?household=<script>alert(1)</script>")
    assert "<script>alert(1)</script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body  # an unknown household, shown escaped


# --- anomalies -----------------------------------------------------------------------------


def test_anomaly_report_shows_the_planted_anomalies(demo: Demo) -> None:
    body = page(demo.auditor, "/audit/anomalies?today=2021-01-01")
    refusals = body.split('data-anomaly="refusals"')[1].split("</section>")[0]
    assert 'data-code="overspend"' in refusals and "HL-NH-ROAD-EXTRA" in refusals
    assert 'data-code="duplicate_payment"' in refusals and "GX-GN-2017-IND-000001-B" in refusals
    # The refusal's reason names entries; they are linked.
    assert 'href="/e/366"' in refusals or re.search(r'href="/e/\d+"', refusals)
    unevidenced = body.split('data-anomaly="unevidenced_payments"')[1].split("</section>")[0]
    assert 'data-disbursement="HL-NH-ROAD-PROG"' in unevidenced
    overdue = body.split('data-anomaly="overdue_milestones"')[1].split("</section>")[0]
    assert "GX-HJ-2020-WATER-01" in overdue
    stages = body.split('data-anomaly="stages_without_evidence"')[1].split("</section>")[0]
    assert "HL-NH-2018-ROAD-01" in stages
    duplicates = body.split('data-anomaly="duplicate_payees"')[1].split("</section>")[0]
    assert "GX-GN-000010" in duplicates  # the 雨露计划 second grant, allowed by an exception
    loans = body.split('data-anomaly="overdue_loans"')[1].split("</section>")[0]
    assert "GX-HJ-000003" in loans


def test_anomaly_report_as_of_an_earlier_day(demo: Demo) -> None:
    body = page(demo.auditor, "/audit/anomalies?today=2020-01-01")
    overdue = body.split('data-anomaly="overdue_milestones"')[1].split("</section>")[0]
    assert "GX-HJ-2020-WATER-01" not in overdue  # due 2020-06-30: not yet overdue


def test_officials_do_not_see_refusals(demo: Demo) -> None:
    body = page(demo.official, "/audit/anomalies")
    assert "HL-NH-ROAD-EXTRA" not in body and "GX-GN-2017-IND-000001-B" not in body
    assert "GX-HJ-2020-WATER-01" in body  # the rest of the report is there
    exported = demo.official.get("/audit/export/anomalies?format=json").get_json()
    assert exported["overspend_attempts"] == [] and exported["duplicate_payment_attempts"] == []
    assert exported["overdue_milestones"]
    audited = demo.auditor.get("/audit/export/anomalies?format=json").get_json()
    assert [r["body"]["id"] for r in audited["overspend_attempts"]] == ["HL-NH-ROAD-EXTRA"]


# --- checkpoints ---------------------------------------------------------------------------


def stored_sizes(log: Log) -> list[int]:
    with log.engine.connect() as conn:
        return [int(r[0]) for r in conn.execute(text("SELECT size FROM checkpoints ORDER BY size"))]


def test_checkpoint_history_is_paged_newest_first(demo: Demo) -> None:
    sizes = stored_sizes(demo.log)
    seen: list[int] = []
    path = "/audit/checkpoints?limit=7"
    for _ in range(len(sizes)):
        body = page(demo.auditor, path)
        seen += [int(s) for s in re.findall(r'<tr data-size="(\d+)">', body)]
        more = re.search(r'<a rel="next" href="([^"]+)"', body)
        if not more:
            break
        path = html.unescape(more.group(1))
    assert seen == sorted(sizes, reverse=True)
    latest = demo.log.latest_checkpoint()
    root = base64.b64encode(latest.checkpoint.root).decode()
    assert root in page(demo.auditor, "/audit/checkpoints")


def test_checkpoint_downloads(demo: Demo) -> None:
    latest = demo.log.latest_checkpoint()
    response = demo.auditor.get("/audit/checkpoint.txt")
    assert response.get_data(as_text=True) == latest.note
    assert "attachment" in response.headers["Content-Disposition"]
    size = stored_sizes(demo.log)[5]
    older = demo.auditor.get(f"/audit/checkpoints/{size}.txt").get_data(as_text=True)
    assert older == demo.log.checkpoint(size).note
    assert demo.auditor.get("/audit/checkpoints/999999.txt").status_code == 404
    rows = list(
        csv.DictReader(
            io.StringIO(
                demo.auditor.get("/audit/checkpoints?format=csv&limit=5")
                .get_data(as_text=True)
                .lstrip("\ufeff")
            )
        )
    )
    assert [int(r["size"]) for r in rows] == sorted(stored_sizes(demo.log), reverse=True)[:5]


# --- "prove nothing changed" ---------------------------------------------------------------


def check(client: FlaskClient, note: str | None = None, **files: Any) -> tuple[int, str]:
    token = csrf_token(client, "/audit/consistency")
    data: dict[str, Any] = {"csrf_token": token}
    if note is not None:
        data["checkpoint"] = note
    data.update(files)
    response = client.post("/audit/consistency", data=data, content_type="multipart/form-data")
    return response.status_code, response.get_data(as_text=True)


def outcome(body: str) -> str:
    found = re.search(r'data-consistency="([a-z]+)"', body)
    assert found, body[:2000]
    return found.group(1)


def log_signer(site: ModuleSite | Site) -> Signer:
    return site.instance.keystore.log_signer(ORIGIN, site.instance.passphrase())


def test_a_genuine_old_checkpoint_is_consistent(demo: Demo) -> None:
    size = stored_sizes(demo.log)[10]
    note = demo.log.checkpoint(size).note
    status, body = check(demo.auditor, note)
    assert (status, outcome(body)) == (200, "consistent")
    latest = demo.log.latest_checkpoint()
    # The page carries what the browser needs to check it again, and the proof is right.
    panel = re.search(r"<section[^>]*data-consistency-panel[^>]*>", body, re.S)
    assert panel and 'data-verify-status="pending"' in panel.group(0)
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', panel.group(0)))
    assert html.unescape(attrs["old-note"]) == note
    assert html.unescape(attrs["new-note"]) == latest.note
    assert attrs["vkey"] == demo.log.verifier.vkey
    proof = [base64.b64encode(h).decode() for h in demo.log.consistency_proof(size, latest.size)]
    assert attrs["proof"].split() == proof


def test_consistency_accepts_uploads_pasted_crlf_and_the_current_checkpoint(demo: Demo) -> None:
    latest = demo.log.latest_checkpoint().note
    status, body = check(demo.auditor, latest.replace("\n", "\r\n") + "\r\n\r\n")
    assert (status, outcome(body)) == (200, "consistent")
    size = stored_sizes(demo.log)[3]
    note = demo.log.checkpoint(size).note
    status, body = check(demo.auditor, None, upload=(io.BytesIO(note.encode()), "cp.txt"))
    assert (status, outcome(body)) == (200, "consistent")
    status, body = check(demo.auditor, demo.log.checkpoint(0).note)  # the empty tree
    assert (status, outcome(body)) == (200, "consistent")


def test_normalise_note() -> None:
    assert normalise_note("\ufeff a\r\nb\r\n\r\n— x\r\n\n") == "a\nb\n\n— x\n"


def test_a_different_history_under_the_same_key_is_not_consistent(
    demo: Demo, tmp_path: Path
) -> None:
    """A second log with the same log key (what an operator rewriting history would run)."""
    signer = log_signer(demo.site)
    engine = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        upgrade(engine)
        other = Log.initialize(engine, signer)
        admin = new_signer("admin")
        genesis = make_statement(
            "key.registered",
            {"name": "admin", "vkey": admin.verifier.vkey, "role": "admin", "org": "另一个 Other"},
            ORIGIN,
            now(),
        )
        other.append([sign_statement(genesis, [admin])])
        add_notes(other, admin, 30, batch=30)
        forged = other.latest_checkpoint()
    finally:
        engine.dispose()
    assert forged.size < demo.log.latest_checkpoint().size
    status, body = check(demo.auditor, forged.note)
    assert (status, outcome(body)) == (200, "inconsistent")
    assert "data-consistency-panel" in body  # the browser is asked to check (and must fail)
    # A checkpoint for a size the log signed, with another root: a fork, said so.
    size = stored_sizes(demo.log)[8]
    fork = sign_checkpoint(Checkpoint(ORIGIN, size, hashlib.sha256(b"x").digest()), signer)
    status, body = check(demo.auditor, fork)
    assert (status, outcome(body)) == (200, "inconsistent")
    assert 'class="card result bad"' in body and str(size) in body


def test_a_checkpoint_from_the_future_is_explained(demo: Demo) -> None:
    latest = demo.log.latest_checkpoint().size
    note = sign_checkpoint(
        Checkpoint(ORIGIN, latest + 5, hashlib.sha256(b"later").digest()), log_signer(demo.site)
    )
    demo.auditor.set_cookie("lang", "en")
    try:
        status, body = check(demo.auditor, note)
    finally:
        demo.auditor.delete_cookie("lang")
    assert (status, outcome(body)) == (200, "ahead")
    assert "rolled back" in body and str(latest + 5) in body
    assert "data-consistency-panel" not in body


@pytest.mark.parametrize(
    "garbage",
    [
        "hello",
        "test.suyuan.example/log\n12\nnot base64!\n\n— test.suyuan.example/log AAAA\n",
        "\x00\x01binary",
    ],
)
def test_garbage_is_a_clear_400(demo: Demo, garbage: str) -> None:
    status, body = check(demo.auditor, garbage)
    assert status == 400
    assert 'data-problem="malformed"' in body


def test_empty_submission_is_a_400(demo: Demo) -> None:
    status, body = check(demo.auditor, "   ")
    assert status == 400 and 'data-problem="malformed"' in body


def test_oversized_upload_is_refused(demo: Demo) -> None:
    status, body = check(demo.auditor, None, upload=(io.BytesIO(b"x" * 70_000), "big.txt"))
    assert status == 400 and "KiB" in body


def test_a_checkpoint_signed_by_another_key_is_refused(demo: Demo) -> None:
    size = demo.log.latest_checkpoint().size
    stranger = new_signer(ORIGIN)  # same name, different key
    note = sign_checkpoint(
        Checkpoint(ORIGIN, size, demo.log.latest_checkpoint().checkpoint.root), stranger
    )
    status, body = check(demo.auditor, note)
    assert status == 422 and 'data-problem="signature"' in body
    other_origin = new_signer("other.example/log")
    note = sign_checkpoint(Checkpoint("other.example/log", 3, bytes(32)), other_origin)
    status, body = check(demo.auditor, note)
    assert status == 422 and 'data-problem="signature"' in body


def test_consistency_needs_csrf(demo: Demo) -> None:
    note = demo.log.latest_checkpoint().note
    response = demo.auditor.post("/audit/consistency", data={"checkpoint": note})
    assert response.status_code == 400
    assert "data-consistency=" not in response.get_data(as_text=True)


# --- exports -------------------------------------------------------------------------------


def csv_rows(data: bytes) -> list[dict[str, str]]:
    assert data.startswith(b"\xef\xbb\xbf")
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def xlsx_rows(data: bytes) -> list[dict[str, Any]]:
    book = load_workbook(io.BytesIO(data), read_only=True)
    try:
        values = list(book.worksheets[0].iter_rows(values_only=True))
    finally:
        book.close()
    header = [str(h) for h in values[0]]
    # Read-only sheets drop trailing empty cells.
    return [
        dict(zip(header, (*row, *[None] * (len(header) - len(row))), strict=True))
        for row in values[1:]
    ]


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return str(value)


def canonical_row(row: dict[str, str]) -> str:
    return json.dumps(row, sort_keys=True, ensure_ascii=False)


EXPORTS = [
    ("fund-trail", "source=GX-GN-2017-IND-SRC", "/api/v1/funds/trail?source=GX-GN-2017-IND-SRC"),
    ("fund-trail", "project=HL-NH-2018-ROAD-01", "/api/v1/funds/trail?project=HL-NH-2018-ROAD-01"),
    (
        "disbursements",
        "allocation=GX-HJ-2017-DIVIDEND",
        "/api/v1/funds/disbursements?allocation=GX-HJ-2017-DIVIDEND",
    ),
    ("anomalies", "today=2021-01-01", "/api/v1/funds/anomalies?today=2021-01-01"),
    ("balances", "", "/api/v1/funds/balances"),
]


@pytest.mark.parametrize(("name", "query", "api"), EXPORTS)
def test_csv_and_xlsx_exports_match_the_json(demo: Demo, name: str, query: str, api: str) -> None:
    result = demo.auditor.get(api).get_json()
    expected = [flatten(r) for r in QUERIES[name].rows(result)]
    assert expected
    columns = list(dict.fromkeys(k for r in expected for k in r))
    response = demo.auditor.get(f"/audit/export/{name}?{query}&format=csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert f'filename="{name}.csv"' in response.headers["Content-Disposition"]
    got = csv_rows(response.data)
    assert len(got) == len(expected)
    assert set(got[0]) == set(columns)
    want_rows = [{c: as_text(w.get(c)) for c in columns} for w in expected]
    # The API's JSON has its keys sorted, so rows built from it may come in another order.
    assert sorted(got, key=canonical_row) == sorted(want_rows, key=canonical_row)
    response = demo.auditor.get(f"/audit/export/{name}?{query}&format=xlsx")
    assert response.status_code == 200
    sheet = [{c: as_text(v) for c, v in row.items()} for row in xlsx_rows(response.data)]
    assert sorted(sheet, key=canonical_row) == sorted(want_rows, key=canonical_row)
    # The JSON is the API's.
    assert demo.auditor.get(f"/audit/export/{name}?{query}&format=json").get_json() == result


def downloads(body: str) -> list[tuple[str, dict[str, list[str]]]]:
    links = re.findall(r'href="(/audit/export/[^"]+)"', body)
    return [
        (urlsplit(html.unescape(u)).path, parse_qs(urlsplit(html.unescape(u)).query)) for u in links
    ]


def test_trail_pages_link_their_downloads(demo: Demo) -> None:
    found = downloads(page(demo.auditor, "/audit/trail?source=GX-GN-2017-IND-SRC"))
    for fmt in ("csv", "xlsx"):
        assert (
            "/audit/export/fund-trail",
            {"source": ["GX-GN-2017-IND-SRC"], "format": [fmt]},
        ) in found
    found = downloads(page(demo.auditor, "/audit/disbursements?allocation=GX-GN-2017-IND"))
    assert (
        "/audit/export/disbursements",
        {"allocation": ["GX-GN-2017-IND"], "format": ["csv"]},
    ) in found
    for path, query in found:  # every download link works
        response = demo.auditor.get(path, query_string={k: v[0] for k, v in query.items()})
        assert response.status_code == 200


def test_export_page_offers_every_query_with_its_parameters(demo: Demo) -> None:
    body = page(demo.auditor, "/audit/export")
    for query in QUERIES.values():
        form = body.split(f'data-query="{query.name}"')[1].split("</section>")[0]
        assert f'action="/audit/export/{query.name}"' in form
        for param in query.params:
            assert f'name="{param.name}"' in form, (query.name, param.name)
        assert 'value="csv"' in form and 'value="xlsx"' in form


def test_export_ignores_the_language_switch_but_refuses_repeats(demo: Demo) -> None:
    ok = demo.auditor.get("/audit/export/balances?format=json&lang=en")
    assert ok.status_code == 200
    bad = demo.auditor.get("/audit/export/balances?format=json&source=a&source=b")
    assert bad.status_code == 400


# --- verification jobs ---------------------------------------------------------------------


@pytest.fixture
def audited(site: Site) -> Site:
    add_user(site.instance, site.admin, "aud", "auditor")
    add_notes(site.log, site.admin, 30, batch=10)
    return site


def start_job(client: FlaskClient) -> str:
    token = csrf_token(client, "/audit/verify")
    response = client.post("/audit/verify", data={"csrf_token": token})
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    found = re.fullmatch(r"/audit/verify/([0-9a-f]{32})", response.headers["Location"])
    assert found, response.headers["Location"]
    return found.group(1)


def wait(client: FlaskClient, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/audit/verify/{job_id}.json")
        assert response.status_code == 200
        job: dict[str, Any] = response.get_json()
        if not job["running"]:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


JOB_KEYS = {
    "id", "state", "running", "user", "started", "finished", "done", "total", "percent",
    "entries", "checkpoints", "seq", "message",
}  # fmt: skip


def test_verification_job_runs_to_ok(audited: Site) -> None:
    client = signed_in(audited.app, "aud")
    size = audited.log.latest_checkpoint().size
    job_id = start_job(client)
    job = wait(client, job_id)
    assert set(job) == JOB_KEYS
    assert (
        job["state"] == "ok" and job["entries"] == size and job["message"] == f"OK {size} entries"
    )
    assert (job["done"], job["total"], job["percent"], job["seq"]) == (size, size, 100, None)
    assert job["user"] == "aud" and job["finished"] >= job["started"]
    body = page(client, f"/audit/verify/{job_id}")
    assert f'<progress id="job-progress-{job_id}"' in body
    assert f'value="{size}"' in body and 'http-equiv="refresh"' not in body
    assert 'data-job-state="ok"' in body
    assert job_id in page(client, "/audit/verify")  # listed among recent jobs
    state = jobs.jobs_dir(audited.app.instance_path) / f"{job_id}.json"
    assert json.loads(state.read_text())["state"] == "ok"
    check_ledger(audited.instance.engine)


def test_verification_job_names_the_tampered_entry(audited: Site) -> None:
    client = signed_in(audited.app, "aud")
    target = audited.log.latest_checkpoint().size - 7
    with audited.instance.engine.begin() as conn:
        leaf = bytes(
            conn.execute(
                text("SELECT leaf FROM entries WHERE seq = :s"), {"s": target}
            ).scalar_one()
        )
        assert leaf.count(b"note ") == 1
        conn.execute(
            text("UPDATE entries SET leaf = :leaf WHERE seq = :s"),
            {"leaf": leaf.replace(b"note ", b"NOTE "), "s": target},
        )
    job = wait(client, start_job(client))
    assert job["state"] == "failed" and job["seq"] == target, job
    assert job["message"].startswith(f"seq {target}:")
    body = page(client, f"/audit/verify/{job['id']}")
    assert f'href="/e/{target}"' in body and 'data-job-state="failed"' in body


def test_one_job_at_a_time_and_stale_jobs_do_not_block(audited: Site) -> None:
    client = signed_in(audited.app, "aud")
    folder = jobs.jobs_dir(audited.app.instance_path)
    busy = {
        "id": "b" * 32, "state": "running", "user": "someone", "started": now(), "finished": None,
        "done": 3, "total": 40, "entries": None, "checkpoints": None, "seq": None,
        "message": None, "pid": os.getpid(), "host": socket.gethostname(),
    }  # fmt: skip
    jobs.write_state(folder, busy)
    assert start_job(client) == "b" * 32  # the running one is shown, none started
    body = page(client, f"/audit/verify/{'b' * 32}")
    assert '<noscript><meta http-equiv="refresh" content="2"></noscript>' in body
    assert 'value="3"' in body and 'max="40"' in body
    assert "A verification is running" in page(client, "/audit/verify?lang=en")
    # Its process is gone: it is reported interrupted and no longer blocks.
    dead = os.getpid()
    while True:
        dead += 1
        try:
            os.kill(dead, 0)
        except ProcessLookupError:
            break
        except PermissionError:
            continue
    jobs.write_state(folder, {**busy, "pid": dead})
    assert client.get(f"/audit/verify/{'b' * 32}.json").get_json()["state"] == "error"
    new_id = start_job(client)
    assert new_id != "b" * 32
    assert wait(client, new_id)["state"] == "ok"


@pytest.mark.parametrize(
    "job_id",
    ["..%2F..%2Fetc%2Fpasswd", "ABCDEF" + "0" * 26, "a" * 31, "a" * 33, "g" * 32, "lock", ".."],
)
def test_invalid_job_ids_are_404(audited: Site, job_id: str) -> None:
    client = signed_in(audited.app, "aud")
    assert client.get(f"/audit/verify/{job_id}").status_code == 404
    assert client.get(f"/audit/verify/{job_id}.json").status_code == 404


def test_check_id_refuses_paths() -> None:
    for bad in ("../x", "a" * 31, "A" * 32, "a" * 32 + "\n", ""):
        with pytest.raises(Exception, match="no verification job"):
            jobs.check_id(bad)
    assert jobs.check_id("0" * 32) == "0" * 32


def test_starting_a_job_needs_csrf(audited: Site) -> None:
    client = signed_in(audited.app, "aud")
    assert client.post("/audit/verify", data={}).status_code == 400
    assert not jobs.jobs_dir(audited.app.instance_path).exists() or not list(
        jobs.jobs_dir(audited.app.instance_path).glob("*.json")
    )


# --- in the browser ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(demo: Demo) -> Iterator[str]:
    with live_server(demo.site.app) as base:
        yield base


@pytest.fixture
def tab(browser: Browser, served: str) -> Iterator[Page]:  # noqa: F811 (the fixture)
    with new_page(browser) as opened:
        opened.goto(f"{served}/login")
        opened.fill("#username", "aud")
        opened.fill("#password", PASSWORD)
        opened.click("form.card button[type=submit]")
        opened.wait_for_url(f"{served}/audit/")
        yield opened


def submit_checkpoint(tab: Page, served: str, note: str) -> str:
    tab.goto(f"{served}/audit/consistency")
    tab.fill("#checkpoint", note)
    tab.click("form[enctype] button[type=submit]")
    panel = tab.locator("[data-consistency-panel]")
    tab.wait_for_function(
        "() => document.querySelector('[data-consistency-panel]')"
        ".dataset.verifyStatus !== 'pending'",
        timeout=20_000,
    )
    return str(panel.get_attribute("data-verify-status"))


@pytest.mark.browser
def test_browser_confirms_a_genuine_checkpoint(demo: Demo, served: str, tab: Page) -> None:
    note = demo.log.checkpoint(stored_sizes(demo.log)[10]).note
    assert submit_checkpoint(tab, served, note) == "verified"
    assert tab.locator("[data-consistency]").first.get_attribute("data-consistency") == "consistent"
    panel = tab.locator("[data-consistency-panel]")
    assert panel.get_attribute("data-verify-new-size") == str(demo.log.latest_checkpoint().size)


@pytest.mark.browser
def test_browser_refuses_a_rewritten_history(demo: Demo, served: str, tab: Page) -> None:
    size = stored_sizes(demo.log)[8]
    fork = sign_checkpoint(
        Checkpoint(ORIGIN, size, hashlib.sha256(b"x").digest()), log_signer(demo.site)
    )
    assert submit_checkpoint(tab, served, fork) == "failed"
    reason = tab.locator("[data-consistency-panel]").get_attribute("data-verify-reason") or ""
    assert "consistency" in reason


@pytest.mark.browser
def test_browser_follows_a_verification_job(demo: Demo, served: str, tab: Page) -> None:
    tab.goto(f"{served}/audit/verify")
    tab.click("form.card button[type=submit]")
    tab.wait_for_url(re.compile(r".*/audit/verify/[0-9a-f]{32}$"))
    tab.wait_for_function(
        "() => document.querySelector('[data-job]').dataset.jobState !== 'running'",
        timeout=60_000,
    )
    job = tab.locator("[data-job]")
    assert job.get_attribute("data-job-state") == "ok"
    bar = tab.locator("progress[data-job-progress]")
    assert bar.evaluate("el => el.value === el.max && el.max > 0")
    assert str(demo.log.latest_checkpoint().size) in (job.inner_text() or "")


@pytest.mark.browser
def test_browser_progress_bar_follows_the_job_state(demo: Demo, served: str, tab: Page) -> None:
    """audit.js polls the JSON and moves the bar without reloading (the page has no refresh)."""
    folder = jobs.jobs_dir(demo.site.app.instance_path)
    job_id = "c" * 32
    state = {
        "id": job_id, "state": "running", "user": "aud", "started": now(), "finished": None,
        "done": 0, "total": 900, "entries": None, "checkpoints": None, "seq": None,
        "message": None, "pid": os.getpid(), "host": socket.gethostname(),
    }  # fmt: skip
    jobs.write_state(folder, state)
    try:
        tab.goto(f"{served}/audit/verify/{job_id}")
        tab.evaluate("window.__samePage = true")
        assert tab.locator("[data-job]").get_attribute("data-job-state") == "running"
        jobs.write_state(folder, {**state, "done": 450})
        tab.wait_for_function("() => document.querySelector('progress').value === 450")
        jobs.write_state(
            folder,
            {**state, "state": "failed", "done": 600, "seq": 599, "finished": now(),
             "message": "seq 599: prev hash does not match entry 598"},
        )  # fmt: skip
        tab.wait_for_function(
            "() => document.querySelector('[data-job]').dataset.jobState === 'failed'"
        )
        assert tab.evaluate("window.__samePage") is True  # updated in place, not reloaded
        assert tab.locator("[data-job-seq]").inner_text() == "599"
        assert tab.locator("[data-job-seq-link]").get_attribute("href") == "/e/599"
        assert "prev hash does not match" in tab.locator("[data-job-outcome]").inner_text()
    finally:
        jobs.write_state(folder, {**state, "state": "error", "message": "test over"})
