"""Subscription managers against scripted fake data-plane servers (protocol §9, §10)."""

from __future__ import annotations

import contextlib
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

import orjson
import pytest
import trio
import trio.testing
import trio_websocket

from simtrio.core.backoff import BackoffPolicy
from simtrio.errors import InvalidParams, SubscriptionFailed
from simtrio.events import AccountDiff, Completed, Transaction
from simtrio.managed.config import ConnectionStatus, ManagedConfig
from simtrio.managed.standalone import (
    DataSubscription,
    open_account_diff_subscription,
    open_transaction_subscription,
)
from simtrio.managed.streams import EventStream
from tests.managed.configs import QUICK_RETRY as CONFIG
from tests.managed.scripts import accept, resubscribe
from tests.managed.test_subscriptions_harness import (
    ATOKEN,
    RPC_VECTORS,
    TOKEN,
    FakeConn,
    FakeServer,
    closed_port,
    complete_text,
    diff_text,
    fake_server,
    running_subscriptions,
    slots_of,
)

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable

    from simtrio.managed.session_subscriptions import SessionSubscriptions

FIRST = RPC_VECTORS["account_diff_subscribe_first_connection"]
SECOND = RPC_VECTORS["account_diff_subscribe_second_program"]
RESUB_4002 = RPC_VECTORS["account_diff_resubscribe_after_reconnect"]


def session_subscriptions(
    url: str, stream: EventStream, **options: Any
) -> AbstractAsyncContextManager[SessionSubscriptions]:
    """A single session's subscriptions (no coordinator) with this module's config, running."""
    return running_subscriptions(url, stream, config=CONFIG, **options)


@asynccontextmanager
async def standalone(
    script: Callable[[FakeConn], Awaitable[None]],
    program_ids: list[str],
    *,
    opener: Callable[..., AbstractAsyncContextManager[DataSubscription[Any]]] = (
        open_account_diff_subscription
    ),
    config: ManagedConfig = CONFIG,
    tcp: bool = False,
) -> AsyncGenerator[tuple[FakeServer, DataSubscription[Any]]]:
    """A fake data-plane server running ``script``, and a standalone subscription to it."""
    async with (
        fake_server(script, tcp=tcp) as server,
        opener(server.http_url(), program_ids, config=config) as sub,
    ):
        yield server, sub


async def collect(channel: trio.abc.ReceiveChannel[Any]) -> list[Any]:
    return [item async for item in channel]


async def test_subscribes_in_order_with_exact_texts(autojump_clock: trio.testing.MockClock) -> None:
    async def script(conn: FakeConn) -> None:
        await conn.expect(FIRST)
        await conn.quiet_for(5)  # the second subscribe waits for the first ack
        await conn.ack(1, 7)
        await conn.expect(SECOND)
        await conn.ack(2, 8)
        await conn.diff(7, 4000)
        await conn.diff(8, 4001)
        await conn.complete(7)
        await conn.complete(8)

    async with standalone(script, [TOKEN, ATOKEN]) as (_server, sub):
        got = await collect(sub.notifications)
    assert all(isinstance(item, AccountDiff) for item in got)
    assert [(d.notification.subscription, d.notification.slot) for d in got] == [
        (7, 4000),
        (8, 4001),
    ]
    assert got[0].notification.account is not None
    assert got[0].notification.context.slot == 4000


async def test_notifications_during_later_handshake_are_held_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    handle: list[Any] = []

    async def script(conn: FakeConn) -> None:
        await accept(conn, FIRST)
        await conn.diff(1, 4000)
        await conn.diff(1, 4001, compressed=False)  # Text bypasses the decoder
        await conn.expect(SECOND)
        await conn.diff(1, 4002)
        await trio.sleep(10)
        # Still in the handshake: nothing has been handed to the consumer yet.
        assert handle[0].notifications.statistics().current_buffer_used == 0
        assert handle[0].connection_status is ConnectionStatus.DOWN
        await conn.ack(2, 2)
        await conn.diff(2, 4002)
        await conn.diff(1, 4003)
        await conn.complete(1)
        await conn.complete(2)

    async with standalone(script, [TOKEN, ATOKEN]) as (_server, sub):
        handle.append(sub)
        got = await collect(sub.notifications)
    assert [(d.notification.subscription, d.notification.slot) for d in got] == [
        (1, 4000),
        (1, 4001),
        (1, 4002),
        (2, 4002),
        (1, 4003),
    ]


