"""Soak: ``python -m bench.soak [--minutes 30] [--database sqlite|postgres] [--out FILE]``.

A bounded soak of the production server under a fixed mix of reads and writes, on
loopback only.  It answers one question: over half an hour of steady traffic, do memory
and latency stay flat, and is the log intact afterwards?  A benchmark, not a test: it
measures and reports; its exit status only says whether the run was clean.

Set-up, in a temporary directory:

* a fresh instance: ``suyuan init``, ``suyuan demo`` (its ~42,000 entries, portal logins
  for the demo's keys), ``suyuan token new`` (an API token for the writers); SQLite in the
  instance folder, or with ``--database postgres`` a database in the throwaway cluster
  of ``tests/pgcluster.py``;
* a witness (``suyuan witness serve``, one worker) that trusts the log, added with
  ``suyuan witnesses add``, so the server's witnessing loop (a subprocess of
  ``suyuan serve``, every 5 s) runs during the soak (``--no-witness`` leaves it out);
* ``suyuan serve`` (gunicorn, its default worker count) on 127.0.0.1 and a free port,
  in its own session, with its access log in a file.

Load, from ``--readers`` + ``--writers`` client threads of this process, each with one
keep-alive connection, paced to fixed rates (open loop; a thread that falls behind
does not burst to catch up by more than a second):

* writers post signed statements to ``POST /api/v1/entries`` with the token, about
  ``--write-rate`` statements per second: notes by the demo's keys (one, or five in a
  request), new lots of a demo cooperative (``batch.registered`` by its producer key)
  and ``batch.event`` cold-store readings on those lots (at most a few per lot, so that
  no page grows without bound); every 20th request is one that MUST be refused (no
  token, a bad signature, a replayed statement, a key the log does not know);
* readers make about ``--read-rate`` requests per second: product pages of the demo's
  lots (with the label's ``?h=`` as a scan carries) and of the new lots, the checkpoint,
  entry pages, tiles and entry bundles, inclusion and consistency proofs, domain
  queries, project notice boards and fund notices, and the auditor's pages signed in
  as the demo auditor; every 20th is a request that MUST fail (unknown entries and
  lots, the auditor's pages without signing in).

Measured per window (``--window`` seconds, 60 by default): requests and errors by class,
latency percentiles of reads and writes (client side: request sent to body read), the
RSS, CPU time and open file descriptors of every server process (``/proc``: master,
workers, the witnessing loop; the witness's RSS apart) and the CPU time of this load
generator, the database's size and the tree size.  Then the server is stopped and
``suyuan verify`` audits the whole database; the tree size must equal the demo's plus
every statement the writers had accepted.

Verdict: the *early* span (the first ``--compare`` minutes, default 5, after
``--warmup``, default a third of the run: each worker's page cache of 2,048 rendered
pages fills in the first minutes, and every append changes the tree size the pages
are cached under) against the *late* span (the last ``--compare`` minutes): median and
p99 latency ratios, and the servers' total RSS growth.  Exit status 1 when ``suyuan verify`` fails, the size does
not add up, any request got a 5xx, an unexpected status or no answer, or the total RSS
grew by more than ``--rss-limit`` percent (default 25) from the early to the late span.
Latency is reported, not judged: the machine is shared.

Figures go to stdout and into ``--out`` (default BENCHMARKS.md) between ``soak``
markers; ``--no-write`` leaves the file alone.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import http.client
import json
import math
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.sections import replace_section
from bench.witness import PASSPHRASE as WITNESS_PASSPHRASE
from bench.witness import _free_port, _suyuan, start_witness, stop_witness
from keys.store import KeyStore
from ledger.db import make_engine
from ledger.domain.gs1 import batch_path
from ledger.entry import format_time, make_statement, sign_statement
from ledger.note import Signer
from ledger.tiles import encode_index

REPO = Path(__file__).resolve().parents[1]
ORIGIN = "soak.suyuan.example/log"
PASSPHRASE = "soak-passphrase-not-secret"
DEMO_PASSWORD = "soak-demo-password"
WITNESS_NAME = "witness.soak.example/w1"
PRODUCER_KEY = "demo-hl-nh-coop-csr1"
NOTE_KEYS = ("demo-auditor", "demo-hl-nh-finance", PRODUCER_KEY, "admin")
EVENTS_PER_LOT = 4
TIMEOUT = 30.0  # seconds for one request
CLASSES = ("read", "write", "refused")
LATENCY_STEADY = 1.5  # late/early median latency ratio called steady


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- the instance ---------------------------------------------------------------------------


@dataclass
class Site:
    root: Path
    env: dict[str, str]
    url: str  # the database
    token: str = ""
    vkey: str = ""


def _run(site: Site, *args: str, timeout: float = 600) -> str:
    done = subprocess.run(
        [*_suyuan(), *args], env=site.env, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise SystemExit(f"suyuan {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def make_site(root: Path, url: str | None) -> Site:
    """A fresh instance with the demo data set, an API token and portal logins."""
    instance = root / "instance"
    url = url or f"sqlite:///{instance / 'suyuan.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUYUAN_")}
    env.update(
        SUYUAN_INSTANCE=str(instance),
        SUYUAN_DATABASE_URL=url,
        SUYUAN_ORIGIN=ORIGIN,
        SUYUAN_PASSPHRASE=PASSPHRASE,
        SUYUAN_SECRET_KEY="soak-only-secret",
        SUYUAN_DEMO_PASSWORD=DEMO_PASSWORD,
        SUYUAN_ACCESS_LOG=str(root / "access.log"),
    )
    site = Site(root, env, url)
    started = time.perf_counter()
    _run(site, "init")
    _run(site, "demo")
    site.token = _run(site, "token", "new", "soak-writers").strip().splitlines()[-1]
    site.vkey = _run(site, "log", "vkey").strip()
    _say(f"instance with the demo data set ready in {time.perf_counter() - started:.0f} s")
    return site


def add_witness(site: Site) -> subprocess.Popen[bytes]:
    """A witness trusting the log, serving on loopback, added to the log's witnesses."""
    from ledger.witness_store import WitnessStore

    directory = site.root / "witness"
    store, _signer = WitnessStore.create(directory, WITNESS_NAME, WITNESS_PASSPHRASE.encode())
    store.trust(site.vkey)
    vkey = store.vkey
    store.close()
    port = _free_port()
    process = start_witness(directory, port, 1, site.root / "witness-access.log", vkey)
    _run(site, "witnesses", "add", vkey, f"http://127.0.0.1:{port}")
    return process


