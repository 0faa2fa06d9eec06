"""Produce batches (消费扶贫产品): registration, EPCIS events, transformations and recalls.

Kinds (docs/DOMAIN.md, "Batches" is the reference, with schemas and examples):

* ``batch.registered`` — a producer (cooperative 合作社, company) registers a lot: product,
  origin, the registered households who supplied it and their shares, quantity, inspections,
  certifications.  Its timeline entry is EPCIS ``commissioning``.
* ``batch.event`` — an EPCIS 2.0 ObjectEvent in CBV words: ``biz_step`` + ``disposition``,
  time, read point, optional cold-chain temperature and inspection.
* ``batch.transformed`` — an EPCIS TransformationEvent: input lots (with the quantity
  consumed) become new output lots (split: one input; merge: several).
* ``batch.recalled`` — recall a lot and, at the same seq, every lot derived from it.

Identity: a batch is ``(gtin, lot)`` with ``gtin`` = ``""`` in the tables when the batch has
no GTIN; bodies refer to a batch as ``{"gtin"?: …, "lot": …}`` (the field is ``batch``).
Lots that differ from an existing lot of the same GTIN only by case or width (``a1``/``A1``/
``Ａ１``) are refused (table ``batch_lot_folds``).

Recall propagation is done at recall time: ``apply`` walks the ``batch_links`` table (keyed
by parent and a per-parent ordinal, so the walk needs only primary-key reads) and marks every
descendant not yet recalled with the recall's seq and the recalled ancestor.  Because every
later transformation refuses a recalled input, the mark on a batch is complete for ever: a
batch's ``recalled_seq`` is the one fact a seller or a scan page needs, with no graph walk.

Interface other modules may rely on: :func:`get_batch`, the tables below.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from ledger.canonical import MAX_SAFE_INTEGER
from ledger.domain import common, gs1
from ledger.domain.households import get_household
from ledger.entry import MAX_CLOCK_SKEW_SECONDS, Entry, parse_time
from ledger.errors import Conflict, InvalidEntry, InvalidInput, RuleViolation
from ledger.projection import Projection, Row, register_projection
from ledger.rules import KeyRecord, KindSpec, RuleState, register_kind, signer_roles
from ledger.schema import metadata

# --- vocabulary ------------------------------------------------------------------------

#: Measured units → (dimension, factor to the dimension's base unit: gram or millilitre).
MEASURE_UNITS: dict[str, tuple[str, int]] = {
    "g": ("mass", 1),
    "jin": ("mass", 500),  # 斤, the market jin of 500 g
    "kg": ("mass", 1_000),
    "t": ("mass", 1_000_000),
    "ml": ("volume", 1),
    "l": ("volume", 1_000),
}
#: Counted units; a batch in one of these may declare its net content per unit.
COUNT_UNITS = ("piece", "box", "bag", "bottle", "jar", "carton", "crate", "head")
UNITS = tuple(MEASURE_UNITS) + COUNT_UNITS

CERTIFICATION_SCHEMES = (
    "green_food",  # 绿色食品
    "organic",  # 有机产品
    "geographical_indication",  # 地理标志 / 农产品地理标志
    "pollution_free",  # 无公害农产品
    "poverty_alleviation_product",  # 扶贫产品 (国务院扶贫办 扶贫产品认定, 2019–)
)
INSPECTION_RESULTS = ("pass", "fail")

#: CBV bizStep → the CBV dispositions a ``batch.event`` with that step may record.
#: ``commissioning`` is recorded by batch.registered / batch.transformed, and the
#: ``recalled`` disposition only by batch.recalled.
EVENT_DISPOSITIONS: dict[str, tuple[str, ...]] = {
    "inspecting": ("active", "in_progress", "conformant", "non_conformant"),
    "packing": ("active", "in_progress"),
    "storing": (
        "active",
        "in_progress",
        "sellable_not_accessible",
        "non_sellable_other",
        "expired",
        "damaged",
    ),
    "shipping": ("in_transit",),
    "transporting": ("in_transit",),
    "receiving": (
        "active",
        "in_progress",
        "sellable_not_accessible",
        "sellable_accessible",
        "non_sellable_other",
        "returned",
        "damaged",
    ),
    "retail_selling": ("sellable_accessible", "retail_sold"),
    "destroying": ("destroyed",),
}
BIZ_STEPS = ("commissioning", *EVENT_DISPOSITIONS)
DISPOSITIONS = tuple(sorted({d for ds in EVENT_DISPOSITIONS.values() for d in ds} | {"recalled"}))
#: "producer" means a producer key of the batch's own producer organisation.
EVENT_SIGNERS: dict[str, tuple[str, ...]] = {
    "inspecting": ("inspector", "producer"),
    "packing": ("producer",),
    "storing": ("producer", "logistics"),
    "shipping": ("producer", "logistics"),
    "transporting": ("logistics", "producer"),
    "receiving": ("logistics", "retailer", "producer"),
    "retail_selling": ("retailer", "producer"),
    "destroying": ("producer", "inspector"),
}
RECALL_SIGNERS = ("producer", "inspector", "county_approver")
#: Dispositions that put goods on sale (or keep them in normal commerce).
SELLING_DISPOSITIONS = frozenset({"sellable_accessible", "sellable_not_accessible", "retail_sold"})
#: A recall is permanent: no event may put a recalled batch back into commerce.
AFTER_RECALL_REFUSED = SELLING_DISPOSITIONS | {"active"}

MAX_HOUSEHOLDS = 500
MAX_INSPECTIONS = 32
MAX_CERTIFICATIONS = 16
MAX_INPUTS = 100
MAX_OUTPUTS = 100
PERMILLE = 1_000
#: Cold-chain temperatures in tenths of a degree Celsius: −80.0 °C … +60.0 °C.
MIN_TEMPERATURE_DC, MAX_TEMPERATURE_DC = -800, 600

ORIGIN_PARTS = ("province", "city", "county", "township", "village", "division_code")
_EVENT_TIME_RE = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2})$"
)

# --- tables ------------------------------------------------------------------------------

batches = Table(
    "batches",
    metadata,
    Column("gtin", String(14), primary_key=True),  # "" when the batch has no GTIN
    Column("lot", String(20), primary_key=True),
    Column("product_zh", Text, nullable=False),
    Column("product_en", Text, nullable=True),
    Column("producer", Text, nullable=False),  # the producer organisation (key org)
    # origin; a merged lot keeps only the parts all its inputs share
    Column("province", Text, nullable=True),
    Column("city", Text, nullable=True),
    Column("county", Text, nullable=True),
    Column("township", Text, nullable=True),
    Column("village", Text, nullable=True),
    Column("division_code", String(12), nullable=True),
    Column("produced", String(10), nullable=False),  # harvest / production date
    Column("quantity", BigInteger, nullable=False),
    Column("remaining", BigInteger, nullable=False),  # quantity minus what transformations consumed
    Column("unit", String(16), nullable=False),
    Column("net_quantity", BigInteger, nullable=True),  # net content per counted unit
    Column("net_unit", String(16), nullable=True),
    Column("inspection", String(8), nullable=False),  # latest result: none | pass | fail
    Column("inspection_seq", BigInteger, nullable=True),  # the entry holding that result
    Column("status", String(16), nullable=False),  # active | recalled | destroyed
    Column("disposition", String(32), nullable=False),  # latest CBV disposition
    Column("recalled_seq", BigInteger, nullable=True),
    Column("recall_gtin", String(14), nullable=True),  # the batch whose recall reached this one
    Column("recall_lot", String(20), nullable=True),
    Column("destroyed_seq", BigInteger, nullable=True),
    Column("parents", Integer, nullable=False),  # rows in batch_links with this batch as child
    Column("children", Integer, nullable=False),  # rows with this batch as parent (n = 0…)
    Column("registered_seq", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Index("ix_batches_registered_seq", "registered_seq"),
    Index("ix_batches_producer", "producer", "registered_seq"),
)
register_projection(batches)

#: One row per (GTIN, folded lot): refuses lots confusable with an existing one.
batch_lot_folds = Table(
    "batch_lot_folds",
    metadata,
    Column("gtin", String(14), primary_key=True),
    Column("fold", String(20), primary_key=True),
    Column("lot", String(20), nullable=False),
    Column("seq", BigInteger, nullable=False),
)
register_projection(batch_lot_folds)

#: Provenance edges parent → child, numbered per parent so a walk needs only key reads.
batch_links = Table(
    "batch_links",
    metadata,
    Column("parent_gtin", String(14), primary_key=True),
    Column("parent_lot", String(20), primary_key=True),
    Column("n", Integer, primary_key=True, autoincrement=False),
    Column("child_gtin", String(14), nullable=False),
    Column("child_lot", String(20), nullable=False),
    Column("consumed", BigInteger, nullable=False),  # of the parent, in the parent's unit
    Column("seq", BigInteger, nullable=False),  # the batch.transformed entry
    Index("ix_batch_links_child", "child_gtin", "child_lot"),
)
register_projection(batch_links)

batch_households = Table(
    "batch_households",
    metadata,
    Column("gtin", String(14), primary_key=True),
    Column("lot", String(20), primary_key=True),
    Column("household", String(32), primary_key=True),
    Column("share_permille", Integer, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Index("ix_batch_households_household", "household"),
)
register_projection(batch_households)

batch_certifications = Table(
    "batch_certifications",
    metadata,
    Column("gtin", String(14), primary_key=True),
    Column("lot", String(20), primary_key=True),
    Column("scheme", String(32), primary_key=True),
    Column("number", String(64), primary_key=True),
    Column("valid_until", String(10), nullable=True),
    Column("seq", BigInteger, nullable=False),
)
register_projection(batch_certifications)

#: The timeline index: every entry that concerns a batch, by seq.
batch_events = Table(
    "batch_events",
    metadata,
    Column("gtin", String(14), primary_key=True),
    Column("lot", String(20), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(64), nullable=False),
    Column("biz_step", String(32), nullable=True),
    Column("disposition", String(32), nullable=True),
    Column("time", String(32), nullable=False),  # event time, or the date the entry states
)
register_projection(batch_events)

BatchKey = tuple[str, str]  # (gtin or "", lot)


def get_batch(rows: Projection, gtin: str | None, lot: str) -> Row | None:
    """The batch's projection row, or None; ``gtin`` None or ``""`` for a batch without one."""
    return rows.get("batches", gtin or "", lot)