async def test_decodes_one_zstd_stream_with_context_takeover(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sizes: list[int] = []

    async def script(conn: FakeConn) -> None:
        await conn.expect(RPC_VECTORS["transaction_subscribe_first_connection"])
        await conn.ack(1, 3)
        for slot in range(4000, 4020):
            frame = conn.encoder.encode(
                orjson.dumps(
                    {
                        "jsonrpc": "2.0",
                        "method": "transactionNotification",
                        "params": {
                            "subscription": 3,
                            "result": {
                                "slot": slot,
                                "transaction": {"signatures": ["x" * 88]},
                                "meta": {"err": None, "logMessages": ["Program log: hi"] * 4},
                                "blockTime": 1_700_000_000,
                            },
                        },
                    }
                )
            )
            sizes.append(len(frame))
            await conn.send_binary(frame)
        await conn.complete(3)

    async with standalone(script, [TOKEN], opener=open_transaction_subscription) as (_server, sub):
        got = await collect(sub.notifications)
    assert all(isinstance(item, Transaction) for item in got)
    assert slots_of(got) == list(range(4000, 4020))
    assert got[5].notification.transaction["meta"]["logMessages"][0] == "Program log: hi"
    assert max(sizes[1:]) < sizes[0] // 4  # later frames lean on the shared window


async def test_terminals_end_the_channel_without_waiting_for_the_socket(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server_closed = trio.Event()

    async def script(conn: FakeConn) -> None:
        await accept(conn, FIRST)
        await conn.diff(1, 4000)
        await conn.complete(1)
        await conn.wait_gone()  # the server never closes; the client must
        server_closed.set()

    async with fake_server(script) as server:
        with trio.fail_after(5):
            async with open_account_diff_subscription(
                server.http_url(), [TOKEN], config=CONFIG
            ) as sub:
                got = await collect(sub.notifications)
                assert sub.connection_status is ConnectionStatus.DOWN
            await server_closed.wait()
        assert server.connections[0].close_code == 1000
    assert slots_of(got) == [4000]


async def test_reconnect_replays_from_the_last_delivered_slot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def script(conn: FakeConn) -> None:
        if conn.index == 1:
            await accept(conn, FIRST)
            for slot in (4000, 4001, 4002):
                await conn.diff(1, slot)
            await trio.sleep(1)
            conn.drop()
        else:
            await conn.expect(RESUB_4002)
            await conn.ack(1, 5)
            for slot in (4002, 4003, 4004):
                await conn.diff(5, slot)
            await conn.complete(5)

    async with standalone(script, [TOKEN]) as (server, sub):
        got = await collect(sub.notifications)
        assert sub.cursor == 4004
    assert slots_of(got) == [4000, 4001, 4002, 4002, 4003, 4004]
    assert len(server.connections) == 2


async def test_reconnect_resubscribes_only_incomplete_subscriptions(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def script(conn: FakeConn) -> None:
        if conn.index == 1:
            await accept(conn, FIRST, SECOND)
            await conn.diff(1, 4000)
            await conn.complete(1)
            await conn.diff(2, 4001)
            conn.drop()
        else:
            await accept(conn, resubscribe(4001, ATOKEN))
            await conn.diff(1, 4001)
            await conn.complete(1)

    async with standalone(script, [TOKEN, ATOKEN]) as (server, sub):
        got = await collect(sub.notifications)
    assert slots_of(got) == [4000, 4001, 4001]
    assert len(server.connections[1].received) == 1


async def test_standalone_reconnect_with_nothing_delivered_omits_replay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def script(conn: FakeConn) -> None:
        await conn.expect(FIRST)
        if conn.index == 1:
            conn.drop()
            return
        await conn.ack(1, 1)
        await conn.complete(1)

    async with standalone(script, [TOKEN]) as (server, sub):
        assert await collect(sub.notifications) == []
    assert len(server.connections) == 2


async def test_session_bound_first_reconnect_replays_from_the_start_slot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def script(conn: FakeConn) -> None:
        if conn.index == 1:
            await accept(conn, RPC_VECTORS["transaction_subscribe_first_connection"])
            conn.drop()
        else:
            await accept(conn, RPC_VECTORS["transaction_subscribe_after_reconnect"])
            await conn.tx(1, 4100)
            await conn.complete(1)

    stream = EventStream(8)
    async with (
        fake_server(script) as server,
        trio.open_nursery(),
        session_subscriptions(server.http_url(), stream, start_slot=4100) as subs,
    ):
        subs.subscribe_transactions([TOKEN])
        await subs.wait_all_up()
        subs.complete_after_drain(Completed())
        events = [event async for event in stream.events()]
    assert [type(e) for e in events] == [Transaction, Completed]
    assert isinstance(events[0], Transaction)
    assert events[0].notification.slot == 4100


async def test_corrupt_compressed_frame_reconnects_with_a_fresh_decoder(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def script(conn: FakeConn) -> None:
        if conn.index == 1:
            await accept(conn, FIRST)
            await conn.diff(1, 4000)
            await conn.send_binary(b"\x13\x37 definitely not zstd")
            await conn.diff(1, 4001)  # never read: the connection is already condemned
        else:
            await accept(conn, resubscribe(4000))
            # A new zstd frame from a new encoder: only a fresh decoder can read it.
            await conn.diff(1, 4000)
            await conn.diff(1, 4001)
            await conn.complete(1)

    async with standalone(script, [TOKEN]) as (server, sub):
        got = await collect(sub.notifications)
    assert slots_of(got) == [4000, 4000, 4001]
    assert len(server.connections) == 2


async def test_oversize_compressed_message_reconnects(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limit = 64 * 1024

    async def script(conn: FakeConn) -> None:
        if conn.index == 1:
            await accept(conn, FIRST)
            await conn.diff(1, 4000)
            bomb = conn.encoder.encode(diff_text(1, 4001, pad=4 * 1024 * 1024))
            assert len(bomb) < limit  # small on the wire, huge once decoded
            await conn.send_binary(bomb)
        else:
            await accept(conn, resubscribe(4000))
            await conn.diff(1, 4001)
            await conn.complete(1)

    config = ManagedConfig(
        max_message_size=limit, backoff=BackoffPolicy(initial=0.25, jitter="none")
    )
    async with standalone(script, [TOKEN], config=config) as (server, sub):
        got = await collect(sub.notifications)
    assert slots_of(got) == [4000, 4001]
    assert len(server.connections) == 2


async def test_jsonrpc_error_reply_is_a_transient_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def script(conn: FakeConn) -> None:
        await conn.expect(FIRST)
        if conn.index == 1:
            await conn.send('{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"busy"}}')
            await conn.wait_gone()
            return
        await conn.ack(1, 1)
        await conn.diff(1, 4000)
        await conn.complete(1)

    async with standalone(script, [TOKEN]) as (server, sub):
        got = await collect(sub.notifications)
    assert slots_of(got) == [4000]
    assert len(server.connections) == 2


@pytest.mark.parametrize(
    ("code", "message"), [(-32602, "invalid program id"), (-32601, "method not found")]
)
async def test_invalid_params_or_unknown_method_reply_is_terminal(
    autojump_clock: trio.testing.MockClock, code: int, message: str
) -> None:
    async def script(conn: FakeConn) -> None:
        await conn.expect(FIRST)
        reply = {"jsonrpc": "2.0", "id": 1, "error": {"code": code, "message": message}}
        await conn.send(orjson.dumps(reply).decode())
        await conn.wait_gone()

    start = trio.current_time()
    async with fake_server(script) as server:
        with pytest.raises(SubscriptionFailed) as caught:
            async with open_account_diff_subscription(
                server.http_url(), [TOKEN], config=CONFIG
            ) as sub:
                await collect(sub.notifications)
    assert f"{code}: {message}" in str(caught.value)
    assert len(server.connections) == 1  # no retry
    assert trio.current_time() - start < 1.0
    assert sub.connection_status is ConnectionStatus.FAILED


async def test_unknown_messages_are_dropped(autojump_clock: trio.testing.MockClock) -> None:
    async def script(conn: FakeConn) -> None:
        await accept(conn, FIRST)
        await conn.diff(9, 3999)  # unknown subscription id
        await conn.send_z('{"jsonrpc":"2.0","method":"slotNotification","params":{"x":1}}')
        await conn.tx(1, 3999)  # wrong kind for this manager
        await conn.diff(1, 4000)
        await conn.send_z(complete_text(9))
        await conn.complete(1)

    async with standalone(script, [TOKEN]) as (_server, sub):
        got = await collect(sub.notifications)
    assert slots_of(got) == [4000]


@pytest.mark.parametrize(
    ("pong_timeout", "lost_after"),
    [
        (100.0, 45.0),  # the keepalive deadline: nothing received for 45 s
        (10.0, 25.0),  # the ping at 15 s is not answered within 10 s: found in seconds
    ],
)
async def test_missed_keepalive_reconnects(
    autojump_clock: trio.testing.MockClock, pong_timeout: float, lost_after: float
) -> None:
    lost_at: list[float] = []

    async def script(conn: FakeConn) -> None:
        if conn.index == 1:
            await accept(conn, FIRST)
            await conn.diff(1, 4000)
            conn.stall()  # no reads, no Pongs; TCP stays open
            await trio.sleep_forever()
        lost_at.append(trio.current_time())
        await accept(conn, resubscribe(4000))
        await conn.diff(1, 4001)
        await conn.complete(1)

    config = ManagedConfig(
        keepalive_interval=15,
        keepalive_miss_deadline=45,
        data_pong_timeout=pong_timeout,
        backoff=BackoffPolicy(initial=0.25, jitter="none"),
    )
    start = trio.current_time()
    async with standalone(script, [TOKEN], config=config) as (_server, sub):
        got = await collect(sub.notifications)
    assert slots_of(got) == [4000, 4001]
    assert lost_after <= lost_at[0] - start <= lost_after + 1


async def test_handshake_timeout_reconnects(autojump_clock: trio.testing.MockClock) -> None:
    async def script(conn: FakeConn) -> None:
        await conn.expect(FIRST)
        if conn.index == 1:
            conn.stall()
            await trio.sleep_forever()
        await conn.ack(1, 1)
        await conn.complete(1)

    config = ManagedConfig(handshake_timeout=5, backoff=BackoffPolicy(initial=0.25, jitter="none"))
    start = trio.current_time()
    async with standalone(script, [TOKEN], config=config) as (server, sub):
        assert await collect(sub.notifications) == []
    assert 5 <= trio.current_time() - start < 6
    assert len(server.connections) == 2


async def test_give_up_raises_subscription_failed_and_cancels_the_body(
    autojump_clock: trio.testing.MockClock,
) -> None:
    port = await closed_port()  # real refused connects: nothing a virtual clock can race
    config = ManagedConfig(
        reconnect_max_total=10, backoff=BackoffPolicy(initial=0.5, jitter="none")
    )
    reached_end = False

    async def consume() -> None:
        nonlocal reached_end
        async with open_account_diff_subscription(
            f"http://127.0.0.1:{port}/backtest/x", [TOKEN], config=config
        ) as sub:
            async for _ in sub.notifications:
                pass
            reached_end = True

    start = trio.current_time()
    with pytest.raises(SubscriptionFailed) as info:
        await consume()
    assert type(info.value) is SubscriptionFailed
    assert "gave up" in str(info.value)
    assert not reached_end
    assert 9.9 <= trio.current_time() - start <= 10.1


async def test_give_up_cancels_a_busy_body(autojump_clock: trio.testing.MockClock) -> None:
    port = await closed_port()  # real refused connects: nothing a virtual clock can race
    config = ManagedConfig(backoff=BackoffPolicy(initial=0.01, jitter="none", max_retries=2))
    with pytest.raises(SubscriptionFailed):
        async with open_account_diff_subscription(
            f"http://127.0.0.1:{port}/x", [TOKEN], config=config
        ):
            await trio.sleep_forever()


async def test_fatal_upgrade_rejection_gives_up_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def script(conn: FakeConn) -> None:
        raise AssertionError("never accepted")

    async with fake_server(script, reject=lambda path, attempt: 403) as server:
        with pytest.raises(SubscriptionFailed, match="403"):
            async with open_account_diff_subscription(
                server.http_url(), [TOKEN], config=CONFIG
            ) as sub:
                await collect(sub.notifications)
        assert server.upgrades == {"/backtest/s1": 1}


async def test_body_errors_are_not_wrapped(autojump_clock: trio.testing.MockClock) -> None:
    async def script(conn: FakeConn) -> None:
        await accept(conn, FIRST)

    async def body(url: str) -> None:
        async with open_account_diff_subscription(url, [TOKEN], config=CONFIG) as sub:
            await sub.wait_up()
            raise KeyError("boom")

    async with fake_server(script) as server:
        with pytest.raises(KeyError):
            await body(server.http_url())


async def test_rejects_unusable_arguments() -> None:
    with pytest.raises(InvalidParams, match="expected http:// or https://"):
        async with open_account_diff_subscription("ws://127.0.0.1:1/x", [TOKEN]):
            pass
    with pytest.raises(InvalidParams):
        async with open_transaction_subscription("http://127.0.0.1:1/x", []):
            pass
    with pytest.raises(InvalidParams):
        async with open_transaction_subscription("http://127.0.0.1:1/x", TOKEN):
            pass


async def test_stalled_consumer_back_pressures_the_socket(
    autojump_clock: trio.testing.MockClock,
) -> None:
    total = 600
    pad = 32 * 1024
    done_sending = trio.Event()

    async def script(conn: FakeConn) -> None:
        await accept(conn, FIRST)
        for slot in range(total):
            await conn.diff(1, slot, compressed=False, pad=pad)
        await conn.complete(1, compressed=False)
        done_sending.set()

    config = ManagedConfig(event_buffer=4, backoff=BackoffPolicy(initial=0.25, jitter="none"))
    # The back-pressure is the socket buffers', so this one runs over real TCP.
    async with standalone(script, [TOKEN], config=config, tcp=True) as (server, sub):
        await sub.wait_up()
        await trio.sleep(300)  # far past the keepalive deadline: a slow consumer is no loss
        conn = server.connections[0]
        assert not done_sending.is_set()
        assert conn.sent < total  # the server's sends block: the client stopped reading
        assert sub.notifications.statistics().current_buffer_used <= 4
        got = await collect(sub.notifications)
    assert slots_of(got) == list(range(total))
    assert len(server.connections) == 1


async def test_a_read_is_handed_over_in_order_without_a_switch_per_notification(
    autojump_clock: trio.testing.MockClock,
) -> None:
    total = 300

    async def script(conn: FakeConn) -> None:
        await accept(conn, FIRST)
        texts = [diff_text(1, slot) for slot in range(total)]
        await conn.send_many(texts)  # one write: the client reads them in few batches
        await conn.complete(1, compressed=False)

    rounds = 0

    async def count_rounds() -> None:
        nonlocal rounds
        while True:
            rounds += 1
            await trio.lowlevel.checkpoint()

    async with (
        fake_server(script) as server,
        open_account_diff_subscription(server.http_url(), [TOKEN], config=CONFIG) as sub,
        trio.open_nursery() as nursery,
    ):
        await sub.wait_up()
        nursery.start_soon(count_rounds)
        got = await collect(sub.notifications)
        nursery.cancel_scope.cancel()
    assert slots_of(got) == list(range(total))
    assert sub.cursor == total - 1
    assert rounds < total // 4  # a trio memory channel would take a round per notification


async def test_consumer_closing_the_channel_mid_stream_stops_quietly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sent_before_the_end: list[int] = []

    async def script(conn: FakeConn) -> None:
        await accept(conn, FIRST)
        with contextlib.suppress(trio_websocket.ConnectionClosed):
            for slot in range(5000):  # until the client lets go
                await conn.diff(1, slot)
                sent_before_the_end.append(slot)
                await trio.sleep(0.01)

    async with standalone(script, [TOKEN]) as (server, sub):
        first = await sub.notifications.receive()
        await sub.notifications.aclose()
        with trio.fail_after(60):
            await server.wait_for(lambda: server.connections[0].gone.is_set())
        await trio.testing.wait_all_tasks_blocked()
        assert sub.connection_status is ConnectionStatus.DOWN
    assert slots_of([first]) == [0]
    assert len(server.connections) == 1  # stopped, not reconnected
    assert len(sent_before_the_end) < 5000


async def test_a_recorder_waiting_for_the_disk_is_no_keepalive_loss(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def script(conn: FakeConn) -> None:
        await accept(conn, FIRST)
        for slot in range(3):
            await conn.diff(1, slot)
        await conn.complete(1)

    recorded: list[int] = []

    async def slow_disk(message: Any, program_id: str) -> None:
        recorded.append(message.slot)
        if len(recorded) == 1:
            await trio.sleep(300)  # far past the 45 s keepalive deadline

    stream = EventStream(16)
    async with (
        fake_server(script) as server,
        trio.open_nursery(),
        session_subscriptions(server.http_url(), stream, record=slow_disk) as subs,
    ):
        subs.subscribe_account_diffs([TOKEN])
        await subs.wait_all_up()
        subs.complete_after_drain(Completed())
        events = [event async for event in stream.events()]
    assert slots_of(events[:-1]) == [0, 1, 2]
    assert recorded == [0, 1, 2]
    assert len(server.connections) == 1


async def accept_transactions(conn: FakeConn) -> None:
    """The server side of a first transaction subscription: read it and acknowledge it."""
    await accept(conn, RPC_VECTORS["transaction_subscribe_first_connection"])


@asynccontextmanager
async def barrier_subscriptions(
    script: Callable[[FakeConn], Awaitable[None]],
    control_slot: list[int],
    *,
    stream: EventStream | None = None,
    config: ManagedConfig | None = None,
) -> AsyncGenerator[SessionSubscriptions]:
    """Transactions subscribed and up against ``script``, control plane at ``control_slot[0]``.

    The data lag window is 5 slots unless ``config`` says otherwise.
    """
    async with (
        fake_server(script) as server,
        trio.open_nursery(),
        running_subscriptions(
            server.http_url(),
            EventStream(8) if stream is None else stream,
            start_slot=4100,
            config=ManagedConfig(data_lag_window=5) if config is None else config,
            position=lambda: control_slot[0],
        ) as subs,
    ):
        subs.subscribe_transactions([TOKEN])
        await subs.wait_all_up()
        yield subs


async def test_barrier_holds_a_continue_until_a_stalled_connection_proves_its_position(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def script(conn: FakeConn) -> None:
        await accept_transactions(conn)
        conn.stall()  # no reads, no Pongs
        await trio.sleep_forever()

    control_slot = [4100]
    async with barrier_subscriptions(script, control_slot) as subs:  # nothing to prove yet
        control_slot[0] = 4105
        assert subs.ready_to_continue()  # within the window: no wait, though nothing is proven
        control_slot[0] = 4130
        assert not subs.ready_to_continue()  # 30 slots unproven: a continue waits
        with trio.move_on_after(5) as scope:  # below data_pong_timeout
            await subs.wait_all_up()
        assert scope.cancelled_caught
        assert subs.managers[0].status.value is ConnectionStatus.UP
        subs.stop()


async def test_barrier_never_waits_for_a_consumer_that_is_behind(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The driver waiting in send_continue is the consumer a blocked manager waits for.

    Against a server whose Pong follows the notifications it already sent, the proof sits
    unread behind them while the stream is full; waiting for it would never end.
    """

    async def script(conn: FakeConn) -> None:
        await accept_transactions(conn)
        for slot in range(4101, 4109):  # more than the stream holds
            await conn.tx(1, slot)
        await conn.complete(1)
        await conn.wait_gone()

    control_slot = [4100]
    stream = EventStream(2)
    async with barrier_subscriptions(script, control_slot, stream=stream) as subs:
        with trio.fail_after(60):
            while not subs.managers[0].consumer_behind:
                await trio.testing.wait_all_tasks_blocked()
        control_slot[0] = 4130
        with trio.fail_after(60):
            await subs.wait_all_up()
        subs.complete_after_drain(Completed())
        got = [event async for event in stream.events()]
    slots = [e.notification.slot for e in got if isinstance(e, Transaction)]
    assert slots == list(range(4101, 4109))


async def test_barrier_adds_no_wait_and_few_pings_on_a_healthy_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def script(conn: FakeConn) -> None:
        await accept_transactions(conn)
        await conn.wait_gone()

    control_slot = [4100]
    # The default window of 50 slots: a probe every 25 slots.
    async with barrier_subscriptions(script, control_slot, config=ManagedConfig()) as subs:
        held = 0
        for slot in range(4101, 4301):
            control_slot[0] = slot
            if not subs.ready_to_continue():
                held += 1
            await trio.sleep(0.001)  # the step
        manager = subs.managers[0]
        subs.stop()
    assert held == 0
    # A quiet connection proves itself by probes alone: each half window, one probe claims the
    # slot and the next one, sent as soon as that Pong is in, confirms it.
    assert 2 * (200 // 25) - 2 <= manager.probes <= 2 * (200 // 25) + 2
    assert manager.proven is not None
    assert manager.proven >= 4300 - 25


async def test_a_proof_overtaken_by_older_notifications_is_withdrawn(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A server answering a Ping ahead of its backlog must not leave a proof standing."""
    backlog = trio.Event()

    async def script(conn: FakeConn) -> None:
        await accept_transactions(conn)
        await backlog.wait()  # the Pong of the probe has gone out already
        await conn.tx(1, 4110)
        await conn.tx(1, 4111)
        await conn.wait_gone()

    control_slot = [4100]
    async with barrier_subscriptions(script, control_slot) as subs:
        control_slot[0] = 4160
        with trio.fail_after(5):
            await subs.wait_all_up()  # the probe's Pong proves 4160
        manager = subs.managers[0]
        assert manager.proven == 4160
        backlog.set()
        with trio.fail_after(5):
            while manager.cursor != 4111:
                await trio.testing.wait_all_tasks_blocked()
        # What the late notifications show, no more.
        assert manager.proven == 4110
        subs.stop()
