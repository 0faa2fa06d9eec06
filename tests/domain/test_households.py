"""Households (建档立卡户): identification, status transitions, corrections, queries."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import jsonschema
import pytest
from sqlalchemy import text

from ledger.domain import households as hh
from ledger.entry import Entry
from ledger.errors import (
    Conflict,
    InvalidEntry,
    InvalidInput,
    NotFound,
    RuleViolation,
    VerificationError,
)
from ledger.note import Signer
from ledger.rules import KINDS
from tests.helpers import Ledger, check_ledger, domain_doc_sections, dump

CODE = "GX-GN-000123"
PLACE = {
    "province": "广西壮族自治区",
    "city": "贵港市",
    "county": "港南区",
    "township": "木格镇",
    "village": "云垌村",
}


def commitment(tag: str) -> str:
    return hashlib.sha256(tag.encode()).hexdigest()


def identified(code: str = CODE, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": code,
        "location": dict(PLACE),
        "members": 4,
        "causes": ["illness", "lack_of_skills"],
        "year": 2016,
        "commitment": commitment(code),
    }
    body.update(changes)
    return body


def status(target: str, when: str, code: str = CODE, **extra: Any) -> dict[str, Any]:
    return {"code": code, "status": target, "date": when, "reason": "村民代表评议通过", **extra}


class World:
    """A ledger with the approvers the household rules need."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.village = ledger.register("village", "village_approver", "云垌村委会")
        self.village2 = ledger.register("village2", "village_approver", "云垌村委会")
        self.township = ledger.register("township", "township_approver", "木格镇人民政府")
        self.county = ledger.register("county", "county_approver", "港南区扶贫办")

    def append(self, kind: str, body: dict[str, Any], *signers: Signer) -> Entry:
        return self.ledger.log.append([self.ledger.statement(kind, body, *signers)])[0]

    def refused(
        self, kind: str, body: dict[str, Any], signers: tuple[Signer, ...], error: type, match: str
    ) -> None:
        before = dump(self.ledger.engine)
        with pytest.raises(error, match=match):
            self.append(kind, body, *signers)
        assert dump(self.ledger.engine) == before

    def row(self, code: str = CODE) -> dict[str, Any]:
        with self.ledger.engine.connect() as conn:
            found = conn.execute(
                text("SELECT * FROM households WHERE code = :c"), {"c": code}
            ).mappings()
            return dict(found.one())


@pytest.fixture
def world(ledger: Ledger) -> World:
    return World(ledger)


@pytest.fixture
def sqlite_world(sqlite_ledger: Ledger) -> World:
    return World(sqlite_ledger)


# --- household.identified ----------------------------------------------------------------------


def test_identified_writes_the_household(world: World) -> None:
    entry = world.append("household.identified", identified(), world.village)
    row = world.row()
    assert row["status"] == "identified"
    assert (row["county"], row["township"], row["village"]) == ("港南区", "木格镇", "云垌村")
    assert row["identified_seq"] == row["seq"] == row["status_seq"] == entry.seq
    assert row["causes"] == "illness,lack_of_skills"
    assert row["status_date"] is None
    check_ledger(world.ledger.engine)


def test_identified_needs_a_village_approver(world: World) -> None:
    world.refused(
        "household.identified",
        identified(),
        (world.township,),
        RuleViolation,
        "village_approver",
    )


def test_a_code_is_identified_once(world: World) -> None:
    first = world.append("household.identified", identified(), world.village)
    world.refused(
        "household.identified",
        identified(commitment=commitment("other")),
        (world.village,),
        Conflict,
        f"already registered \\(seq {first.seq}\\)",
    )
    check_ledger(world.ledger.engine)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"code": "gx-1"}, "household code"),
        ({"commitment": "ABC"}, "commitment must be the salted SHA-256"),
        ({"commitment": commitment("x").upper()}, "64 lower-case hex"),
        ({"causes": []}, "non-empty list"),
        ({"causes": ["laziness"]}, "not among"),
        ({"causes": ["illness", "illness"]}, "twice"),
        ({"members": 0}, "members must be an integer from 1"),
        ({"members": True}, "members must be an integer"),
        ({"year": 2013}, "year must be the year identified"),
        ({"location": {"province": "广西", "city": "贵港"}}, "county"),
        ({"name": "张三"}, "unexpected \\['name'\\]"),
    ],
)
def test_identified_refuses_malformed_bodies(
    sqlite_world: World, changes: dict[str, Any], match: str
) -> None:
    sqlite_world.refused(
        "household.identified",
        identified(**changes),
        (sqlite_world.village,),
        InvalidEntry,
        match,
    )


