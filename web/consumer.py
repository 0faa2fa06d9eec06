"""What a QR code opens, for anyone, without signing in.

* ``/01/<gtin>/10/<lot>`` (GS1 Digital Link) and ``/b/<lot>`` — a produce lot: product,
  origin, producer, how many registered households it supported and in which villages
  (never who: no household codes, no personal data), its journey, inspections,
  certificates, transformations and any recall.  GTIN-8/12/13 redirect (301) to the
  GTIN-14 path; a bad GTIN or lot is a 400 page, an unknown lot a 404 page.
* ``/p/<project>`` — a project's public notice board (公示): budget, plan and milestones
  with their evidence documents, funds allocated and paid, who signed each step, the
  notice period.  ``/notices`` lists projects.
* ``/n/<seq>`` — a fund entry (a disbursement, an allocation, a receipt …) as a notice
  people can read; ``/e/<seq>`` is the same entry's technical page.
* ``/lookup`` — type the code printed under a QR code (:mod:`qr.manual`), a lot code, a
  project id or a label URL.

``?h=`` (:mod:`qr.urls`) is the label's leaf-hash prefix: when present the page says
whether the label belongs to the entry that registered what it names, and warns
unmistakably when it does not.

Every page carries the verification panel (``_verify_panel.html``) over the entries it
shows, with the fields it shows as ``expect``; before rendering, the server verifies the
checkpoint signature and the inclusion proof of each of those entries itself
(``web.public.check_inclusion``), so the panel's no-JavaScript line is true.

Witnesses (``suyuan witnesses``, ledger/witnessing.py): when the log has any, a page is
verified against the newest checkpoint that a configured witness cosigned and that covers
every entry it shows (else the newest checkpoint), and the panel lists the witnesses'
names and keys; the server states how many cosignatures it verified, and verify.js checks
each one again in the browser — "witnessed by N independent parties", or, with none yet,
a neutral "not yet witnessed".

Speed: a page depends only on the ledger (and the locale, query and host), so for visitors
who are not signed in the built page is kept in an in-process LRU keyed on (path, query,
locale, tree size, witnessing, host) — ``SUYUAN_PAGE_CACHE_SIZE`` entries, default 2048 —
and served with ``Cache-Control: no-cache`` and an ETag derived from the tree size, so
browsers revalidate and get 304s.  Product pages count the scan (``web.scans``) either way.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import Connection, func, select
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.wrappers import Response

from ledger import witnessing
from ledger.db import read_snapshot
from ledger.domain import batch_queries, fund_queries, gs1
from ledger.domain import projects as project_domain
from ledger.domain.batches import batch_households, batches
from ledger.domain.common import yuan_text
from ledger.domain.funds import fund_allocations, fund_disbursements, fund_sources
from ledger.domain.households import households
from ledger.entry import Entry, decode_entry
from ledger.errors import Error, InvalidInput, NotFound
from ledger.log import Log, StoredCheckpoint
from ledger.rules import KeyRecord
from ledger.schema import entries
from qr import manual
from qr.urls import HASH_HEX
from web import scans
from web.auth import current_user
from web.errors import classify
from web.extensions import reader
from web.i18n import select_locale

bp = Blueprint("consumer", __name__)

#: Payments listed one by one per organisation group on a notice board (the rest are counted).
MAX_PAYMENTS = 50
PROJECTS_PER_PAGE = 20
_HEX = re.compile(r"[0-9a-f]{1,64}")
_PROJECT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_PLACE = ("province", "city", "county", "township", "village")

# --- words -------------------------------------------------------------------------------

BIZ_STEPS = {
    "commissioning": _l("Registered"),
    "inspecting": _l("Inspected"),
    "packing": _l("Packed"),
    "storing": _l("Stored"),
    "shipping": _l("Shipped"),
    "transporting": _l("In transport"),
    "receiving": _l("Received"),
    "retail_selling": _l("On sale"),
    "destroying": _l("Destroyed"),
}
DISPOSITIONS = {
    "active": _l("in circulation"),
    "in_progress": _l("in progress"),
    "conformant": _l("passed inspection"),
    "non_conformant": _l("failed inspection"),
    "sellable_not_accessible": _l("ready for sale, not yet on the shelf"),
    "sellable_accessible": _l("on sale"),
    "non_sellable_other": _l("not for sale"),
    "expired": _l("expired"),
    "damaged": _l("damaged"),
    "in_transit": _l("in transit"),
    "returned": _l("returned"),
    "retail_sold": _l("sold"),
    "destroyed": _l("destroyed"),
    "recalled": _l("recalled"),
}
#: Dispositions a consumer should notice.
BAD_DISPOSITIONS = frozenset({"non_conformant", "expired", "damaged", "destroyed", "recalled"})
UNITS = {
    "g": _l("g"),
    "kg": _l("kg"),
    "t": _l("tonnes"),
    "jin": _l("jin (斤)"),
    "ml": _l("ml"),
    "l": _l("litres"),
    "piece": _l("pieces"),
    "box": _l("boxes"),
    "bag": _l("bags"),
    "bottle": _l("bottles"),
    "jar": _l("jars"),
    "carton": _l("cartons"),
    "crate": _l("crates"),
    "head": _l("head"),
}
CERTIFICATIONS = {
    "green_food": _l("Green Food (绿色食品)"),
    "organic": _l("Organic product (有机产品)"),
    "geographical_indication": _l("Geographical indication (地理标志)"),
    "pollution_free": _l("Pollution-free produce (无公害农产品)"),
    "poverty_alleviation_product": _l("Certified poverty-alleviation product (扶贫产品)"),
}
BATCH_STATUS = {
    "active": _l("In circulation"),
    "recalled": _l("Recalled"),
    "destroyed": _l("Destroyed"),
}
STAGES = {
    "registered": _l("Registered"),
    "approved": _l("Approved"),
    "tendered": _l("Tendered"),
    "contracted": _l("Contract signed"),
    "started": _l("Work started"),
    "progress": _l("Progress report"),
    "completed": _l("Completed"),
    "accepted": _l("Accepted"),
    "notice": _l("Public notice (公示)"),
}
PLAN_STATES = {
    "done": _l("on time"),
    "late": _l("late"),
    "overdue": _l("overdue"),
    "pending": _l("not yet due"),
}
CATEGORIES = {
    "cold_store": _l("Cold store"),
    "road": _l("Road hardening"),
    "water": _l("Drinking-water works"),
    "housing": _l("Housing"),
    "industry_base": _l("Industry base"),
    "other": _l("Other"),
}
QUANTITIES = {
    "length_m": _l("Length (m)"),
    "width_m": _l("Width (m)"),
    "area_m2": _l("Area (m²)"),
    "volume_m3": _l("Volume (m³)"),
    "capacity_t": _l("Storage capacity (t)"),
    "water_m3_per_day": _l("Water supply (m³ per day)"),
    "households_served": _l("Households served"),
    "persons_served": _l("Persons served"),
}
PURPOSES = {
    "industry_subsidy": _l("Industry subsidy"),
    "education_grant": _l("Education grant (雨露计划)"),
    "micro_loan": _l("Micro-loan"),
    "interest_subsidy": _l("Interest subsidy"),
    "insurance_topup": _l("Anti-poverty insurance top-up"),
    "dividend": _l("Dividend"),
    "public_welfare_wage": _l("Public-welfare job wage"),
    "project_payment": _l("Project payment"),
    "elder_care": _l("Elder-care fund"),
    "other": _l("Other"),
}
SOURCE_TYPES = {
    "central": _l("Central special fund"),
    "provincial": _l("Provincial special fund"),
    "municipal": _l("Municipal special fund"),
    "county": _l("County special fund"),
    "bank_credit": _l("Bank credit"),
    "donation": _l("Donation"),
    "contribution": _l("Contribution"),
    "other": _l("Other"),
}
FUND_KINDS = {
    "fund.source": _l("Fund source"),
    "fund.allocated": _l("Fund allocation"),
    "fund.disbursed": _l("Disbursement notice"),
    "fund.exception": _l("Exception: one more payment allowed"),
    "fund.received": _l("Receipt of a payment"),
    "fund.repaid": _l("Loan repayment"),
    "fund.reversed": _l("Reversal"),
    "fund.corrected": _l("Correction of a payment"),
}
RECIPIENTS = {
    "household": _l("A registered household (建档立卡户)"),
    "cooperative": _l("Cooperative"),
    "contractor": _l("Contractor"),
}
PAYMENT_STATUS = {"active": _l("paid"), "reversed": _l("reversed")}


def word(table: Mapping[str, Any], key: str | None) -> str:
    """``key`` in people's words (translated), or the key itself when there is none."""
    if key is None:
        return ""
    return str(table.get(key, key))


