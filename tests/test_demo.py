"""The demo data set (``ledger.demo``): loads, audits green, idempotent, deterministic."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from ledger import demo, schema
from ledger.blobs import default_store
from ledger.config import Settings
from ledger.domain import fund_queries, projects
from ledger.entry import decode_entry
from ledger.errors import ConfigError, Error, InvalidInput
from ledger.instance import Instance
from ledger.private import PrivateStore, load_master_key
from tests.helpers import ORIGIN, check_ledger, dump, env_for

SMALL = 40  # households: every programme, product and anomaly, in about a second


def new_instance(folder: Path, url: str | None = None) -> Instance:
    env = env_for(folder / "instance", url)
    instance = Instance(Settings.from_env(env), env)
    instance.initialize(ORIGIN, "演示运营方 Demo operator")
    return instance


MakeInstance = Callable[..., Instance]


@pytest.fixture
def make_instance() -> Iterator[MakeInstance]:
    """``make_instance(folder, url=None)``: an initialised instance, disposed afterwards."""
    made: list[Instance] = []

    def make(folder: Path, url: str | None = None) -> Instance:
        made.append(new_instance(folder, url))
        return made[-1]

    yield make
    for instance in made:
        instance.engine.dispose()


@pytest.fixture(scope="module")
def loaded(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Instance, demo.DemoSummary]]:
    """One small demo shared by the read-only tests below."""
    instance = new_instance(tmp_path_factory.mktemp("demo"))
    messages: list[str] = []
    summary = demo.load_demo(instance, households=SMALL, progress=messages.append)
    assert messages[0] == "registering the demo keys" and messages[-1] == "finishing"
    yield instance, summary
    instance.engine.dispose()


def _scalar(engine: Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar_one()


def _bodies(engine: Engine) -> list[tuple[str, dict[str, Any]]]:
    """Every entry's kind and body, with the vkeys (fresh random keys) left out."""
    with engine.connect() as conn:
        leaves = conn.execute(select(schema.entries.c.leaf).order_by(schema.entries.c.seq))
        entries = [decode_entry(bytes(leaf)) for (leaf,) in leaves]
    out = []
    for entry in entries:
        body = dict(entry.body)
        if entry.kind == "key.registered":
            body.pop("vkey")
        out.append((entry.kind, body))
    return out


# --- what the demo contains --------------------------------------------------------------


def test_the_summary_counts_what_was_appended(loaded: tuple[Instance, demo.DemoSummary]) -> None:
    instance, summary = loaded
    assert not summary.already_loaded
    assert summary.households == SMALL
    assert summary.first_seq == 1  # right after the genesis entry
    assert summary.size == 1 + summary.entries
    assert summary.refused == {"duplicate_payment": 1, "overspend": 1}
    with instance.engine.connect() as conn:
        by_kind: dict[str, int] = dict(
            conn.execute(text("SELECT kind, COUNT(*) FROM entries GROUP BY kind")).all()
        )
    by_kind["key.registered"] -= 1  # the genesis
    assert by_kind == dict(summary.counts)
    assert summary.counts["key.registered"] == len(demo.key_specs())
    assert summary.counts["household.identified"] == SMALL
    assert check_ledger(instance.engine).size == summary.size


def test_households_are_spread_over_the_five_places(
    loaded: tuple[Instance, demo.DemoSummary],
) -> None:
    instance, _ = loaded
    spread = demo.spread(SMALL)
    for place in demo.PLACES:
        found = _scalar(
            instance.engine, "SELECT COUNT(*) FROM households WHERE county = :c", c=place.county
        )
        assert found == spread[place.code] >= demo.MIN_PER_PLACE
    with instance.engine.connect() as conn:
        codes = [r[0] for r in conn.execute(text("SELECT code FROM households"))]
    assert all(re.fullmatch(r"(HL-NH|SX-HY|GD-HY|GX-GN|GX-HJ)-\d{6}", c) for c in codes)


