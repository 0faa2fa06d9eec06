"""Concurrent conflicting writes through the entry points: exactly one wins.

tests/domain/test_funds_race.py races two over-spending payments at the ``Log`` level and
tests/ledger/test_concurrency.py races key registrations and bulk appends; this module
races the *entry points* — the API and the portals served by two live werkzeug servers on
loopback (two apps, each with its own writer, as two server processes have), and the CLI as
two processes — and adds the conflicts those lack: the same household paid twice from one
allocation, one signed statement posted twice, a key revoked while a request signs with it,
two registrations of one GTIN+lot (and of two confusable lots), one approval sent twice,
and two officials filling the last approval slot.

After every race: exactly one request won, the loser got a clear refusal (409/422 with a
code, the portal's 400/409 page, or the CLI's ``error:`` line and exit 2), and the whole
ledger audits (``check_ledger``, which also replays every projection and compares).
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import text
from werkzeug.serving import BaseWSGIServer, make_server

from ledger import canonical
from tests.helpers import TEST_CONFIG, check_ledger
from tests.security.test_nothing_lost import (
    ENGINES,
    ApiSite,
    _url,
    errors_of,
    line,
    make_api_site,
    make_cli,
)
from tests.web.portal import PASSWORD, add_user

REPO = Path(__file__).resolve().parents[2]
WAIT = 60.0
_CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


class Live:
    """A threaded werkzeug server for ``app`` on a free loopback port."""

    def __init__(self, app: Flask) -> None:
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=WAIT)


def race(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls at once (threads behind a barrier); their results, in order."""
    barrier = threading.Barrier(len(calls), timeout=WAIT)
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=WAIT)
        assert not t.is_alive(), "a request is stuck"
    return results


@dataclass
class Two:
    """One site served twice: two apps (two writers) on two ports."""

    site: ApiSite
    apps: list[Flask]
    servers: list[Live]

    def post(self, i: int, body: Any) -> requests.Response:
        return requests.post(
            f"{self.servers[i].url}/api/v1/entries",
            data=canonical.dumps(body),
            headers={
                "Authorization": f"Bearer {self.site.token}",
                "Content-Type": "application/json",
            },
            timeout=WAIT,
        )


def serve_twice(site: ApiSite) -> Two:
    from web import create_app

    apps = [site.app, create_app(TEST_CONFIG)]
    for app in apps:
        app.config["SUYUAN_SCAN_FLUSH_THREAD"] = False
        app.config["SESSION_COOKIE_SECURE"] = False  # plain HTTP on loopback
    return Two(site, apps, [Live(app) for app in apps])


def close(two: Two) -> None:
    for server in two.servers:
        server.close()
    for app in two.apps:
        app.extensions["suyuan"]["instance"].engine.dispose()
    two.site.instance.engine.dispose()


@pytest.fixture(params=ENGINES)
def two(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Two]:
    made = serve_twice(make_api_site(tmp_path, _url(request, tmp_path), monkeypatch))
    yield made
    close(made)


def both(two: Two, first: Any, second: Any) -> list[Any]:
    """POST ``first`` to one server and ``second`` to the other, at once."""
    return race(functools.partial(two.post, 0, first), functools.partial(two.post, 1, second))


def one_winner(responses: list[Any], status: int, code: str, says: str) -> requests.Response:
    """One 201; the other ``status`` with error ``code`` and a message containing ``says``."""
    assert all(isinstance(r, requests.Response) for r in responses), responses
    statuses = sorted(r.status_code for r in responses)
    assert statuses == sorted([201, status]), [r.text for r in responses]
    loser = next(r for r in responses if r.status_code != 201)
    error = loser.json()["error"]
    assert error["code"] == code and says in error["message"], error
    return next(r for r in responses if r.status_code == 201)


def scalar(two: Two, sql: str, **params: Any) -> Any:
    with two.site.engine.connect() as conn:
        return conn.execute(text(sql), params).scalar_one()


