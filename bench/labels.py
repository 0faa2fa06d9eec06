"""Label sheets at print-run scale: 10,000 labels into one PDF (target ≤ 30 s).

    python -m bench.labels [--count N] [--layout 3x8] [--workers W] [--out FILE]

Labels are synthetic but shaped like real ones (GS1 Digital Link with a GTIN-14, a
12-character lot, the hash-prefix attribute, a Chinese product name, a manual code).
Prints the wall time of :func:`qr.labels.render_labels` with the default mask choice
(``auto``), the PDF's size and pages.  Nothing is asserted: benchmarks are not tests.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from pathlib import Path

from qr.labels import LAYOUTS, LabelData, layout, render_labels
from qr.urls import batch_url

GTIN = "09520001000010"


def labels(count: int) -> list[LabelData]:
    """``count`` distinct labels for lots NH-2020-000001 … of one GTIN."""
    out = []
    for i in range(count):
        lot = f"NH-2020-{i + 1:06d}"
        leaf = hashlib.sha256(lot.encode()).digest()
        url = batch_url("trace.example.cn", GTIN, lot, leaf)
        out.append(LabelData(url, "讷河赤松茸（鲜品）", lot, "2020-09-08", 400 + i))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--layout", default="3x8", choices=sorted(LAYOUTS))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, help="Keep the PDF here.")
    args = parser.parse_args()
    batch = labels(args.count)
    start = time.perf_counter()
    pdf = render_labels(batch, layout_name=args.layout, workers=args.workers)
    elapsed = time.perf_counter() - start
    if args.out:
        args.out.write_bytes(pdf)
    pages = -(-args.count // layout(args.layout).per_sheet)
    print(
        f"labels: {args.count} labels ({args.layout}, {pages} pages, {len(pdf) / 1e6:.1f} MB) "
        f"in {elapsed:.1f} s with {args.workers} worker(s), {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
