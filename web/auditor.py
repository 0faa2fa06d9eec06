"""``/audit/…``: the auditor portal — fund trails, the anomaly report, checkpoints,
"prove nothing changed since my last audit", full-ledger verification and exports.

Who sees what (server-side checks on every view):

* **Readers** — ``auditor``, ``admin``, ``finance_officer`` and the county,
  township and village approvers — see every fund trail, payment page,
  checkpoint, consistency check and export, and the anomaly report *without*
  the refused attempts.  Officials read the trails of the money they handle;
  everything they see here is public on the ledger anyway.
* **Auditors** — ``auditor`` and ``admin`` — also see the refused attempts
  (over-spends, duplicate payments: signed statements the rules refused, kept
  beside the ledger) and run the full-ledger verification.

Money is integer fen throughout; :func:`yuan` formats it without floats.  Every
number on a page links to the entry behind it (``/e/<seq>``, which carries the
browser's verification panel) and to its inclusion proof (``/api/v1/entries/<seq>``).
Tables download as CSV or XLSX through :func:`export_query`, which renders the
registered query exactly as the JSON API does (``ledger.queries.render``).
"""

from __future__ import annotations

import base64
import contextlib
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from sqlalchemy import select
from werkzeug.wrappers import Response
from wtforms import TextAreaField
from wtforms.validators import Length, Optional

from ledger.checkpoint import Checkpoint, verify_checkpoint
from ledger.db import read_snapshot
from ledger.domain import catalog as _catalog  # noqa: F401  (registers the queries)
from ledger.domain.common import yuan_text
from ledger.domain.funds import fund_allocations
from ledger.errors import Error, InvalidInput, NotFound, VerificationError
from ledger.log import Log, StoredCheckpoint
from ledger.merkle import EMPTY_ROOT, verify_consistency
from ledger.queries import QUERIES, Query, render
from ledger.tabular import write_csv, write_xlsx
from ledger.verify import default_workers
from web import jobs
from web.auth import current_user, role_required
from web.errors import classify
from web.extensions import instance, limiter, reader, write_limit

bp = Blueprint("auditor", __name__, url_prefix="/audit")

#: Roles that may read the portal.
READERS = (
    "auditor",
    "admin",
    "finance_officer",
    "county_approver",
    "township_approver",
    "village_approver",
)
#: Roles that also see refusals and run the full verification.
AUDITORS = ("auditor", "admin")
#: The anomaly report's lists of refused attempts (auditors only).
REFUSALS = ("overspend_attempts", "duplicate_payment_attempts")
#: An uploaded or pasted checkpoint may be at most this long (a note with many cosignatures).
MAX_CHECKPOINT_BYTES = 64 * 1024
MEDIA = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "json": "application/json",
}
_SEQ_REF = re.compile(r"\bseq ([0-9]{1,16})\b")


# --- helpers ------------------------------------------------------------------------------


def yuan(fen: int | None) -> str:
    """``123456`` fen → ``"1,234.56"`` (integer arithmetic only; no floats anywhere)."""
    if fen is None:
        return "—"
    if isinstance(fen, bool) or not isinstance(fen, int):
        raise InvalidInput(f"expected an amount in fen (int), found {type(fen).__name__}")
    return yuan_text(fen)


def is_auditor() -> bool:
    user = current_user()
    return user is not None and user.role in AUDITORS


def seq_refs(text: str | None) -> list[int]:
    """The seqs a refusal's reason names ("… last changed at seq 366"), in order, once each."""
    seen: list[int] = []
    for found in _SEQ_REF.finditer(text or ""):
        seq = int(found.group(1))
        if seq not in seen:
            seen.append(seq)
    return seen


def clean(params: Mapping[str, Any]) -> dict[str, Any]:
    """Drop empty values (a trail group's place is ``""`` for organisations)."""
    return {k: v for k, v in params.items() if v is not None and v != ""}


