"""The one way the managed layer waits for its own state: until a predicate holds, woken on change.

The owner of some state (a connection status, the reconnect slot, what a session's
subscriptions report) keeps a :class:`Waiters` beside it and calls :meth:`Waiters.wake` after
every change; a task that needs the state to reach some condition awaits
:meth:`Waiters.wait_until` with a predicate over it. A loop that also has a deadline (a drain's
idle clock, a keepalive's next ping) awaits :meth:`Waiters.wait` for the next change inside its
own cancel scope and looks again.
"""

from __future__ import annotations

__all__: list[str] = []

import math
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine


class Waiters:
    """The tasks waiting for a change of some state; the state's owner calls :meth:`wake`."""

    __slots__ = ("_lot",)

    def __init__(self) -> None:
        self._lot = trio.lowlevel.ParkingLot()

    def __len__(self) -> int:
        """How many tasks are waiting."""
        return len(self._lot)

    def __repr__(self) -> str:
        return f"<Waiters {len(self._lot)}>"

    def wake(self) -> None:
        """The state changed: every waiting task looks at it again."""
        if self._lot:
            self._lot.unpark_all()

    def wait(self) -> Coroutine[object, object, object]:
        """Until the next :meth:`wake` (a checkpoint: cancellation ends the wait)."""
        return self._lot.park()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` holds, checking it again after every :meth:`wake`.

        Always a checkpoint, taken before the first check: the predicate holds when this
        returns, so the caller can act on it before any other task runs (take a slot it found
        free, say). Cancellation while waiting changes nothing.
        """
        await trio.lowlevel.checkpoint()
        while not predicate():
            await self._lot.park()


class ReadPause:
    """A connection that stops reading by its own choice (a slow consumer, the recorder's disk).

    ``with pause:`` around such a wait; a silence watchdog skips a connection while
    :attr:`active` and counts silence from :attr:`ended_at` at the earliest, so the wait is never
    taken for the peer's silence.
    """

    __slots__ = ("active", "ended_at")

    def __init__(self) -> None:
        self.active = False
        self.ended_at = -math.inf

    def __enter__(self) -> None:
        self.active = True

    def __exit__(self, *_: object) -> None:
        self.active = False
        self.ended_at = trio.current_time()
