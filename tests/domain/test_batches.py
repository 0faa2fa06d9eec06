"""Produce batches: registration, EPCIS events, transformations, recalls — every rule
accepted and refused — and the documentation's schemas and examples."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import jsonschema
import pytest
from sqlalchemy import text

from ledger.domain import batch_queries as bq
from ledger.domain import gs1
from ledger.entry import Entry
from ledger.errors import Conflict, InvalidEntry, RuleViolation, VerificationError
from ledger.note import Signer
from ledger.rules import KINDS
from tests.helpers import Ledger, check_ledger, domain_doc_sections, dump, make_ledger, new_signer

REPO = Path(__file__).resolve().parents[2]
COOP = "田阳县芒果专业合作社"
COOP2 = "平果县火龙果合作社"
GTIN = "0690123456789" + gs1.gtin_check_digit("0690123456789")
GTIN_BOX = "0690123456790" + gs1.gtin_check_digit("0690123456790")
GTIN_JAR = "1690123456789" + gs1.gtin_check_digit("1690123456789")
HH1, HH2, HH3 = "GX-TY-000001", "GX-TY-000002", "GX-TY-000003"
VILLAGE_A = {
    "province": "广西壮族自治区",
    "city": "百色市",
    "county": "田阳县",
    "township": "百育镇",
    "village": "四那村",
}
VILLAGE_B = {**VILLAGE_A, "township": "那坡镇", "village": "那坡村"}
DROP = object()


def sha(tag: str) -> str:
    return hashlib.sha256(tag.encode()).hexdigest()


def ref(lot: str, gtin: str | None = GTIN) -> dict[str, str]:
    return {"gtin": gtin, "lot": lot} if gtin else {"lot": lot}


def apply_changes(body: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    for name, value in changes.items():
        if value is DROP:
            body.pop(name, None)
        else:
            body[name] = value
    return body


INSPECTION = {
    "lab": "百色市农产品质量安全检测中心",
    "result": "pass",
    "date": "2019-07-13",
    "report_sha256": sha("report-1"),
}
GREEN = {"scheme": "green_food", "number": "LB-18-1907123456A", "valid_until": "2021-07-01"}


def registered(lot: str = "TY-2019-07A", gtin: str | None = GTIN, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "lot": lot,
        "product": {"zh": "田阳芒果", "en": "Tianyang mango"},
        "origin": {**VILLAGE_A, "division_code": "451021"},
        "producer": COOP,
        "households": [
            {"household": HH1, "share_permille": 300},
            {"household": HH2, "share_permille": 200},
        ],
        "produced": "2019-07-12",
        "quantity": 1000,
        "unit": "kg",
        "inspections": [dict(INSPECTION)],
        "certifications": [dict(GREEN)],
    }
    if gtin:
        body["gtin"] = gtin
    return apply_changes(body, changes)


def event(
    lot: str,
    step: str,
    disposition: str,
    gtin: str | None = GTIN,
    time: str = "2019-07-15T08:30:00+08:00",
    **changes: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "batch": ref(lot, gtin),
        "biz_step": step,
        "disposition": disposition,
        "time": time,
        "read_point": "百育镇冷库 Baiyu cold store",
    }
    return apply_changes(body, changes)


def transformed(
    inputs: list[tuple[dict[str, str], int]], outputs: list[dict[str, Any]], **changes: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inputs": [{"batch": b, "quantity": q} for b, q in inputs],
        "outputs": outputs,
        "date": "2019-07-14",
        "process": "分拣包装 sorting and packing",
    }
    return apply_changes(body, changes)


def output(
    lot: str, quantity: int, unit: str, gtin: str | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"lot": lot, "quantity": quantity, "unit": unit, **extra}
    if gtin:
        body["gtin"] = gtin
    return body


def boxes(
    lot: str, count: int, grams: int = 2500, gtin: str | None = GTIN_BOX, **extra: Any
) -> dict[str, Any]:
    return output(lot, count, "box", gtin, net_content={"quantity": grams, "unit": "g"}, **extra)


class World:
    """A ledger with producers, logistics, a retailer, an inspector, approvers and households."""

    ROLES: ClassVar[dict[str, tuple[str, str]]] = {
        "coop": ("producer", COOP),
        "coop2": ("producer", COOP2),
        "logistics": ("logistics", "百色冷链物流公司"),
        "retailer": ("retailer", "南宁扶贫产品专柜"),
        "inspector": ("inspector", "百色市市场监督管理局"),
        "county": ("county_approver", "田阳县扶贫办"),
        "village": ("village_approver", "四那村委会"),
    }

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        keys: dict[str, Signer] = {}
        statements = []
        for name, (role, org) in self.ROLES.items():
            keys[name] = signer = new_signer(name)
            body = {"name": name, "vkey": signer.verifier.vkey, "role": role, "org": org}
            statements.append(ledger.statement("key.registered", body, ledger.admin))
        ledger.log.append(statements)
        self.coop, self.coop2 = keys["coop"], keys["coop2"]
        self.logistics, self.retailer = keys["logistics"], keys["retailer"]
        self.inspector, self.county, self.village = (
            keys["inspector"],
            keys["county"],
            keys["village"],
        )
        identified = [
            self.household(code, place)
            for code, place in ((HH1, VILLAGE_A), (HH2, VILLAGE_A), (HH3, VILLAGE_B))
        ]
        ledger.log.append(
            [ledger.statement("household.identified", b, self.village) for b in identified]
        )

    @staticmethod
    def household(code: str, place: dict[str, str]) -> dict[str, Any]:
        return {
            "code": code,
            "location": dict(place),
            "members": 4,
            "causes": ["illness"],
            "year": 2016,
            "commitment": sha(code),
        }

    def append(self, kind: str, body: dict[str, Any], *signers: Signer) -> Entry:
        entry = self.ledger.log.append([self.ledger.statement(kind, body, *signers)])[0]
        schema = KINDS[kind].schema
        assert schema is not None
        jsonschema.validate(body, schema)  # everything accepted fits the published schema
        return entry

    def refused(
        self,
        kind: str,
        body: dict[str, Any],
        signers: tuple[Signer, ...],
        error: type[Exception],
        match: str,
    ) -> Exception:
        before = dump(self.ledger.engine)
        with pytest.raises(error, match=match) as caught:
            self.append(kind, body, *signers)
        assert dump(self.ledger.engine) == before
        return caught.value

    def register(self, lot: str = "TY-2019-07A", gtin: str | None = GTIN, **changes: Any) -> Entry:
        return self.append("batch.registered", registered(lot, gtin, **changes), self.coop)

    def transform(
        self,
        inputs: list[tuple[dict[str, str], int]],
        outputs: list[dict[str, Any]],
        **changes: Any,
    ) -> Entry:
        return self.append("batch.transformed", transformed(inputs, outputs, **changes), self.coop)

    def row(self, lot: str, gtin: str | None = GTIN) -> dict[str, Any]:
        with self.ledger.engine.connect() as conn:
            found = conn.execute(
                text("SELECT * FROM batches WHERE gtin = :g AND lot = :l"),
                {"g": gtin or "", "l": lot},
            ).mappings()
            return dict(found.one())

    def view(self, lot: str, gtin: str | None = GTIN) -> dict[str, Any]:
        with self.ledger.engine.connect() as conn:
            return bq.batch_view(conn, ref(lot, gtin))

    def check(self) -> None:
        check_ledger(self.ledger.engine)


@pytest.fixture
def world(ledger: Ledger) -> World:
    return World(ledger)


@pytest.fixture
def sqlite_world(sqlite_ledger: Ledger) -> World:
    return World(sqlite_ledger)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One world for tests that only make refused writes: lot TY-2019-07A (GTIN), lot
    TY-NOGTIN-1 (no GTIN), and TY-2019-07B of the other producer."""
    made = make_ledger(f"sqlite:///{tmp_path_factory.mktemp('batches') / 'ledger.db'}")
    built = World(made)
    built.register()
    built.register("TY-NOGTIN-1", None)
    built.append(
        "batch.registered",
        registered("TY-2019-07B", producer=COOP2, certifications=[]),
        built.coop2,
    )
    yield built
    made.engine.dispose()


