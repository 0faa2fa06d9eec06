"""QR labels and posters, read back with a real decoder (zbar) and checked against the ledger."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium  # type: ignore[import-untyped]
import pytest
from PIL import Image, ImageDraw, ImageFilter
from pyzbar import pyzbar  # type: ignore[import-untyped]
from sqlalchemy import Connection, select

import qr.cli  # noqa: F401  (attaches the commands before tests.test_cli imports main)
from ledger import demo
from ledger.domain.batches import batches
from ledger.domain.projects import projects
from ledger.errors import InvalidInput, NotFound, VerificationError
from ledger.instance import Instance
from qr import codes, labels, manual, notice, urls
from tests.helpers import check_ledger
from tests.test_cli import Cli
from tests.test_demo import new_instance

HOST = "trace.example.cn"
HASH = bytes(range(32))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder whose ``instance`` holds the small demo (shared, read-only)."""
    path = tmp_path_factory.mktemp("qr")
    instance = new_instance(path)
    demo.load_demo(instance, households=40)
    instance.engine.dispose()
    yield path


@pytest.fixture(scope="module")
def instance(folder: Path) -> Iterator[Instance]:
    made = new_instance(folder)  # initialise is idempotent on an existing instance
    yield made
    made.engine.dispose()


@pytest.fixture
def conn(instance: Instance) -> Iterator[Connection]:
    with instance.engine.connect() as connection:
        yield connection


def decode_image(image: Image.Image) -> list[str]:
    return [d.data.decode("utf-8") for d in pyzbar.decode(image) if d.type == "QRCODE"]


def pdf_pages(pdf: bytes, dpi: int = 300) -> list[Image.Image]:
    document = pdfium.PdfDocument(pdf)
    try:
        return [page.render(scale=dpi / 72).to_pil().convert("L") for page in document]
    finally:
        document.close()


def pdf_text(pdf: bytes) -> str:
    document = pdfium.PdfDocument(pdf)
    try:
        return "".join(page.get_textpage().get_text_range() for page in document)
    finally:
        document.close()


def decode_cells(page: Image.Image, layout: labels.Layout, dpi: int = 300) -> list[str]:
    """Each label of a rendered sheet decoded on its own, as a phone scans one label."""
    px = dpi / 25.4
    left = (210 - layout.columns * layout.width_mm) / 2
    top = (297 - layout.rows * layout.height_mm) / 2
    found = []
    for row in range(layout.rows):
        for column in range(layout.columns):
            x, y = left + column * layout.width_mm, top + row * layout.height_mm
            right, bottom = x + layout.width_mm, y + layout.height_mm
            found += decode_image(page.crop((x * px, y * px, right * px, bottom * px)))
    return found


def first_batches(conn: Connection, n: int) -> list[Any]:
    return list(
        conn.execute(
            select(batches.c.gtin, batches.c.lot, batches.c.registered_seq)
            .order_by(batches.c.registered_seq)
            .limit(n)
        ).all()
    )


# --- URLs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gtin", "expected"),
    [
        ("96385074", "00000096385074"),
        ("614141000036", "00614141000036"),
        ("6901234567892", "06901234567892"),
        ("06901234567892", "06901234567892"),
    ],
)
def test_batch_url_pads_gtins(gtin: str, expected: str) -> None:
    url = urls.batch_url(HOST, gtin, "LOT-1", HASH)
    assert url == f"https://{HOST}/01/{expected}/10/LOT-1?h=00010203"
    label = urls.parse_label_url(url)
    assert (label.kind, label.gtin, label.lot, label.hash_prefix) == (
        "batch",
        expected,
        "LOT-1",
        "00010203",
    )


def test_lot_is_percent_encoded_and_round_trips() -> None:
    url = urls.batch_url(HOST, None, "A/B%1", HASH)
    assert url == f"https://{HOST}/b/A%2FB%251?h=00010203"
    assert urls.parse_label_url(url.replace(HOST, "other.example:8443")).lot == "A/B%1"


