"""``make bench`` (writers part): several writer *processes* appending into one PostgreSQL.

    python -m bench.writers [--url URL] [--processes 4] [--scenarios ...] [--runs 3] [--quick]

Each writer process is what one ``suyuan serve`` on one host is: it opens the log
with the log's key (``Log.open``: the start-up check), and its threads append
requests of signed statements through its one ``Log`` (group commit within the
process); the processes serialise on the database lock (``SELECT … FOR UPDATE`` of
``log_state``).  Every entry is a real signed statement by a key registered in the
log — each writer has its own.  Variants:

``sign``
    the writer makes and signs its ``note`` statements itself, in the timed loop, and
    hands them over with ``signatures_verified=True`` (allowed: it produced the
    signatures in-process with a registered key — ``Log.append``'s docstring);
``verify``
    the statements were signed beforehand (as an API client would) and the log
    verifies every signature (stage 1, outside the lock);
``events``
    ``batch.event`` entries (EPCIS ``storing``, with a cold-chain temperature) on a
    batch each writer registered, signed in the loop: the domain rules run and the
    ``batch_events`` projection is written in the same transaction.

A scenario is ``VARIANT:THREADSxREQUEST`` (threads per process, statements per
append request); the default runs bulk writers (1 thread, 500 statements) for each
variant and a server-like writer (8 threads posting 25 pre-signed statements).
Each run: a fresh database, the writers open the log and prepare, ``--warmup``
seconds of appending that are not counted, then ``--seconds`` measured.  Reported:
entries/s (median of ``--runs``), the mean transaction size (entries per signed
checkpoint), p50/p99 latency of one append request, the CPU each entry cost the
writers and the server, and the same with one writer process for the ratio.
PostgreSQL is the throwaway cluster of tests/pgcluster.py (``fsync = on``,
``synchronous_commit = on``) unless ``--url`` or ``SUYUAN_BENCH_PG_URL`` names a
server (a database is created there per run, and dropped).

The figures go into BENCHMARKS.md between the ``writers`` markers.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from bench.sections import replace_section
from ledger.db import make_engine, upgrade
from ledger.entry import SignedStatement, format_time, make_statement, sign_statement
from ledger.log import Log
from ledger.note import Signer

REPO = Path(__file__).resolve().parents[1]
ORIGIN = "bench.suyuan.example/log"
COOP = "田阳县芒果专业合作社"
HOUSEHOLD = "GX-TY-000001"
PLACE = {"province": "广西壮族自治区", "city": "百色市", "county": "田阳县"}
TARGET = 5000  # entries/s, issue 6
VARIANTS = ("sign", "verify", "events")


def _raw(signer: Signer) -> bytes:
    return signer.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def _signer(name: str, raw: bytes | None = None) -> Signer:
    key = Ed25519PrivateKey.from_private_bytes(raw) if raw else Ed25519PrivateKey.generate()
    return Signer(name, key)


def _now() -> str:
    return format_time(datetime.now(UTC))


# --- the statements a writer appends ---------------------------------------------------------


def note_body(writer: int, n: int) -> dict[str, Any]:
    """A realistic small body (the size of a batch event's note)."""
    return {
        "text": f"w{writer} #{n}: 批次入冷库 into cold store, 讷河市 赤松茸 Stropharia",
        "ref": 0,
    }


def lot(writer: int) -> str:
    return f"W{writer}-2026-A"


def event_body(writer: int, n: int) -> dict[str, Any]:
    moment = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=n)
    return {
        "batch": {"lot": lot(writer)},
        "biz_step": "storing",
        "disposition": "active",
        "time": moment.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
        "read_point": "百育镇冷库 Baiyu cold store",
        "temperature_dc": 40 + n % 20,
        "note": f"reading {n}",
    }


def make(
    variant: str, writer: int, author: Signer, first: int, count: int
) -> list[SignedStatement]:
    kind, body = ("batch.event", event_body) if variant == "events" else ("note", note_body)
    created = _now()
    return [
        sign_statement(make_statement(kind, body(writer, n), ORIGIN, created), [author])
        for n in range(first, first + count)
    ]


# --- setting a log up -------------------------------------------------------------------------


@dataclass
class Setup:
    url: str
    log_key: bytes
    writers: list[tuple[str, bytes]]  # (name, raw private key) per writer process


