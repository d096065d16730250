"""Reconnect coordination across the sibling sub-sessions of one parallel session (§9.8).

When a server restarts, every sub-session loses its data-plane connections at once. Letting all
of them hammer the server with retries would slow every one down, so after a few ungated
attempts a connection *parks*: it waits until no sibling connection is streaming, then takes
the single reconnect slot, connects and subscribes, and counts as streaming from then on. The
coordinator itself never gives up; parked connections bound their wait by their own outage
budget. Each (sub-)session reaches it through its own :class:`SessionGate`.
"""

from __future__ import annotations

__all__: list[str] = []

from simtrio.managed.waiting import Waiters


class ReconnectCoordinator:
    """Shared by the data-plane connections of sibling sub-sessions.

    A connection that came up calls :meth:`stream_started` and, once it is gone (lost,
    finished, cancelled), :meth:`stream_stopped`. A connection past its ungated attempts calls
    :meth:`acquire_slot` before connecting and :meth:`release_slot` once it is streaming or its
    attempt failed.
    """

    __slots__ = ("_slot_taken", "_streaming", "_waiters")

    def __init__(self) -> None:
        self._streaming = 0
        self._slot_taken = False
        self._waiters = Waiters()

    def __repr__(self) -> str:
        return (
            f"<ReconnectCoordinator streaming={self._streaming} parked={len(self._waiters)}"
            f" slot={'taken' if self._slot_taken else 'free'}>"
        )

    @property
    def streaming(self) -> int:
        """Connections currently streaming."""
        return self._streaming

    @property
    def parked(self) -> int:
        """Connections waiting for the reconnect slot."""
        return len(self._waiters)

    @property
    def slot_taken(self) -> bool:
        """Whether a connection holds the reconnect slot."""
        return self._slot_taken

    async def acquire_slot(self) -> None:
        """Park until no connection is streaming and the slot is free, then take the slot.

        Cancellation (the caller's outage deadline, a stop) leaves the slot untouched.
        """
        await self._waiters.wait_until(self._slot_free)
        self._slot_taken = True

    def _slot_free(self) -> bool:
        return not self._streaming and not self._slot_taken

    def release_slot(self) -> None:
        """Give the slot back (after the connection is streaming, or after a failed attempt)."""
        if self._slot_taken:
            self._slot_taken = False
            self._waiters.wake()

    def stream_started(self) -> None:
        """A connection is streaming: parked siblings wait until it stops."""
        self._streaming += 1

    def stream_stopped(self) -> None:
        """A streaming connection is gone; the last one to stop wakes the parked ones."""
        if self._streaming <= 0:
            raise RuntimeError("stream_stopped() without a matching stream_started()")
        self._streaming -= 1
        if not self._streaming:
            self._waiters.wake()


class SessionGate:
    """One (sub-)session's view of the reconnect coordinator its siblings share (§9.8).

    A parked connection waits until no sibling connection is streaming. But a session with a
    parked connection cannot advance (``send_continue`` waits for every subscription to be UP),
    so its other connections, though open, will carry nothing more until the parked one is back.
    Counted as streaming, they would make the parked connection wait for its own session, and
    two sessions parked that way would wait for each other, each until its outage budget ran
    out. So while any connection of the session is parked, its streaming connections are
    withdrawn from the shared count; they count again once none is parked.
    """

    __slots__ = ("_coordinator", "_parked", "_streaming")

    def __init__(self, coordinator: ReconnectCoordinator) -> None:
        self._coordinator = coordinator
        self._streaming = 0
        self._parked = 0

    def __repr__(self) -> str:
        return f"<SessionGate streaming={self._streaming} parked={self._parked}>"

    async def acquire_slot(self) -> None:
        self._parked += 1
        if self._parked == 1:
            for _ in range(self._streaming):
                self._coordinator.stream_stopped()
        try:
            await self._coordinator.acquire_slot()
        finally:
            self._parked -= 1
            if self._parked == 0:
                for _ in range(self._streaming):
                    self._coordinator.stream_started()

    def release_slot(self) -> None:
        self._coordinator.release_slot()

    def stream_started(self) -> None:
        self._streaming += 1
        if not self._parked:
            self._coordinator.stream_started()

    def stream_stopped(self) -> None:
        self._streaming -= 1
        if not self._parked:
            self._coordinator.stream_stopped()
