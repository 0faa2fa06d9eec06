"""The officials' portal (``/officials/``): disbursements prepared by a finance officer and
co-signed by the approvers an allocation's policy requires (双认定).

How a payment reaches the ledger:

1. A ``finance_officer`` fills in the payment form.  The ``fund.disbursed`` statement (kind,
   body, origin, created) is fixed there and then and signed at once with the officer's key;
   it is dry-run (:func:`web.drafts.dry_run`) and refused on the spot, with the ledger's own
   reason and nothing stored, if the rules would refuse it for anything but the missing
   approvals (an over-spend, a duplicate payment, an unregistered household, a milestone not
   reached …).  Otherwise it is kept as a *draft* (``web.drafts``).
2. Officials whose role the allocation's ``policy.approvals`` lists (by default a
   ``village_approver`` and a ``township_approver``) see the drafts waiting for their role,
   read them with the fund trail around them, and approve — their key signs the very same
   statement bytes — or decline with a reason.  One key signs once; a role the policy does not
   list, or one another key already filled, cannot sign.
3. When every required role has signed, the draft is appended as one all-or-nothing request.
   If the ledger refuses it then (another payment used up the allocation meanwhile), the
   draft becomes ``refused`` with the ledger's reason and nothing is written to the ledger.
   The finance officer may withdraw a pending draft.

Who may approve is the ledger's rule, and no more: the rules bind a payment's approvers to
*roles*, not to places — any active ``village_approver`` key satisfies the village approval
of any payment (``ledger/domain/funds.py``, ``_require_payment_signers``).  The portal does
not invent a stricter rule; it shows every signer's organisation beside the recipient's
village and township so that people can see who vouched for whom.  The same goes for the
allocations offered to a finance officer: the rules do not tie a finance officer to a source,
so every active allocation with money left is offered.

Every write is behind ``@role_required``, needs an active signing key (``signing_user``),
carries a CSRF token and is rate-limited.  Signing uses the signed-in user's operator-held key
(``web.extensions.author``) and never anyone else's.
"""

from __future__ import annotations

import hashlib
import secrets
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import Connection, select
from werkzeug.datastructures import FileStorage
from werkzeug.wrappers import Response
from wtforms import SelectChoice

from ledger.blobs import default_store
from ledger.domain import common
from ledger.domain.funds import (
    ACTIVE,
    APPROVER_ROLES,
    fund_allocations,
    fund_disbursements,
    fund_payments,
    fund_sources,
)
from ledger.domain.households import households
from ledger.entry import (
    SignedStatement,
    add_signatures,
    format_time,
    make_statement,
    nfc,
    sign_statement,
)
from ledger.errors import Error, InvalidEntry, InvalidInput
from ledger.rules import KeyRecord
from web import drafts
from web.auditor import yuan
from web.auth import current_user, role_required, signing_user
from web.consumer import PURPOSES
from web.errors import classify
from web.extensions import author, instance, limiter, reader, write_limit, writer
from web.forms_funds import (
    RECIPIENT_CHOICES,
    STAGE_LABELS,
    DecisionForm,
    DeclineForm,
    DisbursementForm,
    WithdrawForm,
)
from web.i18n import role_label
from web.users import User

bp = Blueprint("officials", __name__, url_prefix="/officials")

#: Everyone who may sign a payment: the finance officer and every role a policy may list.
OFFICIALS = APPROVER_ROLES
PREPARERS = ("finance_officer",)
#: Dates people type are China Standard Time.
CHINA = timezone(timedelta(hours=8))
#: Allocations offered in one select (newest first).
MAX_CHOICES = 500
HISTORY = 20
KIND = "fund.disbursed"
STATUS_WORDS = {
    drafts.PENDING: _l("waiting for approvals"),
    drafts.APPENDING: _l("being appended"),
    drafts.APPENDED: _l("in the ledger"),
    drafts.REFUSED: _l("refused by the ledger"),
    drafts.DECLINED: _l("declined"),
    drafts.WITHDRAWN: _l("withdrawn"),
}


