"""The driver-facing event stream of one (sub-)session, and the standalone notification channel.

Two queues feed an :class:`EventStream`: an unbounded one for control events (low-rate; a slow
driver must never stall the shared control socket) and a bounded one for data-plane notifications
(a slow driver back-pressures its own data socket instead of growing memory). ``next_event``
merges them and enforces the one ordering rule the protocol has: every notification already
buffered is delivered before ``Completed`` (or before a stalled-drain failure).

The data buffers are bounded twice: by count and by bytes. A producer gives each notification's
size (the length of the message it came in, after decompression); one that would take the
buffer past its byte bound waits like one that finds it full, except that an empty buffer
always takes the next notification, however large, so that nothing can wait forever.

Both sides are on the hot path of every run, so they are plain deques rather than trio memory
channels: a producer hands over a whole read's events without a task switch per event, and a
reader takes what is queued without a trip through the scheduler per event. A reader with
nothing to read waits in a slot of the stream's own (a parking lot only for a second reader),
so that a thousand parked drivers hold as few objects as possible between their events.
Every read is still a cancel point (``checkpoint_if_cancelled``), and a reader that never runs
dry still yields to the scheduler every :data:`YIELD_EVERY` events, so it cannot starve other
tasks. An item leaves a queue only in the same step that returns it, so a cancelled read never
loses an event.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Final, Generic, Self, TypeVar

import attrs
import trio

from simtrio import events
from simtrio.errors import ControlClosed, InvalidParams, ManagedSessionError

if TYPE_CHECKING:
    from collections.abc import Coroutine, Iterable

    from simtrio.events import Event

__all__ = [
    "HANDOVER_CHUNK",
    "YIELD_EVERY",
    "EventIterator",
    "EventStream",
    "NotificationReceiveChannel",
    "NotificationSendChannel",
    "open_notification_channel",
]

YIELD_EVERY: Final = 256
"""A reader that never runs dry still yields to the scheduler after this many items."""

HANDOVER_CHUNK: Final = 32
"""A writer that never has to wait yields after this many items: the reader then keeps the
buffer short, which keeps latency, memory and garbage-collector work per item low."""

T = TypeVar("T")

_checkpoint_if_cancelled: Final = trio.lowlevel.checkpoint_if_cancelled
_cancel_shielded_checkpoint: Final = trio.lowlevel.cancel_shielded_checkpoint
_current_task: Final = trio.lowlevel.current_task
_reschedule: Final = trio.lowlevel.reschedule
_wait_task_rescheduled: Final = trio.lowlevel.wait_task_rescheduled


def _check_capacity(capacity: int, what: str = "capacity") -> int:
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:  # pyright: ignore[reportUnnecessaryIsInstance]
        raise InvalidParams(f"{what} must be a positive integer, got {capacity!r}")
    return capacity


def _check_max_bytes(max_bytes: int | None) -> int:
    return _UNBOUNDED if max_bytes is None else _check_capacity(max_bytes, "max_bytes")


_UNBOUNDED: Final = 1 << 62


@attrs.frozen
class _Failure:
    error: ManagedSessionError
    after_data: bool


_COMPLETED: Final = events.Completed
"""Bound once: every queued control event is checked against it."""
_TERMINALS: Final = (_COMPLETED, _Failure)


class EventStream:
    """Control events plus data-plane notifications of one (sub-)session, in delivery order."""

    __slots__ = (
        "_abort_wait",
        "_bytes",
        "_capacity",
        "_control",
        "_data",
        "_finished",
        "_max_bytes",
        "_other_readers",
        "_pending",
        "_sizes",
        "_streak",
        "_terminal_queued",
        "_waiter",
        "_write_streak",
        "_writers",
        "raised",
    )

    def __init__(self, data_capacity: int, data_max_bytes: int | None = None) -> None:
        self._capacity = _check_capacity(data_capacity)
        self._max_bytes = _check_max_bytes(data_max_bytes)
        self._control: deque[Event | _Failure] = deque()
        self._data: deque[Event] = deque()
        self._sizes: deque[int] = deque()  # the size of each queued notification
        self._bytes = 0  # their sum
        # The driver, while nothing is queued. One waiting reader is the rule, and it waits
        # without the allocations a parking lot makes per wait: a thousand parked drivers
        # re-parked every round otherwise keep the garbage collector busy.
        self._waiter: trio.lowlevel.Task | None = None
        self._abort_wait = self._aborted  # bound once, so that waiting allocates no method
        # Made when first needed (most streams never need them): readers beyond the first, and
        # data producers waiting while the buffer is full.
        self._other_readers: trio.lowlevel.ParkingLot | None = None
        self._writers: trio.lowlevel.ParkingLot | None = None
        self.raised: ManagedSessionError | None = None
        """The failure ``next_event`` raised to the driver, if it did."""
        self._pending: events.Completed | _Failure | None = None
        self._finished = False
        self._terminal_queued = False
        self._streak = 0  # reads since the reader last yielded
        self._write_streak = 0  # put_data calls since the writer last yielded

    # -- producers --------------------------------------------------------------------------

    @property
    def terminal_queued(self) -> bool:
        """True once ``Completed`` or a failure has been queued: nothing may follow it."""
        return self._terminal_queued

    def put_control(self, event: Event) -> None:
        """Queue a control event (never blocks). Ignored once the stream has its terminal."""
        if self._terminal_queued:
            return
        if type(event) is _COMPLETED:
            self._terminal_queued = True
        self._control.append(event)
        if self._waiter is not None or self._other_readers:
            self._wake_readers()

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
        if len(control) != before and (self._waiter is not None or self._other_readers):
            self._wake_readers()

    def put_failure(self, error: ManagedSessionError, *, after_data: bool = False) -> None:
        """Queue a failure; ``after_data`` lets buffered notifications go first (stalled drain)."""
        if self._terminal_queued:
            return
        self._terminal_queued = True
        self._control.append(_Failure(error, after_data))
        self._wake_readers()

    def _full(self, size: int) -> bool:
        data = self._data
        return bool(data) and (len(data) >= self._capacity or self._bytes + size > self._max_bytes)

    def put_data_nowait(self, event: Event, size: int = 0) -> bool:
        """Queue a notification of ``size`` bytes if the buffer has room; False (nothing
        queued) when it is full, by count or by bytes."""
        data = self._data
        if data and (len(data) >= self._capacity or self._bytes + size > self._max_bytes):
            return False
        data.append(event)
        self._sizes.append(size)
        self._bytes += size
        if self._waiter is not None or self._other_readers:
            self._wake_readers()
        return True

    async def put_data(self, event: Event, size: int = 0) -> None:
        """Queue a notification of ``size`` bytes, waiting while the bounded buffer is full.

        Cancelled while waiting, nothing was queued; once it has returned, the event is queued.
        """
        await _checkpoint_if_cancelled()
        data = self._data
        while self._full(size):
            if self._writers is None:
                self._writers = trio.lowlevel.ParkingLot()
            await self._writers.park()
        data.append(event)
        self._sizes.append(size)
        self._bytes += size
        if self._waiter is not None or self._other_readers:
            self._wake_readers()
        self._write_streak += 1
        if self._write_streak >= HANDOVER_CHUNK:
            self._write_streak = 0
            await _cancel_shielded_checkpoint()

    def close(self) -> None:
        """End the stream for the driver: later reads raise ``ControlClosed``."""
        self._finished = True
        self._wake_readers()

    def _wake_readers(self) -> None:
        task = self._waiter
        if task is not None:
            self._waiter = None
            _reschedule(task)
        others = self._other_readers
        if others:
            others.unpark_all()

    def _aborted(self, _: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
        self._waiter = None
        return trio.lowlevel.Abort.SUCCEEDED

    # -- consumer ---------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def buffered_data(self) -> int:
        """Notifications queued and not yet read."""
        return len(self._data)

    @property
    def buffered_bytes(self) -> int:
        """The sizes of the notifications queued and not yet read, summed."""
        return self._bytes

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
        data = self._data
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
                    event = data.popleft()
                    self._bytes -= self._sizes.popleft()
                    writers = self._writers
                    if writers:
                        writers.unpark()
                elif pending is not None:
                    return await self._finish_with(pending)
            if event is not None:
                self._streak += 1
                if self._streak >= YIELD_EVERY:
                    self._streak = 0
                    await _cancel_shielded_checkpoint()
                return event
            self._streak = 0
            if self._waiter is None:
                self._waiter = _current_task()
                await _wait_task_rescheduled(self._abort_wait)
            else:
                if self._other_readers is None:
                    self._other_readers = trio.lowlevel.ParkingLot()
                await self._other_readers.park()

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


# --------------------------------------------------------------------------------------------
# The standalone subscriptions' channel
# --------------------------------------------------------------------------------------------


class _ChannelState(Generic[T]):
    __slots__ = (
        "buffer",
        "bytes",
        "capacity",
        "max_bytes",
        "peak",
        "readers",
        "receiver_closed",
        "sender_closed",
        "sizes",
        "writers",
    )

    def __init__(self, capacity: int, max_bytes: int) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.buffer: deque[T] = deque()
        self.sizes: deque[int] = deque()
        self.bytes = 0
        self.readers = trio.lowlevel.ParkingLot()
        self.writers = trio.lowlevel.ParkingLot()
        self.sender_closed = False
        self.receiver_closed = False
        self.peak = 0

    def full(self, size: int) -> bool:
        buffer = self.buffer
        return bool(buffer) and (len(buffer) >= self.capacity or self.bytes + size > self.max_bytes)

    def take(self) -> T:
        self.bytes -= self.sizes.popleft()
        return self.buffer.popleft()

    def clear(self) -> None:
        self.buffer.clear()
        self.sizes.clear()
        self.bytes = 0

    def statistics(self) -> trio.MemoryChannelStatistics:
        used = len(self.buffer)
        return trio.MemoryChannelStatistics(
            current_buffer_used=used,
            max_buffer_size=self.capacity,
            open_send_channels=0 if self.sender_closed else 1,
            open_receive_channels=0 if self.receiver_closed else 1,
            tasks_waiting_send=len(self.writers),
            tasks_waiting_receive=len(self.readers),
            peak_buffer_used=self.peak,
        )


def open_notification_channel(
    capacity: int, max_bytes: int | None = None
) -> tuple[NotificationSendChannel[T], NotificationReceiveChannel[T]]:
    """A bounded single-producer channel whose reads cost no task switch while items are queued.

    It behaves like ``trio.open_memory_channel(capacity)`` with one receiver (no ``clone``;
    several tasks may share the send half): ``send`` waits while full, the receiver's
    ``async for`` ends once the sender is closed and the buffer is empty, and a closed receiver
    makes ``send`` raise ``trio.BrokenResourceError``. With ``max_bytes``, the sizes given to
    :meth:`~NotificationSendChannel.send_sized` / ``try_send`` are bounded too (an empty
    buffer takes any one value).
    """
    state: _ChannelState[T] = _ChannelState(_check_capacity(capacity), _check_max_bytes(max_bytes))
    return NotificationSendChannel(state), NotificationReceiveChannel(state)


class _ChannelHalf(Generic[T]):
    """What both halves share: the state, trio's statistics, ``with`` closing the half."""

    __slots__ = ("_state", "_streak")

    def __init__(self, state: _ChannelState[T]) -> None:
        self._state = state
        self._streak = 0  # sends or receives since this half last yielded

    def __repr__(self) -> str:
        state = self._state
        return f"<{type(self).__name__} {len(state.buffer)}/{state.capacity}>"

    def statistics(self) -> trio.MemoryChannelStatistics:
        """The same figures as a trio memory channel's (one sender, one receiver)."""
        return self._state.statistics()

    @property
    def buffered_bytes(self) -> int:
        """The sizes of the values queued and not yet received, summed."""
        return self._state.bytes

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close this half (synchronously, like a trio memory channel's ``close``)."""
        raise NotImplementedError


class NotificationSendChannel(_ChannelHalf[T], trio.abc.SendChannel[T]):
    """The producer half of :func:`open_notification_channel`."""

    __slots__ = ()

    def _check_open(self) -> None:
        state = self._state
        if state.sender_closed:
            raise trio.ClosedResourceError("the send channel is closed")
        if state.receiver_closed:
            raise trio.BrokenResourceError("the receive channel is closed")

    def ensure_capacity(self, capacity: int) -> None:
        """Let the buffer hold at least ``capacity`` values from now on (never shrinks it)."""
        state = self._state
        if capacity > state.capacity:
            state.capacity = capacity
            state.writers.unpark_all()

    def send_nowait(self, value: T) -> None:
        """Queue ``value`` now; ``trio.WouldBlock`` when the buffer is full."""
        if not self.try_send(value):
            raise trio.WouldBlock

    def try_send(self, value: T, size: int = 0) -> bool:
        """Queue ``value`` (of ``size`` bytes) if the buffer has room; False (nothing queued)
        when it is full.

        The cheap path of a producer that hands over a whole read: ``send`` only for the value
        that found the buffer full. Raises like ``send`` once either half is closed.
        """
        state = self._state
        if state.sender_closed or state.receiver_closed:
            self._check_open()
        buffer = state.buffer
        if buffer and (len(buffer) >= state.capacity or state.bytes + size > state.max_bytes):
            return False
        buffer.append(value)
        state.sizes.append(size)
        state.bytes += size
        if len(buffer) > state.peak:
            state.peak = len(buffer)
        if state.readers:
            state.readers.unpark_all()
        return True

    async def send(self, value: T) -> None:
        await self.send_sized(value, 0)

    async def send_sized(self, value: T, size: int) -> None:
        """``send`` for a value of ``size`` bytes: waits while the buffer is full by count or
        would pass its byte bound."""
        await _checkpoint_if_cancelled()
        state = self._state
        self._check_open()
        buffer = state.buffer
        while state.full(size):
            await state.writers.park()
            self._check_open()
        buffer.append(value)
        state.sizes.append(size)
        state.bytes += size
        if len(buffer) > state.peak:
            state.peak = len(buffer)
        if state.readers:
            state.readers.unpark_all()
        self._streak += 1
        if self._streak >= HANDOVER_CHUNK:
            self._streak = 0
            await _cancel_shielded_checkpoint()

    def close(self) -> None:
        """No more values: the receiver ends after draining the buffer. Idempotent."""
        state = self._state
        state.sender_closed = True
        state.readers.unpark_all()
        state.writers.unpark_all()

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()


class NotificationReceiveChannel(_ChannelHalf[T], trio.abc.ReceiveChannel[T]):
    """The consumer half of :func:`open_notification_channel` (``async for`` it)."""

    __slots__ = ()

    def receive_nowait(self) -> T:
        """The next value; ``trio.WouldBlock`` if none is queued, ``trio.EndOfChannel`` at the end."""
        state = self._state
        if state.receiver_closed:
            raise trio.ClosedResourceError("the receive channel is closed")
        if state.buffer:
            value = state.take()
            if state.writers:
                state.writers.unpark()
            return value
        if state.sender_closed:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    async def receive(self) -> T:
        await _checkpoint_if_cancelled()
        state = self._state
        buffer = state.buffer
        while True:
            if state.receiver_closed:
                raise trio.ClosedResourceError("the receive channel is closed")
            if buffer:
                value = state.take()
                if state.writers:
                    state.writers.unpark()
                self._streak += 1
                if self._streak >= YIELD_EVERY:
                    self._streak = 0
                    await _cancel_shielded_checkpoint()
                return value
            if state.sender_closed:
                await _cancel_shielded_checkpoint()
                raise trio.EndOfChannel
            self._streak = 0
            await state.readers.park()

    def close(self) -> None:
        """Stop receiving: queued values are dropped and the sender gets BrokenResourceError."""
        state = self._state
        state.receiver_closed = True
        state.clear()
        state.readers.unpark_all()
        state.writers.unpark_all()

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()
