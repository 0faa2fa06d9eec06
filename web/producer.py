"""The producer portal (``/producer/``): cooperatives and village e-commerce points register
their lots, record what happens to them, split and merge them, recall them, and print their
labels.

Who may do what is the ledger's decision (``ledger/domain/batches.py``): a ``producer`` key
acts for its organisation (the key's ``org``) on that organisation's lots only.  The portal
enforces the same boundary before it signs anything — every view is behind
``@role_required("producer")``, every lot a request names is looked up and refused with 403
when another organisation produced it — so an edited form cannot make the portal sign a
statement about someone else's lot (the ledger would refuse it anyway).

Writes follow one path: validate the form (``web.forms_batch``), build the body, dry-run it
with :func:`web.signing.check` and show every reason next to the field it concerns, and only
then :func:`web.signing.append` it (all or nothing).  A refused write leaves the ledger as it
was.  Inspection reports go to the blob store (``ledger.blobs``) under their SHA-256, which
is what the body records; a stored report nobody refers to is harmless (content-addressed).
"""

from __future__ import annotations

import contextlib
import mimetypes
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from markupsafe import Markup
from sqlalchemy import Connection, func, select
from werkzeug.datastructures import FileStorage
from werkzeug.wrappers import Response
from wtforms import SelectChoice

from ledger.blobs import FileBlobStore, check_digest, default_store, evidence_document
from ledger.domain import gs1
from ledger.domain.batch_queries import MAX_DEPTH, batch_view, find_batch, provenance
from ledger.domain.batches import MEASURE_UNITS, batches, ref_json
from ledger.domain.common import MAX_EVIDENCE
from ledger.domain.households import households
from ledger.entry import Entry
from ledger.errors import Error, InvalidInput, NotFound
from ledger.schema import scans
from qr.codes import DEFAULT_SIZE_MM, make_code, png_bytes, svg_bytes
from qr.labels import LAYOUTS, LabelData, render_labels
from qr.urls import batch_url, check_host, entry_leaf_hash
from web import signing
from web.auth import current_user, role_required, signing_user
from web.errors import classify
from web.extensions import instance, limiter, write_limit
from web.forms_batch import (
    DISPOSITION_LABELS,
    LABEL_LEVELS,
    SCHEME_LABELS,
    STEP_LABELS,
    UNIT_LABELS,
    EventForm,
    LabelsForm,
    RecallForm,
    RegisterBatchForm,
    TransformForm,
    parse_ref,
    ref_value,
    split_step,
)
from web.scans import CloneCheck, ScanStats, clone_check, clone_suspect, scan_stats
from web.scans import setting as scans_setting

bp = Blueprint("producer", __name__, url_prefix="/producer")

#: Dates and times people type are China Standard Time.
CHINA = timezone(timedelta(hours=8))
PAGE = 50
#: Lots offered in one select (newest first); older ones can still be chosen from their page.
MAX_CHOICES = 500

BatchKey = tuple[str, str]


@bp.errorhandler(Error)
def _error(exc: Error) -> tuple[str, int]:
    status, _code = classify(exc)
    return render_template("error.html", status=status, message=str(exc)), status


@bp.context_processor
def _vocabulary() -> dict[str, Any]:
    return {
        "UNIT_LABELS": UNIT_LABELS,
        "STEP_LABELS": STEP_LABELS,
        "DISPOSITION_LABELS": DISPOSITION_LABELS,
        "SCHEME_LABELS": SCHEME_LABELS,
        "lot_url": lot_url,
    }


# --- helpers ---------------------------------------------------------------------------------


def _org() -> str:
    user = current_user()
    if user is None or not user.org:
        abort(403)
    return user.org


def _today() -> date:
    return datetime.now(CHINA).date()


def lot_url(endpoint: str, gtin: str | None, lot: str, **extra: Any) -> str:
    """A portal URL naming a lot in its query (lots may hold ``/``, ``?`` or ``%``)."""
    return url_for(endpoint, gtin=gtin or None, lot=lot, **extra)


def _key_from_args() -> BatchKey:
    try:
        return parse_ref(ref_value(request.args.get("gtin", ""), request.args.get("lot", "")))
    except InvalidInput:
        abort(404)


def _own(conn: Connection, key: BatchKey, org: str) -> dict[str, Any]:
    """The summary of ``key``; 404 if unknown, 403 if another organisation produced it."""
    summary = find_batch(conn, key[0] or None, lot=key[1])
    if summary is None:
        abort(404)
    if summary["producer"] != org:
        abort(403)
    return summary


def _owner_check(conn: Connection, keys: Iterable[BatchKey], org: str) -> dict[BatchKey, Any]:
    """Rows of ``keys`` that exist; 403 at once if any belongs to another organisation."""
    found: dict[BatchKey, Any] = {}
    for key in keys:
        row = (
            conn.execute(select(batches).where(batches.c.gtin == key[0], batches.c.lot == key[1]))
            .mappings()
            .first()
        )
        if row is None:
            continue
        if row["producer"] != org:
            abort(403)
        found[key] = row
    return found


