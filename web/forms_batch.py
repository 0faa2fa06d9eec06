"""WTForms classes for the producer portal's batch forms, and the parsers behind their fields.

The forms check what a person can get wrong while typing — digits, check digits, lot
characters, per-mille shares — and say what was expected and what was found, in words a
cooperative's bookkeeper understands.  They do not decide what the ledger accepts: the view
builds the body and runs the ledger's own dry run (``web.signing.check``), whose reasons are
shown too.  The forms MUST NOT accept anything the ledger would store differently from what
was typed (no floats, no silent rounding): quantities are whole numbers in the chosen unit,
temperatures are exact tenths of a degree.

A batch is carried in forms as ``"<gtin14 or empty>|<lot>"`` (:func:`ref_value`); ``|`` is
not in the GS1 lot character set, so the split is unambiguous.  The view checks that a
posted batch belongs to the signed-in producer's organisation; a select's choices are only a
convenience.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, MultipleFileField
from flask_wtf.i18n import translations as wtforms_translations
from wtforms import (
    BooleanField,
    DateField,
    DateTimeLocalField,
    FieldList,
    Form,
    FormField,
    HiddenField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import InputRequired, Length, Optional, Regexp, ValidationError

from ledger.canonical import MAX_SAFE_INTEGER
from ledger.domain import gs1
from ledger.domain.batches import (
    CERTIFICATION_SCHEMES,
    COUNT_UNITS,
    EVENT_DISPOSITIONS,
    EVENT_SIGNERS,
    MAX_HOUSEHOLDS,
    MAX_TEMPERATURE_DC,
    MEASURE_UNITS,
    MIN_TEMPERATURE_DC,
    PERMILLE,
)
from ledger.domain.common import MAX_EVIDENCE, MAX_TEXT
from ledger.errors import InvalidInput

#: 一户一码 household codes, as ``ledger.domain.common`` enforces them.
HOUSEHOLD_RE = re.compile(r"^[A-Z0-9][A-Z0-9-]{3,31}$")
DIVISION_RE = r"^([0-9]{6}([0-9]{3}([0-9]{3})?)?)?$"
#: Labels printed in one request at most (a 2,000-label PDF renders in a few seconds).
MAX_LABELS = 2_000
MAX_COPIES = 1_000
LABEL_LEVELS = ("M", "Q", "H")

# --- vocabulary as people read it ---------------------------------------------------------

UNIT_LABELS: dict[str, Any] = {
    "g": _l("g (gram)"),
    "jin": _l("jin 斤 (500 g)"),
    "kg": _l("kg (kilogram)"),
    "t": _l("t (tonne)"),
    "ml": _l("ml (millilitre)"),
    "l": _l("l (litre)"),
    "piece": _l("piece 个/件"),
    "box": _l("box 盒/箱"),
    "bag": _l("bag 袋"),
    "bottle": _l("bottle 瓶"),
    "jar": _l("jar 罐"),
    "carton": _l("carton 箱"),
    "crate": _l("crate 筐"),
    "head": _l("head 头/只"),
}
SCHEME_LABELS: dict[str, Any] = {
    "green_food": _l("Green food 绿色食品"),
    "organic": _l("Organic 有机产品"),
    "geographical_indication": _l("Geographical indication 地理标志"),
    "pollution_free": _l("Pollution-free 无公害农产品"),
    "poverty_alleviation_product": _l("Poverty-alleviation product 扶贫产品"),
}
STEP_LABELS: dict[str, Any] = {
    "commissioning": _l("Registered"),
    "inspecting": _l("Inspecting 检验"),
    "packing": _l("Packing 包装"),
    "storing": _l("Storing 仓储"),
    "shipping": _l("Shipping 发货"),
    "transporting": _l("Transporting 运输"),
    "receiving": _l("Receiving 收货"),
    "retail_selling": _l("Retail selling 零售"),
    "destroying": _l("Destroying 销毁"),
}
DISPOSITION_LABELS: dict[str, Any] = {
    "active": _l("active"),
    "in_progress": _l("in progress"),
    "conformant": _l("conformant (passed)"),
    "non_conformant": _l("non-conformant (failed)"),
    "sellable_not_accessible": _l("sellable, not yet on the shelf"),
    "sellable_accessible": _l("on sale"),
    "non_sellable_other": _l("not sellable"),
    "expired": _l("expired"),
    "damaged": _l("damaged"),
    "in_transit": _l("in transit"),
    "returned": _l("returned"),
    "retail_sold": _l("sold"),
    "destroyed": _l("destroyed"),
    "recalled": _l("recalled"),
}


def unit_choices(units: Iterable[str], blank: str | None = None) -> list[SelectChoice]:
    out = [] if blank is None else [SelectChoice("", blank)]
    return out + [SelectChoice(u, UNIT_LABELS.get(u, u)) for u in units]


#: The bizSteps a producer key may sign (every one, per batches.EVENT_SIGNERS today).
PRODUCER_STEPS = tuple(step for step, roles in EVENT_SIGNERS.items() if "producer" in roles)


def step_choices() -> list[SelectChoice]:
    """``step:disposition`` options in one optgroup per step, so a browser without scripts can
    only pick combinations the domain table allows."""
    out = [SelectChoice("", _("— choose what happened —"))]
    for step in PRODUCER_STEPS:
        label = str(STEP_LABELS.get(step, step))
        out += [
            SelectChoice(f"{step}:{d}", f"{label} → {DISPOSITION_LABELS.get(d, d)}", optgroup=label)
            for d in EVENT_DISPOSITIONS[step]
        ]
    return out


def split_step(value: str) -> tuple[str, str] | None:
    """``(biz_step, disposition)`` from a ``step:disposition`` choice a producer may record."""
    step, _sep, disposition = (value or "").partition(":")
    if step in PRODUCER_STEPS and disposition in EVENT_DISPOSITIONS[step]:
        return step, disposition
    return None


# --- batch refs ---------------------------------------------------------------------------


def ref_value(gtin: str | None, lot: str) -> str:
    return f"{gtin or ''}|{lot}"


def parse_ref(value: str | None) -> tuple[str, str]:
    """``(gtin14 or "", lot)`` from :func:`ref_value` text; raises InvalidInput."""
    gtin, sep, lot = (value or "").partition("|")
    if not sep:
        raise InvalidInput(f"a batch is chosen as '<gtin>|<lot>', got {value!r}")
    if gtin and not (len(gtin) == 14 and gtin.isascii() and gtin.isdigit()):
        raise InvalidInput(f"a batch's GTIN has 14 digits, got {gtin!r}")
    if gtin:
        gs1.validate_gtin14(gtin)
    return gtin, gs1.validate_lot(lot)


# --- parsers: text as typed → exact values --------------------------------------------------


def _non_ascii_digit(text: str) -> str | None:
    for char in text:
        if char.isdigit() and not char.isascii():
            return char
    return None


def _digit_hint(char: str) -> str:
    plain = unicodedata.normalize("NFKC", char)
    return str(
        _(
            "Type digits as ASCII 0-9: %(char)s is a full-width or other non-ASCII digit "
            "(type %(plain)s instead).",
            char=char,
            plain=plain,
        )
    )


def parse_whole(
    text: str | None, *, low: int = 1, high: int = MAX_SAFE_INTEGER, unit_hint: bool = True
) -> int:
    """A whole number typed as ASCII digits, ``low``…``high``; raises ValidationError."""
    value = (text or "").strip()
    if not value:
        raise ValidationError(_("Enter a whole number."))
    odd = _non_ascii_digit(value)
    if odd is not None:
        raise ValidationError(_digit_hint(odd))
    if re.fullmatch(r"[+-]?[0-9]+", value):
        number = int(value)
        if number < low:
            raise ValidationError(
                _("Enter a number of at least %(low)d; found %(found)s.", low=low, found=value)
            )
        if number > high:
            raise ValidationError(
                _("Enter a number of at most %(high)d; found %(found)s.", high=high, found=value)
            )
        return number
    if re.fullmatch(r"[+-]?[0-9]*[.,][0-9]+|[+-]?[0-9]+[.][0-9]*", value):
        if unit_hint:
            raise ValidationError(
                _(
                    "Enter a whole number: the ledger records quantities as integers in the "
                    "unit you choose. For %(found)s, use a smaller unit (g instead of kg, ml "
                    "instead of l) so the quantity is whole.",
                    found=value,
                )
            )
        raise ValidationError(_("Enter a whole number; found %(found)s.", found=value))
    raise ValidationError(
        _(
            "Enter a whole number using the digits 0-9 only (e.g. 250); found %(found)s.",
            found=value,
        )
    )


def parse_tenths(text: str) -> int:
    """A temperature in °C with at most one decimal (``-18``, ``4.5``) as tenths; exact."""
    value = text.strip().replace("−", "-").removesuffix("°C").removesuffix("℃").strip()
    odd = _non_ascii_digit(value)
    if odd is not None:
        raise ValidationError(_digit_hint(odd))
    if not re.fullmatch(r"[+-]?[0-9]{1,3}(\.[0-9])?", value):
        raise ValidationError(
            _(
                "Enter degrees Celsius with at most one decimal, e.g. 4 or -18.5; found %(found)s.",
                found=text,
            )
        )
    try:
        tenths = int(Decimal(value) * 10)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        raise ValidationError(_("Not a number: %(found)s.", found=text)) from None
    if not MIN_TEMPERATURE_DC <= tenths <= MAX_TEMPERATURE_DC:
        raise ValidationError(
            _(
                "A cold-chain temperature is between %(low)s °C and %(high)s °C; found %(found)s.",
                low=MIN_TEMPERATURE_DC / 10,
                high=MAX_TEMPERATURE_DC / 10,
                found=text,
            )
        )
    return tenths


def parse_gtin(text: str | None) -> str:
    """A GTIN-8/12/13/14 as typed (spaces and hyphens allowed) → the 14-digit body form."""
    value = re.sub(r"[\s-]", "", text or "")
    odd = _non_ascii_digit(value)
    if odd is not None:
        raise ValidationError(_digit_hint(odd))
    if not value.isascii() or not value.isdigit():
        raise ValidationError(
            _(
                "A GTIN is made of digits only (the number under the barcode); found %(found)s.",
                found=text,
            )
        )
    if len(value) not in gs1.GTIN_LENGTHS:
        raise ValidationError(
            _(
                "A GTIN has 8, 12, 13 or 14 digits; found %(n)d digits. Leave it empty if the "
                "product has no barcode number.",
                n=len(value),
            )
        )
    padded = value.rjust(14, "0")
    if set(padded) == {"0"}:
        raise ValidationError(_("A GTIN cannot be all zeros."))
    expected = gs1.gtin_check_digit(padded[:-1])
    if padded[-1] != expected:
        raise ValidationError(
            _(
                "Wrong check digit: the last digit of %(gtin)s should be %(expected)s (GS1 "
                "mod-10 check digit of the digits before it), found %(found)s. Did you mean "
                "%(suggest)s? Check the number under the barcode.",
                gtin=value,
                expected=expected,
                found=padded[-1],
                suggest=value[:-1] + expected,
            )
        )
    return padded


def parse_lot(text: str | None) -> str:
    """A lot number (GS1 AI 10) exactly as the ledger will store it."""
    value = (text or "").strip()
    if not value:
        raise ValidationError(_("Enter the lot number (批号)."))
    if len(value) > gs1.MAX_LOT_LENGTH:
        raise ValidationError(
            _(
                "A lot number has at most %(max)d characters; found %(n)d.",
                max=gs1.MAX_LOT_LENGTH,
                n=len(value),
            )
        )
    for position, char in enumerate(value, start=1):
        if char in gs1.CHARSET_82:
            continue
        plain = unicodedata.normalize("NFKC", char)
        if plain != char and len(plain) == 1 and plain in gs1.CHARSET_82:
            raise ValidationError(
                _(
                    "Character %(pos)d, %(char)s, is a full-width character: type the ASCII "
                    "%(plain)s instead.",
                    pos=position,
                    char=char,
                    plain=plain,
                )
            )
        if char.isspace():
            raise ValidationError(
                _(
                    "Character %(pos)d is a space: lot numbers (GS1 AI 10) may not contain "
                    "spaces; use - or _ instead.",
                    pos=position,
                )
            )
        raise ValidationError(
            _(
                "Character %(pos)d, %(char)s (U+%(code)s %(name)s), cannot be printed in a GS1 "
                "lot number: use ASCII letters, digits and ! \" %% & ' ( ) * + , - . / : ; < = > "
                "? _ only (no Chinese characters, no look-alike letters of other scripts, no "
                "invisible characters, no # or ~).",
                pos=position,
                char=char if char.isprintable() else "",
                code=f"{ord(char):04X}",
                name=unicodedata.name(char, "unnamed"),
            )
        )
    if not gs1.reaches_its_page(value):
        raise ValidationError(
            _(
                "A lot number may not be . or .. and may not start with /: the label's scan "
                "URL would not reach the lot's page; found %(found)s.",
                found=value,
            )
        )
    return value


@dataclass(frozen=True)
class HouseholdLine:
    line: int
    code: str
    share: int


def parse_households(text: str | None) -> tuple[list[HouseholdLine], list[str]]:
    """Lines of ``CODE SHARE`` (per-mille; ``‰`` allowed) → rows, and one message per bad line.

    Blank lines are skipped; ``,``, ``，``, ``:``, ``：`` and tabs separate as well as spaces.
    Codes are upper-cased (household codes have no lower-case letters).
    """
    rows: list[HouseholdLine] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate((text or "").splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = [p for p in re.split(r"[\s,，:：;；]+", line) if p]
        if len(parts) != 2:
            errors.append(
                _(
                    "Line %(n)d: expected a household code and its share, e.g. GX-GN-000123 250; "
                    "found %(found)s.",
                    n=number,
                    found=line,
                )
            )
            continue
        code, share_text = parts[0].upper(), parts[1].removesuffix("‰")
        if not HOUSEHOLD_RE.fullmatch(code):
            errors.append(
                _(
                    "Line %(n)d: %(code)s is not a household code (4–32 letters, digits and "
                    "hyphens, e.g. GX-GN-000123).",
                    n=number,
                    code=parts[0],
                )
            )
            continue
        try:
            share = parse_whole(share_text, low=1, high=PERMILLE, unit_hint=False)
        except ValidationError as exc:
            errors.append(
                _(
                    "Line %(n)d: the share of %(code)s is per-mille (‰), a whole number from 1 "
                    "to %(max)d (250 = a quarter of the lot): %(why)s",
                    n=number,
                    code=code,
                    max=PERMILLE,
                    why=str(exc),
                )
            )
            continue
        if code in seen:
            errors.append(
                _(
                    "Line %(n)d: household %(code)s is already listed on line %(first)d.",
                    n=number,
                    code=code,
                    first=seen[code],
                )
            )
            continue
        seen[code] = number
        rows.append(HouseholdLine(number, code, share))
    if not rows and not errors:
        errors.append(
            _("List at least one registered household (建档立卡户) that supplied this lot.")
        )
    if len(rows) > MAX_HOUSEHOLDS:
        errors.append(
            _("At most %(max)d households per lot; found %(n)d.", max=MAX_HOUSEHOLDS, n=len(rows))
        )
    total = sum(r.share for r in rows)
    if total > PERMILLE:
        errors.append(
            _(
                "The shares add up to %(total)d‰, more than the whole lot (%(max)d‰). Each share "
                "is the household's part of this lot in per-mille; the rest may come from the "
                "cooperative's own base.",
                total=total,
                max=PERMILLE,
            )
        )
    return rows, errors


# --- fields -------------------------------------------------------------------------------


class WholeNumberField(StringField):  # type: ignore[misc]
    """A whole number typed as ASCII digits; :attr:`number` holds it after validation (None
    when left empty and ``required`` is False)."""

    def __init__(
        self,
        label: Any = None,
        validators: Sequence[Any] | None = None,
        *,
        low: int = 1,
        high: int = MAX_SAFE_INTEGER,
        required: bool = True,
        unit_hint: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(label, validators, **kwargs)
        self.low, self.high, self.required, self.unit_hint = low, high, required, unit_hint
        self.number: int | None = None

    def pre_validate(self, form: Any) -> None:
        self.number = None
        if not (self.data or "").strip() and not self.required:
            return
        self.number = parse_whole(self.data, low=self.low, high=self.high, unit_hint=self.unit_hint)


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _text(label: Any, max_length: int, required: bool = True, **kwargs: Any) -> StringField:
    first = InputRequired(message=_l("This field is required.")) if required else Optional()
    return StringField(
        label, validators=[first, Length(max=max_length)], filters=[_strip], **kwargs
    )


# --- registration ------------------------------------------------------------------------


class Row(Form):  # type: ignore[misc]
    """A repeated row inside a FlaskForm (``FormField``): no CSRF token of its own, and
    WTForms' built-in messages in the request's language like the FlaskForm around it."""

    class Meta:
        def get_translations(self, form: Any) -> Any:
            return wtforms_translations


class InspectionRow(Row):
    """One inspection (检验): lab, result, date and the report (stored by its SHA-256)."""

    lab = _text(_l("Laboratory"), 200, required=False)
    result = SelectField(
        _l("Result"),
        choices=[SelectChoice("pass", _l("pass 合格")), SelectChoice("fail", _l("fail 不合格"))],
        default="pass",
    )
    date = DateField(_l("Inspection date"), validators=[Optional()])
    report = FileField(_l("Report (PDF or photo)"))
    #: SHA-256 of a report uploaded with an earlier try of this form (kept so a re-shown form
    #: need not ask for the file again); the view checks the blob store holds it.
    report_sha256 = HiddenField()

    def filled(self) -> bool:
        upload = self.report.data
        return bool(self.lab.data or self.date.data or self.report_sha256.data) or bool(
            upload and getattr(upload, "filename", "")
        )


class CertificationRow(Row):
    scheme = SelectField(
        _l("Certification"),
        choices=[SelectChoice("", _l("— none —"))]
        + [SelectChoice(s, SCHEME_LABELS[s]) for s in CERTIFICATION_SCHEMES],
        default="",
    )
    number = _text(_l("Certificate number"), 64, required=False)
    valid_until = DateField(_l("Valid until (optional)"), validators=[Optional()])

    def filled(self) -> bool:
        return bool(self.scheme.data or self.number.data or self.valid_until.data)


class RegisterBatchForm(FlaskForm):  # type: ignore[misc]
    gtin = StringField(_l("GTIN (barcode number, optional)"), filters=[_strip])
    lot = StringField(_l("Lot number 批号"), filters=[_strip])
    product_zh = _text(_l("Product name (Chinese)"), 200)
    product_en = _text(_l("Product name (English, optional)"), 200, required=False)
    province = _text(_l("Province"), 100)
    city = _text(_l("City"), 100)
    county = _text(_l("County"), 100)
    township = _text(_l("Township (optional)"), 100, required=False)
    village = _text(_l("Village (optional)"), 100, required=False)
    division_code = StringField(
        _l("Administrative division code (optional)"),
        validators=[Regexp(DIVISION_RE, message=_l("A division code has 6, 9 or 12 digits."))],
        filters=[_strip],
    )
    produced = DateField(
        _l("Harvest or production date"),
        validators=[InputRequired(message=_l("Enter a date (YYYY-MM-DD)."))],
    )
    quantity = WholeNumberField(_l("Quantity"))
    unit = SelectField(
        _l("Unit"), choices=unit_choices(list(MEASURE_UNITS) + list(COUNT_UNITS)), default="kg"
    )
    net_quantity = WholeNumberField(_l("Net content of one unit (optional)"), required=False)
    net_unit = SelectField(
        _l("Net content unit"), choices=unit_choices(MEASURE_UNITS, "—"), default=""
    )
    households = TextAreaField(_l("Households supplying this lot, with their shares (‰)"))
    inspections = FieldList(FormField(InspectionRow), min_entries=2, max_entries=8)
    certifications = FieldList(FormField(CertificationRow), min_entries=2, max_entries=8)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gtin14: str | None = None
        self.household_rows: list[HouseholdLine] = []

    def validate_gtin(self, field: Any) -> None:
        self.gtin14 = parse_gtin(field.data) if field.data else None

    def validate_lot(self, field: Any) -> None:
        field.data = parse_lot(field.data)

    def validate_net_quantity(self, field: Any) -> None:
        if field.errors or (field.number is None and not self.net_unit.data):
            return
        if self.unit.data not in COUNT_UNITS:
            raise ValidationError(
                _(
                    "Net content is for counted units (boxes, bags, …), not for %(unit)s; "
                    "leave it empty.",
                    unit=self.unit.data,
                )
            )
        if field.number is None or not self.net_unit.data:
            raise ValidationError(
                _("Give both the net content of one unit and its unit (e.g. 5 kg per box).")
            )

    def validate_households(self, field: Any) -> None:
        self.household_rows, errors = parse_households(field.data)
        if errors:
            field.errors.extend(errors[:-1])
            raise ValidationError(errors[-1])

    def validate_inspections(self, field: Any) -> None:
        for row in field:
            sub = row.form
            if not sub.filled():
                continue
            if not sub.lab.data:
                sub.lab.errors.append(_("Name the laboratory that made this inspection."))
            if not sub.date.data:
                sub.date.errors.append(_("Enter the inspection date (YYYY-MM-DD)."))
            upload = sub.report.data
            if not sub.report_sha256.data and not (upload and getattr(upload, "filename", "")):
                sub.report.errors.append(
                    _("Attach the inspection report: the ledger records its SHA-256.")
                )
        if any(row.form.errors for row in field):
            raise ValidationError(_("Complete or clear the inspection rows marked below."))

    def validate_certifications(self, field: Any) -> None:
        seen: set[tuple[str, str]] = set()
        for row in field:
            sub = row.form
            if not sub.filled():
                continue
            if not sub.scheme.data:
                sub.scheme.errors.append(_("Choose the certification scheme."))
            if not sub.number.data:
                sub.number.errors.append(_("Enter the certificate number."))
            key = (sub.scheme.data, sub.number.data)
            if sub.scheme.data and sub.number.data and key in seen:
                sub.number.errors.append(_("This certificate is listed twice."))
            seen.add(key)
        if any(row.form.errors for row in field):
            raise ValidationError(_("Complete or clear the certification rows marked below."))


# --- events ------------------------------------------------------------------------------


class EventForm(FlaskForm):  # type: ignore[misc]
    batch = SelectField(_l("Lot"), validate_choice=False)
    step = SelectField(_l("What happened (EPCIS step → state)"), validate_choice=False)
    time = DateTimeLocalField(
        _l("When (China time, UTC+8)"),
        format=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"],
        validators=[InputRequired(message=_l("Enter the date and time of the event."))],
    )
    read_point = _text(_l("Where (read point)"), 200)
    temperature = StringField(_l("Temperature °C (cold chain, optional)"), filters=[_strip])
    inspection_lab = _text(_l("Laboratory"), 200, required=False)
    inspection_date = DateField(_l("Inspection date"), validators=[Optional()])
    inspection_report = FileField(_l("Inspection report"))
    inspection_report_sha256 = HiddenField()
    note = TextAreaField(_l("Note (optional)"), validators=[Optional(), Length(max=2000)])

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.step.choices = step_choices()
        self.tenths: int | None = None

    def validate_step(self, field: Any) -> None:
        if split_step(field.data) is None:
            raise ValidationError(
                _("Choose one of the listed steps; a producer may record only these.")
            )

    def validate_temperature(self, field: Any) -> None:
        self.tenths = parse_tenths(field.data) if field.data else None

    def inspecting(self) -> bool:
        chosen = split_step(self.step.data or "")
        return chosen is not None and chosen[0] == "inspecting"

    def validate(self, extra_validators: Any = None) -> bool:
        """The inspection fields are required exactly when the step is ``inspecting``."""
        valid: bool = super().validate(extra_validators)
        if not self.inspecting():
            return valid
        missing = [
            (
                self.inspection_lab,
                not self.inspection_lab.data,
                _("An inspection names its laboratory."),
            ),
            (
                self.inspection_date,
                not self.inspection_date.data and not self.inspection_date.errors,
                _("Enter the inspection date (YYYY-MM-DD)."),
            ),
            (
                self.inspection_report,
                not (
                    getattr(self.inspection_report.data, "filename", "")
                    or self.inspection_report_sha256.data
                ),
                _("Attach the inspection report: the ledger records its SHA-256."),
            ),
        ]
        for field, absent, message in missing:
            if absent:
                field.errors = [*field.errors, message]
                valid = False
        return valid


# --- split and merge ---------------------------------------------------------------------


class InputRow(Row):
    batch = SelectField(_l("Input lot"), validate_choice=False)
    quantity = WholeNumberField(_l("Quantity used (in the lot's unit)"), required=False)

    def filled(self) -> bool:
        return bool(self.batch.data or (self.quantity.data or "").strip())


class OutputRow(Row):
    gtin = StringField(_l("GTIN (optional)"), filters=[_strip])
    lot = StringField(_l("New lot number"), filters=[_strip])
    quantity = WholeNumberField(_l("Quantity"), required=False)
    unit = SelectField(
        _l("Unit"), choices=unit_choices(list(MEASURE_UNITS) + list(COUNT_UNITS), "—"), default=""
    )
    net_quantity = WholeNumberField(_l("Net content of one unit"), required=False)
    net_unit = SelectField(
        _l("Net content unit"), choices=unit_choices(MEASURE_UNITS, "—"), default=""
    )
    product_zh = _text(_l("Product name (if different)"), 200, required=False)

    def filled(self) -> bool:
        return any(
            (f.data or "").strip() if isinstance(f.data, str) else f.data
            for f in (self.gtin, self.lot, self.quantity, self.net_quantity, self.product_zh)
        )


class TransformForm(FlaskForm):  # type: ignore[misc]
    inputs = FieldList(FormField(InputRow), min_entries=2, max_entries=100)
    outputs = FieldList(FormField(OutputRow), min_entries=3, max_entries=100)
    date = DateField(
        _l("Date of the split or merge"),
        validators=[InputRequired(message=_l("Enter a date (YYYY-MM-DD)."))],
    )
    work = _text(_l("What was done (e.g. graded and packed into 5 kg boxes)"), 200)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.input_rows: list[tuple[int, tuple[str, str], int]] = []
        self.output_rows: list[tuple[int, dict[str, Any]]] = []

    def validate_inputs(self, field: Any) -> None:
        self.input_rows = []
        seen: dict[tuple[str, str], int] = {}
        for index, row in enumerate(field):
            sub = row.form
            if not sub.filled():
                continue
            try:
                key = parse_ref(sub.batch.data)
            except InvalidInput:
                sub.batch.errors.append(_("Choose an input lot."))
                continue
            if sub.quantity.number is None and not sub.quantity.errors:
                sub.quantity.errors.append(_("Enter how much of this lot was used."))
                continue
            if key in seen:
                sub.batch.errors.append(_("This lot is already input %(n)d.", n=seen[key] + 1))
                continue
            seen[key] = index
            if sub.quantity.number is not None:
                self.input_rows.append((index, key, sub.quantity.number))
        if any(row.form.errors for row in field):
            raise ValidationError(_("Correct the input rows marked below."))
        if not self.input_rows:
            raise ValidationError(_("Choose at least one input lot and the quantity used."))

    def validate_outputs(self, field: Any) -> None:
        self.output_rows = []
        for index, row in enumerate(field):
            sub = row.form
            if not sub.filled():
                continue
            item: dict[str, Any] = {}
            try:
                item["lot"] = parse_lot(sub.lot.data)
            except ValidationError as exc:
                sub.lot.errors.append(str(exc))
            if sub.gtin.data:
                try:
                    item["gtin"] = parse_gtin(sub.gtin.data)
                except ValidationError as exc:
                    sub.gtin.errors.append(str(exc))
            if sub.quantity.number is None and not sub.quantity.errors:
                sub.quantity.errors.append(_("Enter the quantity of this new lot."))
            if not sub.unit.data:
                sub.unit.errors.append(_("Choose the unit."))
            net_given = sub.net_quantity.number is not None or bool(sub.net_unit.data)
            if net_given and sub.unit.data not in COUNT_UNITS:
                sub.net_quantity.errors.append(
                    _("Net content is for counted units (boxes, bags, …); leave it empty.")
                )
            elif net_given and (sub.net_quantity.number is None or not sub.net_unit.data):
                sub.net_quantity.errors.append(
                    _("Give both the net content of one unit and its unit (e.g. 5 kg per box).")
                )
            if sub.errors:
                continue
            item["quantity"] = sub.quantity.number
            item["unit"] = sub.unit.data
            if sub.net_quantity.number is not None:
                item["net_content"] = {
                    "quantity": sub.net_quantity.number,
                    "unit": sub.net_unit.data,
                }
            if sub.product_zh.data:
                item["product"] = {"zh": sub.product_zh.data}
            self.output_rows.append((index, item))
        if any(row.form.errors for row in field):
            raise ValidationError(_("Correct the output rows marked below."))
        if not self.output_rows:
            raise ValidationError(_("Describe at least one new lot."))


# --- labels ------------------------------------------------------------------------------


class LabelRow(Row):
    ref = HiddenField()
    copies = WholeNumberField(_l("Labels"), low=0, high=MAX_COPIES, required=False)


class LabelsForm(FlaskForm):  # type: ignore[misc]
    rows = FieldList(FormField(LabelRow), min_entries=0, max_entries=1000)
    layout = SelectField(
        _l("Sheet layout (A4)"),
        choices=[
            SelectChoice("3x8", _l("3 × 8 labels, 70 × 37 mm")),
            SelectChoice("4x10", _l("4 × 10 labels, 52.5 × 29.7 mm")),
            SelectChoice("2x5", _l("2 × 5 labels, 105 × 57 mm")),
        ],
        default="3x8",
    )
    level = SelectField(
        _l("QR error correction"),
        choices=[
            SelectChoice("M", _l("M — 15 %, normal labels")),
            SelectChoice("Q", _l("Q — 25 %, labels that get scuffed")),
            SelectChoice("H", _l("H — 30 %, wet or partly covered labels")),
        ],
        default="M",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chosen: list[tuple[tuple[str, str], int]] = []

    def validate_rows(self, field: Any) -> None:
        self.chosen = []
        for row in field:
            sub = row.form
            if sub.copies.number:
                try:
                    self.chosen.append((parse_ref(sub.ref.data), sub.copies.number))
                except InvalidInput:
                    sub.copies.errors.append(_("This row names no lot."))
        if any(row.form.errors for row in field):
            raise ValidationError(_("Correct the numbers marked below."))
        total = sum(n for _key, n in self.chosen)
        if not total:
            raise ValidationError(_("Enter how many labels to print for at least one lot."))
        if total > MAX_LABELS:
            raise ValidationError(
                _(
                    "At most %(max)d labels per PDF; you asked for %(n)d. Print them in parts.",
                    max=MAX_LABELS,
                    n=total,
                )
            )


# --- recall ------------------------------------------------------------------------------


def _lines(value: Any) -> Any:
    """Strip, and store line breaks as ``\\n`` (browsers send a textarea's as CRLF)."""
    return (
        value.replace("\r\n", "\n").replace("\r", "\n").strip() if isinstance(value, str) else value
    )


class EvidenceRow(Row):
    """An evidence document uploaded with an earlier step of the recall form, carried by its
    hash (the view checks the blob store holds it and takes its size from there)."""

    sha256 = HiddenField()
    name = HiddenField()
    media_type = HiddenField()
    keep = BooleanField(_l("Keep"), default=True)


class RecallForm(FlaskForm):  # type: ignore[misc]
    """``batch.recalled``: the reason (required) and evidence documents; the lot is the one
    the page's URL names, so nothing in the posted form can point the recall elsewhere."""

    reason = TextAreaField(
        _l("Reason for the recall"),
        validators=[
            Length(
                max=MAX_TEXT,
                message=_l("At most %(max)d characters; you wrote %(length)d. Shorten the reason."),
            )
        ],
        filters=[_lines],
    )
    evidence = MultipleFileField(_l("Evidence documents (optional)"))
    kept = FieldList(FormField(EvidenceRow), min_entries=0, max_entries=MAX_EVIDENCE)

    def validate_reason(self, field: Any) -> None:
        if not field.data:
            raise ValidationError(
                _(
                    "Give the reason for the recall: consumers see it on the product page "
                    "(e.g. the inspection finding, the labelling error)."
                )
            )
