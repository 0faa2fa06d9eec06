"""Read side of the batches: what the consumer scan page, the API and auditors show.

Every function takes a SQLAlchemy :class:`~sqlalchemy.Connection`, runs plain SELECTs on the
projection tables of :mod:`ledger.domain.batches` (plus ``households``, ``keys`` and
``entries``), and returns plain JSON values: dicts, lists, strings, integers, booleans, None.

A batch is named in arguments and results as a *ref* — ``{"gtin": "<14 digits>", "lot": …}``,
or ``{"lot": …}`` for a batch without a GTIN — the same shape entry bodies use.  A ``gtin``
argument may have 8, 12, 13 or 14 digits (it is normalised) and MUST have a valid check digit.

Public pages MUST NOT show household codes: :func:`batch_view` keeps them under ``"auditor"``
and gives the public only counts per village.  Numbers come with the seqs of the entries they
come from.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, and_, or_, select

from ledger.domain import gs1
from ledger.domain.batches import (
    ORIGIN_PARTS,
    BatchKey,
    batch_certifications,
    batch_events,
    batch_households,
    batch_links,
    batches,
    ref_json,
    show,
)
from ledger.domain.households import households
from ledger.entry import Entry, decode_entry
from ledger.errors import InvalidInput, NotFound, StorageError
from ledger.schema import entries, keys

#: At most this many batches in one upstream or downstream walk (a guard, not a rule).
MAX_GRAPH_NODES = 10_000
MAX_DEPTH = 100
MAX_LIMIT = 1_000

# --- keys --------------------------------------------------------------------------------


def batch_key(ref: Mapping[str, Any]) -> BatchKey:
    """``(gtin14 or "", lot)`` from a ref ``{"gtin"?: …, "lot": …}``; raises InvalidInput."""
    if not isinstance(ref, Mapping) or "lot" not in ref:
        raise InvalidInput(f"a batch is {{'gtin'?: …, 'lot': …}}, got {ref!r}")
    gtin = ref.get("gtin")
    return ("" if gtin in (None, "") else gs1.normalize_gtin(gtin)), gs1.validate_lot(ref["lot"])


def _row(conn: Connection, key: BatchKey) -> dict[str, Any] | None:
    found = (
        conn.execute(select(batches).where(batches.c.gtin == key[0], batches.c.lot == key[1]))
        .mappings()
        .first()
    )
    return None if found is None else dict(found)


def _require(conn: Connection, ref: Mapping[str, Any]) -> tuple[BatchKey, dict[str, Any]]:
    key = batch_key(ref)
    row = _row(conn, key)
    if row is None:
        raise NotFound(f"{show(key)} is not registered")
    return key, row


# --- summaries ---------------------------------------------------------------------------


def _summary(row: Mapping[str, Any]) -> dict[str, Any]:
    """The batch as every query shows it (see :func:`find_batch`)."""
    key: BatchKey = (row["gtin"], row["lot"])
    product = {"zh": row["product_zh"]}
    if row["product_en"] is not None:
        product["en"] = row["product_en"]
    net = row["net_quantity"]
    return {
        "batch": ref_json(key),
        "gtin": row["gtin"] or None,
        "lot": row["lot"],
        "path": gs1.batch_path(row["gtin"] or None, row["lot"]),
        "product": product,
        "producer": row["producer"],
        "origin": {p: row[p] for p in ORIGIN_PARTS if row[p] is not None},
        "produced": row["produced"],
        "quantity": row["quantity"],
        "remaining": row["remaining"],
        "unit": row["unit"],
        "net_content": None if net is None else {"quantity": net, "unit": row["net_unit"]},
        "status": row["status"],
        "disposition": row["disposition"],
        "inspection": {"result": row["inspection"], "seq": row["inspection_seq"]},
        "sellable": row["status"] == "active" and row["inspection"] != "fail",
        "recalled_seq": row["recalled_seq"],
        "destroyed_seq": row["destroyed_seq"],
        "registered_seq": row["registered_seq"],
        "seq": row["seq"],
    }


def find_batch(conn: Connection, gtin: str | None = None, *, lot: str) -> dict[str, Any] | None:
    """The batch ``(gtin, lot)`` — ``gtin`` None for a batch registered without one — or None.

    Returns the *summary*: ``{"batch": ref, "gtin": str | None, "lot", "path" (the scan path,
    GS1 Digital Link or /b/<lot>), "product": {"zh", "en"?}, "producer", "origin": {province,
    city, county[, township, village, division_code]}, "produced", "quantity", "remaining",
    "unit", "net_content": {"quantity", "unit"} | None, "status": active | recalled |
    destroyed, "disposition" (latest CBV disposition), "inspection": {"result": none | pass |
    fail, "seq"}, "sellable": bool, "recalled_seq", "destroyed_seq", "registered_seq", "seq"
    (the entry that last changed the batch)}``.  Raises InvalidInput for a malformed GTIN/lot.
    """
    row = _row(conn, batch_key({"gtin": gtin, "lot": lot}))
    return None if row is None else _summary(row)


def batch_by_seq(conn: Connection, seq: int) -> list[dict[str, Any]]:
    """Summaries of the batches the entry at ``seq`` registered: one for ``batch.registered``,
    the outputs of ``batch.transformed``, none for any other entry."""
    query = (
        select(batches)
        .where(batches.c.registered_seq == seq)
        .order_by(batches.c.gtin, batches.c.lot)
    )
    return [_summary(dict(r)) for r in conn.execute(query).mappings()]


def list_batches(
    conn: Connection, producer: str | None = None, limit: int = 50, after: str | None = None
) -> dict[str, Any]:
    """Batches in registration order, optionally of one producer organisation.

    Returns ``{"batches": [summary, …], "next": cursor | None}``; pass ``next`` back as
    ``after`` for the following page.  The cursor is opaque text.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be an integer from 1 to {MAX_LIMIT}, got {limit!r}")
    query = select(batches)
    if producer is not None:
        query = query.where(batches.c.producer == producer)
    if after is not None:
        seq, gtin, lot = _parse_cursor(after)
        query = query.where(
            or_(
                batches.c.registered_seq > seq,
                and_(
                    batches.c.registered_seq == seq,
                    or_(batches.c.gtin > gtin, and_(batches.c.gtin == gtin, batches.c.lot > lot)),
                ),
            )
        )
    query = query.order_by(batches.c.registered_seq, batches.c.gtin, batches.c.lot)
    rows = list(conn.execute(query.limit(limit + 1)).mappings())
    page = rows[:limit]
    last = page[-1] if len(rows) > limit else None
    cursor = None if last is None else f"{last['registered_seq']}:{last['gtin']}:{last['lot']}"
    return {"batches": [_summary(dict(r)) for r in page], "next": cursor}


