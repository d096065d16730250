"""The terminal side of the command line: one stderr console, logging through it, tables.

Everything a command writes to stderr while it runs (progress, log records, notices) goes
through one :class:`rich.console.Console`, so a live progress display stays below the lines
printed above it instead of being overwritten. When stderr is not a terminal nothing is drawn:
log records are plain lines and no progress is shown.

Tables are :class:`rich.table.Table` objects without borders. On a terminal they are fitted to
its width (long cells are folded); anywhere else they are rendered at their natural width, so a
file or a pipe gets whole values in whitespace-separated columns.
"""

from __future__ import annotations

__all__: list[str] = []

import io
import logging
import shutil
import sys
from typing import TYPE_CHECKING, TextIO

from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

if TYPE_CHECKING:
    from collections.abc import Sequence

Cell = str | int | float | None

_PLAIN_WIDTH = 10_000
"""Width a table is laid out in when not on a terminal: wide enough never to fold."""

_HANDLER_NAME = "simtrio-cli"


def stderr_console(stream: TextIO | None = None) -> Console:
    """A console on ``stream`` (default: ``sys.stderr``, looked up at each write), colour only
    on a terminal."""
    out = sys.stderr if stream is None else stream
    terminal = _isatty(out)
    return Console(
        file=stream,
        stderr=stream is None,
        force_terminal=terminal,
        no_color=not terminal,
        highlight=False,
        soft_wrap=not terminal,
        width=None if terminal else _PLAIN_WIDTH,
    )


def stdout_width() -> int | None:
    """The terminal's width when stdout is a terminal, else None."""
    if not _isatty(sys.stdout):
        return None
    return shutil.get_terminal_size((100, 24)).columns


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def reset_logging() -> None:
    """Remove the handler :func:`configure_logging` installed, if any."""
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == _HANDLER_NAME:
            root.removeHandler(old)


def configure_logging(verbosity: int, console: Console) -> None:
    """Route log records to ``console``: warnings always, ``-v`` info, ``-vv`` debug.

    Replaces a handler installed by an earlier call (the command line may run several times in
    one process, as tests do).
    """
    reset_logging()
    root = logging.getLogger()
    level = logging.DEBUG if verbosity > 1 else logging.INFO if verbosity == 1 else logging.WARNING
    handler: logging.Handler
    if console.is_terminal:
        handler = RichHandler(
            console=console, show_path=False, rich_tracebacks=False, markup=False, level=level
        )
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    else:
        handler = _ConsoleLines(console)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.set_name(_HANDLER_NAME)
    handler.setLevel(level)
    root.addHandler(handler)
    if root.level > level or root.level == logging.NOTSET:
        root.setLevel(level)


class _ConsoleLines(logging.Handler):
    """One plain line per record, written through the console (so it shares its file)."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self._console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            self._console.file.write(text + "\n")
            self._console.file.flush()
        except Exception:
            self.handleError(record)


def cell_text(cell: Cell) -> str:
    if cell is None:
        return "-"
    if isinstance(cell, float):
        return f"{cell:.2f}"
    return str(cell)


def _numeric(cell: Cell) -> bool:
    return isinstance(cell, int | float) and not isinstance(cell, bool)


def make_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    *,
    footer: Sequence[Sequence[Cell]] = (),
) -> Table:
    """A borderless table; numeric columns are right-aligned, ``footer`` rows (totals) last."""
    table = Table(
        box=None,
        show_header=True,
        header_style="bold",
        pad_edge=False,
        show_edge=False,
        padding=(0, 2, 0, 0),
        show_footer=False,
    )
    every = (*rows, *footer)
    for i, header in enumerate(headers):
        right = any(i < len(row) and _numeric(row[i]) for row in every)
        table.add_column(header, justify="right" if right else "left", overflow="fold")
    for row in rows:
        table.add_row(*(cell_text(c) for c in row))
    for row in footer:
        table.add_row(*(cell_text(c) for c in row), style="bold")
    return table


def render_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    *,
    footer: Sequence[Sequence[Cell]] = (),
    width: int | None = None,
) -> str:
    """The table as text, ``width`` columns wide at most.

    The default is the terminal's width when stdout is a terminal, else the table's natural
    width (nothing folded).
    """
    if width is None:
        width = stdout_width()
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=width or _PLAIN_WIDTH,
        no_color=True,
        highlight=False,
        force_terminal=False,
        color_system=None,
    )
    console.print(make_table(headers, rows, footer=footer))
    lines = [line.rstrip() for line in buffer.getvalue().splitlines()]
    return "\n".join(lines)