def _own_rows(conn: Connection, org: str, *, usable: bool) -> list[Mapping[str, Any]]:
    query = select(batches).where(batches.c.producer == org)
    if usable:
        query = query.where(batches.c.destroyed_seq.is_(None))
    query = query.order_by(batches.c.registered_seq.desc(), batches.c.gtin, batches.c.lot)
    return [dict(r) for r in conn.execute(query.limit(MAX_CHOICES)).mappings()]


def _choice_label(row: Mapping[str, Any]) -> str:
    unit = str(UNIT_LABELS.get(row["unit"], row["unit"])).split(" ")[0]
    gtin = row["gtin"] or _("no GTIN")
    state = "" if row["status"] == "active" else f" [{_status_label(row['status'])}]"
    return (
        f"{row['product_zh']} · {row['lot']} ({gtin}) — "
        f"{row['remaining']}/{row['quantity']} {unit}{state}"
    )


def _status_label(status: str) -> str:
    labels = {"active": _("active"), "recalled": _("recalled"), "destroyed": _("destroyed")}
    return str(labels.get(status, status))


def _lot_choices(conn: Connection, org: str) -> list[SelectChoice]:
    """The organisation's lots that can still take events, newest first, behind a blank."""
    return [SelectChoice("", _("— choose a lot —"))] + [
        SelectChoice(ref_value(r["gtin"], r["lot"]), _choice_label(r))
        for r in _own_rows(conn, org, usable=True)
    ]


def _blobs() -> FileBlobStore:
    return default_store(instance().settings.instance)


def _store_upload(upload: Any, kept: Any) -> str | None:
    """The SHA-256 of an uploaded report (stored now), or of one kept from an earlier try
    (hidden field; it MUST already be in the store); None if neither."""
    if isinstance(upload, FileStorage) and upload.filename:
        data = upload.read()
        if not data:
            raise InvalidInput(_("The file %(name)s is empty.", name=upload.filename))
        return _blobs().put(data)
    if kept:
        digest = check_digest(str(kept))
        if not _blobs().has(digest):
            raise InvalidInput(_("The report uploaded earlier is gone: attach it again."))
        return digest
    return None


def _public_host() -> str:
    """The host printed in codes: ``SUYUAN_PUBLIC_HOST`` if configured, else this request's."""
    configured = current_app.config.get("SUYUAN_PUBLIC_HOST") or current_app.config.get(
        "SUYUAN_ENV", {}
    ).get("SUYUAN_PUBLIC_HOST")
    return check_host(str(configured or request.host))


def _place(form: Any, message: str, rules: Sequence[tuple[str, Any]]) -> None:
    """Put a ledger refusal next to the first field whose pattern its text matches, else at
    the top of the form."""
    for pattern, target in rules:
        if re.search(pattern, message):
            target.errors.append(message)
            return
    form.form_errors.append(message)


def _sign(kind: str, body: Mapping[str, Any]) -> tuple[Entry | None, Error | None]:
    """Dry-run, then append (all or nothing): the new entry, or the ledger's reason."""
    problem = signing.check([(kind, body)])[0]
    if problem is not None:
        return None, problem
    try:
        return signing.append([(kind, body)])[0], None
    except Error as exc:  # a write that raced past the dry run: the same rules refused it
        return None, exc


def _add_errors(field: Any, *messages: str) -> None:
    field.errors = [*field.errors, *messages]


# --- scan statistics -----------------------------------------------------------------------
# Totals and the clone check are web.scans's, so the portal flags exactly the codes whose
# product page warns consumers.


def _clone(stats: ScanStats, summary: Mapping[str, Any]) -> CloneCheck:
    return clone_check(current_app, stats, int(summary["quantity"]), str(summary["unit"]))


# --- dashboard -------------------------------------------------------------------------------


def _lot_view(row: Mapping[str, Any]) -> dict[str, Any]:
    gtin = row["gtin"] or None
    return {
        "gtin": gtin,
        "lot": row["lot"],
        "path": gs1.batch_path(gtin, row["lot"]),
        "product": row["product_zh"],
        "product_en": row["product_en"],
        "quantity": row["quantity"],
        "remaining": row["remaining"],
        "unit": row["unit"],
        "produced": row["produced"],
        "status": row["status"],
        "inspection": row["inspection"],
        "disposition": row["disposition"],
        "recalled_seq": row["recalled_seq"],
        "registered_seq": row["registered_seq"],
    }


