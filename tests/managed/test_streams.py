"""EventStream and the notification channel: ordering, back-pressure, cancellation, fairness."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import trio
import trio.testing

from simtrio.errors import ControlClosed, ControlFailed, InvalidParams, SubscriptionFailed
from simtrio.events import AccountDiff, Completed, Event, ReadyForContinue, Slot
from simtrio.managed.streams import (
    HANDOVER_CHUNK,
    YIELD_EVERY,
    EventStream,
    NotificationReceiveChannel,
    NotificationSendChannel,
    open_notification_channel,
)
from simtrio.wire.rpc import AccountDiffNotification

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

T = TypeVar("T")


def diff(slot: int) -> AccountDiff:
    return AccountDiff(AccountDiffNotification(7, slot))


async def read_all(stream: EventStream) -> list[Event]:
    return [event async for event in stream.events()]


class Ticker:
    """Counts how often it gets to run: once per scheduling round that includes it."""

    def __init__(self) -> None:
        self.ticks = 0

    async def run(self) -> None:
        while True:
            self.ticks += 1
            await trio.lowlevel.checkpoint()


async def with_rounds(work: Callable[[], Awaitable[T]]) -> tuple[T, int]:
    """``work()``'s result, and how many scheduling rounds a busy sibling task got meanwhile."""
    ticker = Ticker()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker.run)
        await trio.lowlevel.checkpoint()  # the ticker is now running
        before = ticker.ticks
        result = await work()
        during = ticker.ticks - before
        nursery.cancel_scope.cancel()
    return result, during


# --------------------------------------------------------------------------------------------
# EventStream: ordering
# --------------------------------------------------------------------------------------------


async def test_control_events_arrive_in_order_and_end_after_completed() -> None:
    stream = EventStream(4)
    stream.put_control(Slot(1))
    stream.put_control(ReadyForContinue())
    stream.put_control(Completed())
    stream.put_control(Slot(2))  # after the terminal: dropped
    assert await read_all(stream) == [Slot(1), ReadyForContinue(), Completed()]
    with pytest.raises(ControlClosed):
        await stream.next_event()


async def test_put_control_batch_keeps_order_and_stops_at_completed() -> None:
    stream = EventStream(4)
    stream.put_control(Slot(0))
    stream.put_control_batch([Slot(1), Slot(2), Completed(), Slot(3)])
    assert stream.terminal_queued
    stream.put_control_batch([Slot(4)])
    assert await read_all(stream) == [Slot(0), Slot(1), Slot(2), Completed()]


async def test_put_control_batch_of_nothing_queues_nothing() -> None:
    stream = EventStream(4)
    stream.put_control_batch([])
    assert not stream.terminal_queued
    stream.put_control(Completed())
    assert await read_all(stream) == [Completed()]


async def test_put_control_batch_wakes_a_waiting_reader() -> None:
    stream = EventStream(4)
    got: list[Event] = []

    async def reader() -> None:
        got.extend(await read_all(stream))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        stream.put_control_batch([Slot(1), Slot(2)])
        await trio.testing.wait_all_tasks_blocked()
        assert got == []  # still iterating: Completed has not come
        stream.put_control_batch([ReadyForContinue(), Completed()])
    assert got == [Slot(1), Slot(2), ReadyForContinue(), Completed()]


async def test_buffered_notifications_precede_completed() -> None:
    stream = EventStream(8)
    assert stream.put_data_nowait(diff(1))
    stream.put_control(Slot(10))
    stream.put_control(Completed())
    assert stream.put_data_nowait(diff(2))  # still before the reader reached the terminal
    assert await read_all(stream) == [Slot(10), diff(1), diff(2), Completed()]


async def test_failure_goes_before_buffered_data_unless_after_data() -> None:
    stream = EventStream(8)
    await stream.put_data(diff(1))
    stream.put_failure(ControlFailed("gone"))
    with pytest.raises(ControlFailed):
        await stream.next_event()
    with pytest.raises(ControlClosed):
        await stream.next_event()

    stream = EventStream(8)
    await stream.put_data(diff(1))
    stream.put_failure(SubscriptionFailed("stalled"), after_data=True)
    assert await stream.next_event() == diff(1)
    with pytest.raises(SubscriptionFailed):
        await stream.next_event()


async def test_close_ends_the_stream_for_a_waiting_reader() -> None:
    stream = EventStream(4)
    async with trio.open_nursery() as nursery:

        async def reader() -> None:
            with pytest.raises(ControlClosed):
                await stream.next_event()

        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        stream.close()
    assert stream.finished


