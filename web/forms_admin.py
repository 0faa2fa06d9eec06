"""The administration portal's forms (Flask-WTF: every one carries a CSRF token).

The forms check *shape* (lengths, character sets, a readable verifier key); what
depends on the state — a user name taken, a key name used before, a key not held
here — is checked by the views in :mod:`web.admin`, and the ledger's rules have the
last word on every registration and revocation.
"""

from __future__ import annotations

import secrets
import unicodedata
from typing import Any

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    PasswordField,
    RadioField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import (
    DataRequired,
    EqualTo,
    Length,
    Optional,
    Regexp,
    StopValidation,
    ValidationError,
)

from ledger.errors import InvalidInput
from ledger.note import Verifier, parse_vkey
from ledger.rules import MAX_LABEL_LENGTH, ROLES
from web.i18n import ROLE_LABELS
from web.passwords import MAX_LENGTH, MIN_LENGTH

#: Letters for generated passwords: no 0/O, 1/l/I, so they can be read out and typed.
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
MAX_REASON_LENGTH = 1000


def generate_password() -> str:
    """A fresh password like ``k7mq-3xwd-p9ta-hc4e`` (16 letters from 31: 79 bits)."""
    return "-".join("".join(secrets.choice(_ALPHABET) for _ in range(4)) for _ in range(4))


def clean_org(text: str | None) -> str:
    """An organisation as typed: trimmed, NFC; raises InvalidInput when it cannot be one."""
    org = unicodedata.normalize("NFC", (text or "").strip())
    if not org:
        raise InvalidInput("an organisation name is required")
    if len(org) > MAX_LABEL_LENGTH:
        raise InvalidInput(f"an organisation name has at most {MAX_LABEL_LENGTH} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in org):
        raise InvalidInput("an organisation name may not contain control characters")
    return org


def _org_field(form: Any, field: Any) -> None:
    try:
        field.data = clean_org(field.data)
    except InvalidInput:
        raise StopValidation(
            str(
                _l(
                    "Give the organisation's name: 1–%(n)d characters, no control characters.",
                    n=MAX_LABEL_LENGTH,
                )
            )
        ) from None


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _role_choices() -> list[SelectChoice]:
    """No role chosen at first: an administrator picks one (never ``admin`` by accident)."""
    roles = [SelectChoice(role, ROLE_LABELS.get(role, role)) for role in sorted(ROLES)]
    return [SelectChoice("", _l("— choose a role —")), *roles]


def _check_role(form: Any, field: Any) -> None:
    if field.data not in ROLES:
        raise StopValidation(str(_l("Choose a role.")))


USERNAME_HELP = _l(
    "2–64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit."
)
KEY_NAME_HELP = _l("1–64 letters, digits, '.', '_' or '-', starting with a letter or digit.")
_USERNAME = Regexp(r"^[a-z0-9][a-z0-9._-]{1,63}$", message=USERNAME_HELP)
_KEY_NAME = Regexp(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", message=KEY_NAME_HELP)
_DISPLAY = Length(min=1, max=100, message=_l("A display name has 1–100 characters."))


def _password_field() -> Any:
    return PasswordField(
        _l("Password"),
        validators=[
            Optional(strip_whitespace=False),
            Length(
                min=MIN_LENGTH,
                max=MAX_LENGTH,
                message=_l(
                    "A password has %(min)d–%(max)d characters.", min=MIN_LENGTH, max=MAX_LENGTH
                ),
            ),
        ],
    )


def _repeat_field() -> Any:
    return PasswordField(
        _l("Repeat the password"),
        validators=[EqualTo("password", message=_l("The two passwords differ."))],
    )


class _PasswordChoice:
    """Password and repeat: both empty means "generate one"; else ≥ 10 characters, equal."""

    password: Any

    def chosen_password(self) -> tuple[str, bool]:
        """(the password, whether it was generated)."""
        if self.password.data:
            return str(self.password.data), False
        return generate_password(), True


class NewUserForm(FlaskForm, _PasswordChoice):  # type: ignore[misc]
    """A portal user, bound to a key held here (``existing``) or to a new one (``new``)."""

    username = StringField(
        _l("User name"), filters=[_strip], validators=[DataRequired(), _USERNAME]
    )
    display_name = StringField(
        _l("Display name"), filters=[_strip], validators=[DataRequired(), _DISPLAY]
    )
    key_mode = RadioField(
        _l("Signing key"),
        choices=[
            SelectChoice("new", _l("Make a new key for this user")),
            SelectChoice("existing", _l("Use a key this site already holds")),
        ],
        default="new",
        validators=[DataRequired()],
    )
    existing_key = SelectField(_l("Existing key"), choices=[], validate_choice=False)
    key_name = StringField(_l("New key name"), filters=[_strip], validators=[Optional(), _KEY_NAME])
    role = SelectField(_l("Role"), choices=_role_choices(), validate_choice=False)
    org = StringField(_l("Organisation"))
    password = _password_field()
    repeat = _repeat_field()

    def validate_existing_key(self, field: Any) -> None:
        if self.key_mode.data != "existing":
            return
        if not field.data or field.data not in {c.value for c in field.choices}:
            raise ValidationError(str(_l("Choose one of the keys this site holds.")))

    def validate_role(self, field: Any) -> None:
        if self.key_mode.data == "new":
            _check_role(self, field)

    def validate_org(self, field: Any) -> None:
        if self.key_mode.data == "new":
            _org_field(self, field)


class PasswordResetForm(FlaskForm, _PasswordChoice):  # type: ignore[misc]
    password = _password_field()
    repeat = _repeat_field()


class ConfirmForm(FlaskForm):  # type: ignore[misc]
    """A button that changes something: only the CSRF token."""


class RegisterKeyForm(FlaskForm):  # type: ignore[misc]
    """A key an organisation holds itself: its verifier key, pasted, and its role."""

    vkey = TextAreaField(
        _l("Verifier key (vkey)"), filters=[_strip], validators=[DataRequired(), Length(max=500)]
    )
    role = SelectField(
        _l("Role"), choices=_role_choices(), validate_choice=False, validators=[_check_role]
    )
    org = StringField(_l("Organisation"), validators=[_org_field])

    verifier: Verifier | None = None

    def validate_vkey(self, field: Any) -> None:
        try:
            self.verifier = parse_vkey(field.data)
        except InvalidInput as exc:
            raise ValidationError(
                str(_l("This is not a verifier key (name+hex8+base64): %(reason)s", reason=exc))
            ) from None
        if not _KEY_NAME.regex.match(self.verifier.name):
            raise ValidationError(
                str(
                    _l(
                        "The key's name %(name)s breaks the key name rules: 1–64 letters, "
                        "digits, '.', '_' or '-', starting with a letter or digit.",
                        name=repr(self.verifier.name),
                    )
                )
            )


class RevokeKeyForm(FlaskForm):  # type: ignore[misc]
    reason = TextAreaField(
        _l("Reason (goes on the public ledger)"),
        filters=[_strip],
        validators=[
            DataRequired(message=_l("Say why the key is revoked.")),
            Length(max=MAX_REASON_LENGTH),
        ],
    )


class TokenForm(FlaskForm):  # type: ignore[misc]
    name = StringField(
        _l("Token name"),
        filters=[_strip],
        validators=[
            DataRequired(),
            Regexp(
                r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
                message=_l(
                    "1–128 letters, digits, '.', '_' or '-', starting with a letter or digit."
                ),
            ),
        ],
    )