def test_the_headline_figures_scale_with_the_households(
    loaded: tuple[Instance, demo.DemoSummary],
) -> None:
    instance, _ = loaded
    engine = instance.engine
    gangnan = demo.spread(SMALL)["GX-GN"]
    allocation = (
        "SELECT amount_fen, disbursed_fen, disbursements FROM fund_allocations WHERE id = :i"
    )
    with engine.connect() as conn:
        row = conn.execute(text(allocation), {"i": "GX-GN-2017-IND"}).one()
        assert tuple(row) == (200_000 * gangnan, 200_000 * gangnan, gangnan)
        road = conn.execute(text(allocation), {"i": "HL-NH-2018-ROAD"}).one()
        assert road[0] == 180_000_000  # 1.8 million yuan
        quantities = conn.execute(
            text("SELECT quantities FROM projects WHERE id = 'HL-NH-2018-ROAD-01'")
        ).scalar_one()
        assert '"length_m":2800' in quantities
        # 雨露计划 grants of 1,500 yuan; insurance at most 5,000 yuan; loans at most 50,000.
        yulu = conn.execute(
            text(
                "SELECT DISTINCT amount_fen FROM fund_disbursements WHERE purpose = 'education_grant'"
            )
        ).all()
        assert yulu == [(150_000,)]
        top = conn.execute(
            text("SELECT MAX(amount_fen) FROM fund_disbursements WHERE purpose = 'insurance_topup'")
        ).scalar_one()
        assert top == 500_000
        loans = conn.execute(
            text("SELECT MAX(principal_fen), MIN(term_months) FROM fund_loans")
        ).one()
        assert tuple(loans) == (5_000_000, 36)
        bases = conn.execute(
            text("SELECT COUNT(*) FROM batches WHERE lot LIKE 'NH-CSR19-B%'")
        ).scalar_one()
        assert bases == 57


def test_the_anomaly_report_shows_every_planted_problem(
    loaded: tuple[Instance, demo.DemoSummary],
) -> None:
    instance, _ = loaded
    with instance.engine.connect() as conn:
        report = fund_queries.anomalies(conn, "2020-09-01")
    [overspend] = report["overspend_attempts"]
    assert overspend["body"]["id"] == "HL-NH-ROAD-EXTRA"
    [duplicate] = report["duplicate_payment_attempts"]
    assert duplicate["body"]["recipient"] == {"household": "GX-GN-000001"}
    [twins] = report["duplicate_payees"]  # allowed by a county exception
    assert twins["programme"] == "GX-GN-yulu" and len(twins["exception_seqs"]) == 1
    unevidenced = {
        item["disbursement"]["id"]: item["reason"] for item in report["unevidenced_payments"]
    }
    assert unevidenced == {
        "HL-NH-ROAD-PROG": "gate stage completed has no evidence documents",
        "GX-HJ-WATER-ADV": "no milestone with evidence documents was reached before the payment",
    }
    overdue = [(m["project"], m["stage"]) for m in report["overdue_milestones"]]
    assert overdue == [
        ("GX-HJ-2020-WATER-01", "completed"),
        ("GX-HJ-2020-WATER-01", "accepted"),
        ("GX-HJ-2020-WATER-01", "notice"),
    ]
    [loan] = report["overdue_loans"]
    assert loan["outstanding_fen"] == loan["principal_fen"] // 2


def test_corrections_reversals_and_repayments(loaded: tuple[Instance, demo.DemoSummary]) -> None:
    instance, _ = loaded
    with instance.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id, amount_fen, original_fen, status FROM fund_disbursements "
                "WHERE corrected_seq IS NOT NULL OR reversed_seq IS NOT NULL ORDER BY id"
            )
        ).all()
        loans = conn.execute(text("SELECT repaid_fen, principal_fen FROM fund_loans")).all()
    corrected = [r for r in rows if r.status == "active"]
    reversed_ = [r for r in rows if r.status == "reversed"]
    assert [(r.amount_fen, r.original_fen) for r in corrected] == [(240_000, 400_000)]
    assert len(reversed_) == 1 and reversed_[0].id.startswith("SX-HY-2018-AST-")
    assert len(loans) >= 2 and all(repaid > 0 for repaid, _ in loans)
    assert sum(repaid < principal for repaid, principal in loans) == 1  # half repaid, overdue


