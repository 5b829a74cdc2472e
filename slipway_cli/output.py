"""Plain-text tables and JSON on stdout: results go to stdout, everything else to stderr."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, TextIO


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> list[str]:
    """Left-aligned columns, two spaces apart; trailing spaces trimmed."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = []
    for row in [list(headers), *rows]:
        lines.append(indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return lines


def write_json(data: Any, out: TextIO) -> None:
    json.dump(data, out, indent=2, sort_keys=False)
    out.write("\n")


def number(value: Any, unit: str = "", digits: int = 3) -> str:
    """A measured number for a table: 3 significant digits, "-" when missing."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return "-"
    text = f"{value:.{digits}g}"
    return f"{text} {unit}" if unit else text


def rate(value: Any) -> str:
    """Inferences per second: "98,214/s"; "-" when missing."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return "-"
    return f"{value:,.0f}/s" if value >= 100 else f"{value:.3g}/s"


def count(value: Any) -> str:
    """A whole number with thousands separators: "1,348"; "-" when missing."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return "-"
    return f"{value:,.0f}"
