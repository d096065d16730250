"""Session-bound subscriptions: completion drain, wait_all_up, stop (protocol §9.9)."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

from simtrio.core.backoff import BackoffPolicy
from simtrio.core.drain import STALLED_MESSAGE
from simtrio.errors import ContinueSendFailed, InvalidParams, SubscriptionFailed
from simtrio.events import AccountDiff, Completed, Event, Transaction
from simtrio.managed.config import ConnectionStatus, ManagedConfig
from simtrio.managed.streams import EventStream
from tests.managed.configs import QUICK_RETRY as CONFIG
from tests.managed.test_subscriptions_harness import (
    ATOKEN,
    RPC_VECTORS,
    TOKEN,
    FakeConn,
    FakeServer,
    closed_port,
    fake_server,
    running_subscriptions,
)

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable

    from simtrio.managed.session_subscriptions import SessionSubscriptions

DONE = Completed(None, None)


@asynccontextmanager
async def session(
    server_url: str,
    *,
    config: ManagedConfig = CONFIG,
    start_slot: int | None = 4000,
    max_total: float | None = None,
) -> AsyncGenerator[tuple[SessionSubscriptions, EventStream]]:
    stream = EventStream(config.event_buffer)
    async with running_subscriptions(
        server_url, stream, config=config, start_slot=start_slot, max_total=max_total
    ) as subs:
        yield subs, stream


async def accept_first(conn: FakeConn) -> None:
    """The server side of the first subscription on a connection: read it, acknowledge it."""
    await conn.recv()
    await conn.ack(1, 1)


@asynccontextmanager
async def diffs_up(
    script: Callable[[FakeConn], Awaitable[None]], *, config: ManagedConfig = CONFIG
) -> AsyncGenerator[tuple[FakeServer, SessionSubscriptions, EventStream]]:
    """A session subscribed to account diffs of ``TOKEN`` against ``script``, and up."""
    async with (
        fake_server(script) as server,
        session(server.http_url(), config=config) as (
            subs,
            stream,
        ),
    ):
        subs.subscribe_account_diffs([TOKEN])
        await subs.wait_all_up()
        yield server, subs, stream


async def drain_events(stream: EventStream) -> tuple[list[Event], BaseException | None]:
    got: list[Event] = []
    try:
        async for event in stream.events():
            got.append(event)
    except SubscriptionFailed as exc:
        return got, exc
    return got, None


def slots(items: list[Any]) -> list[int]:
    return [item.notification.slot for item in items if isinstance(item, AccountDiff)]


async def test_drain_delivers_everything_then_completed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    drain_started = trio.Event()

    async def script(conn: FakeConn) -> None:
        first = await conn.recv()
        if first == RPC_VECTORS["account_diff_subscribe_first_connection"]:
            await conn.ack(1, 1)
            await conn.diff(1, 4000)
            await drain_started.wait()
            # Each gap is under the 60 s idle bound; together they are well past it.
            for slot in (4001, 4002, 4003):
                await trio.sleep(50)
                await conn.diff(1, slot)
            await conn.complete(1)
        else:
            assert first == RPC_VECTORS["transaction_subscribe_first_connection"]
            await conn.ack(1, 1)
            await conn.tx(1, 4000)
            await conn.complete(1)

    async with fake_server(script) as server, session(server.http_url()) as (subs, stream):
        subs.subscribe_account_diffs([TOKEN])
        subs.subscribe_transactions([TOKEN])
        await subs.wait_all_up()
        start = trio.current_time()
        subs.complete_after_drain(DONE)
        drain_started.set()
        got, failure = await drain_events(stream)
        assert trio.current_time() - start >= 150
    assert failure is None
    assert got[-1] is DONE
    assert slots(got) == [4000, 4001, 4002, 4003]
    assert sum(isinstance(e, Transaction) for e in got) == 1


async def test_stalled_drain_delivers_what_it_has_then_fails(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def script(conn: FakeConn) -> None:
        await accept_first(conn)
        await conn.diff(1, 4000)
        await conn.diff(1, 4001)
        # No terminal; the socket stays healthy (Pongs flow), so only the drain notices.

    async with diffs_up(script) as (_, subs, stream):
        await trio.sleep(1)
        start = trio.current_time()
        subs.complete_after_drain(DONE)
        got, failure = await drain_events(stream)
        elapsed = trio.current_time() - start
        await trio.testing.wait_all_tasks_blocked()
        assert subs.managers[0].status.value is ConnectionStatus.DOWN  # stopped after the stall
    assert slots(got) == [4000, 4001]
    assert DONE not in got
    assert isinstance(failure, SubscriptionFailed)
    assert str(failure) == STALLED_MESSAGE
    assert 60 <= elapsed < 61


async def test_drain_timeout_is_configurable_while_draining(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with fake_server(accept_first) as server, session(server.http_url()) as (subs, stream):
        subs.set_completion_drain_timeout(30)
        subs.subscribe_account_diffs([TOKEN])
        await subs.wait_all_up()
        start = trio.current_time()
        subs.complete_after_drain(DONE)
        await trio.sleep(1)
        subs.set_completion_drain_timeout(5)
        got, failure = await drain_events(stream)
        assert 5 <= trio.current_time() - start < 6
    assert got == []
    assert isinstance(failure, SubscriptionFailed)
    with pytest.raises(InvalidParams):
        subs.set_completion_drain_timeout(0)


async def test_drain_is_not_stalled_by_a_slow_consumer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def script(conn: FakeConn) -> None:
        await accept_first(conn)
        for slot in range(4000, 4010):
            await conn.diff(1, slot)
        await conn.complete(1)

    config = ManagedConfig(
        event_buffer=2,
        completion_drain_timeout=5,
        backoff=BackoffPolicy(initial=0.25, jitter="none"),
    )
    async with diffs_up(script, config=config) as (_, subs, stream):
        subs.complete_after_drain(DONE)
        got: list[Event] = []
        while True:
            await trio.sleep(20)  # each read comes long after the idle bound
            event = await stream.next_event()
            got.append(event)
            if event is DONE:
                break
    assert slots(got) == list(range(4000, 4010))
    assert got[-1] is DONE


async def test_drain_without_subscriptions_completes_at_once() -> None:
    async with session("http://127.0.0.1:1/x") as (subs, stream):
        await subs.wait_all_up()
        subs.complete_after_drain(DONE)
        assert await stream.next_event() is DONE


async def test_drain_after_terminals_already_arrived(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def script(conn: FakeConn) -> None:
        await accept_first(conn)
        await conn.diff(1, 4000)
        await conn.expect(RPC_VECTORS["account_diff_subscribe_second_program"])
        await conn.ack(2, 2)
        await conn.complete(1)
        await conn.complete(2)

    async with fake_server(script) as server, session(server.http_url()) as (subs, stream):
        subs.subscribe_account_diffs([TOKEN, ATOKEN])
        await subs.wait_all_up()
        manager = subs.managers[0]
        await manager.status.wait_until(lambda _: manager.finished)
        subs.complete_after_drain(DONE)
        got, failure = await drain_events(stream)
    assert failure is None
    assert slots(got) == [4000]
    assert got[-1] is DONE


async def test_give_up_fails_the_stream_and_wait_all_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    port = await closed_port()  # real refused connects: nothing a virtual clock can race
    start = trio.current_time()
    async with session(f"http://127.0.0.1:{port}/x", max_total=10) as (subs, stream):
        subs.subscribe_transactions([TOKEN])
        with pytest.raises(ContinueSendFailed) as info:
            await subs.wait_all_up()
        assert isinstance(info.value.__cause__, SubscriptionFailed)
        assert 9.9 <= trio.current_time() - start <= 10.1
        with pytest.raises(SubscriptionFailed):
            await stream.next_event()
        assert subs.managers[0].status.value is ConnectionStatus.FAILED


async def test_unusable_endpoint_is_fatal(autojump_clock: trio.testing.MockClock) -> None:
    async with session("ftp://example.invalid/x") as (subs, stream):
        subs.subscribe_account_diffs([ATOKEN])
        with pytest.raises(ContinueSendFailed, match="http"):
            await subs.wait_all_up()
        with pytest.raises(SubscriptionFailed):
            await stream.next_event()


async def test_stop_cancels_managers(autojump_clock: trio.testing.MockClock) -> None:
    closed = trio.Event()

    async def script(conn: FakeConn) -> None:
        await accept_first(conn)
        await conn.wait_gone()
        closed.set()

    async with diffs_up(script) as (server, subs, _):
        subs.stop()
        await closed.wait()
        await subs.wait_all_up()  # stopped managers do not block a continue
        assert subs.managers[0].status.value is ConnectionStatus.DOWN
        subs.subscribe_transactions([TOKEN])  # after stop: starts cancelled
        await subs.wait_all_up()
    assert len(server.connections) == 1