def test_the_recall_reaches_the_derived_lots(loaded: tuple[Instance, demo.DemoSummary]) -> None:
    instance, _ = loaded
    with instance.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT lot, status, recalled_seq, recall_lot FROM batches "
                "WHERE recalled_seq IS NOT NULL ORDER BY lot"
            )
        ).all()
        merged = conn.execute(
            text("SELECT parents, quantity FROM batches WHERE lot = 'NH-CSR19-M01'")
        ).one()
        split = conn.execute(
            text("SELECT COUNT(*) FROM batch_links WHERE parent_lot = 'HY-XM19-001'")
        ).scalar()
        stored = conn.execute(
            text(
                "SELECT COUNT(*) FROM batch_events WHERE lot LIKE 'NH-CSR19-B%' AND biz_step = 'storing'"
            )
        ).scalar()
    assert [r.lot for r in rows] == ["DY-MY19-003", "DY-MY19-003-G1", "DY-MY19-003-G2"]
    assert {r.recalled_seq for r in rows} == {rows[0].recalled_seq}
    assert {r.recall_lot for r in rows} == {"DY-MY19-003"}
    assert all(r.status == "recalled" for r in rows)
    assert merged.parents == 3 and split == 2
    assert stored == demo.NEHE_PLANTING_BASES  # every base lot went through the cold store


def test_projects_reach_their_milestones_with_documents_in_the_blob_store(
    loaded: tuple[Instance, demo.DemoSummary],
) -> None:
    instance, _ = loaded
    with instance.engine.connect() as conn:
        statuses: dict[str, str] = dict(conn.execute(text("SELECT id, status FROM projects")).all())
        road = projects.project_view(conn, "HL-NH-2018-ROAD-01")
        leaves = conn.execute(
            text("SELECT leaf FROM entries WHERE kind = 'project.milestone'")
        ).all()
    assert statuses == {
        "HL-NH-2018-ROAD-01": "notice",
        "HL-NH-2019-COLD-01": "notice",
        "GX-HJ-2020-WATER-01": "progress",
    }
    assert road["notice"] == {"start": "2018-10-22", "end": "2018-10-31"}
    assert road["quantities"]["length_m"] == demo.ROAD_LENGTH_M
    assert [(p["stage"], p["state"]) for p in road["plan"]][:2] == [
        ("approved", "done"),
        ("tendered", "done"),
    ]
    store = default_store(instance.settings.instance)
    documents = [
        doc for (leaf,) in leaves for doc in decode_entry(bytes(leaf)).body.get("evidence", [])
    ]
    assert len(documents) >= 12
    for doc in documents:
        data = store.get(doc["sha256"])
        assert len(data) == doc["size"] and "溯源演示数据".encode() in data


def test_no_personal_data_on_the_ledger_but_private_records_match(
    loaded: tuple[Instance, demo.DemoSummary],
) -> None:
    instance, _ = loaded
    with instance.engine.connect() as conn:
        leaves = b"".join(bytes(r[0]) for r in conn.execute(text("SELECT leaf FROM entries")))
        commitment = conn.execute(
            text("SELECT commitment FROM households WHERE code = 'GX-GN-000001'")
        ).scalar_one()
    assert "示例户主".encode() not in leaves
    assert not re.search(rb"999999\d{11}[\dX]", leaves)
    store = PrivateStore(instance.engine, load_master_key(instance.settings.instance, instance.env))
    record = store.open("GX-GN-000001")
    assert record["name"].startswith("示例户主 ") and record["id_number"].startswith("999999")
    store.prove("GX-GN-000001", commitment)
    problems = {p["problem"] for p in store.reconcile()}
    assert problems <= {"missing"}  # only a few households have a stored record
    private_rows = _scalar(instance.engine, "SELECT COUNT(*) FROM household_private")
    assert private_rows == 2 * len(demo.PLACES)


# --- loading rules ---------------------------------------------------------------------------


def test_a_second_load_changes_nothing(tmp_path: Path, make_instance: MakeInstance) -> None:
    instance = make_instance(tmp_path)
    first = demo.load_demo(instance, households=20)
    before = dump(instance.engine)
    keys = sorted((instance.settings.instance / "keys").iterdir())
    again = demo.load_demo(instance, households=20)
    assert again.already_loaded and again.counts == {} and again.size == first.size
    assert dump(instance.engine) == before
    assert sorted((instance.settings.instance / "keys").iterdir()) == keys
    assert demo.load_demo(instance).already_loaded  # whatever the arguments
    check_ledger(instance.engine)


