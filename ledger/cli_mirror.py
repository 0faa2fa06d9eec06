"""``suyuan mirror URL --vkey VKEY --dir DIR``: keep a verified copy of a tlog-tiles log.

Attached to the ``suyuan`` group in ``ledger.cli``.  The mirror itself, and the
contract of DIR, are in :mod:`ledger.mirror`.

Exit codes: 0 mirrored (stdout: ``mirrored <origin> size N (+k new)``); 1 the
remote failed verification (stdout: ``FAIL <what>``, evidence kept under
DIR/.mirror/evidence), DIR is damaged, or the remote could not be read — DIR
unchanged in every case; 2 refused arguments (a bad vkey, a URL that is neither
http(s) nor a directory, DIR a file or not a mirror, a mirror of another log,
DIR busy with another run) — nothing written.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from ledger.cli import main
from ledger.errors import ConfigError, Error, InvalidInput, StorageError, VerificationError
from ledger.mirror import Mirror, MirrorRefused, MirrorResult
from ledger.note import parse_vkey
from ledger.remote import fetcher_for


class _Progress:
    """Progress on stderr: a counter on a terminal, a line every few seconds otherwise."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.last = 0.0
        self.dirty = False

    def say(self, message: str) -> None:
        if not self.quiet:
            self.end()
            click.echo(message, err=True)

    def __call__(self, done: int, total: int) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if self.tty:
            if now - self.last >= 0.1 or done == total:
                click.echo(f"\r{done:,}/{total:,} entries verified", err=True, nl=False)
                self.last, self.dirty = now, True
        elif now - self.last >= 5 or (done == total and self.last):
            click.echo(f"{done:,}/{total:,} entries verified", err=True)
            self.last = now

    def end(self) -> None:
        if self.dirty:
            click.echo("", err=True)
            self.dirty = False


def _summary(result: MirrorResult) -> str:
    return f"mirrored {result.origin} size {result.size} (+{result.new} new)"


@main.command("mirror")
@click.argument("url")
@click.option("--vkey", required=True, help="The log's verifier key (name+hash+base64).")
@click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(path_type=Path),
    help="The mirror: a static tlog-tiles tree, created if absent.",
)
@click.option(
    "--origin",
    help="The log's checkpoint origin, when it is not the key's name (default: the key's name).",
)
@click.option(
    "--follow",
    is_flag=True,
    help="Keep polling the log (default: catch up once and exit).",
)
@click.option("--once", is_flag=True, help="Catch up once and exit (the default).")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Seconds between polls with --follow (default 60).",
)
@click.option(
    "--no-rules",
    is_flag=True,
    help="For a Suyuan log: verify the tree only, not the ledger's rules.",
)
@click.option(
    "--workers",
    type=click.IntRange(0, 64),
    default=None,
    help="Processes checking the rules (default: one per core).",
)
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
def mirror_cmd(
    url: str,
    vkey: str,
    directory: Path,
    origin: str | None,
    follow: bool,
    once: bool,
    interval: float | None,
    no_rules: bool,
    workers: int | None,
    quiet: bool,
) -> None:
    """Keep DIR a complete, verified copy of the tlog-tiles log at URL.

    URL is the log's prefix (https://host/log) or a directory holding one.
    Every entry bundle is checked against the tree, every tile against the
    entries, every new checkpoint against the last (RFC 9162 consistency);
    for a Suyuan log the ledger's rules as well.  DIR can then be served by any
    static file server and audited with `suyuan verify --url DIR --vkey VKEY`.
    A run that is interrupted resumes where it stopped; a remote that rolls
    back, forks or serves bad data is refused and the evidence is kept in
    DIR/.mirror/evidence.
    """
    if follow and once:
        raise click.UsageError("--once and --follow exclude each other")
    if interval is not None and not follow:
        raise click.UsageError("--interval goes with --follow")
    progress = _Progress(quiet)
    try:
        verifier = parse_vkey(vkey.strip())
        fetch = fetcher_for(url)
        mirror = Mirror(
            fetch,
            verifier,
            directory,
            origin=origin,
            source=url,
            rules=not no_rules,
            progress=progress,
            say=progress.say,
            workers=workers,
        )
    except Error as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if not follow:
        sys.exit(_round(mirror, progress, follow=False))
    pause = 60.0 if interval is None else interval
    first = True
    try:
        while True:
            code = _round(mirror, progress, follow=True, loud=first)
            if code == 1:
                sys.exit(1)
            first = first and code != 0
            time.sleep(pause)
    except KeyboardInterrupt:
        progress.end()
        sys.exit(0)


def _round(mirror: Mirror, progress: _Progress, *, follow: bool, loud: bool = True) -> int:
    """One catch-up; return the exit code it stands for (-1: a transient failure in --follow)."""
    try:
        result = mirror.run()
    except MirrorRefused as exc:
        progress.end()
        where = f" (evidence: {exc.evidence})" if exc.evidence else ""
        click.echo(f"FAIL {exc}{where}")
        return 1
    except ConfigError as exc:
        progress.end()
        click.echo(f"error: {exc}", err=True)
        return -1 if follow else 2
    except InvalidInput as exc:  # the remote's answer was malformed (e.g. bad gzip)
        progress.end()
        click.echo(f"error: {exc}", err=True)
        return -1 if follow else 1
    except Error as exc:
        progress.end()
        click.echo(f"error: {exc}", err=True)
        return 1 if isinstance(exc, VerificationError | StorageError) or not follow else -1
    progress.end()
    if loud or result.new:
        click.echo(_summary(result))
        if not result.rules and result.log == "suyuan" and result.new:
            progress.say("(the ledger's rules were not checked: --no-rules)")
        elif result.log == "opaque" and loud:
            progress.say("(not a Suyuan log: the tree was verified, entries are opaque)")
        sys.stdout.flush()
    return 0