def _parse_cursor(cursor: str) -> tuple[int, str, str]:
    parts = cursor.split(":", 2) if isinstance(cursor, str) else []
    if len(parts) != 3 or not parts[0].isascii() or not parts[0].isdigit():
        raise InvalidInput(
            f"after must be a cursor returned as 'next' by list_batches, got {cursor!r}"
        )
    return int(parts[0]), parts[1], parts[2]


# --- graph walks -------------------------------------------------------------------------


def _parents(conn: Connection, key: BatchKey) -> list[dict[str, Any]]:
    query = (
        select(batch_links)
        .where(batch_links.c.child_gtin == key[0], batch_links.c.child_lot == key[1])
        .order_by(batch_links.c.parent_gtin, batch_links.c.parent_lot)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def _children(conn: Connection, key: BatchKey) -> list[dict[str, Any]]:
    query = (
        select(batch_links)
        .where(batch_links.c.parent_gtin == key[0], batch_links.c.parent_lot == key[1])
        .order_by(batch_links.c.n)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def _ancestors(conn: Connection, key: BatchKey) -> dict[BatchKey, int]:
    """Every batch upstream of ``key`` → the seq of its last transformation on the way to
    ``key`` (its events up to that seq are part of ``key``'s journey)."""
    cutoff: dict[BatchKey, int] = {}
    queue = deque([key])
    seen = {key}
    while queue:
        child = queue.popleft()
        for link in _parents(conn, child):
            parent = (link["parent_gtin"], link["parent_lot"])
            cutoff[parent] = max(cutoff.get(parent, -1), int(link["seq"]))
            if parent not in seen:
                if len(seen) >= MAX_GRAPH_NODES:
                    raise InvalidInput(f"{show(key)} has more than {MAX_GRAPH_NODES} upstream lots")
                seen.add(parent)
                queue.append(parent)
    return cutoff


# --- households --------------------------------------------------------------------------

_PLACE = ("province", "city", "county", "township", "village")


def households_supported(conn: Connection, ref: Mapping[str, Any]) -> dict[str, Any]:
    """The registered households who supplied the batch or any lot upstream of it.

    Returns ``{"batch": ref, "count": distinct households, "villages": [{province, city,
    county, township, village, "households": n}] (sorted by place), "households": [
    {"household": code, "status", province…village, "supplied": [{"batch": ref,
    "share_permille", "seq"}]}] (by code), "seqs": [the registration seqs that list them]}``.
    ``households`` holds pseudonymous codes: for auditors, never for public pages.
    Raises NotFound for an unregistered batch.
    """
    key, _ = _require(conn, ref)
    lots = [key, *_ancestors(conn, key)]
    found: dict[str, dict[str, Any]] = {}
    seqs: set[int] = set()
    for lot_key in lots:
        query = (
            select(
                batch_households,
                households.c.status,
                *[households.c[p] for p in _PLACE],
            )
            .join(households, households.c.code == batch_households.c.household, isouter=True)
            .where(batch_households.c.gtin == lot_key[0], batch_households.c.lot == lot_key[1])
        )
        for r in conn.execute(query).mappings():
            item = found.setdefault(
                r["household"],
                {
                    "household": r["household"],
                    "status": r["status"],
                    **{p: r[p] for p in _PLACE},
                    "supplied": [],
                },
            )
            item["supplied"].append(
                {"batch": ref_json(lot_key), "share_permille": r["share_permille"], "seq": r["seq"]}
            )
            seqs.add(int(r["seq"]))
    villages: dict[tuple[Any, ...], int] = {}
    for item in found.values():
        item["supplied"].sort(key=lambda s: s["seq"])
        place = tuple(item[p] for p in _PLACE)
        villages[place] = villages.get(place, 0) + 1
    return {
        "batch": ref_json(key),
        "count": len(found),
        "villages": [
            {**dict(zip(_PLACE, place, strict=True)), "households": n}
            for place, n in sorted(villages.items(), key=lambda kv: tuple(v or "" for v in kv[0]))
        ],
        "households": [found[code] for code in sorted(found)],
        "seqs": sorted(seqs),
    }


# --- the scan page -----------------------------------------------------------------------


def _entries(conn: Connection, seqs: Iterable[int]) -> dict[int, Entry]:
    wanted = sorted(set(seqs))
    out: dict[int, Entry] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        query = select(entries.c.seq, entries.c.leaf).where(entries.c.seq.in_(chunk))
        for seq, leaf in conn.execute(query):
            out[int(seq)] = decode_entry(bytes(leaf))
    return out


def _signers(conn: Connection, found: Iterable[Entry]) -> dict[str, dict[str, str]]:
    ids = sorted({k for e in found for k in e.signed.key_ids()})
    if not ids:
        return {}
    query = select(keys.c.key_id, keys.c.name, keys.c.role, keys.c.org).where(
        keys.c.key_id.in_(ids)
    )
    return {r.key_id: {"name": r.name, "role": r.role, "org": r.org} for r in conn.execute(query)}


def _details(entry: Entry, key: BatchKey) -> dict[str, Any]:
    """What the timeline shows of an entry beyond the index columns."""
    body = entry.body
    if entry.kind == "batch.event":
        names = ("read_point", "temperature_dc", "inspection", "note")
        return {n: body[n] for n in names if n in body}
    if entry.kind == "batch.transformed":
        return {
            "process": body["process"],
            "inputs": [{"batch": i["batch"], "quantity": i["quantity"]} for i in body["inputs"]],
            "outputs": [
                {"batch": ref_json(_output_key(o)), "quantity": o["quantity"], "unit": o["unit"]}
                for o in body["outputs"]
            ],
        }
    if entry.kind == "batch.recalled":
        cause = ref_json(batch_key(body["batch"]))
        return {
            "reason": body["reason"],
            "recalled": cause,
            "evidence": list(body.get("evidence", [])),
        }
    if entry.kind == "batch.registered":
        return {"quantity": body["quantity"], "unit": body["unit"], "producer": body["producer"]}
    return {}


def _output_key(output: Mapping[str, Any]) -> BatchKey:
    return str(output.get("gtin", "")), str(output["lot"])


def _timeline_rows(
    conn: Connection, key: BatchKey, cutoff: Mapping[BatchKey, int]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for lot_key in [key, *sorted(cutoff)]:
        query = select(batch_events).where(
            batch_events.c.gtin == lot_key[0], batch_events.c.lot == lot_key[1]
        )
        if lot_key != key:
            query = query.where(batch_events.c.seq <= cutoff[lot_key])
        rows.extend(dict(r) for r in conn.execute(query).mappings())
    # within one transformation, its inputs come before the lots it made
    rows.sort(key=lambda r: (r["seq"], r["biz_step"] == "commissioning", r["gtin"], r["lot"]))
    return rows


def _inspections(entry: Entry, lot_key: BatchKey) -> list[dict[str, Any]]:
    body = entry.body
    if entry.kind == "batch.registered":
        found = list(body.get("inspections", []))
    elif entry.kind == "batch.event" and "inspection" in body:
        found = [body["inspection"]]
    else:
        found = []
    return [{"batch": ref_json(lot_key), "seq": entry.seq, **item} for item in found]


def batch_view(conn: Connection, ref: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the consumer scan page shows about a batch, with the entries behind it.

    Returns the summary (:func:`find_batch`) plus:

    * ``"households"``: ``{"count", "villages": [{province, city, county, township, village,
      "households": n}], "seqs"}`` — through the whole upstream graph, no codes;
    * ``"auditor"``: ``{"households": [...]}`` — the codes and shares
      (:func:`households_supported`); never for public pages;
    * ``"timeline"``: ``[{"seq", "time" (event time or stated date), "logged" (log time),
      "batch": ref, "own": bool (False for an upstream lot's event), "kind", "biz_step",
      "disposition", "signers": [{"name", "role", "org"}], …details}]`` in log order, where
      details are ``read_point``, ``temperature_dc`` (tenths of °C), ``inspection``, ``note``
      for events; ``process``, ``inputs``, ``outputs`` for transformations; ``reason``,
      ``recalled`` (ref), ``evidence`` for recalls; ``quantity``, ``unit``, ``producer`` for
      registrations.  Upstream lots contribute their entries up to the transformation that
      led to this batch;
    * ``"inspections"``: ``[{"batch": ref, "seq", "lab", "result", "date", "report_sha256"}]``,
      this batch's and its upstream lots';
    * ``"certifications"``: ``[{"scheme", "number", "valid_until", "seq"}]``;
    * ``"recall"``: None, or ``{"seq", "time", "reason", "cause": ref (the batch whose recall
      reached this one), "direct": bool, "signers"}`` — the red banner.

    Raises NotFound for an unregistered batch.
    """
    key, row = _require(conn, ref)
    out = _summary(row)
    supported = households_supported(conn, ref)
    out["households"] = {
        "count": supported["count"],
        "villages": supported["villages"],
        "seqs": supported["seqs"],
    }
    out["auditor"] = {"households": supported["households"]}

    cutoff = _ancestors(conn, key)
    index = _timeline_rows(conn, key, cutoff)
    found = _entries(conn, [r["seq"] for r in index])
    who = _signers(conn, found.values())
    timeline, inspections = [], []
    for r in index:
        entry = found[int(r["seq"])]
        lot_key: BatchKey = (r["gtin"], r["lot"])
        timeline.append(
            {
                "seq": r["seq"],
                "time": r["time"],
                "logged": entry.time,
                "batch": ref_json(lot_key),
                "own": lot_key == key,
                "kind": r["kind"],
                "biz_step": r["biz_step"],
                "disposition": r["disposition"],
                "signers": [who[k] for k in entry.signed.key_ids() if k in who],
                **_details(entry, lot_key),
            }
        )
        inspections.extend(_inspections(entry, lot_key))
    out["timeline"] = timeline
    out["inspections"] = inspections
    out["certifications"] = _certifications(conn, key)
    out["recall"] = _recall(row, key, found, who)
    return out


def _certifications(conn: Connection, key: BatchKey) -> list[dict[str, Any]]:
    query = (
        select(batch_certifications)
        .where(batch_certifications.c.gtin == key[0], batch_certifications.c.lot == key[1])
        .order_by(
            batch_certifications.c.seq, batch_certifications.c.scheme, batch_certifications.c.number
        )
    )
    return [
        {
            "scheme": r["scheme"],
            "number": r["number"],
            "valid_until": r["valid_until"],
            "seq": r["seq"],
        }
        for r in conn.execute(query).mappings()
    ]


def _recall(
    row: Mapping[str, Any],
    key: BatchKey,
    found: Mapping[int, Entry],
    who: Mapping[str, dict[str, str]],
) -> dict[str, Any] | None:
    if row["recalled_seq"] is None:
        return None
    entry = found[int(row["recalled_seq"])]  # the recall is on this batch's own timeline
    cause: BatchKey = (row["recall_gtin"], row["recall_lot"])
    return {
        "seq": row["recalled_seq"],
        "time": entry.time,
        "reason": entry.body["reason"],
        "cause": ref_json(cause),
        "direct": cause == key,
        "signers": [who[k] for k in entry.signed.key_ids() if k in who],
    }


# --- provenance --------------------------------------------------------------------------


def _node(row: Mapping[str, Any], distance: int) -> dict[str, Any]:
    product = {"zh": row["product_zh"]}
    if row["product_en"] is not None:
        product["en"] = row["product_en"]
    return {
        "batch": ref_json((row["gtin"], row["lot"])),
        "distance": distance,
        "product": product,
        "producer": row["producer"],
        "quantity": row["quantity"],
        "unit": row["unit"],
        "status": row["status"],
        "registered_seq": row["registered_seq"],
        "recalled_seq": row["recalled_seq"],
        "path": gs1.batch_path(row["gtin"] or None, row["lot"]),
    }


def provenance(conn: Connection, ref: Mapping[str, Any], depth: int = 10) -> dict[str, Any]:
    """The provenance graph around a batch, ``depth`` transformations up and down.

    Returns ``{"root": ref, "depth", "nodes": [{"batch": ref, "distance" (negative upstream,
    0 the batch itself, positive downstream), "product", "producer", "quantity", "unit",
    "status", "registered_seq", "recalled_seq", "path"}], "edges": [{"parent": ref, "child":
    ref, "seq" (the batch.transformed entry), "consumed" (of the parent), "unit" (the
    parent's)}], "truncated": bool (links went on beyond ``depth``)}``.  Nodes are ordered by
    distance, then key; edges by seq.  Raises NotFound for an unregistered batch.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth <= MAX_DEPTH:
        raise InvalidInput(f"depth must be an integer from 0 to {MAX_DEPTH}, got {depth!r}")
    key, row = _require(conn, ref)
    nodes: dict[BatchKey, dict[str, Any]] = {key: _node(row, 0)}
    edges: dict[tuple[BatchKey, BatchKey], dict[str, Any]] = {}
    truncated = False
    for direction in (-1, 1):
        frontier = [key]
        for level in range(1, depth + 2):
            following: list[BatchKey] = []
            for here in frontier:
                links = _parents(conn, here) if direction < 0 else _children(conn, here)
                if links and level > depth:
                    truncated = True
                    break
                for link in links:
                    parent = (link["parent_gtin"], link["parent_lot"])
                    child = (link["child_gtin"], link["child_lot"])
                    other = parent if direction < 0 else child
                    edges[(parent, child)] = {
                        "parent": ref_json(parent),
                        "child": ref_json(child),
                        "seq": link["seq"],
                        "consumed": link["consumed"],
                    }
                    if other not in nodes:
                        if len(nodes) >= MAX_GRAPH_NODES:
                            raise InvalidInput(f"the graph around {show(key)} has too many lots")
                        other_row = _row(conn, other)
                        if other_row is None:  # links are written with their batches
                            raise StorageError(f"batch_links names {show(other)}, not in batches")
                        nodes[other] = _node(other_row, direction * level)
                        following.append(other)
            frontier = following
            if not frontier or level > depth:
                break
    units = {k: n["unit"] for k, n in nodes.items()}
    edge_list = []
    for (parent, _child), edge in sorted(edges.items(), key=lambda kv: (kv[1]["seq"], kv[0])):
        edge_list.append({**edge, "unit": units[parent]})
    return {
        "root": ref_json(key),
        "depth": depth,
        "nodes": sorted(
            nodes.values(),
            key=lambda n: (n["distance"], n["batch"].get("gtin", ""), n["batch"]["lot"]),
        ),
        "edges": edge_list,
        "truncated": truncated,
    }