def show(key: BatchKey) -> str:
    """A batch as messages name it: ``lot 'A1' (GTIN 06901234567892)`` or ``lot 'A1' (no GTIN)``."""
    gtin, lot = key
    return f"lot {lot!r} ({f'GTIN {gtin}' if gtin else 'no GTIN'})"


def ref_json(key: BatchKey) -> dict[str, str]:
    """A batch key as bodies and query results write it: ``{"gtin"?: …, "lot": …}``."""
    gtin, lot = key
    return {"gtin": gtin, "lot": lot} if gtin else {"lot": lot}


# --- JSON schemas ------------------------------------------------------------------------


_GTIN = {
    "type": "string",
    "pattern": "^[0-9]{14}$",
    "description": "GTIN-14 (shorter GTINs padded with leading zeros), valid mod-10 check digit",
}
_LOT = {
    "type": "string",
    "minLength": 1,
    "maxLength": gs1.MAX_LOT_LENGTH,
    "pattern": "^[!\"%&'()*+,./0-9:;<=>?A-Z_a-z-]+$",
    "description": "GS1 AI 10 lot: 1–20 characters of character set 82, case-sensitive",
}
_BATCH_REF = {
    "type": "object",
    "properties": {"gtin": _GTIN, "lot": _LOT},
    "required": ["lot"],
    "additionalProperties": False,
}
_QUANTITY = {"type": "integer", "minimum": 1, "maximum": MAX_SAFE_INTEGER}
_UNIT = {"enum": list(UNITS)}
_NET_CONTENT = {
    "type": "object",
    "properties": {"quantity": _QUANTITY, "unit": {"enum": list(MEASURE_UNITS)}},
    "required": ["quantity", "unit"],
    "additionalProperties": False,
}
_INSPECTION = {
    "type": "object",
    "properties": {
        "lab": common.text_schema(200),
        "result": {"enum": list(INSPECTION_RESULTS)},
        "date": common.DATE_SCHEMA,
        "report_sha256": common.SHA256_SCHEMA,
    },
    "required": ["lab", "result", "date", "report_sha256"],
    "additionalProperties": False,
}
_CERTIFICATION = {
    "type": "object",
    "properties": {
        "scheme": {"enum": list(CERTIFICATION_SCHEMES)},
        "number": common.text_schema(64),
        "valid_until": common.DATE_SCHEMA,
    },
    "required": ["scheme", "number"],
    "additionalProperties": False,
}
_CERTIFICATIONS = {"type": "array", "items": _CERTIFICATION, "maxItems": MAX_CERTIFICATIONS}
REGISTERED_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "batch.registered",
    "type": "object",
    "properties": {
        "gtin": _GTIN,
        "lot": _LOT,
        "product": common.BILINGUAL_SCHEMA,
        "origin": common.LOCATION_SCHEMA,
        "producer": common.text_schema(200),
        "households": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_HOUSEHOLDS,
            "items": {
                "type": "object",
                "properties": {
                    "household": common.HOUSEHOLD_SCHEMA,
                    "share_permille": {"type": "integer", "minimum": 1, "maximum": PERMILLE},
                },
                "required": ["household", "share_permille"],
                "additionalProperties": False,
            },
        },
        "produced": common.DATE_SCHEMA,
        "quantity": _QUANTITY,
        "unit": _UNIT,
        "net_content": _NET_CONTENT,
        "inspections": {"type": "array", "items": _INSPECTION, "maxItems": MAX_INSPECTIONS},
        "certifications": _CERTIFICATIONS,
    },
    "required": [
        "lot",
        "product",
        "origin",
        "producer",
        "households",
        "produced",
        "quantity",
        "unit",
    ],
    "additionalProperties": False,
}