# --- batch.registered ---------------------------------------------------------------------


def test_registration_writes_the_batch(world: World) -> None:
    entry = world.register()
    row = world.row("TY-2019-07A")
    assert row["producer"] == COOP and row["product_zh"] == "田阳芒果"
    assert (row["quantity"], row["remaining"], row["unit"]) == (1000, 1000, "kg")
    assert (row["status"], row["disposition"], row["inspection"]) == ("active", "active", "pass")
    assert row["registered_seq"] == row["seq"] == row["inspection_seq"] == entry.seq
    assert (row["village"], row["division_code"]) == ("四那村", "451021")
    with world.ledger.engine.connect() as conn:
        found = bq.find_batch(conn, GTIN[1:], lot="TY-2019-07A")  # GTIN-13 form is accepted
        assert found is not None
        assert found["path"] == f"/01/{GTIN}/10/TY-2019-07A"
        assert found["sellable"] is True
        assert bq.find_batch(conn, GTIN, lot="ty-2019-07a") is None
        assert bq.find_batch(conn, lot="TY-2019-07A") is None  # that lot has a GTIN
        households = conn.execute(text("SELECT household, share_permille FROM batch_households"))
        assert sorted(tuple(r) for r in households) == [(HH1, 300), (HH2, 200)]
    world.check()


def test_batch_without_gtin(sqlite_world: World) -> None:
    sqlite_world.register("TY/2019+1", None)
    with sqlite_world.ledger.engine.connect() as conn:
        found = bq.find_batch(conn, lot="TY/2019+1")
    assert found is not None
    assert found["gtin"] is None and found["batch"] == {"lot": "TY/2019+1"}
    assert found["path"] == "/b/TY%2F2019%2B1"
    sqlite_world.check()


#: (changes to the body, error, message, whether the JSON schema also refuses it)
REGISTRATION_REFUSALS: list[tuple[dict[str, Any], type[Exception], str, bool]] = [
    (
        {"gtin": GTIN[:-1] + str((int(GTIN[-1]) + 1) % 10)},
        InvalidEntry,
        "check digit should be",
        False,
    ),
    ({"gtin": GTIN[1:]}, InvalidEntry, f"pad '{GTIN[1:]}' with leading zeros", True),
    ({"lot": "批次1"}, InvalidEntry, "character 1, '批'", True),
    ({"lot": "ＴＹ1"}, InvalidEntry, "full-width .* use the ASCII 'T'", True),
    ({"lot": "A" * 21}, InvalidEntry, "1 to 20 characters, got 21", True),
    ({"colour": "黄"}, InvalidEntry, "unexpected \\['colour'\\]", True),
    ({"producer": DROP}, InvalidEntry, "missing \\['producer'\\]", True),
    ({"households": []}, InvalidEntry, "households must be a list of 1 to 500 items, got 0", True),
    (
        {"households": [{"household": HH1, "share_permille": 0}]},
        InvalidEntry,
        "share_permille must be an integer from 1 to 1000",
        True,
    ),
    (
        {"households": [{"household": HH1, "share_permille": "300"}]},
        InvalidEntry,
        "share_permille must be an integer",
        True,
    ),
    (
        {
            "households": [
                {"household": HH1, "share_permille": 600},
                {"household": HH2, "share_permille": 500},
            ]
        },
        InvalidEntry,
        "add up to 1100‰",
        False,
    ),
    (
        {
            "households": [
                {"household": HH1, "share_permille": 1},
                {"household": HH1, "share_permille": 2},
            ]
        },
        InvalidEntry,
        f"household {HH1} listed twice",
        False,
    ),
    (
        {"households": [{"household": "gx-1", "share_permille": 1}]},
        InvalidEntry,
        "household code is 4–32 upper-case",
        True,
    ),
    (
        {"households": [{"household": HH1, "share_permille": 1, "name": "张三"}]},
        InvalidEntry,
        "unexpected \\['name'\\]",
        True,
    ),
    (
        {"households": [{"household": "GX-TY-999999", "share_permille": 10}]},
        RuleViolation,
        "household GX-TY-999999 is not registered",
        False,
    ),
    ({"unit": "catty"}, InvalidEntry, "unit must be one of g, jin, kg", True),
    ({"quantity": 0}, InvalidEntry, "quantity must be an integer of at least 1", True),
    ({"quantity": "1000"}, InvalidEntry, "quantity must be an integer", True),
    (
        {"net_content": {"quantity": 500, "unit": "g"}},
        InvalidEntry,
        "net_content is for counted units",
        False,
    ),
    (
        {"unit": "box", "net_content": {"quantity": 5, "unit": "box"}},
        InvalidEntry,
        "net_content: unit must be one of",
        True,
    ),
    (
        {"inspections": [{**INSPECTION, "result": "ok"}]},
        InvalidEntry,
        "result must be one of pass, fail",
        True,
    ),
    ({"inspections": [{**INSPECTION, "report_sha256": "ABC"}]}, InvalidEntry, "SHA-256", True),
    (
        {"inspections": [{**INSPECTION, "date": "2999-01-01"}]},
        RuleViolation,
        "date 2999-01-01 is in the future",
        False,
    ),
    (
        {"certifications": [{"scheme": "halal", "number": "1"}]},
        InvalidEntry,
        "scheme must be one of",
        True,
    ),
    (
        {"certifications": [{**GREEN, "valid_until": "2019-01-01"}]},
        RuleViolation,
        "expired on 2019-01-01, before the batch was produced on 2019-07-12",
        False,
    ),
    ({"certifications": [GREEN, GREEN]}, InvalidEntry, "listed twice", False),
    ({"produced": "2019-02-30"}, InvalidEntry, "produced must be a date", False),
    ({"produced": "2999-01-01"}, RuleViolation, "produced 2999-01-01 is in the future", False),
    ({"origin": {"province": "广西壮族自治区"}}, InvalidEntry, "origin", True),
    (
        {"origin": {**VILLAGE_A, "division_code": "4510"}},
        InvalidEntry,
        "division_code must be 6, 9 or 12",
        True,
    ),
    ({"product": {"en": "mango"}}, InvalidEntry, "product must be an object", True),
    (
        {"producer": "别的合作社"},
        RuleViolation,
        "must be signed by a producer of '别的合作社'",
        False,
    ),
]


