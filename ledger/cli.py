"""The ``suyuan`` command line (click).  ``suyuan --help`` lists every command.

Exit codes: 0 success; 1 verification found a problem (or the database failed);
2 the input, arguments or configuration were refused — and then nothing was
written.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click

from ledger import canonical, tokens
from ledger.config import Settings
from ledger.entry import (
    SignedStatement,
    add_signatures,
    format_time,
    make_statement,
    nfc,
    sign_statement,
    signed_statement_from_json,
)
from ledger.errors import Error, InvalidInput, StorageError, VerificationError
from ledger.instance import Instance
from ledger.log import MAX_BATCH
from ledger.note import Signer, parse_vkey
from ledger.rules import ROLES


def _fail(exc: Error) -> NoReturn:
    click.echo(f"error: {exc}", err=True)
    code = 1 if isinstance(exc, VerificationError | StorageError) else 2
    sys.exit(code)


class _Group(click.Group):
    """Turns every :class:`~ledger.errors.Error` into one clear line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Error as exc:
            _fail(exc)


def _instance(*, replica: bool = False) -> Instance:
    """The operator's instance.  Commands work on the primary database: they write
    (tokens, witnesses, erasures) or must see what was just written, so a
    ``SUYUAN_READ_DATABASE_URL`` (a lagging, read-only replica) is ignored unless
    ``replica`` — the read-only server, whose reads it is for."""
    settings = Settings.from_env()
    if not replica:
        settings = dataclasses.replace(settings, read_database_url=None)
    return Instance(settings, os.environ)


@click.group(cls=_Group)
@click.version_option(package_name="suyuan")
def main() -> None:
    """Suyuan (溯源): a verifiable ledger for products, funds and projects."""


@main.command()
@click.option(
    "--origin", help="The log's origin line (default: $SUYUAN_ORIGIN or localhost:8000/log)."
)
@click.option(
    "--org", default="Log operator", show_default=True, help="Organisation of the admin key."
)
def init(origin: str | None, org: str) -> None:
    """Create the schema, the log key and the admin key; print the log's verifier key."""
    instance = _instance()
    log, admin, created = instance.initialize(origin or instance.settings.origin, org)
    if created:
        click.echo(f"created log {log.origin} in {instance.settings.instance}", err=True)
        click.echo(f"admin key: {admin.verifier.key_id}", err=True)
    else:
        click.echo(f"log {log.origin} exists already; nothing changed", err=True)
    click.echo(log.verifier.vkey)


# --- keys --------------------------------------------------------------------------


@main.group()
def keys() -> None:
    """Author keys: make, revoke, list."""


@keys.command("new")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(sorted(ROLES)))
@click.option("--org", required=True, help="The organisation the key acts for.")
@click.option(
    "--admin",
    "admin_name",
    default="admin",
    show_default=True,
    help="Admin key that signs the registration.",
)
def keys_new(name: str, role: str, org: str, admin_name: str) -> None:
    """Make an author key NAME and register it in the ledger."""
    instance = _instance()
    log = instance.writer()
    admin = instance.author(admin_name)
    signer = instance.keystore.new_author(name, instance.passphrase())
    try:
        entry = instance.sign_and_append(
            log,
            "key.registered",
            {"name": name, "vkey": signer.verifier.vkey, "role": role, "org": org},
            [admin],
        )
    except Error:
        instance.keystore.discard_author(name)  # never leave a key file the ledger does not know
        raise
    click.echo(f"{entry.seq} {signer.verifier.key_id}")
    click.echo(signer.verifier.vkey)


@keys.command("revoke")
@click.argument("name")
@click.option("--reason", required=True, help="Why (goes on the ledger).")
@click.option("--admin", "admin_name", default="admin", show_default=True)
def keys_revoke(name: str, reason: str, admin_name: str) -> None:
    """Revoke key NAME (a key id name+hex8, or the name of a key in this instance)."""
    instance = _instance()
    log = instance.writer()
    key_id = name if "+" in name else _key_id_by_name(log.registered_keys(), name)
    entry = instance.sign_and_append(
        log, "key.revoked", {"key": key_id, "reason": reason}, [instance.author(admin_name)]
    )
    click.echo(f"{entry.seq} revoked {key_id}")