def when_text(value: str | None) -> str:
    """An ISO date or date-time as people read it: ``2019-10-30 07:00 (UTC+08:00)``."""
    if not value:
        return ""
    if len(value) <= 10:
        return value
    day, _sep, rest = value.partition("T")
    clock = rest[:5]
    zone = rest[8:] if len(rest) > 8 else ""
    if zone.startswith("."):  # fractional seconds, as in log times
        zone = zone.lstrip(".0123456789")
    zone = "UTC" if zone in ("Z", "+00:00") else f"UTC{zone}" if zone else ""
    return f"{day} {clock}" + (f" ({zone})" if zone else "")


def temperature_text(tenths: int) -> str:
    sign = "−" if tenths < 0 else ""
    whole, tenth = divmod(abs(int(tenths)), 10)
    return f"{sign}{whole}.{tenth} °C"


def place_text(place: Mapping[str, Any] | None) -> str:
    """Province to village, as written in Chinese (names are not translated)."""
    if not place:
        return ""
    return "".join(str(place[p]) for p in _PLACE if place.get(p))


def ref_path(ref: Mapping[str, Any]) -> str:
    return gs1.batch_path(ref.get("gtin") or None, ref["lot"])


def blob_url(sha256: str) -> str:
    return f"/api/v1/blobs/{sha256}"


@bp.context_processor
def _helpers() -> dict[str, Any]:
    return {
        "word": word,
        "yuan_text": yuan_text,
        "when_text": when_text,
        "temperature_text": temperature_text,
        "place_text": place_text,
        "ref_path": ref_path,
        "blob_url": blob_url,
        "BIZ_STEPS": BIZ_STEPS,
        "DISPOSITIONS": DISPOSITIONS,
        "UNITS": UNITS,
        "CERTIFICATIONS": CERTIFICATIONS,
        "BATCH_STATUS": BATCH_STATUS,
        "STAGES": STAGES,
        "PLAN_STATES": PLAN_STATES,
        "CATEGORIES": CATEGORIES,
        "QUANTITIES": QUANTITIES,
        "PURPOSES": PURPOSES,
        "SOURCE_TYPES": SOURCE_TYPES,
        "FUND_KINDS": FUND_KINDS,
        "RECIPIENTS": RECIPIENTS,
        "PAYMENT_STATUS": PAYMENT_STATUS,
    }


# --- errors ------------------------------------------------------------------------------