@pytest.mark.parametrize(("changes", "error", "match", "schema_refuses"), REGISTRATION_REFUSALS)
def test_registration_refusals(
    shared: World, changes: dict[str, Any], error: type[Exception], match: str, schema_refuses: bool
) -> None:
    body = apply_changes(registered("TY-2019-NEW"), changes)
    shared.refused("batch.registered", body, (shared.coop,), error, match)
    schema = KINDS["batch.registered"].schema
    assert schema is not None
    assert jsonschema.Draft202012Validator(schema).is_valid(body) is not schema_refuses


def test_registration_needs_a_producer_of_the_named_org(shared: World) -> None:
    body = registered("TY-2019-NEW")
    shared.refused(
        "batch.registered",
        body,
        (shared.coop2,),
        RuleViolation,
        f"producer of '{COOP}'.*coop2 \\(producer, {COOP2}\\)",
    )
    shared.refused(
        "batch.registered", body, (shared.logistics,), RuleViolation, "must be signed by a producer"
    )
    shared.refused(
        "batch.registered",
        body,
        (shared.ledger.admin,),
        RuleViolation,
        "must be signed by a producer",
    )


def test_lot_identity_and_confusables(shared: World) -> None:
    seq = shared.row("TY-2019-07A")["registered_seq"]
    shared.refused(
        "batch.registered",
        registered(),
        (shared.coop,),
        Conflict,
        f"already registered \\(seq {seq}\\)",
    )
    shared.refused(
        "batch.registered",
        registered("ty-2019-07a"),
        (shared.coop,),
        RuleViolation,
        f"lot 'ty-2019-07a' differs from lot 'TY-2019-07A' \\(registered at seq {seq}, GTIN {GTIN}\\) only by case",
    )
    shared.refused(
        "batch.registered",
        registered("ty-nogtin-1", None),
        (shared.coop,),
        RuleViolation,
        "only by case",
    )


def test_same_lot_under_another_gtin_or_none_is_another_batch(sqlite_world: World) -> None:
    sqlite_world.register()
    sqlite_world.register(gtin=GTIN_BOX)
    sqlite_world.register(gtin=None)
    sqlite_world.register("ty-2019-07a", gtin=GTIN_JAR)  # case clash only matters within a GTIN
    sqlite_world.check()


def test_latest_inspection_decides(sqlite_world: World) -> None:
    failed = {**INSPECTION, "result": "fail", "date": "2019-07-20", "report_sha256": sha("r2")}
    sqlite_world.register(inspections=[failed, INSPECTION])  # the fail is later by date
    assert sqlite_world.row("TY-2019-07A")["inspection"] == "fail"
    sqlite_world.register("TY-2019-07C", inspections=[])
    row = sqlite_world.row("TY-2019-07C")
    assert (row["inspection"], row["inspection_seq"]) == ("none", None)


# --- batch.event ----------------------------------------------------------------------------


def test_journey_from_packing_to_sale(world: World) -> None:
    world.register()
    w = world
    w.append("batch.event", event("TY-2019-07A", "packing", "in_progress"), w.coop)
    w.append(
        "batch.event",
        event("TY-2019-07A", "storing", "sellable_not_accessible", temperature_dc=40),
        w.logistics,
    )
    w.append(
        "batch.event",
        event(
            "TY-2019-07A",
            "shipping",
            "in_transit",
            time="2019-07-16T06:00:00+08:00",
            temperature_dc=-5,
        ),
        w.logistics,
    )
    w.append(
        "batch.event",
        event("TY-2019-07A", "receiving", "sellable_accessible", time="2019-07-17T10:00:00Z"),
        w.retailer,
    )
    last = w.append(
        "batch.event",
        event(
            "TY-2019-07A",
            "retail_selling",
            "retail_sold",
            time="2019-07-18T10:00:00+08:00",
            note="消费扶贫专柜售出",
        ),
        w.retailer,
    )
    row = w.row("TY-2019-07A")
    assert (row["disposition"], row["seq"], row["status"]) == ("retail_sold", last.seq, "active")
    view = w.view("TY-2019-07A")
    steps = [(t["biz_step"], t["disposition"]) for t in view["timeline"]]
    assert steps == [
        ("commissioning", "active"),
        ("packing", "in_progress"),
        ("storing", "sellable_not_accessible"),
        ("shipping", "in_transit"),
        ("receiving", "sellable_accessible"),
        ("retail_selling", "retail_sold"),
    ]
    assert view["timeline"][2]["temperature_dc"] == 40
    assert view["timeline"][2]["signers"] == [
        {"name": "logistics", "role": "logistics", "org": "百色冷链物流公司"}
    ]
    assert view["timeline"][5]["note"] == "消费扶贫专柜售出"
    assert all(t["own"] for t in view["timeline"])
    w.check()


