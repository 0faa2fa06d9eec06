"""Rewrite the schema block of every kind section of docs/DOMAIN.md from the code.

    python scripts/regen_domain_schemas.py           # list the kinds whose block differs
    python scripts/regen_domain_schemas.py --write   # rewrite those blocks

The schema block is the first ```json block after a ``### `kind` `` heading;
tests/test_domain_doc.py fails until it is the code's schema.
"""

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ledger.domain  # noqa: F401
from ledger.rules import KINDS

DOC = Path(__file__).resolve().parents[1] / "docs" / "DOMAIN.md"
text = DOC.read_text(encoding="utf-8")
SECTION = re.compile(r"^### `([a-z][a-z0-9_.]*)`\s*$", re.MULTILINE)
HEADING = re.compile(r"^#{1,3} ", re.MULTILINE)
BLOCK = re.compile(r"```json\n(.*?)```", re.DOTALL)
out, pos, changed = [], 0, []
for m in SECTION.finditer(text):
    following = HEADING.search(text, m.end())
    end = following.start() if following else len(text)
    block = BLOCK.search(text, m.end(), end)
    kind = m.group(1)
    assert block, kind
    want = json.dumps(KINDS[kind].schema, indent=2, ensure_ascii=False) + "\n"
    if block.group(1) != want:
        changed.append(kind)
    out.append(text[pos : block.start(1)])
    out.append(want)
    pos = block.end(1)
out.append(text[pos:])
new = "".join(out)
if "--write" in sys.argv:
    DOC.write_text(new, encoding="utf-8")
print("changed:", changed)
