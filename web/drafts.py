"""The pending-statement store: statements signed by some of their authors, waiting for the rest.

A *draft* is one signed statement (today a ``fund.disbursed``) whose kind needs several
distinct keys — a finance officer plus the roles the allocation's policy lists (双认定) — of
which only some have signed.  The statement itself (kind, body, origin, created) is fixed when
the draft is made; co-signers only add signatures over the very same bytes
(:func:`ledger.entry.add_signatures`).  When every required role has signed, the draft is
appended as one all-or-nothing request, and the ledger's rules decide, exactly as for a
statement posted to the API.  Drafts live in the site's ``drafts`` table, beside the ledger,
never in it: a pending, declined or withdrawn draft leaves no trace in the log.

Statuses: ``pending`` (waiting for signatures) → ``appending`` (complete; being appended) →
``appended`` (``seq`` set) or ``refused`` (the ledger's reason in ``reason``); or, from
``pending``, ``declined`` by a co-signer or ``withdrawn`` by its author.

Concurrency: every change is a compare-and-set on ``version`` (and the status), so two
co-signers approving at once never lose a signature, and a withdrawal racing with the last
approval either wins (nothing is appended) or loses (the draft is appended).  Only the request
that moves a draft to ``appending`` appends it.

Crash safety: the order is claim (``appending``) → append → record the outcome.  A crash after
the append but before the outcome is recorded leaves ``appending``; :func:`settle` finds the
statement in the log by its digest (``entries.stmt_hash``; a statement is appended at most
once) and records ``appended`` with its seq.  A crash before the append leaves ``appending``
with nothing in the log; after :data:`STALE_SECONDS` a signer may append it again
(:func:`stale`).  Either way the ledger holds the payment once or not at all.

The dry run (:func:`dry_run`): the log's own ``check`` of the partly signed statement refuses
it for the missing approvals, and the payment rules check the signers *before* the money
(``_check_disbursed``), so ``check`` alone cannot say whether the payment would over-spend.
:func:`rules_check` therefore runs the kind's rule once more, on the same rows, as if every
missing role had signed with a placeholder key.  Placeholders exist only in that throwaway
rule state: they are never registered, never written, and carry no real signature.
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, select, update

from ledger import canonical
from ledger.db import read_snapshot, write_connection
from ledger.entry import (
    SignatureRecord,
    SignedStatement,
    build_entry,
    format_time,
    parse_time,
    signed_statement_from_json,
)
from ledger.errors import Conflict, Error, NotFound, RuleViolation, StorageError
from ledger.log import Log
from ledger.projection import Projection, SqlSource
from ledger.rules import KINDS, KeyRecord, RuleState
from ledger.schema import drafts, entries, log_state

PENDING, APPENDING, APPENDED = "pending", "appending", "appended"
REFUSED, DECLINED, WITHDRAWN = "refused", "declined", "withdrawn"
STATUSES = (PENDING, APPENDING, APPENDED, REFUSED, DECLINED, WITHDRAWN)
#: An ``appending`` draft older than this, with nothing in the log, was cut off by a crash.
STALE_SECONDS = 120
#: How often a change is retried after losing a race to another co-signer.
RETRIES = 5
_PLACEHOLDER = "placeholder-approval-{index}+{index:08x}"


@dataclass(frozen=True)
class Draft:
    """One row of ``drafts``, with its statement parsed."""

    id: str
    status: str
    kind: str
    created_by: str
    created: str
    updated: str
    version: int
    signed: SignedStatement
    required: tuple[str, ...]
    waiting: tuple[str, ...]
    allocation: str | None
    note: str | None
    seq: int | None
    reason: str | None
    decided_by: str | None

    @property
    def body(self) -> Mapping[str, Any]:
        return self.signed.statement.body

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical statement: what every signature covers, and its log key."""
        return self.signed.statement.digest().hex()

    def signed_by(self, key_id: str | None) -> bool:
        return key_id is not None and key_id in self.signed.key_ids()


def _now() -> str:
    return format_time(datetime.now(UTC))