BAD_EVENTS: list[tuple[dict[str, Any], str, type[Exception], str, bool]] = [
    (
        event("TY-2019-07A", "commissioning", "active"),
        "coop",
        InvalidEntry,
        "commissioning is recorded by batch.registered",
        True,
    ),
    (
        event("TY-2019-07A", "picking", "active"),
        "coop",
        InvalidEntry,
        "biz_step must be one of",
        True,
    ),
    (
        event("TY-2019-07A", "shipping", "active"),
        "coop",
        InvalidEntry,
        "biz_step shipping takes disposition in_transit, got 'active'",
        False,
    ),
    (
        event("TY-2019-07A", "storing", "recalled"),
        "coop",
        InvalidEntry,
        "record a recall with batch.recalled",
        True,
    ),
    (
        event("TY-2019-07A", "storing", "lost"),
        "coop",
        InvalidEntry,
        "disposition must be one of",
        True,
    ),
    (
        event("TY-2019-07A", "packing", "active", time="2019-07-15 08:30"),
        "coop",
        InvalidEntry,
        "time must be an ISO 8601",
        True,
    ),
    (
        event("TY-2019-07A", "packing", "active", time="2019-07-15T08:30:00"),
        "coop",
        InvalidEntry,
        "with seconds and an offset",
        True,
    ),
    (
        event("TY-2019-07A", "packing", "active", time="2019-13-15T08:30:00Z"),
        "coop",
        InvalidEntry,
        "time must be",
        False,
    ),
    (
        event("TY-2019-07A", "packing", "active", time="2999-01-01T00:00:00+08:00"),
        "coop",
        RuleViolation,
        "later than the log time",
        False,
    ),
    (
        event("TY-2019-07A", "packing", "active", time="2019-07-11T23:00:00+08:00"),
        "coop",
        RuleViolation,
        "before the batch was produced \\(2019-07-12\\)",
        False,
    ),
    (
        event("TY-2019-07A", "storing", "active", temperature_dc="4.0"),
        "coop",
        InvalidEntry,
        "tenths of a degree",
        True,
    ),
    (
        event("TY-2019-07A", "storing", "active", temperature_dc=601),
        "coop",
        InvalidEntry,
        "tenths of a degree",
        True,
    ),
    (
        event("TY-2019-07A", "storing", "active", temperature_dc=True),
        "coop",
        InvalidEntry,
        "tenths of a degree",
        True,
    ),
    (
        event("TY-2019-07A", "shipping", "in_transit", inspection=INSPECTION),
        "coop",
        InvalidEntry,
        "only biz_step inspecting carries an inspection",
        False,
    ),
    (
        event("TY-2019-07A", "inspecting", "conformant"),
        "inspector",
        InvalidEntry,
        "inspecting needs an inspection",
        False,
    ),
    (
        event(
            "TY-2019-07A", "inspecting", "conformant", inspection={**INSPECTION, "result": "fail"}
        ),
        "inspector",
        InvalidEntry,
        "an inspection that failed takes disposition non_conformant",
        False,
    ),
    (
        event("TY-2019-07A", "inspecting", "non_conformant", inspection=INSPECTION),
        "inspector",
        InvalidEntry,
        "passed takes disposition",
        False,
    ),
    (
        event("TY-2019-07A", "packing", "active", read_point=""),
        "coop",
        InvalidEntry,
        "read_point must be non-empty",
        True,
    ),
    (
        event("TY-2019-07A", "packing", "active", note="长" * 2001),
        "coop",
        InvalidEntry,
        "note must be non-empty text of at most 2000",
        True,
    ),
    (
        event("TY-2019-07A", "packing", "active", place="x"),
        "coop",
        InvalidEntry,
        "unexpected \\['place'\\]",
        True,
    ),
    (
        event("TY-2019-07A", "packing", "active", gtin=GTIN[1:]),
        "coop",
        InvalidEntry,
        "batch.gtin: gtin must be the 14-digit form",
        True,
    ),
    (
        event("TY-2019-07Z", "packing", "active"),
        "coop",
        RuleViolation,
        f"lot 'TY-2019-07Z' \\(GTIN {GTIN}\\) is not registered",
        False,
    ),
    (
        event("TY-2019-07A", "packing", "active"),
        "retailer",
        RuleViolation,
        f"biz_step packing must be signed by a producer of '{COOP}' key",
        False,
    ),
    (
        event("TY-2019-07A", "packing", "active"),
        "coop2",
        RuleViolation,
        "must be signed by a producer of",
        False,
    ),
    (
        event("TY-2019-07A", "storing", "active"),
        "retailer",
        RuleViolation,
        "producer of .* or a logistics key",
        False,
    ),
    (
        event("TY-2019-07A", "retail_selling", "sellable_accessible"),
        "logistics",
        RuleViolation,
        "a retailer",
        False,
    ),
    (
        event("TY-2019-07A", "destroying", "destroyed"),
        "retailer",
        RuleViolation,
        "or a inspector key",
        False,
    ),
]


@pytest.mark.parametrize(("body", "signer", "error", "match", "schema_refuses"), BAD_EVENTS)
def test_event_refusals(
    shared: World,
    body: dict[str, Any],
    signer: str,
    error: type[Exception],
    match: str,
    schema_refuses: bool,
) -> None:
    shared.refused("batch.event", body, (getattr(shared, signer),), error, match)
    schema = KINDS["batch.event"].schema
    assert schema is not None
    assert jsonschema.Draft202012Validator(schema).is_valid(body) is not schema_refuses