@bp.errorhandler(Error)
def _error(exc: Error) -> tuple[str, int]:
    status, code = classify(exc)
    return (
        render_template(
            "consumer/error.html", status=status, code=code, message=str(exc), query=""
        ),
        status,
    )


class _Redirect(Exception):  # control flow, not an error
    """Raised by a page builder: this request belongs on another page."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target


# --- the page cache ----------------------------------------------------------------------


@dataclass
class CachedPage:
    """A page's context (built from the ledger) and its rendered variants."""

    context: dict[str, Any]
    html: dict[Hashable, str] = field(default_factory=dict)
    etags: dict[Hashable, str] = field(default_factory=dict)


class PageCache:
    """A small thread-safe LRU of built pages."""

    def __init__(self, size: int) -> None:
        self.size = max(0, int(size))
        self._items: OrderedDict[Hashable, CachedPage] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> CachedPage | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: Hashable, page: CachedPage) -> None:
        if self.size == 0:
            return
        with self._lock:
            self._items[key] = page
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


_cache_lock = threading.Lock()


def page_cache(app: Flask) -> PageCache:
    found = app.extensions.get("suyuan_pages")
    if found is None:
        with _cache_lock:
            found = app.extensions.get("suyuan_pages")
            if found is None:
                found = PageCache(app.config.get("SUYUAN_PAGE_CACHE_SIZE", 2048))
                app.extensions["suyuan_pages"] = found
    return found


_size_lock = threading.Lock()


def tree_size(log: Log) -> int:
    """The newest signed size: one indexed read, on every page view.

    ``SUYUAN_PAGE_SIZE_TTL`` (seconds, default 1) reuses the size read that recently (the
    read is about 0.3 ms, a fifth of a cached page's cost): an anonymous page may lag the
    ledger by up to that long.  0 reads it on every request.
    """
    ttl = float(current_app.config.get("SUYUAN_PAGE_SIZE_TTL", 1))
    state: dict[str, Any] = current_app.extensions.setdefault("suyuan_tree_size", {})
    now = time.monotonic()
    if ttl > 0:
        with _size_lock:
            if "size" in state and now - state["at"] < ttl:
                return int(state["size"])
    with log.engine.connect() as conn:
        size = int(conn.exec_driver_sql("SELECT MAX(size) FROM checkpoints").scalar() or 0)
    with _size_lock:
        state.update(size=size, at=now)
    return size


_mark_lock = threading.Lock()


def witnessed_mark(log: Log) -> tuple[Any, ...] | None:
    """What changes when witnessing changes what a page shows (newest cosignature, witnesses).

    Read at most every ``SUYUAN_PAGE_SIZE_TTL`` seconds, like :func:`tree_size`; None
    where the database has no witness tables.
    """
    ttl = float(current_app.config.get("SUYUAN_PAGE_SIZE_TTL", 1))
    state: dict[str, Any] = current_app.extensions.setdefault("suyuan_witnessed_mark", {})
    now = time.monotonic()
    if ttl > 0:
        with _mark_lock:
            if "mark" in state and now - state["at"] < ttl:
                return state["mark"]  # type: ignore[no-any-return]
    mark: tuple[Any, ...] | None
    try:
        with log.engine.connect() as conn:
            mark = witnessing.witness_mark(conn)
    except SQLAlchemyError:
        mark = None
    with _mark_lock:
        state.update(mark=mark, at=now)
    return mark


@dataclass
class Served:
    """A page found in (or put into) the cache, and how to answer with it."""

    page: CachedPage
    key: Hashable
    size: int
    cacheable: bool


def serve(build: Callable[[Log], dict[str, Any]]) -> Served:
    """The page for this request: from the cache for anonymous visitors, else built."""
    log = reader()
    size = tree_size(log)
    cacheable = current_user() is None and "_flashes" not in session
    key = (
        request.path,
        request.query_string,
        select_locale(),  # what Babel will use, without parsing it into a Locale
        size,
        witnessed_mark(log),  # a new cosignature or witness changes the verification panel
        request.url_root,
    )
    if len(request.query_string) > 512:
        cacheable = False
    cache = page_cache(current_app)
    page = cache.get(key) if cacheable else None
    if page is None:
        page = CachedPage(build(log))
        if cacheable:
            cache.put(key, page)
    return Served(page, key, size, cacheable)


def respond(served: Served, template: str, variant: Hashable = None, **extra: Any) -> Response:
    """Render (or reuse) ``variant`` of the page and answer with validators for revalidation."""
    html = served.page.html.get(variant)
    if html is None:
        html = render_template(template, **served.page.context, **extra)
        if served.cacheable:
            served.page.html[variant] = html
    response = make_response(html)
    if served.cacheable:
        etag = served.page.etags.get(variant)
        if etag is None:
            digest = hashlib.sha256(repr((served.key, variant)).encode()).hexdigest()[:16]
            etag = served.page.etags[variant] = f"{served.size}-{digest}"
        response.set_etag(etag, weak=True)
        response.headers["Cache-Control"] = "no-cache"
        response.vary.update(("Accept-Language", "Cookie"))
        response.make_conditional(request)
    else:
        response.headers["Cache-Control"] = "private, no-cache"
    return response


# --- reading entries and checking them ---------------------------------------------------


def load_entries(conn: Connection, seqs: Iterable[int]) -> dict[int, Entry]:
    wanted = sorted({int(s) for s in seqs})
    out: dict[int, Entry] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        query = select(entries.c.seq, entries.c.leaf).where(entries.c.seq.in_(chunk))
        for seq, leaf in conn.execute(query):
            out[int(seq)] = decode_entry(bytes(leaf))
    return out


