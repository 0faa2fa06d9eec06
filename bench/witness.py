"""Witness round trip: ``python -m bench.witness [--rounds N] [--entries N] [--out FILE]``.

The issue's target: a witness round trip (submit, verify, cosign) in at most 50 ms.

Sets up, in a temporary directory:

* two Suyuan logs in SQLite — a small one (a few hundred entries) and a large one
  (``--entries``, default 100,000, so that consistency proofs are ~17 hashes long;
  built for at most ``--build-budget`` seconds, the size reached is reported);
* a witness directory (:meth:`WitnessStore.create` + :meth:`WitnessStore.trust`, what
  ``suyuan witness init`` / ``trust`` do) trusting both logs, and a *twin* witness
  directory with the same trust, used only in this process;
* the witness as a real server: ``suyuan witness serve --dir D --port P --workers 2``
  (gunicorn, gthread) in its own process group, killed at the end whatever happens.

Then, for each log, N rounds, each:

1. appends a few entries to the log (one checkpoint; not timed);
2. times :func:`ledger.witnessing.witness_round` — the log side's real round (read the
   newest checkpoint and the witness's acknowledged size, build the consistency proof,
   POST ``add-checkpoint`` over HTTP on loopback with keep-alive as ``suyuan witnesses
   run`` does, verify the returned cosignature, store it) — with the one configured
   witness; the HTTP exchange inside it is timed too (a wrapping transport);
3. replays the exact same request body to the twin witness's WSGI app
   (:func:`web.witness_app.create_witness_app`) in this process: the witness-side
   processing time (parse, verify the log's signature and the proof, cosign, commit with
   ``synchronous = FULL``) without the network, gunicorn or the client.

Also: the same round over a new TCP connection each time (no keep-alive).  The gunicorn
access log is read back to check every submission was answered 200.  Markdown goes to
stdout (and, with ``--out``, into that file between ``witness`` markers); progress to
stderr.  Not a test: nothing is asserted beyond the rounds succeeding.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from werkzeug.test import EnvironBuilder

from bench.__main__ import body, machine, now, percentile
from bench.sections import replace_section
from ledger.db import make_engine, upgrade
from ledger.entry import SignedStatement, make_statement, sign_statement
from ledger.log import Log
from ledger.note import Signer
from ledger.witness_store import WitnessStore
from ledger.witnessing import HttpTransport, Reply, add_witness, witness_round
from web.witness_app import create_witness_app

PASSPHRASE = "bench-witness-passphrase"
WITNESS_NAME = "witness.bench.example/w1"
TWIN_NAME = "twin.bench.example/w1"
TARGET_MS = 50.0


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- logs ---------------------------------------------------------------------------------


@dataclass
class BenchLog:
    log: Log
    author: Signer
    origin: str
    build_seconds: float = 0.0
    built: int = 0  # the size reached by grow()

    def add(self, count: int) -> None:
        """Append ``count`` signed notes in one request (one new checkpoint)."""
        created = now()
        start = self.log.size()
        items: list[SignedStatement] = [
            sign_statement(make_statement("note", body(i), self.origin, created), [self.author])
            for i in range(start, start + count)
        ]
        self.log.append(items, signatures_verified=True)


def new_log(path: Path, origin: str) -> BenchLog:
    """A fresh SQLite log with an admin key registered (as ``bench.__main__.new_log``)."""
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    log = Log.initialize(engine, Signer(origin, Ed25519PrivateKey.generate()))
    admin = Signer("admin", Ed25519PrivateKey.generate())
    genesis = make_statement(
        "key.registered",
        {"name": "admin", "vkey": admin.verifier.vkey, "role": "admin", "org": "bench"},
        origin,
        now(),
    )
    log.append([sign_statement(genesis, [admin])])
    return BenchLog(log, admin, origin)


def grow(bench_log: BenchLog, target: int, budget: float, batch: int = 10_000) -> None:
    """Grow the log towards ``target`` entries, stopping once ``budget`` seconds are spent."""
    started = time.perf_counter()
    while bench_log.log.size() < target and time.perf_counter() - started < budget:
        bench_log.add(min(batch, target - bench_log.log.size()))
    bench_log.build_seconds = time.perf_counter() - started
    bench_log.built = bench_log.log.size()


# --- the witness server -------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _suyuan() -> list[str]:
    script = Path(sys.executable).with_name("suyuan")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ledger.cli"]


def start_witness(
    directory: Path, port: int, workers: int, access_log: Path, vkey: str
) -> subprocess.Popen[bytes]:
    """``suyuan witness serve`` in its own process group; returns once GET /vkey answers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUYUAN_")}
    env.update(SUYUAN_PASSPHRASE=PASSPHRASE, SUYUAN_ACCESS_LOG=str(access_log))
    command = [*_suyuan(), "witness", "serve", "--dir", str(directory)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    errors = (directory.parent / "witness-serve.err").open("wb")
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=errors,
        start_new_session=True,
    )
    errors.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stop_witness(process)
            text = (directory.parent / "witness-serve.err").read_text(errors="replace")
            raise SystemExit(f"suyuan witness serve exited ({process.returncode}): {text[-800:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/vkey", timeout=1) as answer:
                served = answer.read().decode().strip()
            if served != vkey:
                stop_witness(process)
                raise SystemExit(f"the witness serves vkey {served!r}, expected {vkey!r}")
            return process
        except OSError:
            time.sleep(0.1)
    stop_witness(process)
    raise SystemExit("suyuan witness serve did not answer within 60 s")