def test_other_signers_per_step(sqlite_world: World) -> None:
    w = sqlite_world
    w.register()
    w.append(
        "batch.event",
        event("TY-2019-07A", "inspecting", "conformant", inspection=INSPECTION),
        w.coop,
    )
    w.append("batch.event", event("TY-2019-07A", "storing", "active"), w.coop)
    w.append("batch.event", event("TY-2019-07A", "transporting", "in_transit"), w.logistics)
    w.append("batch.event", event("TY-2019-07A", "receiving", "active"), w.logistics)
    w.append("batch.event", event("TY-2019-07A", "retail_selling", "sellable_accessible"), w.coop)
    w.check()


def test_failed_inspection_blocks_sale_until_an_inspector_passes_it(sqlite_world: World) -> None:
    w = sqlite_world
    failed = {**INSPECTION, "result": "fail", "report_sha256": sha("failed")}
    first = w.register(inspections=[failed])
    for body, signer in (
        (event("TY-2019-07A", "retail_selling", "sellable_accessible"), w.retailer),
        (event("TY-2019-07A", "receiving", "sellable_accessible"), w.retailer),
        (event("TY-2019-07A", "storing", "sellable_not_accessible"), w.coop),
    ):
        w.refused(
            "batch.event",
            body,
            (signer,),
            RuleViolation,
            f"failed its latest inspection \\(seq {first.seq}\\)",
        )
    w.append("batch.event", event("TY-2019-07A", "storing", "active"), w.coop)  # may be stored
    again = event(
        "TY-2019-07A", "inspecting", "conformant", inspection={**INSPECTION, "date": "2019-07-20"}
    )
    w.refused(
        "batch.event",
        again,
        (w.coop,),
        RuleViolation,
        "only an inspector may record the passing re-inspection",
    )
    passed = w.append("batch.event", again, w.inspector)
    assert (w.row("TY-2019-07A")["inspection"], w.row("TY-2019-07A")["inspection_seq"]) == (
        "pass",
        passed.seq,
    )
    w.append(
        "batch.event", event("TY-2019-07A", "retail_selling", "sellable_accessible"), w.retailer
    )
    # a later failing inspection (by anyone allowed to inspect) blocks sale again
    w.append(
        "batch.event",
        event(
            "TY-2019-07A",
            "inspecting",
            "non_conformant",
            inspection={**failed, "date": "2019-07-21"},
        ),
        w.coop,
    )
    w.refused(
        "batch.event",
        event("TY-2019-07A", "retail_selling", "retail_sold"),
        (w.retailer,),
        RuleViolation,
        "failed its latest",
    )
    view = w.view("TY-2019-07A")
    assert [i["result"] for i in view["inspections"]] == ["fail", "pass", "fail"]
    assert view["sellable"] is False
    w.check()


def test_destroyed_batch_takes_no_events(sqlite_world: World) -> None:
    w = sqlite_world
    w.register()
    gone = w.append("batch.event", event("TY-2019-07A", "destroying", "destroyed"), w.inspector)
    row = w.row("TY-2019-07A")
    assert (row["status"], row["destroyed_seq"], row["disposition"]) == (
        "destroyed",
        gone.seq,
        "destroyed",
    )
    w.refused(
        "batch.event",
        event("TY-2019-07A", "storing", "active"),
        (w.coop,),
        RuleViolation,
        f"was destroyed at seq {gone.seq}",
    )
    w.refused(
        "batch.transformed",
        transformed([(ref("TY-2019-07A"), 10)], [output("TY-X", 10, "kg")]),
        (w.coop,),
        RuleViolation,
        f"input lot 'TY-2019-07A' .* was destroyed at seq {gone.seq}",
    )
    w.check()


# --- batch.transformed ------------------------------------------------------------------------


def test_split_into_packaged_lots(world: World) -> None:
    w = world
    w.register()
    split = w.transform(
        [(ref("TY-2019-07A"), 700)],
        [boxes("TY-2019-07A-B1", 200), output("TY-J1", 400, "jin")],  # 500 kg + 200 kg
    )
    parent = w.row("TY-2019-07A")
    assert (parent["remaining"], parent["children"], parent["seq"]) == (300, 2, split.seq)
    child = w.row("TY-2019-07A-B1", GTIN_BOX)
    assert (child["quantity"], child["unit"], child["net_quantity"], child["net_unit"]) == (
        200,
        "box",
        2500,
        "g",
    )
    assert (child["product_zh"], child["producer"], child["village"]) == (
        "田阳芒果",
        COOP,
        "四那村",
    )
    assert (child["produced"], child["parents"], child["registered_seq"]) == (
        "2019-07-14",
        1,
        split.seq,
    )
    assert (child["inspection"], child["inspection_seq"]) == ("pass", parent["inspection_seq"])
    jin = w.row("TY-J1", None)
    assert (jin["quantity"], jin["unit"]) == (400, "jin")
    with w.ledger.engine.connect() as conn:
        links = conn.execute(
            text("SELECT parent_lot, n, child_lot, consumed, seq FROM batch_links ORDER BY n")
        )
        assert [tuple(r) for r in links] == [
            ("TY-2019-07A", 0, "TY-2019-07A-B1", 700, split.seq),
            ("TY-2019-07A", 1, "TY-J1", 700, split.seq),
        ]
        outputs = bq.batch_by_seq(conn, split.seq)
    assert [o["lot"] for o in outputs] == ["TY-J1", "TY-2019-07A-B1"]
    w.check()


def test_merge_and_common_origin(sqlite_world: World) -> None:
    w = sqlite_world
    w.register("H-A")
    w.register(
        "H-B",
        origin=dict(VILLAGE_B),
        households=[{"household": HH3, "share_permille": 1000}],
        inspections=[],
    )
    merged = w.transform(
        [(ref("H-A"), 400), (ref("H-B"), 600)],
        [output("M-1", 1, "t", GTIN_JAR)],
        process="合并分级 merged and graded",
    )
    row = w.row("M-1", GTIN_JAR)
    assert (row["province"], row["city"], row["county"], row["township"], row["village"]) == (
        "广西壮族自治区",
        "百色市",
        "田阳县",
        None,
        None,
    )
    assert row["division_code"] is None  # H-B has none
    assert (row["inspection"], row["inspection_seq"]) == ("none", None)  # H-B never inspected
    assert (row["parents"], row["registered_seq"]) == (2, merged.seq)
    assert (w.row("H-A")["remaining"], w.row("H-B")["remaining"]) == (600, 400)
    with w.ledger.engine.connect() as conn:
        supported = bq.households_supported(conn, ref("M-1", GTIN_JAR))
    assert supported["count"] == 3
    assert [(v["village"], v["households"]) for v in supported["villages"]] == [
        ("四那村", 2),
        ("那坡村", 1),
    ]
    w.check()


