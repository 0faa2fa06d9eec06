"""Appending from the portals: statements signed with the signed-in user's key.

The operator holds portal users' private keys (instance key store, encrypted
with ``SUYUAN_PASSPHRASE``) and signs with the key bound to the user making the
request — never another user's.  What a statement may do is then decided by
the ledger's rules from that key's role and organisation, exactly as for a
statement signed elsewhere and posted to the API.  Organisations that keep
their own keys sign offline and post to ``/api/v1/entries`` with a token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ledger.entry import Entry, SignedStatement, format_time, make_statement, nfc, sign_statement
from ledger.errors import Error
from web.auth import signing_user
from web.extensions import author, writer


def statements(items: Sequence[tuple[str, Mapping[str, Any]]]) -> list[SignedStatement]:
    """``(kind, body)`` pairs signed by the current user's key (403 if it cannot sign)."""
    user = signing_user()
    signer = author(user.key_name)
    log = writer()
    created = format_time(datetime.now(UTC))
    return [
        sign_statement(make_statement(kind, nfc(body), log.origin, created), [signer])
        for kind, body in items
    ]


def check(items: Sequence[tuple[str, Mapping[str, Any]]]) -> list[Error | None]:
    """Dry run (nothing written): the error each statement would meet, or None."""
    return writer().check(statements(items))


def append(items: Sequence[tuple[str, Mapping[str, Any]]]) -> list[Entry]:
    """Sign and append, all or nothing; raises the ledger's error when refused."""
    return writer().append(statements(items))