def start_server(site: Site, port: int) -> subprocess.Popen[bytes]:
    """``suyuan serve`` in its own session; returns once /healthz answers."""
    out = (site.root / "serve.log").open("wb")
    process = subprocess.Popen(
        [*_suyuan(), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=site.env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out.close()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = (site.root / "serve.log").read_text(errors="replace")
            raise SystemExit(f"suyuan serve exited ({process.returncode}):\n{text[-2000:]}")
        probe = Client(port)
        try:
            if probe.request("GET", "/healthz")[0] == 200:
                return process
        except (OSError, http.client.HTTPException):
            pass  # not listening yet, or a worker still booting
        finally:
            probe.close()
        time.sleep(0.2)
    stop_witness(process)
    raise SystemExit("suyuan serve did not answer /healthz within 120 s")


# --- what the load reads and writes ---------------------------------------------------------


@dataclass
class Targets:
    """Paths and ids from the demo data set, read from the database before the load."""

    size: int
    scans: list[str]  # product pages with the label's ?h=
    batches: list[tuple[str | None, str]]
    disbursements: list[int]  # seqs of fund.disbursed entries (fund notices)
    projects: list[str]
    sources: list[str]
    households: list[str]
    template: dict[str, Any]  # a batch.registered body of PRODUCER_KEY's cooperative


def load_targets(url: str) -> Targets:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:

            def column(sql: str) -> list[Any]:
                return [row[0] for row in conn.exec_driver_sql(sql)]

            size = int(column("SELECT count(*) FROM entries")[0])
            scans, batches = [], []
            rows = conn.exec_driver_sql(
                "SELECT b.gtin, b.lot, e.leaf FROM batches b "
                "JOIN entries e ON e.seq = b.registered_seq ORDER BY b.registered_seq"
            ).all()
            for gtin, lot, leaf in rows:
                leaf = bytes(leaf) if not isinstance(leaf, str) else leaf.encode()
                prefix = hashlib.sha256(b"\x00" + leaf).hexdigest()[:8]
                batches.append((gtin or None, lot))
                scans.append(f"{batch_path(gtin or None, lot)}?h={prefix}")
            template: dict[str, Any] | None = None
            for (leaf,) in conn.exec_driver_sql(
                "SELECT leaf FROM entries WHERE kind = 'batch.registered' ORDER BY seq"
            ):
                entry = json.loads(bytes(leaf) if not isinstance(leaf, str) else leaf)
                if entry["signatures"][0]["key"].startswith(PRODUCER_KEY + "+"):
                    template = entry["statement"]["body"]
                    break
            if template is None:
                raise SystemExit(f"the demo has no batch registered by {PRODUCER_KEY}")
            return Targets(
                size=size,
                scans=scans,
                batches=batches,
                disbursements=column(
                    "SELECT seq FROM entries WHERE kind = 'fund.disbursed' ORDER BY seq LIMIT 2000"
                ),
                projects=column("SELECT id FROM projects ORDER BY id"),
                sources=column("SELECT id FROM fund_sources ORDER BY id"),
                households=column("SELECT code FROM households ORDER BY code LIMIT 2000"),
                template=template,
            )
    finally:
        engine.dispose()


def entry_count(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql("SELECT count(*) FROM entries").scalar_one())
    finally:
        engine.dispose()


# --- HTTP ---------------------------------------------------------------------------------


class Client:
    """One keep-alive connection to the server (reopened after an error or a long idle:
    gunicorn closes idle keep-alive connections after 2 s)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None
        self.used = 0.0
        self.last_headers: Any = None

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        if self.conn is None or time.monotonic() - self.used > 1.0:
            self.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        try:
            self.conn.request(method, path, body=body, headers=headers or {})
            response = self.conn.getresponse()
            data = response.read()
            if response.will_close:
                self.close()
        except BaseException:
            self.close()
            raise
        self.used = time.monotonic()
        self.last_headers = response.headers
        return response.status, data

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def sign_in(port: int, username: str, password: str) -> str:
    """The session cookie of a portal login (GET the form for its CSRF token, POST it)."""
    client = Client(port)
    status, page = client.request("GET", "/login")
    cookie = _session_cookie(client)
    found = re.search(rb'name="csrf_token"[^>]*value="([^"]+)"', page)
    if status != 200 or cookie is None or found is None:
        raise SystemExit(f"GET /login: {status}, no form or no session cookie")
    form = urllib.parse.urlencode(
        {"csrf_token": found.group(1).decode(), "username": username, "password": password}
    ).encode()
    status, _ = client.request(
        "POST",
        "/login",
        form,
        {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie},
    )
    signed = _session_cookie(client)
    client.close()
    if status != 302 or signed is None:
        raise SystemExit(f"signing in as {username} answered {status}")
    return signed


def _session_cookie(client: Client) -> str | None:
    for header in client.last_headers.get_all("Set-Cookie") or []:
        if header.startswith("suyuan_session="):
            return str(header.split(";", 1)[0])
    return None


# --- recording ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    at: float  # seconds since the load started, when the answer was read
    cls: str  # read | write | refused
    label: str
    status: int  # 0: no answer (timeout, connection error)
    seconds: float
    ok: bool  # the status was the one expected
    size: int  # bytes of the answer's body
    statements: int = 0  # statements appended (accepted writes)


@dataclass
class Recorder:
    started: float
    records: list[Record] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def call(
        self,
        client: Client,
        cls: str,
        label: str,
        method: str,
        path: str,
        expect: tuple[int, ...],
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        began = time.monotonic()
        try:
            status, data = client.request(method, path, body, headers)
        except (OSError, http.client.HTTPException) as exc:
            status, data = 0, f"{type(exc).__name__}: {exc}".encode()
        ended = time.monotonic()
        ok = status in expect
        statements = 0
        if ok and cls == "write":
            statements = len(json.loads(data)["entries"])
        self.records.append(
            Record(
                ended - self.started, cls, label, status, ended - began, ok, len(data), statements
            )
        )
        if not ok:
            with self.lock:
                if len(self.problems) < 20:
                    text = data[:300].decode("utf-8", "replace").replace("\n", " ")
                    self.problems.append(f"{method} {path[:120]} → {status} ({label}): {text}")
        return status, data


def _paced(rate: float, end: float, stop: threading.Event) -> Iterator[None]:
    """Yield at ``rate`` per second until ``end`` (monotonic); never more than 1 s of catching up."""
    interval = 1.0 / rate
    due = time.monotonic() + random.uniform(0, interval)
    while not stop.is_set():
        now = time.monotonic()
        if now >= end:
            return
        if due > now:
            time.sleep(min(due - now, end - now))
            continue
        due = max(due, now - 1.0) + interval
        yield


# --- readers --------------------------------------------------------------------------------


@dataclass
class Load:
    """What the client threads share: the server, the recorder, the targets, the end; the
    lots the writers made (and how many events each got), accepted statements to replay."""

    port: int
    rec: Recorder
    targets: Targets
    end: float  # monotonic
    stop: threading.Event = field(default_factory=threading.Event)
    lots: list[tuple[str, int]] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)  # the last few
    lock: threading.Lock = field(default_factory=threading.Lock)


def reader_main(load: Load, cookie: str, rate: float, seed: int) -> None:
    """About ``rate`` GET requests per second of the mix below; one in 20 MUST fail."""
    rnd = random.Random(seed)
    client = Client(load.port)
    rec, targets = load.rec, load.targets
    size = targets.size
    gtin = targets.template["gtin"]
    auditor = {"Cookie": cookie}

    def read(label: str, path: str, headers: dict[str, str] | None = None) -> bytes:
        return rec.call(client, "read", label, "GET", path, (200,), headers=headers)[1]

    def checkpoint() -> None:
        nonlocal size
        note = read("checkpoint", "/log/checkpoint")
        lines = note.split(b"\n")
        if len(lines) > 1 and lines[1].isdigit():
            size = int(lines[1])

    def new_lot() -> None:
        with load.lock:
            made = load.lots[-50:]
        if made:
            read("product page, new lot", batch_path(gtin, rnd.choice(made)[0]))
        else:
            read("product page", rnd.choice(targets.scans))

    def tile() -> None:
        full = size // 256
        choice = rnd.random()
        if choice < 0.45 and full:
            read("tile", f"/log/tile/0/{encode_index(rnd.randrange(full))}")
        elif choice < 0.85 and full:
            read("entry bundle", f"/log/tile/entries/{encode_index(rnd.randrange(full))}")
        elif size % 256:
            read("partial tile", f"/log/tile/0/{encode_index(full)}.p/{size % 256}")
        else:
            checkpoint()

    def query() -> None:
        g, lot_ = rnd.choice(targets.batches)
        batch = {"gtin": g, "lot": lot_} if g else {"lot": lot_}
        source = urllib.parse.quote(rnd.choice(targets.sources))
        paths = [
            "/api/v1/batches/view?" + urllib.parse.urlencode(batch),
            f"/api/v1/funds/trail?source={source}",
            f"/api/v1/households/view?code={rnd.choice(targets.households)}",
            "/api/v1/households/counts?level=county",
            "/api/v1/projects",
            "/api/v1/checkpoints?limit=20",
        ]
        read("query", rnd.choice(paths))

    def notice() -> None:
        if rnd.random() < 0.5:
            read("fund notice", f"/n/{rnd.choice(targets.disbursements)}")
        elif rnd.random() < 0.5:
            read("notice board", f"/p/{urllib.parse.quote(rnd.choice(targets.projects))}")
        else:
            read("notice boards", "/notices")

    def audit() -> None:
        paths = [
            "/audit/",
            f"/audit/trail?source={urllib.parse.quote(rnd.choice(targets.sources))}",
            f"/audit/trail?household={rnd.choice(targets.households)}",
            "/audit/anomalies",
            "/audit/checkpoints",
        ]
        read("auditor page", rnd.choice(paths), auditor)

    def refused() -> None:
        choice = rnd.randrange(4)
        if choice == 0:
            rec.call(client, "refused", "unknown entry", "GET", f"/e/{size + 10_000_000}", (404,))
        elif choice == 1:
            path = batch_path(gtin, f"NO-SUCH-{rnd.randrange(10**6)}")
            rec.call(client, "refused", "unknown lot", "GET", path, (404,))
        elif choice == 2:
            path = f"/api/v1/entries/{size + 10_000_000}"
            rec.call(client, "refused", "unknown entry (API)", "GET", path, (404,))
        else:  # an auditor page without a session: to the login form
            rec.call(client, "refused", "auditor page, signed out", "GET", "/audit/", (302, 401))

    mix: list[tuple[float, Callable[[], object]]] = [
        (30, lambda: read("product page", rnd.choice(targets.scans))),
        (5, new_lot),
        (12, checkpoint),
        (12, lambda: read("proof", f"/api/v1/entries/{rnd.randrange(size)}?size={size}")),
        (
            3,
            lambda: read(
                "consistency proof",
                f"/api/v1/proofs/consistency?from={rnd.randrange(1, targets.size)}&to={size}",
            ),
        ),
        (8, lambda: read("entry page", f"/e/{rnd.randrange(size)}")),
        (8, tile),
        (8, query),
        (6, notice),
        (4, audit),
        (1, lambda: read("home", "/")),
    ]
    weights = [w for w, _ in mix]
    actions = [a for _, a in mix]
    try:
        checkpoint()
        for n, _ in enumerate(_paced(rate, load.end, load.stop)):
            if n % 20 == 19:
                refused()
            else:
                rnd.choices(actions, weights)[0]()
    finally:
        client.close()


# --- writers --------------------------------------------------------------------------------


def writer_main(load: Load, signers: dict[str, Signer], token: str, rate: float, seed: int) -> None:
    """Post about ``rate`` statements per second (requests of 1 or 5); one request in 20
    MUST be refused."""
    rnd = random.Random(seed)
    client = Client(load.port)
    rec, targets = load.rec, load.targets
    stranger = Signer("soak-stranger", Ed25519PrivateKey.generate())
    producer = signers[PRODUCER_KEY]
    tag = f"{seed % 0xFFFF:04X}"
    made = 0
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()

    def signed(kind: str, body: dict[str, Any], signer: Signer) -> dict[str, Any]:
        now = format_time(datetime.now(UTC))
        return sign_statement(make_statement(kind, body, ORIGIN, now), [signer]).to_json()

    def note(i: int) -> dict[str, Any]:
        text = f"巡查记录 soak {tag}-{i}: 冷库温度正常 cold store within range"
        body = {"text": text, "ref": rnd.randrange(1, targets.size)}
        return signed("note", body, signers[rnd.choice(NOTE_KEYS)])

    def post(label: str, statements: list[dict[str, Any]]) -> int:
        data = statements[0] if len(statements) == 1 else {"statements": statements}
        body = json.dumps(data, ensure_ascii=False).encode()
        status, _ = rec.call(client, "write", label, "POST", "/api/v1/entries", (201,), body, auth)
        if status == 201:
            with load.lock:
                load.accepted = [*load.accepted[-9:], statements[-1]]
        return status

    def register() -> None:
        nonlocal made
        made += 1
        lot = f"SK{tag}-{made:06d}"
        body = {
            k: v for k, v in targets.template.items() if k not in ("certifications", "inspections")
        }
        body.update(lot=lot, produced=yesterday, quantity=100 + made % 400, unit="kg")
        if post("batch.registered", [signed("batch.registered", body, producer)]) == 201:
            with load.lock:
                load.lots.append((lot, 0))

    def event() -> None:
        with load.lock:
            open_lots = [(i, lot) for i, (lot, n) in enumerate(load.lots) if n < EVENTS_PER_LOT][
                -20:
            ]
        if not open_lots:
            register()
            return
        index, lot = rnd.choice(open_lots)
        moment = datetime.now(UTC).replace(microsecond=0)
        body = {
            "batch": {"gtin": targets.template["gtin"], "lot": lot},
            "biz_step": "storing",
            "disposition": "active",
            "time": moment.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
            "read_point": "老莱镇赤松茸冷库 Laolai cold store",
            "temperature_dc": 20 + rnd.randrange(30),
        }
        if post("batch.event", [signed("batch.event", body, producer)]) == 201:
            with load.lock:
                name, count = load.lots[index]
                load.lots[index] = (name, count + 1)

    def refused() -> None:
        choice = rnd.randrange(4)
        statement = note(0)
        if choice == 0:
            headers = {"Content-Type": "application/json"}
            data = json.dumps(statement).encode()
            rec.call(
                client, "refused", "no token", "POST", "/api/v1/entries", (401,), data, headers
            )
        elif choice == 1:
            sig = bytearray(base64.b64decode(statement["signatures"][0]["sig"]))
            sig[0] ^= 1
            statement["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
            data = json.dumps(statement).encode()
            rec.call(
                client, "refused", "bad signature", "POST", "/api/v1/entries", (422,), data, auth
            )
        elif choice == 2:
            with load.lock:
                replay = load.accepted[0] if load.accepted else None
            if replay is None:
                return
            data = json.dumps(replay).encode()
            rec.call(client, "refused", "replay", "POST", "/api/v1/entries", (409,), data, auth)
        else:
            data = json.dumps(signed("note", {"text": "who am I"}, stranger)).encode()
            rec.call(
                client, "refused", "unknown key", "POST", "/api/v1/entries", (422,), data, auth
            )

    # Statements per request: notes 0.45×1 + five notes 0.1×5 + lots 0.1 + events 0.35; and
    # one request in 20 is refused.
    per_request = (0.45 + 0.5 + 0.1 + 0.35) * 19 / 20
    try:
        for n, _ in enumerate(_paced(rate / per_request, load.end, load.stop)):
            if n % 20 == 19:
                refused()
                continue
            choice = rnd.random()
            if choice < 0.45:
                post("note", [note(n)])
            elif choice < 0.55:
                post("5 notes", [note(n * 10 + i) for i in range(5)])
            elif choice < 0.65:
                register()
            else:
                event()
    finally:
        client.close()


# --- the server's processes -----------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the load started
    rss: dict[str, float]  # MB by process ("master", "worker <pid>", "witnessing", "witness")
    fds: int  # open file descriptors of the server's processes (not the witness's)
    database: float  # MB
    size: int  # tree size
    server_cpu: float  # CPU seconds used so far by the server's live processes
    client_cpu: float  # CPU seconds used so far by this process (the load generator)

    @property
    def server_rss(self) -> float:
        return sum(v for k, v in self.rss.items() if k != "witness")


def _proc(pid: int) -> tuple[int, int, str, float] | None:
    """(session id, RSS kB, command line, CPU seconds) of a process, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        status = Path(f"/proc/{pid}/status").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    # stat fields after the command: state, ppid, pgrp, session, ...; utime, stime are 12, 13
    cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    return int(stat[3]), int(found.group(1)) if found else 0, cmdline, cpu


def session_processes(leader: int) -> dict[int, tuple[int, str, float]]:
    """Every process of the session ``leader`` leads: pid → (RSS kB, command line, CPU s)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            info = _proc(int(entry.name))
            if info is not None and info[0] == leader:
                out[int(entry.name)] = info[1:]
    return out


def _fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


class Sampler:
    def __init__(self, site: Site, server: int, witness: int | None, started: float) -> None:
        self.site, self.server, self.witness, self.started = site, server, witness, started
        self.samples: list[Sample] = []
        self.workers: set[int] = set()
        self.client: Client | None = None
        self.engine = make_engine(site.url) if site.url.startswith("postgresql") else None

    def database_mb(self) -> float:
        if self.engine is not None:
            with self.engine.connect() as conn:
                size = conn.exec_driver_sql("SELECT pg_database_size(current_database())")
                return int(size.scalar_one()) / 2**20
        path = Path(self.site.url.removeprefix("sqlite:///"))
        total = 0
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                total += (path.parent / (path.name + suffix)).stat().st_size
        return total / 2**20

    def sample(self) -> Sample:
        rss: dict[str, float] = {}
        fds, cpu = 0, 0.0
        for pid, (kb, cmdline, seconds) in sorted(session_processes(self.server).items()):
            if pid == self.server:
                name = "master"
            elif " witnesses run" in cmdline:
                name = "witnessing"
            else:
                name = f"worker {pid}"
                self.workers.add(pid)
            rss[name] = kb / 1024
            fds += _fd_count(pid)
            cpu += seconds
        if self.witness is not None:
            witness = session_processes(self.witness).values()
            rss["witness"] = sum(kb for kb, _, _ in witness) / 1024
        size = 0
        if self.client is not None:
            with contextlib.suppress(OSError, http.client.HTTPException):
                status, note = self.client.request("GET", "/log/checkpoint")
                lines = note.split(b"\n")
                if status == 200 and len(lines) > 1 and lines[1].isdigit():
                    size = int(lines[1])
        at = time.monotonic() - self.started
        sample = Sample(at, rss, fds, self.database_mb(), size, cpu, time.process_time())
        self.samples.append(sample)
        return sample

    def run(self, port: int, window: float, load: Load) -> None:
        """A sample at the end of every window until the load ends."""
        self.client = Client(port)
        k = 1
        while not load.stop.is_set():
            due = self.started + k * window
            if due > load.end + 0.5:
                return
            if load.stop.wait(max(0.0, due - time.monotonic())):
                return
            before = self.samples[-1] if self.samples else None
            s = self.sample()
            workers = [v for name, v in s.rss.items() if name.startswith("worker")]
            _say(
                f"{s.at / 60:5.1f} min: server RSS {s.server_rss:6.1f} MB "
                f"(workers {min(workers, default=0):.0f}–{max(workers, default=0):.0f} MB), "
                f"CPU % server / client {cpu_pct(before, s)}, {s.fds} fds, "
                f"database {s.database:.1f} MB, {s.size:,} entries"
            )
            k += 1

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.engine is not None:
            self.engine.dispose()


# --- figures --------------------------------------------------------------------------------


def cpu_pct(before: Sample | None, after: Sample | None) -> str:
    """Server and client CPU between two samples, in % of one core (``"310 / 45"``)."""
    if before is None or after is None or after.at <= before.at:
        return "—"
    wall = after.at - before.at
    server = (after.server_cpu - before.server_cpu) / wall * 100
    client = (after.client_cpu - before.client_cpu) / wall * 100
    return f"{server:.0f} / {client:.0f}"


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


@dataclass
class Span:
    start: float
    end: float
    records: list[Record]
    first: Sample | None  # the sample at the span's start (None: the load's start)
    last: Sample | None  # the sample at its end

    def latencies(self, cls: str) -> list[float]:
        return [r.seconds for r in self.records if r.cls == cls]

    def errors(self) -> int:
        return sum(1 for r in self.records if not r.ok)


def spans(records: list[Record], samples: list[Sample], step: float, total: float) -> list[Span]:
    """The load cut into spans of ``step`` seconds, each with its requests and samples."""
    out = []
    start = 0.0
    while start < total - 1e-6:
        end = min(start + step, total)
        inside = [r for r in records if start <= r.at < end or (end >= total and r.at >= end)]
        first = [s for s in samples if s.at <= start + 1.0]
        last = [s for s in samples if start + 1.0 < s.at <= end + 1.0]
        out.append(
            Span(start, end, inside, first[-1] if first else None, last[-1] if last else None)
        )
        start = end
    return out


def ms(seconds: float) -> str:
    return (
        "—"
        if math.isnan(seconds)
        else f"{seconds * 1e3:.0f}"
        if seconds >= 0.1
        else f"{seconds * 1e3:.1f}"
    )


def table(rows: list[Span]) -> list[str]:
    lines = [
        "| minutes | reads | read p50 / p95 / p99 ms | write requests (statements) "
        "| write p50 / p95 / p99 ms | refused as expected | errors | CPU % of a core: server "
        "/ client | server RSS MB (largest worker) | fds | database MB | entries |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in rows:
        reads, writes = s.latencies("read"), s.latencies("write")
        statements = sum(r.statements for r in s.records)
        refused = sum(1 for r in s.records if r.cls == "refused" and r.ok)
        if s.last is not None:
            workers = [v for k, v in s.last.rss.items() if k.startswith("worker")]
            memory = f"{s.last.server_rss:.0f} ({max(workers, default=0):.0f})"
            tail = f"{s.last.fds} | {s.last.database:.1f} | {s.last.size:,}"
        else:
            memory, tail = "—", "— | — | —"
        lines.append(
            f"| {s.start / 60:g}–{s.end / 60:g} | {len(reads):,} "
            f"| {ms(pct(reads, 0.5))} / {ms(pct(reads, 0.95))} / {ms(pct(reads, 0.99))} "
            f"| {len(writes):,} ({statements:,}) "
            f"| {ms(pct(writes, 0.5))} / {ms(pct(writes, 0.95))} / {ms(pct(writes, 0.99))} "
            f"| {refused:,} | {s.errors():,} | {cpu_pct(s.first, s.last)} | {memory} | {tail} |"
        )
    return lines


def by_label(records: list[Record], since: float) -> list[str]:
    """Per kind of request after the warm-up: count, latency, answer size."""
    groups: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        if r.at >= since:
            groups.setdefault((r.cls, r.label), []).append(r)
    lines = [
        "| class | request | count | p50 ms | p99 ms | mean KB | not as expected |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for (cls, label), group in sorted(
        groups.items(), key=lambda g: (CLASSES.index(g[0][0]), -len(g[1]))
    ):
        seconds = [r.seconds for r in group]
        lines.append(
            f"| {cls} | {label} | {len(group):,} | {ms(pct(seconds, 0.5))} "
            f"| {ms(pct(seconds, 0.99))} | {statistics.fmean(r.size for r in group) / 1024:.1f} "
            f"| {sum(1 for r in group if not r.ok):,} |"
        )
    return lines


@dataclass
class Verdict:
    lines: list[str]
    rss_growth_pct: float


def verdict(
    records: list[Record],
    samples: list[Sample],
    early: tuple[float, float],
    late: tuple[float, float],
    rss_limit: float,
) -> Verdict:
    """The early span against the late one: latency ratios and the servers' RSS growth."""

    def within(span: tuple[float, float], cls: str) -> list[float]:
        return [r.seconds for r in records if r.cls == cls and span[0] <= r.at < span[1]]

    def rss(span: tuple[float, float]) -> float:
        values = [s.server_rss for s in samples if span[0] < s.at <= span[1] + 1.0]
        return statistics.median(values) if values else float("nan")

    lines = []
    ratios = []
    for cls in ("read", "write"):
        a, b = within(early, cls), within(late, cls)
        if not a or not b:
            lines.append(f"- {cls}s: not enough requests in both spans to compare")
            continue
        p50 = pct(b, 0.5) / pct(a, 0.5)
        p99 = pct(b, 0.99) / pct(a, 0.99)
        ratios.append(p50)
        lines.append(
            f"- {cls}s: median {ms(pct(a, 0.5))} → {ms(pct(b, 0.5))} ms (×{p50:.2f}), "
            f"p99 {ms(pct(a, 0.99))} → {ms(pct(b, 0.99))} ms (×{p99:.2f})"
        )
    if ratios:
        steady = max(ratios) <= LATENCY_STEADY
        lines.append(
            f"- latency {'steady' if steady else 'NOT steady'}: median ratios "
            f"{' and '.join(f'×{r:.2f}' for r in ratios)} (steady: ≤ ×{LATENCY_STEADY:g}; "
            "reported, not part of the pass criteria, as the machine is shared)"
        )
    before, after = rss(early), rss(late)
    growth = (after - before) / before * 100 if before else float("nan")
    lines.append(
        f"- server RSS (master, workers, witnessing loop; median of the span's samples): "
        f"{before:.1f} → {after:.1f} MB ({after - before:+.1f} MB, {growth:+.1f} %; "
        f"limit +{rss_limit:g} %)"
    )
    first = next((s for s in samples if s.at > early[0]), None)
    if first is not None:
        last = samples[-1]
        moved = [
            f"{name} {first.rss[name]:.0f}→{last.rss[name]:.0f}"
            for name in sorted(first.rss)
            if name in last.rss
        ]
        lines.append(
            f"- RSS by process, first sample after the warm-up → last, MB: {', '.join(moved)}"
        )
    return Verdict(lines, growth)


def access_log(path: Path) -> tuple[int, int]:
    """(requests, 5xx answers) in gunicorn's access log."""
    total = errors = 0
    with contextlib.suppress(OSError), path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            found = re.search(r'" (\d{3}) ', line)
            if found:
                total += 1
                errors += found.group(1).startswith("5")
    return total, errors


# --- the run --------------------------------------------------------------------------------


@contextlib.contextmanager
def database(kind: str, root: Path) -> Iterator[tuple[str | None, str]]:
    """(URL or None for the instance's SQLite file, description)."""
    if kind == "sqlite":
        import sqlite3

        yield None, f"SQLite {sqlite3.sqlite_version} (WAL, in the instance folder)"
        return
    sys.path.insert(0, str(REPO))
    from bench.writers import server_version
    from tests.pgcluster import PgCluster, find_binaries

    binaries = find_binaries()
    if binaries is None:
        raise SystemExit("no PostgreSQL binaries found (see tests/pgcluster.py)")
    cluster = PgCluster(binaries)
    cluster.start(root / "pg")
    try:
        url = cluster.create_database("soak")
        yield url, server_version(url) + ", throwaway cluster on a unix socket"
    finally:
        cluster.stop()


@dataclass
class Outcome:
    """What a soak run leaves to report."""

    described: str  # the database
    demo_size: int
    records: list[Record]
    problems: list[str]
    samples: list[Sample]
    workers: int  # worker processes seen
    server_log: str
    access: tuple[int, int]  # requests and 5xx in the access log
    verify_ok: bool
    verify_line: str
    verify_seconds: float
    final_size: int
    witness: str  # `suyuan witnesses list` at the end, or ""


def soak(args: argparse.Namespace, total: float, window: float) -> Outcome:
    """Set up, load for ``total`` seconds, stop the servers, verify."""
    with contextlib.ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="suyuan-soak-")))
        url, described = stack.enter_context(database(args.database, root))
        site = make_site(root, url)
        targets = load_targets(site.url)
        store = KeyStore(root / "instance")
        signers = {name: store.author(name, PASSPHRASE.encode()) for name in NOTE_KEYS}
        witness = None if args.no_witness else add_witness(site)
        if witness is not None:
            stack.callback(stop_witness, witness)
        port = _free_port()
        server = start_server(site, port)
        stack.callback(stop_witness, server)  # the server's session: master, workers, loop
        cookie = sign_in(port, "auditor", DEMO_PASSWORD)
        started = time.monotonic()
        load = Load(port, Recorder(started), targets, started + total)
        sampler = Sampler(site, server.pid, witness.pid if witness else None, started)
        stack.callback(sampler.close)
        threads = [
            threading.Thread(
                target=reader_main, args=(load, cookie, args.read_rate / args.readers, 1000 + i)
            )
            for i in range(args.readers)
        ]
        threads += [
            threading.Thread(
                target=writer_main,
                args=(load, signers, site.token, args.write_rate / args.writers, 2000 + i),
            )
            for i in range(args.writers)
        ]
        threads.append(threading.Thread(target=sampler.run, args=(port, window, load)))
        _say(
            f"soak: {total / 60:g} min on 127.0.0.1:{port}, {args.read_rate:g} reads/s, "
            f"{args.write_rate:g} statements/s; server pid {server.pid}"
        )
        for t in threads:
            t.start()
        try:
            for t in threads:
                t.join()
        finally:
            load.stop.set()  # on an interrupt: the threads stop after their current request
            for t in threads:
                t.join(TIMEOUT + 5)
        witness_line = _run(site, "witnesses", "list").strip() if witness else ""
        stop_witness(server)
        server_log = (root / "serve.log").read_text(errors="replace")
        started_verify = time.perf_counter()
        verify = subprocess.run(
            [*_suyuan(), "verify"], env=site.env, capture_output=True, text=True, timeout=3600
        )
        said = (verify.stdout.strip() or verify.stderr.strip()).splitlines()
        return Outcome(
            described=described,
            demo_size=targets.size,
            records=sorted(load.rec.records, key=lambda r: r.at),
            problems=load.rec.problems,
            samples=sampler.samples,
            workers=len(sampler.workers),
            server_log=server_log,
            access=access_log(root / "access.log"),
            verify_ok=verify.returncode == 0 and bool(said) and said[-1].startswith("OK"),
            verify_line=said[-1] if said else "(no output)",
            verify_seconds=time.perf_counter() - started_verify,
            final_size=entry_count(site.url),
            witness=witness_line,
        )
    raise AssertionError("unreachable")  # ExitStack does not swallow exceptions