def _key_id_by_name(records: Sequence[Any], name: str) -> str:
    matches = [r.key_id for r in records if r.name == name and r.revoked_seq is None]
    if len(matches) != 1:
        raise InvalidInput(
            f"{len(matches)} active keys named {name!r}; give the key id (name+hex8)"
        )
    return str(matches[0])


@keys.command("list")
def keys_list() -> None:
    """List registered keys (and which private keys this instance holds)."""
    instance = _instance()
    held = set(instance.keystore.author_names())
    for record in instance.reader().registered_keys():
        status = "active" if record.revoked_seq is None else f"revoked@{record.revoked_seq}"
        mine = "held-here" if record.name in held else "-"
        click.echo(
            f"{record.key_id}\t{record.role}\t{record.org}\tseq {record.registered_seq}\t{status}\t{mine}"
        )


# --- statements ----------------------------------------------------------------------


def _read_lines(stream: Any) -> Iterator[tuple[int, str]]:
    for number, raw in enumerate(stream, start=1):
        line = raw.decode("utf-8", errors="strict") if isinstance(raw, bytes) else raw
        if line.strip():
            yield number, line


def _statements(origin: str, signers: Sequence[Signer]) -> list[SignedStatement]:
    """Parse stdin JSON lines: ``{"kind", "body"}`` or signed ``{"statement", "signatures"}``.

    Every line is validated before anything is signed or written; the first bad
    line is reported with its number.
    """
    out: list[SignedStatement] = []
    now = format_time_now()
    try:
        lines = list(_read_lines(sys.stdin.buffer))
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"stdin is not UTF-8: {exc}") from None
    if not lines:
        raise InvalidInput("no statements on stdin (one JSON object per line)")
    for number, line in lines:
        try:
            value = canonical.parse(line)
            if isinstance(value, dict) and set(value) == {"kind", "body"}:
                if not signers:
                    raise InvalidInput("unsigned statement: give --key NAME to sign it")
                statement = make_statement(value["kind"], nfc(value["body"]), origin, now)
                out.append(sign_statement(statement, signers))
            elif isinstance(value, dict) and set(value) == {"statement", "signatures"}:
                signed = signed_statement_from_json(value)
                if signers:
                    signed = add_signatures(
                        signed, sign_statement(signed.statement, signers).signatures
                    )
                out.append(signed)
            else:
                raise InvalidInput(
                    'expected {"kind": …, "body": {…}} or {"statement": …, "signatures": […]}'
                )
        except Error as exc:
            raise type(exc)(f"line {number}: {exc}") from None
    return out


def format_time_now() -> str:
    return format_time(datetime.now(UTC))


@main.command()
@click.option(
    "--key",
    "key_names",
    multiple=True,
    required=True,
    help="Key to sign with (repeat for several).",
)
def sign(key_names: tuple[str, ...]) -> None:
    """Sign statements from stdin without appending (for approvals collected offline).

    Prints one signed statement per line; pass them to another signer's
    `suyuan sign`, then to `suyuan append`.
    """
    instance = _instance()
    origin = instance.reader().origin
    signers = [instance.author(name) for name in key_names]
    for signed in _statements(origin, signers):
        click.echo(canonical.dumps(signed.to_json()).decode("utf-8"))


