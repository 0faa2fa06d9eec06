"""Scan counting for clone detection (web/scans.py): what counts, what is stored, and when.

A scan is a GET of a product page that found its lot; visitors are day-keyed HMACs of the
client address (never the address); writes are buffered and flushed in upserts, on SQLite
and PostgreSQL; the product page warns past the configured thresholds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, select, text

from ledger import demo
from ledger.db import make_engine, upgrade
from ledger.domain import gs1
from ledger.domain.batches import batches
from ledger.errors import InvalidInput, StorageError
from ledger.schema import scan_visitors, scans
from tests.web.support import ModuleSite, make_site
from web import scans as scan_module
from web.scans import ScanCounter, ScanStats, scan_stats

SMALL = 20
SECRET = "test"  # TEST_CONFIG's SECRET_KEY
ADDRESSES = ("203.0.113.7", "198.51.100.23", "2001:db8::42")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleSite]:
    with make_site(tmp_path_factory.mktemp("scans")) as made:
        demo.load_demo(made.instance, households=SMALL)
        made.app.config.update(
            SUYUAN_SCAN_FLUSH_THREAD=False,  # tests flush by hand, except where they test the thread
            SUYUAN_SCAN_TOTALS_TTL=0,  # read stored totals on every page
        )
        yield made


@pytest.fixture
def engine(site: ModuleSite) -> Engine:
    return site.instance.engine


@pytest.fixture
def counter(site: ModuleSite) -> ScanCounter:
    return scan_module.counter(site.app)


def lots(engine: Engine, unit: str, n: int, skip: int = 0) -> list[str]:
    """Product paths of ``n`` active lots in ``unit`` (distinct per test: pass ``skip``)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(batches.c.gtin, batches.c.lot)
            .where(batches.c.unit == unit, batches.c.status == "active")
            .order_by(batches.c.registered_seq)
            .offset(skip)
            .limit(n)
        ).all()
    assert len(rows) == n
    return [gs1.batch_path(g or None, lot) for g, lot in rows]


def stored(engine: Engine, code: str) -> list[tuple[str, int, int]]:
    with engine.connect() as conn:
        return [
            (r.day, r.scans, r.visitors)
            for r in conn.execute(select(scans).where(scans.c.code == code).order_by(scans.c.day))
        ]


def visit(
    client: FlaskClient, path: str, address: str, headers: dict[str, str] | None = None
) -> Any:
    return client.get(
        path,
        environ_base={"REMOTE_ADDR": address},
        headers={"Accept-Language": "en", **(headers or {})},
    )


# --- visitors --------------------------------------------------------------------------------


def test_visitors_are_day_keyed_hmacs_not_addresses() -> None:
    day1 = scan_module.day_key(SECRET, "2026-01-01")
    day2 = scan_module.day_key(SECRET, "2026-01-02")
    other_secret = scan_module.day_key("another", "2026-01-01")
    a = scan_module.visitor_id(day1, ADDRESSES[0])
    assert len(a) == 16
    assert a == scan_module.visitor_id(day1, ADDRESSES[0])  # one phone, one day: one visitor
    assert a != scan_module.visitor_id(day1, ADDRESSES[1])
    assert a != scan_module.visitor_id(day2, ADDRESSES[0])  # unlinkable across days
    assert a != scan_module.visitor_id(other_secret, ADDRESSES[0])  # and without the secret


def test_prefetches_are_recognised() -> None:
    assert scan_module.is_prefetch({"Sec-Purpose": "prefetch"})
    assert scan_module.is_prefetch({"Sec-Purpose": "prefetch;prerender"})
    assert scan_module.is_prefetch({"Purpose": "prefetch"})
    assert scan_module.is_prefetch({"X-Moz": "prefetch"})
    assert not scan_module.is_prefetch({})
    assert not scan_module.is_prefetch({"Sec-Fetch-Mode": "navigate"})


# --- counting through the product page -------------------------------------------------------


