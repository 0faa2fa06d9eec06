"""Child processes for tests/ledger/test_concurrency.py: ``python -m tests.ledger._workers``.

Each child opens the log as a *writer* with the log's own key (``Log.open``
runs the start-up check), like a second server process or host would.

Keys come from passphrase-encrypted key files (``keys.files``) named in the
environment; nothing secret is ever printed:

    SUYUAN_DATABASE_URL       the database
    SUYUAN_ORIGIN             the log's origin (the log key's name)
    SUYUAN_PASSPHRASE         decrypts the key files
    SUYUAN_TEST_LOG_KEY       path of the log key file
    SUYUAN_TEST_AUTHOR_KEY    path of the author key file that signs statements
    SUYUAN_TEST_AUTHOR_NAME   that key's name

Protocol, one flushed line each on stdout:

    ready                     the log is open; the child now waits for a line on stdin
    ok <tag> <seq>,<seq>,…    after each append returned (the seqs of that request)
    error <Class> <message>   an append was refused (an ``ledger.errors.Error``)
    done                      finished (not printed by the endless ``crash`` mode)

Commands:

    append TAG COUNT          COUNT notes "TAG <i>": in rounds of one batch of 10 then
                              20 single appends; the ok tag is the first i of the request
    crash TAG                 endless batches; batch b holds (b % 7) + 1 notes
                              "TAG b<b> <j>/<size>"; the ok tag is b
    register NAME VKEY TAG    one request: key.registered for VKEY (or the signed statement
                              in $SUYUAN_TEST_STATEMENT) plus a note "TAG companion"
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from keys.files import load_private_key
from ledger import canonical
from ledger.db import make_engine
from ledger.entry import (
    SignedStatement,
    format_time,
    make_statement,
    sign_statement,
    signed_statement_from_json,
)
from ledger.errors import Error
from ledger.log import Log
from ledger.note import Signer


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _signer(path_var: str, name: str) -> Signer:
    passphrase = os.environ["SUYUAN_PASSPHRASE"].encode("utf-8")
    return Signer(name, load_private_key(Path(os.environ[path_var]), passphrase))


def _note(log: Log, author: Signer, text: str) -> SignedStatement:
    statement = make_statement("note", {"text": text}, log.origin, format_time(datetime.now(UTC)))
    return sign_statement(statement, [author])


def _append(log: Log, tag: str, items: Sequence[SignedStatement]) -> bool:
    try:
        entries = log.append(items)
    except Error as exc:
        say(f"error {type(exc).__name__} {exc}")
        return False
    say(f"ok {tag} {','.join(str(e.seq) for e in entries)}")
    return True


def main(argv: Sequence[str]) -> int:
    command, *args = argv
    engine = make_engine(os.environ["SUYUAN_DATABASE_URL"])
    log = Log.open(engine, _signer("SUYUAN_TEST_LOG_KEY", os.environ["SUYUAN_ORIGIN"]))
    author = _signer("SUYUAN_TEST_AUTHOR_KEY", os.environ["SUYUAN_TEST_AUTHOR_NAME"])
    say("ready")
    if not sys.stdin.readline():  # the parent's "go" (end of file: the parent gave up)
        return 3
    if command == "append":
        tag, count = args[0], int(args[1])
        i = 0
        while i < count:
            if i % 30 == 0:  # a batch of 10 ...
                batch = [_note(log, author, f"{tag} {i + j}") for j in range(min(10, count - i))]
                _append(log, str(i), batch)
                i += len(batch)
            else:  # ... then 20 single appends
                _append(log, str(i), [_note(log, author, f"{tag} {i}")])
                i += 1
    elif command == "crash":
        tag, b = args[0], 0
        while True:
            size = b % 7 + 1
            _append(
                log, str(b), [_note(log, author, f"{tag} b{b} {j}/{size}") for j in range(size)]
            )
            b += 1
    elif command == "register":
        name, vkey, tag = args
        presigned = os.environ.get("SUYUAN_TEST_STATEMENT")
        if presigned:
            registration = signed_statement_from_json(canonical.parse(presigned))
        else:
            body = {"name": name, "vkey": vkey, "role": "producer", "org": "合作社 Co-op"}
            statement = make_statement(
                "key.registered", body, log.origin, format_time(datetime.now(UTC))
            )
            registration = sign_statement(statement, [author])
        _append(log, tag, [registration, _note(log, author, f"{tag} companion")])
    else:
        raise SystemExit(f"unknown command {command!r}")
    engine.dispose()
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