@pytest.mark.parametrize("capacity", [0, -1, True, 1.5])
def test_capacity_must_be_a_positive_int(capacity: Any) -> None:
    with pytest.raises(InvalidParams):
        EventStream(capacity)
    with pytest.raises(InvalidParams):
        open_notification_channel(capacity)


# --------------------------------------------------------------------------------------------
# EventStream: back-pressure and cancellation
# --------------------------------------------------------------------------------------------


async def test_put_data_nowait_reports_a_full_buffer() -> None:
    stream = EventStream(2)
    assert stream.put_data_nowait(diff(1))
    assert stream.put_data_nowait(diff(2))
    assert not stream.put_data_nowait(diff(3))
    assert stream.buffered_data == 2
    assert await stream.next_event() == diff(1)
    assert stream.put_data_nowait(diff(3))


async def test_put_data_waits_for_room() -> None:
    stream = EventStream(2)
    done: list[int] = []

    async def producer() -> None:
        for slot in range(4):
            await stream.put_data(diff(slot))
            done.append(slot)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer)
        await trio.testing.wait_all_tasks_blocked()
        assert done == [0, 1]
        assert await stream.next_event() == diff(0)
        await trio.testing.wait_all_tasks_blocked()
        assert done == [0, 1, 2]
        assert [await stream.next_event() for _ in range(3)] == [diff(1), diff(2), diff(3)]


async def test_the_data_buffer_is_bounded_in_bytes_too() -> None:
    stream = EventStream(1024, data_max_bytes=1000)
    assert stream.put_data_nowait(diff(1), 600)
    assert not stream.put_data_nowait(diff(2), 600)  # room by count, not by bytes
    assert stream.put_data_nowait(diff(2), 400)
    assert stream.buffered_bytes == 1000
    assert not stream.put_data_nowait(diff(3), 1)
    assert await stream.next_event() == diff(1)
    assert stream.buffered_bytes == 400
    assert stream.put_data_nowait(diff(3), 600)
    assert [await stream.next_event() for _ in range(2)] == [diff(2), diff(3)]
    assert stream.buffered_bytes == 0
    assert stream.put_data_nowait(diff(4), 5000)  # an empty buffer takes any one notification
    assert not stream.put_data_nowait(diff(5), 0)


async def test_put_data_waits_for_bytes_to_drain() -> None:
    stream = EventStream(1024, data_max_bytes=1000)
    done: list[int] = []

    async def producer() -> None:
        for slot in range(4):
            await stream.put_data(diff(slot), 400)
            done.append(slot)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer)
        await trio.testing.wait_all_tasks_blocked()
        assert done == [0, 1]
        assert stream.buffered_bytes == 800
        assert await stream.next_event() == diff(0)
        await trio.testing.wait_all_tasks_blocked()
        assert done == [0, 1, 2]
        assert [await stream.next_event() for _ in range(3)] == [diff(1), diff(2), diff(3)]


def test_max_bytes_must_be_a_positive_int() -> None:
    with pytest.raises(InvalidParams, match="max_bytes"):
        EventStream(4, data_max_bytes=0)
    with pytest.raises(InvalidParams, match="max_bytes"):
        open_notification_channel(4, 0)


async def test_cancelled_put_data_queues_nothing() -> None:
    stream = EventStream(1)
    await stream.put_data(diff(1))
    with trio.move_on_after(1) as scope:
        await stream.put_data(diff(2))
    assert scope.cancelled_caught
    stream.put_control(Completed())
    assert await read_all(stream) == [diff(1), Completed()]


async def test_next_event_is_a_cancel_point_that_loses_nothing() -> None:
    stream = EventStream(4)
    stream.put_control(Slot(1))
    with trio.CancelScope() as scope:
        scope.cancel()
        await stream.next_event()
    assert scope.cancelled_caught
    assert await stream.next_event() == Slot(1)


async def test_cancelled_wait_loses_nothing(autojump_clock: trio.testing.MockClock) -> None:
    stream = EventStream(4)
    with trio.move_on_after(5):
        await stream.next_event()
    stream.put_control(Slot(1))
    assert await stream.next_event() == Slot(1)


async def read_one(stream: EventStream, got: list[Event]) -> None:
    got.append(await stream.next_event())


async def test_several_waiting_readers_are_all_served() -> None:
    stream = EventStream(4)
    got: list[Event] = []
    async with trio.open_nursery() as nursery:
        for _ in range(3):  # the first waits in the stream's own slot, the others beside it
            nursery.start_soon(read_one, stream, got)
        await trio.testing.wait_all_tasks_blocked()
        stream.put_control(Slot(1))
        await trio.testing.wait_all_tasks_blocked()
        assert got == [Slot(1)]
        stream.put_control(Slot(2))
        await trio.testing.wait_all_tasks_blocked()
        stream.put_control(Slot(3))
    assert sorted(got, key=repr) == [Slot(1), Slot(2), Slot(3)]


