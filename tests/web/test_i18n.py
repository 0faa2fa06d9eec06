"""The Chinese catalogue is complete, compiled, and keeps every placeholder."""

from __future__ import annotations

import io
import re
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

WEB = Path(__file__).resolve().parents[2] / "web"
PO = WEB / "translations" / "zh" / "LC_MESSAGES" / "messages.po"
MO = PO.with_suffix(".mo")
_PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]|\{(\w+)\}")


def _catalog():  # type: ignore[no-untyped-def]
    with PO.open("rb") as f:
        return read_po(f, locale="zh")


def _extracted() -> set[str]:
    method_map = [("**.py", "python"), ("templates/**.html", "jinja2")]
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "_l": None, "lazy_gettext": None}
    found: set[str] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(WEB), method_map, keywords=keywords
    ):
        # a plural entry is keyed by its singular msgid in the catalogue
        found.add(message if isinstance(message, str) else message[0])
    return found


def test_every_site_string_has_a_chinese_translation() -> None:
    catalog = _catalog()
    missing = sorted(m for m in _extracted() if not (catalog.get(m) and catalog.get(m).string))
    fuzzy = sorted(str(m.id) for m in catalog if m.id and m.fuzzy)
    assert not missing, (
        f"{len(missing)} strings lack a translation (scripts/i18n.sh): {missing[:20]}"
    )
    assert not fuzzy, f"fuzzy translations to review: {fuzzy[:20]}"


def test_translations_keep_their_placeholders() -> None:
    for message in _catalog():
        if not message.id or not message.string:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        expected = set(_PLACEHOLDER.findall(ids[0]))
        for text in strings:
            assert set(_PLACEHOLDER.findall(text)) == expected, (ids[0], text)


def test_the_compiled_catalogue_is_up_to_date() -> None:
    buffer = io.BytesIO()
    write_mo(buffer, _catalog())
    assert MO.read_bytes() == buffer.getvalue(), "run scripts/i18n.sh compile"


def test_pages_come_out_in_chinese_by_default(client) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/login").get_data(as_text=True)
    assert "登录" in page
    english = client.get("/login?lang=en").get_data(as_text=True)
    assert "Sign in" in english and "登录" not in english.split("<main>")[1]