def test_quantities_in_counted_units(sqlite_world: World) -> None:
    w = sqlite_world
    w.register("BOX-1", unit="box", quantity=100)
    w.refused(
        "batch.transformed",
        transformed([(ref("BOX-1"), 100)], [output("BOX-2", 101, "box")]),
        (w.coop,),
        RuleViolation,
        "outputs hold 101 box, more than the 100 box",
    )
    w.refused(
        "batch.transformed",
        transformed([(ref("BOX-1"), 100)], [output("BOX-2", 50, "kg")]),
        (w.coop,),
        RuleViolation,
        "cannot compare the quantities of inputs and outputs \\(count:box, mass\\)",
    )
    w.transform([(ref("BOX-1"), 100)], [output("BOX-2", 100, "box")])
    w.check()


def test_failed_inspection_and_certificates_pass_to_outputs(sqlite_world: World) -> None:
    w = sqlite_world
    failed = {**INSPECTION, "result": "fail"}
    bad = w.register("H-F", inspections=[failed])
    w.register("H-G", certifications=[])
    w.refused(
        "batch.transformed",
        transformed(
            [(ref("H-F"), 100), (ref("H-G"), 100)],
            [output("M-F", 200, "kg", certifications=[GREEN])],
        ),
        (w.coop,),
        RuleViolation,
        "claims certificate green_food 'LB-18-1907123456A', which input lot 'H-G' .* does not hold",
    )
    w.transform([(ref("H-F"), 100), (ref("H-G"), 100)], [output("M-F", 200, "kg")])
    row = w.row("M-F", None)
    assert (row["inspection"], row["inspection_seq"]) == ("fail", bad.seq)
    w.refused(
        "batch.event",
        event("M-F", "retail_selling", "retail_sold", gtin=None),
        (w.retailer,),
        RuleViolation,
        "failed its latest inspection",
    )
    w.transform([(ref("H-F"), 100)], [output("F-GREEN", 100, "kg", certifications=[GREEN])])
    view = w.view("F-GREEN", None)
    assert view["certifications"] == [
        {
            "scheme": "green_food",
            "number": GREEN["number"],
            "valid_until": GREEN["valid_until"],
            "seq": view["registered_seq"],
        }
    ]
    w.check()


def test_transformation_refusals(sqlite_world: World) -> None:
    w = sqlite_world
    w.register()  # TY-2019-07A, 1000 kg
    w.register("TY-2019-07C", product={"zh": "百色芒果干"})
    w.append("batch.registered", registered("P-1", producer=COOP2, certifications=[]), w.coop2)
    w.transform([(ref("TY-2019-07A"), 100)], [output("TY-D1", 100, "kg")])
    a = ref("TY-2019-07A")
    seq = w.row("TY-2019-07A")["registered_seq"]
    cases: list[tuple[dict[str, Any], tuple[Signer, ...], type[Exception], str]] = [
        (
            transformed([(a, 901)], [output("X-1", 1, "kg")]),
            (w.coop,),
            RuleViolation,
            f"has 900 kg left of 1000 \\(registered at seq {seq}\\), cannot consume 901",
        ),
        (
            transformed([(a, 700)], [boxes("X-1", 200), output("X-2", 401, "jin")]),
            (w.coop,),
            RuleViolation,
            "outputs hold 700500 g, more than the 700000 g the inputs supply",
        ),
        (
            transformed([(a, 700)], [output("X-1", 200, "box")]),
            (w.coop,),
            RuleViolation,
            "cannot compare .*counted units need net_content",
        ),
        (
            transformed([(a, 700)], [output("X-1", 200, "l")]),
            (w.coop,),
            RuleViolation,
            "mass cannot be compared with volume",
        ),
        (
            transformed([(a, 1), (a, 1)], [output("X-1", 1, "kg")]),
            (w.coop,),
            InvalidEntry,
            "listed twice among the inputs",
        ),
        (
            transformed([(a, 1)], [output("TY-D1", 1, "kg")]),
            (w.coop,),
            Conflict,
            "lot 'TY-D1' \\(no GTIN\\) is already registered",
        ),
        (
            transformed([(a, 1)], [output("ty-d1", 1, "kg")]),
            (w.coop,),
            RuleViolation,
            "differs from lot 'TY-D1' .* only by case",
        ),
        (
            transformed([(a, 2)], [output("X-1", 1, "kg"), output("x-1", 1, "kg")]),
            (w.coop,),
            RuleViolation,
            "lots 'X-1' and 'x-1' \\(no GTIN\\) are the same or differ only by case",
        ),
        (
            transformed([(a, 1)], [output("TY-2019-07A", 1, "kg", GTIN)]),
            (w.coop,),
            Conflict,
            "already registered",
        ),
        (
            transformed([(a, 1), (ref("P-1"), 1)], [output("X-1", 1, "kg")]),
            (w.coop,),
            RuleViolation,
            "inputs belong to different producers",
        ),
        (
            transformed([(a, 1)], [output("X-1", 1, "kg")]),
            (w.coop2,),
            RuleViolation,
            f"must be signed by a producer of '{COOP}'",
        ),
        (
            transformed([(a, 1)], [output("X-1", 1, "kg")]),
            (w.logistics,),
            RuleViolation,
            "must be signed by a producer",
        ),
        (
            transformed([(a, 1), (ref("TY-2019-07C"), 1)], [output("X-1", 2, "kg")]),
            (w.coop,),
            InvalidEntry,
            "needs a product name: its inputs are different products",
        ),
        (
            transformed([(a, 1)], [output("X-1", 1, "kg")], date="2019-07-01"),
            (w.coop,),
            RuleViolation,
            "before input .* was produced \\(2019-07-12\\)",
        ),
        (
            transformed([(a, 1)], [output("X-1", 1, "kg")], date="2999-07-01"),
            (w.coop,),
            RuleViolation,
            "in the future",
        ),
        (
            transformed([(ref("NOPE"), 1)], [output("X-1", 1, "kg")]),
            (w.coop,),
            RuleViolation,
            "lot 'NOPE' .* is not registered",
        ),
        (
            transformed([(a, 1)], []),
            (w.coop,),
            InvalidEntry,
            "outputs must be a list of 1 to 100 items, got 0",
        ),
        (
            transformed([], [output("X-1", 1, "kg")]),
            (w.coop,),
            InvalidEntry,
            "inputs must be a list of 1 to 100",
        ),
        (
            transformed([(a, 0)], [output("X-1", 1, "kg")]),
            (w.coop,),
            InvalidEntry,
            "quantity must be an integer of at least 1",
        ),
        (
            transformed([(a, 1)], [output("X-1", 1, "kg")], process=DROP),
            (w.coop,),
            InvalidEntry,
            "missing \\['process'\\]",
        ),
        (
            transformed([(a, 1)], [output("X 1", 1, "kg")]),
            (w.coop,),
            InvalidEntry,
            "spaces are not allowed",
        ),
        (
            transformed([(a, 1)], [output("X-1", 1, "kg", producer=COOP)]),
            (w.coop,),
            InvalidEntry,
            "unexpected \\['producer'\\]",
        ),
    ]
    for body, signers, error, match in cases:
        w.refused("batch.transformed", body, signers, error, match)
    # one product name settles a merge of different products
    w.transform(
        [(a, 1), (ref("TY-2019-07C"), 1)],
        [output("X-1", 2, "kg", product={"zh": "芒果拼盘", "en": "mango mix"})],
    )
    assert w.row("X-1", None)["product_zh"] == "芒果拼盘"
    w.check()