def test_gets_count_but_heads_prefetches_and_unknown_lots_do_not(
    site: ModuleSite, engine: Engine, counter: ScanCounter
) -> None:
    [path] = lots(engine, "kg", 1)
    client = site.app.test_client()
    counter.flush()
    before = counter.pending()
    assert visit(client, path, ADDRESSES[0]).status_code == 200
    assert visit(client, path, ADDRESSES[0]).status_code == 200
    assert visit(client, path, ADDRESSES[1]).status_code == 200
    assert counter.pending() == before + 3
    assert stored(engine, path) == []  # nothing written on the request path
    assert client.head(path, environ_base={"REMOTE_ADDR": ADDRESSES[2]}).status_code == 200
    assert visit(client, path, ADDRESSES[2], headers={"Sec-Purpose": "prefetch"}).status_code == 200
    assert visit(client, "/b/NO-SUCH-LOT", ADDRESSES[2]).status_code == 404
    assert counter.pending() == before + 3
    assert counter.flush() == 3
    today = scan_module.today()
    assert stored(engine, path) == [(today, 3, 2)]
    # the same visitors again: scans grow, visitors do not
    visit(client, path, ADDRESSES[0])
    visit(client, path, ADDRESSES[1], headers={"If-None-Match": 'W/"x"'})
    counter.flush()
    assert stored(engine, path) == [(today, 5, 2)]


def test_every_spelling_of_a_code_counts_as_the_canonical_path(
    site: ModuleSite, engine: Engine, counter: ScanCounter
) -> None:
    [path] = lots(engine, "kg", 1, skip=1)
    gtin, lot = gs1.parse_batch_path(path)
    assert gtin is not None
    client = site.app.test_client()
    counter.flush()
    response = visit(client, f"/01/{gtin[1:]}/10/{lot}?h=00000000", ADDRESSES[0])
    assert response.status_code == 301  # the redirect is not a scan …
    visit(client, response.headers["Location"], ADDRESSES[0])  # … the page it leads to is
    visit(client, f"{path}?lang=zh", ADDRESSES[1])
    assert counter.flush() == 2
    assert stored(engine, path) == [(scan_module.today(), 2, 2)]


def test_no_address_is_stored(site: ModuleSite, engine: Engine, counter: ScanCounter) -> None:
    [path] = lots(engine, "kg", 1, skip=2)
    client = site.app.test_client()
    for address in ADDRESSES:
        visit(client, path, address)
    counter.flush()
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(select(scans))]
        rows += [tuple(r) for r in conn.execute(select(scan_visitors))]
    assert rows
    dumped = repr(rows).encode() + b"".join(v for r in rows for v in r if isinstance(v, bytes))
    for address in ADDRESSES:
        assert address.encode() not in dumped
        assert address.encode().hex().encode() not in dumped
    with engine.connect() as conn:
        visitors = [
            bytes(v)
            for (v,) in conn.execute(
                select(scan_visitors.c.visitor).where(scan_visitors.c.code == path)
            )
        ]
    key = scan_module.day_key(SECRET, scan_module.today())
    assert sorted(visitors) == sorted(scan_module.visitor_id(key, a) for a in ADDRESSES)


# --- the buffer --------------------------------------------------------------------------


def test_buffered_counts_are_written_in_one_flush_and_survive_a_failed_one(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'scans.db'}")
    try:
        counter = ScanCounter(engine, SECRET, background=False)
        counter.record("/b/L1", ADDRESSES[0], day="2026-03-01")
        counter.record("/b/L1", ADDRESSES[1], day="2026-03-01")
        counter.record("/b/L2", ADDRESSES[0], day="2026-03-02")
        assert counter.pending() == 3
        with pytest.raises(StorageError):  # no tables yet: the write fails …
            counter.flush()
        assert counter.pending() == 3  # … and the scans wait for the next one
        upgrade(engine)
        assert counter.flush() == 3 and counter.pending() == 0
        assert counter.flush() == 0
        counter.record("/b/L1", ADDRESSES[0], day="2026-03-01")
        counter.record("/b/L1", ADDRESSES[0], day="2026-03-03")
        counter.flush()
        assert stored(engine, "/b/L1") == [("2026-03-01", 3, 2), ("2026-03-03", 1, 1)]
        totals = scan_stats(engine, ["/b/L1", "/b/L2", "/b/never"])
        assert totals == {
            "/b/L1": ScanStats(4, 3, "2026-03-03"),  # visitors summed over days
            "/b/L2": ScanStats(1, 1, "2026-03-02"),
            "/b/never": ScanStats(0, 0, None),
        }
        counter.record("/b/L2", ADDRESSES[2], day="2026-03-04")
        assert counter.stats("/b/L2") == ScanStats(2, 2, "2026-03-04")  # stored + buffered
        with pytest.raises(InvalidInput):
            scan_stats(engine, ["not a path"])
        counter.close()
        assert stored(engine, "/b/L2")[-1] == ("2026-03-04", 1, 1)  # close flushes
    finally:
        engine.dispose()


