"""An observable connection status that tasks can wait on."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from simtrio.managed.config import ConnectionStatus

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["StatusCell"]


class StatusCell:
    """Holds one component's :class:`ConnectionStatus` and wakes waiters on every change.

    ``FAILED`` is final: once set, later updates are ignored, so a late ``DOWN`` from a
    finally block cannot hide a failure.
    """

    __slots__ = ("_lot", "_value", "failure")

    def __init__(self, value: ConnectionStatus = ConnectionStatus.DOWN) -> None:
        self._value = value
        self._lot = trio.lowlevel.ParkingLot()
        self.failure: BaseException | None = None

    @property
    def value(self) -> ConnectionStatus:
        """The current status."""
        return self._value

    def set(self, value: ConnectionStatus, failure: BaseException | None = None) -> None:
        """Change the status, keep ``failure`` if given, and wake every waiter.

        Nothing happens when the status is unchanged or already FAILED.
        """
        if self._value is ConnectionStatus.FAILED or value is self._value:
            return
        self._value = value
        if failure is not None:
            self.failure = failure
        self._lot.unpark_all()

    async def wait_until(self, predicate: Callable[[ConnectionStatus], bool]) -> ConnectionStatus:
        """Wait until ``predicate(value)`` holds, then checkpoint and return the current value.

        The checkpoint is always taken, even when the predicate holds at once. The value is
        read after it, so it may no longer satisfy ``predicate``: a caller that needs it to
        must check again.
        """
        while not predicate(self._value):
            await self._lot.park()
        await trio.lowlevel.checkpoint()
        return self._value

    def __repr__(self) -> str:
        return f"StatusCell({self._value.name})"