@main.command()
@click.option("--key", "key_names", multiple=True, help="Key to sign with (repeat for several).")
def append(key_names: tuple[str, ...]) -> None:
    """Append statements from stdin (JSON lines), all or nothing.

    Prints one line per entry: its seq and its leaf hash (hex).
    """
    instance = _instance()
    log = instance.writer()
    signers = [instance.author(name) for name in key_names]
    items = _statements(log.origin, signers)
    registered = {k.key_id: k.vkey for k in log.registered_keys() if k.revoked_seq is None}
    # Signatures made just now by registered keys need no second check; pre-signed ones do.
    own = {
        s.verifier.key_id for s in signers if registered.get(s.verifier.key_id) == s.verifier.vkey
    }
    fresh = all(set(item.key_ids()) <= own for item in items)
    if len(items) > MAX_BATCH:
        raise InvalidInput(
            f"{len(items)} statements: at most {MAX_BATCH:,} per append (split the input)"
        )
    for entry in log.append(items, signatures_verified=fresh):
        click.echo(f"{entry.seq} {entry.leaf_hash().hex()}")


# --- verification ----------------------------------------------------------------------


@main.command()
@click.option(
    "--url", help="Audit a remote log (https://…/log) or an exported directory through its tiles."
)
@click.option("--vkey", help="The log's verifier key (required with --url).")
@click.option(
    "--since",
    "since_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A checkpoint you saved earlier: prove the log still extends it.",
)
@click.option(
    "--save",
    "save_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the checkpoint just verified here (use it as --since next time).",
)
@click.option(
    "--workers",
    type=click.IntRange(0, 64),
    default=None,
    help="Worker processes (default: one per core).",
)
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
def verify(
    url: str | None,
    vkey: str | None,
    since_file: Path | None,
    save_file: Path | None,
    workers: int | None,
    quiet: bool,
) -> None:
    """Audit the whole log: every entry, signature, key, tree node and checkpoint.

    Exit 0 printing `OK <n> entries`, or exit 1 naming the first bad entry.
    """
    from ledger.remote import audit_remote, fetcher_for
    from ledger.verify import audit_database

    def progress(done: int, total: int) -> None:
        if not quiet and sys.stderr.isatty():
            click.echo(f"\r{done}/{total}", err=True, nl=False)

    since = _read_file(since_file) if since_file else None
    try:
        if url:
            if not vkey:
                raise InvalidInput("--url needs --vkey (the log's verifier key)")
            audit = audit_remote(
                fetcher_for(url),
                parse_vkey(vkey.strip()),
                since_note=since,
                workers=workers,
                progress=progress,
            )
            size, note = audit.result.size, audit.note
        else:
            if vkey:
                raise InvalidInput("--vkey goes with --url")
            instance = _instance()
            log = instance.reader()
            result = audit_database(log.engine, workers=workers, progress=progress)
            size, note = result.size, log.latest_checkpoint().note
            if since is not None:
                _check_since(log, since, result.root)
    except VerificationError as exc:
        click.echo(f"FAIL {exc}")
        sys.exit(1)
    if save_file is not None:
        save_file.write_text(note, encoding="utf-8")
    if not quiet and sys.stderr.isatty():
        click.echo("", err=True)
    click.echo(f"OK {size} entries")


def _check_since(log: Any, since: str, root: bytes) -> None:
    from ledger.checkpoint import verify_checkpoint
    from ledger.merkle import verify_consistency

    try:
        old, _ = verify_checkpoint(since, log.verifier, log.origin)
    except Error as exc:
        raise VerificationError(
            f"your saved checkpoint does not verify with this log's key: {exc}"
        ) from None
    latest = log.latest_checkpoint().checkpoint
    if old.size > latest.size:
        raise VerificationError(f"the log shrank from your saved size {old.size} to {latest.size}")
    if old.size:
        proof = log.consistency_proof(old.size, latest.size)
        try:
            verify_consistency(old.size, latest.size, proof, old.root, latest.root)
        except VerificationError as exc:
            raise VerificationError(
                f"the log does not extend your saved checkpoint of size {old.size}: {exc}"
            ) from None


def _read_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}") from None


# --- log --------------------------------------------------------------------------------


@main.group()
def log() -> None:
    """The log's verifier key and checkpoints."""


