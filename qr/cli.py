"""``suyuan labels`` and ``suyuan notice``: print label sheets and project notice posters.

Attached to the ``suyuan`` group of :mod:`ledger.cli` on import; same exit codes (0 done,
1 storage problem, 2 refused input).  The host printed in the codes defaults to the host
part of the log's origin (``SUYUAN_ORIGIN``, e.g. ``trace.example.cn/log``).
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from ledger.cli import _instance, main
from qr.labels import DEFAULT_LAYOUT, LAYOUTS, labels_for, render_labels
from qr.notice import SIZES, notice_data, project_id_for, render_notice
from qr.urls import check_host, host_from_origin


def _host(given: str | None, origin: str) -> str:
    return check_host(given) if given is not None else host_from_origin(origin)


@main.command("labels")
@click.argument("refs", nargs=-1, required=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--layout",
    "layout_name",
    default=DEFAULT_LAYOUT,
    show_default=True,
    type=click.Choice(list(LAYOUTS)),
    help="Labels per A4 sheet (columns x rows).",
)
@click.option(
    "--level",
    default="M",
    show_default=True,
    type=click.Choice(["M", "Q", "H"]),
    help="QR error correction.",
)
@click.option("--host", help="Host in the codes (default: the log origin's host).")
def labels_cmd(
    refs: tuple[str, ...], out: Path, layout_name: str, level: str, host: str | None
) -> None:
    """Write a PDF of labels for each REF: the seq of a batch registration, or a lot code."""
    instance = _instance()
    log = instance.reader()
    with instance.engine.connect() as conn:
        found = labels_for(conn, _host(host, log.origin), refs)
    # Big print runs make their codes on every core (10,000 labels: ~35 s on one, ~19 s on two).
    workers = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    out.write_bytes(render_labels(found, layout_name=layout_name, level=level, workers=workers))
    click.echo(f"{len(found)} labels written to {out}")


@main.command("notice")
@click.argument("project")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--size", default="A4", show_default=True, type=click.Choice(list(SIZES)))
@click.option("--host", help="Host in the code (default: the log origin's host).")
def notice_cmd(project: str, out: Path, size: str, host: str | None) -> None:
    """Write the public-notice poster (公示牌) of PROJECT (its id or registration seq)."""
    instance = _instance()
    log = instance.reader()
    with instance.engine.connect() as conn:
        data = notice_data(conn, project_id_for(conn, project), _host(host, log.origin))
    out.write_bytes(render_notice(data, size=size))
    click.echo(f"notice for {data['project']['id']} written to {out}")