def test_api_conflicting_writes(two: Two) -> None:
    world = two.site.world
    ledger = world.ledger
    world.household("HH-0002")

    def statement(kind: str, body: dict[str, Any], *signers: Any) -> dict[str, Any]:
        return ledger.statement(kind, body, *signers).to_json()

    for round_ in range(3):
        # two payments that each fit what is left of the allocation, but not both
        alloc = f"A-OVER-{round_}"
        world.allocate(alloc, 100_000, programme=f"P-OVER-{round_}")
        pays = [
            statement(
                "fund.disbursed",
                world.payment(f"{alloc}-{hh}", alloc, 60_000, household=hh),
                *world.approvers,
            )
            for hh in ("HH-0001", "HH-0002")
        ]
        refusals = scalar(two, "SELECT count(*) FROM refusals")
        responses = both(two, pays[0], pays[1])
        one_winner(responses, 422, "rule_violation", "exceeds what remains")
        spent = "SELECT disbursed_fen FROM fund_allocations WHERE id = :a"
        assert scalar(two, spent, a=alloc) == 60_000
        assert scalar(two, "SELECT count(*) FROM refusals") == refusals + 1

        # the same household paid twice from one allocation in one period
        alloc = f"A-TWICE-{round_}"
        world.allocate(alloc, 1_000_000, programme=f"P-TWICE-{round_}")
        pays = [
            statement(
                "fund.disbursed", world.payment(f"{alloc}-{n}", alloc, 1_000), *world.approvers
            )
            for n in (1, 2)
        ]
        responses = both(two, pays[0], pays[1])
        one_winner(responses, 422, "rule_violation", "HH-0001")
        count = "SELECT count(*) FROM fund_disbursements WHERE allocation = :a"
        assert scalar(two, count, a=alloc) == 1

        # one signed statement posted to both servers at once
        note = statement("note", {"text": f"一次 {round_}"}, world.coop)
        responses = both(two, note, note)
        one_winner(responses, 409, "conflict", "already in the log")

        # a key revoked while a request signs with it
        signer = ledger.register(f"short-lived-{round_}", "producer")
        revoke = statement(
            "key.revoked", {"key": signer.verifier.key_id, "reason": "lost"}, ledger.admin
        )
        signed = statement("note", {"text": f"签 {round_}"}, signer)
        got_revoke, got_note = both(two, revoke, signed)
        assert got_revoke.status_code == 201, got_revoke.text
        revoked_at = got_revoke.json()["entries"][0]["seq"]
        if got_note.status_code == 201:  # it was sequenced before the revocation
            assert got_note.json()["entries"][0]["seq"] < revoked_at
        else:
            assert got_note.status_code == 422, got_note.text
            error = got_note.json()["error"]
            assert error["code"] == "rule_violation" and "revoked" in error["message"], error
    check_ledger(two.site.engine)


# --- the portals ---------------------------------------------------------------------------------


class Browser:
    """A signed-in portal user over real HTTP (cookies shared by both servers: same host)."""

    def __init__(self, two: Two, username: str) -> None:
        self.two = two
        self.session = requests.Session()
        self.session.cookies.set("lang", "en")
        self.post(0, "/login", {"username": username, "password": PASSWORD}, expect=302)

    def token(self, path: str) -> str:
        page = self.session.get(self.two.servers[0].url + path, timeout=WAIT)
        assert page.status_code == 200, (path, page.status_code)
        found = _CSRF_RE.search(page.text)
        assert found, path
        return found.group(1)

    def post(
        self, i: int, path: str, data: dict[str, Any], *, form: str | None = None, expect: int = 0
    ) -> requests.Response:
        data = {"csrf_token": self.token(form or path.split("?")[0]), **data}
        response = self.session.post(
            self.two.servers[i].url + path, data=data, allow_redirects=False, timeout=WAIT
        )
        if expect:
            assert response.status_code == expect, (path, response.status_code)
        return response

    def prepared(self, i: int, path: str, data: dict[str, Any], form: str | None = None) -> Any:
        """The POST ready to send at once (the token is fetched now)."""
        data = {"csrf_token": self.token(form or path), **data}
        url = self.two.servers[i].url + path
        return lambda: self.session.post(url, data=data, allow_redirects=False, timeout=WAIT)


@pytest.fixture
def portals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Two]:
    site = make_api_site(tmp_path, None, monkeypatch)
    admin = site.world.ledger.admin
    for username, role, org in [
        ("coop-a", "producer", "合作社 Co-op"),
        ("coop-b", "producer", "合作社 Co-op"),
        ("fin-web", "finance_officer", "广南县财政局"),
        ("village-web", "village_approver", "坡荷村民委员会"),
        ("town-a", "township_approver", "城厢镇人民政府"),
        ("town-b", "township_approver", "城厢镇人民政府"),
    ]:
        add_user(site.instance, admin, username, role, org)
    made = serve_twice(site)
    yield made
    close(made)


LOT = {
    "gtin": "06901234567892",
    "product_zh": "小米",
    "product_en": "millet",
    "province": "山西省",
    "city": "大同市",
    "county": "浑源县",
    "division_code": "140225",
    "produced": "2020-09-01",
    "quantity": "100",
    "unit": "kg",
    "households": "HH-0001 100",
}


def lots_folding_to(two: Two, fold: str) -> int:
    sql = "SELECT count(*) FROM batch_lot_folds WHERE gtin = :g AND fold = :f"
    return int(scalar(two, sql, g=LOT["gtin"], f=fold))