@bp.get("/")
@role_required("producer")
def dashboard() -> str:
    org = _org()
    user = current_user()
    before = request.args.get("before", type=int)
    mine = batches.c.producer == org
    query = select(batches).where(mine)
    if before is not None:
        query = query.where(batches.c.registered_seq < before)
    order = (batches.c.registered_seq.desc(), batches.c.gtin, batches.c.lot)
    with instance().engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query.order_by(*order).limit(PAGE)).mappings()]
        more = None
        if len(rows) == PAGE:
            # A page ends on a whole registration: a transformation's outputs share one seq.
            last = rows[-1]["registered_seq"]
            rows = [r for r in rows if r["registered_seq"] != last] + [
                dict(r)
                for r in conn.execute(
                    select(batches).where(mine, batches.c.registered_seq == last).order_by(*order)
                ).mappings()
            ]
            older = conn.execute(
                select(func.count())
                .select_from(batches)
                .where(mine, batches.c.registered_seq < last)
            ).scalar_one()
            more = last if older else None
        lots = [_lot_view(r) for r in rows]
        counts = {
            status: n
            for status, n in conn.execute(
                select(batches.c.status, func.count()).where(mine).group_by(batches.c.status)
            ).all()
        }
    stats = scan_stats(instance().engine, [item["path"] for item in lots])
    for item in lots:
        item["scans"] = stats[item["path"]]
        item["clone"] = _clone(item["scans"], item)
    return render_template(
        "producer/dashboard.html",
        org=org,
        lots=lots,
        counts=counts,
        more=more,
        first_page=before is None,
        can_sign=bool(user is not None and user.can_sign),
    )


# --- one lot -------------------------------------------------------------------------------


@bp.get("/lot")
@role_required("producer")
def lot() -> str:
    org = _org()
    key = _key_from_args()
    with instance().engine.connect() as conn:
        summary = _own(conn, key, org)
        view = batch_view(conn, summary["batch"])
    shares = [
        (h["household"], s["share_permille"])
        for h in view["auditor"]["households"]
        for s in h["supplied"]
        if s["batch"] == summary["batch"]
    ]
    return render_template(
        "producer/lot.html",
        s=summary,
        view=view,
        shares=shares,
        clone=clone_suspect(current_app, summary["path"], summary["quantity"], summary["unit"]),
        layouts=LAYOUTS,
        levels=LABEL_LEVELS,
    )


@bp.get("/lot/scans")
@role_required("producer")
def lot_scans() -> str:
    org = _org()
    key = _key_from_args()
    with instance().engine.connect() as conn:
        summary = _own(conn, key, org)
        days = conn.execute(
            select(scans.c.day, scans.c.scans, scans.c.visitors)
            .where(scans.c.code == summary["path"])
            .order_by(scans.c.day.desc())
            .limit(366)
        ).all()
    clone = clone_suspect(current_app, summary["path"], summary["quantity"], summary["unit"])
    return render_template(
        "producer/scans.html",
        s=summary,
        days=[{"day": d, "scans": n, "visitors": v} for d, n, v in days],
        clone=clone,
        grams_per_unit=scans_setting(current_app, "SUYUAN_CLONE_GRAMS_PER_UNIT"),
    )


@bp.get("/lot/qr.<fmt>")
@role_required("producer")
def lot_qr(fmt: str) -> Response:
    """One code for a lot, PNG (300 dpi) or SVG, :data:`DEFAULT_SIZE_MM` wide."""
    if fmt not in ("png", "svg"):
        abort(404)
    org = _org()
    key = _key_from_args()
    level = request.args.get("level", "M")
    if level not in LABEL_LEVELS:
        raise InvalidInput(
            _("Error correction is one of %(levels)s.", levels=", ".join(LABEL_LEVELS))
        )
    with instance().engine.connect() as conn:
        summary = _own(conn, key, org)
        seq = int(summary["registered_seq"])
        url = batch_url(_public_host(), summary["gtin"], summary["lot"], entry_leaf_hash(conn, seq))
    code = make_code(url, level=level, size_mm=DEFAULT_SIZE_MM)
    if fmt == "png":
        response = Response(png_bytes(code, size_mm=DEFAULT_SIZE_MM), mimetype="image/png")
    else:
        response = Response(svg_bytes(code, size_mm=DEFAULT_SIZE_MM), mimetype="image/svg+xml")
    response.headers["Content-Disposition"] = f'attachment; filename="suyuan-{seq}.{fmt}"'
    return response


# --- register a lot ---------------------------------------------------------------------------


def _registration_body(form: RegisterBatchForm, org: str) -> dict[str, Any]:
    origin = {
        part: getattr(form, part).data
        for part in ("province", "city", "county", "township", "village", "division_code")
        if getattr(form, part).data
    }
    product = {"zh": form.product_zh.data}
    if form.product_en.data:
        product["en"] = form.product_en.data
    body: dict[str, Any] = {
        "lot": form.lot.data,
        "product": product,
        "origin": origin,
        "producer": org,
        "households": [
            {"household": r.code, "share_permille": r.share} for r in form.household_rows
        ],
        "produced": form.produced.data.isoformat(),
        "quantity": form.quantity.number,
        "unit": form.unit.data,
    }
    if form.gtin14:
        body["gtin"] = form.gtin14
    if form.net_quantity.number is not None:
        body["net_content"] = {"quantity": form.net_quantity.number, "unit": form.net_unit.data}
    inspections = []
    for row in form.inspections:
        sub = row.form
        if sub.filled():
            inspections.append(
                {
                    "lab": sub.lab.data,
                    "result": sub.result.data,
                    "date": sub.date.data.isoformat(),
                    "report_sha256": sub.report_sha256.data,
                }
            )
    if inspections:
        body["inspections"] = inspections
    certifications = []
    for row in form.certifications:
        sub = row.form
        if sub.filled():
            item = {"scheme": sub.scheme.data, "number": sub.number.data}
            if sub.valid_until.data:
                item["valid_until"] = sub.valid_until.data.isoformat()
            certifications.append(item)
    if certifications:
        body["certifications"] = certifications
    return body


