"""A site whose ledger is full of hostile text, and the checks the security tests share.

:func:`hostile_site` loads the demo data set with an attack payload appended to every
free-text field of every statement (names, organisations, products, places, notes,
reasons, references, labs, certificate numbers, contractors, evidence file names — the
strings the rules accept as text), then adds, through the portals' own forms where
a form exists: a lot whose lot code is itself markup, an event, a recall with an
evidence file whose name is markup, a payment draft, a key whose name and
organisation are markup, a revoked key with a hostile reason, an API token, notes
that try to close an inline ``<script>``, and one account per role whose display
name is markup.  :class:`Hostile` says where those things are, for the tests to visit.

:func:`injected` finds what a page would run if an author's text escaped: any
``on*`` attribute, a ``javascript:`` URL in a link or form, an inline script that
mentions ``alert(``, an ``<img src=x``/``<svg/onload`` tag, or ``{{7*7}}`` evaluated.
:func:`snapshot` is what must not change when a request is refused.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, text

from ledger import demo, schema
from ledger.blobs import default_store
from ledger.domain.households import households
from ledger.instance import Instance
from tests.helpers import new_signer
from tests.web.portal import add_user, csrf_token, signed_in
from tests.web.support import ModuleSite, make_site

#: Appended to every free-text field: markup, an attribute break-out and a template.
PAYLOAD = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>{{7*7}}zq"
#: For fields of at most 64 characters.
SHORT = '"><svg/onload=alert(3)>'
#: Text that tries to end an inline ``<script>`` block and start another.
CLOSER = "</script><script>alert(4)</script><!--"
#: Lot codes are GS1 character set 82, at most 20 characters: markup fits.
LOT_MARKUP = "<svg/onload=alert()>"
LOT_URL = "javascript:alert()"
GTIN = "06901234567892"
#: Evidence and key names that are markup (no spaces: a key name may hold none).
FILE_NAME = "<img src=x onerror=alert(5)>.html"
KEY_NAME = '"><script>alert(6)<!--'
#: What the SQL-injection tests write.
SQL = ["'; DROP TABLE entries; --", '" OR 1=1 --', "x\x00y"]

_FREE = {
    "contractor",
    "note",
    "org",
    "reason",
    "producer",
    "process",
    "read_point",
    "payer",
    "owner",
    "reference",
    "lab",
    "number",
    "province",
    "city",
    "county",
    "township",
    "village",
    "zh",
    "en",
    "cooperative",
    "text",
    "name",
}
ROLES = {
    "producer": "prod",
    "auditor": "aud",
    "finance_officer": "fin",
    "village_approver": "vill",
    "township_approver": "town",
    "admin": "adm",
}
CHINA = timezone(timedelta(hours=8))


def _hostile(value: Any, key: str | None = None) -> Any:
    if isinstance(value, dict):
        return {k: _hostile(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_hostile(v, key) for v in value]
    if isinstance(value, str) and key in _FREE:
        return f"{value} {SHORT if key == 'number' else PAYLOAD}"
    return value


def _load_hostile_demo(instance: Instance) -> None:
    """The demo, with :data:`PAYLOAD` after every free-text value (key names kept: the
    demo looks its keys up by name)."""
    add = demo._Loader.add

    def hostile_add(loader: Any, kind: str, body: Any, *signers: str) -> None:
        if kind == "key.registered":
            body = {**body, "org": _hostile(body["org"], "org")}
        else:
            body = _hostile(body)
        add(loader, kind, body, *signers)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(demo._Loader, "add", hostile_add)
        demo.load_demo(instance, households=40)


@dataclass
class Hostile:
    site: ModuleSite
    #: username → signed-in client, one per role in :data:`ROLES`.
    clients: dict[str, FlaskClient]
    orgs: dict[str, str]  # "millet", "garlic" → the demo co-ops' (hostile) organisations
    lots: list[tuple[str | None, str]] = field(default_factory=list)
    seqs: dict[str, int] = field(default_factory=dict)  # what → seq of a hostile entry
    key_ids: list[str] = field(default_factory=list)
    drafts: list[str] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)
    projects: list[str] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)

    @property
    def instance(self) -> Instance:
        return self.site.instance

    def client(self, username: str | None = None) -> FlaskClient:
        """A fresh client, signed in as ``username`` (None: anonymous), pages in English."""
        made = signed_in(self.site.app, username) if username else self.site.app.test_client()
        made.set_cookie("lang", "en")
        return made


def _form(client: FlaskClient, path: str, data: Mapping[str, Any], **kw: Any) -> Any:
    token = csrf_token(client, kw.pop("form_path", path))
    response = client.post(path, data={"csrf_token": token, **data}, **kw)
    assert response.status_code in (200, 302), (path, response.get_data(as_text=True)[:3000])
    return response


def _now_local() -> str:
    return (datetime.now(CHINA) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")


@contextmanager
def hostile_site(root: Path) -> Iterator[Hostile]:
    with make_site(root) as site:
        site.app.config["SUYUAN_SCAN_FLUSH_THREAD"] = False
        _load_hostile_demo(site.instance)
        log = site.instance.writer()
        orgs = {
            what: next(k.org for k in log.registered_keys() if k.org.startswith(coop))
            for what, coop in [("millet", demo.HY_MILLET_COOP), ("garlic", demo.DY_GARLIC_COOP)]
        }
        assert PAYLOAD in orgs["millet"]
        display = f"Li {PAYLOAD}"
        add_user(
            site.instance, site.admin, "prod", "producer", orgs["millet"], display_name=display
        )
        add_user(
            site.instance, site.admin, "prod2", "producer", orgs["garlic"], display_name=display
        )
        for role, name in ROLES.items():
            if role != "producer":
                add_user(
                    site.instance, site.admin, name, role, f"Office {PAYLOAD}", display_name=display
                )
        with site.instance.engine.connect() as conn:
            codes = list(
                conn.execute(select(households.c.code).order_by(households.c.code)).scalars()
            )
            projects = list(conn.execute(text("SELECT id FROM projects ORDER BY id")).scalars())
        hostile = Hostile(site, {}, orgs, codes=codes, projects=projects)
        _through_the_portals(hostile)
        hostile.clients = {name: hostile.client(name) for name in ROLES.values()}
        hostile.clients["prod2"] = hostile.client("prod2")
        yield hostile


def _through_the_portals(h: Hostile) -> None:
    site = h.site
    log = site.instance.writer()
    prod = h.client("prod")
    base = {
        "product_zh": f"小米 {PAYLOAD}",
        "product_en": f"Millet {PAYLOAD}",
        "province": "山西省",
        "city": "大同市",
        "county": "浑源县",
        "township": f"永安镇 {PAYLOAD}",
        "village": "双河村",
        "produced": datetime.now(CHINA).date().isoformat(),
        "quantity": "100",
        "unit": "kg",
        "households": f"{h.codes[0]} 600\n{h.codes[1]} 400",
    }
    for gtin, lot in [(GTIN, LOT_MARKUP), (None, LOT_URL), (None, "RECALL-ME")]:
        _form(prod, "/producer/batches/new", {**base, "gtin": gtin or "", "lot": lot})
        h.lots.append((gtin, lot))
        h.seqs[f"lot {lot}"] = log.size() - 1
    ref = f"{GTIN}|{LOT_MARKUP}"
    event = {
        "batch": ref,
        "step": "shipping:in_transit",
        "time": _now_local(),
        "read_point": f"仓库 {PAYLOAD}",
        "note": f"{PAYLOAD} {CLOSER}",
    }
    event_form = f"/producer/event?gtin={GTIN}&lot={LOT_MARKUP}"
    _form(prod, "/producer/event", event, form_path=event_form)
    h.seqs["event"] = log.size() - 1

    # A recall with a hostile reason and an HTML file named with markup, sent as text/html.
    recall = "/producer/recall?lot=RECALL-ME"
    evidence = b"<html><script>alert(7)</script></html>"
    first = _form(
        prod,
        recall,
        {
            "review": "1",
            "reason": f"{PAYLOAD} {CLOSER}",
            "evidence": [(io.BytesIO(evidence), FILE_NAME, "text/html")],
        },
        content_type="multipart/form-data",
    )
    hidden = hidden_fields(first.get_data(as_text=True))
    response = prod.post(recall, data={**hidden, "confirm": "1"})
    assert response.status_code == 302, response.get_data(as_text=True)[:3000]
    entry = log.entry(log.size() - 1)
    assert entry.kind == "batch.recalled", entry.kind
    h.seqs["recall"] = entry.seq
    h.digests.append(entry.body["evidence"][0]["sha256"])
    assert default_store(site.instance.settings.instance).has(h.digests[0])

    # Notes that try to close an inline script, and link-like text.
    for what, text_ in [
        ("note closer", f"{CLOSER} {PAYLOAD}"),
        ("note url", "javascript:alert(8)"),
    ]:
        h.seqs[what] = site.instance.sign_and_append(log, "note", {"text": text_}, [site.admin]).seq

    # A key whose name and organisation are markup (the admin form refuses such a name; an
    # organisation's own tools need not), revoked through the admin form with a hostile reason.
    adm = h.client("adm")
    outside = new_signer(KEY_NAME)
    key = {"name": KEY_NAME, "vkey": outside.verifier.vkey, "role": "producer"}
    key["org"] = f"Org {PAYLOAD}"
    h.seqs["key"] = site.instance.sign_and_append(log, "key.registered", key, [site.admin]).seq
    h.key_ids.append(outside.verifier.key_id)
    key_page = f"/admin/keys/{outside.verifier.key_id}"
    _form(adm, f"{key_page}/revoke", {"reason": f"{PAYLOAD} {CLOSER}"}, form_path=key_page)
    h.seqs["revocation"] = log.size() - 1
    _form(adm, "/admin/tokens", {"name": "erp-1"})

    # A payment draft with hostile text, waiting for approvers.
    fin = h.client("fin")
    alloc = "X-ALLOC-1"
    body = {
        "id": "X-SRC-1",
        "type": "donation",
        "name": {"zh": f"捐赠 {PAYLOAD}"},
        "amount_fen": 100_000_000,
        "year": 2020,
        "payer": f"Payer {PAYLOAD}",
    }
    finance = site.instance.author("fin")
    site.instance.sign_and_append(log, "fund.source", body, [finance])
    allocation = {
        "id": alloc,
        "source": "X-SRC-1",
        "amount_fen": 10_000_000,
        "purpose": "industry_subsidy",
        "programme": "X-PROG-1",
        "name": {"zh": f"奖补 {PAYLOAD}", "en": f"Subsidy {PAYLOAD}"},
    }
    site.instance.sign_and_append(log, "fund.allocated", allocation, [finance])
    h.seqs["allocation"] = log.size() - 1
    draft = _form(
        fin,
        "/officials/drafts/new",
        {
            "allocation": alloc,
            "recipient_type": "cooperative",
            "org_name": f"Co-op {PAYLOAD}",
            "credit_code": "91350100M000100Y43",
            "amount": "300",
            "period": "2019",
            "reference": f"ref {PAYLOAD}",
            "note": f"{PAYLOAD} {CLOSER}",
        },
        content_type="multipart/form-data",
    )
    found = re.search(r"/officials/drafts/([A-Za-z0-9_-]+)$", draft.headers["Location"])
    assert found, draft.headers["Location"]
    h.drafts.append(found.group(1))


def hidden_fields(page: str) -> dict[str, str]:
    """The hidden inputs of a page, as a browser would post them back."""
    fields: dict[str, str] = {}
    for tag in re.findall(r"<input[^>]*>", page):
        if 'type="hidden"' not in tag:
            continue
        name = re.search(r'name="([^"]*)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if name:
            fields[html.unescape(name.group(1))] = html.unescape(value.group(1)) if value else ""
    return fields


# --- checks -------------------------------------------------------------------------------------

_URL_ATTRS = {"href", "src", "action", "formaction", "data", "poster", "xlink:href"}
_RAW = ["<script>alert", "<img src=x", "<svg/onload", "49zq", "<!--\u0020"]


class _Finder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._script: list[str] | None = None
        self._script_type = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}={value!r}>: an event handler attribute")
            if name in _URL_ATTRS and value is not None:
                squeezed = re.sub(r"[\x00-\x20]", "", value).lower()
                if squeezed.startswith(("javascript:", "vbscript:", "data:text/html")):
                    self.found.append(f"<{tag} {name}={value!r}>: a script URL")
        if tag in ("svg", "img") and any(v == "x" or v is None for n, v in attrs if n == "src"):
            self.found.append(f"<{tag} {attrs!r}>: an injected tag")
        if tag == "script":
            self._script = []
            self._script_type = dict(attrs).get("type") or ""

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._script.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._script is not None:
            body = "".join(self._script)
            if "alert(" in body:
                self.found.append(f"inline script runs {body[:200]!r}")
            if "json" in self._script_type:
                import json

                try:
                    json.loads(body)
                except ValueError:
                    self.found.append(f"inline JSON block broken: {body[:200]!r}")
            self._script = None


def injected(page: str) -> list[str]:
    """What in ``page`` would run or render as markup if it came from an author's text."""
    finder = _Finder()
    finder.feed(page)
    finder.close()
    found = list(finder.found)
    found += [f"raw {raw!r} in the page" for raw in _RAW[:4] if raw in page]
    if finder._script is not None:
        found.append("a <script> block never closed")
    return found


def snapshot(instance: Instance) -> dict[str, Any]:
    """The ledger (size, checkpoint, every entry), users, drafts, tokens and blob files."""
    engine = instance.engine
    with engine.connect() as conn:
        tables = {
            name: [tuple(r) for r in conn.execute(select(table).order_by(*table.primary_key))]
            for name, table in [
                ("entries", schema.entries),
                ("checkpoints", schema.checkpoints),
                ("users", schema.users),
                ("drafts", schema.drafts),
                ("api_tokens", schema.api_tokens),
            ]
        }
    blobs = sorted(
        str(p.relative_to(instance.settings.instance))
        for p in (instance.settings.instance / "blobs").rglob("*")
        if p.is_file()
    )
    return {**tables, "blobs": blobs}
