"""The witness's add-checkpoint request body (``ledger.witness.parse_add_checkpoint``),
then the state-independent checks (``check_submission``) and the decision
(``decide``) against a fixed in-memory state — no store.

Invariants: an accepted body re-formats to exactly the input;
``check_submission`` and ``decide`` never raise (every bad request is a
``Refused`` with a status and a message); a cosigned checkpoint is one the log
key really signed, and is consistent with the state held.
"""

from __future__ import annotations

from ledger.errors import Error
from ledger.witness import (
    Accepted,
    LogState,
    Refused,
    check_submission,
    decide,
    format_add_checkpoint,
    parse_add_checkpoint,
)
from tests.fuzz import fixtures

LOGS = {fixtures.ORIGIN: [fixtures.LOG_VERIFIER]}
HELD = 7
STATES = [
    None,
    LogState(HELD, fixtures.ROOTS[HELD], fixtures.checkpoint_note(HELD), fixtures.COSIGN_TIME),
]


def one(data: bytes) -> None:
    try:
        request = parse_add_checkpoint(data)
    except Error as exc:
        fixtures.check_refusal(exc)
    else:
        assert format_add_checkpoint(request.old_size, request.proof, request.note) == data

    checked = check_submission(data, LOGS)
    if isinstance(checked, Refused):
        assert checked.status in (400, 403, 404) and checked.message, checked
        return
    cp = checked.checkpoint
    assert cp.size <= fixtures.TREE_SIZE and cp.root == fixtures.ROOTS[cp.size], "forged"
    for current in STATES:
        decision = decide(checked, current, fixtures.WITNESS_SIGNER)
        if isinstance(decision, Refused):
            assert decision.status in (400, 409, 422) and decision.message, decision
            continue
        assert isinstance(decision, Accepted)
        held = 0 if current is None else current.size
        assert checked.request.old_size == held <= cp.size
        assert decision.state.size == cp.size and decision.state.root == cp.root
