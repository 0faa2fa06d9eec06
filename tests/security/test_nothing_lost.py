"""Nothing lost: every refused write leaves the database exactly as it was.

Each test drives a refusal through a real entry point — the CLI (``suyuan append``,
``import``, ``keys``, ``household``, ``witnesses``, ``token``), the API
(``POST /api/v1/entries``, ``POST /api/v1/blobs``), the portals' forms, and a
witness's ``add-checkpoint`` — and compares a whole-state snapshot before and after
(``tests/security/snapshot.py``: every row of every table, the newest checkpoint, the
instance folder's files with their hashes).  The one change a refusal may make is the
evidence the log keeps on purpose: a signed statement a kind's rule refused gets one
``refusals`` row (counted exactly).  Then the ledger still audits.

The CLI append and the API run on SQLite and PostgreSQL; the rest on SQLite.  Where
existing tests already check one refusal with ``tests.helpers.dump`` (which misses the
site's tables), these add the tables, files and the cases they lack (a batch whose
*last* statement fails, a key file made before a refused registration, …).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine

from ledger import canonical, tokens
from ledger import instance as instance_module
from ledger.cli import main
from ledger.config import Settings
from ledger.db import make_engine
from ledger.entry import SignatureRecord, SignedStatement
from ledger.instance import Instance
from ledger.note import Signer
from ledger.private import load_master_key
from tests.domain.test_funds import World, make_world
from tests.helpers import ORIGIN, TEST_CONFIG, Ledger, check_ledger, env_for, new_signer
from tests.security.snapshot import Snapshot, assert_unchanged, take, take_sqlite_file
from tests.web.portal import PASSWORD, add_user, csrf_token, signed_in
from web.users import create_user

ENGINES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    return request.getfixturevalue("pg_url") if request.param == "postgres" else None


# --- the CLI -----------------------------------------------------------------------------------


@dataclass
class Cli:
    instance: Path
    env: dict[str, str]
    engine: Engine
    runner: CliRunner
    opened: list[Engine]  # the engines the commands made (closed after each, as a process would)

    def __call__(self, *args: str, input: str | None = None) -> Result:
        try:
            return self.runner.invoke(main, list(args), input=input, env=self.env)
        finally:
            while self.opened:
                self.opened.pop().dispose()

    def snapshot(self) -> Snapshot:
        return take(self.engine, self.instance)

    def refused(self, *args: str, input: str | None = None, refusals: int = 0) -> str:
        """Run a command that must be refused (exit 2); nothing may change; its message."""
        before = self.snapshot()
        result = self(*args, input=input)
        assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
        assert result.stderr.startswith("error: ") or "Error:" in result.stderr, result.stderr
        assert_unchanged(before, self.snapshot(), refusals=refusals)
        return result.stderr


def make_cli(tmp_path: Path, url: str | None, monkeypatch: pytest.MonkeyPatch) -> Cli:
    instance = tmp_path / "instance"
    env = env_for(instance, url)
    url = url or f"sqlite:///{instance / 'suyuan.db'}"
    opened: list[Engine] = []

    def tracked(database_url: str) -> Engine:
        opened.append(make_engine(database_url))
        return opened[-1]

    monkeypatch.setattr(instance_module, "make_engine", tracked)
    cli = Cli(instance, env, make_engine(url), CliRunner(), opened)
    assert cli("init", "--org", "县扶贫办").exit_code == 0
    made = cli("keys", "new", "coop1", "--role", "producer", "--org", "合作社")
    assert made.exit_code == 0, made.output
    return cli


@pytest.fixture(params=ENGINES)
def cli(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Cli]:
    made = make_cli(tmp_path, _url(request, tmp_path), monkeypatch)
    yield made
    made.engine.dispose()


@pytest.fixture
def sqlite_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    made = make_cli(tmp_path, None, monkeypatch)
    yield made
    made.engine.dispose()


def line(kind: str, body: dict[str, Any]) -> str:
    return json.dumps({"kind": kind, "body": body}, ensure_ascii=False) + "\n"


GOOD = line("note", {"text": "第一条 first"})


#: stdin batches whose last line is bad: (stdin, part of the message, refusals kept)
BAD_BATCHES = [
    (GOOD + '{"kind":"note","body":{"text":"x"}\n', "line 2: ", 0),  # bad JSON
    (GOOD + line("note", {"text": "两个", "ref": 10**9}), "ref 1000000000", 0),  # a rule
    (GOOD + GOOD, "repeats statement 1", 0),  # the same statement twice
    (GOOD + line("note", {"text": "2"}) + line("nope", {}), "unknown kind", 0),
    # a producer's key may not revoke keys: a signed attempt, kept in ``refusals``
    (GOOD + line("key.revoked", {"key": "admin+00000000", "reason": "x"}), "role admin", 1),
]


def test_cli_append_batch_is_all_or_nothing(cli: Cli) -> None:
    """A valid line, then a bad one, in one stdin batch: neither is appended."""
    for stdin, message, evidence in BAD_BATCHES:
        refused = cli.refused("append", "--key", "coop1", input=stdin, refusals=evidence)
        assert message in refused, (stdin, refused)
    check_ledger(cli.engine)


def test_cli_append_refused_overspend_keeps_only_the_evidence(cli: Cli) -> None:
    """A rule refusal of a signed fund statement: the attempt goes to ``refusals``, no
    more — and the statement before it in the batch is not appended either."""
    for name, role in (("fin", "finance_officer"), ("village", "village_approver")):
        assert cli("keys", "new", name, "--role", role, "--org", "广南县").exit_code == 0
    assert (
        cli("keys", "new", "town", "--role", "township_approver", "--org", "城厢镇").exit_code == 0
    )
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
    )
    setup += line(
        "fund.allocated",
        {
            "id": "A-1",
            "source": "S-1",
            "amount_fen": 500,
            "purpose": "industry_subsidy",
            "programme": "P-1",
        },
    )
    made = cli("append", "--key", "fin", input=setup)
    assert made.exit_code == 0, made.output
    household = {
        "code": "HH-1",
        "location": {"province": "云南省", "city": "文山州", "county": "广南县"},
        "members": 3,
        "causes": ["illness"],
        "year": 2016,
        "commitment": "ab" * 32,
    }
    household["location"].update(township="城厢镇", village="坡荷村")
    assert (
        cli("append", "--key", "village", input=line("household.identified", household)).exit_code
        == 0
    )
    pay = {
        "allocation": "A-1",
        "recipient": {"household": "HH-1"},
        "purpose": "industry_subsidy",
        "period": "2019",
    }
    stdin = line("fund.disbursed", {**pay, "id": "D-1", "amount_fen": 400})
    stdin += line("fund.disbursed", {**pay, "id": "D-2", "amount_fen": 200, "period": "2020"})
    keys = ("--key", "fin", "--key", "village", "--key", "town")
    message = cli.refused("append", *keys, input=stdin, refusals=1)
    assert "statement 2" in message and "exceeds what remains" in message
    check_ledger(cli.engine)


def test_cli_import_with_a_bad_row_500_appends_nothing(sqlite_cli: Cli, tmp_path: Path) -> None:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["text", "ref"])
    for i in range(1, 700):
        writer.writerow([f"第{i}行", "0" if i != 499 else "１２"])  # line 500: full-width
    path = tmp_path / "notes.csv"
    path.write_text(out.getvalue(), encoding="utf-8")
    message = sqlite_cli.refused("import", str(path), "--kind", "note", "--key", "coop1")
    assert "500" in message
    # the same with a rule refusal on row 500 (a ref to an entry that does not exist)
    path.write_text(out.getvalue().replace("１２", "999999"), encoding="utf-8")
    assert "500" in sqlite_cli.refused("import", str(path), "--kind", "note", "--key", "coop1")
    check_ledger(sqlite_cli.engine)


def test_cli_keys_refusals_leave_no_key_file(sqlite_cli: Cli) -> None:
    cli = sqlite_cli
    # a producer key cannot register keys: the key file made first is discarded
    cli.refused(
        "keys", "new", "newkey", "--role", "producer", "--org", "x", "--admin", "coop1", refusals=1
    )
    cli.refused("keys", "new", "coop1", "--role", "producer", "--org", "x")  # name taken
    cli.refused("keys", "revoke", "nobody", "--reason", "x")
    cli.refused("keys", "revoke", "admin", "--reason", "the last admin", refusals=1)
    cli.refused("keys", "revoke", "coop1", "--reason", "x", "--admin", "coop1", refusals=1)
    assert cli("keys", "revoke", "coop1", "--reason", "lost").exit_code == 0
    cli.refused("keys", "revoke", "coop1", "--reason", "twice")
    check_ledger(cli.engine)


def household_rows(path: Path) -> Path:
    """Two household.identified rows with personal data; the second has a full-width count."""
    header = ["code", "location.province", "location.city", "location.county"]
    header += ["location.township", "location.village", "members", "causes", "year"]
    place = ["广西", "贵港市", "港南区", "木格镇", "云垌村"]
    rows = [
        [*header, "personal.name", "personal.phone"],
        ["GX-1", *place, "4", '["illness"]', "2016", "户主", "13800000000"],
        ["GX-2", *place, "４", '["illness"]', "2016", "户主", "13800000000"],
    ]
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def test_cli_household_and_witness_refusals(sqlite_cli: Cli, tmp_path: Path) -> None:
    cli = sqlite_cli
    load_master_key(cli.instance, cli.env)  # made beforehand: see the test below
    path = household_rows(tmp_path / "hh.csv")
    assert (
        cli("keys", "new", "village", "--role", "village_approver", "--org", "木格镇").exit_code
        == 0
    )
    cli.refused("import", str(path), "--kind", "household.identified", "--key", "village")
    cli.refused("household", "erase", "GX-NOBODY-1", "--yes")
    cli.refused("household", "open", "GX-NOBODY-1")
    assert cli("household", "erase", "GX-NOBODY-1").exit_code == 2  # no --yes: a usage error
    cli.refused("witnesses", "add", "not a key", "http://127.0.0.1:9/w")
    cli.refused("witnesses", "add", new_signer("w.example/w1").verifier.vkey, "http://x/w")
    cli.refused("token", "revoke", "nobody")
    assert cli("token", "new", "t1").exit_code == 0
    cli.refused("token", "new", "t1")
    check_ledger(cli.engine)


def test_refused_household_commands_make_no_master_key(sqlite_cli: Cli, tmp_path: Path) -> None:
    """With no master key yet, a refused import or a read of a household that does not
    exist must not mint one: a key made by a mistyped command (or by a shell that lacks
    ``SUYUAN_PRIVATE_KEY``) would silently split the records between two master keys."""
    cli = sqlite_cli
    assert (
        cli("keys", "new", "village", "--role", "village_approver", "--org", "木格镇").exit_code
        == 0
    )
    path = household_rows(tmp_path / "hh.csv")
    cli.refused("import", str(path), "--kind", "household.identified", "--key", "village")
    cli.refused("household", "open", "GX-NOBODY-1")
    assert not (cli.instance / "private.key").exists()


# --- the API -----------------------------------------------------------------------------------


@dataclass
class ApiSite:
    instance: Instance
    app: Flask
    client: FlaskClient
    token: str
    world: World
    url: str

    @property
    def engine(self) -> Engine:
        return self.instance.engine

    def snapshot(self) -> Snapshot:
        return take(self.engine, self.instance.settings.instance)

    def post(self, body: Any, *, token: str | None = None, **kwargs: Any) -> Any:
        data = body if isinstance(body, bytes | str) else canonical.dumps(body)
        headers = {"Authorization": f"Bearer {token if token is not None else self.token}"}
        kwargs.setdefault("content_type", "application/json")
        return self.client.post("/api/v1/entries", data=data, headers=headers, **kwargs)

    def refused(self, body: Any, status: int, code: str, *, refusals: int = 0, **kw: Any) -> str:
        before = self.snapshot()
        response = self.post(body, **kw)
        assert response.status_code == status, response.get_data(as_text=True)
        error = response.get_json()["error"]
        assert error["code"] == code and error["message"], error
        assert_unchanged(before, self.snapshot(), refusals=refusals)
        return str(error["message"])


def make_api_site(tmp_path: Path, url: str | None, monkeypatch: pytest.MonkeyPatch) -> ApiSite:
    from web import create_app

    env = env_for(tmp_path / "instance", url)
    for name in [n for n in os.environ if n.startswith("SUYUAN_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("SUYUAN_"):
            monkeypatch.setenv(name, value)
    instance = Instance(Settings.from_env(env), env)
    log, admin, _created = instance.initialize(ORIGIN, "县扶贫办")
    app = create_app(TEST_CONFIG)
    ledger = Ledger(instance.engine, url or "", log, new_signer("unused"), admin)
    world = make_world(ledger)
    world.household("HH-0001")
    world.source(amount=10_000_000)
    world.allocate("A-1", 100_000)
    token = tokens.create_token(instance.engine, "client")
    return ApiSite(instance, app, app.test_client(), token, world, url or "")


def signed(api: ApiSite, kind: str, body: dict[str, Any], *signers: Signer) -> SignedStatement:
    return api.world.ledger.statement(kind, body, *signers)


def test_api_entries_refusals_change_nothing(api: ApiSite) -> None:
    world = api.world
    good = signed(api, "note", {"text": "好"}, world.coop).to_json()
    # bad signature: one bit of it flipped
    tampered = signed(api, "note", {"text": "改"}, world.coop)
    record = tampered.signatures[0]
    bad_sig = SignedStatement(
        tampered.statement,
        (SignatureRecord(record.key_id, bytes([record.sig[0] ^ 1]) + record.sig[1:]),),
    )
    api.refused(bad_sig.to_json(), 422, "verification_failed")
    # unknown key
    stranger = signed(api, "note", {"text": "谁"}, new_signer("stranger"))
    api.refused(stranger.to_json(), 422, "rule_violation")
    # a revoked key
    world.append(
        "key.revoked", {"key": world.builder.verifier.key_id, "reason": "lost"}, world.ledger.admin
    )
    revoked = signed(api, "note", {"text": "已撤销"}, world.builder)
    assert "revoked" in api.refused(revoked.to_json(), 422, "rule_violation")
    # a rule: the producer may not pay; an over-spend (kept as evidence)
    pay = world.payment("D-X", "A-1", 100_001)
    by_coop = signed(api, "fund.disbursed", pay, world.coop).to_json()
    assert "needs signatures" in api.refused(by_coop, 422, "rule_violation", refusals=1)
    over = signed(api, "fund.disbursed", pay, *world.approvers).to_json()
    assert "exceeds what remains" in api.refused(over, 422, "rule_violation", refusals=1)
    # malformed bodies
    api.refused(b'{"statement": ', 400, "invalid_input")
    api.refused(b"\xff\xfe", 400, "invalid_input")
    api.refused({"statement": good["statement"]}, 400, "invalid_entry")
    api.refused({"statements": []}, 400, "invalid_input")
    api.refused({"statements": [good, 1.5]}, 400, "invalid_input")
    api.refused(canonical.dumps(good), 415, "unsupported_media_type", content_type="text/plain")
    # a batch whose last statement fails: the earlier ones are not appended either
    batch = [signed(api, "note", {"text": f"批 {i}"}, world.coop).to_json() for i in range(3)]
    last = signed(api, "note", {"text": "末", "ref": 10**9}, world.coop).to_json()
    message = api.refused({"statements": [*batch, last]}, 400, "invalid_entry")
    assert message.startswith("statement 4: ")
    repeated = {"statements": [*batch, batch[0]]}
    assert "repeats statement 1" in api.refused(repeated, 409, "conflict")
    overspend_last = {"statements": [*batch, over]}
    api.refused(overspend_last, 422, "rule_violation", refusals=1)
    # no token, a wrong token, a revoked token
    api.refused(good, 401, "unauthorized", token="")
    api.refused(good, 401, "unauthorized", token="not-a-token")
    tokens.revoke_token(api.engine, "client")
    api.refused(good, 401, "unauthorized")
    check_ledger(api.engine)


def test_api_replay_and_blob_refusals_change_nothing(api: ApiSite) -> None:
    good = signed(api, "note", {"text": "一次"}, api.world.coop).to_json()
    assert api.post(good).status_code == 201
    api.refused(good, 409, "conflict")  # the same signed statement again
    before = api.snapshot()
    auth = {"Authorization": f"Bearer {api.token}"}
    for headers, data, status in [
        ({}, b"document", 401),
        ({"Authorization": "Bearer nope"}, b"document", 401),
        (auth, b"", 400),
    ]:
        response = api.client.post("/api/v1/blobs", data=data, headers=headers)
        assert response.status_code == status
        assert response.get_json()["error"]["code"]
    big = b"x" * (api.app.config["MAX_CONTENT_LENGTH"] + 1)
    assert api.client.post("/api/v1/blobs", data=big, headers=auth).status_code == 413
    assert_unchanged(before, api.snapshot())
    check_ledger(api.engine)


# --- the portals -------------------------------------------------------------------------------


@pytest.fixture
def portal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiSite]:
    made = make_api_site(tmp_path, None, monkeypatch)
    admin = made.world.ledger.admin
    create_user(made.engine, "admin1", "Admin", PASSWORD, "admin", log_n=4)
    add_user(made.instance, admin, "coop", "producer", "合作社 Co-op", key_name="coop-web")
    yield made
    made.app.extensions["suyuan"]["instance"].engine.dispose()
    made.instance.engine.dispose()


def errors_of(html: str) -> list[tuple[str, str]]:
    """The form's error lists (field id, text), for failure messages."""
    found = re.findall(r'<ul id="([^"]+)-errors"[^>]*>(.*?)</ul>', html, re.S)
    return [(field, unescape(re.sub(r"<[^>]+>", " ", text)).strip()) for field, text in found]


