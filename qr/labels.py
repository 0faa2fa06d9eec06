"""Label sheets: A4 PDFs of N×M produce labels, each with its QR code and what a person reads.

Each label carries the code (its URL from :mod:`qr.urls`), the Chinese product name, the lot,
the production date and the manual lookup code (:mod:`qr.manual`).  Text is set in
ReportLab's built-in CID font ``STSong-Light`` (Adobe-GB1), so the PDF needs no font file
and every PDF reader shows the Chinese.

The code is drawn as vector rectangles (one per horizontal run of dark modules), so it prints
sharp at any resolution.  Layouts match common pre-cut A4 label stock (:data:`LAYOUTS`); the
grid is centred on the page.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from reportlab import rl_config
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen.canvas import Canvas
from sqlalchemy import Connection, select

from ledger.domain.batch_queries import batch_by_seq, find_batch
from ledger.domain.batches import batches
from ledger.errors import InvalidInput, NotFound
from qr import manual
from qr.codes import QUIET_ZONE, Code, check_level, make_code, pdf_path
from qr.urls import batch_url, entry_leaf_hash

FONT = "STSong-Light"
#: Runs of at most this many labels get the lowest-penalty mask; bigger ones :data:`FAST_MASK`.
BEST_MASK_UP_TO = 1000
FAST_MASK = 2
#: Runs shorter than this are made in-process even when workers are offered.
PARALLEL_ABOVE = 400


@dataclass(frozen=True)
class Layout:
    """A sheet of ``columns`` × ``rows`` labels, each ``width_mm`` × ``height_mm``, with a
    ``code_mm`` code (quiet zone included) and text of ``font_pt``."""

    name: str
    columns: int
    rows: int
    width_mm: float
    height_mm: float
    code_mm: float
    font_pt: float
    pad_mm: float

    @property
    def per_sheet(self) -> int:
        return self.columns * self.rows


LAYOUTS: dict[str, Layout] = {
    "3x8": Layout("3x8", 3, 8, 70.0, 37.0, 31.0, 7.5, 3.0),
    "4x10": Layout("4x10", 4, 10, 52.5, 29.7, 26.0, 6.0, 1.85),
    "2x5": Layout("2x5", 2, 5, 105.0, 57.0, 48.0, 11.0, 4.5),
}
DEFAULT_LAYOUT = "3x8"


@dataclass(frozen=True)
class LabelData:
    """What one label shows; ``seq`` is the registering entry the URL and manual code name."""

    url: str
    product: str
    lot: str
    date: str
    seq: int

    @property
    def manual_code(self) -> str:
        return manual.encode(self.seq)


def layout(name: str) -> Layout:
    """The layout called ``name``; raises InvalidInput naming the choices."""
    if name not in LAYOUTS:
        raise InvalidInput(f"label layout must be one of {', '.join(LAYOUTS)}, got {name!r}")
    return LAYOUTS[name]


def _batch_labels(
    conn: Connection, host: str, summaries: Iterable[dict[str, Any]]
) -> list[LabelData]:
    out = []
    for s in summaries:
        seq = int(s["registered_seq"])
        url = batch_url(host, s["gtin"], s["lot"], entry_leaf_hash(conn, seq))
        out.append(LabelData(url, s["product"]["zh"], s["lot"], s["produced"], seq))
    return out


def labels_for(conn: Connection, host: str, refs: Sequence[str]) -> list[LabelData]:
    """Labels for each ref, in order: a seq (digits) names the batches its entry registered
    (:func:`~ledger.domain.batch_queries.batch_by_seq`); anything else — or digits naming no
    registration — is a lot code, matching every batch with that lot.  Raises NotFound."""
    out: list[LabelData] = []
    for ref in refs:
        found: list[dict[str, Any]] = []
        if ref.isascii() and ref.isdigit() and len(ref) <= 18:
            found = batch_by_seq(conn, int(ref))
        if not found:
            gtins = conn.execute(
                select(batches.c.gtin).where(batches.c.lot == ref).order_by(batches.c.gtin)
            ).scalars()
            found = [s for g in gtins if (s := find_batch(conn, g or None, lot=ref)) is not None]
        if not found:
            raise NotFound(
                f"{ref!r} is neither the seq of a batch registration nor a registered lot code"
            )
        out += _batch_labels(conn, host, found)
    return out


def _wrap(text: str, width_pt: float, size: float, lines: int) -> list[str]:
    """``text`` broken into at most ``lines`` lines of ``width_pt``, the last one ellipsised."""
    out: list[str] = []
    current = ""
    for char in text:
        if pdfmetrics.stringWidth(current + char, FONT, size) > width_pt:
            out.append(current)
            current = char
            if len(out) == lines:
                last = out[-1]
                while last and pdfmetrics.stringWidth(last + "…", FONT, size) > width_pt:
                    last = last[:-1]
                out[-1] = last + "…"
                return out
        else:
            current += char
    out.append(current)
    return out


def _fit(text: str, width_pt: float, size: float) -> float:
    """The largest font size ≤ ``size`` (and ≥ half of it) at which ``text`` fits ``width_pt``."""
    floor = 0.5 * size
    while size - 0.25 >= floor and pdfmetrics.stringWidth(text, FONT, size) > width_pt:
        size -= 0.25
    return size


@dataclass(frozen=True)
class DrawnCode:
    """A code ready to draw: its width in modules (quiet zone included) and its PDF path."""

    width: int
    path: str


def drawn(code: Code) -> DrawnCode:
    return DrawnCode(code.width, pdf_path(code))


def draw_code(canvas: Canvas, code: DrawnCode, x_pt: float, y_pt: float, size_pt: float) -> None:
    """Draw ``code`` as filled rectangles in the square at (``x_pt``, ``y_pt``) (bottom-left)
    of side ``size_pt``, quiet zone included (left white).  The path is in module units, so
    one transform (``cm``) places and scales it."""
    module = size_pt / code.width
    top = y_pt + size_pt - QUIET_ZONE * module
    left = x_pt + QUIET_ZONE * module
    canvas.addLiteral(
        f"q {module:.5f} 0 0 {-module:.5f} {left:.3f} {top:.3f} cm 0 g\n{code.path}\nf Q"
    )


def _draw_label(
    canvas: Canvas, lay: Layout, label: LabelData, code: DrawnCode, x: float, y: float
) -> None:
    pad = lay.pad_mm * mm
    code_side = lay.code_mm * mm
    height = lay.height_mm * mm
    draw_code(canvas, code, x + pad, y + (height - code_side) / 2, code_side)
    text_x = x + pad + code_side + 0.5 * pad
    text_w = lay.width_mm * mm - (text_x - x) - pad
    size = lay.font_pt
    lines = _wrap(label.product, text_w, size * 1.15, 2)
    line_h = size * 1.35
    cursor = y + height - pad - size * 1.15
    canvas.setFont(FONT, size * 1.15)
    for line in lines:
        canvas.drawString(text_x, cursor, line)
        cursor -= line_h * 1.1
    for text in (f"批号 {label.lot}", f"日期 {label.date}", f"查询码 {label.manual_code}"):
        canvas.setFont(FONT, _fit(text, text_w, size))
        canvas.drawString(text_x, cursor, text)
        cursor -= line_h


def _make(args: tuple[str, str, float, int | None]) -> DrawnCode:
    url, level, size_mm, mask = args
    return drawn(make_code(url, level=level, size_mm=size_mm, mask=mask))


def _codes(
    labels: Sequence[LabelData], lay: Layout, level: str, mask: int | None, workers: int
) -> Iterator[DrawnCode]:
    """The labels' codes in order, made in ``workers`` processes when there are many."""
    jobs = [(label.url, level, lay.code_mm, mask) for label in labels]
    if workers <= 1 or len(jobs) < PARALLEL_ABOVE:
        yield from map(_make, jobs)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(_make, jobs, chunksize=200)