async def test_a_reader_cancelled_while_waiting_leaves_no_trace() -> None:
    stream = EventStream(4)
    got: list[Event] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.next_event)  # waits, then is cancelled
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    # The cancelled reader is gone: the next one waits in its place and gets the event.
    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_one, stream, got)
        await trio.testing.wait_all_tasks_blocked()
        stream.put_control(Slot(1))
    assert got == [Slot(1)]


async def test_the_failure_raised_to_a_reader_is_remembered() -> None:
    stream = EventStream(4)
    error = ControlFailed("gone")
    stream.put_control(Slot(1))
    stream.put_failure(error, after_data=True)
    assert await stream.next_event() == Slot(1)
    assert stream.raised is None  # queued, not raised yet
    with pytest.raises(ControlFailed):
        await stream.next_event()
    assert stream.raised is error


async def test_async_for_ends_on_a_closed_stream_and_raises_failures() -> None:
    stream = EventStream(4)
    stream.close()
    assert await read_all(stream) == []
    stream = EventStream(4)
    stream.put_control(Slot(1))
    stream.put_failure(ControlFailed("gone"), after_data=True)
    got: list[Event] = []

    async def collect() -> None:
        async for event in stream.events():
            got.append(event)

    with pytest.raises(ControlFailed):
        await collect()
    assert got == [Slot(1)]


# --------------------------------------------------------------------------------------------
# EventStream: no task switch per queued event, but no starvation either
# --------------------------------------------------------------------------------------------


async def test_queued_events_are_read_without_a_switch_each_but_with_regular_yields() -> None:
    stream = EventStream(4)
    count = 3 * YIELD_EVERY
    stream.put_control_batch([Slot(i) for i in range(count)])

    async def read() -> list[Event]:
        return [await stream.next_event() for _ in range(count)]

    got, during = await with_rounds(read)
    assert got == [Slot(i) for i in range(count)]
    # One round per YIELD_EVERY events (a trio channel would take one per event).
    assert 2 <= during <= 5


async def test_put_data_yields_every_handover_chunk() -> None:
    stream = EventStream(10 * HANDOVER_CHUNK)

    async def write() -> None:
        for slot in range(3 * HANDOVER_CHUNK):
            await stream.put_data(diff(slot))

    _, during = await with_rounds(write)
    assert 2 <= during <= 5
    assert stream.buffered_data == 3 * HANDOVER_CHUNK


# --------------------------------------------------------------------------------------------
# The notification channel
# --------------------------------------------------------------------------------------------


def channel(capacity: int) -> tuple[NotificationSendChannel[int], NotificationReceiveChannel[int]]:
    return open_notification_channel(capacity)


async def test_channel_delivers_in_order_and_ends_after_the_sender_closes() -> None:
    send, receive = channel(8)
    for value in range(3):
        await send.send(value)
    assert send.try_send(3)
    send.send_nowait(4)
    send.close()
    assert [value async for value in receive] == [0, 1, 2, 3, 4]
    with pytest.raises(trio.EndOfChannel):
        receive.receive_nowait()
    with pytest.raises(trio.EndOfChannel):
        await receive.receive()


async def test_channel_full_buffer() -> None:
    send, receive = channel(2)
    assert send.try_send(1)
    assert send.try_send(2)
    assert not send.try_send(3)
    with pytest.raises(trio.WouldBlock):
        send.send_nowait(3)
    stats = send.statistics()
    assert stats.current_buffer_used == 2
    assert stats.max_buffer_size == 2
    assert stats.peak_buffer_used == 2
    assert receive.receive_nowait() == 1
    assert receive.statistics().current_buffer_used == 1
    assert receive.receive_nowait() == 2
    with pytest.raises(trio.WouldBlock):
        receive.receive_nowait()


async def test_channel_is_bounded_in_bytes() -> None:
    send: NotificationSendChannel[int]
    receive: NotificationReceiveChannel[int]
    send, receive = open_notification_channel(1024, 1000)
    assert send.try_send(1, 700)
    assert not send.try_send(2, 700)
    assert send.buffered_bytes == 700
    sent: list[int] = []

    async def producer() -> None:
        for value in (2, 3):
            await send.send_sized(value, 700)
            sent.append(value)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer)
        await trio.testing.wait_all_tasks_blocked()
        assert sent == []
        assert await receive.receive() == 1
        await trio.testing.wait_all_tasks_blocked()
        assert sent == [2]
        assert receive.buffered_bytes == 700
        assert await receive.receive() == 2
    assert sent == [2, 3]
    receive.close()
    assert receive.buffered_bytes == 0