def english(client: FlaskClient) -> FlaskClient:
    client.set_cookie("lang", "en")
    return client


def form_refused(
    site: ApiSite, client: FlaskClient, path: str, data: dict[str, Any], status: int
) -> str:
    token = csrf_token(client, path)
    before = site.snapshot()
    response = client.post(path, data={"csrf_token": token, **data})
    assert response.status_code == status, (path, response.status_code)
    assert_unchanged(before, site.snapshot())
    return response.get_data(as_text=True)


def test_producer_forms_refused_change_nothing(portal: ApiSite) -> None:
    coop = english(signed_in(portal.app, "coop"))
    register = "/producer/batches/new"
    lot = {
        "lot": "NL-1",
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
    response = coop.post(register, data={"csrf_token": csrf_token(coop, register), **lot})
    assert response.status_code == 302, errors_of(response.get_data(as_text=True))
    # the same GTIN and lot again: the ledger refuses it (not the form)
    assert "already registered" in form_refused(portal, coop, register, lot, 400)
    form_refused(portal, coop, register, {**lot, "lot": "NL-2", "gtin": "06901234567890"}, 400)
    form_refused(portal, coop, register, {**lot, "lot": "NL-3", "quantity": "-5"}, 400)
    # an event in the future, and on a lot that does not exist
    event = {"batch": "06901234567892|NL-1", "step": "storing:active", "read_point": "仓库"}
    form_refused(portal, coop, "/producer/event", {**event, "time": "2099-01-01T08:00"}, 400)
    form_refused(
        portal,
        coop,
        "/producer/event",
        {**event, "batch": "|NOPE", "time": "2020-09-02T08:00"},
        400,
    )
    # a recall without a reason
    recall = "/producer/recall?gtin=06901234567892&lot=NL-1"
    form_refused(portal, coop, recall, {"review": "1", "reason": ""}, 400)
    check_ledger(portal.engine)


def test_admin_user_with_a_taken_name_changes_nothing(portal: ApiSite) -> None:
    admin = english(signed_in(portal.app, "admin1"))
    data = {
        "username": "coop",
        "display_name": "Another",
        "key_mode": "new",
        "key_name": "coop-second",
        "role": "producer",
        "org": "合作社 Co-op",
        "password": "another long password",
        "repeat": "another long password",
    }
    page = form_refused(portal, admin, "/admin/users/new", data, 400)
    assert "exists already" in page
    # a key name registered before (even though the user name is new)
    data.update(username="fresh", key_name="coop-web")
    assert "a key name is used once" in form_refused(portal, admin, "/admin/users/new", data, 400)
    check_ledger(portal.engine)


# --- a witness ---------------------------------------------------------------------------------


def test_witness_refusals_leave_its_state(tmp_path: Path) -> None:
    from ledger.witness import format_add_checkpoint
    from tests.witness.support import PASSPHRASE, FixedClock, MemoryLog, make_witness
    from web.witness_app import create_witness_app

    log = MemoryLog()
    log.append(5)
    directory = tmp_path / "witness"
    store, _signer = make_witness(directory)
    store.trust(log.signer.verifier.vkey)
    app = create_witness_app(directory, PASSPHRASE, {"TESTING": True}, clock=FixedClock())
    client = app.test_client()
    db = directory / "witness.db"

    def post(body: bytes) -> int:
        return client.post("/add-checkpoint", data=body, content_type="text/plain").status_code

    assert post(log.body(0)) == 200
    stranger, impostor = MemoryLog(origin="stranger.example/log"), MemoryLog()
    stranger.append(1)
    impostor.append(5)
    refusals = [
        (b"old 1\nnot base64\n\n" + log.note().encode(), 400),
        (stranger.body(0), 404),
        (impostor.body(0), 403),
        (b"", 400),
    ]
    for body, status in refusals:
        before = take_sqlite_file(db, directory)
        assert post(body) == status
        assert_unchanged(before, take_sqlite_file(db, directory))
    # refusals that keep evidence (a bad proof, a fork) add one evidence row and no more
    log.append(3)
    forked = MemoryLog(signer=log.signer)
    forked.append(5, prefix="rewritten")
    for body, status in [
        (format_add_checkpoint(9, [b"\x00" * 32], log.note(5)), 400),
        (format_add_checkpoint(5, [b"\x00" * 32], log.note()), 422),
        (forked.body(5, 5, []), 409),
    ]:
        before = take_sqlite_file(db, directory)
        assert post(body) == status
        after = take_sqlite_file(db, directory)
        assert after.tables["latest"] == before.tables["latest"]
        evidence = len(after.tables["evidence"]) - len(before.tables["evidence"])
        assert evidence == 1, evidence
        rest = {k: v for k, v in after.tables.items() if k != "evidence"}
        assert rest == {k: v for k, v in before.tables.items() if k != "evidence"}
    assert post(log.body(5)) == 200