EVENT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "batch.event",
    "type": "object",
    "properties": {
        "batch": _BATCH_REF,
        "biz_step": {"enum": list(EVENT_DISPOSITIONS)},
        "disposition": {"enum": [d for d in DISPOSITIONS if d != "recalled"]},
        "time": {
            "type": "string",
            "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2})$",
            "format": "date-time",
        },
        "read_point": common.text_schema(200),
        "temperature_dc": {
            "type": "integer",
            "minimum": MIN_TEMPERATURE_DC,
            "maximum": MAX_TEMPERATURE_DC,
        },
        "inspection": _INSPECTION,
        "note": common.text_schema(common.MAX_TEXT),
    },
    "required": ["batch", "biz_step", "disposition", "time", "read_point"],
    "additionalProperties": False,
}

TRANSFORMED_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "batch.transformed",
    "type": "object",
    "properties": {
        "inputs": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_INPUTS,
            "items": {
                "type": "object",
                "properties": {"batch": _BATCH_REF, "quantity": _QUANTITY},
                "required": ["batch", "quantity"],
                "additionalProperties": False,
            },
        },
        "outputs": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_OUTPUTS,
            "items": {
                "type": "object",
                "properties": {
                    "gtin": _GTIN,
                    "lot": _LOT,
                    "product": common.BILINGUAL_SCHEMA,
                    "quantity": _QUANTITY,
                    "unit": _UNIT,
                    "net_content": _NET_CONTENT,
                    "certifications": _CERTIFICATIONS,
                },
                "required": ["lot", "quantity", "unit"],
                "additionalProperties": False,
            },
        },
        "date": common.DATE_SCHEMA,
        "process": common.text_schema(200),
    },
    "required": ["inputs", "outputs", "date", "process"],
    "additionalProperties": False,
}

RECALLED_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "batch.recalled",
    "type": "object",
    "properties": {
        "batch": _BATCH_REF,
        "reason": common.text_schema(common.MAX_TEXT),
        "evidence": common.EVIDENCE_SCHEMA,
    },
    "required": ["batch", "reason"],
    "additionalProperties": False,
}

# --- field validators --------------------------------------------------------------------


def _gs1(where: str, value: Any, check: Any) -> str:
    try:
        result: str = check(value)
    except InvalidInput as exc:
        raise InvalidEntry(f"{where}: {exc}") from None
    return result


def _key_of(value: Mapping[str, Any], where: str) -> BatchKey:
    """``(gtin or "", lot)`` from an object with ``lot`` and optional ``gtin`` (GTIN-14)."""
    gtin = _gs1(f"{where}.gtin", value["gtin"], gs1.validate_gtin14) if "gtin" in value else ""
    return gtin, _gs1(f"{where}.lot", value.get("lot"), gs1.validate_lot)


def _batch_ref(body: Mapping[str, Any], name: str, where: str) -> BatchKey:
    value = body.get(name)
    if not isinstance(value, dict):
        raise InvalidEntry(
            f"{where}: {name} must be an object {{'gtin'?: …, 'lot': …}}, got {value!r}"
        )
    common.only_fields(value, f"{where}: {name}", ["lot"], ["gtin"])
    return _key_of(value, f"{where}: {name}")


def _list(body: Mapping[str, Any], name: str, where: str, low: int, high: int) -> list[Any]:
    value = body.get(name, [])
    if not isinstance(value, list) or not low <= len(value) <= high:
        found = f"{len(value)} items" if isinstance(value, list) else repr(value)
        raise InvalidEntry(f"{where}: {name} must be a list of {low} to {high} items, got {found}")
    return value


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidEntry(f"{where} must be an object, got {value!r}")
    return value