def set_up(url: str, processes: int, variant: str) -> Setup:
    """A new log with an admin and one registered key per writer (and their batches)."""
    engine = make_engine(url)
    upgrade(engine)
    log_signer, admin = _signer(ORIGIN), _signer("admin")
    log = Log.initialize(engine, log_signer)

    def statement(kind: str, body: dict[str, Any], *signers: Signer) -> SignedStatement:
        return sign_statement(make_statement(kind, body, ORIGIN, _now()), signers)

    genesis = {"name": "admin", "vkey": admin.verifier.vkey, "role": "admin", "org": "田阳县"}
    log.append([statement("key.registered", genesis, admin)])
    writers = [_signer(f"writer{i}") for i in range(processes)]
    village = _signer("village")
    keys = [(w, "producer", COOP) for w in writers] + [(village, "village_approver", "田阳县")]
    log.append(
        [
            statement(
                "key.registered",
                {"name": s.verifier.name, "vkey": s.verifier.vkey, "role": role, "org": org},
                admin,
            )
            for s, role, org in keys
        ]
    )
    if variant == "events":
        household = {
            "code": HOUSEHOLD,
            "location": {**PLACE, "township": "百育镇", "village": "四那村"},
            "members": 3,
            "causes": ["illness"],
            "year": 2014,
            "commitment": "ab" * 32,
        }
        log.append([statement("household.identified", household, village)])
        for i, w in enumerate(writers):
            batch = {
                "lot": lot(i),
                "product": {"zh": "田阳芒果", "en": "Tianyang mango"},
                "origin": {**PLACE, "township": "百育镇", "village": "四那村"},
                "producer": COOP,
                "households": [{"household": HOUSEHOLD, "share_permille": 1000}],
                "produced": "2025-12-01",
                "quantity": 1000,
                "unit": "kg",
            }
            log.append([statement("batch.registered", batch, w)])
    engine.dispose()
    return Setup(url, _raw(log_signer), [(w.verifier.name, _raw(w)) for w in writers])


# --- a writer process ------------------------------------------------------------------------


def _sleep_until(moment: float) -> None:
    while (left := moment - time.monotonic()) > 0:
        time.sleep(min(left, 0.5))


@dataclass
class Plan:
    url: str
    log_key: bytes
    name: str
    key: bytes
    index: int
    variant: str
    threads: int
    request: int
    presign: int  # "verify": statements signed before the run


@dataclass
class Report:
    index: int
    pid: int
    records: list[tuple[float, float, int]] = field(default_factory=list)  # start, end, n
    errors: list[str] = field(default_factory=list)
    exhausted: bool = False
    cpu: float = 0.0  # CPU seconds this process used in the measured window


def writer_main(plan: Plan, pipe: Connection) -> None:
    """One writer process: open the log, prepare, append from ``plan.threads`` threads from
    the start time until the end time the parent sends, report every request's timing."""
    log = Log.open(make_engine(plan.url), _signer(ORIGIN, plan.log_key))
    author = _signer(plan.name, plan.key)
    report = Report(plan.index, os.getpid())
    pool: list[SignedStatement] = []
    if plan.variant == "verify":
        pool = make("verify", plan.index, author, 0, plan.presign)
    pipe.send(("ready", None))
    start_at, measure_from, end_at = pipe.recv()
    lock = threading.Lock()
    counter = [plan.presign]

    def next_items() -> list[SignedStatement] | None:
        with lock:
            if plan.variant == "verify":
                if len(pool) < plan.request:
                    report.exhausted = True
                    return None
                items = pool[: plan.request]
                del pool[: plan.request]
                return items
            first = counter[0]
            counter[0] += plan.request
        return make(plan.variant, plan.index, author, first, plan.request)

    def work() -> None:
        while time.monotonic() < start_at:
            time.sleep(0.001)
        while time.monotonic() < end_at:
            items = next_items()
            if items is None:
                return
            began = time.monotonic()
            try:
                log.append(items, signatures_verified=plan.variant != "verify")
            except Exception as exc:  # reported, and the run is marked invalid
                report.errors.append(f"{type(exc).__name__}: {exc}"[:500])
                return
            report.records.append((began, time.monotonic(), len(items)))

    def account() -> None:
        _sleep_until(measure_from)
        before = time.process_time()
        _sleep_until(end_at)
        report.cpu = time.process_time() - before

    threads = [threading.Thread(target=work) for _ in range(plan.threads)]
    threads.append(threading.Thread(target=account))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.engine.dispose()
    pipe.send(("done", report))