def _store_reports(form: RegisterBatchForm) -> bool:
    ok = True
    for row in form.inspections:
        sub = row.form
        if not sub.filled():
            continue
        try:
            digest = _store_upload(sub.report.data, sub.report_sha256.data)
        except InvalidInput as exc:
            _add_errors(sub.report, str(exc))
            sub.report_sha256.data = ""
            ok = False
            continue
        sub.report_sha256.data = digest or ""
    return ok


def _unknown_households(form: RegisterBatchForm) -> bool:
    """Name every household the ledger does not know, by line (the rules stop at the first)."""
    codes = [r.code for r in form.household_rows]
    with instance().engine.connect() as conn:
        known = set(
            conn.execute(select(households.c.code).where(households.c.code.in_(codes))).scalars()
        )
    missing = [r for r in form.household_rows if r.code not in known]
    _add_errors(
        form.households,
        *[
            _(
                "Line %(n)d: household %(code)s is not registered in the ledger (no 建档立卡 "
                "record, household.identified); check the code with the village.",
                n=r.line,
                code=r.code,
            )
            for r in missing
        ],
    )
    return not missing


def _registration_rules(form: RegisterBatchForm) -> list[tuple[str, Any]]:
    """Where the ledger's reasons go; most specific first.  ``inspections[n]`` counts the
    rows that were filled in, as the body lists them."""
    rules: list[tuple[str, Any]] = []
    filled = [row for row in form.inspections if row.form.filled()]
    for position, row in enumerate(filled):
        rules.append((rf"inspections\[{position}\].*date", row.form.date))
        rules.append((rf"inspections\[{position}\]", row.form.lab))
    rules += [
        (r"certific", form.certifications),
        (r"\.gtin|GTIN .*check digit", form.gtin),
        (r"\.lot|differs from lot|already registered", form.lot),
        (r"household", form.households),
        (r": product", form.product_zh),
        (r": origin", form.province),
        (r"produced", form.produced),
        (r"net_content", form.net_quantity),
        (r": quantity", form.quantity),
        (r": unit", form.unit),
    ]
    return rules


@bp.route("/batches/new", methods=["GET", "POST"])
@limiter.limit(write_limit, methods=["POST"])
@role_required("producer")
def register() -> str | Response | tuple[str, int]:
    org = _org()
    form = RegisterBatchForm()
    if request.method == "GET":
        form.produced.data = _today()
        return render_template("producer/register.html", form=form, org=org)
    signing_user()
    valid = form.validate()
    stored = _store_reports(form)  # kept even when other fields are wrong: no second upload
    known = _unknown_households(form)
    if valid and stored and known:
        body = _registration_body(form, org)
        entry, problem = _sign("batch.registered", body)
        if entry is not None:
            message = _(
                "Lot %(lot)s registered in the ledger at seq %(seq)d.",
                lot=body["lot"],
                seq=entry.seq,
            )
            flash(message, "info")
            return redirect(lot_url("producer.lot", body.get("gtin"), body["lot"]))
        _place(form, str(problem), _registration_rules(form))
    return render_template("producer/register.html", form=form, org=org, failed=True), 400


# --- record an event ---------------------------------------------------------------------------


def _event_body(form: EventForm, key: BatchKey, report: str | None) -> dict[str, Any]:
    chosen = split_step(form.step.data)
    assert chosen is not None
    step, disposition = chosen
    moment = form.time.data.replace(second=0, microsecond=0)
    body: dict[str, Any] = {
        "batch": ref_json(key),
        "biz_step": step,
        "disposition": disposition,
        "time": moment.strftime("%Y-%m-%dT%H:%M:%S") + "+08:00",
        "read_point": form.read_point.data,
    }
    if form.tenths is not None:
        body["temperature_dc"] = form.tenths
    if step == "inspecting":
        body["inspection"] = {
            "lab": form.inspection_lab.data,
            "result": "fail" if disposition == "non_conformant" else "pass",
            "date": form.inspection_date.data.isoformat(),
            "report_sha256": report,
        }
    if form.note.data and form.note.data.strip():
        body["note"] = form.note.data
    return body


