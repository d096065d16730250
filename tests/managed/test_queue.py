"""The queue: trio memory-channel semantics (one body run against both), and what it adds."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

import pytest
import trio
import trio.testing

from simtrio.managed.queue import YIELD_EVERY, QueueReceiveChannel, QueueSendChannel, open_queue
from tests.managed.rounds import with_rounds

if TYPE_CHECKING:
    from collections.abc import Callable

Send: TypeAlias = trio.MemorySendChannel[int] | QueueSendChannel[int]
Receive: TypeAlias = trio.MemoryReceiveChannel[int] | QueueReceiveChannel[int]
Open: TypeAlias = "Callable[[int], tuple[Send, Receive]]"


def memory_channel(capacity: int) -> tuple[Send, Receive]:
    return trio.open_memory_channel[int](capacity)


def queue_channel(capacity: int) -> tuple[Send, Receive]:
    return open_queue(capacity)


@pytest.fixture(params=[memory_channel, queue_channel], ids=["memory", "queue"])
def open_channel(request: pytest.FixtureRequest) -> Open:
    """Each contract test runs against trio's memory channel and against the queue."""
    opener: Open = request.param
    return opener


# --------------------------------------------------------------------------------------------
# The contract: what the queue promises exactly as a trio memory channel does
# --------------------------------------------------------------------------------------------


async def test_delivers_in_order_and_ends_after_the_sender_closes(open_channel: Open) -> None:
    send, receive = open_channel(8)
    for value in range(3):
        await send.send(value)
    send.send_nowait(3)
    send.close()
    send.close()  # idempotent
    assert [value async for value in receive] == [0, 1, 2, 3]
    with pytest.raises(trio.EndOfChannel):
        receive.receive_nowait()
    with pytest.raises(trio.EndOfChannel):
        await receive.receive()


async def test_a_full_buffer_would_block(open_channel: Open) -> None:
    send, receive = open_channel(2)
    send.send_nowait(1)
    send.send_nowait(2)
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


async def test_send_waits_for_room(open_channel: Open) -> None:
    send, receive = open_channel(1)
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


async def test_waiting_senders_are_served_in_order(open_channel: Open) -> None:
    send, receive = open_channel(1)
    send.send_nowait(0)
    async with trio.open_nursery() as nursery:
        for value in (1, 2):
            nursery.start_soon(send.send, value)
            await trio.testing.wait_all_tasks_blocked()
        assert send.statistics().tasks_waiting_send == 2
        got = []
        for _ in range(3):
            got.append(await receive.receive())
            await trio.testing.wait_all_tasks_blocked()
    assert got == [0, 1, 2]


@pytest.mark.parametrize(
    ("waits", "closed", "error"),
    [
        ("send", "receive", trio.BrokenResourceError),
        ("send", "send", trio.ClosedResourceError),
        ("receive", "receive", trio.ClosedResourceError),
        ("receive", "send", trio.EndOfChannel),
    ],
)
async def test_a_close_ends_a_waiting_task(
    open_channel: Open, waits: str, closed: str, error: type[Exception]
) -> None:
    """A task waiting in ``send`` (buffer full) or ``receive`` (empty) learns of a close."""
    send, receive = open_channel(1)
    if waits == "send":
        send.send_nowait(0)

    async def waiter() -> None:
        wait = send.send(1) if waits == "send" else receive.receive()
        with pytest.raises(error):
            await wait

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        stats = send.statistics()
        waiting = (stats.tasks_waiting_send, stats.tasks_waiting_receive)
        assert waiting == ((1, 0) if waits == "send" else (0, 1))
        await (send if closed == "send" else receive).aclose()
    stats = send.statistics()
    assert (stats.tasks_waiting_send, stats.tasks_waiting_receive) == (0, 0)
    if closed == "send":  # what was queued is still delivered
        assert [value async for value in receive] == ([0] if waits == "send" else [])


async def test_after_the_receiver_closes(open_channel: Open) -> None:
    send, receive = open_channel(1)
    send.send_nowait(1)
    receive.close()
    stats = receive.statistics()
    assert stats.current_buffer_used == 0  # what was queued is dropped
    assert stats.open_receive_channels == 0
    assert stats.open_send_channels == 1
    with pytest.raises(trio.BrokenResourceError):
        send.send_nowait(3)
    with pytest.raises(trio.BrokenResourceError):
        await send.send(3)
    with pytest.raises(trio.ClosedResourceError):
        await receive.receive()
    with pytest.raises(trio.ClosedResourceError):
        receive.receive_nowait()
    send.close()
    with pytest.raises(trio.ClosedResourceError):  # its own close comes first
        send.send_nowait(4)