# --- one run -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """What each writer process does: the variant, its appending threads, statements per request."""

    variant: str
    threads: int
    request: int

    @classmethod
    def parse(cls, text: str) -> Scenario:
        """``variant:THREADSxREQUEST``, e.g. ``verify:8x25``."""
        try:
            variant, shape = text.split(":")
            threads, request = (int(x) for x in shape.split("x"))
        except ValueError:
            raise SystemExit(f"scenario {text!r}: expected VARIANT:THREADSxREQUEST") from None
        if variant not in VARIANTS or threads < 1 or request < 1:
            raise SystemExit(f"scenario {text!r}: variants are {', '.join(VARIANTS)}")
        return cls(variant, threads, request)

    def __str__(self) -> str:
        return f"{self.variant}:{self.threads}x{self.request}"


#: Bulk writers (one thread signing or loading requests of 500) for each variant, and a
#: server-like writer (8 threads posting 25 pre-signed statements each; group commit).
DEFAULT_SCENARIOS = "sign:1x500,verify:1x500,events:1x500,verify:8x25"


@dataclass
class Run:
    processes: int
    scenario: Scenario
    entries_per_s: float
    transaction_mean: float
    latency_p50: float
    latency_p99: float
    requests: int
    entries: int
    errors: list[str]
    writer_cpu: float  # CPU seconds of the writer processes in the measured window
    server_cpu: float | None  # of the PostgreSQL server (None: not measurable here)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else float("nan")


def one_run(server: Server, processes: int, scenario: Scenario, args: argparse.Namespace) -> Run:
    variant = scenario.variant
    url = server.create()
    setup = set_up(url, processes, variant)
    ctx = multiprocessing.get_context("spawn")
    # Enough pre-signed statements for each writer's share of the highest rate expected (one
    # process verifies at most ~4,000/s on this kind of machine: Ed25519 verify is the bound).
    per_process = min(args.presign_rate / processes, 4000.0)
    presign = int(per_process * (args.warmup + args.seconds + 1)) + 1000
    children = []
    for i, (name, key) in enumerate(setup.writers):
        ours, theirs = ctx.Pipe()
        plan = Plan(
            url, setup.log_key, name, key, i, variant, scenario.threads, scenario.request,
            presign if variant == "verify" else 0,
        )  # fmt: skip
        proc = ctx.Process(target=writer_main, args=(plan, theirs), daemon=True)
        proc.start()
        children.append((proc, ours))
    for proc, pipe in children:
        if not pipe.poll(600):
            raise RuntimeError(f"writer {proc.pid} did not get ready")
        assert pipe.recv()[0] == "ready"
    start = time.monotonic() + 0.5
    measure_from = start + args.warmup
    end = measure_from + args.seconds
    wall_from = datetime.now(UTC) + timedelta(seconds=measure_from - time.monotonic())
    for _proc, pipe in children:
        pipe.send((start, measure_from, end))
    _sleep_until(measure_from)
    server_before = server.cpu_seconds()
    _sleep_until(end)
    server_after = server.cpu_seconds()
    reports: list[Report] = []
    for proc, pipe in children:
        if not pipe.poll(end - time.monotonic() + 600):
            raise RuntimeError(f"writer {proc.pid} did not finish")
        reports.append(pipe.recv()[1])
        proc.join(60)
    wall_to = wall_from + timedelta(seconds=args.seconds)

    counted = [r for rep in reports for r in rep.records if measure_from <= r[1] < end]
    entries = sum(n for _, _, n in counted)
    latencies = [b - a for a, b, _ in counted]
    engine = make_engine(url)
    with engine.connect() as conn:
        created = [
            row[0]
            for row in conn.exec_driver_sql(
                "SELECT created FROM checkpoints WHERE created >= %s AND created < %s",
                (format_time(wall_from), format_time(wall_to)),
            )
        ]
    engine.dispose()
    errors = [e for rep in reports for e in rep.errors]
    if any(rep.exhausted for rep in reports):
        errors.append("a writer ran out of pre-signed statements: raise --presign-rate")
    return Run(
        processes,
        scenario,
        entries / args.seconds,
        entries / max(len(created), 1),
        percentile(latencies, 0.5),
        percentile(latencies, 0.99),
        len(counted),
        entries,
        errors,
        sum(rep.cpu for rep in reports),
        None if server_before is None or server_after is None else server_after - server_before,
    )


