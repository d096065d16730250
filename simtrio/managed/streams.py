"""The driver-facing event stream of one (sub-)session.

Two memory channels feed it: an unbounded one for control events (low-rate; a slow driver must
never stall the shared control socket) and a bounded one for data-plane notifications (a slow
driver back-pressures its own data socket instead of growing memory). ``next_event`` merges them
and enforces the one ordering rule the protocol has: every notification already buffered is
delivered before ``Completed`` (or before a stalled-drain failure).
"""

from __future__ import annotations

import math

import attrs
import trio

from simtrio.errors import ControlClosed, ManagedSessionError
from simtrio.events import Completed, Event

__all__ = ["EventStream", "EventIterator"]


@attrs.frozen
class _Failure:
    error: ManagedSessionError
    after_data: bool


class EventStream:
    """Control events plus data-plane notifications of one (sub-)session, in delivery order."""

    def __init__(self, data_capacity: int) -> None:
        self._control_tx, self._control_rx = trio.open_memory_channel[Event | _Failure](math.inf)
        self._data_tx, self._data_rx = trio.open_memory_channel[Event](data_capacity)
        self._lot = trio.lowlevel.ParkingLot()
        self._pending: Event | _Failure | None = None
        self._finished = False
        self._terminal_queued = False

    # -- producers --------------------------------------------------------------------------

    @property
    def terminal_queued(self) -> bool:
        """True once ``Completed`` or a failure has been queued: nothing may follow it."""
        return self._terminal_queued

    def put_control(self, event: Event) -> None:
        """Queue a control event (never blocks). Ignored once the stream has its terminal."""
        if self._terminal_queued:
            return
        if isinstance(event, Completed):
            self._terminal_queued = True
        self._control_tx.send_nowait(event)
        self._lot.unpark_all()

    def put_failure(self, error: ManagedSessionError, *, after_data: bool = False) -> None:
        """Queue a failure; ``after_data`` lets buffered notifications go first (stalled drain)."""
        if self._terminal_queued:
            return
        self._terminal_queued = True
        self._control_tx.send_nowait(_Failure(error, after_data))
        self._lot.unpark_all()

    async def put_data(self, event: Event) -> None:
        """Queue a notification, waiting while the bounded buffer is full."""
        await self._data_tx.send(event)
        self._lot.unpark_all()

    def close(self) -> None:
        """End the stream for the driver: later reads raise ``ControlClosed``."""
        self._finished = True
        self._lot.unpark_all()

    # -- consumer ---------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self._finished

    async def next_event(self) -> Event:
        while True:
            if self._finished:
                await trio.lowlevel.checkpoint()
                raise ControlClosed("the event stream has ended")
            pending = self._pending
            if pending is None:
                try:
                    pending = self._pending = self._control_rx.receive_nowait()
                except trio.WouldBlock:
                    pass
            if pending is not None:
                if isinstance(pending, _Failure) and not pending.after_data:
                    return await self._finish_with(pending)
                if not isinstance(pending, Completed | _Failure):
                    self._pending = None
                    await trio.lowlevel.checkpoint()
                    return pending
            try:
                event = self._data_rx.receive_nowait()
            except trio.WouldBlock:
                pass
            else:
                await trio.lowlevel.checkpoint()
                return event
            if pending is not None:
                return await self._finish_with(pending)
            await self._lot.park()

    async def _finish_with(self, item: Event | _Failure) -> Event:
        self._pending = None
        self._finished = True
        await trio.lowlevel.checkpoint()
        if isinstance(item, _Failure):
            raise item.error
        return item

    def events(self) -> EventIterator:
        return EventIterator(self)


class EventIterator:
    """``async for`` over a stream: ends after ``Completed``; failures are raised."""

    __slots__ = ("_stream",)

    def __init__(self, stream: EventStream) -> None:
        self._stream = stream

    def __aiter__(self) -> EventIterator:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self._stream.next_event()
        except ControlClosed:
            raise StopAsyncIteration from None
