"""Public-notice posters (公示牌) for projects: one A4 or A3 page to print and post in the village.

The poster shows the project's name, place, owner and contractor, budget and contract sum,
its milestones (planned and reached, with the entry seq behind each), the funds allocated to
it and every payment made from them (from :func:`ledger.domain.fund_queries.trail` and
:func:`~ledger.domain.fund_queries.disbursements`), and a QR code to the project's notice
board ``/p/<id>?h=…`` (:mod:`qr.urls`).  Every number names the ledger entry it comes from,
so a villager can check it by scanning or by typing the seq.
"""

from __future__ import annotations

import io
from typing import Any

from reportlab.lib.pagesizes import A3, A4
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen.canvas import Canvas
from sqlalchemy import Connection, select

from ledger.domain.common import yuan_text
from ledger.domain.fund_queries import disbursements, trail
from ledger.domain.projects import project_view, projects
from ledger.errors import InvalidInput, NotFound
from qr.codes import make_code
from qr.labels import FONT, draw_code, drawn
from qr.urls import entry_leaf_hash, project_url

SIZES = {"A4": A4, "A3": A3}
#: At most this many payments are listed; the rest are counted and left to the scan page.
MAX_PAYMENTS = 24
STAGE_ZH = {
    "approved": "立项批复",
    "tendered": "招标",
    "contracted": "签订合同",
    "started": "开工",
    "progress": "进度",
    "completed": "完工",
    "accepted": "验收",
    "notice": "公示",
}


def yuan(fen: int) -> str:
    """``123456`` fen → ``"1,234.56 元"`` (exact: integer arithmetic)."""
    return f"{yuan_text(fen)} 元"


def project_id_for(conn: Connection, ref: str) -> str:
    """A project id from ``ref``: the id itself, or (digits) the seq of its registration."""
    if conn.execute(select(projects.c.id).where(projects.c.id == ref)).first() is not None:
        return ref
    if ref.isascii() and ref.isdigit() and len(ref) <= 18:
        found = conn.execute(
            select(projects.c.id).where(projects.c.registered_seq == int(ref))
        ).scalar()
        if found is not None:
            return str(found)
    raise NotFound(f"{ref!r} is neither a project id nor the seq of a project registration")


def notice_data(conn: Connection, project_id: str, host: str) -> dict[str, Any]:
    """What the poster shows: ``{"project": project_view(…), "url", "totals", "allocations",
    "payments": [DISBURSEMENT] (first :data:`MAX_PAYMENTS`), "more_payments": int}``."""
    view = project_view(conn, project_id)
    funds = trail(conn, project=project_id)
    payments: list[dict[str, Any]] = []
    total = 0
    for allocation in funds["allocations"]:
        page = disbursements(conn, allocation=allocation["id"], status="active", limit=MAX_PAYMENTS)
        payments += page["items"]
        total += allocation["disbursements"]
    url = project_url(host, project_id, entry_leaf_hash(conn, view["registered_seq"]))
    return {
        "project": view,
        "url": url,
        "totals": funds["totals"],
        "allocations": funds["allocations"],
        "payments": payments[:MAX_PAYMENTS],
        "more_payments": max(0, total - MAX_PAYMENTS),
    }


def _recipient(payment: dict[str, Any]) -> str:
    recipient = payment["recipient"]
    for key in ("contractor", "cooperative", "household"):
        if key in recipient:
            return str(recipient[key])
    return "—"


class _Writer:
    """Lines of text down a page, in the CID font."""

    def __init__(self, canvas: Canvas, left: float, top: float, scale: float, width: float) -> None:
        self.canvas, self.left, self.y, self.scale = canvas, left, top, scale
        self.width = width  # MUST be narrowed while lines run beside the code

    def line(self, text: str, size: float = 11, indent: float = 0, gap: float = 1.45) -> None:
        """One line; shrunk (to 60 % at most) and then cut with … to fit the width."""
        size *= self.scale
        room = self.width - indent * self.scale
        floor = 0.6 * size
        while size > floor and pdfmetrics.stringWidth(text, FONT, size) > room:
            size -= 0.25
        while len(text) > 1 and pdfmetrics.stringWidth(text, FONT, size) > room:
            text = text[:-2] + "…"
        self.canvas.setFont(FONT, size)
        self.canvas.drawString(self.left + indent * self.scale, self.y - size, text)
        self.y -= size * gap