def report(
    args: argparse.Namespace,
    out: Outcome,
    total: float,
    window: float,
    early: tuple[float, float],
    late: tuple[float, float],
    began: datetime,
    load_start: float,
) -> tuple[list[str], list[str]]:
    """The BENCHMARKS.md section, and the failures (empty: the run passed)."""
    from bench.__main__ import machine

    records = out.records
    accepted = sum(r.statements for r in records)
    by_status: dict[str, int] = {}
    for r in records:
        key = "no answer" if r.status == 0 else f"{r.status // 100}xx"
        by_status[key] = by_status.get(key, 0) + 1
    five = sum(1 for r in records if r.status >= 500)
    unexpected = sum(1 for r in records if not r.ok)
    result = verdict(records, out.samples, early, late, args.rss_limit)
    adds_up = out.final_size == out.demo_size + accepted
    failures = []
    if not out.verify_ok:
        failures.append(f"suyuan verify failed: {out.verify_line}")
    if not adds_up:
        failures.append(
            f"the log has {out.final_size:,} entries, expected {out.demo_size:,} + "
            f"{accepted:,} accepted"
        )
    if five or out.access[1]:
        failures.append(f"{max(five, out.access[1]):,} answers were 5xx")
    if unexpected:
        failures.append(f"{unexpected:,} requests got an unexpected status or no answer")
    if math.isnan(result.rss_growth_pct) or result.rss_growth_pct > args.rss_limit:
        failures.append(
            f"server RSS grew {result.rss_growth_pct:+.1f} % (limit {args.rss_limit:g} %)"
        )
    block = window * max(1, round(total / 6 / window))
    reads = sum(1 for r in records if r.cls == "read")
    writes = sum(1 for r in records if r.cls == "write")
    refused = sum(1 for r in records if r.cls == "refused")
    witness = ""
    if out.witness:
        parts = out.witness.split("\t")
        states = [p for p in parts if p.startswith(("acknowledged", "cosigned"))]
        witness = f" The witness ({parts[0]}) at the end: {', '.join(states)}."
    lines = [
        f"## Soak: {args.minutes:g} minutes of mixed reads and writes",
        "",
        "Written by `python -m bench.soak` (not part of `make bench`: it takes the whole run). "
        f"A fresh instance with the demo data set ({out.demo_size:,} entries), served by "
        "`suyuan serve` (gunicorn gthread, its default workers"
        + ("" if args.no_witness else "; a witness on loopback, so the witnessing loop runs")
        + f"); {args.readers} reading and {args.writers} writing client threads of one process "
        "on the same machine, each with a keep-alive connection, paced to fixed rates. Reads: "
        "product pages (with the label's `?h=`, and the lots made during the run), the "
        "checkpoint, inclusion and consistency proofs, entry pages, tiles and entry bundles, "
        "domain queries, notice boards and fund notices, auditor pages signed in. Writes: "
        "signed notes (one or five per request), new lots and cold-store `batch.event`s on "
        "them through `POST /api/v1/entries`. One request in 20 of each MUST be refused "
        "(unknown entries and lots, signed-out auditor pages; no token, bad signature, "
        "replay, unknown key). Latency is the client's, request sent to body read.",
        "",
        f"- Machine: {machine()}; load average {load_start:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end (a shared machine; the load generator shares "
        "the cores with the server)",
        f"- Run: {began.strftime('%Y-%m-%d %H:%M UTC')}, {args.minutes:g} min; database "
        f"{out.described}; {out.workers} gunicorn workers "
        f"({out.server_log.count('Booting worker')} booted in all, "
        f"{out.server_log.count('WORKER TIMEOUT')} worker timeouts, "
        f"{out.server_log.count('Traceback')} tracebacks in the server's log)",
        f"- Load: {args.read_rate:g} reads/s and {args.write_rate:g} statements/s targeted; "
        f"{reads / total:.1f} reads/s and {accepted / total:.1f} statements/s "
        f"({writes / total:.1f} requests/s) done, and {refused:,} requests that must be "
        "refused; answers: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(by_status.items()))
        + f"; the server's access log: {out.access[0]:,} requests, {out.access[1]:,} 5xx",
        "",
        *table(spans(records, out.samples, block, total)),
        "",
        f"Steadiness, minutes {early[0] / 60:g}–{early[1] / 60:g} (after a warm-up in which "
        "each worker's page cache, 2,048 rendered pages, fills up) against minutes "
        f"{late[0] / 60:g}–{late[1] / 60:g}:",
        "",
        *result.lines,
        "",
        f"By kind of request, after the warm-up (minute {early[0] / 60:g} on):",
        "",
        *by_label(records, early[0]),
        "",
        f"Afterwards, with the server stopped, `suyuan verify` ({out.verify_seconds:.1f} s): "
        f"`{out.verify_line}`; the log holds {out.final_size:,} entries = {out.demo_size:,} "
        f"of the demo + {accepted:,} accepted ({'adds up' if adds_up else 'DOES NOT ADD UP'})."
        + witness,
        "",
        "Pass (exit status 0) when `suyuan verify` says OK and the size adds up, no answer "
        "was 5xx, every request was answered with the status expected, and the servers' "
        f"RSS grew by at most {args.rss_limit:g} % from the early to the late span. Result: "
        + ("**pass**." if not failures else "**FAIL**: " + "; ".join(failures) + "."),
    ]
    if out.problems:
        lines += ["", "First unexpected answers:", "", *[f"- `{p}`" for p in out.problems[:5]]]
    return lines, failures


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--read-rate", type=float, default=50.0, help="requests/s")
    parser.add_argument("--write-rate", type=float, default=30.0, help="statements/s")
    parser.add_argument("--readers", type=int, default=10, help="reading threads")
    parser.add_argument("--writers", type=int, default=4, help="writing threads")
    parser.add_argument("--window", type=float, help="seconds per sample (60; 15 under 10 min)")
    parser.add_argument("--warmup", type=float, help="minutes not compared (a third of the run)")
    parser.add_argument("--compare", type=float, default=5.0, help="minutes per compared span")
    parser.add_argument("--rss-limit", type=float, default=25.0, help="allowed RSS growth, %%")
    parser.add_argument("--no-witness", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument("--no-write", action="store_true", help="print, do not touch --out")
    args = parser.parse_args()
    total = args.minutes * 60
    window = args.window or (60.0 if args.minutes >= 10 else 15.0)
    warmup = args.warmup * 60 if args.warmup is not None else max(window, total / 3)
    warmup = window * max(1, round(warmup / window))
    compare = min(args.compare * 60, window * ((total - warmup) / 2 // window))
    if compare < window:
        raise SystemExit("the run is too short to compare two spans after the warm-up")
    early, late = (warmup, warmup + compare), (total - compare, total)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still stops the servers
    began, load_start = datetime.now(UTC), os.getloadavg()[0]
    out = soak(args, total, window)
    lines, failures = report(args, out, total, window, early, late, began, load_start)
    print("\nPer window:\n" + "\n".join(table(spans(out.records, out.samples, window, total))))
    print("\n".join(lines), flush=True)
    if not args.no_write:
        replace_section(args.out, "soak", lines)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