def test_portal_conflicting_writes(portals: Two) -> None:
    two = portals
    a, b = Browser(two, "coop-a"), Browser(two, "coop-b")
    register = "/producer/batches/new"
    # the same GTIN+lot from two users at once; then two lots that differ only by case
    for lots, fold in [(("RACE-1", "RACE-1"), "race-1"), (("race-2", "RACE-2"), "race-2")]:
        results = race(
            a.prepared(0, register, {**LOT, "lot": lots[0]}),
            b.prepared(1, register, {**LOT, "lot": lots[1]}),
        )
        assert sorted(r.status_code for r in results) == [302, 400], results
        loser = next(r for r in results if r.status_code == 400)
        errors = errors_of(loser.text)
        assert re.search(r"already registered|differs from lot", str(errors)), errors
        assert lots_folding_to(two, fold) == 1

    # a draft payment: the finance officer prepares it, the village approver signs it twice
    # at once, then two township approvers race for the last slot
    world = two.site.world
    world.allocate("A-WEB", 1_000_000, programme="P-WEB")
    fin = Browser(two, "fin-web")
    made = fin.post(
        0,
        "/officials/drafts/new",
        {
            "allocation": "A-WEB",
            "recipient_type": "household",
            "household": "HH-0001",
            "amount": "100",
            "period": "2019",
        },
    )
    assert made.status_code == 302, made.text[:3000]
    draft = made.headers["Location"].rstrip("/").rsplit("/", 1)[1]
    page = f"/officials/drafts/{draft}"
    village = Browser(two, "village-web")
    results = race(
        village.prepared(0, f"{page}/approve", {}, form=page),
        village.prepared(1, f"{page}/approve", {}, form=page),
    )
    statuses = sorted(r.status_code for r in results)
    assert statuses in ([302, 302], [302, 409]), statuses
    stored = "SELECT statement FROM drafts WHERE id = :d"
    assert len(canonical.parse(scalar(two, stored, d=draft))["signatures"]) == 2
    size = two.site.instance.reader().size()
    town_a, town_b = Browser(two, "town-a"), Browser(two, "town-b")
    results = race(
        town_a.prepared(0, f"{page}/approve", {}, form=page),
        town_b.prepared(1, f"{page}/approve", {}, form=page),
    )
    statuses = sorted(r.status_code for r in results)
    assert statuses in ([302, 302], [302, 409]), statuses
    with two.site.engine.connect() as conn:
        found = conn.execute(text("SELECT status, seq FROM drafts WHERE id = :d"), {"d": draft})
        status, seq = found.one()
    assert (status, seq) == ("appended", size)
    assert two.site.instance.reader().size() == size + 1
    entry = two.site.instance.reader().entry(size)
    assert entry.kind == "fund.disbursed" and len(entry.signed.signatures) == 3
    check_ledger(two.site.engine)


# --- the CLI: two processes ------------------------------------------------------------------------


@pytest.mark.postgres
def test_cli_processes_race_for_the_last_of_an_allocation(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two ``suyuan append`` processes (on PostgreSQL: two writers locking ``log_state``; the
    SQLite lock between processes is raced by tests/domain/test_funds_race.py).  Both get
    their stdin at once; each takes seconds to start, so they meet in the log lock only
    sometimes — the outcome must be the same either way."""
    url = pg_url
    cli = make_cli(tmp_path, url, monkeypatch)
    try:
        for name, role in [
            ("fin", "finance_officer"),
            ("village", "village_approver"),
            ("town", "township_approver"),
        ]:
            assert cli("keys", "new", name, "--role", role, "--org", "广南县").exit_code == 0
        place = {"province": "云南省", "city": "文山州", "county": "广南县"}
        place.update(township="城厢镇", village="坡荷村")
        setup = line(
            "fund.source",
            {
                "id": "S-1",
                "type": "central",
                "name": {"zh": "资金", "en": "fund"},
                "amount_fen": 1_000,
                "year": 2019,
                "payer": "财政部",
            },
        ) + line(
            "fund.allocated",
            {
                "id": "A-1",
                "source": "S-1",
                "amount_fen": 500,
                "purpose": "industry_subsidy",
                "programme": "P-1",
            },
        )
        assert cli("append", "--key", "fin", input=setup).exit_code == 0
        for code in ("HH-1", "HH-2"):
            body = {"code": code, "location": place, "members": 3, "causes": ["illness"]}
            body.update(year=2016, commitment="ab" * 32)
            household = line("household.identified", body)
            assert cli("append", "--key", "village", input=household).exit_code == 0
        keys = ["--key", "fin", "--key", "village", "--key", "town"]
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "ledger.cli", "append", *keys],
                cwd=REPO,
                env=cli.env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        payments = [
            line(
                "fund.disbursed",
                {
                    "id": f"D-{code}",
                    "allocation": "A-1",
                    "recipient": {"household": code},
                    "amount_fen": 300,
                    "purpose": "industry_subsidy",
                    "period": "2019",
                },
            )
            for code in ("HH-1", "HH-2")
        ]
        results = [
            p.communicate(payment, timeout=WAIT) for p, payment in zip(procs, payments, strict=True)
        ]
    finally:
        cli.engine.dispose()
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], results
    loser = next(err for p, (_out, err) in zip(procs, results, strict=True) if p.returncode == 2)
    assert loser.startswith("error: ") and "exceeds what remains" in loser, loser
    from ledger.db import make_engine

    engine_ = make_engine(url)
    try:
        with engine_.connect() as conn:
            spent = conn.execute(
                text("SELECT disbursed_fen FROM fund_allocations WHERE id = 'A-1'")
            ).scalar_one()
        assert spent == 300
        check_ledger(engine_)
    finally:
        engine_.dispose()