@bp.route("/event", methods=["GET", "POST"])
@limiter.limit(write_limit, methods=["POST"])
@role_required("producer")
def event() -> str | Response | tuple[str, int]:
    org = _org()
    form = EventForm()
    with instance().engine.connect() as conn:
        form.batch.choices = _lot_choices(conn, org)
        if request.method == "GET":
            if request.args.get("lot"):
                wanted = _key_from_args()
                _own(conn, wanted, org)
                form.batch.data = ref_value(*wanted)
            form.time.data = datetime.now(CHINA).replace(second=0, microsecond=0, tzinfo=None)
            return render_template("producer/event.html", form=form)
        signing_user()
        valid = form.validate()
        key: BatchKey | None = None
        with contextlib.suppress(InvalidInput):
            key = parse_ref(form.batch.data)
        if key is not None and not _owner_check(conn, [key], org):
            _add_errors(form.batch, _("This lot is not registered."))
            key = None
        elif key is None:
            _add_errors(form.batch, _("Choose one of your lots."))
    report: str | None = None
    if form.inspecting():  # kept even when other fields are wrong: no second upload
        try:
            report = _store_upload(form.inspection_report.data, form.inspection_report_sha256.data)
        except InvalidInput as exc:
            _add_errors(form.inspection_report, str(exc))
            valid = False
        form.inspection_report_sha256.data = report or ""
    if valid and key is not None:
        body = _event_body(form, key, report)
        entry, problem = _sign("batch.event", body)
        if entry is not None:
            flash(_("Event recorded in the ledger at seq %(seq)d.", seq=entry.seq), "info")
            return redirect(lot_url("producer.lot", key[0], key[1]))
        rules = [
            (r"event time|: time", form.time),
            (r"read_point", form.read_point),
            (r"temperature", form.temperature),
            (r"inspection\b.*date", form.inspection_date),
            (r"inspector|re-inspection", form.step),
            (r": inspection", form.inspection_lab),
        ]
        _place(form, str(problem), rules)
    return render_template("producer/event.html", form=form, failed=True), 400


# --- split and merge ------------------------------------------------------------------------


def _measure(quantity: int, unit: str, net: tuple[int, str] | None) -> tuple[str, int]:
    """As the ledger compares quantities: grams, millilitres, or a counted unit."""
    if unit in MEASURE_UNITS:
        dimension, factor = MEASURE_UNITS[unit]
        return dimension, quantity * factor
    if net is not None:
        dimension, factor = MEASURE_UNITS[net[1]]
        return dimension, quantity * net[0] * factor
    return f"count:{unit}", quantity


def _amount(dimension: str, amount: int) -> str:
    unit = {"mass": "g", "volume": "ml"}.get(dimension, dimension.removeprefix("count:"))
    return f"{amount:,} {unit}"


def _check_inputs(
    form: TransformForm, rows: Mapping[BatchKey, Any], day: date | None
) -> list[tuple[str, int]]:
    """Row errors for unknown, used-up, recalled or destroyed inputs; their measures."""
    measures: list[tuple[str, int]] = []
    for index, key, quantity in form.input_rows:
        field = form.inputs[index].form
        row = rows.get(key)
        if row is None:
            _add_errors(field.batch, _("This lot is not registered."))
            continue
        if row["destroyed_seq"] is not None:
            _add_errors(
                field.batch,
                _("This lot was destroyed (seq %(seq)d).", seq=row["destroyed_seq"]),
            )
        elif row["recalled_seq"] is not None:
            _add_errors(
                field.batch,
                _(
                    "This lot was recalled (seq %(seq)d): nothing may be made from it.",
                    seq=row["recalled_seq"],
                ),
            )
        if quantity > row["remaining"]:
            _add_errors(
                field.quantity,
                _(
                    "Only %(left)d %(unit)s of this lot are left (of %(total)d); you entered "
                    "%(n)d. Quantities are in the input lot's own unit.",
                    left=row["remaining"],
                    unit=row["unit"],
                    total=row["quantity"],
                    n=quantity,
                ),
            )
        if day is not None and day.isoformat() < row["produced"]:
            _add_errors(
                form.date,
                _(
                    "The date is before lot %(lot)s was produced (%(produced)s).",
                    lot=key[1],
                    produced=row["produced"],
                ),
            )
        net = None if row["net_quantity"] is None else (row["net_quantity"], row["net_unit"])
        measures.append(_measure(quantity, row["unit"], net))
    return measures


def _check_balance(form: TransformForm, ins: list[tuple[str, int]]) -> None:
    outs = []
    for _index, item in form.output_rows:
        net = item.get("net_content")
        outs.append(
            _measure(
                item["quantity"],
                item["unit"],
                None if net is None else (net["quantity"], net["unit"]),
            )
        )
    dimensions = {d for d, _a in ins + outs}
    if len(dimensions) > 1:
        form.form_errors.append(
            _(
                "The ledger cannot compare these quantities (%(dims)s). Give counted units "
                "(boxes, bags) their net content, e.g. 5 kg per box, so it can check the new "
                "lots hold no more than the inputs supplied; mass cannot be compared with "
                "volume.",
                dims=", ".join(sorted(d.removeprefix("count:") for d in dimensions)),
            )
        )
        return
    total_in, total_out = sum(a for _d, a in ins), sum(a for _d, a in outs)
    if dimensions and total_out > total_in:
        dim = next(iter(dimensions))
        form.form_errors.append(
            _(
                "The new lots hold %(out)s, more than the %(in)s the inputs supply. A split or "
                "merge may lose weight (sorting, drying, trimming) but never gain it: check the "
                "quantities, units and net contents.",
                out=_amount(dim, total_out),
                **{"in": _amount(dim, total_in)},
            )
        )


