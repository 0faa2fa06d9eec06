"""Helpers for portal tests: users bound to real ledger keys, and signing in with CSRF.

``add_user`` does what an administrator does: a key in the instance key store,
its ``key.registered`` entry signed by the admin key, and an account bound to it.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from ledger.instance import Instance
from ledger.note import Signer
from web.users import create_user

PASSWORD = "correct horse battery"
_CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def add_user(
    instance: Instance,
    admin: Signer,
    username: str,
    role: str,
    org: str = "南河县香菇专业合作社",
    *,
    key_name: str | None = None,
    password: str = PASSWORD,
    display_name: str | None = None,
) -> Signer:
    """A user with a fresh registered key of ``role`` in ``org``; returns the key."""
    key_name = key_name or username
    signer = instance.keystore.new_author(key_name, instance.passphrase())
    log = instance.writer()
    instance.sign_and_append(
        log,
        "key.registered",
        {"name": key_name, "vkey": signer.verifier.vkey, "role": role, "org": org},
        [admin],
    )
    create_user(instance.engine, username, display_name or username, password, key_name, log_n=4)
    return signer


def csrf_token(client: FlaskClient, path: str) -> str:
    """The CSRF token of the form on ``path`` (GET)."""
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    found = _CSRF_RE.search(response.get_data(as_text=True))
    assert found, f"no csrf_token on {path}"
    return found.group(1)


def post_form(
    client: FlaskClient, path: str, data: dict[str, Any], *, form_path: str | None = None
) -> TestResponse:
    """POST ``data`` to ``path`` with the CSRF token of the form at ``form_path`` (default path)."""
    token = csrf_token(client, form_path or path)
    return client.post(path, data={"csrf_token": token, **data})


def login(client: FlaskClient, username: str, password: str = PASSWORD) -> TestResponse:
    response = post_form(client, "/login", {"username": username, "password": password})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return response


def signed_in(app: Flask, username: str, password: str = PASSWORD) -> FlaskClient:
    client = app.test_client()
    login(client, username, password)
    return client
