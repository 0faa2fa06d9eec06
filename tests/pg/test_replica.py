"""Reads served by a streaming hot-standby replica (``SUYUAN_READ_DATABASE_URL``).

The log is made on the primary with the real CLI (``suyuan init``, ``suyuan demo``); the
apps under test write to the primary and read from the replica.  Every proof is checked
the way a client checks it (tests/pg/verifying.py), never by asking the server.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import select

from ledger.checkpoint import Checkpoint, verify_checkpoint
from ledger.db import write_connection
from ledger.domain.batches import batches
from ledger.domain.gs1 import batch_path
from ledger.entry import decode_entry, make_statement, sign_statement
from ledger.errors import StorageError
from ledger.note import parse_vkey
from ledger.schema import entries
from tests.helpers import ORIGIN, check_ledger, dump, now
from tests.pg import verifying
from tests.pg.conftest import Deployment, Pair, drop_deployment, new_deployment
from tests.pgcluster import PgCluster
from web import scans

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(scope="module")
def demo(pg_pair: Pair, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The demo data set loaded on the primary by ``suyuan demo``, replicated."""
    pg_pair.ensure_running()
    made = new_deployment(pg_pair, tmp_path_factory.mktemp("demo"), "demo")
    result = made.cli("demo", "--households", "20")
    assert result.exit_code == 0, result.output
    pg_pair.catch_up()
    try:
        yield made
    finally:
        drop_deployment(made)


def tagged(url: str, tag: str) -> str:
    """``url`` whose connections carry ``application_name=tag`` (ledger.db: the URL wins)."""
    return f"{url}&application_name={tag}"


def backends(cluster: PgCluster, database: str, tag: str) -> int:
    with psycopg.connect(cluster.conninfo("postgres"), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
            (database, tag),
        ).fetchone()
    assert row is not None
    return int(row[0])


def product_paths(made: Deployment, limit: int = 4) -> list[str]:
    with made.engine(made.replica_url).connect() as conn:
        rows = conn.execute(
            select(batches.c.gtin, batches.c.lot).order_by(batches.c.registered_seq).limit(limit)
        ).all()
    assert rows
    return [batch_path(gtin or None, lot) for gtin, lot in rows]


_LINK = re.compile(r'href="(/(?:e|n|p|b|01)/[^"#?]+)"')


def crawl(client: Any, start: list[str], limit: int = 40) -> dict[str, int]:
    """GET the start pages and the entry/notice/project/product pages they link to."""
    seen: dict[str, int] = {}
    queue = list(start)
    while queue and len(seen) < limit:
        path = queue.pop(0)
        if path in seen:
            continue
        response = client.get(path)
        seen[path] = response.status_code
        if response.status_code == 200 and response.mimetype == "text/html":
            for link in _LINK.findall(response.get_data(as_text=True)):
                if link not in seen:
                    queue.append(link.replace("&amp;", "&"))
    return seen


# --- reads from the replica verify in the client ------------------------------------------


def test_scan_pages_proofs_and_tiles_from_the_replica_verify_in_the_client(
    demo: Deployment,
) -> None:
    verifier = parse_vkey(demo.vkey)
    client = demo.app().test_client()  # writes to the primary, reads from the replica

    latest = verifying.checkpoint(client, verifier)
    primary_size = demo.instance(replica=False).reader().size()
    assert latest.size == primary_size > 100  # the replica has caught up with the demo

    # Scan pages: the page's own verification panel, done as the browser does it.
    shown: set[int] = set()
    for path in product_paths(demo):
        shown |= set(verifying.page_checked(client, verifier, path))
    assert len(shown) >= 4

    # Entry pages and the tile-based proof of the same entries.
    for seq in [*sorted(shown)[:5], 0, latest.size - 1]:
        assert client.get(f"/e/{seq}").status_code == 200
        leaf = verifying.entry_proof(client, verifier, seq, latest)
        verifying.tile_proof(client, seq, leaf, latest)

    # Consistency between an older checkpoint the replica serves and the newest.
    older = client.get(f"/api/v1/checkpoints?before={latest.size // 2}&limit=1").get_json()
    (old_item,) = older["checkpoints"]
    old, _ = verify_checkpoint(old_item["note"], verifier, ORIGIN)
    verifying.consistency(client, verifier, old, latest)

    # The whole log through its tiles and entry bundles (suyuan verify --url).
    audited = verifying.audit(client, verifier)
    assert audited.result.size == latest.size
    assert audited.result.root == latest.root


