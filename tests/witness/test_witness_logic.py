"""The pure add-checkpoint decision (ledger.witness): parsing, trust, every status code."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.cosignature import verify_cosignatures
from ledger.errors import InvalidInput
from ledger.merkle import EMPTY_ROOT
from ledger.note import Signer, Verifier, sign_note
from ledger.witness import (
    CONTENT_TYPE_SIZE,
    MAX_PROOF_LINES,
    MAX_REQUEST_BYTES,
    Accepted,
    LogState,
    Refused,
    Submission,
    add_checkpoint,
    check_submission,
    decide,
    format_add_checkpoint,
    parse_add_checkpoint,
)
from tests.witness.support import FixedClock, MemoryLog, cosigner

H = base64.b64encode(b"\x01" * 32).decode()


@pytest.fixture
def log() -> MemoryLog:
    made = MemoryLog()
    made.append(5)
    return made


def _logs(log: MemoryLog) -> dict[str, list[Verifier]]:
    return {log.origin: [log.signer.verifier]}


def _submission(log: MemoryLog, body: bytes) -> Submission:
    checked = check_submission(body, {log.origin: [log.signer.verifier]})
    assert isinstance(checked, Submission), checked
    return checked


def _state(log: MemoryLog, size: int) -> LogState:
    return LogState(size, log.root(size), log.note(size))


# --- parsing ------------------------------------------------------------------------


def test_parse_spec_shaped_body(log: MemoryLog) -> None:
    log.append(3)
    body = log.body(5)
    request = parse_add_checkpoint(body)
    assert request.old_size == 5
    assert list(request.proof) == log.proof(5, 8)
    assert request.note == log.note(8)
    assert body.startswith(b"old 5\n") and b"\n\n" + log.origin.encode() in body
    assert format_add_checkpoint(5, log.proof(5, 8), request.note) == body


@pytest.mark.parametrize(
    "head",
    [
        "",  # no old line
        "old\n",
        "old 01\n",
        "old -1\n",
        "old +1\n",
        "old  1\n",
        "old 1 \n",
        "Old 1\n",
        "old 1\r\n",
        "old 18446744073709551616\n",  # 2**64
        "old 1\n" + H[:-1] + "\n",  # short base64
        "old 1\n" + base64.b64encode(b"\x01" * 31).decode() + "\n",  # 31 bytes
        "old 1\n" + H.replace("=", "") + "\n",  # unpadded
        "old 1\n" + H[:-2] + "B=\n",  # non-canonical trailing bits
        "old 1\n" + H + " \n",
        "old 1\n\t" + H + "\n",
        "old 0\n" + H + "\n",  # a proof with old 0
        "old 1\n" + (H + "\n") * (MAX_PROOF_LINES + 1),
    ],
)
def test_malformed_heads(log: MemoryLog, head: str) -> None:
    body = head.encode() + b"\n" + log.note().encode()
    with pytest.raises(InvalidInput):
        parse_add_checkpoint(body)
    refused = check_submission(body, _logs(log))
    assert isinstance(refused, Refused)
    assert (refused.status, refused.reason, refused.evidence) == (400, "malformed", False)


def test_sixty_three_proof_lines_parse(log: MemoryLog) -> None:
    body = ("old 1\n" + (H + "\n") * MAX_PROOF_LINES + "\n").encode() + log.note().encode()
    assert len(parse_add_checkpoint(body).proof) == MAX_PROOF_LINES


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"old 0\n",
        b"old 0\n\n",  # no checkpoint
        b"old 0\nexample\n",  # no empty line
        b"old 0\n\n\xff\xfe",
        b"old 0\n\n" + b"x" * MAX_REQUEST_BYTES,
    ],
)
def test_malformed_bodies(body: bytes) -> None:
    with pytest.raises(InvalidInput):
        parse_add_checkpoint(body)


def test_format_refuses_bad_input() -> None:
    for args in [(-1, [], "n\n"), (True, [], "n\n"), (1, [b"x"], "n\n"), (1, [], "")]:
        with pytest.raises(InvalidInput):
            format_add_checkpoint(*args)
    with pytest.raises(InvalidInput):
        format_add_checkpoint(1, [b"\x00" * 32] * 64, "n\n")


# --- state-independent checks: 404, 403, 400 --------------------------------------


def test_unknown_origin_is_404(log: MemoryLog) -> None:
    refused = check_submission(log.body(0), {"other.example/log": [log.signer.verifier]})
    assert isinstance(refused, Refused)
    assert (refused.status, refused.reason, refused.origin) == (404, "unknown-origin", log.origin)
    assert refused.content_type.startswith("text/plain")


def test_signature_by_another_key_is_403(log: MemoryLog) -> None:
    impostor = Signer(log.origin, Ed25519PrivateKey.generate())  # same name, other key
    body = format_add_checkpoint(0, [], sign_checkpoint(log.checkpoint(), impostor))
    refused = check_submission(body, _logs(log))
    assert isinstance(refused, Refused)
    assert (refused.status, refused.reason, refused.evidence) == (403, "bad-signature", False)


def test_bad_signature_by_the_trusted_key_is_403(log: MemoryLog) -> None:
    note = log.note()
    # Same text, the log's signature line of another checkpoint: does not verify.
    other = log.note(4)
    forged = note.split("\n\n")[0] + "\n\n" + other.split("\n\n")[1]
    refused = check_submission(format_add_checkpoint(0, [], forged), _logs(log))
    assert isinstance(refused, Refused) and refused.status == 403


def test_signed_non_checkpoint_is_400_evidence(log: MemoryLog) -> None:
    note = sign_note(f"{log.origin}\nnot a size\n{H}\n", [log.signer])
    refused = check_submission(format_add_checkpoint(0, [], note), _logs(log))
    assert isinstance(refused, Refused)
    assert (refused.status, refused.reason, refused.evidence) == (400, "malformed", True)


def test_old_beyond_size_is_400(log: MemoryLog) -> None:
    body = format_add_checkpoint(6, [b"\x00" * 32], log.note(5))
    refused = check_submission(body, _logs(log))
    assert isinstance(refused, Refused)
    assert (refused.status, refused.reason, refused.evidence) == (400, "old-beyond-size", True)


def test_trusted_key_under_another_name(log: MemoryLog) -> None:
    # Go's sumdb names its key differently from its origin: trust is by origin.
    named = Signer("sum.example.org", Ed25519PrivateKey.generate())
    note = sign_note(log.checkpoint().text(), [named])
    checked = check_submission(format_add_checkpoint(0, [], note), {log.origin: [named.verifier]})
    assert isinstance(checked, Submission) and checked.checkpoint.size == 5


# --- decisions against the held state ----------------------------------------------


def test_first_checkpoint_then_growth(log: MemoryLog) -> None:
    clock = FixedClock(1_700_000_000)
    witness = cosigner(clock)
    first = decide(_submission(log, log.body(0)), None, witness)
    assert isinstance(first, Accepted)
    assert first.status == 200 and first.advanced
    assert first.state == LogState(5, log.root(5), log.note(5), 1_700_000_000)
    note = log.note(5)
    assert verify_cosignatures(note + first.body, [witness.verifier]) == [
        (witness.name, 1_700_000_000)
    ]
    log.append(7)
    clock.now += 60
    second = decide(_submission(log, log.body(5)), first.state, witness)
    assert isinstance(second, Accepted) and second.state.size == 12
    assert second.previous == first.state
    assert verify_cosignatures(log.note(12) + second.body, [witness.verifier]) == [
        (witness.name, 1_700_000_060)
    ]


def test_every_size_pair_is_accepted_with_its_proof() -> None:
    log = MemoryLog()
    log.append(17)
    witness = cosigner()
    for old in range(1, 18):
        for new in range(old, 18):
            decision = decide(_submission(log, log.body(old, new)), _state(log, old), witness)
            assert isinstance(decision, Accepted), (old, new, decision)


def test_same_checkpoint_is_cosigned_again(log: MemoryLog) -> None:
    witness = cosigner()
    held = _state(log, 5)
    again = decide(_submission(log, log.body(5)), held, witness)
    assert isinstance(again, Accepted)
    assert not again.advanced
    assert (again.state.size, again.state.root, again.state.note) == (5, held.root, held.note)
    assert again.state.timestamp == 1_700_000_000
    # With old 0 instead: the witness holds 5, so 409 (the log learns the size).
    stale = decide(_submission(log, log.body(0)), held, witness)
    assert isinstance(stale, Refused)
    assert (stale.status, stale.reason, stale.evidence) == (409, "stale-old", False)
    assert (stale.body, stale.content_type) == ("5\n", CONTENT_TYPE_SIZE)


def test_stale_old_is_409_with_the_witness_size(log: MemoryLog) -> None:
    log.append(5)
    refused = decide(_submission(log, log.body(3)), _state(log, 5), cosigner())
    assert isinstance(refused, Refused)
    assert refused.status == 409 and refused.witness_size == 5 and refused.body == "5\n"
    assert refused.content_type == "text/x.tlog.size"
    # Never cosigned: the witness's size is 0.
    first = decide(_submission(log, log.body(4)), None, cosigner())
    assert isinstance(first, Refused) and first.body == "0\n"


def test_rollback_is_409_and_evidence(log: MemoryLog) -> None:
    log.append(5)
    refused = decide(_submission(log, log.body(3, 5)), _state(log, 10), cosigner())
    assert isinstance(refused, Refused)
    assert (refused.status, refused.reason, refused.evidence, refused.body) == (
        409,
        "rollback",
        True,
        "10\n",
    )


def test_fork_same_size_other_root_is_409_and_evidence(log: MemoryLog) -> None:
    forked = MemoryLog(signer=log.signer)
    forked.append(5, prefix="rewritten")
    assert forked.root() != log.root()
    held = _state(log, 5)
    for old in (5, 0, 3):
        body = format_add_checkpoint(old, forked.proof(old, 5), forked.note(5))
        refused = decide(_submission(log, body), held, cosigner())
        assert isinstance(refused, Refused)
        assert (refused.status, refused.reason, refused.evidence) == (409, "fork", True)
        assert refused.body == "5\n"


def test_bad_proofs_are_422_and_evidence(log: MemoryLog) -> None:
    log.append(6)  # 11 leaves; the witness holds 5
    held = _state(log, 5)
    good = log.proof(5, 11)
    flipped = [bytes([good[0][0] ^ 1]) + good[0][1:], *good[1:]]
    for proof in (flipped, good[:-1], [*good, good[0]], [], list(reversed(good))):
        body = format_add_checkpoint(5, proof, log.note(11))
        refused = decide(_submission(log, body), held, cosigner())
        assert isinstance(refused, Refused), proof
        assert (refused.status, refused.reason, refused.evidence) == (422, "inconsistent", True)
    # A history rewritten below the held size: its own proof is fine, but not from our root.
    rewritten = MemoryLog(signer=log.signer)
    rewritten.append(11, prefix="rewritten")
    body = format_add_checkpoint(5, rewritten.proof(5, 11), rewritten.note(11))
    refused = decide(_submission(log, body), held, cosigner())
    assert isinstance(refused, Refused) and refused.status == 422
    # Equal sizes need an empty proof.
    body = format_add_checkpoint(5, [log.root(5)], log.note(5))
    refused = decide(_submission(log, body), held, cosigner())
    assert isinstance(refused, Refused) and refused.status == 422


def test_empty_tree(log: MemoryLog) -> None:
    witness = cosigner()
    empty = Checkpoint(log.origin, 0, EMPTY_ROOT)
    body = format_add_checkpoint(0, [], sign_checkpoint(empty, log.signer))
    accepted = decide(_submission(log, body), None, witness)
    assert isinstance(accepted, Accepted) and accepted.state.size == 0
    # From the empty tree, any size follows with no proof (old 0).
    grown = decide(_submission(log, log.body(0)), accepted.state, witness)
    assert isinstance(grown, Accepted) and grown.state.size == 5
    wrong = Checkpoint(log.origin, 0, b"\x07" * 32)
    body = format_add_checkpoint(0, [], sign_checkpoint(wrong, log.signer))
    refused = decide(_submission(log, body), None, witness)
    assert isinstance(refused, Refused) and refused.status == 422


def test_add_checkpoint_wrapper(log: MemoryLog) -> None:
    witness = cosigner()
    logs = _logs(log)
    state: dict[str, LogState] = {}
    first = add_checkpoint(log.body(0), logs, state, witness)
    assert isinstance(first, Accepted)
    state[log.origin] = first.state
    log.append(1)
    assert isinstance(add_checkpoint(log.body(5), logs, state, witness), Accepted)
    refused = add_checkpoint(b"junk", logs, state, witness)
    assert isinstance(refused, Refused) and refused.status == 400


def test_cosignature_times_never_go_backwards(log: MemoryLog) -> None:
    clock = FixedClock(1_700_000_500)
    witness = cosigner(clock)
    first = decide(_submission(log, log.body(0)), None, witness)
    assert isinstance(first, Accepted) and first.state.timestamp == 1_700_000_500
    clock.now = 1_700_000_000  # the clock steps back
    log.append(2)
    second = decide(_submission(log, log.body(5)), first.state, witness)
    assert isinstance(second, Accepted) and second.state.timestamp == 1_700_000_500
    assert verify_cosignatures(log.note() + second.body, [witness.verifier]) == [
        (witness.name, 1_700_000_500)
    ]
    clock.now = 1_700_000_900
    third = decide(_submission(log, log.body(7)), second.state, witness)
    assert isinstance(third, Accepted) and third.state.timestamp == 1_700_000_900