@dataclass(frozen=True)
class LabelCheck:
    """The ``?h=`` of a scanned label against the leaf hash of the entry it should name."""

    given: str
    seq: int
    ok: bool


def label_check(given: str | None, entry: Entry) -> LabelCheck | None:
    if given is None or given == "":
        return None
    text = given.strip().lower()[:64]
    ok = (
        len(text) >= HASH_HEX
        and _HEX.fullmatch(text) is not None
        and entry.leaf_hash().hex().startswith(text)
    )
    return LabelCheck(given[:64], entry.seq, ok)


def label_param() -> str | None:
    given = request.args.get("h")
    return None if given is None or given == "" else given[:64]


def server_check(
    log: Log, latest: StoredCheckpoint, found: Mapping[int, Entry], label: LabelCheck | None
) -> dict[str, Any]:
    """The server's own check of every entry the page shows (see ``web.public``).

    With witnesses configured, the check (and the browser's, through the panel) is made
    against the newest *witnessed* checkpoint that covers every entry shown, when there
    is one, else against the newest checkpoint: see :func:`witnessed_checkpoint`.
    """
    from web.public import check_inclusion

    chosen, witnessed = witnessed_checkpoint(log, latest, found)
    checked = check_inclusion(log, chosen, {s: e.leaf_hash() for s, e in sorted(found.items())})
    if label is not None and not label.ok and checked["error"] is None:
        checked = {
            **checked,
            "error": _(
                "the code on the label (%(given)s) is not the start of the leaf hash of "
                "entry %(seq)s",
                given=label.given,
                seq=label.seq,
            ),
        }
    return {**checked, **witnessed}


def witnessed_checkpoint(
    log: Log, latest: StoredCheckpoint, found: Mapping[int, Entry]
) -> tuple[StoredCheckpoint, dict[str, Any]]:
    """The checkpoint a page's entries are verified against, and what the panel shows of witnesses.

    Without configured witnesses: ``latest`` and nothing.  With them: the newest
    checkpoint cosigned by a configured witness that covers every entry in ``found``
    (``ledger.witnessing.latest_witnessed``), else ``latest``; and for the panel
    ``witnesses`` (every configured witness's name and vkey: the browser checks the
    cosignatures itself), ``witnessed`` (the names whose cosignature the server
    verified), ``witness_warnings`` (key IDs whose cosignature line does not verify:
    not counted) and ``note`` (the cosigned note the browser verifies, when it carries
    cosignatures; else None and the browser fetches ``/log/checkpoint``).
    """
    try:
        configured = witnessing.known_witnesses(log)
    except Error:  # no witness tables: a database from before migration 0008
        return latest, {}
    verifiers = []
    listed = []
    for record in configured:
        try:
            verifiers.append(record.verifier)
        except Error:
            continue  # a hand-edited row: not shown, not counted
        listed.append({"name": record.name, "vkey": record.vkey})
    if not listed:
        return latest, {}
    need = max(found) + 1 if found else 0
    chosen = witnessing.latest_witnessed(log, need) or latest
    note = witnessing.cosigned_note(log, chosen)
    try:
        check = witnessing.check_cosigners(note, verifiers)
    except Error:
        check = witnessing.CosignerCheck((), ())
    return chosen, {
        "witnesses": listed,
        "witnessed": check.names,
        "witness_warnings": [key_id for key_id, _why in check.invalid],
        "note": note if note != chosen.note else None,
    }


def signers_of(entry: Entry, keys: Mapping[str, KeyRecord]) -> list[dict[str, Any]]:
    """Who signed an entry: key name, role and organisation from the key registry."""
    out = []
    for key_id in entry.signed.key_ids():
        record = keys.get(key_id)
        if record is None:
            out.append({"name": key_id.split("+", 1)[0], "role": None, "org": None})
        else:
            out.append({"name": record.name, "role": record.role, "org": record.org})
    return out


def key_index(log: Log) -> dict[str, KeyRecord]:
    return {k.key_id: k for k in log.registered_keys()}


# --- product pages -----------------------------------------------------------------------


def _query_suffix() -> str:
    query = request.query_string.decode("latin-1")
    return f"?{query}" if query else ""


@bp.get("/01/<gtin>/10/<path:lot>", merge_slashes=False)
def product(gtin: str, lot: str) -> Response:
    """A lot with a GTIN at its GS1 Digital Link path."""
    gtin14 = gs1.normalize_gtin(gtin)
    gs1.validate_lot(lot)
    if gtin14 != gtin:
        return redirect(gs1.digital_link_path(gtin14, lot) + _query_suffix(), code=301)
    return _product(gtin14, lot)


@bp.get("/b/<path:lot>", merge_slashes=False)
def product_short(lot: str) -> Response:
    """A lot registered without a GTIN."""
    gs1.validate_lot(lot)
    return _product(None, lot)


def _product(gtin: str | None, lot: str) -> Response:
    label = label_param()
    served = serve(lambda log: product_context(log, gtin, lot, label))
    context = served.page.context
    code = context["code"]
    clone = scans.clone_suspect(current_app, code, context["quantity"], context["unit"])
    if request.method == "GET" and not scans.is_prefetch(request.headers):
        scans.counter(current_app).record(code, request.remote_addr or "")
    return respond(served, "consumer/product.html", clone.suspect, clone=clone)


