"""Waiting for state: the wait helper and the status cell built on it."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from simtrio.managed.config import ConnectionStatus
from simtrio.managed.status import StatusCell
from simtrio.managed.waiting import Waiters

UP = ConnectionStatus.UP
RECONNECTING = ConnectionStatus.RECONNECTING
FAILED = ConnectionStatus.FAILED
DOWN = ConnectionStatus.DOWN

# -- Waiters -----------------------------------------------------------------------------------


async def test_wait_until_returns_once_the_predicate_holds_after_a_wake() -> None:
    waiters = Waiters()
    state = {"count": 0}
    done: list[int] = []

    async def waiter() -> None:
        await waiters.wait_until(lambda: state["count"] >= 2)
        done.append(state["count"])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        assert len(waiters) == 1
        state["count"] = 1
        waiters.wake()
        await trio.testing.wait_all_tasks_blocked()
        assert done == []  # woken, looked, still waiting
        assert len(waiters) == 1
        state["count"] = 2
        assert done == []  # a change without a wake is not seen
        waiters.wake()
    assert done == [2]
    assert len(waiters) == 0


async def test_wait_until_is_a_checkpoint_even_when_the_predicate_holds() -> None:
    waiters = Waiters()
    with trio.CancelScope() as scope:
        scope.cancel()
        await waiters.wait_until(lambda: True)
    assert scope.cancelled_caught


async def test_wait_until_holds_on_return_after_its_checkpoint() -> None:
    """The predicate is checked after the checkpoint: a change made meanwhile is seen."""
    waiters = Waiters()
    state = {"free": True}

    async def taker() -> None:
        state["free"] = False  # runs during the waiter's checkpoint

    async with trio.open_nursery() as nursery:
        nursery.start_soon(taker)
        order: list[str] = []

        async def waiter() -> None:
            await waiters.wait_until(lambda: state["free"])
            order.append("acquired")

        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        assert order == []
        state["free"] = True
        waiters.wake()
    assert order == ["acquired"]


async def test_a_cancelled_wait_leaves_no_waiter(autojump_clock: trio.testing.MockClock) -> None:
    waiters = Waiters()
    with trio.move_on_after(5) as scope:
        await waiters.wait_until(lambda: False)
    assert scope.cancelled_caught
    assert len(waiters) == 0
    assert repr(waiters) == "<Waiters 0>"
    waiters.wake()  # nobody to wake: nothing happens


async def test_wait_returns_at_the_next_wake() -> None:
    waiters = Waiters()
    woken: list[bool] = []

    async def waiter() -> None:
        await waiters.wait()
        woken.append(True)

    async with trio.open_nursery() as nursery:
        for _ in range(2):
            nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        assert woken == []
        waiters.wake()
    assert woken == [True, True]


# -- StatusCell --------------------------------------------------------------------------------


async def test_status_cell_wakes_waiters_and_returns_a_matching_value() -> None:
    cell = StatusCell()
    got: list[ConnectionStatus] = []

    async def waiter() -> None:
        got.append(await cell.wait_until(lambda value: value is UP))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        cell.set(RECONNECTING)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        cell.set(UP)
    assert got == [UP]
    assert repr(cell) == "StatusCell(UP)"


async def test_status_cell_value_changed_during_the_checkpoint_is_not_returned() -> None:
    """A status that stops matching during the wait's checkpoint is waited out, not returned.

    Whether the other task runs before or after the waiter in a scheduling round is up to
    trio's scheduler, so the race is run often enough to meet both orders.
    """
    for _ in range(40):
        cell = StatusCell(UP)
        go = trio.Event()
        got: list[ConnectionStatus] = []

        async def lose(cell: StatusCell = cell, go: trio.Event = go) -> None:
            await go.wait()
            cell.set(RECONNECTING)
            await trio.testing.wait_all_tasks_blocked()
            cell.set(UP)  # back again: a waiter that saw the loss returns now

        async with trio.open_nursery() as nursery:
            nursery.start_soon(lose)
            await trio.testing.wait_all_tasks_blocked()
            go.set()  # the loss happens in the same round as the wait's checkpoint
            with trio.fail_after(5):
                got.append(await cell.wait_until(lambda value: value is UP))
        assert got == [UP]


@pytest.mark.parametrize("later", [UP, DOWN, RECONNECTING])
def test_failed_is_final(later: ConnectionStatus) -> None:
    cell = StatusCell(UP)
    error = RuntimeError("gone")
    cell.set(FAILED, error)
    cell.set(later, RuntimeError("later"))
    assert cell.value is FAILED
    assert cell.failure is error