@bp.errorhandler(Error)
def _error(exc: Error) -> tuple[str, int]:
    status, _code = classify(exc)
    return render_template("error.html", status=status, message=str(exc)), status


@bp.context_processor
def _vocabulary() -> dict[str, Any]:
    return {
        "PURPOSES": PURPOSES,
        "STAGE_LABELS": STAGE_LABELS,
        "RECIPIENT_LABELS": dict(RECIPIENT_CHOICES),
        "yuan": yuan,
        "recipient_text": recipient_text,
    }


# --- helpers ---------------------------------------------------------------------------------


def _user() -> User:
    user = current_user()
    assert user is not None  # role_required ran first
    return user


def _now() -> str:
    return format_time(datetime.now(UTC))


def recipient_text(recipient: Mapping[str, Any]) -> str:
    """A recipient as one line: the household's code, or the organisation's name."""
    for kind in ("household", "cooperative", "contractor"):
        if kind in recipient:
            return str(recipient[kind])
    return ""


def _allocation(conn: Connection, allocation_id: str) -> dict[str, Any] | None:
    row = (
        conn.execute(select(fund_allocations).where(fund_allocations.c.id == allocation_id))
        .mappings()
        .first()
    )
    return None if row is None else dict(row)


def _remaining(allocation: Mapping[str, Any]) -> int:
    return int(allocation["amount_fen"]) - int(allocation["disbursed_fen"])


def _allocation_choices(conn: Connection) -> list[SelectChoice]:
    a = fund_allocations.c
    rows = conn.execute(
        select(fund_allocations)
        .where(a.status == ACTIVE, a.amount_fen > a.disbursed_fen)
        .order_by(a.allocated_seq.desc())
        .limit(MAX_CHOICES)
    ).mappings()
    choices = [SelectChoice("", _("— choose an allocation —"))]
    for found in rows:
        row = dict(found)
        label = _(
            "%(id)s · %(name)s · %(purpose)s · %(left)s yuan left",
            id=row["id"],
            name=row["name"] or row["scope"],
            purpose=PURPOSES.get(row["purpose"], row["purpose"]),
            left=yuan(_remaining(row)),
        )
        choices.append(SelectChoice(row["id"], label))
    return choices


def _summary(draft: drafts.Draft) -> dict[str, Any]:
    """What the lists show of a draft."""
    body = draft.body
    return {
        "id": draft.id,
        "status": draft.status,
        "allocation": body.get("allocation"),
        "payment": body.get("id"),
        "recipient": body.get("recipient") or {},
        "amount_fen": body.get("amount_fen"),
        "purpose": body.get("purpose"),
        "period": body.get("period"),
        "created": draft.created,
        "updated": draft.updated,
        "created_by": draft.created_by,
        "waiting": draft.waiting,
        "seq": draft.seq,
        "reason": draft.reason,
    }


def _view(draft_id: str) -> Response:
    return redirect(url_for("officials.draft", draft_id=draft_id))


# --- dashboard ---------------------------------------------------------------------------------


@bp.get("/")
@role_required(*OFFICIALS)
def dashboard() -> str:
    user = _user()
    engine = instance().engine
    waiting = drafts.waiting_for(engine, user.role or "", user.key_id) if user.can_sign else []
    mine = drafts.made_by(engine, user.username) if user.role in PREPARERS else []
    return render_template(
        "officials/dashboard.html",
        user=user,
        waiting=[_summary(d) for d in waiting],
        mine=[_summary(d) for d in mine],
        appended=[_summary(d) for d in drafts.recent(engine, drafts.APPENDED, limit=HISTORY)],
        refused=[_summary(d) for d in drafts.recent(engine, drafts.REFUSED, limit=10)],
    )


# --- preparing a payment ------------------------------------------------------------------------


def _payment_id() -> str:
    return f"PAY-{datetime.now(CHINA):%Y%m%d}-{secrets.token_hex(4).upper()}"


