"""WTForms classes for the officials' portal: preparing a disbursement, and deciding on one.

The forms check what a person can get wrong while typing — an amount in yuan with more than
two decimals, a period like ``2019-13``, a household code in lower case, a credit code with a
wrong check character — and say what was expected and what was found.  They do not decide
what the ledger accepts: the view builds the ``fund.disbursed`` body and runs the ledger's own
rules on it (``web.drafts.dry_run``), whose reasons are shown too.

Money: the amount is typed in yuan (``2000.50``) and converted exactly to integer fen by the
importer's converter (:func:`ledger.importer.yuan_to_fen`: decimal string arithmetic, never a
float).  Nothing here accepts a value the ledger would store differently from what was typed.
"""

from __future__ import annotations

import re
from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import MultipleFileField
from wtforms import (
    DateField,
    IntegerField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import InputRequired, Length, NumberRange, Optional, ValidationError

from ledger.canonical import MAX_SAFE_INTEGER
from ledger.domain.common import MAX_EVIDENCE
from ledger.domain.funds import MAX_LOAN_MONTHS, MAX_REASON, RECIPIENT_TYPES, credit_code_valid
from ledger.domain.projects import STAGES
from ledger.errors import InvalidInput
from ledger.importer import yuan_to_fen
from web.consumer import STAGES as STAGE_WORDS

_IDENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$")
_HOUSEHOLD_RE = re.compile(r"^[A-Z0-9][A-Z0-9-]{3,31}$")
_PERIOD_RE = re.compile(r"^[0-9]{4}(-(0[1-9]|1[0-2])|-Q[1-4]|-H[12])?$")
#: An amount with ASCII thousands separators in their places: 2,000 or 1,234,567.50.
_GROUPED_RE = re.compile(r"^[0-9]{1,3}(,[0-9]{3})+(\.[0-9]*)?$")
_CREDIT_RE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$")
#: How many evidence files one draft may carry (the ledger's limit).
MAX_FILES = MAX_EVIDENCE

RECIPIENT_CHOICES = [
    ("household", _l("A registered household (建档立卡户)")),
    ("cooperative", _l("Cooperative (合作社)")),
    ("contractor", _l("Contractor")),
]
assert tuple(value for value, _label in RECIPIENT_CHOICES) == RECIPIENT_TYPES

#: Milestones a payment may be gated on, in people's words (the project pages' labels).
STAGE_LABELS = {stage: STAGE_WORDS[stage] for stage in STAGES}


def parse_yuan(text: str) -> int:
    """``"2000.50"`` → ``200050`` fen, exactly; at least 0.01 yuan.  Raises InvalidInput.

    Typed as people write amounts, with two explicit normalisations only: a leading ``¥``
    or ``￥``, and ASCII thousands separators in their places (``2,000.50``).  Anything
    non-ASCII — full-width ``２０００``, ``２０００．５０`` or ``2，000``, Arabic-Indic
    digits, superscripts — is refused naming the character and its code point, as the
    importer refuses it (:func:`ledger.importer.non_ascii_in_number`).
    """
    cleaned = (text or "").strip()
    if cleaned.startswith(("¥", "￥")):
        cleaned = cleaned[1:].strip()
    odd = next((char for char in cleaned if not char.isascii()), None)
    if odd is not None:
        raise InvalidInput(
            _(
                "Type the amount with the ASCII digits 0-9: “%(char)s” (U+%(code)s) is a "
                "full-width or other non-ASCII character; got “%(text)s”.",
                char=odd,
                code=f"{ord(odd):04X}",
                text=text,
            )
        )
    if _GROUPED_RE.fullmatch(cleaned):
        cleaned = cleaned.replace(",", "")
    try:
        fen = yuan_to_fen(cleaned, "amount")
    except InvalidInput:
        raise InvalidInput(
            _(
                "Type the amount in yuan with at most two decimals, e.g. 2000.50; got “%(text)s”.",
                text=text,
            )
        ) from None
    if fen < 1:
        raise InvalidInput(_("The amount must be at least 0.01 yuan; got “%(text)s”.", text=text))
    if fen > MAX_SAFE_INTEGER:
        raise InvalidInput(_("The amount is too large."))
    return fen


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


class DisbursementForm(FlaskForm):  # type: ignore[misc]
    """A payment from an allocation (``fund.disbursed``), as a finance officer prepares it."""

    allocation = SelectField(_l("Allocation"), validators=[InputRequired()], choices=[])
    recipient_type = SelectField(
        _l("Recipient"),
        choices=[SelectChoice(v, label) for v, label in RECIPIENT_CHOICES],
        default="household",
        validators=[InputRequired()],
    )
    household = StringField(_l("Household code"), filters=[_upper], validators=[Length(max=32)])
    org_name = StringField(
        _l("Name of the cooperative or contractor"), filters=[_strip], validators=[Length(max=200)]
    )
    credit_code = StringField(
        _l("Unified social credit code (统一社会信用代码)"),
        filters=[_upper],
        validators=[Optional(), Length(max=18)],
    )
    amount = StringField(_l("Amount (yuan)"), filters=[_strip], validators=[InputRequired()])
    period = StringField(_l("Period"), filters=[_strip], validators=[InputRequired()])
    date = DateField(_l("Value date"), validators=[Optional()])
    payment_id = StringField(
        _l("Payment id"), filters=[_strip], validators=[Optional(), Length(max=64)]
    )
    reference = StringField(
        _l("Voucher reference (记账凭证号)"),
        filters=[_strip],
        validators=[Optional(), Length(max=200)],
    )
    gate_project = StringField(
        _l("Gated on project"), filters=[_strip], validators=[Optional(), Length(max=64)]
    )
    gate_stage = SelectField(
        _l("… reaching stage"),
        choices=[
            SelectChoice("", _l("— no milestone gate —")),
            *(SelectChoice(v, label) for v, label in STAGE_LABELS.items()),
        ],
        default="",
        validators=[Optional()],
    )
    loan_term_months = IntegerField(
        _l("Loan term (months)"),
        validators=[Optional(), NumberRange(min=1, max=MAX_LOAN_MONTHS)],
    )
    loan_interest_bp = IntegerField(
        _l("Interest subsidy (basis points a year)"),
        validators=[Optional(), NumberRange(min=0, max=10_000)],
    )
    evidence = MultipleFileField(_l("Evidence documents"))
    note = TextAreaField(
        _l("Note to the co-signers"), filters=[_strip], validators=[Optional(), Length(max=2000)]
    )

    #: The amount in fen once :meth:`validate` passed.
    fen: int | None = None

    def validate_household(self, field: Any) -> None:
        if self.recipient_type.data != "household":
            return
        if not field.data:
            raise ValidationError(_("Give the household’s code (一户一码)."))
        if not _HOUSEHOLD_RE.fullmatch(field.data):
            raise ValidationError(
                _(
                    "A household code is 4 to 32 capital letters, digits and dashes, "
                    "e.g. GX-GN-000123; got “%(code)s”.",
                    code=field.data,
                )
            )

    def validate_org_name(self, field: Any) -> None:
        if self.recipient_type.data in ("cooperative", "contractor") and not field.data:
            raise ValidationError(_("Give the organisation’s name as registered."))

    def validate_credit_code(self, field: Any) -> None:
        if not field.data or self.recipient_type.data == "household":
            return
        if not _CREDIT_RE.fullmatch(field.data):
            raise ValidationError(
                _(
                    "A credit code is 18 digits and capital letters (no I, O, S, V or Z); "
                    "got “%(code)s”.",
                    code=field.data,
                )
            )
        if not credit_code_valid(field.data):
            raise ValidationError(_("The last character (the check character) is wrong."))

    def validate_amount(self, field: Any) -> None:
        try:
            self.fen = parse_yuan(field.data)
        except InvalidInput as exc:
            raise ValidationError(str(exc)) from None

    def validate_period(self, field: Any) -> None:
        if not _PERIOD_RE.fullmatch(field.data or ""):
            raise ValidationError(
                _(
                    "A period is a year (2019), a half (2019-H2), a quarter (2019-Q3) or a "
                    "month (2019-07); got “%(text)s”.",
                    text=field.data,
                )
            )

    def validate_payment_id(self, field: Any) -> None:
        if field.data and not _IDENT_RE.fullmatch(field.data):
            raise ValidationError(
                _(
                    "An id is up to 64 ASCII letters, digits and . _ : / -, starting with a "
                    "letter or digit; got “%(text)s”.",
                    text=field.data,
                )
            )

    def validate_gate_project(self, field: Any) -> None:
        if field.data and not _IDENT_RE.fullmatch(field.data):
            raise ValidationError(_("That is not a project id."))
        if bool(field.data) != bool(self.gate_stage.data):
            raise ValidationError(
                _("A milestone gate needs both the project and the stage it must have reached.")
            )

    def validate_evidence(self, field: Any) -> None:
        files = [f for f in (field.data or []) if getattr(f, "filename", "")]
        if len(files) > MAX_FILES:
            raise ValidationError(_("At most %(n)d documents.", n=MAX_FILES))


class DecisionForm(FlaskForm):  # type: ignore[misc]
    """Approve (sign) a draft: the CSRF token is all it carries."""


class DeclineForm(FlaskForm):  # type: ignore[misc]
    reason = TextAreaField(
        _l("Why you decline"),
        filters=[_strip],
        validators=[InputRequired(), Length(min=2, max=MAX_REASON)],
    )


class WithdrawForm(FlaskForm):  # type: ignore[misc]
    reason = TextAreaField(
        _l("Why (optional)"), filters=[_strip], validators=[Optional(), Length(max=MAX_REASON)]
    )