def _choice(body: Mapping[str, Any], name: str, where: str, allowed: Iterable[str]) -> str:
    value = body.get(name)
    options = list(allowed)
    if not isinstance(value, str) or value not in options:
        raise InvalidEntry(f"{where}: {name} must be one of {', '.join(options)}; got {value!r}")
    return value


def _quantity(body: Mapping[str, Any], name: str, where: str) -> int:
    return common.count_field(body, name, where)


def _net_content(body: Mapping[str, Any], where: str) -> tuple[int, str] | None:
    """``net_content`` of a counted unit; refused on measured units (they need none)."""
    if "net_content" not in body:
        return None
    unit = body["unit"]
    if unit not in COUNT_UNITS:
        raise InvalidEntry(
            f"{where}: net_content is for counted units ({', '.join(COUNT_UNITS)}), "
            f"not for {unit!r}"
        )
    net = _obj(body["net_content"], f"{where}: net_content")
    common.only_fields(net, f"{where}: net_content", ["quantity", "unit"])
    return (
        _quantity(net, "quantity", f"{where}: net_content"),
        _choice(net, "unit", f"{where}: net_content", MEASURE_UNITS),
    )


def _inspection(value: Any, where: str) -> dict[str, Any]:
    item = _obj(value, where)
    common.only_fields(item, where, ["lab", "result", "date", "report_sha256"])
    common.text(item, "lab", where)
    _choice(item, "result", where, INSPECTION_RESULTS)
    common.date_field(item, "date", where)
    common.sha256_hex(item["report_sha256"], f"{where}: report_sha256")
    return item


def _certifications(body: Mapping[str, Any], where: str) -> list[tuple[str, str, str | None]]:
    """``[(scheme, number, valid_until)]``, no repeats."""
    out: list[tuple[str, str, str | None]] = []
    for i, value in enumerate(_list(body, "certifications", where, 0, MAX_CERTIFICATIONS)):
        at = f"{where}: certifications[{i}]"
        item = _obj(value, at)
        common.only_fields(item, at, ["scheme", "number"], ["valid_until"])
        scheme = _choice(item, "scheme", at, CERTIFICATION_SCHEMES)
        number = common.text(item, "number", at, 64)
        until = common.date_field(item, "valid_until", at) if "valid_until" in item else None
        if any(c[:2] == (scheme, number) for c in out):
            raise InvalidEntry(f"{at}: certificate {scheme} {number!r} listed twice")
        out.append((scheme, number, until))
    return out


def _event_time(body: Mapping[str, Any], where: str) -> datetime:
    value = body.get("time")
    if isinstance(value, str) and _EVENT_TIME_RE.fullmatch(value):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    raise InvalidEntry(
        f"{where}: time must be an ISO 8601 date-time with seconds and an offset, "
        f"e.g. 2019-07-15T08:30:00+08:00, got {value!r}"
    )


def _temperature(body: Mapping[str, Any], where: str) -> int | None:
    if "temperature_dc" not in body:
        return None
    value = body["temperature_dc"]
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not MIN_TEMPERATURE_DC <= value <= MAX_TEMPERATURE_DC
    ):
        raise InvalidEntry(
            f"{where}: temperature_dc is an integer number of tenths of a degree Celsius "
            f"({MIN_TEMPERATURE_DC}…{MAX_TEMPERATURE_DC}, e.g. 40 for 4.0 °C), got {value!r}"
        )
    return value


# --- state helpers ---------------------------------------------------------------------


def _existing(state: RuleState, key: BatchKey, where: str) -> Row:
    row = state.rows.get("batches", *key)
    if row is None:
        raise RuleViolation(f"{where}: {show(key)} is not registered")
    return row


def _check_new_lots(state: RuleState, keys: list[BatchKey], where: str) -> None:
    """Refuse a key registered before, or a lot confusable with one (same GTIN), or repeats."""
    seen: dict[tuple[str, str], str] = {}
    for key in keys:
        gtin, lot = key
        row = state.rows.get("batches", *key)
        if row is not None:
            raise Conflict(
                f"{where}: {show(key)} is already registered (seq {row['registered_seq']})"
            )
        fold = gs1.lot_fold(lot)
        other = state.rows.get("batch_lot_folds", gtin, fold)
        if other is not None:
            raise RuleViolation(
                f"{where}: lot {lot!r} differs from lot {other['lot']!r} (registered at seq "
                f"{other['seq']}, {'GTIN ' + gtin if gtin else 'no GTIN'}) only by case or "
                "full-width characters; choose a lot that cannot be confused with it"
            )
        if (gtin, fold) in seen:
            raise RuleViolation(
                f"{where}: lots {seen[(gtin, fold)]!r} and {lot!r} "
                f"({'GTIN ' + gtin if gtin else 'no GTIN'}) are the same or differ only by case"
            )
        seen[(gtin, fold)] = lot


def _describe_signers(entry: Entry, state: RuleState) -> str:
    records = signer_roles(entry, state).values()
    return ", ".join(sorted(f"{k.name} ({k.role}, {k.org})" for k in records)) or "nobody"


def _signer(
    entry: Entry, state: RuleState, producer_org: str, allowed: tuple[str, ...], what: str
) -> KeyRecord:
    """A signer holding one of ``allowed``; ``"producer"`` means a producer key of ``producer_org``."""
    for record in signer_roles(entry, state).values():
        if record.role == "producer" and "producer" in allowed:
            if record.org == producer_org:
                return record
        elif record.role in allowed:
            return record
    wanted = [
        f"a producer of {producer_org!r}" if role == "producer" else f"a {role}" for role in allowed
    ]
    raise RuleViolation(
        f"{entry.kind}: {what} must be signed by {' or '.join(wanted)} key "
        f"(signed by: {_describe_signers(entry, state)})"
    )


def _latest_inspection(inspections: list[dict[str, Any]]) -> str:
    """The result of the inspection with the latest date (the later one in the list on a tie)."""
    if not inspections:
        return "none"
    latest = max(enumerate(inspections), key=lambda pair: (pair[1]["date"], pair[0]))
    return str(latest[1]["result"])