def test_jin_converts_at_500_grams(sqlite_world: World) -> None:
    w = sqlite_world
    w.register()  # 1000 kg = 2000 jin
    w.refused(
        "batch.transformed",
        transformed([(ref("TY-2019-07A"), 1000)], [output("J-1", 2001, "jin")]),
        (w.coop,),
        RuleViolation,
        "outputs hold 1000500 g, more than the 1000000 g",
    )
    w.transform([(ref("TY-2019-07A"), 1000)], [output("J-1", 2000, "jin")])
    assert w.row("TY-2019-07A")["remaining"] == 0
    w.check()


# --- batch.recalled -----------------------------------------------------------------------------


def build_tree(w: World) -> dict[str, Entry]:
    """H (harvest) → P1, P2 (split) ; P1 → R1, R2 (retail packs)."""
    made = {"H": w.register("H")}
    made["split"] = w.transform(
        [(ref("H"), 800)], [output("P1", 500, "kg"), output("P2", 300, "kg")]
    )
    made["retail"] = w.transform(
        [(ref("P1", None), 500)],
        [boxes("R1", 100, 2000, GTIN_BOX), boxes("R2", 150, 2000, GTIN_BOX)],
    )
    return made


def test_recall_reaches_lots_two_transformations_down(world: World) -> None:
    w = world
    made = build_tree(w)
    late = w.append(
        "batch.event", event("H", "storing", "active", time="2019-07-20T08:00:00+08:00"), w.coop
    )
    recall = w.append(
        "batch.recalled",
        {"batch": ref("H"), "reason": "农药残留超标 pesticide residue above the limit"},
        w.inspector,
    )
    for lot, gtin in (("H", GTIN), ("P1", None), ("P2", None), ("R1", GTIN_BOX), ("R2", GTIN_BOX)):
        row = w.row(lot, gtin)
        assert (row["status"], row["recalled_seq"], row["disposition"]) == (
            "recalled",
            recall.seq,
            "recalled",
        )
        assert (row["recall_gtin"], row["recall_lot"]) == (GTIN, "H")
    view = w.view("R1", GTIN_BOX)
    assert view["recall"] == {
        "seq": recall.seq,
        "time": recall.time,
        "reason": "农药残留超标 pesticide residue above the limit",
        "cause": {"gtin": GTIN, "lot": "H"},
        "direct": False,
        "signers": [{"name": "inspector", "role": "inspector", "org": "百色市市场监督管理局"}],
    }
    assert view["status"] == "recalled" and view["sellable"] is False
    # the journey: H's registration and the split, P1's retail split, the recall; not H's later storing
    seqs = [(t["seq"], t["batch"]["lot"], t["own"]) for t in view["timeline"]]
    assert seqs == [
        (made["H"].seq, "H", False),
        (made["split"].seq, "H", False),
        (made["split"].seq, "P1", False),
        (made["retail"].seq, "P1", False),
        (made["retail"].seq, "R1", True),
        (recall.seq, "R1", True),
    ]
    assert late.seq not in [t["seq"] for t in view["timeline"]]
    assert view["timeline"][-1]["recalled"] == {"gtin": GTIN, "lot": "H"}
    # nothing may be sold or derived any more
    w.refused(
        "batch.event",
        event("R1", "retail_selling", "retail_sold", gtin=GTIN_BOX),
        (w.retailer,),
        RuleViolation,
        f"lot 'R1' \\(GTIN {GTIN_BOX}\\) was recalled at seq {recall.seq} \\(recall of lot 'H' \\(GTIN {GTIN}\\)\\)",
    )
    w.refused(
        "batch.event",
        event("R1", "receiving", "active", gtin=GTIN_BOX),
        (w.retailer,),
        RuleViolation,
        "may not be sold or returned to commerce",
    )
    w.refused(
        "batch.transformed",
        transformed([(ref("P2", None), 10)], [output("P2-X", 10, "kg")]),
        (w.coop,),
        RuleViolation,
        f"input lot 'P2' \\(no GTIN\\) was recalled at seq {recall.seq} .*nothing may be derived",
    )
    w.refused(
        "batch.recalled",
        {"batch": ref("R1", GTIN_BOX), "reason": "again"},
        (w.inspector,),
        Conflict,
        f"already recalled \\(seq {recall.seq}, through the recall of lot 'H'",
    )
    # recalled goods may still be moved, stored and destroyed
    w.append(
        "batch.event",
        event("R1", "receiving", "returned", gtin=GTIN_BOX, time="2019-07-21T09:00:00+08:00"),
        w.logistics,
    )
    w.append(
        "batch.event",
        event(
            "R1", "storing", "non_sellable_other", gtin=GTIN_BOX, time="2019-07-21T10:00:00+08:00"
        ),
        w.logistics,
    )
    gone = w.append(
        "batch.event",
        event("R1", "destroying", "destroyed", gtin=GTIN_BOX, time="2019-07-22T10:00:00+08:00"),
        w.inspector,
    )
    row = w.row("R1", GTIN_BOX)
    assert (row["status"], row["recalled_seq"], row["destroyed_seq"]) == (
        "destroyed",
        recall.seq,
        gone.seq,
    )
    w.check()


