"""The live progress display of ``simtrio run``: a total bar with ETA, one bar per sub-session.

Built on :class:`rich.progress.Progress` and drawn on the command's stderr console, so log
records printed through that console appear above the display instead of over it. It is
refreshed from the tallies every ``interval`` seconds (never per event), shows at most
``max_lines`` sub-sessions (the running ones first) and is only used when stderr is a terminal.
Time comes from trio's clock, so the ETA follows a test's mock clock too.
"""

from __future__ import annotations

__all__: list[str] = []

import time
from typing import TYPE_CHECKING

import trio
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from simtrio.cli.report import SessionState

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from rich.console import Console

    from simtrio.cli.report import SessionTally

_MARK = {
    SessionState.RUNNING: " ",
    SessionState.COMPLETED: "✓",
    SessionState.FAILED: "✗",
    SessionState.INTERRUPTED: "-",
}


def _now() -> float:
    """trio's clock inside a run (a test's mock clock too), the monotonic clock outside."""
    try:
        return trio.current_time()
    except RuntimeError:
        return time.monotonic()


def progress_display(
    console: Console, *columns: str | ProgressColumn, transient: bool, expand: bool = False
) -> Progress:
    """A rich display that its owner redraws from a trio task (no refresh thread), on trio's clock."""
    return Progress(
        *columns,
        console=console,
        auto_refresh=False,
        transient=transient,
        expand=expand,
        get_time=_now,
    )


class RunProgress:
    """Mirrors the tallies ``source`` returns into a rich progress display."""

    def __init__(
        self,
        console: Console,
        source: Callable[[], Sequence[SessionTally]],
        total_slots: int,
        *,
        max_lines: int = 8,
    ) -> None:
        self._source = source
        self._max_lines = max_lines
        self.progress = progress_display(
            console,
            TextColumn("{task.description}"),
            BarColumn(bar_width=None),
            MofNCompleteColumn(),
            TextColumn("slots"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            transient=True,
            expand=True,
        )
        self._total = self.progress.add_task("total", total=total_slots)
        self._tasks: dict[str, TaskID] = {}

    def update(self) -> None:
        """Copy the tallies into the display and redraw it."""
        tallies = list(self._source())
        running = [t for t in tallies if t.state is SessionState.RUNNING]
        shown = tallies if len(tallies) <= self._max_lines else running[: self._max_lines]
        visible = {t.session_id for t in shown}
        for tally in tallies:
            task = self._tasks.get(tally.session_id)
            if task is None:
                task = self.progress.add_task(
                    "", total=tally.total_slots, visible=False, start=True
                )
                self._tasks[tally.session_id] = task
            self.progress.update(
                task,
                completed=tally.slots_done,
                description=f"{_MARK[tally.state]} {tally.start_slot}-{tally.end_slot}",
                visible=tally.session_id in visible,
            )
        hidden = len(tallies) - len(shown)
        label = f"total ({hidden} more sub-sessions)" if hidden else "total"
        self.progress.update(
            self._total, completed=sum(t.slots_done for t in tallies), description=label
        )
        self.progress.refresh()

    async def run(self, interval: float = 0.1) -> None:
        """Redraw every ``interval`` seconds until cancelled, then remove the display."""
        with self.progress:
            try:
                while True:
                    self.update()
                    await trio.sleep(interval)
            finally:
                self.progress.stop()