@contextmanager
def _binary_streams() -> Iterator[None]:
    """Flate-only page streams: ReportLab's default ASCII85 layer is pure Python without its
    C accelerator and costs more than drawing the labels."""
    saved = rl_config.useA85
    rl_config.useA85 = 0
    try:
        yield
    finally:
        rl_config.useA85 = saved


def render_labels(
    labels: Sequence[LabelData],
    *,
    layout_name: str = DEFAULT_LAYOUT,
    level: str = "M",
    mask: int | Literal["auto"] | None = "auto",
    workers: int = 1,
) -> bytes:
    """A PDF of ``labels`` on A4 sheets of ``layout_name``, codes at error correction ``level``.

    ``mask`` as in :func:`~qr.codes.make_code`; ``"auto"`` picks the lowest-penalty mask for
    runs of up to :data:`BEST_MASK_UP_TO` labels and the fixed :data:`FAST_MASK` above that
    (every mask is conformant; the penalty search costs four times the rest of a code).
    ``workers`` > 1 makes the codes of big runs in that many processes.  Raises InvalidInput
    for an unknown layout or level, no labels, or a URL too long for the layout's code size.
    """
    lay = layout(layout_name)
    if not labels:
        raise InvalidInput("no labels to print")
    if mask == "auto":
        mask = None if len(labels) <= BEST_MASK_UP_TO else FAST_MASK
    check_level(level)
    with _binary_streams():
        return _render(labels, lay, _codes(labels, lay, level, mask, workers))


def _render(labels: Sequence[LabelData], lay: Layout, codes: Iterator[DrawnCode]) -> bytes:
    pdfmetrics.registerFont(UnicodeCIDFont(FONT))
    page_w, page_h = A4
    grid_w, grid_h = lay.columns * lay.width_mm * mm, lay.rows * lay.height_mm * mm
    left, bottom = (page_w - grid_w) / 2, (page_h - grid_h) / 2
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=A4, pageCompression=1)
    canvas.setTitle("溯源标签 Suyuan labels")
    for index, label in enumerate(labels):
        slot = index % lay.per_sheet
        if index and slot == 0:
            canvas.showPage()
        column, row = slot % lay.columns, slot // lay.columns
        x = left + column * lay.width_mm * mm
        y = bottom + grid_h - (row + 1) * lay.height_mm * mm
        _draw_label(canvas, lay, label, next(codes), x, y)
    canvas.showPage()
    canvas.save()
    return out.getvalue()