# --- household.status ---------------------------------------------------------------------------


def test_the_whole_status_cycle(world: World) -> None:
    w = world
    w.append("household.identified", identified(), w.village)
    exited = w.append("household.status", status("exited", "2018-11-20"), w.village, w.township)
    assert (w.row()["status"], w.row()["status_seq"], w.row()["status_date"]) == (
        "exited",
        exited.seq,
        "2018-11-20",
    )
    w.append("household.status", status("monitoring", "2019-06-01"), w.township)
    w.append("household.status", status("relapsed", "2020-03-02"), w.village)
    w.append("household.status", status("identified", "2020-03-10"), w.village)
    w.append("household.status", status("exited", "2020-11-30"), w.village, w.township)
    w.append("household.status", status("relapsed", "2021-02-01"), w.village)
    assert w.row()["status"] == "relapsed"
    check_ledger(w.ledger.engine)


def test_exit_needs_village_and_township_from_distinct_keys(world: World) -> None:
    w = world
    w.append("household.identified", identified(), w.village)
    body = status("exited", "2018-11-20")
    for signers in [(w.village,), (w.township,), (w.village, w.village2), (w.village, w.county)]:
        w.refused(
            "household.status",
            body,
            signers,
            RuleViolation,
            "village_approver \\+ township_approver",
        )
    check_ledger(w.ledger.engine)


def test_impossible_transitions_say_what_is_allowed(world: World) -> None:
    w = world
    first = w.append("household.identified", identified(), w.village)
    w.refused(
        "household.status",
        status("monitoring", "2018-01-01"),
        (w.village, w.township),
        RuleViolation,
        f"is identified \\(since seq {first.seq}\\); it cannot become monitoring — allowed from "
        "identified: exited",
    )
    w.refused(
        "household.status",
        status("identified", "2018-01-01"),
        (w.village,),
        RuleViolation,
        "cannot become identified",
    )
    w.append("household.status", status("exited", "2018-11-20"), w.village, w.township)
    w.refused(
        "household.status",
        status("exited", "2018-12-01"),
        (w.village, w.township),
        RuleViolation,
        "allowed from exited: monitoring, relapsed, identified",
    )


def test_wrong_exit_is_reversed_with_both_signatures(sqlite_world: World) -> None:
    w = sqlite_world
    w.append("household.identified", identified(), w.village)
    w.append("household.status", status("exited", "2018-11-20"), w.village, w.township)
    w.refused(
        "household.status",
        status("identified", "2018-12-01"),
        (w.village,),
        RuleViolation,
        "to identified must be signed by village_approver \\+ township_approver",
    )
    w.append("household.status", status("identified", "2018-12-01"), w.village, w.township)
    assert w.row()["status"] == "identified"
    check_ledger(w.ledger.engine)


def test_status_dates_move_forward_and_not_into_the_future(sqlite_world: World) -> None:
    w = sqlite_world
    w.append("household.identified", identified(year=2017), w.village)
    w.refused(
        "household.status",
        status("exited", "2016-12-31"),
        (w.village, w.township),
        RuleViolation,
        "before the household's previous status date 2017-01-01",
    )
    changed = w.append("household.status", status("exited", "2019-05-01"), w.village, w.township)
    w.refused(
        "household.status",
        status("monitoring", "2019-04-30"),
        (w.village,),
        RuleViolation,
        f"previous status date 2019-05-01 \\(seq {changed.seq}\\)",
    )
    future = (datetime.now(UTC).date() + timedelta(days=3)).isoformat()
    w.refused(
        "household.status", status("monitoring", future), (w.village,), RuleViolation, "future"
    )
    tomorrow = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    w.append("household.status", status("monitoring", tomorrow), w.village)  # UTC+8 slack
    check_ledger(w.ledger.engine)


@pytest.mark.parametrize(
    ("body", "match", "error"),
    [
        (status("exited", "2019-02-30"), "date must be a date", InvalidEntry),
        (status("gone", "2019-02-01"), "status must be one of", InvalidEntry),
        (
            {**status("exited", "2019-02-01"), "reason": ""},
            "reason must be non-empty",
            InvalidEntry,
        ),
        (
            {**status("exited", "2019-02-01"), "evidence": [{"sha256": "x"}]},
            "evidence",
            InvalidEntry,
        ),
        (status("exited", "2019-02-01", code="GX-GN-999999"), "not registered", RuleViolation),
    ],
)
def test_status_refuses_bad_bodies(
    sqlite_world: World, body: dict[str, Any], match: str, error: type
) -> None:
    w = sqlite_world
    w.append("household.identified", identified(), w.village)
    w.refused("household.status", body, (w.village, w.township), error, match)


