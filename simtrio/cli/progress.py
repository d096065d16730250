"""A small multi-line progress display for a terminal's stderr.

One line per sub-session (the running ones first, capped so a large run fits the screen) and a
total line. It redraws in place with ANSI cursor movement at most ``1 / interval`` times a
second, and only when something changed, so its cost stays flat however fast events arrive.
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, TextIO

import trio

from simtrio.cli.output import format_duration
from simtrio.cli.report import SessionState

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from simtrio.cli.report import SessionTally

__all__ = ["ProgressBar", "bar"]

_MARK = {
    SessionState.RUNNING: " ",
    SessionState.COMPLETED: "✓",
    SessionState.FAILED: "✗",
    SessionState.INTERRUPTED: "-",
}


def bar(done: int, total: int, width: int) -> str:
    """``[#####.....]`` filled in proportion to ``done / total``."""
    filled = width if total <= 0 else min(width, width * done // total)
    return "[" + "#" * filled + "." * (width - filled) + "]"


class ProgressBar:
    """Renders the tallies ``source`` returns; ``run`` redraws until cancelled."""

    def __init__(
        self,
        out: TextIO,
        source: Callable[[], Sequence[SessionTally]],
        total_slots: int,
        *,
        max_lines: int = 8,
        width: int | None = None,
    ) -> None:
        self._out = out
        self._source = source
        self._total_slots = total_slots
        self._max_lines = max_lines
        self._width = width
        self._drawn = 0
        self._last: list[str] = []

    def lines(self, now: float, started_at: float) -> list[str]:
        tallies = list(self._source())
        width = self._width or shutil.get_terminal_size((80, 24)).columns
        name_width = min(28, max((len(t.session_id) for t in tallies), default=5))
        bar_width = max(10, min(40, width - name_width - 30))
        running = [t for t in tallies if t.state is SessionState.RUNNING]
        shown = running[: self._max_lines] if len(tallies) > self._max_lines else tallies
        out: list[str] = []
        for t in shown:
            name = t.session_id[:name_width].ljust(name_width)
            out.append(
                f"{_MARK[t.state]} {name} {bar(t.slots_done, t.total_slots, bar_width)} "
                f"{t.slots_done}/{t.total_slots}"
            )
        hidden = len(tallies) - len(shown)
        if hidden:
            finished = sum(1 for t in tallies if t.state is not SessionState.RUNNING)
            out.append(f"  … {hidden} more ({finished} finished)")
        done = sum(t.slots_done for t in tallies)
        elapsed = max(0.0, now - started_at)
        rate = f"{done / elapsed:.0f} slots/s" if elapsed > 0 else ""
        label = "total".ljust(name_width)
        out.append(
            f"  {label} {bar(done, self._total_slots, bar_width)} "
            f"{done}/{self._total_slots}  {format_duration(elapsed)}  {rate}".rstrip()
        )
        return [line[: width - 1] for line in out]

    def draw(self, now: float, started_at: float) -> None:
        lines = self.lines(now, started_at)
        if lines == self._last:
            return
        parts: list[str] = []
        if self._drawn:
            parts.append(f"\x1b[{self._drawn}F")
        parts.extend(f"\x1b[2K{line}\n" for line in lines)
        # A shorter frame than the last one leaves stale lines below it: wipe them.
        extra = self._drawn - len(lines)
        if extra > 0:
            parts.append("\x1b[2K\n" * extra + f"\x1b[{extra}F")
        self._out.write("".join(parts))
        self._out.flush()
        self._drawn = len(lines)
        self._last = lines

    def message(self, text: str) -> None:
        """Print a line above the display (the next redraw puts the display back below it)."""
        self.clear()
        self._out.write(text + "\n")
        self._out.flush()

    def clear(self) -> None:
        """Erase the display so the summary prints on a clean screen."""
        if self._drawn:
            self._out.write(f"\x1b[{self._drawn}F\x1b[J")
            self._out.flush()
        self._drawn = 0
        self._last = []

    async def run(self, started_at: float, interval: float = 0.1) -> None:
        """Redraw every ``interval`` seconds until cancelled, then erase."""
        try:
            while True:
                self.draw(trio.current_time(), started_at)
                await trio.sleep(interval)
        finally:
            self.clear()