def _transform_body(form: TransformForm) -> dict[str, Any]:
    outputs = []
    for _index, item in form.output_rows:
        out = {k: v for k, v in item.items() if k != "gtin"}
        if "gtin" in item:
            out["gtin"] = item["gtin"]
        outputs.append(out)
    return {
        "inputs": [
            {"batch": ref_json(key), "quantity": quantity} for _i, key, quantity in form.input_rows
        ],
        "outputs": outputs,
        "date": form.date.data.isoformat(),
        "process": form.work.data,
    }


def _transform_rules(form: TransformForm) -> list[tuple[str, Any]]:
    """Where the ledger's reasons go: ``inputs[n]``/``outputs[n]`` count the filled rows."""
    rules: list[tuple[str, Any]] = []
    for position, (index, key, _quantity) in enumerate(form.input_rows):
        named = re.escape(f"input lot {key[1]!r}")
        rules.append((rf"inputs\[{position}\]|{named}", form.inputs[index].form.batch))
    for position, (index, item) in enumerate(form.output_rows):
        named = re.escape(f"lot {item['lot']!r}")
        rules.append((rf"outputs\[{position}\]|{named}", form.outputs[index].form.lot))
    rules.append((r": date", form.date))
    rules.append((r": process", form.work))
    return rules


@bp.route("/transform", methods=["GET", "POST"])
@limiter.limit(write_limit, methods=["POST"])
@role_required("producer")
def transform() -> str | Response | tuple[str, int]:
    org = _org()
    form = TransformForm()
    adding = request.method == "POST" and (
        "add_input" in request.form or "add_output" in request.form
    )
    if adding:
        grow = form.inputs if "add_input" in request.form else form.outputs
        if len(grow) < grow.max_entries:
            grow.append_entry()
    with instance().engine.connect() as conn:
        choices = _lot_choices(conn, org)
        for row in form.inputs:
            row.form.batch.choices = choices
        if request.method == "GET":
            if request.args.get("lot"):
                wanted = _key_from_args()
                _own(conn, wanted, org)
                form.inputs[0].form.batch.data = ref_value(*wanted)
            form.date.data = _today()
        if request.method == "GET" or adding:
            return render_template("producer/transform.html", form=form)
        signing_user()
        valid = form.validate()
        rows = _owner_check(conn, [key for _i, key, _q in form.input_rows], org)
    if valid:
        measures = _check_inputs(form, rows, form.date.data)
        if not form.errors and not any(row.form.errors for row in form.inputs):
            _check_balance(form, measures)
        if (
            not form.form_errors
            and not form.errors
            and not any(row.form.errors for row in form.inputs)
        ):
            body = _transform_body(form)
            entry, problem = _sign("batch.transformed", body)
            if entry is not None:
                outputs = body["outputs"]
                message = _(
                    "Recorded at seq %(seq)d: %(n)d new lot(s).", seq=entry.seq, n=len(outputs)
                )
                flash(message, "info")
                return redirect(lot_url("producer.lot", outputs[0].get("gtin"), outputs[0]["lot"]))
            _place(form, str(problem), _transform_rules(form))
    return render_template("producer/transform.html", form=form, failed=True), 400


# --- labels -------------------------------------------------------------------------------------


def _label_lots(conn: Connection, org: str) -> list[Mapping[str, Any]]:
    return [r for r in _own_rows(conn, org, usable=True) if r["recalled_seq"] is None]


@bp.route("/labels", methods=["GET", "POST"])
@limiter.limit(write_limit, methods=["POST"])
@role_required("producer")
def labels() -> str | Response | tuple[str, int]:
    org = _org()
    form = LabelsForm()
    with instance().engine.connect() as conn:
        own = _label_lots(conn, org)
        names = {ref_value(r["gtin"], r["lot"]): _choice_label(r) for r in own}
        if request.method == "GET":
            wanted = ""
            if request.args.get("lot"):
                key = _key_from_args()
                _own(conn, key, org)
                wanted = ref_value(*key)
            per_sheet = LAYOUTS["3x8"].per_sheet
            for r in own:
                form.rows.append_entry()
                sub = form.rows[-1].form
                sub.ref.data = ref_value(r["gtin"], r["lot"])
                sub.copies.data = str(per_sheet) if sub.ref.data == wanted else ""
            return render_template("producer/labels.html", form=form, names=names)
        if form.validate():
            found = _owner_check(conn, [key for key, _n in form.chosen], org)
            labels_out: list[LabelData] = []
            host = _public_host()
            for row in form.rows:
                sub = row.form
                if not sub.copies.number:
                    continue
                key = parse_ref(sub.ref.data)
                item = found.get(key)
                if item is None:
                    _add_errors(sub.copies, _("This lot is not registered."))
                    continue
                if item["recalled_seq"] is not None or item["destroyed_seq"] is not None:
                    _add_errors(
                        sub.copies,
                        _("This lot was recalled or destroyed: print no labels for it."),
                    )
                    continue
                seq = int(item["registered_seq"])
                url = batch_url(host, item["gtin"] or None, item["lot"], entry_leaf_hash(conn, seq))
                data = LabelData(url, item["product_zh"], item["lot"], item["produced"], seq)
                labels_out += [data] * sub.copies.number
            if labels_out and not any(row.form.errors for row in form.rows):
                try:
                    pdf = render_labels(
                        labels_out, layout_name=form.layout.data, level=form.level.data
                    )
                except InvalidInput as exc:
                    form.form_errors.append(str(exc))
                else:
                    response = Response(pdf, mimetype="application/pdf")
                    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
                    response.headers["Content-Disposition"] = (
                        f'attachment; filename="suyuan-labels-{stamp}.pdf"'
                    )
                    return response
    return render_template("producer/labels.html", form=form, names=names), 400