def product_context(log: Log, gtin: str | None, lot: str, given: str | None) -> dict[str, Any]:
    ref = {"lot": lot} if gtin is None else {"gtin": gtin, "lot": lot}
    with read_snapshot(log.engine) as conn:  # the status and the timeline agree
        view = batch_queries.batch_view(conn, ref)
        graph = batch_queries.provenance(conn, ref, depth=1)
        shown = {int(view["registered_seq"])}
        shown |= {int(item["seq"]) for item in view["timeline"]}
        shown |= {int(c["seq"]) for c in view["certifications"]}
        if view["recall"] is not None:
            shown.add(int(view["recall"]["seq"]))
        found = load_entries(conn, shown)
    latest = log.latest_checkpoint()
    view.pop("auditor", None)  # household codes: for auditors, never for this page
    registration = found[int(view["registered_seq"])]
    label = label_check(given, registration)
    timeline = _timeline(view, found)
    expect = _product_expect(view, registration, found)
    recall = view["recall"]
    if recall is not None:
        body = found[int(recall["seq"])].body
        recall = {**recall, "evidence": list(body.get("evidence", []))}
    return {
        "latest": latest,
        "vkey": log.verifier.vkey,
        "code": view["path"],
        "quantity": view["quantity"],
        "unit": view["unit"],
        "lot": view,
        "recall": recall,
        "timeline": timeline,
        "inputs": [n for n in graph["nodes"] if n["distance"] < 0],
        "outputs": [n for n in graph["nodes"] if n["distance"] > 0],
        "edges": graph["edges"],
        "label": label,
        "hash_prefix": given,
        "manual_code": manual.encode(int(view["registered_seq"])),
        "seqs": sorted(found),
        "expect": expect,
        "server_checked": server_check(log, latest, found, label),
    }


def _timeline(view: Mapping[str, Any], found: Mapping[int, Entry]) -> list[dict[str, Any]]:
    """The journey in log order; a transformation shown once (as this lot's, if it is)."""
    own_seqs = {int(item["seq"]) for item in view["timeline"] if item["own"]}
    out: list[dict[str, Any]] = []
    seen: set[int] = set()
    for item in view["timeline"]:
        seq = int(item["seq"])
        if seq in seen or (not item["own"] and seq in own_seqs):
            continue
        seen.add(seq)
        kind = item["kind"]
        if kind == "batch.registered":
            title = _("Registered by the producer")
        elif kind == "batch.transformed":
            if item["own"] and item["biz_step"] == "commissioning":
                title = _("Made from other lots")
            elif item["own"]:
                title = _("Processed into other lots")
            else:
                title = _("Processed")
        elif kind == "batch.recalled":
            title = _("Recalled")
        else:
            title = word(BIZ_STEPS, item["biz_step"])
        entry = found[seq]
        out.append(
            {
                **item,
                "title": title,
                "state": word(DISPOSITIONS, item["disposition"])
                if item["disposition"] and kind != "batch.recalled"
                else "",
                "bad": item["disposition"] in BAD_DISPOSITIONS,
                "when": when_text(item["time"]),
                "evidence": list(entry.body.get("evidence", []))
                if kind == "batch.recalled"
                else [],
            }
        )
    return out


def _product_expect(
    view: Mapping[str, Any], registration: Entry, found: Mapping[int, Entry]
) -> dict[int, dict[str, Any]]:
    """What the page shows of each entry, as paths into the logged entry (data-expect)."""
    expect: dict[int, dict[str, Any]] = {}
    seq = registration.seq
    if registration.kind == "batch.registered":
        shown: dict[str, Any] = {
            "kind": "batch.registered",
            "body.lot": view["lot"],
            "body.producer": view["producer"],
            "body.product.zh": view["product"]["zh"],
            "body.quantity": view["quantity"],
            "body.unit": view["unit"],
        }
        if view["gtin"]:
            shown["body.gtin"] = view["gtin"]
        expect[seq] = shown
    else:  # batch.transformed: this lot is one of its outputs
        outputs = list(registration.body.get("outputs", []))
        for i, output in enumerate(outputs):
            if output.get("lot") == view["lot"] and (output.get("gtin") or None) == view["gtin"]:
                shown = {
                    "kind": "batch.transformed",
                    f"body.outputs.{i}.lot": view["lot"],
                    f"body.outputs.{i}.product.zh": view["product"]["zh"],
                    f"body.outputs.{i}.quantity": view["quantity"],
                }
                if view["gtin"]:
                    shown[f"body.outputs.{i}.gtin"] = view["gtin"]
                expect[seq] = shown
    for item in view["timeline"]:
        item_seq = int(item["seq"])
        if item_seq in expect:
            continue
        if item["kind"] == "batch.event":
            expect[item_seq] = {
                "kind": "batch.event",
                "body.biz_step": item["biz_step"],
                "body.disposition": item["disposition"],
                "body.time": item["time"],
                "body.batch.lot": item["batch"]["lot"],
            }
        elif item["kind"] == "batch.transformed":
            expect[item_seq] = {"kind": "batch.transformed", "body.process": item["process"]}
        elif item["kind"] == "batch.registered":
            expect[item_seq] = {"kind": "batch.registered", "body.lot": item["batch"]["lot"]}
    recall = view["recall"]
    if recall is not None:
        expect[int(recall["seq"])] = {"kind": "batch.recalled", "body.reason": recall["reason"]}
    return {s: expect[s] for s in sorted(expect) if s in found}


# --- project notice boards ---------------------------------------------------------------


@bp.get("/p/<project_id>")
def project(project_id: str) -> Response:
    """A project's public notice board (公示栏)."""
    if not _PROJECT_ID.fullmatch(project_id):
        raise InvalidInput(
            f"a project id is 1–64 ASCII letters, digits and . _ : -, got {project_id!r}"
        )
    label = label_param()
    served = serve(lambda log: project_context(log, project_id, label))
    return respond(served, "consumer/project.html")