@pytest.mark.parametrize(
    ("gtin", "lot", "message"),
    [
        ("6901234567891", "L1", "check digit should be 2"),
        ("123", "L1", "8, 12, 13 or 14 digits"),
        ("6901234567892", "批号1", "not in the GS1 AI 10 character set"),
        ("6901234567892", "A B", "spaces are not allowed"),
        ("6901234567892", "X" * 21, "1 to 20 characters"),
        ("6901234567892", "Ａ1", "full-width"),
    ],
)
def test_bad_gtins_and_lots_are_refused(gtin: str, lot: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        urls.batch_url(HOST, gtin, lot, HASH)


@pytest.mark.parametrize(
    "bad",
    [
        f"https://{HOST}/01/06901234567892/10/L1",
        f"https://{HOST}/01/06901234567892/10/L1?h=0001020",
        f"https://{HOST}/01/06901234567892/10/L1?h=00010203&h=00010203",
        f"https://{HOST}/01/06901234567892/10/L1?h=0001020G",
        f"https://{HOST}/x/L1?h=00010203",
        f"https://{HOST}/e/12a?h=00010203",
        f"https://{HOST}/p/a%2Fb?h=00010203",
        "http://[::1/01?h=00010203",
    ],
)
def test_malformed_label_urls_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInput):
        urls.parse_label_url(bad)


def test_hosts_are_checked() -> None:
    assert urls.host_from_origin("trace.example.cn/log") == "trace.example.cn"
    with pytest.raises(InvalidInput, match="DNS name"):
        urls.batch_url("bad host", None, "L1", HASH)


def test_check_label_resolves_batches_projects_and_entries(conn: Connection) -> None:
    for gtin, lot, seq in first_batches(conn, 3):
        leaf = urls.entry_leaf_hash(conn, seq)
        url = urls.batch_url(HOST, gtin or None, lot, leaf)
        assert urls.check_label(conn, url) == seq
        assert urls.check_label(conn, url.replace(HOST, "mirror.example.org")) == seq
        tampered = url[:-1] + ("0" if url[-1] != "0" else "1")
        with pytest.raises(VerificationError, match=f"names entry {seq}"):
            urls.check_label(conn, tampered)
    project_id, project_seq = conn.execute(
        select(projects.c.id, projects.c.registered_seq).order_by(projects.c.id)
    ).first() or ("", 0)
    purl = urls.project_url(HOST, project_id, urls.entry_leaf_hash(conn, project_seq))
    assert urls.check_label(conn, purl) == project_seq
    eurl = urls.entry_url(HOST, 5, urls.entry_leaf_hash(conn, 5))
    assert urls.check_label(conn, eurl) == 5
    with pytest.raises(VerificationError):
        urls.check_label(conn, urls.entry_url(HOST, 6, urls.entry_leaf_hash(conn, 5)))
    with pytest.raises(NotFound):
        urls.check_label(conn, urls.batch_url(HOST, None, "NO-SUCH-LOT", HASH))
    with pytest.raises(NotFound):
        urls.check_label(conn, urls.project_url(HOST, "NO-SUCH", HASH))
    with pytest.raises(NotFound):
        urls.check_label(conn, urls.entry_url(HOST, 10**9, HASH))


# --- codes -------------------------------------------------------------------------------

URL = f"https://{HOST}/01/09520001000010/10/NH-CSR19-B01?h=4ceadf02"


