"""Which control connection streams a session (or parallel group), and its disconnect timer."""

from __future__ import annotations

__all__: list[str] = []

import logging
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from collections.abc import Callable

    from simtrio.server.conn import Conn
    from simtrio.server.state import ServerState

logger = logging.getLogger(__name__)


class Ownership:
    """Which control connection streams a session (or parallel group), and its disconnect timer.

    When the owner goes away the session waits ``timeout`` seconds for an attach; with 0 it
    is removed at once. The timer is a ``trio.sleep`` among the server's session tasks, so it follows
    a mock clock. The server keeps at most ``max_detached_sessions`` waiting; past that, the
    one detached longest is removed early.
    """

    def __init__(self, state: ServerState, timeout: int, remove: Callable[[], None]) -> None:
        self._state = state
        self.timeout = timeout
        self._remove = remove
        self.owner: Conn | None = None
        self._timer: trio.CancelScope | None = None
        self.on_change: list[Callable[[], None]] = []

    def take(self, conn: Conn) -> Conn | None:
        """Make ``conn`` the owner; returns the previous owner, if any."""
        previous, self.owner = self.owner, conn
        self._stop_timer()
        self._changed()
        return previous if previous is not conn else None

    def detach(self, conn: Conn) -> None:
        """``conn`` went away: start the disconnect timer (or remove now)."""
        if self.owner is not conn:
            return
        self.owner = None
        self._changed()
        if self.timeout <= 0:
            self._remove()
            return
        self._stop_timer()
        timer = self._timer = trio.CancelScope()
        self._state.spawn(self._expire, timer)
        self._state.note_detached(self)

    async def _expire(self, timer: trio.CancelScope) -> None:
        with timer:
            await trio.sleep(self.timeout)
            if self.owner is None and self._timer is timer:
                logger.info("disconnect timeout expired; removing the session")
                self.expire_now()

    def expire_now(self) -> None:
        """Remove the session (or group) now, as if its disconnect timeout had run out."""
        self._stop_timer()
        self._remove()

    def _stop_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self._state.forget_detached(self)

    def _changed(self) -> None:
        for callback in self.on_change:
            callback()
