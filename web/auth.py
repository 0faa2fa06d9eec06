"""Signing in and out, the current user, and the role checks every portal uses.

Sessions are Flask's signed cookies holding only the user name and the
``session_version`` they were made with; each request reloads the user, so a
deactivated user, a changed password or a revoked key takes effect at once.
Signing in clears the old session first (no session fixation); signing out ends every
session of the user, so a copied cookie stops working too.

Use ``@role_required("auditor", "admin")`` on a view; writes also need
:func:`signing_user` (the user's key must be active).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.wrappers import Response
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length

from ledger.errors import InvalidInput, StorageError
from web.extensions import instance, limiter, reader
from web.users import User, authenticate, end_sessions, get_user, set_password

bp = Blueprint("auth", __name__)

F = TypeVar("F", bound=Callable[..., Any])

#: Which portal each role lands on after signing in.
HOME = {
    "producer": "producer.dashboard",
    "auditor": "auditor.dashboard",
    "admin": "admin.dashboard",
    "finance_officer": "officials.dashboard",
    "county_approver": "officials.dashboard",
    "township_approver": "officials.dashboard",
    "village_approver": "officials.dashboard",
}


class LoginForm(FlaskForm):  # type: ignore[misc]
    username = StringField(_l("User name"), validators=[DataRequired(), Length(max=64)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=256)])


class PasswordForm(FlaskForm):  # type: ignore[misc]
    current = PasswordField(_l("Current password"), validators=[DataRequired()])
    new = PasswordField(_l("New password"), validators=[DataRequired(), Length(min=10, max=256)])
    repeat = PasswordField(
        _l("Repeat the new password"),
        validators=[EqualTo("new", message=_l("The two new passwords differ."))],
    )


def log_n() -> int:
    return int(current_app.config.get("SUYUAN_SCRYPT_LOG_N", 15))


def load_user() -> None:
    """Before every request: ``g.user`` is the signed-in user or None."""
    g.user = None
    name = session.get("user")
    if not name:
        return
    try:
        user = get_user(instance().engine, name, reader().registered_keys())
    except (StorageError, SQLAlchemyError):
        # The primary is unreachable (a read-only host during an outage): serve the
        # visitor as anonymous rather than fail every public page; the portal's own
        # views need a signed-in user and say so.
        return
    if user is None or not user.active or user.session_version != session.get("v"):
        session.clear()
        return
    g.user = user


def current_user() -> User | None:
    return cast(User | None, g.get("user"))


def login_required(view: F) -> F:
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if current_user() is None:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return cast(F, wrapped)


def role_required(*roles: str) -> Callable[[F], F]:
    """Signed in, and the user's key has one of ``roles`` (else 403)."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            user = current_user()
            if user is None:
                return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
            if user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return cast(F, wrapped)

    return decorate


def signing_user() -> User:
    """The current user, who must be able to sign (active key); else 403."""
    user = current_user()
    if user is None or not user.can_sign:
        abort(403)
    return user


def safe_next(target: str | None, default: str) -> str:
    """``target`` if it is a path on this site, else ``default`` (no open redirects)."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    if "\\" in target or any(ord(ch) < 32 for ch in target):
        return default
    return target


def home_for(user: User) -> str:
    endpoint = HOME.get(user.role or "", "auth.account")
    return url_for(endpoint) if endpoint in current_app.view_functions else url_for("auth.account")


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["SUYUAN_LOGIN_LIMIT"], methods=["POST"])
def login() -> tuple[str, int] | Response:
    form = LoginForm()
    if form.validate_on_submit():
        user = authenticate(
            instance().engine,
            form.username.data.strip(),
            form.password.data,
            reader().registered_keys(),
            log_n=log_n(),
        )
        if user is not None:
            session.clear()  # a new session: nothing carried over from before sign-in
            session["user"] = user.username
            session["v"] = user.session_version
            session.permanent = True
            return redirect(safe_next(request.args.get("next"), home_for(user)))
        flash(_("Wrong user name or password."), "error")
    return render_template("auth/login.html", form=form), 200 if request.method == "GET" else 400


@bp.post("/logout")
def logout() -> Response:
    # The form carries a CSRF token (checked by CSRFProtect), so no one can sign you out.
    # The cookie is signed, not stored: clearing it here leaves any copy of it (a shared
    # computer's disk, a proxy log) valid until it expires, so signing out ends every
    # session of the user on the server (their session_version moves on).
    user = current_user()
    if user is not None:
        # The primary unreachable (a read-only host in an outage): this session still ends.
        with contextlib.suppress(StorageError, SQLAlchemyError):
            end_sessions(instance().engine, user.username)
    session.clear()
    flash(_("You have signed out."), "info")
    return redirect(url_for("public.index"))


@bp.route("/account", methods=["GET", "POST"])
@login_required
def account() -> str | Response:
    user = current_user()
    assert user is not None
    form = PasswordForm()
    if form.validate_on_submit():
        engine = instance().engine
        if (
            authenticate(
                engine, user.username, form.current.data, reader().registered_keys(), log_n=log_n()
            )
            is None
        ):
            form.current.errors.append(_("The current password is wrong."))
        else:
            try:
                set_password(engine, user.username, form.new.data, log_n=log_n())
            except InvalidInput as exc:
                form.new.errors.append(str(exc))
            else:
                session["v"] = user.session_version + 1  # this session goes on; others end
                flash(_("Password changed. Your other sessions have ended."), "info")
                return redirect(url_for("auth.account"))
    return render_template("auth/account.html", user=user, form=form)
