"""A broadcast wake-up for the tasks that follow a session's logs and progress."""

from __future__ import annotations

__all__: list[str] = []

import trio


class Signal:
    """Wakes every task waiting on it; take ``event`` before checking state, then wait on it."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = trio.Event()

    def notify(self) -> None:
        self.event.set()
        self.event = trio.Event()