@log.command("vkey")
def log_vkey() -> None:
    """Print the log's verifier key (give it to auditors and witnesses)."""
    click.echo(_instance().reader().verifier.vkey)


@log.command("checkpoint")
def log_checkpoint() -> None:
    """Print the newest signed checkpoint."""
    click.echo(_instance().reader().latest_checkpoint().note, nl=False)


@main.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def export_cmd(directory: Path) -> None:
    """Write the static tlog-tiles tree (checkpoint, tiles, entry bundles) to DIRECTORY."""
    from ledger.static import export

    size, written = export(_instance().reader(), directory)
    click.echo(f"exported {size} entries to {directory} ({written} files written)")


# --- tokens -----------------------------------------------------------------------------


@main.group("token")
def token() -> None:
    """API tokens for POST /api/v1/entries."""


@token.command("new")
@click.argument("name")
def token_new(name: str) -> None:
    """Make a token (printed once; only its hash is stored)."""
    click.echo(tokens.create_token(_instance().reader().engine, name))


@token.command("revoke")
@click.argument("name")
def token_revoke(name: str) -> None:
    tokens.revoke_token(_instance().reader().engine, name)
    click.echo(f"revoked token {name}")


@token.command("list")
def token_list() -> None:
    for name, created, revoked in tokens.list_tokens(_instance().reader().engine):
        click.echo(f"{name}\t{created}\t{'revoked ' + revoked if revoked else 'active'}")


# --- serving ----------------------------------------------------------------------------


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(1, 64),
    help="gunicorn workers (default: 2 × cores).",
)
@click.option(
    "--read-only",
    is_flag=True,
    help="Serve the read path only (pages, proofs, tiles), without the log's key: "
    "every write answers 503. For a read replica or a copy.",
)
@click.option(
    "--mirror",
    "mirror_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Serve the verified copy kept in DIR by `suyuan mirror`, read-only (no instance "
    "folder, key or passphrase needed): the log's tiles, and for a Suyuan log the whole site.",
)
def serve(
    host: str, port: int, workers: int | None, read_only: bool, mirror_dir: Path | None
) -> None:
    """Serve the site, the API and the log with gunicorn (production server)."""
    from web.serve import run_gunicorn

    if mirror_dir is not None:
        from web.mirror import inspect_mirror, prepare, run_mirror

        try:
            inspect_mirror(mirror_dir.resolve())
        except Error as exc:
            raise click.BadParameter(str(exc), param_hint="'--mirror'") from None
        _info, warning = prepare(mirror_dir)  # the first sync of the site's database
        if warning:
            click.echo(f"warning: {warning}", err=True)
        run_mirror(mirror_dir, host, port, workers)
        return
    instance = _instance(replica=read_only)
    if read_only:
        instance.reader()  # fail here, clearly, if there is no log
        os.environ["SUYUAN_READ_ONLY"] = "1"  # the workers' create_app reads it
    else:
        instance.writer()  # fail here, clearly, if the key or the stored tree is wrong
    from ledger.cli_witness_log import witnessing_subprocess

    with witnessing_subprocess(instance, enabled=not read_only):  # when witnesses are configured
        run_gunicorn(host, port, workers)


# The domain's, the QR and the portal-user commands attach themselves to ``main``;
# they import this module.
import ledger.cli_witness_log as _cli_witness_log  # noqa: E402, F401
import qr.cli as _qr_cli  # noqa: E402, F401
import web.cli as _web_cli  # noqa: E402, F401
from ledger import cli_domain as _cli_domain  # noqa: E402, F401
from ledger import cli_mirror as _cli_mirror  # noqa: E402, F401
from ledger import cli_witness as _cli_witness  # noqa: E402, F401

if __name__ == "__main__":
    # Run as ``python -m ledger.cli`` this module is __main__; the commands attached
    # themselves to the group of ``ledger.cli`` as imported, so run that one.
    from ledger.cli import main as _attached

    _attached()
