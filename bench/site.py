"""``make bench`` (site part): the scan page and its proof data on a 1,000,000-entry ledger.

    python -m bench.site [--households N] [--quick] [--reuse] [--duration S] [--out BENCHMARKS.md]

Builds (or, with ``--reuse``, reuses ``bench/out/site-ledger.db``) the domain
benchmark's county ledger — N households × ten payments, about 1,000,000
entries at the default 100,000 — plus 500 product lots of a mushroom
cooperative, each with a packing and a shipping event.  Then serves it with
``suyuan serve --read-only`` (gunicorn, the production server, its default workers;
the read path needs no key) on
loopback and loads it with wrk from the same 2-core machine:

* the scan page a QR code opens (``/01/<gtin>/10/<lot>?h=…``), cycling over every lot;
* the proof data the page's script fetches: the checkpoint, and each timeline
  entry with its inclusion proof (``/api/v1/entries/<seq>?size=…``);
* a whole scan as a phone makes it: the page, the checkpoint and three proofs.

Figures (requests/s, p50 and p99 latency from wrk's own histogram) go to
BENCHMARKS.md between the ``site`` markers.  wrk and the server share the two
cores, so the server has less than the whole machine.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.domain import _code, _signer, build
from bench.sections import replace_section
from ledger.db import make_engine
from ledger.domain.gs1 import digital_link_path, gtin_check_digit
from ledger.entry import format_time, make_statement, sign_statement
from ledger.log import Log
from ledger.note import Signer
from qr.urls import hash_prefix

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
LOTS = 500
COOP = "港南区香菇专业合作社"
TARGET_RPS, TARGET_P99_MS = 1_000, 100.0


def _gtin(i: int) -> str:
    body = f"0695200{i:06d}"
    return body + gtin_check_digit(body)


def add_lots(households: int) -> Any:
    """An ``after`` hook for :func:`bench.domain.build`: a producer and LOTS lots with events."""

    def after(log: Log, admin: Signer) -> None:
        producer = _signer("coop-gn")
        created = format_time(datetime.now(UTC))

        def signed(kind: str, body: dict[str, Any], signer: Signer) -> Any:
            return sign_statement(make_statement(kind, body, log.origin, created), [signer])

        body = {"name": "coop-gn", "vkey": producer.verifier.vkey, "role": "producer", "org": COOP}
        log.append([signed("key.registered", body, admin)])
        items = []
        for i in range(LOTS):
            lot = f"GN-XG-{i:04d}"
            items.append(
                signed(
                    "batch.registered",
                    {
                        "gtin": _gtin(i),
                        "lot": lot,
                        "product": {"zh": "港南香菇", "en": "Gangnan shiitake"},
                        "origin": {
                            "province": "广西壮族自治区",
                            "city": "贵港市",
                            "county": "港南区",
                        },
                        "producer": COOP,
                        "households": [
                            {"household": _code((i * 7) % households), "share_permille": 600},
                            {"household": _code((i * 7 + 1) % households), "share_permille": 400},
                        ],
                        "produced": "2019-10-08",
                        "quantity": 500,
                        "unit": "kg",
                    },
                    producer,
                )
            )
            for step, disposition in (("packing", "in_progress"), ("shipping", "in_transit")):
                items.append(
                    signed(
                        "batch.event",
                        {
                            "batch": {"gtin": _gtin(i), "lot": lot},
                            "biz_step": step,
                            "disposition": disposition,
                            "time": "2019-10-09T08:30:00+08:00",
                            "read_point": "港南区香菇专业合作社冷库",
                        },
                        producer,
                    )
                )
        for start in range(0, len(items), 900):
            log.append(items[start : start + 900])

    return after


def lot_urls(path: Path) -> tuple[list[str], list[list[int]], int]:
    """Each lot's scan URL, the seqs its page shows, and the tree size."""
    engine = make_engine(f"sqlite:///{path}")
    log = Log.open(engine)
    size = log.latest_checkpoint().size
    urls, seqs = [], []
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT seq, kind FROM entries WHERE kind IN ('batch.registered', 'batch.event') "
            "ORDER BY seq"
        ).all()
    registrations = [r.seq for r in rows if r.kind == "batch.registered"]
    for i, seq in enumerate(registrations):
        prefix = hash_prefix(log.entry(seq).leaf_hash())
        urls.append(f"{digital_link_path(_gtin(i), f'GN-XG-{i:04d}')}?h={prefix}")
        seqs.append([seq, seq + 1, seq + 2])
    engine.dispose()
    return urls, seqs, size


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(path: Path, instance: Path, port: int, workers: int | None) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SUYUAN_DATABASE_URL": f"sqlite:///{path}",
        "SUYUAN_INSTANCE": str(instance),
        "SUYUAN_SECRET_KEY": "bench-only-secret",
    }
    env.pop("SUYUAN_DEV", None)
    suyuan = shutil.which("suyuan") or str(Path(sys.executable).parent / "suyuan")
    process = subprocess.Popen(
        [suyuan, "serve", "--read-only", "--host", "127.0.0.1", "--port", str(port)]
        + (["--workers", str(workers)] if workers else []),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the server did not come up")


def wrk(base: str, paths: list[str], duration: int, connections: int) -> dict[str, float]:
    """Run wrk cycling over ``paths``; requests/s and latency percentiles (ms)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        quoted = ",\n".join('"' + p.replace("\\", "\\\\").replace('"', '\\"') + '"' for p in paths)
        script.write(
            f"paths = {{\n{quoted}\n}}\n"
            "local i = 0\n"
            "request = function()\n  i = i % #paths + 1\n"
            "  return wrk.format('GET', paths[i])\nend\n"
            "done = function(summary, latency, requests)\n"
            "  io.write(string.format('NON200 %d\\n', summary.errors.status))\nend\n"
        )
    try:
        out = subprocess.run(
            [
                "wrk",
                f"-t{min(2, connections)}",
                f"-c{connections}",
                f"-d{duration}s",
                "--latency",
                "-s",
                script.name,
                base,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "90", "99"):
        match = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out)
        assert match, out
        value = float(match.group(1))
        result[f"p{pct}"] = (
            value / 1000
            if match.group(2) == "us"
            else value * (1000 if match.group(2) == "s" else 1)
        )
    non200 = re.search(r"NON200 (\d+)", out)
    result["non200"] = float(non200.group(1)) if non200 else 0.0
    return result


def main() -> None:
    from bench.__main__ import machine

    parser = argparse.ArgumentParser(prog="python -m bench.site")
    parser.add_argument("--households", type=int, default=100_000)
    parser.add_argument(
        "--quick", action="store_true", help="2,000 households, to check the harness"
    )
    parser.add_argument("--reuse", action="store_true", help="reuse bench/out/site-ledger.db")
    parser.add_argument("--duration", type=int, default=30)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--warmup", type=int, default=60, help="seconds of load on the pages before measuring"
    )
    parser.add_argument("--workers", type=int, default=None, help="gunicorn workers")
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    args = parser.parse_args()
    households = 2_000 if args.quick else args.households
    OUT.mkdir(exist_ok=True)
    path = OUT / ("site-ledger-quick.db" if args.quick else "site-ledger.db")
    if not (args.reuse and path.exists()):
        for stale in OUT.glob(path.name + "*"):
            stale.unlink()
        t0 = time.perf_counter()
        build(path, households, print, after=add_lots(households))
        print(f"built {path} in {time.perf_counter() - t0:,.0f} s")
    urls, seqs, size = lot_urls(path)
    proofs = [f"/api/v1/entries/{s}?size={size}" for group in seqs for s in group]
    scan = [
        p
        for url, group in zip(urls, seqs, strict=True)
        for p in [url, "/log/checkpoint", *[f"/api/v1/entries/{s}?size={size}" for s in group]]
    ]
    with tempfile.TemporaryDirectory(dir=OUT) as instance:
        port = _free_port()
        server = serve(path, Path(instance), port, args.workers)
        base = f"http://127.0.0.1:{port}"
        try:
            # Each worker process caches the pages it rendered: warm them all first (a page
            # view after a cache miss is measured separately below), then measure.
            cold = wrk(base, urls, 5, 1)
            wrk(base, urls, args.warmup, args.connections)
            wrk(base, proofs, args.warmup // 2, args.connections)
            runs = {
                "scan page (`/01/…/10/…?h=…`, 500 lots)": wrk(
                    base, urls, args.duration, args.connections
                ),
                "proof data (`/api/v1/entries/<seq>?size=…`)": wrk(
                    base, proofs, args.duration, args.connections
                ),
                "checkpoint (`/log/checkpoint`)": wrk(
                    base, ["/log/checkpoint"], args.duration, args.connections
                ),
                "a whole scan: page + checkpoint + 3 proofs": wrk(
                    base, scan, args.duration, args.connections
                ),
            }
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    lines = [
        "## Site: the scan page and its proof data",
        "",
        "Written by `python -m bench.site` (part of `make bench`).",
        "",
        f"- Machine: {machine()}",
        f"- Run: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; ledger of {size:,} entries "
        f"({households:,} households × 10 payments + {LOTS} lots with 2 events each), SQLite",
        f"- Server: `suyuan serve --read-only` (gunicorn gthread, "
        f"{args.workers or 'default'} workers); load: wrk -t2 "
        f"-c{args.connections} -d{args.duration}s on loopback, sharing the two cores with the server",
        "",
        "| load | requests/s | p50 | p90 | p99 | non-200 | target |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    lines.insert(
        -2,
        f"A page view that misses the per-process page cache (one connection, cold workers): "
        f"{cold['p50']:.1f} ms p50, {cold['p99']:.1f} ms p99 ({cold['rps']:,.0f}/s on one "
        "connection). The table is after a warm-up in which every worker has rendered every lot; "
        "the cache key includes the tree size, so a new checkpoint re-renders a page once per "
        "worker.\n",
    )
    for name, r in runs.items():
        target = f"≥ {TARGET_RPS:,}/s, p99 ≤ {TARGET_P99_MS:.0f} ms"
        met = r["rps"] >= TARGET_RPS and r["p99"] <= TARGET_P99_MS
        lines.append(
            f"| {name} | {r['rps']:,.0f} | {r['p50']:.1f} ms | {r['p90']:.1f} ms | {r['p99']:.1f} ms "
            f"| {r['non200']:,.0f} | {target} — {'met' if met else 'missed'} |"
        )
    for line in lines:
        print(line)
    replace_section(args.out, "site", lines)


if __name__ == "__main__":
    main()
