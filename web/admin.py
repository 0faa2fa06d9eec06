"""The administration portal (``/admin/``): organisations, users, keys, API tokens, posters.

Every view needs the ``admin`` role.  Every write also needs the admin's own key
to be active (:func:`~web.auth.signing_user`), carries a CSRF token (Flask-WTF)
and is rate-limited.  Ledger writes — ``key.registered`` and ``key.revoked`` —
are signed with the signed-in admin's key (:mod:`web.signing`), so the public
ledger says which administrator did what.

Contracts:

* **A key name is used once.**  Accounts are bound to keys *by name*
  (:mod:`web.users`), so a name that any registered key has had (active or
  revoked) or that a private key in the instance key store has MUST NOT be given
  to another key: reusing a revoked key's name would hand the new key to the old
  key's users.
* **A new user with a new key** is three steps: make the key file, register the
  key (one ledger entry), create the account.  If the ledger refuses the
  registration, the key file is deleted and no account is made: nothing is left
  behind.  If the account cannot be made after the key was registered (the user
  name was taken in between), the key stays registered and held here, and the page
  says so — bind a user to it.  A crash between the steps leaves either an
  unregistered key file (its name is then refused until the file is removed) or a
  registered key without a user (bind one); never an account without its key.
* **Secrets are shown once**: a generated password or a new API token appears
  only in the response to the POST that made it (never in the session cookie or a
  URL), marked ``Cache-Control: no-store``.

Which keys an account may be bound to is decided in :mod:`web.users`
(:func:`~web.users.bindable_key`), which ``suyuan user`` and the demo use too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from sqlalchemy import func, select
from werkzeug.wrappers import Response
from wtforms import SelectChoice

from keys.store import KeyStore
from ledger import tokens
from ledger.domain.projects import list_projects, projects
from ledger.entry import Entry
from ledger.errors import Error, InvalidInput, NotFound
from ledger.rules import KeyRecord
from qr.notice import SIZES, notice_data, render_notice, yuan
from qr.urls import check_host
from web import signing
from web.auth import current_user, log_n, role_required, signing_user
from web.errors import classify
from web.extensions import instance, limiter, reader, write_limit
from web.forms_admin import (
    ConfirmForm,
    NewUserForm,
    PasswordResetForm,
    RegisterKeyForm,
    RevokeKeyForm,
    TokenForm,
)
from web.i18n import role_label
from web.users import (
    User,
    active_key,
    bound_key,
    create_user,
    get_user,
    held_active_keys,
    key_name_used,
    list_users,
    set_active,
    set_password,
)

bp = Blueprint("admin", __name__, url_prefix="/admin")

PROJECTS_PER_PAGE = 50
_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass
class Organisation:
    """An ``org`` string that registered keys declare, with those keys and their users."""

    name: str
    keys: list[KeyRecord] = field(default_factory=list)
    users: list[User] = field(default_factory=list)

    @property
    def active_keys(self) -> list[KeyRecord]:
        return [k for k in self.keys if k.revoked_seq is None]


def organisations(keys: Sequence[KeyRecord], users: Sequence[User]) -> list[Organisation]:
    """The distinct orgs of the registered keys, each with its keys and the users bound to
    them (a user of a revoked key is listed under that key's org)."""
    orgs: dict[str, Organisation] = {}
    for record in keys:
        orgs.setdefault(record.org, Organisation(record.org)).keys.append(record)
    for account in users:
        bound = bound_key(keys, account.key_name)
        if bound is not None:
            orgs[bound.org].users.append(account)
    return sorted(orgs.values(), key=lambda o: o.name)


# --- views ---------------------------------------------------------------------------------


@bp.errorhandler(Error)
def _error(exc: Error) -> tuple[str, int]:
    status, _code = classify(exc)
    return render_template("error.html", status=status, message=str(exc)), status


def _keys() -> list[KeyRecord]:
    return reader().registered_keys()


def _once(html: str) -> Response:
    """A page that shows a secret: never stored by a browser or proxy."""
    response = make_response(html)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def _status() -> int:
    return 200 if request.method == "GET" else 400


@bp.get("/")
@role_required("admin")
def dashboard() -> str:
    keys = _keys()
    engine = instance().engine
    users = list_users(engine, keys)
    held = set(instance().keystore.author_names())
    orgs = organisations(keys, users)
    with engine.connect() as conn:
        project_count = conn.execute(select(func.count()).select_from(projects)).scalar_one()
    token_rows = tokens.list_tokens(engine)
    counts = {
        "entries": reader().size(),
        "users": len(users),
        "users_active": sum(1 for u in users if u.active),
        "users_signing": sum(1 for u in users if u.can_sign),
        "keys_active": sum(1 for k in keys if k.revoked_seq is None),
        "keys_revoked": sum(1 for k in keys if k.revoked_seq is not None),
        "keys_held": sum(1 for k in keys if k.revoked_seq is None and k.name in held),
        "orgs": len(orgs),
        "tokens": sum(1 for _n, _c, revoked in token_rows if revoked is None),
        "projects": int(project_count),
    }
    return render_template("admin/dashboard.html", counts=counts, orgs=orgs, held=held)


# users


@bp.get("/users")
@role_required("admin")
def users() -> str:
    keys = _keys()
    found = list_users(instance().engine, keys)
    bound = {u.username: bound_key(keys, u.key_name) for u in found}
    return render_template("admin/users.html", users=found, bound=bound)


def _user_or_404(username: str, keys: list[KeyRecord]) -> User:
    user = get_user(instance().engine, username, keys)
    if user is None:
        abort(404)
    return user


@bp.route("/users/new", methods=["GET", "POST"])
@role_required("admin")
@limiter.limit(write_limit, methods=["POST"])
def user_new() -> str | Response | tuple[str, int]:
    keys = _keys()
    store = instance().keystore
    form = NewUserForm()
    form.existing_key.choices = [SelectChoice("", _("— choose a key —"))] + [
        SelectChoice(k.name, f"{k.name} · {role_label(k.role)} · {k.org}")
        for k in held_active_keys(store, keys)
    ]
    if form.validate_on_submit():
        signing_user()
        done = _make_user(form, keys, store)
        if done is not None:
            return done
    orgs = sorted({k.org for k in keys})
    return render_template("admin/user_new.html", form=form, orgs=orgs), _status()


def _make_user(form: NewUserForm, keys: list[KeyRecord], store: KeyStore) -> Response | None:
    """Make the account (and its key); None with the form's errors set when refused."""
    engine = instance().engine
    username: str = form.username.data
    if get_user(engine, username, keys) is not None:
        form.username.errors.append(_("A user named %(name)s exists already.", name=username))
        return None
    password, generated = form.chosen_password()
    entry: Entry | None = None
    if form.key_mode.data == "existing":
        key_name: str = form.existing_key.data
        record = active_key(keys, key_name)
    else:
        key_name = form.key_name.data or username
        used = key_name_used(store, keys, key_name)
        if used is not None:
            target = form.key_name if form.key_name.data else form.username
            target.errors.append(
                _(
                    "A key named %(name)s was registered before: a key name is used once. "
                    "Choose another key name.",
                    name=key_name,
                )
                if used == "registered"
                else _(
                    "This site already holds a private key named %(name)s. Bind the user to "
                    "it (if it is registered) or choose another key name.",
                    name=key_name,
                )
            )
            return None
        try:
            signer = store.new_author(key_name, instance().passphrase())
        except Error as exc:
            form.form_errors.append(_("The key could not be made: %(reason)s", reason=str(exc)))
            return None
        body = {
            "name": key_name,
            "vkey": signer.verifier.vkey,
            "role": form.role.data,
            "org": form.org.data,
        }
        try:
            [entry] = signing.append([("key.registered", body)])
        except Error as exc:
            _discard_unregistered(store, key_name, signer.verifier.key_id)
            form.form_errors.append(
                _("The ledger refused the key registration: %(reason)s", reason=str(exc))
            )
            return None
        record = active_key(_keys(), key_name)
    try:
        create_user(engine, username, form.display_name.data, password, key_name, log_n=log_n())
    except Error as exc:
        if entry is not None:
            form.form_errors.append(
                _(
                    "Key %(key)s was registered (entry %(seq)d) but the account could not be "
                    "made: %(reason)s. Create a user bound to that key.",
                    key=key_name,
                    seq=entry.seq,
                    reason=str(exc),
                )
            )
        else:
            form.form_errors.append(str(exc))
        return None
    html = render_template(
        "admin/user_created.html",
        username=username,
        display_name=form.display_name.data,
        key=record,
        entry=entry,
        password=password if generated else None,
    )
    return _once(html)


def _discard_unregistered(store: KeyStore, key_name: str, key_id: str) -> None:
    """Delete the key file of a registration the ledger refused — unless the ledger has the
    key after all (a storage error after the commit), or cannot tell us (then keep it)."""
    try:
        registered = any(k.key_id == key_id for k in _keys())
    except Error:
        return
    if not registered:
        store.discard_author(key_name)


@bp.get("/users/<username>")
@role_required("admin")
def user(username: str) -> str:
    keys = _keys()
    found = _user_or_404(username, keys)
    return _user_page(found, keys)


def _user_page(
    found: User, keys: list[KeyRecord], password_form: PasswordResetForm | None = None
) -> str:
    return render_template(
        "admin/user.html",
        account=found,  # not `user`: base.html sets that to the signed-in user
        key=bound_key(keys, found.key_name),
        held=found.key_name in instance().keystore.author_names(),
        password_form=password_form or PasswordResetForm(formdata=None),
        confirm=ConfirmForm(formdata=None),
        is_me=_is_me(found),
    )


def _is_me(found: User) -> bool:
    me = current_user()
    return me is not None and me.username == found.username


@bp.post("/users/<username>/password")
@role_required("admin")
@limiter.limit(write_limit, methods=["POST"])
def user_password(username: str) -> str | Response | tuple[str, int]:
    keys = _keys()
    found = _user_or_404(username, keys)
    form = PasswordResetForm()
    if _is_me(found):
        flash(_("Change your own password on your account page."), "error")
        return redirect(url_for("auth.account"))
    if not form.validate_on_submit():
        return _user_page(found, keys, form), 400
    signing_user()
    password, generated = form.chosen_password()
    set_password(instance().engine, username, password, log_n=log_n())
    if not generated:
        flash(_("Password of %(name)s changed; their sessions have ended.", name=username), "info")
        return redirect(url_for("admin.user", username=username))
    html = render_template(
        "admin/secret.html",
        title=_("New password for %(name)s", name=username),
        intro=_("Their sessions have ended. Give them this password; it is shown only once."),
        secret=password,
        back=url_for("admin.user", username=username),
    )
    return _once(html)


def _set_active(username: str, active: bool) -> Response:
    keys = _keys()
    found = _user_or_404(username, keys)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    signing_user()
    if _is_me(found) and not active:
        flash(_("You cannot deactivate your own account."), "error")
    else:
        set_active(instance().engine, username, active)
        if active:
            flash(_("%(name)s can sign in again.", name=username), "info")
        else:
            flash(_("%(name)s is deactivated; their sessions have ended.", name=username), "info")
    return redirect(url_for("admin.user", username=username))


@bp.post("/users/<username>/deactivate")
@role_required("admin")
@limiter.limit(write_limit, methods=["POST"])
def user_deactivate(username: str) -> Response:
    return _set_active(username, False)


@bp.post("/users/<username>/reactivate")
@role_required("admin")
@limiter.limit(write_limit, methods=["POST"])
def user_reactivate(username: str) -> Response:
    return _set_active(username, True)


# keys


def _users_by_key(keys: Sequence[KeyRecord], found: Sequence[User]) -> dict[str, list[User]]:
    out: dict[str, list[User]] = {}
    for u in found:
        key = bound_key(keys, u.key_name)
        if key is not None:
            out.setdefault(key.key_id, []).append(u)
    return out


@bp.get("/keys")
@role_required("admin")
def keys() -> str:
    found = _keys()
    return render_template(
        "admin/keys.html",
        keys=found,
        held=set(instance().keystore.author_names()),
        users=_users_by_key(found, list_users(instance().engine, found)),
    )


@bp.route("/keys/register", methods=["GET", "POST"])
@role_required("admin")
@limiter.limit(write_limit, methods=["POST"])
def key_register() -> str | Response | tuple[str, int]:
    found = _keys()
    form = RegisterKeyForm()
    status = _status()
    if form.validate_on_submit():
        signing_user()
        verifier = form.verifier
        assert verifier is not None
        same = [k for k in found if k.key_id == verifier.key_id]
        used = key_name_used(instance().keystore, found, verifier.name)
        if same:
            form.vkey.errors.append(
                _("This key is registered already (entry %(seq)d).", seq=same[0].registered_seq)
            )
        elif used is not None:
            form.vkey.errors.append(
                _(
                    "A key named %(name)s was registered before or is held here: a key name is "
                    "used once. Ask the organisation to make its key under another name.",
                    name=verifier.name,
                )
            )
        else:
            body = {
                "name": verifier.name,
                "vkey": verifier.vkey,
                "role": form.role.data,
                "org": form.org.data,
            }
            try:
                [entry] = signing.append([("key.registered", body)])
            except Error as exc:
                status = classify(exc)[0]
                form.form_errors.append(
                    _("The ledger refused the key registration: %(reason)s", reason=str(exc))
                )
            else:
                flash(
                    _(
                        "Key %(key)s registered (entry %(seq)d).",
                        key=verifier.key_id,
                        seq=entry.seq,
                    ),
                    "info",
                )
                return redirect(url_for("admin.key", key_id=verifier.key_id))
    orgs = sorted({k.org for k in found})
    return render_template("admin/key_register.html", form=form, orgs=orgs), status


def _key_or_404(key_id: str, found: Sequence[KeyRecord]) -> KeyRecord:
    for record in found:
        if record.key_id == key_id:
            return record
    abort(404)


def _key_page(record: KeyRecord, found: list[KeyRecord], form: RevokeKeyForm | None = None) -> str:
    me = current_user()
    bound = _users_by_key(found, list_users(instance().engine, found)).get(record.key_id, [])
    return render_template(
        "admin/key.html",
        key=record,
        held=record.name in instance().keystore.author_names(),
        users=bound,
        form=form or RevokeKeyForm(formdata=None),
        own=me is not None and me.key_id == record.key_id,
    )


@bp.get("/keys/<path:key_id>")
@role_required("admin")
def key(key_id: str) -> str:
    found = _keys()
    return _key_page(_key_or_404(key_id, found), found)


@bp.post("/keys/<path:key_id>/revoke")
@role_required("admin")
@limiter.limit(write_limit, methods=["POST"])
def key_revoke(key_id: str) -> str | Response | tuple[str, int]:
    found = _keys()
    record = _key_or_404(key_id, found)
    form = RevokeKeyForm()
    if not form.validate_on_submit():
        return _key_page(record, found, form), 400
    me = signing_user()
    if record.revoked_seq is not None:
        form.form_errors.append(
            _("This key was revoked already (entry %(seq)d).", seq=record.revoked_seq)
        )
        return _key_page(record, found, form), 409
    if me.key_id == record.key_id:
        form.form_errors.append(
            _("You cannot revoke the key you are signed in with; ask another administrator.")
        )
        return _key_page(record, found, form), 400
    try:
        [entry] = signing.append([("key.revoked", {"key": key_id, "reason": form.reason.data})])
    except Error as exc:
        form.form_errors.append(_("The ledger refused the revocation: %(reason)s", reason=str(exc)))
        return _key_page(record, found, form), classify(exc)[0]
    flash(_("Key %(key)s revoked (entry %(seq)d).", key=key_id, seq=entry.seq), "info")
    return redirect(url_for("admin.key", key_id=key_id))


# API tokens


def _tokens_page(form: TokenForm) -> str:
    return render_template(
        "admin/tokens.html",
        tokens=tokens.list_tokens(instance().engine),
        form=form,
        confirm=ConfirmForm(formdata=None),
    )


@bp.route("/tokens", methods=["GET", "POST"])
@role_required("admin")
@limiter.limit(write_limit, methods=["POST"])
def api_tokens() -> str | Response | tuple[str, int]:
    form = TokenForm()
    if form.validate_on_submit():
        signing_user()
        try:
            secret = tokens.create_token(instance().engine, form.name.data)
        except Error as exc:
            form.name.errors.append(
                _("A token named %(name)s exists already.", name=form.name.data)
                if classify(exc)[0] == 409
                else str(exc)
            )
        else:
            html = render_template(
                "admin/secret.html",
                title=_("API token %(name)s", name=form.name.data),
                intro=_(
                    "Give this token to the client that posts signed statements "
                    "(Authorization: Bearer …). It is shown only once; only its hash is kept."
                ),
                secret=secret,
                back=url_for("admin.api_tokens"),
            )
            return _once(html)
    return _tokens_page(form), _status()


@bp.post("/tokens/<name>/revoke")
@role_required("admin")
@limiter.limit(write_limit, methods=["POST"])
def token_revoke(name: str) -> Response:
    if not ConfirmForm().validate_on_submit():
        abort(400)
    signing_user()
    try:
        tokens.revoke_token(instance().engine, name)
    except NotFound:
        flash(_("No active token named %(name)s.", name=name), "error")
    else:
        flash(_("Token %(name)s revoked.", name=name), "info")
    return redirect(url_for("admin.api_tokens"))


# project notice posters (公示牌)


def public_host() -> str:
    """The host printed in codes: ``SUYUAN_PUBLIC_HOST`` (app config, else the environment),
    else the host this request came to."""
    configured = current_app.config.get("SUYUAN_PUBLIC_HOST") or current_app.config[
        "SUYUAN_ENV"
    ].get("SUYUAN_PUBLIC_HOST")
    return check_host(str(configured) if configured else request.host)


@bp.get("/projects")
@role_required("admin")
def project_posters() -> str:
    page = request.args.get("page", "1")
    number = int(page) if page.isascii() and page.isdigit() and 0 < len(page) < 7 else 1
    number = max(number, 1)
    with instance().engine.connect() as conn:
        found = list_projects(
            conn, limit=PROJECTS_PER_PAGE + 1, offset=(number - 1) * PROJECTS_PER_PAGE
        )
    return render_template(
        "admin/projects.html",
        projects=found[:PROJECTS_PER_PAGE],
        page=number,
        more=len(found) > PROJECTS_PER_PAGE,
        sizes=list(SIZES),
        yuan=yuan,
    )


@bp.get("/projects/<project_id>/notice.pdf")
@role_required("admin")
def project_notice(project_id: str) -> Response:
    size = request.args.get("size", "A4")
    if size not in SIZES:
        raise InvalidInput(f"poster size must be one of {', '.join(SIZES)}, got {size!r}")
    host = public_host()
    with instance().engine.connect() as conn:
        data = notice_data(conn, project_id, host)
    response = make_response(render_notice(data, size=size))
    response.mimetype = "application/pdf"
    filename = _FILENAME_UNSAFE.sub("_", f"notice-{project_id}-{size}.pdf")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"  # the poster follows the ledger as it grows
    return response
