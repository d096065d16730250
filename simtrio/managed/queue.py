"""The one in-memory queue of the managed layer: bounded in items and bytes, batch-friendly.

A :class:`Queue` is a FIFO bounded twice: by count and, optionally, by bytes. A producer gives
each value's size (for a notification, the length of the message it came in, after
decompression); one that would take the buffer past its byte bound waits like one that finds
it full, except that an empty buffer always takes the next value, however large, so that
nothing can wait forever.

:func:`open_queue` wraps one in trio's ``SendChannel`` / ``ReceiveChannel`` interface with a
memory channel's semantics (one receiver, no ``clone``); :class:`~simtrio.managed.streams.EventStream`
uses one directly for its data-plane notifications.

Both sides are on the hot path of every run, so the buffer is a plain deque rather than a trio
memory channel: a producer hands over a whole read's values without a task switch per value,
and a reader takes what is queued without a trip through the scheduler per value. A reader
with nothing to read waits in a slot of the queue's own (a parking lot only for a second
reader), so that a thousand parked drivers hold as few objects as possible between their
values. Every read and write is still a cancel point (``checkpoint_if_cancelled``); a reader
that never runs dry yields to the scheduler every :data:`YIELD_EVERY` values and a writer that
never has to wait every :data:`HANDOVER_CHUNK` values, so neither can starve other tasks. A
value leaves the queue only in the same step that returns it, so a cancelled read never loses
one, and a cancelled write has queued nothing.
"""

from __future__ import annotations

__all__: list[str] = []

from collections import deque
from typing import TYPE_CHECKING, Final, Generic, NoReturn, Self, TypeVar

import trio

from simtrio.errors import InvalidParams

if TYPE_CHECKING:
    from collections.abc import Coroutine

YIELD_EVERY: Final = 256
"""A reader that never runs dry still yields to the scheduler after this many items."""

HANDOVER_CHUNK: Final = 32
"""A writer that never has to wait yields after this many items: the reader then keeps the
buffer short, which keeps latency, memory and garbage-collector work per item low."""

T = TypeVar("T")

_UNBOUNDED: Final = 1 << 62

_checkpoint_if_cancelled: Final = trio.lowlevel.checkpoint_if_cancelled
_cancel_shielded_checkpoint: Final = trio.lowlevel.cancel_shielded_checkpoint
_current_task: Final = trio.lowlevel.current_task
_reschedule: Final = trio.lowlevel.reschedule
_wait_task_rescheduled: Final = trio.lowlevel.wait_task_rescheduled


def check_capacity(capacity: int, what: str = "capacity") -> int:
    """``capacity`` if it is a positive int; ``InvalidParams`` naming ``what`` otherwise."""
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:  # pyright: ignore[reportUnnecessaryIsInstance]
        raise InvalidParams(f"{what} must be a positive integer, got {capacity!r}")
    return capacity