def _measure(quantity: int, unit: str, net: tuple[int, str] | None) -> tuple[str, int]:
    """A quantity as ``(dimension, amount in base unit)``: grams or millilitres where known,
    else ``("count:<unit>", quantity)`` for a counted unit with no declared net content."""
    if unit in MEASURE_UNITS:
        dimension, factor = MEASURE_UNITS[unit]
        return dimension, quantity * factor
    if net is not None:
        dimension, factor = MEASURE_UNITS[net[1]]
        return dimension, quantity * net[0] * factor
    return f"count:{unit}", quantity


def _row_net(row: Row) -> tuple[int, str] | None:
    return None if row["net_quantity"] is None else (int(row["net_quantity"]), str(row["net_unit"]))


def _event_row(
    key: BatchKey, entry: Entry, biz_step: str | None, disposition: str | None, time: str
) -> dict[str, Any]:
    gtin, lot = key
    return {
        "gtin": gtin,
        "lot": lot,
        "seq": entry.seq,
        "kind": entry.kind,
        "biz_step": biz_step,
        "disposition": disposition,
        "time": time,
    }


def _new_batch_row(
    key: BatchKey,
    entry: Entry,
    *,
    product: Mapping[str, str],
    producer: str,
    origin: Mapping[str, str | None],
    produced: str,
    quantity: int,
    unit: str,
    net: tuple[int, str] | None,
    inspection: str,
    inspection_seq: int | None,
    parents: int,
) -> dict[str, Any]:
    gtin, lot = key
    return {
        "gtin": gtin,
        "lot": lot,
        "product_zh": product["zh"],
        "product_en": product.get("en"),
        "producer": producer,
        **{part: origin.get(part) for part in ORIGIN_PARTS},
        "produced": produced,
        "quantity": quantity,
        "remaining": quantity,
        "unit": unit,
        "net_quantity": None if net is None else net[0],
        "net_unit": None if net is None else net[1],
        "inspection": inspection,
        "inspection_seq": inspection_seq,
        "status": "active",
        "disposition": "active",
        "recalled_seq": None,
        "recall_gtin": None,
        "recall_lot": None,
        "destroyed_seq": None,
        "parents": parents,
        "children": 0,
        "registered_seq": entry.seq,
        "seq": entry.seq,
    }


def _put_new_lot(
    state: RuleState, row: Mapping[str, Any], certs: list[tuple[str, str, str | None]]
) -> None:
    gtin, lot, seq = row["gtin"], row["lot"], row["seq"]
    state.rows.put("batches", row)
    state.rows.put(
        "batch_lot_folds", {"gtin": gtin, "fold": gs1.lot_fold(lot), "lot": lot, "seq": seq}
    )
    for scheme, number, until in certs:
        state.rows.put(
            "batch_certifications",
            {
                "gtin": gtin,
                "lot": lot,
                "scheme": scheme,
                "number": number,
                "valid_until": until,
                "seq": seq,
            },
        )


# --- batch.registered --------------------------------------------------------------------

_REGISTERED_REQUIRED = (
    "lot",
    "product",
    "origin",
    "producer",
    "households",
    "produced",
    "quantity",
    "unit",
)
_REGISTERED_OPTIONAL = ("gtin", "net_content", "inspections", "certifications")


def _check_registered(entry: Entry, state: RuleState) -> None:
    where = "batch.registered"
    body = entry.body
    common.only_fields(body, where, _REGISTERED_REQUIRED, _REGISTERED_OPTIONAL)
    key = _key_of(body, where)
    common.bilingual(body, "product", where)
    common.location(body, "origin", where)
    producer = common.text(body, "producer", where)
    produced = common.date_field(body, "produced", where)
    _quantity(body, "quantity", where)
    _choice(body, "unit", where, UNITS)
    _net_content(body, where)
    inspections = [
        _inspection(item, f"{where}: inspections[{i}]")
        for i, item in enumerate(_list(body, "inspections", where, 0, MAX_INSPECTIONS))
    ]
    certifications = _certifications(body, where)
    supplied = _households(body, where)

    common.not_after_created(entry, produced, "produced", where)
    for i, item in enumerate(inspections):
        common.not_after_created(entry, item["date"], "date", f"{where}: inspections[{i}]")
    for scheme, number, until in certifications:
        if until is not None and until < produced:
            raise RuleViolation(
                f"{where}: certificate {scheme} {number!r} expired on {until}, before the batch "
                f"was produced on {produced}"
            )

    _signer(entry, state, producer, ("producer",), f"registering a batch of {producer!r}")
    _check_new_lots(state, [key], where)
    for code in supplied:
        if get_household(state.rows, code) is None:
            raise RuleViolation(
                f"{where}: household {code} is not registered (no household.identified)"
            )


def _households(body: Mapping[str, Any], where: str) -> dict[str, int]:
    """``{code: share_permille}``; codes distinct, shares 1…1000 summing to at most 1000."""
    supplied: dict[str, int] = {}
    for i, value in enumerate(_list(body, "households", where, 1, MAX_HOUSEHOLDS)):
        at = f"{where}: households[{i}]"
        item = _obj(value, at)
        common.only_fields(item, at, ["household", "share_permille"])
        code = common.household_code(item["household"], at)
        share = item["share_permille"]
        if isinstance(share, bool) or not isinstance(share, int) or not 1 <= share <= PERMILLE:
            raise InvalidEntry(
                f"{at}: share_permille must be an integer from 1 to {PERMILLE} (‰ of the batch), got {share!r}"
            )
        if code in supplied:
            raise InvalidEntry(f"{at}: household {code} listed twice")
        supplied[code] = share
    total = sum(supplied.values())
    if total > PERMILLE:
        raise InvalidEntry(
            f"{where}: household shares add up to {total}‰, more than the whole batch ({PERMILLE}‰)"
        )
    return supplied