def test_recall_marks_only_downstream_and_keeps_the_first_cause(sqlite_world: World) -> None:
    w = sqlite_world
    build_tree(w)
    first = w.append(
        "batch.recalled", {"batch": ref("P1", None), "reason": "包装破损 damaged packaging"}, w.coop
    )
    assert w.row("H")["recalled_seq"] is None and w.row("P2", None)["recalled_seq"] is None
    assert w.row("R2", GTIN_BOX)["recall_lot"] == "P1"
    second = w.append("batch.recalled", {"batch": ref("H"), "reason": "农药残留超标"}, w.county)
    assert (w.row("P2", None)["recalled_seq"], w.row("P2", None)["recall_lot"]) == (second.seq, "H")
    assert (w.row("R1", GTIN_BOX)["recalled_seq"], w.row("R1", GTIN_BOX)["recall_lot"]) == (
        first.seq,
        "P1",
    )
    direct = w.view("P1", None)["recall"]
    assert direct is not None and direct["direct"] is True and direct["cause"] == {"lot": "P1"}
    w.check()


def test_recall_rules(sqlite_world: World) -> None:
    w = sqlite_world
    w.register()
    body = {"batch": ref("TY-2019-07A"), "reason": "抽检不合格"}
    for signer in (w.retailer, w.logistics, w.coop2, w.village):
        w.refused("batch.recalled", body, (signer,), RuleViolation, "a recall must be signed by")
    for bad, match in (
        ({"batch": ref("TY-2019-07A"), "reason": ""}, "reason must be non-empty"),
        ({"batch": ref("TY-2019-07A")}, "missing \\['reason'\\]"),
        ({**body, "evidence": [{"sha256": "x"}]}, "evidence\\[0\\] must be an object"),
        ({**body, "batch": {"lot": "TY-2019-07A", "serial": "1"}}, "unexpected \\['serial'\\]"),
        ({**body, "batch": "TY-2019-07A"}, "batch must be an object"),
    ):
        w.refused("batch.recalled", bad, (w.inspector,), InvalidEntry, match)
    w.refused(
        "batch.recalled",
        {**body, "batch": ref("NOPE")},
        (w.inspector,),
        RuleViolation,
        "not registered",
    )
    evidence = [
        {
            "sha256": sha("notice"),
            "name": "召回通知.pdf",
            "media_type": "application/pdf",
            "size": 12345,
        }
    ]
    w.append("batch.recalled", {**body, "evidence": evidence}, w.county)
    w.check()


def test_recall_of_a_destroyed_parent_still_reaches_its_children(sqlite_world: World) -> None:
    w = sqlite_world
    w.register()
    w.transform([(ref("TY-2019-07A"), 500)], [output("C-1", 500, "kg")])
    w.append("batch.event", event("TY-2019-07A", "destroying", "destroyed"), w.coop)
    recall = w.append("batch.recalled", {"batch": ref("TY-2019-07A"), "reason": "霉变"}, w.coop)
    parent = w.row("TY-2019-07A")
    assert (parent["status"], parent["disposition"], parent["recalled_seq"]) == (
        "destroyed",
        "destroyed",
        recall.seq,
    )
    assert w.row("C-1", None)["status"] == "recalled"
    w.check()


# --- tampering ----------------------------------------------------------------------------------


def test_tampered_batch_row_is_named(sqlite_world: World) -> None:
    w = sqlite_world
    entry = w.register()
    w.ledger.execute("UPDATE batches SET remaining = remaining + 500 WHERE lot = 'TY-2019-07A'")
    with pytest.raises(
        VerificationError, match=f"seq {entry.seq}: table batches .* column remaining"
    ):
        check_ledger(w.ledger.engine)


def test_tampered_link_is_named(sqlite_world: World) -> None:
    w = sqlite_world
    made = build_tree(w)
    w.ledger.execute("UPDATE batch_links SET child_lot = 'P9' WHERE child_lot = 'P2'")
    with pytest.raises(VerificationError, match=f"seq {made['split'].seq}: table batch_links"):
        check_ledger(w.ledger.engine)


def test_tampered_recall_mark_is_named(sqlite_world: World) -> None:
    w = sqlite_world
    build_tree(w)
    recall = w.append("batch.recalled", {"batch": ref("H"), "reason": "霉变"}, w.coop)
    w.ledger.execute("UPDATE batches SET recalled_seq = NULL, status = 'active' WHERE lot = 'R2'")
    with pytest.raises(VerificationError, match=f"seq {recall.seq}: table batches"):
        check_ledger(w.ledger.engine)


# --- documentation ------------------------------------------------------------------------------

BATCH_KINDS = ("batch.registered", "batch.event", "batch.transformed", "batch.recalled")


def doc_sections() -> dict[str, list[str]]:
    """kind → the ```json blocks of its section in docs/DOMAIN.md."""
    return domain_doc_sections("batch.")


def test_doc_examples_are_accepted_in_order(sqlite_world: World) -> None:
    w = sqlite_world
    sections = doc_sections()
    examples = {kind: json.loads(sections[kind][1]) for kind in BATCH_KINDS}
    for household in examples["batch.registered"]["households"]:
        w.append("household.identified", w.household(household["household"], VILLAGE_A), w.village)
    signer = {
        "batch.registered": w.coop,
        "batch.event": w.logistics,
        "batch.transformed": w.coop,
        "batch.recalled": w.inspector,
    }
    for kind in BATCH_KINDS:
        w.append(kind, examples[kind], signer[kind])
    w.check()