def render_notice(data: dict[str, Any], *, size: str = "A4", level: str = "Q") -> bytes:
    """The poster for :func:`notice_data`'s ``data`` as a one-page PDF of ``size`` (A4 or A3),
    its code at error correction ``level`` (Q by default: posters hang outdoors)."""
    if size not in SIZES:
        raise InvalidInput(f"poster size must be A4 or A3, got {size!r}")
    pdfmetrics.registerFont(UnicodeCIDFont(FONT))
    page_w, page_h = SIZES[size]
    scale = page_w / A4[0]
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=(page_w, page_h))
    canvas.setTitle("项目公示 Project notice")
    project = data["project"]
    margin = 15 * mm * scale
    code_mm = 50 * scale
    code = make_code(data["url"], level=level, size_mm=code_mm)
    draw_code(
        canvas,
        drawn(code),
        page_w - margin - code_mm * mm,
        page_h - margin - code_mm * mm,
        code_mm * mm,
    )
    full_width = page_w - 2 * margin
    w = _Writer(canvas, margin, page_h - margin, scale, full_width - code_mm * mm - 5 * mm)
    w.line("项目公示牌", 26, gap=1.6)
    w.line(project["name"]["zh"], 15)
    if "en" in project["name"]:
        w.line(project["name"]["en"], 10)
    place = project["location"]
    w.line(
        "地点："
        + "".join(
            str(place.get(k) or "") for k in ("province", "city", "county", "township", "village")
        ),
        10,
    )
    w.line(f"项目编号：{project['id']}   登记条目 seq {project['registered_seq']}", 10)
    w.line(f"建设单位：{project['owner']}", 10)
    if project["contractor"]:
        w.line(f"施工单位：{project['contractor']}", 10)
    w.line(f"预算：{yuan(project['budget_fen'])}", 12)
    if project["contract_fen"] is not None:
        w.line(f"合同金额：{yuan(project['contract_fen'])}", 12)
    w.y = min(w.y, page_h - margin - code_mm * mm - 8 * mm * scale)
    w.width = full_width
    w.line("进度 Milestones", 14, gap=1.6)
    for step in project["plan"]:
        reached = (
            f"{step['reached_date']}（seq {step['reached_seq']}）"
            if step["reached_seq"]
            else "未完成"
        )
        w.line(
            f"{STAGE_ZH.get(step['stage'], step['stage'])}  计划 {step['due']}  实际 {reached}",
            10,
            indent=8,
        )
    totals = data["totals"]
    w.line("资金 Funds", 14, gap=1.6)
    w.line(
        f"已安排 {yuan(totals['allocated_fen'])}   已拨付 {yuan(totals['disbursed_fen'])}   "
        f"结余 {yuan(totals['remaining_fen'])}",
        11,
        indent=8,
    )
    for allocation in data["allocations"]:
        w.line(
            f"{allocation['name']}：{yuan(allocation['amount_fen'])}，已拨付 "
            f"{yuan(allocation['disbursed_fen'])}（seq {allocation['allocated_seq']}）",
            10,
            indent=8,
        )
    w.line("拨付明细 Payments", 14, gap=1.6)
    for payment in data["payments"]:
        w.line(
            f"{payment['period']}  {_recipient(payment)}  {yuan(payment['amount_fen'])}  "
            f"seq {payment['disbursed_seq']}",
            10,
            indent=8,
        )
    if data["more_payments"]:
        w.line(f"另有 {data['more_payments']} 笔，请扫码查看", 10, indent=8)
    w.line(f"扫码核验：{data['url']}", 9, gap=2.0)
    canvas.showPage()
    canvas.save()
    return out.getvalue()
