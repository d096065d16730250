"""Plain-text tables and JSON lines for the commands' stdout.

Tables are hand-rolled (no dependency): columns are sized to their widest cell, numbers are
right-aligned, everything else left-aligned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TextIO, cast

import orjson

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Cell", "dumps", "format_duration", "json_object", "render_table", "write_json"]

Cell = str | int | float | None


def _text(cell: Cell) -> str:
    if cell is None:
        return "-"
    if isinstance(cell, float):
        return f"{cell:.2f}"
    return str(cell)


def _numeric(cell: Cell) -> bool:
    return isinstance(cell, int | float) and not isinstance(cell, bool)


def render_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    *,
    footer: Sequence[Sequence[Cell]] = (),
) -> str:
    """Columns padded to fit; ``footer`` rows follow a rule line (for totals)."""
    texts = [[_text(c) for c in row] for row in (*rows, *footer)]
    widths = [len(h) for h in headers]
    for text_row in texts:
        for i, text in enumerate(text_row):
            widths[i] = max(widths[i], len(text))
    right = [False] * len(headers)
    for row in (*rows, *footer):
        for i, cell in enumerate(row):
            right[i] = right[i] or _numeric(cell)

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(widths[i]) if right[i] else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    out = [line(list(headers))]
    out.extend(line(row) for row in texts[: len(rows)])
    if footer:
        out.append("  ".join("-" * w for w in widths))
        out.extend(line(row) for row in texts[len(rows) :])
    return "\n".join(out)


def format_duration(seconds: float) -> str:
    """``0.42s``, ``12.3s``, ``4m05s``: short enough for a table column."""
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def json_object(value: object) -> dict[str, Any] | None:
    """``value`` as a JSON object, or None when it is anything else."""
    if isinstance(value, dict):
        return cast("dict[str, Any]", value)
    return None


def dumps(value: object) -> str:
    """Compact JSON text; non-str keys are stringified rather than rejected."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def write_json(out: TextIO, value: object) -> None:
    """One JSON document on one line."""
    out.write(dumps(value) + "\n")
