"""BENCHMARKS.md is written by three benchmarks; each owns a section between markers.

``<!-- NAME:start -->`` … ``<!-- NAME:end -->``: a benchmark replaces its own section and
leaves the others; the core report (``python -m bench``) rewrites the top of the file and
carries every marked section over.
"""

from __future__ import annotations

import re
from pathlib import Path

_SECTION = re.compile(r"<!-- ([a-z]+):start -->.*?<!-- \1:end -->", re.DOTALL)


def marked_sections(text: str) -> list[str]:
    """Every marked section of ``text``, markers included, in order."""
    return [m.group(0) for m in _SECTION.finditer(text)]


def replace_section(out: Path, name: str, lines: list[str]) -> None:
    """Put ``lines`` into ``out`` as the section ``name`` (replacing it, or appended)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = "\n".join([start, *lines, end])
    text = out.read_text(encoding="utf-8") if out.exists() else "# Benchmarks\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}")
