"""QR symbols sized for print: the module matrix, PNG and SVG renderings.

A :class:`Code` is the symbol for one string at one error-correction level, made with the
``qrcode`` library (ISO/IEC 18004, byte mode).  Printing rules this module enforces:

* error correction **M** (15 % of codewords recoverable) by default; **Q** (25 %) and **H**
  (30 %) on request — for labels that get wet, scuffed or partly covered;
* a **4-module quiet zone** on every side (ISO/IEC 18004 §7.3.8); ``size_mm`` is the printed
  side *including* the quiet zone;
* a module MUST be at least :data:`MIN_MODULE_MM` (0.4 mm) when printed: phone cameras and
  office printers lose smaller modules.  Data that needs a bigger symbol than fits the printed
  size at the chosen level is refused with :class:`~ledger.errors.InvalidInput`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Final

import qrcode
from PIL import Image
from qrcode.exceptions import DataOverflowError

from ledger.errors import InvalidInput

QUIET_ZONE: Final = 4
MIN_MODULE_MM: Final = 0.4
#: Printed side (quiet zone included) of the code on the default label layout.
DEFAULT_SIZE_MM: Final = 30.0
LEVELS: Final = {
    "M": qrcode.constants.ERROR_CORRECT_M,
    "Q": qrcode.constants.ERROR_CORRECT_Q,
    "H": qrcode.constants.ERROR_CORRECT_H,
}
MAX_VERSION: Final = 40


@dataclass(frozen=True)
class Code:
    """One QR symbol: ``rows`` holds the dark (True) modules, quiet zone NOT included."""

    data: str
    level: str
    version: int
    rows: tuple[tuple[bool, ...], ...]

    @property
    def width(self) -> int:
        """Modules across, quiet zone included."""
        return len(self.rows) + 2 * QUIET_ZONE

    def module_mm(self, size_mm: float) -> float:
        """The printed side of one module when the whole symbol is ``size_mm`` wide."""
        return size_mm / self.width


def max_version(size_mm: float) -> int:
    """The largest QR version whose modules stay ≥ :data:`MIN_MODULE_MM` at ``size_mm``."""
    modules = int(size_mm / MIN_MODULE_MM + 1e-9)
    return min(MAX_VERSION, (modules - 2 * QUIET_ZONE - 17) // 4)


def check_level(level: str) -> int:
    """The qrcode constant of level M, Q or H; raises InvalidInput for anything else."""
    if level not in LEVELS:
        raise InvalidInput(
            f"error correction level must be one of {', '.join(LEVELS)}, got {level!r}"
        )
    return LEVELS[level]


def make_code(
    data: str, *, level: str = "M", size_mm: float = DEFAULT_SIZE_MM, mask: int | None = None
) -> Code:
    """The symbol for ``data`` at ``level``, checked to print at ``size_mm`` with modules of at
    least 0.4 mm.  ``mask`` None picks the mask with the lowest ISO/IEC 18004 penalty (8 trial
    renderings); 0–7 fixes it, which is about four times faster and equally valid.

    Raises InvalidInput for an unknown level, empty data, or data too long for the size.
    """
    ec = check_level(level)
    if not isinstance(data, str) or not data:
        raise InvalidInput(f"QR data must be a non-empty string, got {data!r}")
    if mask is not None and mask not in range(8):
        raise InvalidInput(f"a QR mask pattern is 0–7, got {mask!r}")
    if not isinstance(size_mm, int | float) or size_mm <= 0:
        raise InvalidInput(f"size_mm must be a positive number, got {size_mm!r}")
    limit = max_version(size_mm)
    if limit < 1:
        raise InvalidInput(
            f"a {size_mm} mm code cannot hold even a version 1 symbol (21 modules plus a "
            f"4-module quiet zone) with modules of at least {MIN_MODULE_MM} mm"
        )
    qr = qrcode.QRCode(error_correction=ec, border=0, mask_pattern=mask)
    qr.add_data(data.encode("utf-8"))
    try:
        version = qr.best_fit()
    except (DataOverflowError, ValueError):  # qrcode raises either beyond version 40
        version = MAX_VERSION + 1
    if version > limit:
        needed = "more than version 40" if version > MAX_VERSION else f"version {version}"
        raise InvalidInput(
            f"{len(data.encode('utf-8'))} bytes of data at error correction {level} need "
            f"{needed}; a {size_mm} mm code allows at most version {limit} (modules of at "
            f"least {MIN_MODULE_MM} mm): shorten the data, lower the level or print larger"
        )
    qr.make(fit=False)
    rows = tuple(tuple(bool(m) for m in row) for row in qr.get_matrix())
    return Code(data=data, level=level, version=version, rows=rows)


def runs(code: Code) -> list[tuple[int, int, int]]:
    """Horizontal runs of dark modules as ``(row, first column, length)``, quiet zone excluded:
    drawing one rectangle per run is much faster than one per module."""
    out: list[tuple[int, int, int]] = []
    for y, row in enumerate(code.rows):
        x = 0
        n = len(row)
        while x < n:
            if row[x]:
                start = x
                while x < n and row[x]:
                    x += 1
                out.append((y, start, x - start))
            else:
                x += 1
    return out


def pdf_path(code: Code) -> str:
    """PDF path operators (``x y w 1 re``, one per run) for the dark modules, in module units
    from the top-left corner of the symbol (quiet zone excluded) with y growing downwards; the
    caller sets the transform and fills."""
    return "\n".join(f"{x} {y} {n} 1 re" for y, x, n in runs(code))


def to_image(code: Code, *, module_px: int) -> Image.Image:
    """A 1-bit Pillow image, ``module_px`` pixels per module, quiet zone included."""
    if module_px < 1:
        raise InvalidInput(f"module_px must be at least 1, got {module_px}")
    side = len(code.rows)
    small = Image.new("1", (code.width, code.width), 1)
    pixels = small.load()
    assert pixels is not None
    for y in range(side):
        for x in range(side):
            if code.rows[y][x]:
                pixels[x + QUIET_ZONE, y + QUIET_ZONE] = 0
    return small.resize((code.width * module_px,) * 2, Image.Resampling.NEAREST)


def png_bytes(code: Code, *, size_mm: float = DEFAULT_SIZE_MM, dpi: int = 300) -> bytes:
    """The code as a PNG for printing ``size_mm`` wide at ``dpi`` (whole pixels per module,
    rounded up so a module is never smaller than asked); the PNG records the dpi."""
    module_px = max(1, -(-round(code.module_mm(size_mm) / 25.4 * dpi * 1000) // 1000))
    out = io.BytesIO()
    to_image(code, module_px=module_px).save(out, format="PNG", dpi=(dpi, dpi))
    return out.getvalue()


def svg_bytes(code: Code, *, size_mm: float = DEFAULT_SIZE_MM) -> bytes:
    """The code as one SVG path, ``size_mm`` wide (``width``/``height`` in mm)."""
    module = code.module_mm(size_mm)
    parts = [f"M{x + QUIET_ZONE},{y + QUIET_ZONE}h{n}v1h-{n}z" for y, x, n in runs(code)]
    side = code.width
    svg = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{side * module:.3f}mm" '
        f'height="{side * module:.3f}mm" viewBox="0 0 {side} {side}" '
        'shape-rendering="crispEdges">'
        f'<rect width="{side}" height="{side}" fill="#fff"/>'
        f'<path fill="#000" d="{"".join(parts)}"/></svg>\n'
    )
    return svg.encode("utf-8")