def test_an_unwritable_buffer_stays_bounded_and_keeps_counting_scans(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'scans.db'}")  # no tables: every flush fails
    try:
        counter = ScanCounter(engine, SECRET, background=False)
        counter.max_visitors = 3
        addresses = [f"192.0.2.{i}" for i in range(10)]
        for address in addresses:
            counter.record("/b/L1", address, day="2026-03-01")
        counter.record("/b/L1", addresses[0], day="2026-03-01")  # a visitor already held
        with pytest.raises(StorageError):
            counter.flush()  # put back: still bounded
        counter.record("/b/L1", addresses[9], day="2026-03-01")
        assert counter.pending() == 12  # every scan counted
        assert counter.stats("/b/L1") == ScanStats(12, 3, "2026-03-01")  # visitors capped
        upgrade(engine)
        assert counter.flush() == 12
        counter.record("/b/L1", addresses[9], day="2026-03-01")  # room again after a write
        assert counter.flush() == 1
        assert stored(engine, "/b/L1") == [("2026-03-01", 13, 4)]
        counter.close()
    finally:
        engine.dispose()


def test_the_flusher_thread_writes_when_full_or_on_time(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'scans.db'}")
    upgrade(engine)
    try:
        full = ScanCounter(engine, SECRET, flush_seconds=3600, flush_scans=5)
        for i in range(5):
            full.record("/b/FULL", f"10.0.0.{i}")
        _wait_for(lambda: stored(engine, "/b/FULL") == [(scan_module.today(), 5, 5)])
        assert full.pending() == 0
        timed = ScanCounter(engine, SECRET, flush_seconds=0.05, flush_scans=10**6)
        timed.record("/b/TIMED", "10.0.0.1")
        _wait_for(lambda: stored(engine, "/b/TIMED") == [(scan_module.today(), 1, 1)])
        full.close()
        timed.close()
    finally:
        engine.dispose()


