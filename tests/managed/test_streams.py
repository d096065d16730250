"""EventStream: ordering, back-pressure, cancellation, fairness."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from simtrio.errors import ControlClosed, ControlFailed, InvalidParams, SubscriptionFailed
from simtrio.events import AccountDiff, Completed, Event, ReadyForContinue, Slot
from simtrio.managed.queue import HANDOVER_CHUNK, YIELD_EVERY, open_queue
from simtrio.managed.streams import EventStream
from simtrio.wire.rpc import AccountDiffNotification
from tests.managed.rounds import with_rounds


def diff(slot: int) -> AccountDiff:
    return AccountDiff(AccountDiffNotification(7, slot))


async def read_all(stream: EventStream) -> list[Event]:
    return [event async for event in stream.events()]


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
        open_queue(capacity)


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
        open_queue(4, 0)


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