def test_reads_come_from_the_replica_and_writes_go_to_the_primary(demo: Deployment) -> None:
    """Connections are tagged per engine: anonymous reads never touch the primary."""
    tag = uuid.uuid4().hex[:12]
    read_tag, write_tag = f"r{tag}", f"w{tag}"
    app = demo.app(
        primary_url=tagged(demo.primary_url, write_tag),
        replica_url=tagged(demo.replica_url, read_tag),
    )
    client = app.test_client()
    code = product_paths(demo, 1)[0]
    before = scans.scan_stats(demo.engine(demo.primary_url), [code])[code].scans
    for path in [code, "/", "/e/3", "/log/checkpoint", "/log/tile/0/000"]:
        assert client.get(path).status_code == 200, path
    assert client.get("/api/v1/entries/5").status_code == 200
    assert backends(demo.pair.standby, demo.database, read_tag) >= 1
    assert backends(demo.pair.primary, demo.database, write_tag) == 0
    assert backends(demo.pair.primary, demo.database, read_tag) == 0

    # The scan's count is written to the primary when the buffer is flushed...
    assert scans.counter(app).flush() == 1
    assert backends(demo.pair.primary, demo.database, write_tag) >= 1
    assert scans.scan_stats(demo.engine(demo.primary_url), [code])[code].scans == before + 1
    # ...and reaches the replica by replication.
    demo.pair.catch_up()
    assert scans.scan_stats(demo.engine(demo.replica_url), [code])[code].scans == before + 1


def test_a_write_sent_to_the_replica_fails_loudly(demo: Deployment) -> None:
    replica = demo.engine(demo.replica_url)
    with (
        pytest.raises(StorageError, match=r"read-only .*SUYUAN_DATABASE_URL"),
        write_connection(replica) as conn,
    ):
        conn.exec_driver_sql("UPDATE log_state SET size = size WHERE id = 1")


# --- a replica-only host whose primary is down ----------------------------------------------