def test_status_with_evidence(sqlite_world: World) -> None:
    w = sqlite_world
    w.append("household.identified", identified(), w.village)
    doc = {
        "sha256": commitment("doc"),
        "name": "脱贫公示.pdf",
        "media_type": "application/pdf",
        "size": 1024,
    }
    w.append(
        "household.status", status("exited", "2019-02-01", evidence=[doc]), w.village, w.township
    )
    check_ledger(w.ledger.engine)


# --- household.corrected ----------------------------------------------------------------------------


def test_corrections_change_only_what_they_name(world: World) -> None:
    w = world
    w.append("household.identified", identified(), w.village)
    w.append("household.status", status("exited", "2019-02-01"), w.village, w.township)
    fixed = w.append(
        "household.corrected",
        {
            "code": CODE,
            "reason": "户籍信息更正",
            "commitment": commitment("new"),
            "location": {**PLACE, "village": "平南村"},
            "members": 5,
            "causes": ["disability"],
        },
        w.village,
    )
    row = w.row()
    assert (row["commitment"], row["village"], row["members"], row["causes"]) == (
        commitment("new"),
        "平南村",
        5,
        "disability",
    )
    assert row["status"] == "exited" and row["seq"] == fixed.seq and row["status_seq"] < fixed.seq
    check_ledger(w.ledger.engine)


def test_corrections_are_refused_when_empty_unsigned_or_pointless(sqlite_world: World) -> None:
    w = sqlite_world
    w.append("household.identified", identified(), w.village)
    base = {"code": CODE, "reason": "更正"}
    w.refused("household.corrected", base, (w.village,), InvalidEntry, "at least one of")
    w.refused(
        "household.corrected",
        {**base, "members": 3},
        (w.township,),
        RuleViolation,
        "village_approver",
    )
    w.refused(
        "household.corrected",
        {**base, "commitment": commitment(CODE)},
        (w.village,),
        RuleViolation,
        "already has this commitment",
    )
    w.refused(
        "household.corrected",
        {**base, "code": "GX-GN-000999", "members": 3},
        (w.village,),
        RuleViolation,
        "not registered",
    )
    w.refused(
        "household.corrected",
        {**base, "status": "exited"},
        (w.village,),
        InvalidEntry,
        "unexpected",
    )


# --- tamper ---------------------------------------------------------------------------------------------


def test_an_edited_household_row_is_named_by_verify(world: World) -> None:
    w = world
    w.append("household.identified", identified(), w.village)
    changed = w.append("household.status", status("exited", "2019-02-01"), w.village, w.township)
    w.ledger.execute("UPDATE households SET status = 'identified' WHERE code = :c", c=CODE)
    with pytest.raises(VerificationError, match=f"seq {changed.seq}: table households"):
        check_ledger(w.ledger.engine)


def test_a_deleted_history_row_is_named_by_verify(sqlite_world: World) -> None:
    w = sqlite_world
    entry = w.append("household.identified", identified(), w.village)
    w.ledger.execute("DELETE FROM household_events")
    with pytest.raises(VerificationError, match=f"seq {entry.seq}: table household_events lacks"):
        check_ledger(w.ledger.engine)


# --- schemas ----------------------------------------------------------------------------------------------


def test_schemas_accept_what_the_rules_accept_and_refuse_malformed_bodies() -> None:
    validator = jsonschema.Draft202012Validator
    good = {
        "household.identified": identified(),
        "household.status": status("exited", "2019-02-01"),
        "household.corrected": {"code": CODE, "reason": "更正", "members": 3},
    }
    bad = {
        "household.identified": identified(causes=["illness", "illness"]),
        "household.status": status("gone", "2019-02-01"),
        "household.corrected": {"code": CODE, "reason": "更正"},
    }
    for kind, body in good.items():
        schema = KINDS[kind].schema
        assert schema is not None
        validator.check_schema(schema)
        validator(schema).validate(body)
        assert not validator(schema).is_valid(bad[kind]), kind


# --- queries ----------------------------------------------------------------------------------------------


