"""Reconnect coordination across sibling sub-sessions (protocol §9.8)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from simtrio.core.backoff import BackoffPolicy
from simtrio.errors import SubscriptionFailed
from simtrio.managed.config import ConnectionStatus, ManagedConfig
from simtrio.managed.coordinator import ReconnectCoordinator
from simtrio.managed.session_subscriptions import SessionSubscriptions
from simtrio.managed.streams import EventStream
from tests.managed.test_subscriptions_harness import (
    TOKEN,
    FakeConn,
    FakeServer,
    fake_server,
    running_subscriptions,
)

CONFIG = ManagedConfig(backoff=BackoffPolicy(initial=0.25, jitter="none"))

# -- the coordinator on its own ----------------------------------------------------------------


async def test_slot_is_free_when_nothing_streams() -> None:
    coordinator = ReconnectCoordinator()
    with trio.fail_after(1):
        await coordinator.acquire_slot()
    assert coordinator.slot_taken
    coordinator.release_slot()
    assert not coordinator.slot_taken


@pytest.fixture
def coordinator() -> ReconnectCoordinator:
    """A coordinator with one sibling connection streaming."""
    coordinator = ReconnectCoordinator()
    coordinator.stream_started()
    return coordinator


async def test_parks_while_a_sibling_streams_and_one_at_a_time(
    coordinator: ReconnectCoordinator, autojump_clock: trio.testing.MockClock
) -> None:
    order: list[str] = []

    async def parked(name: str) -> None:
        await coordinator.acquire_slot()
        order.append(name)
        await trio.sleep(10)  # connect + subscribe while holding the slot
        coordinator.stream_started()
        coordinator.release_slot()
        await trio.sleep(100)  # streaming
        coordinator.stream_stopped()
        order.append(f"{name} done")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(parked, "b")
        nursery.start_soon(parked, "c")
        await trio.sleep(50)
        assert order == []
        assert coordinator.parked == 2
        coordinator.stream_stopped()  # the streaming sibling goes away
        await trio.sleep(50)
        # Exactly one got through and is now streaming; the other is still parked.
        assert len(order) == 1
        assert coordinator.parked == 1
        assert coordinator.streaming == 1
    assert order == [order[0], f"{order[0]} done", order[2], f"{order[2]} done"]
    assert {order[0], order[2]} == {"b", "c"}
    assert coordinator.streaming == 0
    assert not coordinator.slot_taken


async def test_cancelled_while_parked_leaves_no_trace(
    coordinator: ReconnectCoordinator, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.move_on_after(5):
        await coordinator.acquire_slot()
    assert coordinator.parked == 0
    assert not coordinator.slot_taken
    coordinator.stream_stopped()
    with pytest.raises(RuntimeError):
        coordinator.stream_stopped()


# -- managers sharing a coordinator ------------------------------------------------------------


def sibling(
    server: FakeServer,
    name: str,
    nursery: trio.Nursery,
    coordinator: ReconnectCoordinator,
    *,
    max_total: float | None = None,
) -> tuple[SessionSubscriptions, EventStream]:
    stream = EventStream(16)
    subs = SessionSubscriptions(
        rpc_endpoint=server.http_url(f"/backtest/{name}"),
        start_slot=4000,
        stream=stream,
        config=CONFIG,
        coordinator=coordinator,
        max_total=max_total,
    )
    subs.subscribe_account_diffs([TOKEN])
    subs.close_requests()  # its service ends with its one subscription
    nursery.start_soon(subs.run)
    return subs, stream


async def test_fast_attempts_then_park_until_no_sibling_streams(
    autojump_clock: trio.testing.MockClock,
) -> None:
    finish = {"a": trio.Event(), "b": trio.Event(), "c": trio.Event()}

    async def script(conn: FakeConn) -> None:
        await conn.recv()
        await conn.ack(1, 1)
        await finish[conn.path.rsplit("/", 1)[1]].wait()
        await conn.complete(1)

    def reject(path: str, attempt: int) -> int | None:
        # a is always welcome; b and c are refused until they have parked.
        return 503 if path != "/backtest/a" and attempt <= 3 else None

    coordinator = ReconnectCoordinator()
    async with fake_server(script, reject=reject) as server, trio.open_nursery() as nursery:
        a, _ = sibling(server, "a", nursery, coordinator)
        await a.wait_all_up()
        b, _ = sibling(server, "b", nursery, coordinator)
        c, _ = sibling(server, "c", nursery, coordinator)
        await trio.sleep(120)
        # Three ungated attempts each, then parked while a streams.
        assert server.upgrades == {"/backtest/a": 1, "/backtest/b": 3, "/backtest/c": 3}
        assert coordinator.parked == 2
        assert coordinator.streaming == 1
        assert b.managers[0].status.value is ConnectionStatus.RECONNECTING

        finish["a"].set()
        await server.wait_for(lambda: len(server.connections) == 2)
        await trio.sleep(60)
        # One parked sibling took the slot and streams; the other waits for it.
        first = server.connections[1].path.rsplit("/", 1)[1]
        other = "c" if first == "b" else "b"
        assert server.upgrades[f"/backtest/{other}"] == 3
        assert coordinator.streaming == 1
        assert coordinator.parked == 1

        finish[first].set()
        await server.wait_for(lambda: len(server.connections) == 3)
        assert server.connections[2].path == f"/backtest/{other}"
        finish[other].set()
        for subs in (a, b, c):
            await subs.wait_all_up()
    assert all(subs.managers[0].finished for subs in (a, b, c))
    assert coordinator.streaming == 0


async def test_parked_connection_still_gives_up(autojump_clock: trio.testing.MockClock) -> None:
    async def script(conn: FakeConn) -> None:
        await conn.recv()
        await conn.ack(1, 1)
        await trio.sleep_forever()  # a streams for ever

    def reject(path: str, attempt: int) -> int | None:
        return 503 if path == "/backtest/b" else None

    coordinator = ReconnectCoordinator()
    async with fake_server(script, reject=reject) as server, trio.open_nursery() as nursery:
        a, _ = sibling(server, "a", nursery, coordinator)
        await a.wait_all_up()
        start = trio.current_time()
        _, b_stream = sibling(server, "b", nursery, coordinator, max_total=30)
        with pytest.raises(SubscriptionFailed, match="gave up"):
            await b_stream.next_event()
        assert 29.9 <= trio.current_time() - start <= 30.1
        assert server.upgrades["/backtest/b"] == 3
        assert coordinator.parked == 0
        assert not coordinator.slot_taken
        nursery.cancel_scope.cancel()


async def test_without_a_coordinator_there_is_no_parking(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def script(conn: FakeConn) -> None:
        await conn.recv()
        await conn.ack(1, 1)
        await conn.complete(1)

    async with (
        fake_server(script, reject=lambda path, attempt: 503 if attempt <= 6 else None) as server,
        running_subscriptions(server.http_url(), EventStream(4), config=CONFIG) as subs,
    ):
        subs.subscribe_account_diffs([TOKEN])
        await subs.wait_all_up()
    assert server.upgrades == {"/backtest/s1": 7}