def test_a_read_only_host_serves_every_read_page_with_its_primary_down(
    demo: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    verifier = parse_vkey(demo.vkey)
    reader_app = demo.app(SUYUAN_READ_ONLY=True)
    writer_app = demo.app()  # a normal host: reads the replica, writes the primary
    client, writer = reader_app.test_client(), writer_app.test_client()
    products = product_paths(demo)
    latest = verifying.checkpoint(client, verifier)
    token_name = f"t{uuid.uuid4().hex[:8]}"
    from ledger.tokens import create_token

    token = create_token(demo.engine(demo.primary_url), token_name)
    admin = demo.instance(replica=False).author("admin")
    statement = sign_statement(
        make_statement("note", {"text": "while the primary is down"}, ORIGIN, now()),
        [admin],
    )

    demo.pair.primary.halt()
    try:
        caplog.set_level(logging.WARNING, logger="web.scans")
        # Every page a visitor can reach from the front page, the notices and products.
        statuses = crawl(client, ["/", "/notices", *products], limit=60)
        assert len(statuses) >= 20
        assert {p: s for p, s in statuses.items() if s != 200} == {}
        for path in [
            "/healthz",
            "/log/checkpoint",
            "/log/vkey",
            "/log/tile/0/000",
            "/log/tile/entries/000",
            f"/api/v1/entries/{latest.size - 1}",
            "/api/v1/checkpoints",
            "/api/v1/keys",
            "/api/v1/proofs/consistency?from=1",
            "/api/v1/openapi.json",
            "/login",
        ]:
            assert client.get(path).status_code == 200, path
        # The proofs still verify in the client, from the replica alone.
        verifying.page_checked(client, verifier, products[0])
        assert verifying.audit(client, verifier).result.size == latest.size

        # Scans are counted into the buffer; the failed flushes are logged once.
        counter = scans.counter(reader_app)
        pending = counter.pending()
        assert pending >= len(products)
        for _attempt in range(3):
            counter.flush_quietly()
        failures = [r for r in caplog.records if "could not write scan counts" in r.message]
        assert len(failures) == 1
        assert counter.pending() == pending  # kept for later, nothing lost

        # Writes fail cleanly: 503 with the error body, never a 500.
        response = writer.post(
            "/api/v1/entries",
            json=statement.to_json(),
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 503
        assert response.get_json()["error"]["code"] == "storage_error"
        assert response.headers["Retry-After"]
        refused = client.post(
            "/api/v1/entries",
            json=statement.to_json(),
            headers={"Authorization": f"Bearer {token}"},
        )
        assert refused.status_code == 503
    finally:
        demo.pair.primary.resume()

    # The primary is back: the buffered scans are written, and say so once.
    caplog.clear()
    assert counter.flush() == pending
    counter.flush_quietly()
    assert not [r for r in caplog.records if "could not write" in r.message]
    demo.pair.catch_up()
    stats = scans.scan_stats(demo.engine(demo.replica_url), products)
    assert all(s.scans >= 1 for s in stats.values())
    # And the write that failed can be made now, by the same app, without a restart.
    response = writer.post(
        "/api/v1/entries", json=statement.to_json(), headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201, response.data
    check_ledger(demo.engine(demo.primary_url))


# --- a lagging replica ---------------------------------------------------------------------


def _clone_batch(demo: Deployment, lot: str) -> tuple[Any, str]:
    """A new batch.registered statement: an existing lot's, re-signed under a new lot."""
    instance = demo.instance(replica=False)
    log = instance.reader()
    with log.engine.connect() as conn:
        leaf = conn.execute(
            select(entries.c.leaf).where(entries.c.kind == "batch.registered").limit(1)
        ).scalar_one()
    old = decode_entry(bytes(leaf))
    keys = {k.key_id: k for k in log.registered_keys()}
    signers = [instance.author(keys[key_id].name) for key_id in old.signed.key_ids()]
    body = {**old.body, "lot": lot}
    statement = make_statement("batch.registered", body, log.origin, now())
    return sign_statement(statement, signers), batch_path(body.get("gtin"), lot)


def _pause_replay(standby: PgCluster, pause: bool) -> None:
    with psycopg.connect(standby.conninfo("postgres"), autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()" if pause else "SELECT pg_wal_replay_resume()")
        if pause:  # pausing is requested; wait until replay has really stopped
            for _ in range(500):
                row = conn.execute("SELECT pg_get_wal_replay_pause_state()").fetchone()
                if row is not None and row[0] == "paused":
                    return
                time.sleep(0.01)
            raise AssertionError("WAL replay did not pause")


def test_an_entry_not_yet_on_the_replica_is_404_until_it_arrives(demo: Deployment) -> None:
    verifier = parse_vkey(demo.vkey)
    client = demo.app(SUYUAN_READ_ONLY=True).test_client()
    writer = demo.instance(replica=False).writer()
    signed, path = _clone_batch(demo, f"LAG{uuid.uuid4().hex[:6].upper()}")
    before = verifying.checkpoint(client, verifier)

    _pause_replay(demo.pair.standby, True)
    try:
        (entry,) = writer.append([signed])
        seq = entry.seq
        assert seq >= before.size
        # The replica does not have it yet: not found, and nothing else.
        assert client.get(f"/e/{seq}").status_code == 404
        assert client.get(f"/api/v1/entries/{seq}").status_code == 404
        assert client.get(path).status_code == 404
        assert client.get(f"/log/tile/entries/{seq // 256:03d}.p/{seq % 256 + 1}").status_code == (
            404
        )
        # What it serves is the older log, whole and verifiable.
        assert verifying.checkpoint(client, verifier) == before
        verifying.entry_proof(client, verifier, before.size - 1, before)
    finally:
        _pause_replay(demo.pair.standby, False)
    demo.pair.catch_up()

    after = verifying.checkpoint(client, verifier)
    assert after.size > seq
    leaf = verifying.entry_proof(client, verifier, seq, after)
    assert leaf == entry.leaf
    assert seq in verifying.page_checked(client, verifier, path)
    verifying.consistency(client, verifier, before, after)


def test_proofs_from_a_replica_that_lags_behind_a_busy_writer_always_verify(
    deployment: Deployment,
) -> None:
    """Checkpoints, entries and tree nodes commit in one transaction on the primary, and a
    hot standby shows a transaction all at once: whatever checkpoint the replica serves,
    every proof against it can be computed and verifies, however far behind it is."""
    verifier = parse_vkey(deployment.vkey)
    writer = deployment.instance(replica=False).writer()
    admin = deployment.instance(replica=False).author("admin")
    client = deployment.app(SUYUAN_READ_ONLY=True).test_client()
    stop = threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        rng = random.Random(1)
        i = 0
        try:
            while not stop.is_set():
                items = []
                for _ in range(rng.randint(1, 20)):
                    body = {"text": f"busy {i}"}
                    items.append(
                        sign_statement(make_statement("note", body, writer.origin, now()), [admin])
                    )
                    i += 1
                writer.append(items)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    thread = threading.Thread(target=write, name="busy-writer")
    thread.start()
    sizes: set[int] = set()
    previous: Checkpoint | None = None
    rng = random.Random(2)
    try:
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline or len(sizes) < 5:
            assert time.monotonic() < deadline + 30, f"the replica showed only sizes {sizes}"
            cp = verifying.checkpoint(client, verifier)
            sizes.add(cp.size)
            seq = rng.randrange(cp.size)
            leaf = verifying.entry_proof(client, verifier, seq, cp)
            if len(sizes) % 3 == 0:
                verifying.tile_proof(client, seq, leaf, cp)
            if previous is not None:
                assert previous.size <= cp.size  # the replica never goes back
                verifying.consistency(client, verifier, previous, cp)
            previous = cp
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not failures, failures
    assert len(sizes) >= 5
    deployment.pair.catch_up()
    check_ledger(deployment.engine(deployment.replica_url))
    check_ledger(deployment.engine(deployment.primary_url))


def test_init_and_demo_are_on_the_replica_byte_for_byte(demo: Deployment) -> None:
    """Streaming replication is a physical copy: same entries, same tree, same checkpoints."""
    demo.pair.catch_up()
    assert dump(demo.engine(demo.replica_url)) == dump(demo.engine(demo.primary_url))
    result = check_ledger(demo.engine(demo.replica_url))
    assert result.size == demo.instance(replica=False).reader().size()


def test_with_the_replica_down_reads_answer_503_and_writes_still_work(demo: Deployment) -> None:
    app = demo.app()
    client = app.test_client()
    from ledger.tokens import create_token

    token = create_token(demo.engine(demo.primary_url), f"t{uuid.uuid4().hex[:8]}")
    admin = demo.instance(replica=False).author("admin")
    statement = sign_statement(
        make_statement("note", {"text": "while the replica is down"}, ORIGIN, now()), [admin]
    )
    product = product_paths(demo, 1)[0]
    assert client.get(product).status_code == 200  # pools and caches are warm

    demo.pair.standby.halt()
    try:
        for path in [product, "/", "/e/1", "/notices", "/log/checkpoint", "/healthz"]:
            response = client.get(path)
            assert response.status_code == 503, (path, response.status_code)
        api = client.get("/api/v1/entries/1")
        assert api.status_code == 503 and api.get_json()["error"]["code"] == "storage_error"
        # The write path never touches the replica.
        response = client.post(
            "/api/v1/entries",
            json=statement.to_json(),
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 201, response.data
        seq = response.get_json()["entries"][0]["seq"]
    finally:
        demo.pair.standby.resume()
    demo.pair.catch_up()
    assert client.get(f"/e/{seq}").status_code == 200  # the same app reads again