def test_household_view_has_the_history_with_seqs(sqlite_world: World) -> None:
    w = sqlite_world
    first = w.append("household.identified", identified(), w.village)
    second = w.append("household.status", status("exited", "2019-02-01"), w.village, w.township)
    third = w.append(
        "household.corrected", {"code": CODE, "reason": "人口变化", "members": 3}, w.village
    )
    with w.ledger.engine.connect() as conn:
        view = hh.household_view(conn, CODE)
        with pytest.raises(NotFound, match="GX-GN-404404"):
            hh.household_view(conn, "GX-GN-404404")
    assert view["status"] == "exited" and view["members"] == 3
    assert view["location"] == PLACE
    assert view["causes"] == ["illness", "lack_of_skills"]
    assert view["allowed"] == ["monitoring", "relapsed", "identified"]
    assert view["history"] == [
        {
            "seq": first.seq,
            "kind": "household.identified",
            "status": "identified",
            "date": None,
            "reason": None,
        },
        {
            "seq": second.seq,
            "kind": "household.status",
            "status": "exited",
            "date": "2019-02-01",
            "reason": "村民代表评议通过",
        },
        {
            "seq": third.seq,
            "kind": "household.corrected",
            "status": "exited",
            "date": None,
            "reason": "人口变化",
        },
    ]
    assert (view["status_seq"], view["seq"], view["identified_seq"]) == (
        second.seq,
        third.seq,
        first.seq,
    )


def test_counts_by_status_per_place_with_the_entries_behind_them(sqlite_world: World) -> None:
    w = sqlite_world
    seqs: dict[str, int] = {}
    for i, village in enumerate(["云垌村", "云垌村", "平南村"]):
        code = f"GX-GN-00000{i}"
        body = identified(code, location={**PLACE, "village": village})
        seqs[code] = w.append("household.identified", body, w.village).seq
    exit_seq = w.append(
        "household.status",
        status("exited", "2019-02-01", code="GX-GN-000001"),
        w.village,
        w.township,
    ).seq
    other = {**PLACE, "county": "覃塘区", "township": "黄练镇", "village": "新岭村"}
    w.append("household.identified", identified("GX-TT-000001", location=other), w.village)
    with w.ledger.engine.connect() as conn:
        villages = hh.household_counts(conn, county="港南区")
        townships = hh.household_counts(conn, level="township")
        assert hh.list_households(conn, status="exited")[0]["code"] == "GX-GN-000001"
        assert [h["code"] for h in hh.list_households(conn, village="云垌村")] == [
            "GX-GN-000000",
            "GX-GN-000001",
        ]
        with pytest.raises(InvalidInput, match="level must be"):
            hh.household_counts(conn, level="street")
        with pytest.raises(InvalidInput, match="unknown location filters"):
            hh.household_counts(conn, street="x")
    assert [v["place"]["village"] for v in villages] == ["云垌村", "平南村"]  # code-point order
    yundong = villages[0]
    assert yundong["total"] == 2
    assert yundong["counts"] == {"identified": 1, "exited": 1, "monitoring": 0, "relapsed": 0}
    assert yundong["seqs"]["identified"] == [seqs["GX-GN-000000"]]
    assert yundong["seqs"]["exited"] == [exit_seq]
    assert [(t["place"]["county"], t["total"]) for t in townships] == [("港南区", 3), ("覃塘区", 1)]
    assert set(townships[0]["place"]) == {"province", "city", "county", "township"}


def test_the_transition_table_is_consistent() -> None:
    for source, targets in hh.TRANSITIONS.items():
        assert source in hh.STATUSES
        assert source not in targets
        for target, policy in targets.items():
            assert target in hh.STATUSES
            if target == "exited":
                assert policy == hh.DUAL
    assert date.fromisoformat("2019-01-01")  # dates in bodies are ISO dates


# --- documentation -----------------------------------------------------------------------------------------

KINDS_HERE = ("household.identified", "household.status", "household.corrected")


def doc_sections() -> dict[str, list[str]]:
    """kind → the ```json blocks of its section in docs/DOMAIN.md."""
    return domain_doc_sections("household.")


def test_doc_examples_are_accepted_in_order(sqlite_world: World) -> None:
    w = sqlite_world
    examples = {kind: json.loads(blocks[1]) for kind, blocks in doc_sections().items()}
    w.append("household.identified", examples["household.identified"], w.village)
    w.append("household.status", examples["household.status"], w.village, w.township)
    w.append("household.corrected", examples["household.corrected"], w.village)
    check_ledger(w.ledger.engine)
