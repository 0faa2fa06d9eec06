"""The domain's commands: importing spreadsheets, queries and reports, demo data.

Attached to the ``suyuan`` group in ``ledger.cli``; same exit codes (0 done,
1 verification or storage problem, 2 refused input — nothing written).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ledger.cli import _instance, main
from ledger.domain import catalog as _catalog  # noqa: F401  (registers the queries)
from ledger.importer import ImportRefused, error_report, import_file
from ledger.log import MAX_BATCH
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
        entries = import_file(log, file, kind, signers, sheet=sheet, dry_run=dry_run)
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
    click.echo(str(summary))