def _notice_state(notice: Mapping[str, str] | None, day: str) -> str | None:
    if notice is None:
        return None
    if day < notice["start"]:
        return "upcoming"
    if day <= notice["end"]:
        return "open"
    return "ended"


def _payment(item: Mapping[str, Any]) -> dict[str, Any]:
    recipient = item["recipient"]
    kind = next((k for k in ("contractor", "cooperative", "household") if k in recipient), "")
    return {
        **item,
        "recipient_type": kind,
        # an organisation by name; a household never by code, only by its village
        "recipient_name": recipient.get(kind) if kind != "household" else None,
        "credit_code": recipient.get("credit_code"),
    }


def project_context(log: Log, project_id: str, given: str | None) -> dict[str, Any]:
    day = datetime.now(UTC).date().isoformat()
    with read_snapshot(log.engine) as conn:  # the project and its money agree
        view = project_domain.project_view(conn, project_id, as_of=day)
        funds = fund_queries.trail(conn, project=project_id)
        payments: dict[str, dict[str, Any]] = {}
        household_groups: list[dict[str, Any]] = []
        unlisted = 0
        for allocation in funds["allocations"]:
            for group in allocation["groups"]:
                if group["recipient_type"] == "household":
                    household_groups.append({**group, "allocation": allocation})
                    continue
                page = fund_queries.disbursements(conn, **group["page"], limit=MAX_PAYMENTS)
                for item in page["items"]:
                    payments[item["id"]] = _payment(item)
                unlisted += max(0, group["count"] - len(page["items"]))
        for item in funds["gated"]["disbursements"]:
            payments.setdefault(item["id"], _payment(item))
        shown = {int(view["registered_seq"])}
        shown |= {int(e["seq"]) for e in view["events"]}
        shown |= {int(e["corrected_seq"]) for e in view["events"] if e["corrected_seq"]}
        shown |= {int(a["allocated_seq"]) for a in funds["allocations"]}
        shown |= {int(p["disbursed_seq"]) for p in payments.values()}
        shown |= {int(p["received_seq"]) for p in payments.values() if p["received_seq"]}
        found = load_entries(conn, shown)
    latest = log.latest_checkpoint()
    keys = key_index(log)
    registration = found[int(view["registered_seq"])]
    label = label_check(given, registration)
    events = [{**e, "signers": signers_of(found[int(e["seq"])], keys)} for e in view["events"]]
    listed = sorted(payments.values(), key=lambda p: p["disbursed_seq"])
    for item in listed:
        item["signers"] = signers_of(found[int(item["disbursed_seq"])], keys)
    expect: dict[int, dict[str, Any]] = {
        registration.seq: {"kind": "project.registered", "body.id": view["id"]}
    }
    for e in view["events"]:
        if e["kind"] == "project.registered":
            continue
        if e["kind"] == "project.milestone":
            shown_event: dict[str, Any] = {"kind": e["kind"], "body.stage": e["stage"]}
            if e["corrected_seq"] is None:
                shown_event["body.date"] = e["date"]
            expect[int(e["seq"])] = shown_event
        else:
            expect[int(e["seq"])] = {"kind": e["kind"], "body.project": view["id"]}
    for allocation in funds["allocations"]:
        expect[int(allocation["allocated_seq"])] = {
            "kind": "fund.allocated",
            "body.id": allocation["id"],
            "body.amount_fen": allocation["amount_fen"],
        }
    for item in listed:
        expect[int(item["disbursed_seq"])] = {
            "kind": "fund.disbursed",
            "body.id": item["id"],
            "body.amount_fen": item["original_fen"],
        }
    return {
        "latest": latest,
        "vkey": log.verifier.vkey,
        "project": view,
        "registration_signers": signers_of(registration, keys),
        "events": events,
        "funds": funds,
        "payments": listed,
        "unlisted": unlisted,
        "household_groups": household_groups,
        "notice_state": _notice_state(view["notice"], day),
        "today": day,
        "label": label,
        "hash_prefix": given,
        "manual_code": manual.encode(registration.seq),
        "seqs": sorted(found),
        "expect": {s: expect[s] for s in sorted(expect) if s in found},
        "server_checked": server_check(log, latest, found, label),
    }


@bp.get("/notices")
def notices() -> Response:
    """Projects' notice boards, a page at a time (by project id), optionally in one county."""
    page_text = request.args.get("page", "1")
    if not page_text.isascii() or not page_text.isdigit() or not 1 <= int(page_text) <= 100_000:
        raise InvalidInput(f"page must be a number from 1, got {page_text[:20]!r}")
    page = int(page_text)
    county = request.args.get("county") or None
    served = serve(lambda log: notices_context(log, page, county))
    return respond(served, "consumer/notices.html")


def notices_context(log: Log, page: int, county: str | None) -> dict[str, Any]:
    with log.engine.connect() as conn:
        found = project_domain.list_projects(
            conn,
            county=county,
            limit=PROJECTS_PER_PAGE + 1,
            offset=(page - 1) * PROJECTS_PER_PAGE,
        )
        counties = [
            r[0]
            for r in conn.execute(
                select(project_domain.projects.c.county)
                .distinct()
                .order_by(project_domain.projects.c.county)
            )
        ]
        listed = found[:PROJECTS_PER_PAGE]
        registrations = load_entries(conn, [p["registered_seq"] for p in listed])
    latest = log.latest_checkpoint()
    return {
        "latest": latest,
        "vkey": log.verifier.vkey,
        "seqs": sorted(registrations),
        "expect": {
            int(p["registered_seq"]): {"kind": "project.registered", "body.id": p["id"]}
            for p in listed
        },
        "server_checked": server_check(log, latest, registrations, None),
        "projects": listed,
        "page": page,
        "has_next": len(found) > PROJECTS_PER_PAGE,
        "county": county,
        "counties": counties,
    }