# --- recall ------------------------------------------------------------------------------------
# Two steps: the form (reason, evidence) → a confirmation naming every lot the recall will mark
# (the ledger marks all descendants at the same seq, and a recall cannot be undone) → append.
# Evidence files are stored when first uploaded and carried to the later steps by hash.

_MEDIA_TYPE = re.compile(r"^[a-z]+/[A-Za-z0-9.+-]{1,100}$")
MAX_DOC_NAME = 200


def _doc_name(filename: str) -> str:
    """The uploaded file's own name (no client path), at most :data:`MAX_DOC_NAME` characters
    with its extension kept."""
    name = re.split(r"[/\\]", filename)[-1].strip() or _("document")
    if len(name) > MAX_DOC_NAME:
        stem, dot, ext = name.rpartition(".")
        ext = dot + ext if stem and len(ext) < 16 else ""
        name = name[: MAX_DOC_NAME - len(ext)] + ext
    return name


def _media_type(upload: FileStorage) -> str:
    for candidate in (upload.mimetype, mimetypes.guess_type(upload.filename or "")[0]):
        if candidate and _MEDIA_TYPE.fullmatch(candidate.lower()):
            return candidate.lower()
    return "application/octet-stream"


def _kept_documents(form: RecallForm) -> tuple[list[dict[str, Any]], list[str]]:
    """Evidence records of the documents carried from an earlier step (and still ticked);
    their size is the stored blob's, whatever the form says."""
    records: list[dict[str, Any]] = []
    errors: list[str] = []
    store = _blobs()
    for row in form.kept:
        sub = row.form
        if not sub.keep.data:
            continue
        name = str(sub.name.data or "")
        try:
            digest = check_digest(str(sub.sha256.data or ""))
            data = store.get(digest)
        except NotFound:
            errors.append(
                _("The document %(name)s uploaded earlier is gone: attach it again.", name=name)
            )
            continue
        except InvalidInput:
            errors.append(
                _("A document carried from the earlier step is malformed: attach it again.")
            )
            continue
        media_type = str(sub.media_type.data or "")
        if not _MEDIA_TYPE.fullmatch(media_type):
            media_type = "application/octet-stream"
        records.append(
            {
                "sha256": digest,
                "name": name[:MAX_DOC_NAME] or _("document"),
                "media_type": media_type,
                "size": len(data),
            }
        )
    return records, errors


def _new_documents(form: RecallForm) -> tuple[list[dict[str, Any]], list[str]]:
    """Store the files uploaded with this request (each under its SHA-256)."""
    records: list[dict[str, Any]] = []
    errors: list[str] = []
    for upload in form.evidence.data or []:
        if not isinstance(upload, FileStorage) or not upload.filename:
            continue
        data = upload.read()
        if not data:
            errors.append(_("The file %(name)s is empty.", name=upload.filename))
            continue
        try:
            records.append(
                evidence_document(_blobs(), data, _doc_name(upload.filename), _media_type(upload))
            )
        except InvalidInput as exc:
            errors.append(
                _("The file %(name)s cannot be kept: %(why)s", name=upload.filename, why=str(exc))
            )
    return records, errors


def _collect_evidence(form: RecallForm) -> tuple[list[dict[str, Any]], bool]:
    """Kept and new documents (one record per hash), re-listed in ``form.kept`` so a form shown
    again need not ask for the files again; False with errors on the evidence field."""
    kept, kept_errors = _kept_documents(form)
    new, new_errors = _new_documents(form)
    records: dict[str, dict[str, Any]] = {}
    for record in kept + new:
        records.setdefault(record["sha256"], record)
    documents = list(records.values())
    errors = kept_errors + new_errors
    if len(documents) > MAX_EVIDENCE:
        errors.append(
            _(
                "At most %(max)d evidence documents per recall; there are %(n)d. Put several "
                "pages in one PDF.",
                max=MAX_EVIDENCE,
                n=len(documents),
            )
        )
    while form.kept.entries:
        form.kept.pop_entry()
    for record in documents[:MAX_EVIDENCE]:
        form.kept.append_entry(
            {
                "sha256": record["sha256"],
                "name": record["name"],
                "media_type": record["media_type"],
                "keep": True,
            }
        )
    _add_errors(form.evidence, *errors)
    return documents, not errors