async def test_a_closed_sender_cannot_send(open_channel: Open) -> None:
    send, _receive = open_channel(1)
    with send:
        pass
    with pytest.raises(trio.ClosedResourceError):
        await send.send(1)
    with pytest.raises(trio.ClosedResourceError):
        send.send_nowait(1)
    assert send.statistics().open_send_channels == 0


async def test_async_with_closes_a_half(open_channel: Open) -> None:
    send, receive = open_channel(1)
    async with receive:
        pass
    assert send.statistics().open_receive_channels == 0
    async with send:
        pass
    assert send.statistics().open_send_channels == 0


async def test_send_and_receive_are_cancel_points_that_lose_nothing(open_channel: Open) -> None:
    send, receive = open_channel(2)
    send.send_nowait(1)
    with trio.CancelScope() as scope:
        scope.cancel()
        await receive.receive()
    assert scope.cancelled_caught
    with trio.CancelScope() as scope:
        scope.cancel()
        await send.send(2)  # there is room, but the call is cancelled first
    assert scope.cancelled_caught
    assert receive.statistics().current_buffer_used == 1
    assert await receive.receive() == 1


async def test_a_cancelled_send_queues_nothing(
    open_channel: Open, autojump_clock: trio.testing.MockClock
) -> None:
    send, receive = open_channel(1)
    send.send_nowait(1)
    with trio.move_on_after(1):
        await send.send(2)
    assert send.statistics().tasks_waiting_send == 0
    send.close()
    assert [value async for value in receive] == [1]


async def test_aclose_closes_even_when_cancelled(open_channel: Open) -> None:
    send, _receive = open_channel(1)
    with trio.CancelScope() as scope:
        scope.cancel()
        await send.aclose()
    assert scope.cancelled_caught
    assert send.statistics().open_send_channels == 0


async def test_same_values_in_the_same_order_under_an_interleaved_schedule(
    open_channel: Open,
) -> None:
    values = list(range(500))
    send, receive = open_channel(7)
    got: list[int] = []

    async def producer() -> None:
        async with send:
            for value in values:
                await send.send(value)
                if value % 13 == 0:
                    await trio.lowlevel.checkpoint()

    async def consumer() -> None:
        async for value in receive:
            got.append(value)
            if value % 17 == 0:
                await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer)
        nursery.start_soon(consumer)
    assert got == values


# --------------------------------------------------------------------------------------------
# What the queue adds: a byte bound, a sized cheap path, growth, no switch per queued value
# --------------------------------------------------------------------------------------------


def channel(capacity: int) -> tuple[QueueSendChannel[int], QueueReceiveChannel[int]]:
    return open_queue(capacity)


async def test_try_send_queues_in_order_and_reports_a_full_buffer() -> None:
    send, receive = channel(3)
    await send.send(0)
    assert send.try_send(1)
    send.send_nowait(2)
    assert not send.try_send(3)
    assert send.statistics().peak_buffer_used == 3
    send.close()
    assert [value async for value in receive] == [0, 1, 2]
    with pytest.raises(trio.ClosedResourceError):
        send.try_send(1)


async def test_the_buffer_is_bounded_in_bytes() -> None:
    send: QueueSendChannel[int]
    receive: QueueReceiveChannel[int]
    send, receive = open_queue(1024, 1000)
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


async def test_a_closed_receiver_breaks_try_send() -> None:
    send, receive = channel(1)
    receive.close()
    with pytest.raises(trio.BrokenResourceError):
        send.try_send(3)


async def test_capacity_can_grow_and_wakes_a_waiting_sender() -> None:
    tx: QueueSendChannel[int]
    rx: QueueReceiveChannel[int]
    tx, rx = open_queue(1)
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


async def test_several_waiting_receivers_are_all_served() -> None:
    send, receive = channel(4)
    got: list[int] = []

    async def read_one() -> None:
        got.append(await receive.receive())

    async with trio.open_nursery() as nursery:
        for _ in range(3):  # the first waits in the queue's own slot, the others beside it
            nursery.start_soon(read_one)
        await trio.testing.wait_all_tasks_blocked()
        assert receive.statistics().tasks_waiting_receive == 3
        for value in range(3):
            send.send_nowait(value)
            await trio.testing.wait_all_tasks_blocked()
    assert sorted(got) == [0, 1, 2]


async def test_queued_values_are_read_without_a_switch_each() -> None:
    send, receive = channel(10 * YIELD_EVERY)
    count = 3 * YIELD_EVERY
    for value in range(count):
        assert send.try_send(value)

    async def read() -> list[int]:
        return [await receive.receive() for _ in range(count)]

    got, during = await with_rounds(read)
    assert got == list(range(count))
    assert 2 <= during <= 5


def test_repr_shows_the_fill() -> None:
    send, receive = channel(4)
    send.send_nowait(1)
    assert repr(send) == "<QueueSendChannel 1/4>"
    assert repr(receive) == "<QueueReceiveChannel 1/4>"
