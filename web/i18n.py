"""Languages: Chinese first, English second (Flask-Babel).

The locale is, in order: ``?lang=`` on the request, the ``lang`` cookie that
the switcher (``/lang/<code>``) sets, the browser's Accept-Language, and
Chinese.  Message ids are English; ``web/translations/zh`` holds the Chinese
catalogue (``scripts/i18n.sh`` extracts, updates and compiles it).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, redirect, request, url_for
from flask_babel import Babel, get_locale
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from werkzeug.wrappers import Response

LOCALES = ("zh", "en")
DEFAULT = "zh"
COOKIE = "lang"

#: Ledger key roles (ledger.rules.ROLES) as people call them.
ROLE_LABELS = {
    "admin": _l("Administrator"),
    "producer": _l("Producer (cooperative)"),
    "inspector": _l("Inspector"),
    "logistics": _l("Logistics"),
    "retailer": _l("Retailer"),
    "village_approver": _l("Village approver"),
    "township_approver": _l("Township approver"),
    "county_approver": _l("County approver"),
    "finance_officer": _l("Finance officer"),
    "auditor": _l("Auditor"),
    "contractor": _l("Contractor"),
}

#: Fund source types and payment purposes (ledger.domain.funds) as people call them.
SOURCE_TYPE_LABELS = {
    "central": _l("Central government"),
    "provincial": _l("Provincial government"),
    "municipal": _l("Municipal government"),
    "county": _l("County government"),
    "bank_credit": _l("Bank credit"),
    "donation": _l("Donation"),
    "contribution": _l("Contribution"),
    "other": _l("Other"),
}
PURPOSE_LABELS = {
    "industry_subsidy": _l("Industry subsidy"),
    "education_grant": _l("Education grant (Yulu plan)"),
    "micro_loan": _l("Poverty-alleviation micro-loan"),
    "interest_subsidy": _l("Interest subsidy"),
    "insurance_topup": _l("Anti-poverty insurance top-up"),
    "dividend": _l("Asset-income dividend"),
    "public_welfare_wage": _l("Public-welfare job wage"),
    "project_payment": _l("Project payment"),
    "elder_care": _l("Elder-care allowance"),
    "other": _l("Other"),
}

bp = Blueprint("i18n", __name__)
babel = Babel()


def select_locale() -> str:
    asked = request.args.get("lang")
    if asked in LOCALES:
        return asked
    chosen = request.cookies.get(COOKIE)
    if chosen in LOCALES:
        return chosen
    return request.accept_languages.best_match(LOCALES) or DEFAULT


def init_app(app: Flask) -> None:
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT)
    app.config.setdefault(
        "BABEL_TRANSLATION_DIRECTORIES", str(Path(__file__).parent / "translations")
    )
    babel.init_app(app, locale_selector=select_locale)
    app.jinja_env.globals["get_locale"] = get_locale
    app.jinja_env.globals["LOCALES"] = LOCALES
    app.jinja_env.globals["html_lang"] = html_lang
    app.jinja_env.globals["role_label"] = role_label
    app.jinja_env.globals["source_type_label"] = lambda t: str(SOURCE_TYPE_LABELS.get(t, t))
    app.jinja_env.globals["purpose_label"] = lambda p: str(PURPOSE_LABELS.get(p, p))
    app.jinja_env.finalize = isolate_bidi
    app.register_blueprint(bp)


#: Explicit bidi formatting characters: marks, embeddings, overrides, isolates (UAX #9).
_BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_FSI, _PDI = "\u2068", "\u2069"


def isolate_bidi(value: Any) -> Any:
    """Jinja's ``finalize``: text that holds bidi formatting characters is shown isolated.

    Free text may hold them (right-to-left scripts need them), but an unterminated
    RIGHT-TO-LEFT OVERRIDE would reverse the rest of the line around it — a villager
    would read another amount or another name.  Wrapping the value in FIRST STRONG
    ISOLATE … POP DIRECTIONAL ISOLATE ends every embedding and override it opened at its
    own end (UAX #9), and leaves the stored text unchanged.  Values without such
    characters are untouched.
    """
    if isinstance(value, str) and _BIDI_CONTROLS.search(value):
        if isinstance(value, Markup):
            return Markup(_FSI) + value + Markup(_PDI)
        return _FSI + value + _PDI
    return value


def role_label(role: str | None) -> str:
    return str(ROLE_LABELS.get(role or "", role or ""))


def html_lang() -> str:
    return "zh-CN" if str(get_locale()) == "zh" else "en"


@bp.get("/lang/<code>")
def switch(code: str) -> Response:
    """Remember the language and go back to the page the switcher was on."""
    from web.auth import safe_next

    target = safe_next(request.args.get("next"), url_for("public.index"))
    response = redirect(target)
    if code in LOCALES:
        response.set_cookie(
            COOKIE, code, max_age=365 * 24 * 3600, samesite="Lax", httponly=True, secure=False
        )
    return response
