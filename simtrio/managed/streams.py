"""The driver-facing event stream of one (sub-)session.

Two queues feed an :class:`EventStream`: an unbounded one for control events (low-rate; a slow
driver must never stall the shared control socket) and a bounded :class:`~simtrio.managed.queue.Queue`
for data-plane notifications (a slow driver back-pressures its own data socket instead of
growing memory; bounded by count and by bytes). ``next_event`` merges them and enforces the one
ordering rule the protocol has: every notification already buffered is delivered before
``Completed`` (or before a stalled-drain failure).

The reader waits in the data queue's reader slot, which control events wake too; like the
queue's own reads, every ``next_event`` is a cancel point that takes no task switch while
events are queued, yields to the scheduler every :data:`~simtrio.managed.queue.YIELD_EVERY`
events, and never loses an event to a cancellation.
"""

from __future__ import annotations

__all__: list[str] = []

from collections import deque
from typing import TYPE_CHECKING, Any, Final, Protocol

import attrs
import trio

from simtrio import events
from simtrio.errors import ControlClosed, ManagedSessionError
from simtrio.managed.queue import YIELD_EVERY, Queue

if TYPE_CHECKING:
    from collections.abc import Coroutine, Iterable

    from simtrio.events import Event

    class _PutNowait(Protocol):
        def __call__(self, event: Event, size: int = 0, /) -> bool: ...

    class _Put(Protocol):
        async def __call__(self, event: Event, size: int = 0, /) -> None: ...


_checkpoint_if_cancelled: Final = trio.lowlevel.checkpoint_if_cancelled
_cancel_shielded_checkpoint: Final = trio.lowlevel.cancel_shielded_checkpoint


@attrs.frozen
class _Failure:
    error: ManagedSessionError
    after_data: bool


_COMPLETED: Final = events.Completed
"""Bound once: every queued control event is checked against it."""
_TERMINALS: Final = (_COMPLETED, _Failure)


class EventStream:
    """Control events plus data-plane notifications of one (sub-)session, in delivery order.

    ``put_data_nowait(event, size=0)`` queues a notification of ``size`` bytes if the data
    buffer has room (False, nothing queued, when it is full by count or by bytes);
    ``await put_data(event, size=0)`` waits while it is full (cancelled while waiting, nothing
    was queued). Both are the data queue's own methods, so a producer that keeps them has no
    call in between on the data path; the stream stores neither, to stay small.
    """

    __slots__ = (
        "_control",
        "_data",
        "_finished",
        "_pending",
        "_streak",
        "_terminal_queued",
        "raised",
    )

    def __init__(self, data_capacity: int, data_max_bytes: int | None = None) -> None:
        self._control: deque[Event | _Failure] = deque()
        self._data: Queue[Event] = Queue(data_capacity, data_max_bytes)
        self.raised: ManagedSessionError | None = None
        """The failure ``next_event`` raised to the driver, if it did."""
        self._pending: events.Completed | _Failure | None = None
        self._finished = False
        self._terminal_queued = False
        self._streak = 0  # reads since the reader last yielded

    # -- producers --------------------------------------------------------------------------

    @property
    def terminal_queued(self) -> bool:
        """True once ``Completed`` or a failure has been queued: nothing may follow it."""
        return self._terminal_queued

    @property
    def put_data_nowait(self) -> _PutNowait:
        """The data queue's :meth:`~simtrio.managed.queue.Queue.put_nowait`: a producer
        that keeps it calls the queue with nothing in between."""
        return self._data.put_nowait

    @property
    def put_data(self) -> _Put:
        """The data queue's :meth:`~simtrio.managed.queue.Queue.put`."""
        return self._data.put

    def put_control(self, event: Event) -> None:
        """Queue a control event (never blocks). Ignored once the stream has its terminal."""
        if self._terminal_queued:
            return
        if type(event) is _COMPLETED:
            self._terminal_queued = True
        self._control.append(event)
        data = self._data
        if data.reader is not None or data.readers:
            data.wake_readers()

    def put_control_batch(self, events: Iterable[Event]) -> None:
        """Queue control events in order, waking the reader once (never blocks).

        Like repeated :meth:`put_control`: whatever follows a ``Completed`` is dropped.
        """
        if self._terminal_queued:
            return
        control = self._control
        before = len(control)
        for event in events:
            control.append(event)
            if type(event) is _COMPLETED:
                self._terminal_queued = True
                break
        if len(control) != before:
            self._data.wake_readers()

    def put_failure(self, error: ManagedSessionError, *, after_data: bool = False) -> None:
        """Queue a failure; ``after_data`` lets buffered notifications go first (stalled drain)."""
        if self._terminal_queued:
            return
        self._terminal_queued = True
        self._control.append(_Failure(error, after_data))
        self._data.wake_readers()

    def close(self) -> None:
        """End the stream for the driver: later reads raise ``ControlClosed``."""
        self._finished = True
        self._data.wake_readers()

    # -- consumer ---------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def buffered_data(self) -> int:
        """Notifications queued and not yet read."""
        return len(self._data.buffer)

    @property
    def buffered_bytes(self) -> int:
        """The sizes of the notifications queued and not yet read, summed."""
        return self._data.bytes

    async def next_event(self, ended: type[Exception] = ControlClosed) -> Event:
        """The next event: control events and notifications in arrival order, the terminal last.

        One coroutine from the call to the wait, with no helper awaited on the way: it is what
        every driver has parked while it waits, so it is kept to the fewest objects.

        Raises:
            ControlClosed: the stream has ended (after its terminal, or closed); ``ended``
                instead, when given (``StopAsyncIteration`` for ``async for``).
            ManagedSessionError: the failure queued by :meth:`put_failure`.
        """
        await _checkpoint_if_cancelled()
        control = self._control
        queue = self._data
        data = queue.buffer
        while True:
            if self._finished:
                await _cancel_shielded_checkpoint()
                raise ended("the event stream has ended")
            pending = self._pending
            event: Event | None = None
            if pending is None and control:
                item = control.popleft()
                if isinstance(item, _TERMINALS):
                    pending = self._pending = item
                else:
                    event = item
            if event is None:
                if type(pending) is _Failure and not pending.after_data:
                    return await self._finish_with(pending)
                if data:
                    event = queue.take()
                elif pending is not None:
                    return await self._finish_with(pending)
            if event is not None:
                self._streak += 1
                if self._streak >= YIELD_EVERY:
                    self._streak = 0
                    await _cancel_shielded_checkpoint()
                return event
            self._streak = 0
            await queue.wait_readable()

    async def _finish_with(self, item: events.Completed | _Failure) -> Event:
        self._pending = None
        self._finished = True
        await _cancel_shielded_checkpoint()
        if isinstance(item, _Failure):
            if not isinstance(item.error, ControlClosed):
                self.raised = item.error
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

    def __anext__(self) -> Coroutine[Any, Any, Event]:
        # The stream's own coroutine, not one wrapped around it: one object less per parked
        # driver (see EventStream.next_event).
        return self._stream.next_event(StopAsyncIteration)