def query_params(query: Query) -> dict[str, str | None]:
    """The query's own parameters from the request (others, like ``lang``, are not its)."""
    raw: dict[str, str | None] = {}
    for param in query.params:
        values = request.args.getlist(param.name)
        if len(values) > 1:
            raise InvalidInput(f"parameter {param.name!r} given {len(values)} times")
        if values:
            raw[param.name] = values[0]
    return raw


def run_query(name: str, raw: Mapping[str, str | None]) -> Any:
    with read_snapshot(reader().engine) as conn:  # totals and rows agree
        return QUERIES[name](conn, raw)


def hide_refusals(result: dict[str, Any]) -> dict[str, Any]:
    """The anomaly report as a non-auditor sees it: the refused attempts left out."""
    return {**result, **{name: [] for name in REFUSALS}}


@bp.context_processor
def _helpers() -> dict[str, Any]:
    return {
        "yuan": yuan,
        "is_auditor": is_auditor(),
        "seq_refs": seq_refs,
        "clean": clean,
        "export_url": lambda name, **params: url_for(
            "auditor.export_query", name=name, **clean(params)
        ),
    }


@bp.errorhandler(Error)
def _error(exc: Error) -> tuple[str, int]:
    status, code = classify(exc)
    try:
        latest = reader().latest_checkpoint()
    except Error:  # the log itself may be what failed
        latest = None
    page = render_template(
        "auditor/error.html", status=status, code=code, message=str(exc), latest=latest
    )
    return page, status


# --- dashboard ----------------------------------------------------------------------------


@bp.get("/")
@role_required(*READERS)
def dashboard() -> str:
    log = reader()
    latest = log.latest_checkpoint()
    balances = run_query("balances", {})
    projects = run_query("projects", {"limit": "200"})
    return render_template(
        "auditor/dashboard.html",
        latest=latest,
        sources=balances["sources"],
        totals=balances["totals"],
        projects=projects,
        crumbs=[],
    )


# --- fund trails --------------------------------------------------------------------------


def _allocation_row(allocation: str) -> Any:
    a = fund_allocations.c
    with reader().engine.connect() as conn:
        return (
            conn.execute(select(a.id, a.source, a.scope_type, a.scope).where(a.id == allocation))
            .mappings()
            .first()
        )


@bp.get("/trail")
@role_required(*READERS)
def trail() -> str:
    """The fund trail from a source, a project or a household (exactly one)."""
    query = QUERIES["fund-trail"]
    raw = query_params(query)
    result = run_query("fund-trail", raw)
    node = result["node"]
    crumbs: list[tuple[str, str | None]] = [(_("Fund sources"), url_for("auditor.dashboard"))]
    if node == "source":
        crumbs.append((result["source"]["id"], None))
    elif node == "project":
        crumbs.append((_("Project %(id)s", id=raw["project"]), None))
    else:
        crumbs.append((_("Household %(code)s", code=raw["household"]), None))
    return render_template(
        f"auditor/trail_{node}.html",
        result=result,
        params=clean(raw),
        crumbs=crumbs,
        latest=reader().latest_checkpoint(),
    )


@bp.get("/disbursements")
@role_required(*READERS)
def disbursements() -> str:
    """One page of payments: a trail group's (allocation + place), a household's or a project's."""
    query = QUERIES["disbursements"]
    raw = query_params(query)
    page = run_query("disbursements", raw)
    params = clean(raw)
    crumbs: list[tuple[str, str | None]] = [(_("Fund sources"), url_for("auditor.dashboard"))]
    allocation = _allocation_row(str(raw["allocation"])) if raw.get("allocation") else None
    if allocation is not None:
        crumbs.append((allocation["source"], url_for("auditor.trail", source=allocation["source"])))
        if allocation["scope_type"] == "project":
            crumbs.append(
                (
                    _("Project %(id)s", id=allocation["scope"]),
                    url_for("auditor.trail", project=allocation["scope"]),
                )
            )
        crumbs.append(
            (
                _("Allocation %(id)s", id=allocation["id"]),
                url_for("auditor.trail", source=allocation["source"])
                + "#alloc-"
                + allocation["id"],
            )
        )
    elif raw.get("project"):
        crumbs.append(
            (
                _("Project %(id)s", id=raw["project"]),
                url_for("auditor.trail", project=raw["project"]),
            )
        )
    elif raw.get("household"):
        crumbs.append(
            (
                _("Household %(code)s", code=raw["household"]),
                url_for("auditor.trail", household=raw["household"]),
            )
        )
    place = " ".join(str(params[k]) for k in ("county", "township", "village") if k in params)
    crumbs.append((place or _("Payments"), None))
    first_page = {k: v for k, v in params.items() if k != "after"}
    return render_template(
        "auditor/disbursements.html",
        page=page,
        params=params,
        first_page=first_page,
        crumbs=crumbs,
        page_sum=sum(int(item["amount_fen"]) for item in page["items"]),
        latest=reader().latest_checkpoint(),
    )