# --- fund notices ------------------------------------------------------------------------


@bp.get("/n/<int:seq>")
def notice(seq: int) -> Response:
    """A fund entry as a notice people read; other entries go to their own pages."""
    label = label_param()
    try:
        served = serve(lambda log: notice_context(log, seq, label))
    except _Redirect as moved:
        return redirect(moved.target)
    return respond(served, "consumer/notice.html")


def _elsewhere(conn: Connection, entry: Entry) -> str:
    """Where a non-fund entry is shown to people."""
    suffix = _query_suffix()
    if entry.kind in ("batch.registered", "batch.transformed"):
        made = batch_queries.batch_by_seq(conn, entry.seq)
        if len(made) == 1:
            return str(made[0]["path"]) + suffix
    if entry.kind.startswith("project.") and _PROJECT_ID.fullmatch(
        str(entry.body.get("id") or entry.body.get("project") or "")
    ):
        project_id = str(entry.body.get("id") or entry.body.get("project"))
        return url_for("consumer.project", project_id=project_id) + suffix
    return url_for("public.entry", seq=entry.seq) + suffix


def _row(conn: Connection, table: Any, key: str) -> dict[str, Any] | None:
    found = conn.execute(select(table).where(table.c.id == key)).mappings().first()
    return None if found is None else dict(found)


def _place_of_household(conn: Connection, code: str) -> dict[str, Any] | None:
    found = (
        conn.execute(select(*[households.c[p] for p in _PLACE]).where(households.c.code == code))
        .mappings()
        .first()
    )
    return None if found is None else dict(found)


def _rate(body: Mapping[str, Any]) -> str | None:
    """A micro-loan's subsidised yearly rate in percent (basis points, exactly)."""
    loan = body.get("loan")
    if not isinstance(loan, Mapping) or not isinstance(loan.get("interest_subsidy_bp"), int):
        return None
    bp_ = int(loan["interest_subsidy_bp"])
    return f"{bp_ // 100}.{bp_ % 100:02d}"


def notice_context(log: Log, seq: int, given: str | None) -> dict[str, Any]:
    latest = log.latest_checkpoint()
    if not 0 <= seq < latest.size:
        raise NotFound(f"no entry {seq} in the published log")
    with log.engine.connect() as conn:
        entry = load_entries(conn, [seq]).get(seq)
        if entry is None:
            raise NotFound(f"no entry {seq} in the log")
        if not entry.kind.startswith("fund."):
            raise _Redirect(_elsewhere(conn, entry))
        body = entry.body
        related: dict[str, int] = {}  # what → seq of the entry shown beside this one
        payment = source = allocation = None
        if entry.kind == "fund.disbursed":
            payment = _row(conn, fund_disbursements, str(body["id"]))
        elif "disbursement" in body:
            payment = _row(conn, fund_disbursements, str(body["disbursement"]))
        if payment is not None:
            allocation = _row(conn, fund_allocations, payment["allocation"])
        elif entry.kind == "fund.allocated":
            allocation = _row(conn, fund_allocations, str(body["id"]))
        if allocation is not None:
            source = _row(conn, fund_sources, allocation["source"])
        elif entry.kind == "fund.source":
            source = _row(conn, fund_sources, str(body["id"]))
        if payment is not None:
            for name in ("disbursed_seq", "corrected_seq", "reversed_seq", "received_seq"):
                if payment[name] is not None and int(payment[name]) < latest.size:
                    related[name] = int(payment[name])
        if allocation is not None and int(allocation["allocated_seq"]) < latest.size:
            related["allocated_seq"] = int(allocation["allocated_seq"])
        if source is not None and int(source["source_seq"]) < latest.size:
            related["source_seq"] = int(source["source_seq"])
        household = None
        if payment is not None and payment["recipient_type"] == "household":
            household = {p: payment[p] or None for p in ("county", "township", "village")}
        elif "household" in body:
            household = _place_of_household(conn, str(body["household"]))
        found = load_entries(conn, {seq, *related.values()})
    keys = key_index(log)
    label = label_check(given, entry)
    expect: dict[int, dict[str, Any]] = {seq: {"kind": entry.kind}}
    for name in ("id", "amount_fen", "disbursement", "date", "period", "purpose", "reason"):
        if name in body:
            expect[seq][f"body.{name}"] = body[name]
    for other in related.values():
        if other != seq:
            expect[other] = {"kind": found[other].kind}
    recipient = body.get("recipient") if entry.kind == "fund.disbursed" else None
    return {
        "latest": latest,
        "vkey": log.verifier.vkey,
        "entry": entry,
        "body": body,
        "title": word(FUND_KINDS, entry.kind),
        "signed_by": signers_of(entry, keys),
        "loan_rate": _rate(body),
        "payment": payment,
        "allocation": allocation,
        "source": source,
        "household_place": household,
        "recipient_org": None
        if not recipient or "household" in recipient
        else next(v for k, v in recipient.items() if k in ("contractor", "cooperative")),
        "related": {name: found[s] for name, s in related.items() if s in found},
        "related_seqs": related,
        "label": label,
        "hash_prefix": given,
        "manual_code": manual.encode(seq),
        "seqs": sorted(found),
        "expect": {s: expect[s] for s in sorted(expect)},
        "server_checked": server_check(log, latest, found, label),
    }


# --- looking a code up -------------------------------------------------------------------

