"""The domain's commands: importing spreadsheets, queries and reports, demo data.

Attached to the ``suyuan`` group in ``ledger.cli``; same exit codes (0 done,
1 verification or storage problem, 2 refused input — nothing written).
"""

from __future__ import annotations

import json
import mimetypes
import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select

from ledger.blobs import default_store, evidence_document
from ledger.cli import _instance, main
from ledger.domain import catalog as _catalog  # noqa: F401  (registers the queries)
from ledger.domain.households import households
from ledger.errors import NotFound
from ledger.importer import ImportRefused, error_report, import_file
from ledger.instance import Instance
from ledger.log import MAX_BATCH
from ledger.private import PrivateStore
from ledger.queries import QUERIES, Query, render
from ledger.rules import KINDS


@main.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--kind", required=True, help="The entry kind every row becomes (e.g. fund.disbursed)."
)
@click.option(
    "--key",
    "key_names",
    multiple=True,
    required=True,
    help="Key to sign every row with (repeat when the policy needs several approvers).",
)
@click.option("--sheet", help="The worksheet of an .xlsx file (default: the first).")
@click.option("--dry-run", is_flag=True, help="Check every row; append nothing.")
@click.option("--json-errors", is_flag=True, help="Report bad rows as JSON lines on stdout.")
def import_cmd(
    file: Path,
    kind: str,
    key_names: tuple[str, ...],
    sheet: str | None,
    dry_run: bool,
    json_errors: bool,
) -> None:
    """Append one KIND entry per row of FILE (.xlsx or .csv), all or nothing.

    Every row is checked first; if any is bad, each bad row is reported with its
    line number and reason and nothing is appended (exit 2).  Columns name body
    fields (``origin.province`` for nested ones); list and object fields take
    JSON; ``amount_yuan`` may stand for ``amount_fen``.  See docs/DOMAIN.md.
    """
    if kind not in KINDS:
        raise click.BadParameter(
            f"unknown kind; known kinds: {', '.join(sorted(KINDS))}", param_hint="--kind"
        )
    instance = _instance()
    log = instance.writer()
    signers = [instance.author(name) for name in key_names]
    try:
        private = (
            PrivateStore.for_instance(
                log.engine, instance.settings.instance, instance.env, create=True
            )
            if kind == "household.identified"
            else None
        )
        entries = import_file(
            log, file, kind, signers, sheet=sheet, dry_run=dry_run, private=private
        )
    except ImportRefused as exc:
        if json_errors:
            click.echo(error_report(exc.errors))
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if dry_run:
        click.echo("every row passed the checks; nothing appended (--dry-run)", err=True)
        return
    for entry in entries:
        click.echo(f"{entry.seq} {entry.leaf_hash().hex()}")
    click.echo(f"appended {len(entries)} {kind} entries (at most {MAX_BATCH:,} per file)", err=True)


# --- queries and reports ------------------------------------------------------------------


@main.group("query")
def query_group() -> None:
    """Queries and reports (provenance, fund trails, balances, anomalies, …).

    Each prints JSON, or with --format csv|xlsx a table for spreadsheets.
    The same queries are served under /api/v1 (see /api/v1/openapi.json).
    """


def _query_command(query: Query) -> click.Command:
    options: list[click.Parameter] = [
        click.Option(
            [f"--{p.name.replace('_', '-')}", p.name],
            help=(p.help + (" (required)" if p.required else "")).strip() or None,
            default=None,
            metavar=p.type.upper(),
        )
        for p in query.params
    ]
    options += [
        click.Option(
            ["--format", "fmt"],
            type=click.Choice(["json", "csv", "xlsx"]),
            default="json",
            show_default=True,
        ),
        click.Option(
            ["--out"],
            type=click.Path(dir_okay=False, path_type=Path),
            help="Write to this file instead of stdout (required for xlsx).",
        ),
    ]

    def run(fmt: str, out: Path | None, **raw: str | None) -> None:
        if fmt == "xlsx" and out is None:
            raise click.UsageError("--format xlsx needs --out FILE")
        log = _instance().reader()
        with log.engine.connect() as conn:
            result = query(conn, raw)
        data = render(query, result, fmt)
        if out is None:
            click.echo(data.decode("utf-8"), nl=False)
        else:
            out.write_bytes(data)
            click.echo(f"wrote {out}", err=True)

    return click.Command(query.name, params=options, callback=run, help=query.summary)


for _query in QUERIES.values():
    query_group.add_command(_query_command(_query))


# --- demo data ------------------------------------------------------------------------------