def _uploads(form: DisbursementForm) -> list[tuple[bytes, dict[str, Any]]]:
    """The attached documents and their evidence records (hashed now, stored only once the
    draft is accepted, so a refused draft leaves nothing behind)."""
    out: list[tuple[bytes, dict[str, Any]]] = []
    for upload in form.evidence.data or []:
        if not isinstance(upload, FileStorage) or not upload.filename:
            continue
        data = upload.read()
        name = unicodedata.normalize("NFC", upload.filename).strip()[:200] or "document"
        if not data:
            raise InvalidInput(_("The file %(name)s is empty.", name=name))
        media_type = (upload.mimetype or "").lower() or "application/octet-stream"
        record = {
            "sha256": hashlib.sha256(data).hexdigest(),
            "name": name,
            "media_type": media_type,
            "size": len(data),
        }
        try:
            common.evidence({"evidence": [record]}, "evidence", "evidence")
        except InvalidEntry:
            record["media_type"] = "application/octet-stream"
            common.evidence({"evidence": [record]}, "evidence", name)
        out.append((data, record))
    return out


def _body(
    form: DisbursementForm, allocation: Mapping[str, Any], evidence: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The ``fund.disbursed`` body; InvalidInput for what only the allocation can tell."""
    kind = form.recipient_type.data
    recipient: dict[str, Any]
    if kind == "household":
        recipient = {"household": form.household.data}
    else:
        recipient = {kind: form.org_name.data}
        if form.credit_code.data:
            recipient["credit_code"] = form.credit_code.data
    assert form.fen is not None
    body: dict[str, Any] = {
        "id": form.payment_id.data or _payment_id(),
        "allocation": allocation["id"],
        "recipient": recipient,
        "amount_fen": form.fen,
        "purpose": allocation["purpose"],
        "period": form.period.data,
    }
    if form.date.data:
        body["date"] = form.date.data.isoformat()
    if form.reference.data:
        body["reference"] = form.reference.data
    if form.gate_project.data:
        body["gate"] = {"project": form.gate_project.data, "stage": form.gate_stage.data}
    term, rate = form.loan_term_months.data, form.loan_interest_bp.data
    if allocation["purpose"] == "micro_loan":
        if term is None or rate is None:
            form.loan_term_months.errors = [
                *form.loan_term_months.errors,
                _("A micro-loan (扶贫小额信贷) needs its term and interest subsidy."),
            ]
            raise InvalidInput(_("A micro-loan needs its loan terms."))
        body["loan"] = {"term_months": term, "interest_subsidy_bp": rate}
    elif term is not None or rate is not None:
        form.loan_term_months.errors = [
            *form.loan_term_months.errors,
            _("Loan terms belong to micro-loan allocations only; leave them empty."),
        ]
        raise InvalidInput(_("Loan terms belong to micro-loan allocations only."))
    if evidence:
        body["evidence"] = list(evidence)
    return body


def _render_new(form: DisbursementForm, status: int = 200, **extra: Any) -> tuple[str, int]:
    return render_template("officials/new.html", form=form, **extra), status


@bp.route("/drafts/new", methods=["GET", "POST"])
@limiter.limit(write_limit, methods=["POST"])
@role_required(*PREPARERS)
def new_draft() -> tuple[str, int] | Response:
    form = DisbursementForm()
    engine = instance().engine
    with engine.connect() as conn:
        form.allocation.choices = _allocation_choices(conn)
    if request.method == "GET":
        chosen = request.args.get("allocation")
        if chosen:
            form.allocation.data = chosen
        form.period.data = form.period.data or str(datetime.now(CHINA).year)
        return _render_new(form)
    user = signing_user()
    # An allocation used up since the page loaded is not among the choices any more: let it
    # through, so that the ledger's own reason (an over-spend) is what the officer reads.
    form.allocation.validate_choice = False
    if not form.validate():
        return _render_new(form, 400, failed=True)
    with engine.connect() as conn:
        allocation = _allocation(conn, form.allocation.data)
    if allocation is None:
        form.allocation.errors = [_("There is no allocation %(id)s.", id=form.allocation.data)]
        return _render_new(form, 400, failed=True)
    try:
        uploads = _uploads(form)
    except Error as exc:
        form.evidence.errors = [str(exc)]
        return _render_new(form, 400, failed=True)
    try:
        body = _body(form, allocation, [record for _data, record in uploads])
    except InvalidInput:
        return _render_new(form, 400, failed=True)

    log = writer()
    statement = make_statement(KIND, nfc(body), log.origin, _now())
    signed = sign_statement(statement, [author(user.key_name)])
    required = ("finance_officer", *str(allocation["approvals"]).split())
    keys = drafts.active_keys(log.registered_keys())
    problem, missing = drafts.dry_run(log, signed, required, keys)
    if problem is not None:
        form.form_errors.append(
            _("The ledger would refuse this payment: %(reason)s", reason=str(problem))
        )
        return _render_new(form, classify(problem)[0], failed=True, refused=problem)

    store = default_store(instance().settings.instance)
    for data, record in uploads:
        if store.put(data) != record["sha256"]:  # pragma: no cover - the store hashes the same
            raise InvalidInput(f"the blob store stored {record['name']} under another hash")
    draft = drafts.create(
        engine,
        signed,
        required=required,
        waiting=missing,
        created_by=user.username,
        allocation=str(allocation["id"]),
        note=form.note.data or None,
    )
    if not missing:  # a policy that asks for nobody but the finance officer
        if drafts.claim(engine, draft, signed):
            _append(draft.id, signed)
        return _view(draft.id)
    flash(
        _(
            "Draft signed with your key and saved. Waiting for: %(roles)s.",
            roles=_role_list(missing),
        ),
        "info",
    )
    return _view(draft.id)


def _role_list(roles: Sequence[str]) -> str:
    return ", ".join(role_label(r) for r in roles)


# --- one draft ---------------------------------------------------------------------------------


def _signers(draft: drafts.Draft, keys: Sequence[KeyRecord]) -> list[dict[str, Any]]:
    """Each required role, and the key that signed for it (or None)."""
    by_id = {k.key_id: k for k in keys}
    free = [by_id[k] for k in draft.signed.key_ids() if k in by_id]
    unknown = [k for k in draft.signed.key_ids() if k not in by_id]
    slots: list[dict[str, Any]] = []
    for role in draft.required:
        key = next((k for k in free if k.role == role), None)
        if key is not None:
            free.remove(key)
        slots.append({"role": role, "key": key})
    for key in free:  # signed, but not for a role the policy lists (e.g. revoked since)
        slots.append({"role": key.role, "key": key, "extra": True})
    for key_id in unknown:
        slots.append({"role": None, "key": None, "unknown": key_id})
    return slots


def _context(conn: Connection, draft: drafts.Draft) -> dict[str, Any]:
    """The fund trail around a draft: its allocation and source, the recipient's place and
    earlier payments, and how many times the household was paid in the period."""
    body = draft.body
    allocation = _allocation(conn, str(body.get("allocation", "")))
    source = None
    if allocation is not None:
        source = (
            conn.execute(select(fund_sources).where(fund_sources.c.id == allocation["source"]))
            .mappings()
            .first()
        )
    recipient = body.get("recipient") or {}
    d = fund_disbursements.c
    household = None
    paid_in_period = None
    if "household" in recipient:
        code = recipient["household"]
        household = (
            conn.execute(
                select(
                    households.c.code,
                    households.c.status,
                    households.c.county,
                    households.c.township,
                    households.c.village,
                ).where(households.c.code == code)
            )
            .mappings()
            .first()
        )
        where = [d.household == code]
        if allocation is not None:
            p = fund_payments.c
            paid_in_period = (
                conn.execute(
                    select(fund_payments).where(
                        p.scope_type == allocation["scope_type"],
                        p.scope == allocation["scope"],
                        p.period == body.get("period"),
                        p.household == code,
                    )
                )
                .mappings()
                .first()
            )
    elif recipient.get("credit_code"):
        where = [d.credit_code == recipient["credit_code"]]
    else:  # an organisation without a credit code: its payments from this allocation
        name = recipient.get("cooperative") or recipient.get("contractor")
        where = [d.allocation == body.get("allocation"), d.org == name]
    previous = list(
        conn.execute(
            select(fund_disbursements).where(*where).order_by(d.disbursed_seq.desc()).limit(HISTORY)
        ).mappings()
    )
    return {
        "allocation": allocation,
        "remaining": None if allocation is None else _remaining(allocation),
        "source": source,
        "household": household,
        "paid_in_period": paid_in_period,
        "previous": previous,
    }


def _may_sign(draft: drafts.Draft, user: User, keys: Mapping[str, KeyRecord]) -> tuple[int, str]:
    """(0, "") if ``user`` may sign ``draft`` now, else (HTTP status, the reason)."""
    if draft.status != drafts.PENDING:
        return 409, _(
            "This draft is %(status)s: there is nothing to sign.",
            status=STATUS_WORDS.get(draft.status, draft.status),
        )
    if draft.signed_by(user.key_id):
        return 409, _("Your key has already signed this draft; one key signs once.")
    role = user.role or ""
    if role in drafts.missing_roles(draft.required, draft.signed, keys):
        return 0, ""
    if role in draft.required:
        return 409, _(
            "The %(role)s signature this draft needs is already given by another key.",
            role=_role_list([role]),
        )
    return 403, _(
        "The allocation’s policy does not ask for a %(role)s’s signature on this payment.",
        role=_role_list([role]),
    )


def _render_draft(
    draft: drafts.Draft, status: int = 200, problem: str | None = None
) -> tuple[str, int]:
    user = _user()
    log = reader()
    all_keys = log.registered_keys()
    keys = drafts.active_keys(all_keys)
    with instance().engine.connect() as conn:
        context = _context(conn, draft)
    forecast: Error | None = None
    if draft.status == drafts.PENDING:
        missing = drafts.missing_roles(draft.required, draft.signed, keys)
        forecast = drafts.rules_check(log, drafts.without_inactive(draft.signed, keys), missing)
    may, why_not = _may_sign(draft, user, keys) if user.can_sign else (403, "")
    return render_template(
        "officials/draft.html",
        draft=draft,
        d=_summary(draft),
        body=draft.body,
        statement=draft.signed.statement,
        signers=_signers(draft, all_keys),
        ctx=context,
        forecast=forecast,
        can_sign=may == 0,
        why_not=why_not,
        is_author=draft.created_by == user.username and user.role in PREPARERS,
        can_retry=drafts.stale(draft) and draft.signed_by(user.key_id),
        problem=problem,
        approve_form=DecisionForm(),
        decline_form=DeclineForm(),
        withdraw_form=WithdrawForm(),
        retry_form=DecisionForm(),
    ), status


def _load(draft_id: str) -> drafts.Draft:
    found = drafts.get(instance().engine, draft_id)
    if found is None:
        abort(404)
    return drafts.settle(instance().engine, found)


@bp.get("/drafts/<draft_id>")
@role_required(*OFFICIALS)
def draft(draft_id: str) -> tuple[str, int]:
    return _render_draft(_load(draft_id))


def _append(draft_id: str, signed: SignedStatement) -> None:
    """Append a claimed draft and record the outcome (see ``web.drafts`` for the order)."""
    engine = instance().engine
    try:
        (entry,) = writer().append([signed])
    except Error as exc:
        seq = drafts.logged_seq(engine, signed)
        if seq is not None:  # appended by an earlier try whose outcome was not recorded
            drafts.finish(engine, draft_id, seq=seq)
            flash(_("The payment is in the ledger at seq %(seq)d.", seq=seq), "info")
            return
        drafts.finish(engine, draft_id, reason=str(exc))
        flash(
            _(
                "The ledger refused the payment, and nothing was written to it: %(reason)s",
                reason=str(exc),
            ),
            "error",
        )
        return
    drafts.finish(engine, draft_id, seq=entry.seq)
    flash(
        _("Every approval is given: the payment is in the ledger at seq %(seq)d.", seq=entry.seq),
        "info",
    )


@bp.post("/drafts/<draft_id>/approve")
@limiter.limit(write_limit, methods=["POST"])
@role_required(*OFFICIALS)
def approve(draft_id: str) -> tuple[str, int] | Response:
    user = signing_user()
    if not DecisionForm().validate_on_submit():
        abort(400)
    engine = instance().engine
    signer = author(user.key_name)
    for _attempt in range(drafts.RETRIES):
        current = _load(draft_id)
        keys = drafts.active_keys(writer().registered_keys())
        status, why = _may_sign(current, user, keys)
        if status:
            return _render_draft(current, status, why)
        mine = sign_statement(current.signed.statement, [signer])
        signed = add_signatures(drafts.without_inactive(current.signed, keys), mine.signatures)
        missing = drafts.missing_roles(current.required, signed, keys)
        if missing:
            if drafts.add_signature(engine, current, signed, missing):
                flash(
                    _(
                        "You signed the payment. Still waiting for: %(roles)s.",
                        roles=_role_list(missing),
                    ),
                    "info",
                )
                return _view(draft_id)
        elif drafts.claim(engine, current, signed):
            _append(draft_id, signed)
            return _view(draft_id)
    flash(_("Others were changing this draft at the same moment: look at it again."), "error")
    return _view(draft_id)


@bp.post("/drafts/<draft_id>/decline")
@limiter.limit(write_limit, methods=["POST"])
@role_required(*OFFICIALS)
def decline(draft_id: str) -> tuple[str, int] | Response:
    user = signing_user()
    form = DeclineForm()
    current = _load(draft_id)
    keys = drafts.active_keys(writer().registered_keys())
    status, why = _may_sign(current, user, keys)
    if status:
        return _render_draft(current, status, why)
    if not form.validate_on_submit():
        return _render_draft(current, 400, _("Say why you decline (at least two characters)."))
    closed = drafts.close(
        instance().engine, current, drafts.DECLINED, by=user.username, reason=form.reason.data
    )
    if not closed:
        flash(_("Others were changing this draft at the same moment: look at it again."), "error")
        return _view(draft_id)
    flash(_("You declined the payment; nothing was written to the ledger."), "info")
    return _view(draft_id)


@bp.post("/drafts/<draft_id>/withdraw")
@limiter.limit(write_limit, methods=["POST"])
@role_required(*PREPARERS)
def withdraw(draft_id: str) -> tuple[str, int] | Response:
    user = signing_user()
    form = WithdrawForm()
    current = _load(draft_id)
    if current.created_by != user.username:
        abort(403)
    if current.status != drafts.PENDING:
        return _render_draft(
            current,
            409,
            _(
                "This draft is %(status)s: it can no longer be withdrawn.",
                status=STATUS_WORDS.get(current.status, current.status),
            ),
        )
    if not form.validate_on_submit():
        return _render_draft(current, 400, _("The reason is too long."))
    if not drafts.close(
        instance().engine,
        current,
        drafts.WITHDRAWN,
        by=user.username,
        reason=form.reason.data or None,
    ):
        flash(_("Others were changing this draft at the same moment: look at it again."), "error")
        return _view(draft_id)
    flash(_("Draft withdrawn; nothing was written to the ledger."), "info")
    return _view(draft_id)


@bp.post("/drafts/<draft_id>/append")
@limiter.limit(write_limit, methods=["POST"])
@role_required(*OFFICIALS)
def retry(draft_id: str) -> tuple[str, int] | Response:
    """Append a complete draft whose first append was cut off (``web.drafts.stale``)."""
    user = signing_user()
    if not DecisionForm().validate_on_submit():
        abort(400)
    current = _load(draft_id)
    if not current.signed_by(user.key_id):
        abort(403)
    if not drafts.stale(current):
        return _render_draft(current, 409, _("This draft is not waiting to be appended."))
    if drafts.claim(instance().engine, current, current.signed):
        _append(draft_id, current.signed)
    return _view(draft_id)
