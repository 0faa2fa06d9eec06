"""``suyuan witness …``: run a C2SP tlog-witness (the side an audit bureau runs).

Attached to the ``suyuan`` group in ``ledger.cli``; same exit codes (0 done,
1 storage problem, 2 refused input or configuration — nothing written).
A witness lives in its own directory (``--dir``), see :mod:`ledger.witness_store`.

    suyuan witness init  --dir DIR --name NAME       make the key and the database
    suyuan witness vkey  --dir DIR                   print the witness's vkey
    suyuan witness trust --dir DIR VKEY [--origin O] trust a log key for an origin
    suyuan witness logs  --dir DIR                   trusted logs, latest cosigned sizes
    suyuan witness evidence --dir DIR                refusals kept as evidence
    suyuan witness serve --dir DIR [--host --port --workers]
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import click

from keys.store import passphrase_from
from ledger.cli import main
from ledger.witness_store import WitnessStore

_DIR = click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False, dir_okay=True, exists=True, path_type=Path),
    help="The witness directory (made by `suyuan witness init`).",
)


@main.group()
def witness() -> None:
    """Run a witness: cosign the checkpoints of logs you trust (C2SP tlog-witness)."""


@witness.command("init")
@click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False, dir_okay=True, path_type=Path),
    help="Directory for the witness's key and database (created if missing).",
)
@click.option(
    "--name",
    required=True,
    help="The witness's key name, a schema-less URL such as witness.audit.example/w1.",
)
def init_cmd(directory: Path, name: str) -> None:
    """Create the witness key (encrypted with SUYUAN_PASSPHRASE) and database; print the vkey."""
    from ledger.note import check_key_name

    check_key_name(name)  # refuse before asking for a passphrase
    passphrase = passphrase_from(os.environ, confirm=True)
    store, signer = WitnessStore.create(directory, name, passphrase)
    click.echo(f"created witness {name} in {store.directory}", err=True)
    click.echo(signer.vkey)


@witness.command("vkey")
@_DIR
def vkey_cmd(directory: Path) -> None:
    """Print the witness's verifier key (type 0x04), for logs and clients to configure."""
    click.echo(WitnessStore.open(directory).vkey)


@witness.command("trust")
@_DIR
@click.argument("vkey")
@click.option("--origin", help="The log's origin line (default: the key's name).")
def trust_cmd(directory: Path, vkey: str, origin: str | None) -> None:
    """Trust the log whose checkpoint key is VKEY (name+hex8+base64, Ed25519)."""
    store = WitnessStore.open(directory)
    added = store.trust(vkey, origin)
    shown = origin if origin is not None else vkey.split("+", 1)[0]
    if added:
        click.echo(f"trusting log {shown} with key {vkey}", err=True)
    else:
        click.echo(f"log {shown} is trusted with this key already; nothing changed", err=True)


@witness.command("logs")
@_DIR
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def logs_cmd(directory: Path, as_json: bool) -> None:
    """List the trusted logs: origin, latest cosigned size, root, when, log key (tab-separated)."""
    for log in WitnessStore.open(directory).logs():
        root = base64.b64encode(log.root).decode("ascii") if log.root is not None else None
        if as_json:
            record = {
                "origin": log.origin,
                "vkey": log.vkey,
                "added": log.added,
                "size": log.size,
                "root": root,
                "updated": log.updated,
            }
            click.echo(json.dumps(record, ensure_ascii=False, sort_keys=True))
        else:
            fields = [
                log.origin,
                "-" if log.size is None else str(log.size),
                root or "-",
                log.updated or "-",
                log.vkey,
            ]
            click.echo("\t".join(fields))


@witness.command("evidence")
@_DIR
@click.option("--origin", help="Only this log's evidence.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, with the body.")
def evidence_cmd(directory: Path, origin: str | None, as_json: bool) -> None:
    """List refused, log-signed submissions kept as evidence (oldest first)."""
    for record in WitnessStore.open(directory).evidence(origin):
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "id": record.id,
                        "first_seen": record.first_seen,
                        "last_seen": record.last_seen,
                        "repeats": record.repeats,
                        "origin": record.origin,
                        "reason": record.reason,
                        "status": record.status,
                        "message": record.message,
                        "size": record.size,
                        "witness_size": record.witness_size,
                        "witness_note": record.witness_note,
                        "body": record.body.decode("utf-8", "replace"),
                    },
                    ensure_ascii=False,
                    sort_keys=True,
                )
            )
        else:
            click.echo(
                f"{record.id}\t{record.first_seen}\t{record.origin}\t{record.status}\t"
                f"{record.reason}\tx{record.repeats}\t{record.message}"
            )


@witness.command("serve")
@_DIR
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=7380, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", type=click.IntRange(min=1), help="Worker processes (default: 2).")
def serve_cmd(directory: Path, host: str, port: int, workers: int | None) -> None:
    """Serve POST /add-checkpoint, GET /vkey and GET / with gunicorn."""
    from web.witness_app import run_witness

    store = WitnessStore.open(directory)
    passphrase = passphrase_from(os.environ)
    signer = store.signer(passphrase)  # fail here, clearly, on a wrong passphrase
    click.echo(f"witness {signer.name} serving on {host}:{port}", err=True)
    run_witness(directory, passphrase, host, port, workers)