@main.command()
@click.option(
    "--households",
    type=click.IntRange(1, 5_000_000),
    help="Generate this many households (with their payments) instead of the default set.",
)
@click.option("--seed", type=int, default=2016, show_default=True, help="Random seed.")
def demo(households: int | None, seed: int) -> None:
    """Load the demo data set (idempotent): Nehe, Hunyuan, Heyuan, Gangnan, Huanjiang.

    Products, fund trails, projects and pseudonymous households drawn from
    public reporting on the 2016–2020 programmes; see docs/DOMAIN.md.
    """
    from ledger.demo import load_demo

    instance = _instance()
    summary = load_demo(
        instance, households=households, seed=seed, progress=lambda m: click.echo(m, err=True)
    )
    _demo_logins(instance)
    if summary.already_loaded:
        click.echo(
            f"the demo data set is already in the log ({summary.size:,} entries); nothing changed"
        )
        return
    click.echo(
        f"loaded the demo: {summary.entries:,} entries (seq {summary.first_seq}–{summary.size - 1}), "
        f"{summary.households:,} households"
    )
    for kind, count in sorted(summary.counts.items()):
        click.echo(f"  {kind:24s} {count:>8,}")
    refused = ", ".join(f"{count} {code}" for code, count in sorted(summary.refused.items()))
    click.echo(f"  refused on purpose, for the anomaly report: {refused or 'none'}")


def _demo_logins(instance: Instance) -> None:
    """Portal accounts for the demo's keys, when ``SUYUAN_DEMO_PASSWORD`` says what their
    password is (``make run`` sets a development one); a real instance never has them."""
    from web.demo_users import ensure_demo_users

    password = instance.env.get("SUYUAN_DEMO_PASSWORD")
    if not password:
        click.echo("no portal logins made: set SUYUAN_DEMO_PASSWORD to make them", err=True)
        return
    for username, role, org in ensure_demo_users(instance, password):
        click.echo(f"portal login {username} ({role}, {org}), password from SUYUAN_DEMO_PASSWORD")


# --- households' private records ------------------------------------------------------------


@main.group("household")
def household_group() -> None:
    """Households' personal data, kept off the ledger (open, prove, erase, reconcile).

    Personal data is encrypted in the instance's private table under the master
    key ($SUYUAN_PRIVATE_KEY or <instance>/private.key); the ledger holds only a
    salted commitment.  Records are added by importing household.identified rows
    with personal.* columns (see docs/DOMAIN.md, "Households").
    """


def _private() -> tuple[PrivateStore, Any]:
    instance = _instance()
    log = instance.reader()
    return PrivateStore.for_instance(log.engine, instance.settings.instance, instance.env), log


@household_group.command("open")
@click.argument("code")
def household_open(code: str) -> None:
    """Print household CODE's personal record (JSON).  Handle the output as personal data."""
    store, _ = _private()
    record = store.open(code)
    click.echo(json.dumps(record, ensure_ascii=False, sort_keys=True))


@household_group.command("prove")
@click.argument("code")
def household_prove(code: str) -> None:
    """Show that CODE's private record matches the commitment on the ledger (exit 1 if not)."""
    store, log = _private()
    with log.engine.connect() as conn:
        row = conn.execute(
            select(households.c.commitment, households.c.seq).where(households.c.code == code)
        ).first()
    if row is None:
        raise NotFound(f"household {code} is not on the ledger")
    store.prove(code, row.commitment)
    click.echo(f"OK household {code}: the private record matches the commitment {row.commitment}")


@household_group.command("erase")
@click.argument("code")
@click.option("--yes", is_flag=True, help="Confirm: erasure cannot be undone.")
def household_erase(code: str, yes: bool) -> None:
    """Crypto-shred CODE's personal data.  The ledger and `suyuan verify` are unaffected."""
    if not yes:
        raise click.UsageError("erasure is final; add --yes to confirm")
    store, log = _private()
    when = store.erase(code)
    if log.engine.dialect.name == "sqlite":  # push freed pages out of the write-ahead log too
        with log.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    click.echo(f"erased household {code}'s personal data at {when}")


@household_group.command("reconcile")
def household_reconcile() -> None:
    """List disagreements between private records and the ledger (exit 1 if any)."""
    store, _ = _private()
    problems = store.reconcile()
    for item in problems:
        click.echo(json.dumps(item, ensure_ascii=False))
    if problems:
        click.echo(f"{len(problems)} problem(s)", err=True)
        sys.exit(1)
    click.echo("OK every private record matches the ledger", err=True)


# --- evidence documents -----------------------------------------------------------------------


@main.group("blob")
def blob_group() -> None:
    """Evidence documents in the instance's content-addressed store (<instance>/blobs)."""


@blob_group.command("put")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--media-type", help="e.g. application/pdf (default: guessed from the name)")
@click.option("--name", help="the document's name on the ledger (default: the file name)")
def blob_put(file: Path, media_type: str | None, name: str | None) -> None:
    """Store FILE; print its evidence record for an entry body (JSON)."""
    media_type = media_type or mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    store = default_store(_instance().settings.instance)
    record = evidence_document(store, file.read_bytes(), name or file.name, media_type)
    click.echo(json.dumps(record, ensure_ascii=False, sort_keys=True))


@blob_group.command("get")
@click.argument("sha256")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
def blob_get(sha256: str, out: Path) -> None:
    """Write the document whose SHA-256 is SHA256 to --out (checked against its hash)."""
    store = default_store(_instance().settings.instance)
    out.write_bytes(store.get(sha256))
    click.echo(f"wrote {out}", err=True)