_PAGES = ("/01/", "/b/", "/p/", "/e/", "/n/")


@dataclass(frozen=True)
class Candidate:
    """One thing a typed code may mean."""

    url: str
    kind: str  # lot | project | entry
    title: str
    detail: str


def _as_url(text: str) -> str | None:
    """A label URL or site path, as a path on this site (never another host)."""
    if "://" not in text and not text.startswith("/"):
        return None  # a lot code may contain '/': only a URL or a path is taken as one
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    path = parts.path
    if not path.startswith(_PAGES) or path.startswith("//"):
        return None
    return path + (f"?{parts.query}" if parts.query else "")


def resolve(conn: Connection, size: int, text: str) -> list[Candidate]:
    """Everything ``text`` may name: a label URL, a manual code, a lot, a project id."""
    text = unicodedata.normalize("NFKC", text).strip()
    found: dict[str, Candidate] = {}

    def add(candidate: Candidate) -> None:
        found.setdefault(candidate.url, candidate)

    url = _as_url(text)
    if url is not None:
        return [Candidate(url, "entry", text, "")]
    try:
        seq: int | None = manual.decode(text)
    except InvalidInput:
        seq = None
    if seq is not None and seq < size:
        made = batch_queries.batch_by_seq(conn, seq)
        for lot in made:
            add(Candidate(lot["path"], "lot", lot["product"]["zh"], lot["lot"]))
        if not made:
            project_row = (
                conn.execute(
                    select(project_domain.projects.c.id, project_domain.projects.c.name_zh).where(
                        project_domain.projects.c.registered_seq == seq
                    )
                )
                .mappings()
                .first()
            )
            if project_row is not None:
                add(
                    Candidate(
                        url_for("consumer.project", project_id=project_row["id"]),
                        "project",
                        project_row["name_zh"],
                        project_row["id"],
                    )
                )
            else:
                kind = conn.execute(select(entries.c.kind).where(entries.c.seq == seq)).scalar()
                target = (
                    url_for("consumer.notice", seq=seq)
                    if str(kind).startswith("fund.")
                    else url_for("public.entry", seq=seq)
                )
                add(Candidate(target, "entry", _("Entry #%(seq)s", seq=seq), str(kind)))
    if 1 <= len(text) <= gs1.MAX_LOT_LENGTH:
        rows = conn.execute(
            select(batches.c.gtin, batches.c.lot, batches.c.product_zh)
            .where(func.lower(batches.c.lot) == text.lower())
            .order_by(batches.c.registered_seq)
            .limit(20)
        )
        for gtin, lot, product_zh in rows:
            add(Candidate(gs1.batch_path(gtin or None, lot), "lot", product_zh, lot))
    if _PROJECT_ID.fullmatch(text):
        project_row = (
            conn.execute(
                select(project_domain.projects.c.id, project_domain.projects.c.name_zh).where(
                    project_domain.projects.c.id == text
                )
            )
            .mappings()
            .first()
        )
        if project_row is not None:
            add(
                Candidate(
                    url_for("consumer.project", project_id=project_row["id"]),
                    "project",
                    project_row["name_zh"],
                    project_row["id"],
                )
            )
    return list(found.values())


@bp.get("/lookup")
def lookup() -> Response | str | tuple[str, int]:
    """The code lookup form (GET): one match redirects, several are listed, none explained."""
    query = (request.args.get("code") or "").strip()[:200]
    if not query:
        return render_template("consumer/lookup.html", query="", candidates=[], latest=None)
    log = reader()
    with log.engine.connect() as conn:
        candidates = resolve(conn, tree_size(log), query)
    if len(candidates) == 1:
        return redirect(candidates[0].url)
    return render_template(
        "consumer/lookup.html", query=query, candidates=candidates, latest=None
    ), (200 if candidates else 404)


# --- the front page ----------------------------------------------------------------------


def landing(log: Log) -> dict[str, Any]:
    """What the front page shows besides the log: counts, recent notices and recalls."""
    p = project_domain.projects
    with log.engine.connect() as conn:
        counts = {
            "households": conn.execute(select(func.count()).select_from(households)).scalar(),
            "supplying": conn.execute(
                select(func.count(func.distinct(batch_households.c.household)))
            ).scalar(),
            "lots": conn.execute(select(func.count()).select_from(batches)).scalar(),
            "projects": conn.execute(select(func.count()).select_from(p)).scalar(),
            "disbursed_fen": conn.execute(
                select(func.coalesce(func.sum(fund_disbursements.c.amount_fen), 0)).where(
                    fund_disbursements.c.status == "active"
                )
            ).scalar(),
        }
        recent = [
            dict(r)
            for r in conn.execute(
                select(
                    p.c.id, p.c.name_zh, p.c.name_en, p.c.status, p.c.county, p.c.village, p.c.seq
                )
                .order_by(p.c.seq.desc())
                .limit(5)
            ).mappings()
        ]
        recalls = [
            {**dict(r), "path": gs1.batch_path(r["gtin"] or None, r["lot"])}
            for r in conn.execute(
                select(
                    batches.c.gtin,
                    batches.c.lot,
                    batches.c.product_zh,
                    batches.c.recalled_seq,
                )
                .where(batches.c.recalled_seq.is_not(None))
                .order_by(batches.c.recalled_seq.desc(), batches.c.lot)
                .limit(5)
            ).mappings()
        ]
    return {
        "counts": {k: int(v or 0) for k, v in counts.items()},
        "recent_projects": recent,
        "recent_recalls": recalls,
        "words": {"stages": STAGES},
        "yuan_text": yuan_text,
    }