def test_the_same_seed_gives_the_same_bodies(tmp_path: Path, make_instance: MakeInstance) -> None:
    one, two, three = (make_instance(tmp_path / n) for n in ("one", "two", "three"))
    demo.load_demo(one, households=25, seed=7)
    demo.load_demo(two, households=25, seed=7)
    demo.load_demo(three, households=25, seed=8)
    bodies = _bodies(one.engine)
    assert bodies == _bodies(two.engine)
    assert bodies != _bodies(three.engine)
    keys = len(demo.key_specs()) + 1
    assert bodies[:keys] == _bodies(three.engine)[:keys]  # the keys do not depend on the seed


def test_a_half_loaded_demo_is_refused(tmp_path: Path, make_instance: MakeInstance) -> None:
    instance = make_instance(tmp_path)
    log = instance.writer()
    admin = instance.author("admin")
    stray = instance.keystore.new_author("demo-auditor", instance.passphrase())
    body = {"name": "demo-auditor", "vkey": stray.verifier.vkey, "role": "auditor", "org": "x"}
    instance.sign_and_append(log, "key.registered", body, [admin])
    before = dump(instance.engine)
    with pytest.raises(ConfigError, match=r"partly loaded .* seq 1\b"):
        demo.load_demo(instance, households=20)
    assert dump(instance.engine) == before


@pytest.mark.parametrize("households", [0, 19, -5, True])
def test_too_few_households_are_refused_before_anything_is_written(
    tmp_path: Path, make_instance: MakeInstance, households: int
) -> None:
    instance = make_instance(tmp_path)
    before = dump(instance.engine)
    with pytest.raises(InvalidInput, match="at least 20 households"):
        demo.load_demo(instance, households=households)
    assert dump(instance.engine) == before
    assert not (instance.settings.instance / "keys" / "demo-auditor.key").exists()


def test_a_log_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    env = env_for(tmp_path / "empty")
    instance = Instance(Settings.from_env(env), env)
    with pytest.raises(Error, match="suyuan init"):
        demo.load_demo(instance, households=20)
    instance.engine.dispose()


@pytest.mark.parametrize("households", [20, 21, 99, 1_000, 12_345])
def test_spread_adds_up_and_keeps_the_proportions(households: int) -> None:
    counts = demo.spread(households)
    assert sum(counts.values()) == households
    assert min(counts.values()) >= demo.MIN_PER_PLACE
    assert max(counts, key=lambda c: counts[c]) == "GX-GN" or households < 40
    assert demo.spread(None)["GX-GN"] == 9_734


def test_key_names_are_unique_and_prefixed() -> None:
    names = [name for name, _role, _org in demo.key_specs()]
    assert len(names) == len(set(names))
    assert all(n.startswith(demo.KEY_PREFIX) for n in names)


@pytest.mark.postgres
def test_the_demo_loads_on_postgresql(
    tmp_path: Path, pg_url: str, make_instance: MakeInstance
) -> None:
    instance = make_instance(tmp_path, pg_url)
    summary = demo.load_demo(instance, households=20)
    assert summary.refused == {"duplicate_payment": 1, "overspend": 1}
    assert check_ledger(instance.engine).size == summary.size
    before = dump(instance.engine)
    assert demo.load_demo(instance, households=20).already_loaded
    assert dump(instance.engine) == before


@pytest.mark.slow
def test_the_default_demo_has_the_headline_figures(
    tmp_path: Path, make_instance: MakeInstance
) -> None:
    """9,734 Gangnan households × 2,000 yuan = 19,468,000 yuan (about 40,000 entries)."""
    instance = make_instance(tmp_path)
    summary = demo.load_demo(instance)
    assert summary.households == sum(p.households for p in demo.PLACES) == 10_400
    engine = instance.engine
    assert _scalar(
        engine, "SELECT amount_fen FROM fund_sources WHERE id = 'GX-GN-2017-IND-SRC'"
    ) == (1_946_800_000)
    row = "SELECT disbursed_fen, disbursements FROM fund_allocations WHERE id = 'GX-GN-2017-IND'"
    with engine.connect() as conn:
        assert tuple(conn.execute(text(row)).one()) == (1_946_800_000, 9_734)
    assert _scalar(engine, "SELECT COUNT(*) FROM households WHERE county = '港南区'") == 9_734
    assert check_ledger(engine).size == summary.size