def stop_witness(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (gunicorn master and workers); SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)
    except ProcessLookupError:
        pass


# --- timing -------------------------------------------------------------------------------


class TimedTransport:
    """A :data:`ledger.witnessing.Transport` that times each POST and keeps the last body."""

    def __init__(self, inner: Callable[[str, bytes, float], Reply]) -> None:
        self.inner = inner
        self.seconds: list[float] = []
        self.bodies: list[bytes] = []

    def __call__(self, url: str, data: bytes, timeout: float) -> Reply:
        start = time.perf_counter()
        try:
            return self.inner(url, data, timeout)
        finally:
            self.seconds.append(time.perf_counter() - start)
            self.bodies.append(data)

    def reset(self) -> None:
        self.seconds.clear()
        self.bodies.clear()


def wsgi_post(app: Any, data: bytes) -> tuple[float, str]:
    """POST ``data`` to ``/add-checkpoint`` of a WSGI app in-process: (seconds, status line)."""
    environ = EnvironBuilder(
        path="/add-checkpoint",
        method="POST",
        data=data,
        content_type="text/plain; charset=utf-8",
    ).get_environ()
    status: list[str] = []

    def start_response(line: str, headers: Any, exc_info: Any = None) -> Any:
        status.append(line)
        return lambda _chunk: None

    start = time.perf_counter()
    result: Iterable[bytes] = app(environ, start_response)
    try:
        b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return time.perf_counter() - start, status[0]


def proof_lines(data: bytes) -> int:
    """How many consistency proof hashes an add-checkpoint body carries."""
    head = data.split(b"\n\n", 1)[0].split(b"\n")
    return len(head) - 1


@dataclass
class Run:
    label: str
    size_before: int
    per_round: int
    keepalive: bool
    total: list[float] = field(default_factory=list)
    http: list[float] = field(default_factory=list)
    server: list[float] = field(default_factory=list)
    proofs: list[int] = field(default_factory=list)


def run_rounds(
    bench_log: BenchLog,
    twin: Any,
    rounds: int,
    per_round: int,
    *,
    keepalive: bool,
    label: str,
    warmup: int = 10,
) -> Run:
    """``rounds`` timed witness rounds after ``warmup`` untimed ones (see the module doc)."""
    log = bench_log.log
    run = Run(label, log.size(), per_round, keepalive)
    shared = HttpTransport("suyuan-bench-witness")
    try:
        for i in range(warmup + rounds):
            bench_log.add(per_round)  # not timed
            inner = shared if keepalive else HttpTransport("suyuan-bench-witness")
            timed = TimedTransport(inner)
            start = time.perf_counter()
            result = witness_round(log, transport=timed)
            elapsed = time.perf_counter() - start
            if not keepalive:
                inner.close()
            outcome = result.outcomes[0] if len(result.outcomes) == 1 else None
            if outcome is None or outcome.status != "cosigned" or len(timed.bodies) != 1:
                raise SystemExit(f"{label}: round {i} did not cosign: {result.line()}")
            seconds, status = wsgi_post(twin, timed.bodies[0]) if twin is not None else (0.0, "")
            if twin is not None and not status.startswith("200"):
                raise SystemExit(f"{label}: the twin witness answered {status} in round {i}")
            if i >= warmup:
                run.total.append(elapsed)
                run.http.append(timed.seconds[0])
                if twin is not None:
                    run.server.append(seconds)
                run.proofs.append(proof_lines(timed.bodies[0]))
    finally:
        shared.close()
    return run


def first_round(bench_log: BenchLog, twin: Any) -> None:
    """Bring the witness (and the twin) to the log's current size: ``old 0``, no proof."""
    transport = HttpTransport("suyuan-bench-witness")
    timed = TimedTransport(transport)
    try:
        result = witness_round(bench_log.log, transport=timed)
    finally:
        transport.close()
    if not result.outcomes or result.outcomes[0].status != "cosigned":
        raise SystemExit(f"the first submission was not cosigned: {result.line()}")
    _seconds, status = wsgi_post(twin, timed.bodies[0])
    if not status.startswith("200"):
        raise SystemExit(f"the twin witness answered {status} to the first submission")