async def test_channel_send_waits_for_room() -> None:
    send, receive = channel(1)
    sent: list[int] = []

    async def producer() -> None:
        for value in range(3):
            await send.send(value)
            sent.append(value)
        await send.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer)
        await trio.testing.wait_all_tasks_blocked()
        assert sent == [0]
        assert send.statistics().tasks_waiting_send == 1
        got = [value async for value in receive]
    assert got == [0, 1, 2]
    assert sent == [0, 1, 2]


async def test_channel_receiver_gone_breaks_the_sender() -> None:
    send, receive = channel(1)
    send.send_nowait(1)
    async with trio.open_nursery() as nursery:

        async def producer() -> None:
            with pytest.raises(trio.BrokenResourceError):
                await send.send(2)  # waits for room, then learns the receiver is gone

        nursery.start_soon(producer)
        await trio.testing.wait_all_tasks_blocked()
        await receive.aclose()
    assert receive.statistics().current_buffer_used == 0
    with pytest.raises(trio.BrokenResourceError):
        send.try_send(3)
    with pytest.raises(trio.ClosedResourceError):
        await receive.receive()
    with pytest.raises(trio.ClosedResourceError):
        receive.receive_nowait()


async def test_channel_capacity_can_grow_and_wakes_a_waiting_sender() -> None:
    tx: NotificationSendChannel[int]
    rx: NotificationReceiveChannel[int]
    tx, rx = open_notification_channel(1)
    tx.send_nowait(1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tx.send, 2)
        await trio.testing.wait_all_tasks_blocked()
        assert rx.statistics().tasks_waiting_send == 1
        tx.ensure_capacity(3)
    tx.send_nowait(3)
    with pytest.raises(trio.WouldBlock):
        tx.send_nowait(4)
    tx.ensure_capacity(2)  # never shrinks
    assert rx.statistics().max_buffer_size == 3
    assert [rx.receive_nowait() for _ in range(3)] == [1, 2, 3]


async def test_channel_closed_sender_cannot_send() -> None:
    send, _receive = channel(1)
    with send:
        pass
    with pytest.raises(trio.ClosedResourceError):
        await send.send(1)
    with pytest.raises(trio.ClosedResourceError):
        send.try_send(1)
    assert send.statistics().open_send_channels == 0


async def test_channel_sender_close_wakes_a_waiting_receiver() -> None:
    send, receive = channel(1)
    async with trio.open_nursery() as nursery:

        async def consumer() -> None:
            assert [value async for value in receive] == []

        nursery.start_soon(consumer)
        await trio.testing.wait_all_tasks_blocked()
        assert receive.statistics().tasks_waiting_receive == 1
        send.close()


async def test_channel_cancelled_receive_loses_nothing() -> None:
    send, receive = channel(2)
    send.send_nowait(1)
    with trio.CancelScope() as scope:
        scope.cancel()
        await receive.receive()
    assert scope.cancelled_caught
    assert await receive.receive() == 1


async def test_channel_cancelled_send_queues_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    send, receive = channel(1)
    send.send_nowait(1)
    with trio.move_on_after(1):
        await send.send(2)
    send.close()
    assert [value async for value in receive] == [1]


async def test_channel_reads_queued_values_without_a_switch_each() -> None:
    send, receive = channel(10 * YIELD_EVERY)
    count = 3 * YIELD_EVERY
    for value in range(count):
        assert send.try_send(value)

    async def read() -> list[int]:
        return [await receive.receive() for _ in range(count)]

    got, during = await with_rounds(read)
    assert got == list(range(count))
    assert 2 <= during <= 5


async def test_channel_matches_a_memory_channel_under_a_random_schedule() -> None:
    """Same values, same order, as trio's own channel, with producer and consumer interleaved."""
    values = list(range(500))
    results: list[list[int]] = []
    for make in ("notification", "memory"):
        send: Any
        receive: Any
        if make == "notification":
            send, receive = open_notification_channel(7)
        else:
            send, receive = trio.open_memory_channel[int](7)
        got: list[int] = []

        async def producer(send: Any = send) -> None:
            async with send:
                for value in values:
                    await send.send(value)
                    if value % 13 == 0:
                        await trio.lowlevel.checkpoint()

        async def consumer(receive: Any = receive, got: list[int] = got) -> None:
            async for value in receive:
                got.append(value)
                if value % 17 == 0:
                    await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(producer)
            nursery.start_soon(consumer)
        results.append(got)
    assert results[0] == results[1] == values
    assert math.isfinite(len(values))
