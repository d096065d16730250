"""An observable connection status that tasks can wait on."""

from __future__ import annotations

__all__: list[str] = []

from typing import TYPE_CHECKING

from simtrio.managed.config import ConnectionStatus
from simtrio.managed.waiting import Waiters

if TYPE_CHECKING:
    from collections.abc import Callable


class StatusCell:
    """Holds one component's :class:`ConnectionStatus` and wakes waiters on every change.

    ``FAILED`` is final: once set, later updates are ignored, so a late ``DOWN`` from a
    finally block cannot hide a failure.
    """

    __slots__ = ("_value", "_waiters", "failure")

    def __init__(self, value: ConnectionStatus = ConnectionStatus.DOWN) -> None:
        self._value = value
        self._waiters = Waiters()
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
        self._waiters.wake()

    async def wait_until(self, predicate: Callable[[ConnectionStatus], bool]) -> ConnectionStatus:
        """Wait until ``predicate(value)`` holds and return that value.

        Always a checkpoint, taken before the first check (see :meth:`Waiters.wait_until
        <simtrio.managed.waiting.Waiters.wait_until>`): the value returned satisfies
        ``predicate``; it can change again as soon as the caller next awaits.
        """
        await self._waiters.wait_until(lambda: predicate(self._value))
        return self._value

    def __repr__(self) -> str:
        return f"StatusCell({self._value.name})"
