"""``suyuan witnesses``: the witnesses this log submits its checkpoints to (the log's side).

Attached to the ``suyuan`` group of :mod:`ledger.cli` on import; the same exit codes
(0 done, 1 storage problem or a witness not current after ``run --once``, 2 refused
input — and then nothing was written).  ``suyuan witness …`` (singular) is the other
side: running a witness (:mod:`ledger.cli_witness`).

    suyuan witnesses add VKEY_OR_FILE URL   # a witness's vkey (or a file holding it)
    suyuan witnesses list
    suyuan witnesses disable|enable|remove NAME_OR_VKEY
    suyuan witnesses run [--once] [--interval S] [--timeout S]

``suyuan serve`` (not ``--read-only``) starts ``suyuan witnesses run`` in a subprocess of
its own when at least one witness is active (:func:`witnessing_subprocess`), so the
submissions never share a process, a thread or a transaction with the append path.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import click

from ledger import witnessing
from ledger.cli import _instance, main
from ledger.db import upgrade
from ledger.errors import Error, InvalidInput, StorageError
from ledger.instance import Instance

#: Seconds between rounds of the loop ``suyuan serve`` starts (``SUYUAN_WITNESS_INTERVAL``).
DEFAULT_INTERVAL = 5.0
INTERVAL_ENV = "SUYUAN_WITNESS_INTERVAL"


def _read_vkey(value: str) -> str:
    """A witness vkey given as text, or the path of a file holding one (first non-empty line)."""
    path = Path(value).expanduser()
    try:
        is_file = path.is_file()
    except OSError:  # e.g. a name too long for a path: it is the vkey itself
        is_file = False
    if not is_file:
        return value.strip()  # parse_witness_vkey says what is wrong with it, if anything
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read a witness vkey from {path}: {exc}") from None
    found = [line for line in lines if line]
    if not found:
        raise InvalidInput(f"expected a witness vkey in {path}, found an empty file")
    return found[0]


@main.group("witnesses")
def witnesses() -> None:
    """Witnesses this log submits checkpoints to (C2SP tlog-witness): add, list, run."""


@witnesses.command("add")
@click.argument("vkey")
@click.argument("url")
def witnesses_add(vkey: str, url: str) -> None:
    """Submit checkpoints to the witness with key VKEY (or a file holding it) at URL.

    URL is the witness's submission prefix: the log POSTs to URL/add-checkpoint.  The
    witness is named by its key's name (e.g. witness.example.org/w1): that name is what
    scan pages show.
    """
    instance = _instance()
    engine = instance.reader().engine
    upgrade(engine)  # the witnesses tables came with migration 0008
    record = witnessing.add_witness(engine, _read_vkey(vkey), url)
    click.echo(f"added witness {record.key_id} at {record.submit_url}")


def _status_line(item: witnessing.WitnessStatus) -> str:
    w = item.witness
    cosigned = "none" if item.cosigned_size is None else str(item.cosigned_size)
    state = "active" if w.active else "disabled"
    line = (
        f"{w.name}\t{w.key_id}\t{w.url}\t{state}\tacknowledged {item.size}\t"
        f"cosigned {cosigned}\t{item.status}"
    )
    if item.attempted:
        line += f" at {item.attempted}"
    if item.error:
        line += f"\t{item.error}"
    return line


@witnesses.command("list")
def witnesses_list() -> None:
    """Each witness: key, URL, state, last acknowledged size, newest cosigned size, last error."""
    items = witnessing.list_witnesses(_instance().reader().engine)
    if not items:
        click.echo("no witnesses configured (suyuan witnesses add VKEY URL)", err=True)
    for item in items:
        click.echo(_status_line(item))


@witnesses.command("disable")
@click.argument("ident", metavar="NAME_OR_VKEY")
def witnesses_disable(ident: str) -> None:
    """Stop submitting to a witness (what it cosigned is still published and counted)."""
    record = witnessing.set_active(_instance().reader().engine, ident, False)
    click.echo(f"disabled witness {record.key_id}")


@witnesses.command("enable")
@click.argument("ident", metavar="NAME_OR_VKEY")
def witnesses_enable(ident: str) -> None:
    """Submit to a disabled witness again."""
    record = witnessing.set_active(_instance().reader().engine, ident, True)
    click.echo(f"enabled witness {record.key_id}")


@witnesses.command("remove")
@click.argument("ident", metavar="NAME_OR_VKEY")
def witnesses_remove(ident: str) -> None:
    """Forget a witness: no more submissions, and its cosignatures are no longer published."""
    record = witnessing.remove_witness(_instance().reader().engine, ident)
    click.echo(f"removed witness {record.key_id}")


@witnesses.command("run")
@click.option("--once", is_flag=True, help="One round, then exit (1 if a witness is not current).")
@click.option(
    "--interval",
    type=click.FloatRange(0.1, 86_400),
    default=None,
    help=f"Seconds between rounds (default ${INTERVAL_ENV} or {DEFAULT_INTERVAL:g}).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 600),
    default=witnessing.DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds to wait for one witness's answer.",
)
@click.option(
    "--changes-only", is_flag=True, help="Print only rounds that sent something or failed."
)
@click.option("--exit-with", type=int, default=None, hidden=True)
def witnesses_run(
    once: bool, interval: float | None, timeout: float, changes_only: bool, exit_with: int | None
) -> None:
    """Submit each new checkpoint to every active witness; print one line per round.

    Runs until interrupted (SIGINT or SIGTERM).  Needs no private key: it reads the
    log's signed checkpoints and consistency proofs, and writes only the witness tables.
    """
    log = _instance().reader()
    if once:
        result = witnessing.witness_round(log, timeout=timeout)
        click.echo(result.line())
        sys.exit(0 if all(o.ok for o in result.outcomes) and not result.skipped else 1)
    every = interval if interval is not None else _interval_from_env()
    stop = threading.Event()

    def stop_on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, stop_on_signal)
    signal.signal(signal.SIGINT, stop_on_signal)

    def report(result: witnessing.Round) -> None:
        if exit_with is not None and os.getppid() != exit_with:
            stop.set()  # the `suyuan serve` that started us is gone
        quiet = changes_only and (
            result.skipped is not None or all(o.status == "up-to-date" for o in result.outcomes)
        )
        if not quiet:
            click.echo(result.line())
            sys.stdout.flush()

    def failed(exc: Error) -> None:
        if exit_with is not None and os.getppid() != exit_with:
            stop.set()
        click.echo(f"error: witnessing round failed: {exc}", err=True)

    witnessing.run(log, every, stop, on_round=report, on_error=failed, timeout=timeout)


def _interval_from_env() -> float:
    text = os.environ.get(INTERVAL_ENV, "").strip()
    if not text:
        return DEFAULT_INTERVAL
    try:
        value = float(text)
    except ValueError:
        raise InvalidInput(f"expected seconds in ${INTERVAL_ENV}, found {text!r}") from None
    if not 0.1 <= value <= 86_400:
        raise InvalidInput(f"expected ${INTERVAL_ENV} between 0.1 and 86400, found {text!r}")
    return value


@contextmanager
def witnessing_subprocess(instance: Instance, *, enabled: bool = True) -> Iterator[None]:
    """Run ``suyuan witnesses run`` beside the block (``suyuan serve``) when witnesses are active.

    A separate process: submissions and their network waits never share the server's
    processes, threads or transactions.  The child stops when the block ends (SIGTERM,
    then SIGKILL after 10 s) and on its own when this process disappears.
    """
    child: subprocess.Popen[bytes] | None = None
    if enabled:
        try:
            active = witnessing.known_witnesses(instance.engine, active_only=True)
        except StorageError as exc:  # e.g. a database from before migration 0008
            click.echo(f"witnessing not started: {exc}", err=True)
            active = []
        if active:
            _interval_from_env()  # refuse a bad interval here, not in the child
            child = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ledger.cli",
                    "witnesses",
                    "run",
                    "--changes-only",
                    "--exit-with",
                    str(os.getpid()),
                ],
                env=dict(os.environ),
            )
            click.echo(
                f"witnessing: submitting checkpoints to {len(active)} witness(es) "
                f"(pid {child.pid})",
                err=True,
            )
    try:
        yield
    finally:
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=10)
