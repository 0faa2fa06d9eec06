"""The read side of batches: scan-page view, provenance graph, households, listings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from ledger.domain import batch_queries as bq
from ledger.errors import InvalidInput, NotFound
from tests.domain.test_batches import (
    COOP,
    COOP2,
    GREEN,
    GTIN,
    GTIN_BOX,
    HH1,
    HH2,
    HH3,
    INSPECTION,
    VILLAGE_B,
    World,
    boxes,
    event,
    output,
    ref,
    registered,
    sha,
)
from tests.helpers import Ledger


@pytest.fixture
def world(ledger: Ledger) -> World:
    return World(ledger)


class Story:
    """Two harvests from two villages merged, then packed; a later event on a harvest.

    H-A (HH1, HH2; inspected) ─┐
                               ├─ M (merged 1 t) ─ R1, R2 (boxes)
    H-B (HH3; village B) ──────┘
    """

    def __init__(self, w: World) -> None:
        self.w = w
        self.ha = w.register("H-A")
        self.hb = w.register(
            "H-B",
            origin=dict(VILLAGE_B),
            households=[
                {"household": HH3, "share_permille": 800},
                {"household": HH1, "share_permille": 100},
            ],
            inspections=[],
            certifications=[],
        )
        self.cold = w.append(
            "batch.event", event("H-A", "storing", "active", temperature_dc=35), w.logistics
        )
        self.merge = w.transform(
            [(ref("H-A"), 500), (ref("H-B"), 500)], [output("M", 1000, "kg", GTIN)]
        )
        self.late = w.append(
            "batch.event",
            event("H-A", "shipping", "in_transit", time="2019-07-20T08:00:00+08:00"),
            w.logistics,
        )
        self.pack = w.transform(
            [(ref("M"), 600)],
            [boxes("R1", 100, 3000), boxes("R2", 100, 3000)],
            date="2019-07-15",
        )
        self.check = w.append(
            "batch.event",
            event(
                "R1",
                "inspecting",
                "conformant",
                gtin=GTIN_BOX,
                time="2019-07-16T09:00:00+08:00",
                inspection={**INSPECTION, "date": "2019-07-16", "report_sha256": sha("r1")},
            ),
            w.inspector,
        )


@pytest.fixture
def story(world: World) -> Story:
    return Story(world)


@pytest.fixture
def conn(story: Story) -> Iterator[Any]:
    with story.w.ledger.engine.connect() as connection:
        yield connection


def test_view_shows_households_by_village_without_codes(story: Story, conn: Any) -> None:
    view = bq.batch_view(conn, {"gtin": GTIN_BOX, "lot": "R1"})
    assert view["households"] == {
        "count": 3,
        "villages": [
            {
                "province": "广西壮族自治区",
                "city": "百色市",
                "county": "田阳县",
                "township": "百育镇",
                "village": "四那村",
                "households": 2,
            },
            {
                "province": "广西壮族自治区",
                "city": "百色市",
                "county": "田阳县",
                "township": "那坡镇",
                "village": "那坡村",
                "households": 1,
            },
        ],
        "seqs": [story.ha.seq, story.hb.seq],
    }
    public = {k: v for k, v in view.items() if k != "auditor"}
    text = json.dumps(public, ensure_ascii=False)
    for code in (HH1, HH2, HH3):
        assert code not in text
    auditor = {h["household"]: h for h in view["auditor"]["households"]}
    assert sorted(auditor) == [HH1, HH2, HH3]
    assert auditor[HH1]["supplied"] == [
        {"batch": {"gtin": GTIN, "lot": "H-A"}, "share_permille": 300, "seq": story.ha.seq},
        {"batch": {"gtin": GTIN, "lot": "H-B"}, "share_permille": 100, "seq": story.hb.seq},
    ]
    assert auditor[HH3]["status"] == "identified" and auditor[HH3]["village"] == "那坡村"


def test_view_summary_and_origin(story: Story, conn: Any) -> None:
    view = bq.batch_view(conn, {"gtin": GTIN_BOX, "lot": "R1"})
    assert view["product"] == {"zh": "田阳芒果", "en": "Tianyang mango"}
    assert view["producer"] == COOP
    # merged from two townships, one without a division code: the shared part remains
    assert view["origin"] == {"province": "广西壮族自治区", "city": "百色市", "county": "田阳县"}
    assert view["path"] == f"/01/{GTIN_BOX}/10/R1"
    assert (view["quantity"], view["unit"], view["net_content"]) == (
        100,
        "box",
        {"quantity": 3000, "unit": "g"},
    )
    assert view["inspection"] == {"result": "pass", "seq": story.check.seq}
    assert view["recall"] is None and view["sellable"] is True
    assert view["certifications"] == []
    json.dumps(view)  # plain JSON


def test_timeline_follows_the_lot_upstream_up_to_each_transformation(
    story: Story, conn: Any
) -> None:
    view = bq.batch_view(conn, {"gtin": GTIN_BOX, "lot": "R1"})
    items = [(t["seq"], t["batch"]["lot"], t["kind"], t["biz_step"]) for t in view["timeline"]]
    assert items == [
        (story.ha.seq, "H-A", "batch.registered", "commissioning"),
        (story.hb.seq, "H-B", "batch.registered", "commissioning"),
        (story.cold.seq, "H-A", "batch.event", "storing"),
        (story.merge.seq, "H-A", "batch.transformed", None),
        (story.merge.seq, "H-B", "batch.transformed", None),
        (story.merge.seq, "M", "batch.transformed", "commissioning"),
        (story.pack.seq, "M", "batch.transformed", None),
        (story.pack.seq, "R1", "batch.transformed", "commissioning"),
        (story.check.seq, "R1", "batch.event", "inspecting"),
    ]
    assert story.late.seq not in [t["seq"] for t in view["timeline"]]  # after H-A's part was merged
    pack = view["timeline"][7]
    assert pack["own"] is True and pack["process"] == "分拣包装 sorting and packing"
    assert pack["inputs"] == [{"batch": {"gtin": GTIN, "lot": "M"}, "quantity": 600}]
    assert pack["outputs"] == [
        {"batch": {"gtin": GTIN_BOX, "lot": "R1"}, "quantity": 100, "unit": "box"},
        {"batch": {"gtin": GTIN_BOX, "lot": "R2"}, "quantity": 100, "unit": "box"},
    ]
    assert view["timeline"][0]["quantity"] == 1000 and view["timeline"][0]["producer"] == COOP
    assert view["timeline"][2]["temperature_dc"] == 35
    assert view["timeline"][2]["read_point"] == "百育镇冷库 Baiyu cold store"
    assert all(t["logged"].endswith("Z") for t in view["timeline"])
    # inspections: H-A's at registration and R1's own
    assert [(i["batch"]["lot"], i["seq"], i["result"]) for i in view["inspections"]] == [
        ("H-A", story.ha.seq, "pass"),
        ("R1", story.check.seq, "pass"),
    ]


def test_recall_banner_names_the_cause(story: Story, conn: Any) -> None:
    w = story.w
    recall = w.append("batch.recalled", {"batch": ref("H-B"), "reason": "重金属超标"}, w.county)
    view = bq.batch_view(conn, {"gtin": GTIN_BOX, "lot": "R2"})
    assert view["recall"] is not None
    assert (view["recall"]["seq"], view["recall"]["cause"], view["recall"]["direct"]) == (
        recall.seq,
        {"gtin": GTIN, "lot": "H-B"},
        False,
    )
    assert view["recall"]["signers"] == [
        {"name": "county", "role": "county_approver", "org": "田阳县扶贫办"}
    ]
    assert view["timeline"][-1]["disposition"] == "recalled"
    assert bq.find_batch(conn, GTIN, lot="H-A")["status"] == "active"  # type: ignore[index]
    w.check()


def test_provenance_graph(story: Story, conn: Any) -> None:
    graph = bq.provenance(conn, {"gtin": GTIN, "lot": "M"}, depth=1)
    assert graph["root"] == {"gtin": GTIN, "lot": "M"}
    assert [(n["batch"]["lot"], n["distance"]) for n in graph["nodes"]] == [
        ("H-A", -1),
        ("H-B", -1),
        ("M", 0),
        ("R1", 1),
        ("R2", 1),
    ]
    assert [
        (e["parent"]["lot"], e["child"]["lot"], e["seq"], e["consumed"], e["unit"])
        for e in graph["edges"]
    ] == [
        ("H-A", "M", story.merge.seq, 500, "kg"),
        ("H-B", "M", story.merge.seq, 500, "kg"),
        ("M", "R1", story.pack.seq, 600, "kg"),
        ("M", "R2", story.pack.seq, 600, "kg"),
    ]
    assert graph["truncated"] is False
    up = bq.provenance(conn, {"gtin": GTIN_BOX, "lot": "R1"}, depth=1)
    assert [n["batch"]["lot"] for n in up["nodes"]] == ["M", "R1"]
    assert up["truncated"] is True
    full = bq.provenance(conn, {"gtin": GTIN_BOX, "lot": "R1"})
    assert [(n["batch"]["lot"], n["distance"]) for n in full["nodes"]] == [
        ("H-A", -2),
        ("H-B", -2),
        ("M", -1),
        ("R1", 0),
    ]
    assert full["truncated"] is False
    alone = bq.provenance(conn, {"gtin": GTIN, "lot": "H-A"}, depth=0)
    assert [n["batch"]["lot"] for n in alone["nodes"]] == ["H-A"] and alone["truncated"] is True
    for depth in (-1, 101, True, "2"):
        with pytest.raises(InvalidInput, match="depth must be an integer from 0 to 100"):
            bq.provenance(conn, {"gtin": GTIN, "lot": "M"}, depth=depth)  # type: ignore[arg-type]


def test_households_supported_through_the_graph(story: Story, conn: Any) -> None:
    merged = bq.households_supported(conn, {"gtin": GTIN, "lot": "M"})
    assert merged["count"] == 3 and merged["seqs"] == [story.ha.seq, story.hb.seq]
    harvest = bq.households_supported(conn, {"gtin": GTIN, "lot": "H-B"})
    assert [h["household"] for h in harvest["households"]] == [HH1, HH3]
    assert [(v["village"], v["households"]) for v in harvest["villages"]] == [
        ("四那村", 1),
        ("那坡村", 1),
    ]


def test_listing_and_lookups(story: Story, conn: Any) -> None:
    w = story.w
    other = w.append(
        "batch.registered", registered("O-1", producer=COOP2, certifications=[GREEN]), w.coop2
    )
    first = bq.list_batches(conn, limit=2)
    assert [b["lot"] for b in first["batches"]] == ["H-A", "H-B"]
    second = bq.list_batches(conn, limit=2, after=first["next"])
    assert [b["lot"] for b in second["batches"]] == ["M", "R1"]
    third = bq.list_batches(conn, limit=2, after=second["next"])
    assert [b["lot"] for b in third["batches"]] == ["R2", "O-1"]
    assert third["next"] is None  # nothing after the last page
    assert bq.list_batches(conn, limit=2, after=f"{other.seq}:{GTIN}:O-1") == {
        "batches": [],
        "next": None,
    }
    assert [b["lot"] for b in bq.list_batches(conn, producer=COOP2)["batches"]] == ["O-1"]
    assert bq.list_batches(conn, producer="无此合作社") == {"batches": [], "next": None}
    for bad in ("x", "1", "a:b:c"):
        with pytest.raises(InvalidInput, match="cursor"):
            bq.list_batches(conn, after=bad)
    with pytest.raises(InvalidInput, match="limit"):
        bq.list_batches(conn, limit=0)
    assert [b["lot"] for b in bq.batch_by_seq(conn, story.pack.seq)] == ["R1", "R2"]
    assert [b["lot"] for b in bq.batch_by_seq(conn, other.seq)] == ["O-1"]
    assert bq.batch_by_seq(conn, story.cold.seq) == []
    view = bq.batch_view(conn, {"gtin": GTIN, "lot": "O-1"})
    assert view["certifications"] == [
        {
            "scheme": "green_food",
            "number": GREEN["number"],
            "valid_until": GREEN["valid_until"],
            "seq": other.seq,
        }
    ]


def test_unknown_or_malformed_batches(story: Story, conn: Any) -> None:
    with pytest.raises(NotFound, match="lot 'NOPE' \\(no GTIN\\) is not registered"):
        bq.batch_view(conn, {"lot": "NOPE"})
    with pytest.raises(NotFound):
        bq.provenance(conn, {"gtin": GTIN, "lot": "NOPE"})
    with pytest.raises(NotFound):
        bq.households_supported(conn, {"gtin": GTIN, "lot": "NOPE"})
    with pytest.raises(InvalidInput, match="check digit"):
        bq.find_batch(conn, GTIN[:-1] + "0" if GTIN[-1] != "0" else GTIN[:-1] + "1", lot="M")
    with pytest.raises(InvalidInput, match="character 1"):
        bq.find_batch(conn, lot="批次")
    with pytest.raises(InvalidInput, match="'gtin'"):
        bq.batch_view(conn, {"gtin": GTIN})
    assert bq.find_batch(conn, None, lot="M") is None


def test_story_verifies(story: Story) -> None:
    story.w.check()