def _recall_body(key: BatchKey, reason: str, documents: list[dict[str, Any]]) -> dict[str, Any]:
    body: dict[str, Any] = {"batch": ref_json(key), "reason": reason}
    if documents:
        body["evidence"] = documents
    return body


def _derived(conn: Connection, summary: Mapping[str, Any]) -> dict[str, Any]:
    """Every lot made from this one (at any depth, as far as :data:`MAX_DEPTH` goes), and which
    of them the recall will mark: those not recalled already (a recalled lot's descendants
    already carry that earlier recall)."""
    graph = provenance(conn, summary["batch"], depth=MAX_DEPTH)
    lots = [n for n in graph["nodes"] if n["distance"] > 0]
    return {
        "lots": lots,
        "marked": [n for n in lots if n["recalled_seq"] is None],
        "truncated": graph["truncated"],
        "depth": MAX_DEPTH,
    }


def _recall_page(
    summary: Mapping[str, Any], form: RecallForm, status: int = 200, **extra: Any
) -> tuple[str, int]:
    html = render_template(
        "producer/recall.html",
        s=summary,
        form=form,
        max_upload=current_app.config.get("MAX_CONTENT_LENGTH"),
        **extra,
    )
    return html, status


def _recalled_flash(summary: Mapping[str, Any], entry: Entry) -> None:
    with instance().engine.connect() as conn:
        marked = conn.execute(
            select(func.count()).select_from(batches).where(batches.c.recalled_seq == entry.seq)
        ).scalar_one()
    message = _(
        "Lot %(lot)s recalled in the ledger at seq %(seq)d, with %(n)d lot(s) made from it.",
        lot=summary["lot"],
        seq=entry.seq,
        n=int(marked) - 1,
    )
    link = Markup('{} <a href="{}">{}</a>').format(
        message, summary["path"], _("See the public page with the recall notice.")
    )
    flash(link, "info")


@bp.route("/recall", methods=["GET", "POST"])
@limiter.limit(write_limit, methods=["POST"])
@role_required("producer")
def recall() -> str | Response | tuple[str, int]:
    """Recall one of the organisation's lots (``batch.recalled``).

    The lot is the one the URL names (an edited form cannot point elsewhere); POST steps:
    ``review`` (validate, store the evidence, dry run, show the lots it will mark),
    ``edit`` (back to the form, documents kept) and ``confirm`` (sign and append).
    """
    org = _org()
    key = _key_from_args()
    if request.method == "POST":
        signing_user()
    with instance().engine.connect() as conn:
        summary = _own(conn, key, org)
    form = RecallForm()
    if summary["recalled_seq"] is not None:
        form.form_errors.append(_already_recalled(summary))
        return _recall_page(summary, form, 409 if request.method == "POST" else 200, closed=True)
    if request.method == "GET" or "edit" in request.form:
        if request.method == "POST":
            _collect_evidence(form)
        return _recall_page(summary, form)
    valid = form.validate()
    documents, stored = _collect_evidence(form)  # kept even when the reason is missing
    if not (valid and stored):
        return _recall_page(summary, form, 400, failed=True)
    body = _recall_body(key, form.reason.data, documents)
    rules = [(r"reason", form.reason), (r"evidence", form.evidence)]
    if "confirm" in request.form:
        entry, problem = _sign("batch.recalled", body)
        if entry is not None:
            _recalled_flash(summary, entry)
            return redirect(lot_url("producer.lot", key[0], key[1]))
    else:
        problem = signing.check([("batch.recalled", body)])[0]
        if problem is None:
            with instance().engine.connect() as conn:
                derived = _derived(conn, summary)
            return _recall_page(summary, form, confirm=True, documents=documents, derived=derived)
    _place(form, str(problem), rules)
    return _recall_page(summary, form, 400, failed=True)


def _already_recalled(summary: Mapping[str, Any]) -> str:
    with instance().engine.connect() as conn:
        cause = conn.execute(
            select(batches.c.recall_gtin, batches.c.recall_lot).where(
                batches.c.gtin == (summary["gtin"] or ""), batches.c.lot == summary["lot"]
            )
        ).first()
    text: str = _(
        "Lot %(lot)s is already recalled (seq %(seq)d): a lot is recalled only once, and a "
        "recall stays in force for ever. To add information, comment on the recall entry.",
        lot=summary["lot"],
        seq=summary["recalled_seq"],
    )
    if cause is not None and cause[1] is not None and cause[1] != summary["lot"]:
        text += " " + _(
            "It was recalled through lot %(lot)s, which it was made from.", lot=cause[1]
        )
    return text