def _apply_registered(entry: Entry, state: RuleState) -> None:
    body = entry.body
    key = _key_of(body, entry.kind)
    inspections = list(body.get("inspections", []))
    result = _latest_inspection(inspections)
    row = _new_batch_row(
        key,
        entry,
        product=body["product"],
        producer=body["producer"],
        origin=body["origin"],
        produced=body["produced"],
        quantity=body["quantity"],
        unit=body["unit"],
        net=_net_content(body, entry.kind),
        inspection=result,
        inspection_seq=None if result == "none" else entry.seq,
        parents=0,
    )
    _put_new_lot(state, row, _certifications(body, entry.kind))
    for item in body["households"]:
        state.rows.put(
            "batch_households",
            {
                "gtin": key[0],
                "lot": key[1],
                "household": item["household"],
                "share_permille": item["share_permille"],
                "seq": entry.seq,
            },
        )
    state.rows.put(
        "batch_events", _event_row(key, entry, "commissioning", "active", body["produced"])
    )


# --- batch.event -------------------------------------------------------------------------


def _check_event(entry: Entry, state: RuleState) -> None:
    where = "batch.event"
    body = entry.body
    common.only_fields(
        body,
        where,
        ["batch", "biz_step", "disposition", "time", "read_point"],
        ["temperature_dc", "inspection", "note"],
    )
    key = _batch_ref(body, "batch", where)
    step = _biz_step(body, where)
    disposition = _choice(body, "disposition", where, DISPOSITIONS)
    if disposition not in EVENT_DISPOSITIONS[step]:
        hint = " (record a recall with batch.recalled)" if disposition == "recalled" else ""
        raise InvalidEntry(
            f"{where}: biz_step {step} takes disposition "
            f"{' or '.join(EVENT_DISPOSITIONS[step])}, got {disposition!r}{hint}"
        )
    moment = _event_time(body, where)
    common.text(body, "read_point", where)
    _temperature(body, where)
    if "note" in body:
        common.text(body, "note", where, common.MAX_TEXT)
    result = _event_inspection(entry, body, step, disposition, where)

    row = _existing(state, key, where)
    _signer(entry, state, row["producer"], EVENT_SIGNERS[step], f"biz_step {step}")
    _check_event_time(entry, moment, row, where)
    _check_event_allowed(row, key, step, disposition, where)
    inspector = any(k.role == "inspector" for k in signer_roles(entry, state).values())
    if result == "pass" and row["inspection"] == "fail" and not inspector:
        raise RuleViolation(
            f"{where}: {show(key)} failed inspection at seq {row['inspection_seq']}; only an "
            f"inspector may record the passing re-inspection "
            f"(signed by: {_describe_signers(entry, state)})"
        )


def _biz_step(body: Mapping[str, Any], where: str) -> str:
    step = body.get("biz_step")
    if step == "commissioning":
        raise InvalidEntry(
            f"{where}: commissioning is recorded by batch.registered (or batch.transformed for "
            "derived lots), not by batch.event"
        )
    return _choice(body, "biz_step", where, EVENT_DISPOSITIONS)


def _event_inspection(
    entry: Entry, body: Mapping[str, Any], step: str, disposition: str, where: str
) -> str | None:
    """The inspection's result; ``inspecting`` requires one and only it may carry one."""
    if step != "inspecting":
        if "inspection" in body:
            raise InvalidEntry(
                f"{where}: only biz_step inspecting carries an inspection, not {step}"
            )
        return None
    if "inspection" not in body:
        raise InvalidEntry(
            f"{where}: biz_step inspecting needs an inspection {{lab, result, date, report_sha256}}"
        )
    result = str(_inspection(body["inspection"], f"{where}: inspection")["result"])
    common.not_after_created(entry, body["inspection"]["date"], "date", f"{where}: inspection")
    if (result == "fail") != (disposition == "non_conformant"):
        raise InvalidEntry(
            f"{where}: an inspection that {'failed' if result == 'fail' else 'passed'} takes "
            f"disposition {'non_conformant' if result == 'fail' else 'active, in_progress or conformant'}, "
            f"got {disposition!r}"
        )
    return result


def _check_event_time(entry: Entry, moment: datetime, row: Row, where: str) -> None:
    logged = parse_time(entry.time, log_format=True)
    if moment > logged + timedelta(seconds=MAX_CLOCK_SKEW_SECONDS):
        raise RuleViolation(
            f"{where}: event time {entry.body['time']} is later than the log time {entry.time}; "
            "record events after they happen"
        )
    if moment.date() < date.fromisoformat(row["produced"]):
        raise RuleViolation(
            f"{where}: event time {entry.body['time']} is before the batch was produced "
            f"({row['produced']})"
        )


def _check_event_allowed(row: Row, key: BatchKey, step: str, disposition: str, where: str) -> None:
    """Destroyed batches take no events; recalled or failed ones are not sold."""
    if row["destroyed_seq"] is not None:
        raise RuleViolation(
            f"{where}: {show(key)} was destroyed at seq {row['destroyed_seq']}; no further events"
        )
    selling = step == "retail_selling" or disposition in SELLING_DISPOSITIONS
    if row["recalled_seq"] is not None and (selling or disposition in AFTER_RECALL_REFUSED):
        raise RuleViolation(
            f"{where}: {show(key)} was recalled at seq {row['recalled_seq']} "
            f"(recall of {show((row['recall_gtin'], row['recall_lot']))}); "
            f"it may not be sold or returned to commerce ({step}, {disposition})"
        )
    if selling and row["inspection"] == "fail":
        raise RuleViolation(
            f"{where}: {show(key)} failed its latest inspection (seq {row['inspection_seq']}); "
            "it may not be sold until an inspector records a passing inspection"
        )


def _apply_event(entry: Entry, state: RuleState) -> None:
    body = entry.body
    key = _key_of(body["batch"], entry.kind)
    row = _existing(state, key, entry.kind)
    row["disposition"] = body["disposition"]
    if "inspection" in body:
        row["inspection"] = body["inspection"]["result"]
        row["inspection_seq"] = entry.seq
    if body["biz_step"] == "destroying":
        row["destroyed_seq"] = entry.seq
        row["status"] = "destroyed"
    row["seq"] = entry.seq
    state.rows.put("batches", row)
    state.rows.put(
        "batch_events", _event_row(key, entry, body["biz_step"], body["disposition"], body["time"])
    )