def test_png_decodes_as_made_and_modules_are_big_enough() -> None:
    for level in ("M", "Q", "H"):
        code = codes.make_code(URL, level=level)
        assert code.module_mm(codes.DEFAULT_SIZE_MM) >= codes.MIN_MODULE_MM
        image = Image.open(io.BytesIO(codes.png_bytes(code)))
        assert decode_image(image) == [URL]
        assert image.info["dpi"][0] == pytest.approx(300, abs=0.01)
        quiet = image.crop((0, 0, image.width, image.width * 4 // code.width))
        assert quiet.getextrema() == (255, 255)  # the 4-module quiet zone is white


def test_svg_is_sized_in_mm_and_matches_the_matrix() -> None:
    code = codes.make_code(URL)
    svg = codes.svg_bytes(code, size_mm=25).decode()
    assert 'width="25.000mm"' in svg
    assert f'viewBox="0 0 {code.width} {code.width}"' in svg
    assert svg.count("h") - svg.count("http") >= len(codes.runs(code))


def test_data_too_long_for_the_size_is_refused() -> None:
    with pytest.raises(InvalidInput, match="allows at most version 6"):
        codes.make_code("x" * 200, size_mm=20)
    with pytest.raises(InvalidInput, match="more than version 40"):
        codes.make_code("x" * 3000, size_mm=500)
    with pytest.raises(InvalidInput, match="cannot hold even a version 1"):
        codes.make_code("x", size_mm=10)
    with pytest.raises(InvalidInput, match="one of M, Q, H"):
        codes.make_code(URL, level="L")
    assert codes.make_code("x" * 100, size_mm=20, level="M").version <= 6


def _minimum_size(code: codes.Code, dpi: int = 300) -> Image.Image:
    """The code as printed at 0.4 mm modules and scanned at ``dpi`` (resampled, grey)."""
    big = codes.to_image(code, module_px=10).convert("L")
    side = round(code.width * codes.MIN_MODULE_MM / 25.4 * dpi)
    return big.resize((side, side), Image.Resampling.BILINEAR)


@pytest.mark.parametrize("level", ["M", "Q"])
def test_degraded_copies_still_decode(level: str) -> None:
    code = codes.make_code(URL, level=level)
    small = _minimum_size(code)
    assert decode_image(small) == [URL]
    assert decode_image(small.filter(ImageFilter.GaussianBlur(1.2))) == [URL]
    rotated = small.rotate(23, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)
    assert decode_image(rotated) == [URL]
    # A square smudge over the middle of the symbol: 5 % of the modules for M, 9 % for Q
    # (each level recovers 15 % / 25 % of its codewords; a patch touches more codewords
    # than modules it covers, partly).
    image = codes.to_image(code, module_px=8).convert("L")
    modules = len(code.rows)
    side = round(modules * (0.05 if level == "M" else 0.09) ** 0.5)
    first = codes.QUIET_ZONE + (modules - side) // 2
    ImageDraw.Draw(image).rectangle(
        (first * 8, first * 8, (first + side) * 8 - 1, (first + side) * 8 - 1), fill=255
    )
    assert decode_image(image) == [URL]
    covered = ImageDraw.Draw(image)
    covered.rectangle(
        (first * 8, first * 8, (first + side * 3) * 8 - 1, (first + side) * 8 - 1), fill=255
    )
    covered.rectangle(
        (first * 8, (first + side) * 8, (first + side * 3) * 8 - 1, (first + 2 * side) * 8 - 1),
        fill=0,
    )
    assert decode_image(image) == []  # far beyond the level's capacity: unreadable, not wrong


# --- label sheets ------------------------------------------------------------------------


@pytest.mark.parametrize("layout", sorted(labels.LAYOUTS))
def test_label_sheets_decode_at_300_dpi_and_resolve(conn: Connection, layout: str) -> None:
    rows = first_batches(conn, 5)
    found = labels.labels_for(conn, HOST, [str(rows[0].registered_seq), rows[1].lot])
    assert [f.seq for f in found] == [rows[0].registered_seq, rows[1].registered_seq]
    sheet = found * (labels.LAYOUTS[layout].per_sheet // 2) + found[:1]  # spills onto page 2
    pdf = labels.render_labels(sheet, layout_name=layout)
    pages = pdf_pages(pdf)
    assert len(pages) == 2
    decoded = [u for page in pages for u in decode_cells(page, labels.LAYOUTS[layout])]
    assert decoded == [label.url for label in sheet]
    assert {urls.check_label(conn, u) for u in decoded} == {f.seq for f in found}
    text = pdf_text(pdf)
    assert found[0].lot in text and found[0].manual_code in text
    assert "赤松茸" in text or found[0].product[:2] in text


def test_fast_mask_sheets_decode_too(conn: Connection) -> None:
    found = labels.labels_for(conn, HOST, [str(r.registered_seq) for r in first_batches(conn, 6)])
    pdf = labels.render_labels(found, layout_name="4x10", mask=labels.FAST_MASK, level="Q")
    decoded = decode_cells(pdf_pages(pdf)[0], labels.LAYOUTS["4x10"])
    assert decoded == [f.url for f in found]


def test_labels_refuse_unknown_refs_and_layouts(conn: Connection) -> None:
    with pytest.raises(NotFound, match="neither the seq"):
        labels.labels_for(conn, HOST, ["NO-SUCH-LOT"])
    with pytest.raises(NotFound):
        labels.labels_for(conn, HOST, ["0"])  # the genesis entry registers no batch
    with pytest.raises(InvalidInput, match="3x8, 4x10, 2x5"):
        labels.render_labels([], layout_name="5x5")
    with pytest.raises(InvalidInput, match="no labels"):
        labels.render_labels([])


def test_manual_codes_round_trip_and_catch_typos() -> None:
    assert manual.encode(394) == "CA-R"
    for seq in (0, 1, 31, 32, 36, 37, 394, 10**6, 2**40):
        code = manual.encode(seq)
        assert manual.decode(code) == seq
        assert manual.decode(code.lower().replace("-", " ")) == seq
    assert manual.decode("io-*") == manual.decode("10-*") == 32
    code = manual.encode(123456)
    digits = code.split("-")[0]
    for i in range(len(digits)):
        for other in manual.DIGITS:
            if other != digits[i]:
                typo = digits[:i] + other + digits[i + 1 :] + "-" + code[-1]
                with pytest.raises(InvalidInput, match="check symbol"):
                    manual.decode(typo)
    swapped = digits[1] + digits[0] + digits[2:] + "-" + code[-1]
    assert swapped != code
    with pytest.raises(InvalidInput):
        manual.decode(swapped)
    for bad in ("", "U", "C*-R", "CA-#"):
        with pytest.raises(InvalidInput):
            manual.decode(bad)


# --- notice posters ----------------------------------------------------------------------


@pytest.mark.parametrize("size", ["A4", "A3"])
def test_notice_poster_shows_the_project_and_its_code_resolves(conn: Connection, size: str) -> None:
    project_id, registered = conn.execute(
        select(projects.c.id, projects.c.registered_seq).order_by(projects.c.id)
    ).first() or ("", 0)
    assert notice.project_id_for(conn, str(registered)) == project_id
    data = notice.notice_data(conn, project_id, HOST)
    pdf = notice.render_notice(data, size=size)
    [page] = pdf_pages(pdf, dpi=150 if size == "A3" else 200)
    [url] = decode_image(page)
    assert urls.check_label(conn, url) == registered
    text = pdf_text(pdf)
    assert "项目公示牌" in text
    assert notice.yuan(data["project"]["budget_fen"]) in text
    assert notice.yuan(data["totals"]["disbursed_fen"]) in text
    for payment in data["payments"]:
        assert f"seq {payment['disbursed_seq']}" in text
    with pytest.raises(InvalidInput, match="A4 or A3"):
        notice.render_notice(data, size="A5")
    with pytest.raises(NotFound):
        notice.project_id_for(conn, "NO-SUCH")


def test_yuan_is_exact() -> None:
    assert notice.yuan(180000000) == "1,800,000.00 元"
    assert notice.yuan(5) == "0.05 元"
    assert notice.yuan(-1234) == "-12.34 元"


# --- CLI ---------------------------------------------------------------------------------


def test_cli_labels_and_notice(folder: Path, conn: Connection, tmp_path: Path) -> None:
    cli = Cli(folder)
    rows = first_batches(conn, 2)
    out = tmp_path / "labels.pdf"
    result = cli(
        "labels", "--out", str(out), "--layout", "2x5", str(rows[0].registered_seq), rows[1].lot
    )
    assert result.exit_code == 0, result.output
    assert "2 labels" in result.stdout
    decoded = decode_cells(pdf_pages(out.read_bytes())[0], labels.LAYOUTS["2x5"])
    assert len(decoded) == 2
    assert all(u.startswith("https://test.suyuan.example/") for u in decoded)
    assert sorted(urls.check_label(conn, u) for u in decoded) == sorted(
        r.registered_seq for r in rows
    )

    result = cli("labels", "--out", str(out), "--host", "scan.example.cn", rows[0].lot)
    assert result.exit_code == 0, result.output
    assert decode_image(pdf_pages(out.read_bytes(), dpi=200)[0])[0].startswith(
        "https://scan.example.cn/"
    )

    refused = cli("labels", "--out", str(tmp_path / "no.pdf"), "NO-SUCH-LOT")
    assert refused.exit_code == 2 and "neither the seq" in refused.stderr
    assert not (tmp_path / "no.pdf").exists()
    bad_host = cli("labels", "--out", str(tmp_path / "no.pdf"), "--host", "a b", rows[0].lot)
    assert bad_host.exit_code == 2 and "DNS name" in bad_host.stderr

    poster = tmp_path / "notice.pdf"
    project_id = conn.execute(select(projects.c.id).order_by(projects.c.id)).scalar()
    result = cli("notice", "--out", str(poster), "--size", "A3", str(project_id))
    assert result.exit_code == 0, result.output
    assert "项目公示牌" in pdf_text(poster.read_bytes())
    assert cli("notice", "--out", str(poster), "NO-SUCH").exit_code == 2
    check_ledger(cli.engine)


def test_long_poster_lines_shrink_and_never_cover_the_code(conn: Connection) -> None:
    project_id = conn.execute(select(projects.c.id).order_by(projects.c.id)).scalar()
    data = notice.notice_data(conn, str(project_id), HOST)
    data["project"] = {**data["project"], "name": {"zh": "很长的项目名称" * 12}}
    pdf = notice.render_notice(data)
    [page] = pdf_pages(pdf, dpi=200)
    [url] = decode_image(page)
    assert url == data["url"]
    assert "…" in pdf_text(pdf)