# --- PostgreSQL -------------------------------------------------------------------------------


class Server:
    """Where the runs' databases are made: a given server, or a throwaway cluster."""

    def __init__(self, create: Callable[[], str], postmaster: Callable[[], int | None]) -> None:
        self.create = create
        self._postmaster = postmaster

    def cpu_seconds(self) -> float | None:
        """CPU time used so far by the cluster's processes (postmaster, backends, WAL
        writer, checkpointer...); None when the server is not a local throwaway cluster."""
        pid = self._postmaster()
        if pid is None:
            return None
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # fields[1] is ppid; utime and stime are fields 14 and 15 of stat (1-based)
            if entry.name == str(pid) or fields[1] == str(pid):
                total += int(fields[11]) + int(fields[12])
        return total / tick


@contextmanager
def servers(url: str | None) -> Iterator[Server]:
    """Fresh, empty databases for the runs: on ``url``'s server, or a throwaway cluster."""
    if url:
        import psycopg
        from psycopg import sql
        from sqlalchemy import make_url

        base = make_url(url)
        made: list[str] = []
        conninfo = base.set(drivername="postgresql").render_as_string(hide_password=False)

        def create() -> str:
            name = f"bench_writers_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            made.append(name)
            return base.set(database=name).render_as_string(hide_password=False)

        try:
            yield Server(create, lambda: None)
        finally:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                for name in made:
                    conn.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            sql.Identifier(name)
                        )
                    )
        return
    sys.path.insert(0, str(REPO))
    from tests.pgcluster import PgCluster, find_binaries

    binaries = find_binaries()
    if binaries is None:
        raise SystemExit("no PostgreSQL binaries: give --url or SUYUAN_BENCH_PG_URL")
    cluster = PgCluster(binaries)

    def postmaster() -> int | None:
        assert cluster.data_dir is not None
        return int((cluster.data_dir / "postmaster.pid").read_text().split()[0])

    with tempfile.TemporaryDirectory(prefix="bench-writers-") as tmp:
        cluster.start(Path(tmp))
        try:
            yield Server(lambda: cluster.create_database(f"w{uuid.uuid4().hex[:12]}"), postmaster)
        finally:
            cluster.stop()


def server_version(url: str) -> str:
    engine = make_engine(url)
    with engine.connect() as conn:
        version = str(conn.exec_driver_sql("SHOW server_version").scalar_one())
        settings = {
            name: str(conn.exec_driver_sql(f"SHOW {name}").scalar_one())
            for name in ("fsync", "synchronous_commit", "shared_buffers")
        }
    engine.dispose()
    return f"PostgreSQL {version} ({', '.join(f'{k}={v}' for k, v in settings.items())})"


# --- report --------------------------------------------------------------------------------


