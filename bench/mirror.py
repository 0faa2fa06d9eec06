"""Mirroring throughput: ``python -m bench.mirror [--entries N]``.

Builds an N-entry Suyuan ledger (default 100,000), exports it with ``suyuan
export`` and serves the export from a local static HTTP server (``http.server``,
threaded, loopback), then runs the real ``suyuan mirror`` CLI in its own process:

* a first, complete mirror with the ledger's rules checked (worker processes,
  one per core) and with ``--no-rules`` (tree only);
* an incremental catch-up of 1,000 new entries, with the rule auditor's state
  loaded from ``DIR/.mirror/rules.pickle``, and again with that file deleted
  (the state rebuilt by replaying the mirror's own N entries first).

Each run's wall time includes the process start-up (measured on its own, too);
peak RSS is the mirror process's own (``wait4``).  Prints the rows as a
markdown table for BENCHMARKS.md.  Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import http.server
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.__main__ import machine, new_log, signed_batch
from bench.sections import replace_section
from ledger.log import Log
from ledger.note import Signer
from ledger.static import export


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    def handler(*args: Any) -> _Quiet:
        return _Quiet(*args, directory=str(root))

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


def _suyuan() -> list[str]:
    script = Path(sys.executable).with_name("suyuan")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ledger.cli"]


def _run(*args: str) -> tuple[float, int, str]:
    """Run ``suyuan ARGS``; return (wall seconds, peak RSS in MiB, stdout)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUYUAN_")}
    start = time.perf_counter()
    process = subprocess.Popen(
        [*_suyuan(), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert process.stdout is not None
    out = process.stdout.read().decode()
    _pid, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"suyuan {' '.join(args[:2])} failed ({process.returncode}): {out}")
    return elapsed, usage.ru_maxrss // 1024, out.strip()


def _grow(log: Log, author: Signer, count: int, batch: int = 10_000) -> None:
    made = log.size()
    end = made + count
    while made < end:
        size = min(batch, end - made)
        log.append(signed_batch(author, made, size), signatures_verified=True)
        made += size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--out", type=Path, help="also write the section into this file")
    args = parser.parse_args()
    count: int = args.entries
    rows: list[tuple[str, str, str]] = []

    def record(what: str, value: str, note: str = "") -> None:
        rows.append((what, value, note))
        print(f"{what:86s} {value:>22s}  {note}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="suyuan-bench-mirror-") as tmp:
        root = Path(tmp)
        log, admin = new_log(f"sqlite:///{root / 'ledger.db'}")
        started = time.perf_counter()
        _grow(log, admin, count - 1)
        print(
            f"built {log.size():,} entries in {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )
        exported = root / "export"
        export(log, exported)
        server, url = _serve(exported)
        vkey = log.verifier.vkey
        size = log.size()
        try:
            startup, _rss, _out = _run("mirror", "--help")
            record("`suyuan` process start-up (imports), for reference", f"{startup:.2f} s")

            ruled = root / "mirror-rules"
            wall, rss, out = _run("mirror", url, "--vkey", vkey, "--dir", str(ruled), "--quiet")
            assert out.endswith(f"(+{size} new)"), out
            cores = len(os.sched_getaffinity(0))
            record(
                f"suyuan mirror, {size:,}-entry Suyuan log over local HTTP, with the ledger's "
                f"rules ({cores} workers)",
                f"{size / wall:,.0f} entries/s",
                f"{wall:.1f} s, peak RSS {rss} MiB",
            )
            tree = root / "mirror-tree"
            wall, rss, out = _run(
                "mirror", url, "--vkey", vkey, "--dir", str(tree), "--quiet", "--no-rules"
            )
            record(
                f"suyuan mirror --no-rules (tree only), same {size:,}-entry log",
                f"{size / wall:,.0f} entries/s",
                f"{wall:.1f} s, peak RSS {rss} MiB",
            )

            _grow(log, admin, 1_000)
            export(log, exported)
            snapshot = ruled / ".mirror" / "rules.pickle"
            snap_bytes = snapshot.stat().st_size
            wall, rss, out = _run("mirror", url, "--vkey", vkey, "--dir", str(ruled), "--quiet")
            assert out.endswith("(+1000 new)"), out
            record(
                f"incremental: +1,000 entries on {size:,}, rule state from rules.pickle "
                f"({snap_bytes:,} B)",
                f"{wall:.2f} s",
                f"peak RSS {rss} MiB",
            )

            _grow(log, admin, 1_000)
            export(log, exported)
            snapshot.unlink()
            wall, rss, out = _run("mirror", url, "--vkey", vkey, "--dir", str(ruled), "--quiet")
            assert out.endswith("(+1000 new)"), out
            record(
                f"incremental: +1,000 entries, rule state rebuilt by replaying the mirror's "
                f"{size + 1000:,} entries (no rules.pickle)",
                f"{wall:.2f} s",
                f"peak RSS {rss} MiB",
            )
            wall, _rss, out = _run("verify", "--url", str(ruled), "--vkey", vkey, "--quiet")
            record(
                f"suyuan verify --url DIR of the mirror ({size + 2000:,} entries)",
                f"{wall:.1f} s",
                out,
            )
        finally:
            server.shutdown()
            log.engine.dispose()

    lines = [
        "## Mirror: `suyuan mirror` of a Suyuan log",
        "",
        "Written by `python -m bench.mirror`: an N-entry ledger exported and served by a local",
        "static HTTP server, mirrored by the real CLI in its own process (wall time includes its",
        "start-up).",
        "",
        f"- Machine: {machine()}",
        f"- Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {count:,} entries",
        "",
        "| measurement | result | notes |",
        "|---|---:|---|",
        *(f"| {what} | {value} | {note} |" for what, value, note in rows),
    ]
    print("\n".join(lines))
    if args.out is not None:
        replace_section(args.out, "mirror", lines)


if __name__ == "__main__":
    main()