# --- anomalies ----------------------------------------------------------------------------


@bp.get("/anomalies")
@role_required(*READERS)
def anomalies() -> str:
    raw = query_params(QUERIES["anomalies"])
    report = run_query("anomalies", raw)
    if not is_auditor():
        report = hide_refusals(report)
    unevidenced_stages = run_query("stages-without-evidence", {})
    return render_template(
        "auditor/anomalies.html",
        report=report,
        stages=unevidenced_stages,
        params=clean(raw),
        crumbs=[(_("Anomaly report"), None)],
        latest=reader().latest_checkpoint(),
    )


# --- checkpoints --------------------------------------------------------------------------


def _int_arg(name: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 16 or not minimum <= int(raw) <= maximum:
        raise InvalidInput(
            f"parameter {name!r} must be an integer from {minimum} to {maximum}, got {raw!r}"
        )
    return int(raw)


def _checkpoint_rows(items: list[StoredCheckpoint]) -> list[dict[str, Any]]:
    return [
        {
            "size": c.size,
            "created": c.created,
            "root": _b64(c.checkpoint.root),
            "note": c.note,
        }
        for c in items
    ]


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _download(data: bytes, fmt: str, filename: str) -> Response:
    response = Response(data, mimetype=MEDIA[fmt])
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/checkpoints")
@role_required(*READERS)
def checkpoints() -> str | Response:
    """The log's signed checkpoints, newest first, paged by size (``before``)."""
    log = reader()
    latest = log.latest_checkpoint()
    limit = _int_arg("limit", 50, 1, 500)
    before = _int_arg("before", latest.size + 1, 0, 2**53 - 1)
    items = log.checkpoints(before=before, limit=limit)
    rows = _checkpoint_rows(items)
    fmt = request.args.get("format")
    if fmt in ("csv", "xlsx"):
        buffer = io.BytesIO()
        if fmt == "csv":
            write_csv(rows, buffer)
        else:
            write_xlsx(rows, buffer, title="checkpoints")
        return _download(buffer.getvalue(), fmt, f"checkpoints.{fmt}")
    if fmt is not None:
        raise InvalidInput(f"format must be csv or xlsx, got {fmt!r}")
    return render_template(
        "auditor/checkpoints.html",
        rows=rows,
        latest=latest,
        limit=limit,
        before=before if "before" in request.args else None,
        next_before=items[-1].size if len(items) == limit and items[-1].size > 0 else None,
        crumbs=[(_("Checkpoints"), None)],
    )


def _note_download(note: str, size: int, origin: str) -> Response:
    response = Response(note, mimetype="text/plain")
    response.headers["Content-Type"] = "text/plain; charset=utf-8"
    stem = re.sub(r"[^A-Za-z0-9.-]+", "-", origin).strip("-") or "log"
    response.headers["Content-Disposition"] = f'attachment; filename="{stem}-checkpoint-{size}.txt"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/checkpoint.txt")
@role_required(*READERS)
def checkpoint_download() -> Response:
    """The newest checkpoint as a file to keep for the next audit."""
    log = reader()
    latest = log.latest_checkpoint()
    return _note_download(latest.note, latest.size, log.origin)


@bp.get("/checkpoints/<int:size>.txt")
@role_required(*READERS)
def checkpoint_note(size: int) -> Response:
    log = reader()
    return _note_download(log.checkpoint(size).note, size, log.origin)


# --- "prove nothing changed since my last audit" ------------------------------------------


class ConsistencyForm(FlaskForm):  # type: ignore[misc]
    checkpoint = TextAreaField(
        _l("Your saved checkpoint (paste it here)"),
        validators=[Optional(), Length(max=MAX_CHECKPOINT_BYTES)],
    )
    upload = FileField(_l("… or upload the checkpoint file"))


@dataclass(frozen=True)
class Consistency:
    """The outcome of checking an old checkpoint against the log as it is now.

    ``outcome``: ``consistent`` (the log extends the old tree), ``inconsistent``
    (it does not: ``reason`` says why; ``fork`` when the log signed a different
    root for the very same size) or ``ahead`` (the old checkpoint is larger than
    the log: this copy of the log is behind, or was rolled back).
    """

    outcome: str
    old: Checkpoint
    old_note: str
    new: StoredCheckpoint
    proof: list[bytes]
    reason: str | None = None
    fork: bool = False


def normalise_note(text: str) -> str:
    """Undo what pasting and saving do to a note: CRLF, a BOM, surrounding white space."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return text.strip() + "\n"


def check_consistency(log: Log, note: str) -> Consistency:
    """Verify ``note`` with the log's key and prove the log now extends it.

    Raises InvalidInput (not a checkpoint note) or VerificationError (not signed
    by this log's key, or for another origin); a checkpoint that verifies gives a
    :class:`Consistency` whatever its outcome.
    """
    old, _note = verify_checkpoint(note, log.verifier, log.origin)
    new = log.latest_checkpoint()
    size1, size2 = old.size, new.size
    if size1 > size2:
        return Consistency("ahead", old, note, new, [])
    if size1 == 0:
        if old.root != EMPTY_ROOT:
            return Consistency(
                "inconsistent", old, note, new, [], "the log signed a non-empty root for size 0"
            )
        return Consistency("consistent", old, note, new, [])
    proof = log.consistency_proof(size1, size2)
    try:
        verify_consistency(size1, size2, proof, old.root, new.checkpoint.root)
    except VerificationError as exc:
        fork = False
        with contextlib.suppress(NotFound):
            fork = log.checkpoint(size1).checkpoint.root != old.root
        return Consistency("inconsistent", old, note, new, proof, str(exc), fork)
    return Consistency("consistent", old, note, new, proof)


def _submitted_note(form: ConsistencyForm) -> str | None:
    """The checkpoint from the upload (preferred) or the text box; None if neither."""
    upload = request.files.get(form.upload.name)
    if upload is not None and upload.filename:
        data = upload.stream.read(MAX_CHECKPOINT_BYTES + 1)
        if len(data) > MAX_CHECKPOINT_BYTES:
            raise InvalidInput(
                f"the file is larger than {MAX_CHECKPOINT_BYTES // 1024} KiB; "
                "a checkpoint is a few hundred bytes"
            )
        try:
            return normalise_note(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidInput("the file is not UTF-8 text, so it is not a checkpoint") from None
    text = form.checkpoint.data or ""
    return normalise_note(text) if text.strip() else None


@bp.route("/consistency", methods=["GET", "POST"])
@limiter.limit(write_limit, methods=["POST"])
@role_required(*READERS)
def consistency() -> tuple[str, int]:
    log = reader()
    form = ConsistencyForm()
    crumbs = [(_("Prove nothing changed"), None)]
    context: dict[str, Any] = {
        "form": form,
        "crumbs": crumbs,
        "latest": log.latest_checkpoint(),
        "vkey": log.verifier.vkey,
    }
    if not form.validate_on_submit():
        status = 400 if request.method == "POST" else 200
        return render_template("auditor/consistency.html", **context), status
    try:
        note = _submitted_note(form)
        if note is None:
            raise InvalidInput("paste your saved checkpoint or choose its file")
        result = check_consistency(log, note)
    except InvalidInput as exc:
        context["problem"] = ("malformed", str(exc))
        return render_template("auditor/consistency.html", **context), 400
    except VerificationError as exc:
        context["problem"] = ("signature", str(exc))
        return render_template("auditor/consistency.html", **context), 422
    context.update(
        result=result,
        latest=result.new,
        proof=[_b64(h) for h in result.proof],
        roots=(_b64(result.old.root), _b64(result.new.checkpoint.root)),
    )
    return render_template("auditor/consistency.html", **context), 200


# --- full-ledger verification -------------------------------------------------------------


class StartForm(FlaskForm):  # type: ignore[misc]
    """Nothing but the CSRF token."""


def _jobs_folder() -> Any:
    return jobs.jobs_dir(current_app.instance_path)


def _audit_workers() -> int:
    configured = current_app.config.get("SUYUAN_AUDIT_WORKERS")
    if configured is not None:
        return int(configured)
    return max(1, default_workers() // 2)  # leave the other half of the cores to the site


@bp.get("/verify")
@role_required(*AUDITORS)
def verify_index() -> str:
    folder = _jobs_folder()
    return render_template(
        "auditor/verify.html",
        form=StartForm(),
        running=jobs.running(folder),
        recent=[jobs.public_view(j) for j in jobs.recent(folder)],
        latest=reader().latest_checkpoint(),
        vkey=reader().verifier.vkey,
        crumbs=[(_("Verify the whole ledger"), None)],
    )


@bp.post("/verify")
@limiter.limit(write_limit, methods=["POST"])
@role_required(*AUDITORS)
def verify_start() -> Response:
    form = StartForm()
    if not form.validate_on_submit():
        abort(400, description=_("The form expired or did not come from this site."))
    user = current_user()
    assert user is not None
    job, started = jobs.start(
        _jobs_folder(),
        instance().engine,
        user=user.username,
        total=reader().latest_checkpoint().size,
        workers=_audit_workers(),
    )
    if not started:
        flash(_("A verification is already running; here it is."), "info")
    return redirect(url_for("auditor.verify_job", job_id=job["id"]), code=303)


@bp.get("/verify/<job_id>.json")
@role_required(*AUDITORS)
def verify_job_json(job_id: str) -> Response:
    job = jobs.load(_jobs_folder(), job_id)
    response = jsonify(jobs.public_view(job))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/verify/<job_id>")
@role_required(*AUDITORS)
def verify_job(job_id: str) -> str:
    job = jobs.public_view(jobs.load(_jobs_folder(), job_id))
    return render_template(
        "auditor/verify_job.html",
        job=job,
        latest=reader().latest_checkpoint(),
        crumbs=[(_("Verify the whole ledger"), url_for("auditor.verify_index")), (job_id, None)],
    )


# --- exports ------------------------------------------------------------------------------


@bp.get("/export")
@role_required(*READERS)
def export_index() -> str:
    return render_template(
        "auditor/export.html",
        queries=sorted(QUERIES.values(), key=lambda q: (q.tags[:1], q.name)),
        latest=reader().latest_checkpoint(),
        crumbs=[(_("Export"), None)],
    )


@bp.get("/export/<name>")
@role_required(*READERS)
def export_query(name: str) -> Response:
    """A registered query as CSV, XLSX or JSON: the same bytes the API's ``?format=`` gives."""
    query = QUERIES.get(name)
    if query is None:
        raise NotFound(f"no query named {name!r}")
    fmt = request.args.get("format", "csv")
    if fmt not in MEDIA:
        raise InvalidInput(f"format must be csv, xlsx or json, got {fmt!r}")
    result = run_query(name, query_params(query))
    if name == "anomalies" and not is_auditor():
        result = hide_refusals(result)
    return _download(render(query, result, fmt), fmt, f"{name}.{fmt}")