def _wait_for(condition: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the flusher thread did not write in time"
        time.sleep(0.02)


def test_counting_is_thread_safe(tmp_path: Path) -> None:
    import threading

    engine = make_engine(f"sqlite:///{tmp_path / 'scans.db'}")
    upgrade(engine)
    try:
        counter = ScanCounter(engine, SECRET, flush_seconds=0.01, flush_scans=50)

        def scan(worker: int) -> None:
            for i in range(200):
                counter.record("/b/BUSY", f"10.{worker}.0.{i % 20}")

        threads = [threading.Thread(target=scan, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        counter.close()
        assert stored(engine, "/b/BUSY") == [(scan_module.today(), 1600, 160)]
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_upserts_on_postgresql(pg_url: str) -> None:
    engine = make_engine(pg_url)
    upgrade(engine)
    try:
        one = ScanCounter(engine, SECRET, background=False)
        two = ScanCounter(engine, SECRET, background=False)  # another process
        for counter in (one, two):
            counter.record("/b/PG", ADDRESSES[0], day="2026-05-01")
            counter.record("/b/PG", ADDRESSES[1], day="2026-05-01")
        two.record("/b/PG", ADDRESSES[2], day="2026-05-01")
        one.flush()
        two.flush()
        assert stored(engine, "/b/PG") == [("2026-05-01", 5, 3)]
        assert scan_stats(engine, ["/b/PG"])["/b/PG"] == ScanStats(5, 3, "2026-05-01")
    finally:
        engine.dispose()


# --- the clone warning -------------------------------------------------------------------


def test_lot_units() -> None:
    assert scan_module.lot_units(200, "box", 500) == 200
    assert scan_module.lot_units(2000, "kg", 500) == 4000
    assert scan_module.lot_units(10, "jin", 500) == 10
    assert scan_module.lot_units(3, "t", 1000) == 3000
    assert scan_module.lot_units(100, "g", 500) == 1  # never zero


def test_clone_warning_past_the_scan_threshold(
    site: ModuleSite, engine: Engine, counter: ScanCounter, monkeypatch: pytest.MonkeyPatch
) -> None:
    [path] = lots(engine, "kg", 1, skip=3)
    config = site.app.config
    monkeypatch.setitem(config, "SUYUAN_CLONE_MIN_SCANS", 0)
    monkeypatch.setitem(config, "SUYUAN_CLONE_GRAMS_PER_UNIT", 10**12)  # a lot of one unit
    monkeypatch.setitem(config, "SUYUAN_CLONE_VISITOR_FACTOR", 100)  # scans decide here
    client = site.app.test_client()
    counter.flush()
    for _ in range(3):  # 3 × 1 unit: not yet
        page = visit(client, path, ADDRESSES[0]).get_data(as_text=True)
        assert "data-clone-warning" not in page
    page = visit(client, path, ADDRESSES[0]).get_data(as_text=True)  # the page counts itself
    assert "data-clone-warning" not in page  # 3 scans seen when judged
    page = visit(client, path, ADDRESSES[0]).get_data(as_text=True)
    assert "data-clone-warning" in page and "scanned unusually often" in page
    counter.flush()  # the same judgement from stored totals
    assert "data-clone-warning" in visit(client, path, ADDRESSES[0]).get_data(as_text=True)


def test_clone_warning_past_the_visitor_threshold(
    site: ModuleSite, engine: Engine, counter: ScanCounter, monkeypatch: pytest.MonkeyPatch
) -> None:
    [path] = lots(engine, "kg", 1, skip=4)
    config = site.app.config
    monkeypatch.setitem(config, "SUYUAN_CLONE_MIN_SCANS", 0)
    monkeypatch.setitem(config, "SUYUAN_CLONE_GRAMS_PER_UNIT", 10**12)
    monkeypatch.setitem(config, "SUYUAN_CLONE_SCAN_FACTOR", 100)
    client = site.app.test_client()
    visit(client, path, ADDRESSES[0])
    assert "data-clone-warning" not in visit(client, path, ADDRESSES[1]).get_data(as_text=True)
    page = visit(client, path, ADDRESSES[2]).get_data(as_text=True)  # 2 visitors > 1 unit
    assert "data-clone-warning" in page


def test_default_thresholds_follow_the_lot_size(
    site: ModuleSite, engine: Engine, counter: ScanCounter
) -> None:
    """With the shipped defaults a 200-box lot warns above 600 scans or 200 visitors."""
    with engine.connect() as conn:
        gtin, lot = conn.execute(
            text("SELECT gtin, lot FROM batches WHERE lot = 'DY-MY19-003-G1'")
        ).one()
    path = gs1.batch_path(gtin, lot)
    check = scan_module.clone_check(site.app, ScanStats(600, 200, "2026-01-01"), 200, "box")
    assert (check.suspect, check.units, check.scan_limit, check.visitor_limit) == (
        False,
        200,
        600,
        200,
    )
    assert scan_module.clone_check(site.app, ScanStats(601, 1, None), 200, "box").suspect
    assert scan_module.clone_check(site.app, ScanStats(1, 201, None), 200, "box").suspect
    small = scan_module.clone_check(site.app, ScanStats(20, 20, None), 3, "box")
    assert not small.suspect and small.scan_limit == 20  # the floor
    # stored history is enough: seed it as another process would have written it
    _seed(engine, path, 601, 5)
    client = site.app.test_client()
    assert "data-clone-warning" in visit(client, path, ADDRESSES[0]).get_data(as_text=True)


def _seed(engine: Engine, code: str, count: int, visitors: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            scans.insert().values(code=code, day="2020-01-01", scans=count, visitors=visitors)
        )


def test_pages_stay_cached_while_scans_are_counted(
    site: ModuleSite, engine: Engine, counter: ScanCounter
) -> None:
    from web.consumer import page_cache

    [path] = lots(engine, "kg", 1, skip=5)
    client = site.app.test_client()
    counter.flush()
    first = visit(client, path, ADDRESSES[0])
    cached = len(page_cache(site.app))
    second = visit(client, path, ADDRESSES[1], headers={"If-None-Match": first.headers["ETag"]})
    assert second.status_code == 304
    assert len(page_cache(site.app)) == cached
    counter.flush()
    assert stored(engine, path) == [(scan_module.today(), 2, 2)]
