"""Take the README's screenshots of a fresh demo site in headless Chromium (issue #4).

    /tmp/venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--households 60]

Builds a demo instance in a temporary folder (``ledger.demo.load_demo`` and the demo's
portal accounts, ``web.demo_users``), serves it on 127.0.0.1 from a thread, and drives
Debian's Chromium (``/usr/bin/chromium``; never ``playwright install``) through:

* ``product-zh-phone.png`` — a Nehe mushroom lot's scan page (its label URL with ``?h=``),
  Chinese, 390×844 phone, full page;
* ``product-en-phone.png`` — the same page in English;
* ``recall-zh-phone.png`` — the recalled pomelo lot, Chinese, phone;
* ``notice-zh-phone.png`` — the Nehe road project's public notice board ``/p/<id>``;
* ``auditor-trail.png`` — the auditor's fund-trail explorer for Gangnan's industry-subsidy
  source (payments summed by village), a 1280×900 desktop window, full page, signed in as
  the demo auditor.

Every page with a verification panel is taken only once the panel says ``verified``; the
script stops with an error otherwise, or when a page answers with an error status, so a
broken site never produces a pretty picture.  PNGs over :data:`MAX_BYTES` are reduced to a
256-colour palette with Pillow.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ORIGIN = "trace.suyuan.example/log"
PASSWORD = "demo-screenshots"  # the demo accounts of a throwaway instance
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
MAX_BYTES = 600 * 1024

MUSHROOM_LOT = "NH-CSR19-B01"  # 讷河赤松茸, 老莱镇 cooperative (the coop-nehe account's)
RECALLED_LOT = "DY-MY19-003"  # 东源蜜柚, failed a spot check and recalled
PROJECT = "HL-NH-2018-ROAD-01"  # 2.8 km of village road hardening in Nehe
FUND_SOURCE = "GX-GN-2017-IND-SRC"  # Gangnan: 2,000 yuan of industry subsidy per household


def build_site(folder: Path, households: int) -> tuple[Any, Any]:
    """An initialised instance in ``folder`` with the demo loaded; returns (instance, app)."""
    for name in [n for n in os.environ if n.startswith("SUYUAN_")]:
        del os.environ[name]
    os.environ.update(
        SUYUAN_INSTANCE=str(folder / "instance"),
        SUYUAN_PASSPHRASE=secrets.token_hex(16),
        SUYUAN_ORIGIN=ORIGIN,
    )
    from ledger import demo
    from ledger.config import Settings
    from ledger.instance import Instance
    from web import create_app
    from web.demo_users import ensure_demo_users

    instance = Instance(Settings.from_env(os.environ), dict(os.environ))
    instance.initialize(ORIGIN, "县扶贫办 County office")
    demo.load_demo(instance, households=households)
    ensure_demo_users(instance, PASSWORD, log_n=4)
    app = create_app(
        {
            "SECRET_KEY": secrets.token_hex(32),
            "SUYUAN_SCRYPT_LOG_N": 4,
            "RATELIMIT_ENABLED": False,
            "SUYUAN_SCAN_FLUSH_THREAD": False,
        }
    )
    return instance, app


@contextmanager
def serving(app: Any) -> Iterator[str]:
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="screenshots", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def label_urls(instance: Any, base: str) -> dict[str, str]:
    """What the printed QR labels hold (qr.urls), pointed at the local server."""
    from sqlalchemy import select

    from ledger.domain.batches import batches
    from ledger.domain.projects import projects
    from qr.urls import batch_url, entry_leaf_hash, project_url

    host = base.removeprefix("http://")
    urls: dict[str, str] = {}
    with instance.engine.connect() as conn:
        for lot in (MUSHROOM_LOT, RECALLED_LOT):
            gtin, seq = conn.execute(
                select(batches.c.gtin, batches.c.registered_seq).where(batches.c.lot == lot)
            ).one()
            urls[lot] = batch_url(host, gtin, lot, entry_leaf_hash(conn, seq))
        seq = conn.execute(
            select(projects.c.registered_seq).where(projects.c.id == PROJECT)
        ).scalar_one()
        urls[PROJECT] = project_url(host, PROJECT, entry_leaf_hash(conn, seq))
    return {k: "http://" + v.removeprefix("https://") for k, v in urls.items()}


class Shooter:
    def __init__(self, browser: Any, out: Path) -> None:
        self.browser = browser
        self.out = out
        self.taken: list[Path] = []

    @contextmanager
    def page(self, *, locale: str, viewport: dict[str, int], phone: bool) -> Iterator[Any]:
        context = self.browser.new_context(
            locale=locale,
            viewport=viewport,
            device_scale_factor=2 if phone else 1,
            is_mobile=phone,
            has_touch=phone,
        )
        context.set_default_timeout(30_000)
        try:
            yield context.new_page()
        finally:
            context.close()

    def visit(self, page: Any, url: str, *, panel: str | None = "[data-verify-panel]") -> None:
        response = page.goto(url)
        if response is None or response.status != 200:
            raise SystemExit(f"{url}: HTTP {response.status if response else 'no answer'}")
        if panel is not None:
            page.wait_for_function(
                "sel => { const el = document.querySelector(sel);"
                " return !!el && el.dataset.verifyStatus !== 'pending'; }",
                arg=panel,
                timeout=30_000,
            )
            status = page.locator(panel).first.get_attribute("data-verify-status")
            if status != "verified":
                reason = page.locator(panel).first.get_attribute("data-verify-reason")
                raise SystemExit(f"{url}: the verification panel says {status} ({reason})")
        page.evaluate("() => document.fonts.ready.then(() => true)")
        width = page.evaluate("() => document.documentElement.scrollWidth")
        if width > page.viewport_size["width"]:
            print(f"warning: {url} is {width}px wide in a {page.viewport_size['width']}px window")

    def shoot(self, page: Any, name: str, *, full_page: bool) -> None:
        path = self.out / name
        page.screenshot(path=str(path), full_page=full_page, animations="disabled")
        shrink(path)
        self.taken.append(path)
        print(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}: "
              f"{path.stat().st_size // 1024} KiB")  # fmt: skip


def shrink(path: Path) -> None:
    """Reduce a PNG over MAX_BYTES to a 256-colour palette (text and flat colours survive)."""
    if path.stat().st_size <= MAX_BYTES:
        return
    from PIL import Image

    with Image.open(path) as image:
        reduced = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    reduced.save(path, optimize=True)


def sign_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("form.card button[type=submit]")
    page.wait_for_url(lambda url: not url.startswith(f"{base}/login"))


def take_all(browser: Any, base: str, urls: dict[str, str], out: Path) -> list[Path]:
    shooter = Shooter(browser, out)
    with shooter.page(locale="zh-CN", viewport=PHONE, phone=True) as page:
        shooter.visit(page, urls[MUSHROOM_LOT])
        shooter.shoot(page, "product-zh-phone.png", full_page=True)
        shooter.visit(page, urls[RECALLED_LOT])
        if page.locator("[data-recall]").count() != 1:
            raise SystemExit(f"{urls[RECALLED_LOT]}: no recall banner")
        shooter.shoot(page, "recall-zh-phone.png", full_page=True)
        shooter.visit(page, urls[PROJECT])
        shooter.shoot(page, "notice-zh-phone.png", full_page=True)
    with shooter.page(locale="en-US", viewport=PHONE, phone=True) as page:
        shooter.visit(page, urls[MUSHROOM_LOT])
        shooter.shoot(page, "product-en-phone.png", full_page=True)
    with shooter.page(locale="zh-CN", viewport=DESKTOP, phone=False) as page:
        sign_in(page, base, "auditor")
        shooter.visit(page, f"{base}/audit/trail?source={FUND_SOURCE}", panel=None)
        shooter.shoot(page, "auditor-trail.png", full_page=True)
    return shooter.taken


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--households", type=int, default=60, help="demo households to load")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).is_file():
        print(f"{CHROMIUM} not found: install the Debian package chromium", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="suyuan-screenshots-") as folder:
        instance, app = build_site(Path(folder), args.households)
        try:
            with serving(app) as base, sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
                )
                try:
                    take_all(browser, base, label_urls(instance, base), args.out)
                finally:
                    browser.close()
        finally:
            scans = app.extensions.get("suyuan_scans")
            if scans is not None:
                scans.close()  # write the scan counts before the folder goes
            instance.engine.dispose()
            app.extensions["suyuan"]["instance"].engine.dispose()
    print(f"done in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