class Queue(Generic[T]):
    """A FIFO of at most ``capacity`` values and, with ``max_bytes``, that many bytes.

    :meth:`put_nowait` / :meth:`put` add, :meth:`take` removes; a reader with nothing to take
    awaits :meth:`wait_readable` and checks again. ``close_send`` / ``close_receive`` give it
    a memory channel's closing rules: a write to a closed queue raises
    ``trio.ClosedResourceError`` (its sender closed) or ``trio.BrokenResourceError`` (its
    receiver closed).
    """

    __slots__ = (
        "_abort_read",
        "_closed",
        "_write_streak",
        "_writers",
        "buffer",
        "bytes",
        "capacity",
        "max_bytes",
        "peak",
        "reader",
        "readers",
        "receive_closed",
        "send_closed",
        "sizes",
    )

    def __init__(self, capacity: int, max_bytes: int | None = None) -> None:
        self.capacity = check_capacity(capacity)
        self.max_bytes = _UNBOUNDED if max_bytes is None else check_capacity(max_bytes, "max_bytes")
        self.buffer: deque[T] = deque()
        """The queued values, oldest first (read it, never change it)."""
        self.sizes: deque[int] = deque()  # the size of each queued value
        self.bytes = 0
        """The sizes of the queued values, summed."""
        self.peak = 0
        """The most values ever queued at once."""
        self.send_closed = False
        self.receive_closed = False
        self._closed = False  # either of them: one test on the write path
        self.reader: trio.lowlevel.Task | None = None
        """The reader waiting while nothing is queued (read it, never change it).

        One waiting reader is the rule, and it waits without the allocations a parking lot
        makes per wait: a thousand parked drivers re-parked every round otherwise keep the
        garbage collector busy."""
        self._abort_read = self._read_aborted  # bound once: waiting allocates no method
        self.readers: trio.lowlevel.ParkingLot | None = None
        """Readers waiting beside :attr:`reader`, if there ever were any (read it only)."""
        # Made when first needed (most queues never need it): writers waiting while full.
        self._writers: trio.lowlevel.ParkingLot | None = None
        self._write_streak = 0  # put calls since the writer last yielded

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {len(self.buffer)}/{self.capacity}>"

    # -- writing ----------------------------------------------------------------------------

    def full(self, size: int) -> bool:
        """Whether a value of ``size`` bytes must wait (an empty queue takes any one value)."""
        buffer = self.buffer
        return bool(buffer) and (len(buffer) >= self.capacity or self.bytes + size > self.max_bytes)

    def put_nowait(self, value: T, size: int = 0) -> bool:
        """Queue ``value`` (of ``size`` bytes) if there is room; False (nothing queued) if not.

        The cheap path of a producer that hands over a whole read: :meth:`put` only for the
        value that found the queue full.

        Raises:
            trio.ClosedResourceError: the sending side is closed.
            trio.BrokenResourceError: the receiving side is closed.
        """
        if self._closed:
            self._raise_closed()
        buffer = self.buffer
        used = len(buffer)
        if used and (used >= self.capacity or self.bytes + size > self.max_bytes):
            return False
        buffer.append(value)
        self.sizes.append(size)
        self.bytes += size
        if used >= self.peak:
            self.peak = used + 1
        if self.reader is not None or self.readers:
            self.wake_readers()
        return True

    async def put(self, value: T, size: int = 0) -> None:
        """Queue ``value`` (of ``size`` bytes), waiting while the queue is full by count or
        would pass its byte bound.

        Cancelled while waiting, nothing was queued; once it has returned, the value is.
        Raises like :meth:`put_nowait` when a side is closed, also while it waits.
        """
        await _checkpoint_if_cancelled()
        while not self.put_nowait(value, size):
            if self._writers is None:
                self._writers = trio.lowlevel.ParkingLot()
            await self._writers.park()
        self._write_streak += 1
        if self._write_streak >= HANDOVER_CHUNK:
            self._write_streak = 0
            await _cancel_shielded_checkpoint()

    def grow(self, capacity: int) -> None:
        """Let the queue hold at least ``capacity`` values from now on (never shrinks it)."""
        if capacity > self.capacity:
            self.capacity = capacity
            self.wake_writers()

    def _raise_closed(self) -> NoReturn:
        if self.send_closed:
            raise trio.ClosedResourceError("the send channel is closed")
        raise trio.BrokenResourceError("the receive channel is closed")

    # -- reading ----------------------------------------------------------------------------

    def take(self) -> T:
        """The oldest value, removed (the queue must not be empty); wakes one waiting writer."""
        self.bytes -= self.sizes.popleft()
        writers = self._writers
        if writers:
            writers.unpark()
        return self.buffer.popleft()

    def wait_readable(self) -> Coroutine[object, object, object]:
        """Wait until a value is queued or :meth:`wake_readers` is called; then check again.

        The awaitable is trio's own wait, with no coroutine of this queue around it: it is what
        every idle reader holds while it waits, so it is kept to the fewest objects.
        """
        if self.reader is None:
            self.reader = _current_task()
            return _wait_task_rescheduled(self._abort_read)
        if self.readers is None:
            self.readers = trio.lowlevel.ParkingLot()
        return self.readers.park()

    def wake_readers(self) -> None:
        """Wake every waiting reader (something changed that it should look at)."""
        task = self.reader
        if task is not None:
            self.reader = None
            _reschedule(task)
        others = self.readers
        if others:
            others.unpark_all()

    def wake_writers(self) -> None:
        writers = self._writers
        if writers:
            writers.unpark_all()

    def _read_aborted(self, _: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
        self.reader = None
        return trio.lowlevel.Abort.SUCCEEDED

    # -- closing ----------------------------------------------------------------------------

    def close_send(self) -> None:
        """No more values: readers end once the buffer is empty. Idempotent."""
        self.send_closed = self._closed = True
        self.wake_readers()
        self.wake_writers()

    def close_receive(self) -> None:
        """Nobody reads any more: queued values are dropped, writers get BrokenResourceError."""
        self.receive_closed = self._closed = True
        self.buffer.clear()
        self.sizes.clear()
        self.bytes = 0
        self.wake_readers()
        self.wake_writers()

    def statistics(self) -> trio.MemoryChannelStatistics:
        """The same figures as a trio memory channel's (one sender, one receiver)."""
        readers = self.readers
        return trio.MemoryChannelStatistics(
            current_buffer_used=len(self.buffer),
            max_buffer_size=self.capacity,
            open_send_channels=0 if self.send_closed else 1,
            open_receive_channels=0 if self.receive_closed else 1,
            tasks_waiting_send=len(self._writers or ()),
            tasks_waiting_receive=(self.reader is not None) + len(readers or ()),
            peak_buffer_used=self.peak,
        )


# --------------------------------------------------------------------------------------------
# trio's channel interface
# --------------------------------------------------------------------------------------------


def open_queue(
    capacity: int, max_bytes: int | None = None
) -> tuple[QueueSendChannel[T], QueueReceiveChannel[T]]:
    """A bounded channel whose reads cost no task switch while values are queued.

    It behaves like ``trio.open_memory_channel(capacity)`` with one receiver (no ``clone``;
    several tasks may share either half): ``send`` waits while full, the receiver's
    ``async for`` ends once the sender is closed and the buffer is empty, and a closed receiver
    makes ``send`` raise ``trio.BrokenResourceError``. With ``max_bytes``, the sizes given to
    :meth:`~QueueSendChannel.send_sized` / ``try_send`` are bounded too (an empty buffer takes
    any one value).
    """
    queue: Queue[T] = Queue(capacity, max_bytes)
    return QueueSendChannel(queue), QueueReceiveChannel(queue)


class _Half(Generic[T]):
    """What both halves share: the queue, trio's statistics, ``with`` closing the half."""

    __slots__ = ("_queue",)

    def __init__(self, queue: Queue[T]) -> None:
        self._queue = queue

    def __repr__(self) -> str:
        queue = self._queue
        return f"<{type(self).__name__} {len(queue.buffer)}/{queue.capacity}>"

    def statistics(self) -> trio.MemoryChannelStatistics:
        """The same figures as a trio memory channel's (one sender, one receiver)."""
        return self._queue.statistics()

    @property
    def buffered_bytes(self) -> int:
        """The sizes of the values queued and not yet received, summed."""
        return self._queue.bytes

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close this half (synchronously, like a trio memory channel's ``close``)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()


class QueueSendChannel(_Half[T], trio.abc.SendChannel[T]):
    """The producer half of :func:`open_queue`."""

    __slots__ = ()

    def ensure_capacity(self, capacity: int) -> None:
        """Let the buffer hold at least ``capacity`` values from now on (never shrinks it)."""
        self._queue.grow(capacity)

    def send_nowait(self, value: T) -> None:
        """Queue ``value`` now; ``trio.WouldBlock`` when the buffer is full."""
        if not self._queue.put_nowait(value):
            raise trio.WouldBlock

    def try_send(self, value: T, size: int = 0) -> bool:
        """Queue ``value`` (of ``size`` bytes) if the buffer has room; False (nothing queued)
        when it is full. Raises like ``send`` once either half is closed."""
        return self._queue.put_nowait(value, size)

    async def send(self, value: T) -> None:
        await self._queue.put(value)

    async def send_sized(self, value: T, size: int) -> None:
        """``send`` for a value of ``size`` bytes: waits while the buffer is full by count or
        would pass its byte bound."""
        await self._queue.put(value, size)

    def close(self) -> None:
        """No more values: the receiver ends after draining the buffer. Idempotent."""
        self._queue.close_send()


class QueueReceiveChannel(_Half[T], trio.abc.ReceiveChannel[T]):
    """The consumer half of :func:`open_queue` (``async for`` it)."""

    __slots__ = ("_streak",)

    def __init__(self, queue: Queue[T]) -> None:
        super().__init__(queue)
        self._streak = 0  # receives since this half last yielded

    def receive_nowait(self) -> T:
        """The next value; ``trio.WouldBlock`` if none is queued, ``trio.EndOfChannel`` at the end."""
        queue = self._queue
        if queue.receive_closed:
            raise trio.ClosedResourceError("the receive channel is closed")
        if queue.buffer:
            return queue.take()
        if queue.send_closed:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    async def receive(self) -> T:
        await _checkpoint_if_cancelled()
        queue = self._queue
        buffer = queue.buffer
        while True:
            if queue.receive_closed:
                raise trio.ClosedResourceError("the receive channel is closed")
            if buffer:
                value = queue.take()
                self._streak += 1
                if self._streak >= YIELD_EVERY:
                    self._streak = 0
                    await _cancel_shielded_checkpoint()
                return value
            if queue.send_closed:
                await _cancel_shielded_checkpoint()
                raise trio.EndOfChannel
            self._streak = 0
            await queue.wait_readable()

    def close(self) -> None:
        """Stop receiving: queued values are dropped and the sender gets BrokenResourceError."""
        self._queue.close_receive()
