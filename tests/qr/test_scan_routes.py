"""From printed code to page: labels and posters made by qr/, read back with zbar, opened.

Issue #5's open item: every printed code is a URL the site answers.  The codes are rendered
the way they are printed (label sheets and notice posters as PDFs, a disbursement notice
code as a PNG), decoded with zbar, and their path and query opened with the Flask test
client: the page shows what the label names, says the server checked its entries, and
confirms the label's hash prefix — or flags a label that is not this ledger's.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient
from PIL import Image
from sqlalchemy import Connection, select, text

from ledger import demo
from ledger.domain.batches import batches
from qr import codes, labels, manual, notice, urls
from tests.qr.test_qr import decode_cells, decode_image, pdf_pages, pdf_text
from tests.web.support import ModuleSite, make_site

HOST = "trace.example.cn"
EN = {"Accept-Language": "en"}
ROAD = "HL-NH-2018-ROAD-01"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleSite]:
    with make_site(tmp_path_factory.mktemp("scan-routes")) as made:
        demo.load_demo(made.instance, households=20)
        made.app.config["SUYUAN_SCAN_FLUSH_THREAD"] = False
        yield made


@pytest.fixture
def conn(site: ModuleSite) -> Iterator[Connection]:
    with site.instance.engine.connect() as connection:
        yield connection


@pytest.fixture
def client(site: ModuleSite) -> FlaskClient:
    return site.app.test_client()


def open_scanned(client: FlaskClient, url: str) -> tuple[Any, str]:
    """GET a scanned URL's path and query, as the phone's browser would on this site."""
    parts = urlsplit(url)
    assert parts.scheme == "https" and parts.netloc == HOST
    response = client.get(f"{parts.path}?{parts.query}", headers=EN)
    return response, response.get_data(as_text=True)


def assert_confirmed(page: str, seq: int, prefix: str) -> None:
    assert 'data-label-check="ok"' in page
    assert f"matches the ledger entry that registered what this page shows (entry #{seq})" in page
    assert f'data-hash-prefix="{prefix}"' in page and f'data-hash-seq="{seq}"' in page
    assert "Checked by the server: included in the signed log" in page
    assert "does not belong" not in page and "FAILED" not in page.split("verify-panel")[1]


def test_label_sheet_codes_open_their_lots(
    client: FlaskClient, conn: Connection, site: ModuleSite
) -> None:
    rows = list(
        conn.execute(
            select(batches.c.lot, batches.c.registered_seq, batches.c.product_zh)
            .where(batches.c.lot.in_(["DY-MY19-003-G1", "DY-MY19-003-G2"]))
            .order_by(batches.c.lot)
        )
    )
    first = conn.execute(
        select(batches.c.lot, batches.c.registered_seq, batches.c.product_zh)
        .where(batches.c.status == "active")
        .order_by(batches.c.registered_seq)
    ).first()
    assert first is not None and len(rows) == 2
    refs = [str(first.registered_seq), "DY-MY19-003-G1", "DY-MY19-003-G2"]
    found = labels.labels_for(conn, HOST, refs)
    assert [f.lot for f in found] == [first.lot, "DY-MY19-003-G1", "DY-MY19-003-G2"]
    pdf = labels.render_labels(found, layout_name="2x5")
    scanned = decode_cells(pdf_pages(pdf)[0], labels.LAYOUTS["2x5"])
    assert scanned == [f.url for f in found]
    printed = pdf_text(pdf)
    for label, url in zip(found, scanned, strict=True):
        seq = urls.check_label(conn, url)
        assert seq == label.seq
        response, page = open_scanned(client, url)
        assert response.status_code == 200, url
        assert f'data-lot="{label.lot}"' in page and label.product in page
        assert_confirmed(page, seq, urls.parse_label_url(url).hash_prefix)
        # the manual code printed under the QR code leads to the same page
        assert label.manual_code in printed and label.manual_code in page
        lookup = client.get(f"/lookup?code={label.manual_code}")
        if lookup.status_code == 302:
            assert lookup.headers["Location"] == urlsplit(url).path
        else:  # a transformation made both gift-box lots: the lookup lists them
            assert urlsplit(url).path in lookup.get_data(as_text=True)
    recalled = [open_scanned(client, u)[1] for u in scanned[1:]]
    assert all("data-recall=" in page for page in recalled)


def test_a_label_printed_for_another_entry_is_flagged(
    client: FlaskClient, conn: Connection
) -> None:
    found = labels.labels_for(conn, HOST, ["DY-MY19-003-G1"])
    other = urls.entry_leaf_hash(conn, found[0].seq - 1)  # e.g. a rebuilt ledger's entry
    good = urls.parse_label_url(found[0].url).hash_prefix
    assert urls.hash_prefix(other) != good
    url = found[0].url.replace(f"h={good}", f"h={urls.hash_prefix(other)}")
    image = Image.open(io.BytesIO(codes.png_bytes(codes.make_code(url))))
    [scanned] = decode_image(image)
    response, page = open_scanned(client, scanned)
    assert response.status_code == 200
    assert 'data-label-check="mismatch"' in page
    assert "Warning: this label does not belong to this ledger entry" in page
    assert "The server’s own check FAILED" in page


def test_notice_poster_code_opens_the_project_board(client: FlaskClient, conn: Connection) -> None:
    data = notice.notice_data(conn, ROAD, HOST)
    pdf = notice.render_notice(data, size="A4")
    scanned = [u for page in pdf_pages(pdf) for u in decode_image(page)]
    assert scanned == [data["url"]]
    seq = urls.check_label(conn, scanned[0])
    assert seq == data["project"]["registered_seq"]
    response, page = open_scanned(client, scanned[0])
    assert response.status_code == 200
    assert f'data-project="{ROAD}"' in page and data["project"]["name"]["zh"] in page
    assert notice.yuan(data["project"]["budget_fen"]).replace(" 元", "") in page
    assert_confirmed(page, seq, urls.parse_label_url(scanned[0]).hash_prefix)
    assert manual.encode(seq) in page


def test_disbursement_notice_code_opens_the_entry_and_its_notice(
    client: FlaskClient, conn: Connection
) -> None:
    seq, amount = conn.execute(
        text(
            "SELECT disbursed_seq, amount_fen FROM fund_disbursements "
            "WHERE recipient_type = 'contractor' ORDER BY disbursed_seq LIMIT 1"
        )
    ).one()
    url = urls.entry_url(HOST, seq, urls.entry_leaf_hash(conn, seq))
    image = Image.open(io.BytesIO(codes.png_bytes(codes.make_code(url, level="Q"), size_mm=40)))
    [scanned] = decode_image(image)
    assert scanned == url and urls.check_label(conn, scanned) == seq
    prefix = urls.parse_label_url(scanned).hash_prefix
    # what qr/urls.py prints today: the entry's technical page, checked by the server
    response, page = open_scanned(client, scanned)
    assert response.status_code == 200
    assert f"#{seq}" in page and f'data-hash-prefix="{prefix}"' in page
    assert "Checked by the server" in page
    # the same code on the human notice
    parts = urlsplit(scanned)
    response = client.get(f"/n/{seq}?{parts.query}", headers=EN)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Disbursement notice" in page and f'data-amount-fen="{amount}"' in page
    assert 'data-label-check="ok"' in page and f'data-hash-seq="{seq}"' in page
    assert "Checked by the server: included in the signed log" in page