# --- report -------------------------------------------------------------------------------


def ms(values: list[float], p: float) -> str:
    return f"{percentile(values, p) * 1e3:.2f}"


def report(
    runs: list[Run],
    *,
    started: float,
    workers: int,
    answered: tuple[int, int],
    fsyncs: list[float],
    load: tuple[float, float],
    big: BenchLog,
    target_entries: int,
) -> list[str]:
    big_note = (
        f"built in {big.build_seconds:.1f} s"
        if big.built >= target_entries
        else f"stopped at the build budget after {big.build_seconds:.1f} s "
        f"(target {target_entries:,})"
    )
    lines = [
        "## Witness round trip (submit, verify, cosign)",
        "",
        "Written by `python -m bench.witness`.",
        "",
        f"- Machine: {machine()}",
        f"- Run: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, "
        f"{time.perf_counter() - started:,.0f} s; logs in SQLite; the large log has "
        f"{big.built:,} entries ({big_note}); load average (1 min) {load[0]:.1f} at the "
        f"start, {load[1]:.1f} at the end (the machine is shared)",
        f"- Witness: `suyuan witness serve --workers {workers}` (gunicorn gthread) on loopback, "
        "its database with `synchronous = FULL`; client: `ledger.witnessing.witness_round` "
        "with one witness (checkpoint + state read, consistency proof, POST add-checkpoint, "
        "cosignature verified and stored in the log's database). Each round first appends a "
        "few entries (not timed).",
        f"- Disk: fsync of a 4 KiB write in the same temporary directory, p50 "
        f"{ms(fsyncs, 0.5)} ms, p99 {ms(fsyncs, 0.99)} ms ({len(fsyncs)} samples); a round "
        "commits durably twice (the witness's state, then the log's copy of the cosignature).",
        f"- Gunicorn access log: {answered[0]:,} of {answered[1]:,} add-checkpoint requests "
        "answered 200.",
        "",
        "| round trip | rounds | proof hashes | median | p90 | p99 | HTTP exchange (median) "
        "| of which the witness's processing (median / p99) | target |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        median_ok = percentile(r.total, 0.5) * 1e3 <= TARGET_MS
        p99_ok = percentile(r.total, 0.99) * 1e3 <= TARGET_MS
        verdict = (
            "met (median and p99)"
            if median_ok and p99_ok
            else "met at the median, not at p99"
            if median_ok
            else "not met"
        )
        hashes = sorted(set(r.proofs))
        proof = (
            f"{hashes[0]}"
            if len(hashes) == 1
            else f"{hashes[0]}–{hashes[-1]} (mean {statistics.fmean(r.proofs):.1f})"
        )
        handler = f"{ms(r.server, 0.5)} / {ms(r.server, 0.99)} ms" if r.server else "—"
        lines.append(
            f"| {r.label} (from {r.size_before:,} entries, +{r.per_round}/round"
            f"{'' if r.keepalive else ', new TCP connection each round'}) | {len(r.total):,} "
            f"| {proof} | {ms(r.total, 0.5)} ms | {ms(r.total, 0.9)} ms | {ms(r.total, 0.99)} ms "
            f"| {ms(r.http, 0.5)} ms | {handler} "
            f"| ≤ {TARGET_MS:.0f} ms — {verdict} |"
        )
    large = [
        (seconds, hashes)
        for r in runs
        if r.label == "large log"
        for seconds, hashes in zip(r.total, r.proofs, strict=True)
    ]
    longest = max((h for _s, h in large), default=0)
    long_rounds = [seconds for seconds, hashes in large if hashes >= longest - 2]
    main = runs[0]
    http, total, server = (statistics.median(v) * 1e3 for v in (main.http, main.total, main.server))
    lines += [
        "",
        f"Where the time goes ({main.label}, medians): of {total:.2f} ms per round, the HTTP "
        f"exchange is {http:.2f} ms, of which the witness's own processing (its WSGI app "
        f"timed in-process on the same request bodies: parse, verify the log's signature "
        f"and the proof, cosign, commit) is {server:.2f} ms and network, gunicorn and the "
        f"client's HTTP {http - server:.2f} ms; the log side's reads, proof, cosignature "
        f"check and store take the other {total - http:.2f} ms. Both databases commit "
        "durably (fsync) on every round (see the disk line above), and the machine was "
        "shared with other work (load average above).",
    ]
    if long_rounds:
        lines += [
            "",
            f"The large log's rounds with the longest consistency proofs "
            f"({longest - 2}–{longest} hashes, {len(long_rounds):,} rounds): median "
            f"{ms(long_rounds, 0.5)} ms, p99 {ms(long_rounds, 0.99)} ms (all its rounds: median "
            f"{ms([t for t, _h in large], 0.5)} ms). Verifying a proof is a few dozen SHA-256 "
            "computations on either side.",
        ]
    return lines


def fsync_latency(directory: Path, samples: int = 200) -> list[float]:
    """Seconds per ``fsync`` of a fresh 4 KiB write: the disk's flush latency, for context."""
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    seconds = []
    try:
        for _ in range(samples):
            os.write(fd, b"\0" * 4096)
            start = time.perf_counter()
            os.fsync(fd)
            seconds.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink()
    return seconds


def _access_log_counts(path: Path) -> tuple[int, int]:
    """(answered 200, all) POST /add-checkpoint lines in gunicorn's default access log."""
    ok = total = 0
    if not path.exists():
        return 0, 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = re.search(r'"POST /add-checkpoint [^"]*" (\d{3}) ', line)
        if match:
            total += 1
            ok += match.group(1) == "200"
    return ok, total


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.witness")
    parser.add_argument("--rounds", type=int, default=500, help="timed rounds per log (>= 300)")
    parser.add_argument("--entries", type=int, default=100_000, help="size of the large log")
    parser.add_argument("--per-round", type=int, default=3, help="entries appended per round")
    parser.add_argument(
        "--long-per-round",
        type=int,
        default=300,
        help="entries appended per round in the large log's second run (longer proofs)",
    )
    parser.add_argument("--workers", type=int, default=2, help="witness gunicorn workers")
    parser.add_argument(
        "--build-budget", type=float, default=60.0, help="seconds allowed to build the large log"
    )
    parser.add_argument("--out", type=Path, help="also write the section into this file")
    args = parser.parse_args()
    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    # A SIGTERM to this process still runs the `finally` that stops the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    with tempfile.TemporaryDirectory(prefix="suyuan-bench-witness-") as tmp:
        root = Path(tmp)
        fsyncs = fsync_latency(root)
        small = new_log(root / "small.db", "small.bench.suyuan.example/log")
        grow(small, 200, args.build_budget)
        big = new_log(root / "big.db", "big.bench.suyuan.example/log")
        grow(big, args.entries, args.build_budget)
        _say(f"large log: {big.log.size():,} entries in {big.build_seconds:.1f} s")

        directories = {WITNESS_NAME: root / "witness", TWIN_NAME: root / "twin"}
        stores = {}
        for name, directory in directories.items():
            store, _signer = WitnessStore.create(directory, name, PASSPHRASE.encode())
            for bench_log in (small, big):
                store.trust(bench_log.log.verifier.vkey)
            stores[name] = store
        vkey = stores[WITNESS_NAME].vkey
        twin = create_witness_app(directories[TWIN_NAME], PASSPHRASE)

        port = _free_port()
        access_log = root / "access.log"
        server = start_witness(directories[WITNESS_NAME], port, args.workers, access_log, vkey)
        try:
            _say(f"witness serving on 127.0.0.1:{port} (pid {server.pid})")
            url = f"http://127.0.0.1:{port}"
            runs = []
            for bench_log, label in ((small, "small log"), (big, "large log")):
                add_witness(bench_log.log, vkey, url)
                first_round(bench_log, twin)
                runs.append(
                    run_rounds(
                        bench_log,
                        twin,
                        args.rounds,
                        args.per_round,
                        keepalive=True,
                        label=label,
                    )
                )
                _say(f"{label}: median {ms(runs[-1].total, 0.5)} ms")
            runs.append(
                run_rounds(
                    big,
                    twin,
                    args.rounds,
                    args.long_per_round,
                    keepalive=True,
                    label="large log",
                )
            )
            _say(f"large log, +{args.long_per_round}: median {ms(runs[-1].total, 0.5)} ms")
            runs.append(
                run_rounds(
                    small,
                    twin,
                    max(100, args.rounds // 5),
                    args.per_round,
                    keepalive=False,
                    label="small log",
                )
            )
        finally:
            stop_witness(server)
        answered = _access_log_counts(access_log)
        for bench_log in (small, big):
            bench_log.log.engine.dispose()
        for store in stores.values():
            store.close()

    lines = report(
        runs,
        started=started,
        workers=args.workers,
        answered=answered,
        fsyncs=fsyncs,
        load=(load_start, os.getloadavg()[0]),
        big=big,
        target_entries=args.entries,
    )
    print("\n".join(lines), flush=True)
    if args.out is not None:
        replace_section(args.out, "witness", lines)


if __name__ == "__main__":
    main()