def summarise(runs: list[Run]) -> Run:
    """The median run by entries/s (its own latencies and batch size come with it)."""
    ordered = sorted(runs, key=lambda r: r.entries_per_s)
    return ordered[len(ordered) // 2]


def cpu_per_entry(run: Run) -> str:
    if not run.entries:
        return ""
    server = "n/a" if run.server_cpu is None else f"{run.server_cpu / run.entries * 1e6:,.0f}"
    return f"{run.writer_cpu / run.entries * 1e6:,.0f} + {server}"


def table(results: dict[tuple[Scenario, int], list[Run]], args: argparse.Namespace) -> list[str]:
    lines = [
        f"| variant | processes × threads, statements per request | entries/s (median of "
        f"{args.runs}) | all runs | entries per transaction (mean) | append request p50 / p99 "
        "| CPU µs per entry: writers + server | vs 1 process |",
        "|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for scenario in args.scenarios:
        single = results.get((scenario, 1))
        for processes in (args.processes, 1):
            runs = results.get((scenario, processes))
            if not runs:
                continue
            median = summarise(runs)
            ratio = (
                f"{median.entries_per_s / summarise(single).entries_per_s:.2f}×"
                if single and processes != 1
                else ""
            )
            lines.append(
                f"| {scenario.variant} | {processes} × {scenario.threads}, {scenario.request} "
                f"| {median.entries_per_s:,.0f} "
                f"| {', '.join(f'{r.entries_per_s:,.0f}' for r in runs)} "
                f"| {median.transaction_mean:,.0f} "
                f"| {median.latency_p50 * 1e3:,.0f} / {median.latency_p99 * 1e3:,.0f} ms "
                f"| {cpu_per_entry(median)} "
                f"| {ratio} |"
            )
    return lines


def machine() -> str:
    from bench.__main__ import machine as describe

    return describe()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.writers")
    parser.add_argument("--url", default=os.environ.get("SUYUAN_BENCH_PG_URL"))
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument(
        "--scenarios",
        default=DEFAULT_SCENARIOS,
        help=f"comma-separated VARIANT:THREADSxREQUEST (variants: {', '.join(VARIANTS)})",
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="measured, after warm-up")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--presign-rate", type=float, default=8000.0, help="verify variant")
    parser.add_argument("--no-single", action="store_true", help="skip the 1-process runs")
    parser.add_argument("--quick", action="store_true", help="short runs, to check the harness")
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument("--no-write", action="store_true", help="print, do not touch --out")
    args = parser.parse_args()
    args.scenarios = [Scenario.parse(x) for x in args.scenarios.split(",") if x]
    if args.quick:
        args.seconds, args.warmup, args.runs = 4.0, 1.0, 1
    started = time.perf_counter()
    results: dict[tuple[Scenario, int], list[Run]] = {}
    with servers(args.url) as server:
        described = server_version(server.create())
        counts = [args.processes] + ([] if args.no_single or args.processes == 1 else [1])
        for scenario in args.scenarios:
            for processes in counts:
                for number in range(args.runs):
                    run = one_run(server, processes, scenario, args)
                    results.setdefault((scenario, processes), []).append(run)
                    print(
                        f"{scenario!s:15s} {processes} proc, run {number + 1}: "
                        f"{run.entries_per_s:8,.0f} entries/s, {run.transaction_mean:6,.0f} per "
                        f"transaction, p50 {run.latency_p50 * 1e3:6.1f} ms, "
                        f"p99 {run.latency_p99 * 1e3:6.1f} ms; CPU µs/entry (writers + server) "
                        f"{cpu_per_entry(run)}"
                        + (f"; ERRORS: {run.errors[:2]}" if run.errors else ""),
                        flush=True,
                    )
    lines = [
        "## Writers: several processes appending into one PostgreSQL",
        "",
        "Written by `python -m bench.writers` (issue 6: 4 writer processes ≥ 5,000 entries/s).",
        "Each writer process opens the log with the log key (as one `suyuan serve` would) and",
        "appends real signed statements, each writer with its own registered key; its threads",
        "share one `Log` (group commit); the processes serialise on the log lock. Variants:",
        "`sign` — notes made and signed by the writer in the timed loop (handed over with",
        "`signatures_verified=True`); `verify` — notes signed beforehand, every signature",
        "verified by the log; `events` — `batch.event` entries signed in the loop, domain rules",
        f"and the `batch_events` projection included. {args.warmup:g} s warm-up, then "
        f"{args.seconds:g} s measured; every run on a fresh database. CPU is what the writer",
        "processes and the server used in the measured window, per entry.",
        "",
        f"- Machine: {machine()}; writers and server share the cores",
        f"- Server: {described}",
        f"- Run: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, "
        f"{time.perf_counter() - started:,.0f} s",
        "",
        *table(results, args),
        "",
    ]
    verdicts = ", ".join(
        f"{scenario} {rate:,.0f}/s ({'met' if rate >= TARGET else 'not met'})"
        for scenario in args.scenarios
        if (scenario, args.processes) in results
        for rate in [summarise(results[(scenario, args.processes)]).entries_per_s]
    )
    lines.append(f"Target ≥ {TARGET:,} entries/s with {args.processes} processes: {verdicts}.")
    errors = [e for runs in results.values() for r in runs for e in r.errors]
    if errors:
        lines.append(f"Errors during the runs (the figures above are not valid): {errors[:3]}")
    print("\n".join(lines))
    if not args.no_write and not args.quick:
        replace_section(args.out, "writers", lines)


if __name__ == "__main__":
    main()