# --- batch.transformed -------------------------------------------------------------------


def _parse_inputs(body: Mapping[str, Any], where: str) -> list[tuple[BatchKey, int]]:
    out: list[tuple[BatchKey, int]] = []
    for i, value in enumerate(_list(body, "inputs", where, 1, MAX_INPUTS)):
        at = f"{where}: inputs[{i}]"
        item = _obj(value, at)
        common.only_fields(item, at, ["batch", "quantity"])
        key = _batch_ref(item, "batch", at)
        if any(k == key for k, _ in out):
            raise InvalidEntry(f"{at}: {show(key)} is listed twice among the inputs")
        out.append((key, _quantity(item, "quantity", at)))
    return out


def _parse_outputs(body: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    out = []
    for i, value in enumerate(_list(body, "outputs", where, 1, MAX_OUTPUTS)):
        at = f"{where}: outputs[{i}]"
        item = _obj(value, at)
        common.only_fields(
            item,
            at,
            ["lot", "quantity", "unit"],
            ["gtin", "product", "net_content", "certifications"],
        )
        if "product" in item:
            common.bilingual(item, "product", at)
        out.append(
            {
                "key": _key_of(item, at),
                "product": item.get("product"),
                "quantity": _quantity(item, "quantity", at),
                "unit": _choice(item, "unit", at, UNITS),
                "net": _net_content(item, at),
                "certifications": _certifications(item, at),
            }
        )
    return out


def _check_transformed(entry: Entry, state: RuleState) -> None:
    where = "batch.transformed"
    body = entry.body
    common.only_fields(body, where, ["inputs", "outputs", "date", "process"])
    inputs = _parse_inputs(body, where)
    outputs = _parse_outputs(body, where)
    day = common.date_field(body, "date", where)
    common.text(body, "process", where)
    common.not_after_created(entry, day, "date", where)

    rows = [_existing(state, key, f"{where}: input") for key, _ in inputs]
    producer = str(rows[0]["producer"])
    _signer(entry, state, producer, ("producer",), f"transforming lots of {producer!r}")
    for (key, consumed), row in zip(inputs, rows, strict=True):
        _check_input(key, consumed, row, producer, day, where)
    _check_new_lots(state, [o["key"] for o in outputs], where)
    _check_balance(inputs, rows, outputs, where)
    _output_product(rows, outputs, where)
    for output in outputs:
        for scheme, number, _until in output["certifications"]:
            for key, _ in inputs:
                if state.rows.get("batch_certifications", *key, scheme, number) is None:
                    raise RuleViolation(
                        f"{where}: output {show(output['key'])} claims certificate {scheme} "
                        f"{number!r}, which input {show(key)} does not hold; a transformed lot "
                        "may claim only certificates every input holds"
                    )


def _check_input(
    key: BatchKey, consumed: int, row: Row, producer: str, day: str, where: str
) -> None:
    if row["producer"] != producer:
        raise RuleViolation(
            f"{where}: inputs belong to different producers ({producer!r} and {row['producer']!r} "
            f"for {show(key)}); a transformation is made by one producer from its own lots"
        )
    if row["destroyed_seq"] is not None:
        raise RuleViolation(
            f"{where}: input {show(key)} was destroyed at seq {row['destroyed_seq']}"
        )
    if row["recalled_seq"] is not None:
        raise RuleViolation(
            f"{where}: input {show(key)} was recalled at seq {row['recalled_seq']} (recall of "
            f"{show((row['recall_gtin'], row['recall_lot']))}); nothing may be derived from it"
        )
    if consumed > row["remaining"]:
        raise RuleViolation(
            f"{where}: input {show(key)} has {row['remaining']} {row['unit']} left of "
            f"{row['quantity']} (registered at seq {row['registered_seq']}), cannot consume {consumed}"
        )
    if day < row["produced"]:
        raise RuleViolation(
            f"{where}: date {day} is before input {show(key)} was produced ({row['produced']})"
        )


def _check_balance(
    inputs: list[tuple[BatchKey, int]], rows: list[Row], outputs: list[dict[str, Any]], where: str
) -> None:
    """Outputs may not hold more than the inputs consumed, compared in one dimension."""
    ins = [_measure(q, str(r["unit"]), _row_net(r)) for (_, q), r in zip(inputs, rows, strict=True)]
    outs = [_measure(o["quantity"], o["unit"], o["net"]) for o in outputs]
    dimensions = {d for d, _ in ins + outs}
    if len(dimensions) != 1:
        raise RuleViolation(
            f"{where}: cannot compare the quantities of inputs and outputs "
            f"({', '.join(sorted(dimensions))}); counted units need net_content to be compared "
            "with mass or volume, and mass cannot be compared with volume"
        )
    total_in, total_out = sum(a for _, a in ins), sum(a for _, a in outs)
    if total_out > total_in:
        base = {"mass": "g", "volume": "ml"}.get(next(iter(dimensions)), "")
        unit = base or next(iter(dimensions)).removeprefix("count:")
        raise RuleViolation(
            f"{where}: outputs hold {total_out} {unit}, more than the {total_in} {unit} "
            "the inputs supply"
        )


def _output_product(rows: list[Row], outputs: list[dict[str, Any]], where: str) -> None:
    products = {(r["product_zh"], r["product_en"]) for r in rows}
    if len(products) > 1:
        for output in outputs:
            if output["product"] is None:
                raise InvalidEntry(
                    f"{where}: output {show(output['key'])} needs a product name: its inputs are "
                    f"different products ({', '.join(sorted(p[0] for p in products))})"
                )


def _common_origin(rows: list[Row]) -> dict[str, str | None]:
    """The origin parts every input shares, from province down; the division code if equal."""
    origin: dict[str, str | None] = dict.fromkeys(ORIGIN_PARTS)
    for part in ORIGIN_PARTS[:5]:
        values = {r[part] for r in rows}
        if len(values) != 1:
            break
        origin[part] = values.pop()
    codes = {r["division_code"] for r in rows}
    if len(codes) == 1:
        origin["division_code"] = codes.pop()
    return origin


def _inherited_inspection(rows: list[Row]) -> tuple[str, int | None]:
    """``fail`` if any input's latest inspection failed, ``pass`` if all passed, else ``none``;
    with the seq of the entry holding the deciding result."""
    failed = [r for r in rows if r["inspection"] == "fail"]
    if failed:
        return "fail", max(int(r["inspection_seq"]) for r in failed)
    if all(r["inspection"] == "pass" for r in rows):
        return "pass", max(int(r["inspection_seq"]) for r in rows)
    return "none", None


def _apply_transformed(entry: Entry, state: RuleState) -> None:
    body = entry.body
    where = entry.kind
    inputs = _parse_inputs(body, where)
    outputs = _parse_outputs(body, where)
    rows = [_existing(state, key, where) for key, _ in inputs]
    origin = _common_origin(rows)
    inspection, inspection_seq = _inherited_inspection(rows)
    first = rows[0]
    default_product = {"zh": first["product_zh"]} | (
        {"en": first["product_en"]} if first["product_en"] else {}
    )
    for (key, consumed), row in zip(inputs, rows, strict=True):
        for n, output in enumerate(outputs, start=int(row["children"])):
            state.rows.put(
                "batch_links",
                {
                    "parent_gtin": key[0],
                    "parent_lot": key[1],
                    "n": n,
                    "child_gtin": output["key"][0],
                    "child_lot": output["key"][1],
                    "consumed": consumed,
                    "seq": entry.seq,
                },
            )
        row["children"] = int(row["children"]) + len(outputs)
        row["remaining"] = int(row["remaining"]) - consumed
        row["seq"] = entry.seq
        state.rows.put("batches", row)
        state.rows.put("batch_events", _event_row(key, entry, None, None, body["date"]))
    for output in outputs:
        new = _new_batch_row(
            output["key"],
            entry,
            product=output["product"] or default_product,
            producer=str(first["producer"]),
            origin=origin,
            produced=body["date"],
            quantity=output["quantity"],
            unit=output["unit"],
            net=output["net"],
            inspection=inspection,
            inspection_seq=inspection_seq,
            parents=len(inputs),
        )
        _put_new_lot(state, new, output["certifications"])
        state.rows.put(
            "batch_events",
            _event_row(output["key"], entry, "commissioning", "active", body["date"]),
        )


# --- batch.recalled ----------------------------------------------------------------------


def _check_recalled(entry: Entry, state: RuleState) -> None:
    where = "batch.recalled"
    body = entry.body
    common.only_fields(body, where, ["batch", "reason"], ["evidence"])
    key = _batch_ref(body, "batch", where)
    common.text(body, "reason", where, common.MAX_TEXT)
    common.evidence(body, "evidence", where)
    row = _existing(state, key, where)
    _signer(entry, state, row["producer"], RECALL_SIGNERS, "a recall")
    if row["recalled_seq"] is not None:
        cause = (row["recall_gtin"], row["recall_lot"])
        because = "" if cause == key else f", through the recall of {show(cause)}"
        raise Conflict(
            f"{where}: {show(key)} is already recalled (seq {row['recalled_seq']}{because})"
        )


def _apply_recalled(entry: Entry, state: RuleState) -> None:
    """Mark the batch and every descendant not yet recalled (their descendants already are)."""
    root = _key_of(entry.body["batch"], entry.kind)
    queue = deque([root])
    while queue:
        key = queue.popleft()
        row = _existing(state, key, entry.kind)
        if row["recalled_seq"] is not None:
            continue
        row["recalled_seq"] = entry.seq
        row["recall_gtin"], row["recall_lot"] = root
        if row["destroyed_seq"] is None:
            row["status"] = "recalled"
            row["disposition"] = "recalled"
        row["seq"] = entry.seq
        state.rows.put("batches", row)
        state.rows.put("batch_events", _event_row(key, entry, None, "recalled", entry.time))
        for n in range(int(row["children"])):
            link = state.rows.get("batch_links", *key, n)
            if link is None:  # the count and the links are written together
                raise RuntimeError(f"batch_links lacks link {n} of {show(key)}")
            queue.append((str(link["child_gtin"]), str(link["child_lot"])))


# --- registration ----------------------------------------------------------------------

register_kind(
    KindSpec(
        "batch.registered",
        "register a produce batch (lot): product, origin, supplying households, inspections",
        _check_registered,
        _apply_registered,
        schema=REGISTERED_SCHEMA,
        signers="a producer key whose organisation is the body's producer",
    )
)
register_kind(
    KindSpec(
        "batch.event",
        "an EPCIS event on a batch: CBV bizStep and disposition, time, place, temperature",
        _check_event,
        _apply_event,
        schema=EVENT_SCHEMA,
        signers=(
            "depends on biz_step: inspecting — inspector or the batch's producer; packing — "
            "producer; storing, shipping — producer or logistics; transporting — logistics or "
            "producer; receiving — logistics, retailer or producer; retail_selling — retailer "
            "or producer; destroying — producer or inspector (producer = a producer key of the "
            "batch's producer organisation)"
        ),
    )
)
register_kind(
    KindSpec(
        "batch.transformed",
        "split or merge lots: inputs consumed, new output lots registered",
        _check_transformed,
        _apply_transformed,
        schema=TRANSFORMED_SCHEMA,
        signers="a producer key of the organisation that produced every input",
    )
)
register_kind(
    KindSpec(
        "batch.recalled",
        "recall a batch and every lot derived from it",
        _check_recalled,
        _apply_recalled,
        schema=RECALLED_SCHEMA,
        signers="a producer key of the batch's producer, an inspector or a county_approver",
    )
)