def _roles(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _draft(row: Any) -> Draft:
    try:
        signed = signed_statement_from_json(json.loads(row.statement))
    except (ValueError, Error) as exc:
        raise StorageError(f"draft {row.id}: the stored statement does not parse: {exc}") from None
    return Draft(
        id=row.id,
        status=row.status,
        kind=row.kind,
        created_by=row.created_by,
        created=row.created,
        updated=row.updated,
        version=row.version,
        signed=signed,
        required=_roles(row.required_roles),
        waiting=_roles(row.waiting),
        allocation=row.allocation,
        note=row.note,
        seq=row.seq,
        reason=row.reason,
        decided_by=row.decided_by,
    )


def _json(signed: SignedStatement) -> str:
    return canonical.dumps(signed.to_json()).decode("utf-8")


# --- who has signed, who must ------------------------------------------------------------


def active_keys(keys: Iterable[KeyRecord]) -> dict[str, KeyRecord]:
    """Registered, unrevoked keys by key id."""
    return {k.key_id: k for k in keys if k.revoked_seq is None}


def missing_roles(
    required: Sequence[str], signed: SignedStatement, keys: Mapping[str, KeyRecord]
) -> tuple[str, ...]:
    """The roles of ``required`` (repeats mean "that many") no distinct signing key holds.

    Only keys in ``keys`` count (pass :func:`active_keys`): a revoked signer's approval is
    no approval.  A key holds one role, so counting per role is the rules' assignment
    (``ledger.domain.common.require_roles``)."""
    have = Counter(keys[k].role for k in signed.key_ids() if k in keys)
    missing: list[str] = []
    for role in required:
        if have[role] > 0:
            have[role] -= 1
        else:
            missing.append(role)
    return tuple(missing)


def without_inactive(signed: SignedStatement, keys: Mapping[str, KeyRecord]) -> SignedStatement:
    """``signed`` less the signatures of keys that are no longer active (the ledger would
    refuse the statement for them; the role they filled is then waiting again)."""
    kept = tuple(s for s in signed.signatures if s.key_id in keys)
    return signed if len(kept) == len(signed.signatures) else replace(signed, signatures=kept)


# --- the dry run ----------------------------------------------------------------------------


def rules_check(log: Log, signed: SignedStatement, missing: Sequence[str]) -> Error | None:
    """The error the kind's rule raises for ``signed`` if every role in ``missing`` signed too.

    Reads the current projection rows, writes nothing (the connection is rolled back).  Does
    not check signatures, key status, origin or time: :meth:`ledger.log.Log.check` does.
    """
    spec = KINDS.get(signed.statement.kind)
    if spec is None:
        return RuleViolation(f"unknown kind {signed.statement.kind!r}")
    keys = {k.key_id: k for k in log.registered_keys()}
    extra = []
    for index, role in enumerate(missing):
        key_id = _PLACEHOLDER.format(index=index)
        keys[key_id] = KeyRecord(key_id, key_id, "", role, "(placeholder)", -1)
        extra.append(SignatureRecord(key_id, bytes(64)))
    trial = SignedStatement(
        signed.statement,
        tuple(sorted((*signed.signatures, *extra), key=lambda s: s.key_id)),
    )
    with read_snapshot(log.engine) as conn:  # the size and the rows it checks agree
        size = int(conn.execute(select(log_state.c.size)).scalar_one())
        state = RuleState(origin=log.origin, size=size, keys=keys, rows=Projection(SqlSource(conn)))
        try:
            entry = build_entry(size, bytes(32), _now(), trial)
            spec.check(entry, state)
        except Error as exc:
            return exc
        finally:
            conn.rollback()
    return None


def dry_run(
    log: Log, signed: SignedStatement, required: Sequence[str], keys: Mapping[str, KeyRecord]
) -> tuple[Error | None, tuple[str, ...]]:
    """(the ledger's reason to refuse ``signed`` other than missing approvals, the roles still
    missing).  ``(None, ())`` means it would be appended now as it is."""
    missing = missing_roles(required, signed, keys)
    (problem,) = log.check([signed])
    if problem is None:
        return None, ()
    if not (isinstance(problem, RuleViolation) and problem.signed_attempt):
        return problem, missing  # signatures, keys, origin, time or the body's form
    if not missing:
        return problem, missing  # nothing is missing, so that is the rules' real answer
    return rules_check(log, signed, missing), missing


# --- the store ------------------------------------------------------------------------------


def create(
    engine: Engine,
    signed: SignedStatement,
    *,
    required: Sequence[str],
    waiting: Sequence[str],
    created_by: str,
    allocation: str | None = None,
    note: str | None = None,
) -> Draft:
    now = _now()
    draft_id = secrets.token_urlsafe(12)
    with write_connection(engine) as conn:
        conn.execute(
            insert(drafts).values(
                id=draft_id,
                status=PENDING,
                kind=signed.statement.kind,
                created_by=created_by,
                created=now,
                updated=now,
                version=1,
                statement=_json(signed),
                required_roles=" ".join(required),
                waiting=" ".join(waiting),
                allocation=allocation,
                note=note or None,
            )
        )
    found = get(engine, draft_id)
    assert found is not None
    return found


def get(engine: Engine, draft_id: str) -> Draft | None:
    if not isinstance(draft_id, str) or not 1 <= len(draft_id) <= 32:
        return None
    with engine.connect() as conn:
        row = conn.execute(select(drafts).where(drafts.c.id == draft_id)).first()
    return None if row is None else _draft(row)


def require(engine: Engine, draft_id: str) -> Draft:
    found = get(engine, draft_id)
    if found is None:
        raise NotFound(f"no draft {draft_id!r}")
    return found


def _select(*where: Any, order: Any, limit: int) -> Any:
    return select(drafts).where(*where).order_by(order, drafts.c.id).limit(limit)


def waiting_for(engine: Engine, role: str, key_id: str | None, *, limit: int = 100) -> list[Draft]:
    """Pending drafts a key of ``role`` could sign now (not yet signed by ``key_id``)."""
    query = _select(
        drafts.c.status == PENDING,
        drafts.c.waiting.like(f"%{role}%"),
        order=drafts.c.created,
        limit=limit,
    )
    with engine.connect() as conn:
        found = [_draft(r) for r in conn.execute(query)]
    return [d for d in found if role in d.waiting and not d.signed_by(key_id)]


def made_by(engine: Engine, username: str, *, limit: int = 50) -> list[Draft]:
    query = _select(drafts.c.created_by == username, order=drafts.c.created.desc(), limit=limit)
    with engine.connect() as conn:
        return [_draft(r) for r in conn.execute(query)]


def recent(engine: Engine, status: str = APPENDED, *, limit: int = 20) -> list[Draft]:
    query = _select(drafts.c.status == status, order=drafts.c.updated.desc(), limit=limit)
    with engine.connect() as conn:
        return [_draft(r) for r in conn.execute(query)]


def _change(engine: Engine, draft: Draft, *, expect: str, **values: Any) -> bool:
    """Compare-and-set: apply ``values`` if the draft is still at ``draft.version`` with status
    ``expect``; False if someone changed it meanwhile."""
    with write_connection(engine) as conn:
        result = conn.execute(
            update(drafts)
            .where(
                drafts.c.id == draft.id,
                drafts.c.version == draft.version,
                drafts.c.status == expect,
            )
            .values(version=draft.version + 1, updated=_now(), **values)
        )
        return bool(result.rowcount == 1)


def add_signature(
    engine: Engine, draft: Draft, signed: SignedStatement, waiting: Sequence[str]
) -> bool:
    """Store ``signed`` (the draft's statement with one more signature) while still pending."""
    if signed.statement.digest() != draft.signed.statement.digest():
        raise Conflict(
            f"draft {draft.id}: a co-signer may add signatures, not change the statement"
        )
    return _change(
        engine, draft, expect=PENDING, statement=_json(signed), waiting=" ".join(waiting)
    )


def claim(engine: Engine, draft: Draft, signed: SignedStatement) -> bool:
    """Move a complete draft to ``appending``; only the caller that gets True appends it.
    A stale ``appending`` draft (:func:`stale`) may be claimed again."""
    if signed.statement.digest() != draft.signed.statement.digest():
        raise Conflict(
            f"draft {draft.id}: a co-signer may add signatures, not change the statement"
        )
    expect = APPENDING if draft.status == APPENDING else PENDING
    return _change(
        engine, draft, expect=expect, status=APPENDING, statement=_json(signed), waiting=""
    )


def close(engine: Engine, draft: Draft, status: str, *, by: str, reason: str | None) -> bool:
    """Decline or withdraw a pending draft."""
    assert status in (DECLINED, WITHDRAWN)
    return _change(engine, draft, expect=PENDING, status=status, decided_by=by, reason=reason)


def finish(
    engine: Engine, draft_id: str, *, seq: int | None = None, reason: str | None = None
) -> None:
    """Record what the ledger did with a claimed draft: appended at ``seq``, or refused.

    Unconditional: the ledger is the truth, whatever happened to the row meanwhile."""
    values: dict[str, Any] = {"updated": _now(), "version": drafts.c.version + 1}
    if seq is not None:
        values.update(status=APPENDED, seq=seq, reason=None)
    else:
        values.update(status=REFUSED, reason=(reason or "")[:4000])
    with write_connection(engine) as conn:
        conn.execute(update(drafts).where(drafts.c.id == draft_id).values(**values))


def logged_seq(engine: Engine, signed: SignedStatement) -> int | None:
    """The seq of the entry holding this statement (whatever its signatures), or None."""
    with engine.connect() as conn:
        found = conn.execute(
            select(entries.c.seq).where(entries.c.stmt_hash == signed.statement.digest())
        ).scalar()
    return None if found is None else int(found)


def settle(engine: Engine, draft: Draft) -> Draft:
    """A pending or appending draft whose statement is already in the log becomes
    ``appended`` (recovery after a crash between the append and its record)."""
    if draft.status not in (PENDING, APPENDING):
        return draft
    seq = logged_seq(engine, draft.signed)
    if seq is None:
        return draft
    finish(engine, draft.id, seq=seq)
    return require(engine, draft.id)


def stale(draft: Draft, now: datetime | None = None) -> bool:
    """True for an ``appending`` draft left by a request that did not finish (see module doc);
    call :func:`settle` first, so a draft already in the log is not appended again."""
    if draft.status != APPENDING:
        return False
    moment = now or datetime.now(UTC)
    return moment - parse_time(draft.updated) > timedelta(seconds=STALE_SECONDS)
