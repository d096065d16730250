"""The data plane (protocol §12.7, §10): acks, notifications, replay, terminals, compression."""

from __future__ import annotations

import orjson
import trio

from simtrio.server import serve
from simtrio.server.config import ServerConfig
from simtrio.server.data_log import DataLog, LazyNotification, Subscription
from simtrio.wire.rpc import TransactionNotification

from .expected import expected_diffs, expected_transactions, slot_of, terminal
from .helpers import (
    ATOKEN,
    TOKEN,
    FakeConn,
    ZstdReader,
    connect,
    cont,
    create,
    data_plane,
    read_until_terminals,
    run_to_end,
    session_on,
    subscribe,
    upgrade_status,
    wait_until,
)

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


async def test_live_notifications_in_slot_order_then_terminals() -> None:
    config = ServerConfig(seed=31)
    with trio.fail_after(5):
        async with session_on(config, 4000, 4005) as (server, control, session_id):
            async with data_plane(server, session_id) as data:
                await data.send(subscribe(7, TOKEN))
                assert await data.recv_text() == '{"jsonrpc":"2.0","id":7,"result":1}'
                await data.send(subscribe(8, ATOKEN, method="accountDiffSubscribe"))
                assert await data.recv_text() == '{"jsonrpc":"2.0","id":8,"result":2}'
                await wait_until(lambda: server.sessions[session_id].subscriptions == 2)
                await run_to_end(control, 6)
                frames = await read_until_terminals(data, {1, 2})
            slots = range(4000, 4006)
            sub1 = [f for f in frames if '"subscription":1' in f]
            sub2 = [f for f in frames if '"subscription":2' in f]
            assert sub1 == [*expected_transactions(config, TOKEN, slots, 1), terminal(1)]
            assert sub2 == [*expected_diffs(config, ATOKEN, slots, 2), terminal(2)]
            assert len(sub1) > 3
            assert len(sub2) > 3
            notified = [slot_of(f) for f in frames if "Notification" in f]
            assert notified == sorted(notified)


async def test_compressed_stream_decodes_with_python_zstandard() -> None:
    config = ServerConfig(seed=32)
    with trio.fail_after(5):
        async with session_on(config, 4000, 4003) as (server, control, session_id):
            async with data_plane(server, session_id) as data:
                await data.send(subscribe(1, TOKEN, compression=True))
                assert await data.recv() == '{"jsonrpc":"2.0","id":1,"result":1}'
                await run_to_end(control, 4)
                reader = ZstdReader()
                first = await data.recv()
                assert isinstance(first, bytes)
                assert first.startswith(ZSTD_MAGIC)
                texts = [reader.decode(first)]
                texts += await read_until_terminals(data, {1}, reader)
            assert texts == [
                *expected_transactions(config, TOKEN, range(4000, 4004), 1),
                terminal(1),
            ]


async def test_replay_is_inclusive_and_ends_with_the_terminal() -> None:
    config = ServerConfig(seed=33)
    with trio.fail_after(5):
        async with session_on(config, 4000, 4005) as (server, control, session_id):
            await run_to_end(control, 10)
            async with data_plane(server, session_id) as data:
                await data.send(subscribe(1, TOKEN, replay=4002))
                await data.expect('{"jsonrpc":"2.0","id":1,"result":1}')
                frames = await read_until_terminals(data, {1})
                assert frames == [
                    *expected_transactions(config, TOKEN, range(4002, 4006), 1),
                    terminal(1),
                ]
                # Subscribing after the end without a cursor: nothing owed, just the terminal.
                await data.send(subscribe(2, TOKEN, method="accountDiffSubscribe"))
                await data.expect('{"jsonrpc":"2.0","id":2,"result":2}', terminal(2))
                # The connection stays open after a completed (not closed) session.
                await data.send(subscribe(3, ATOKEN, replay=-5))
                await data.expect('{"jsonrpc":"2.0","id":3,"result":3}')
                frames = await read_until_terminals(data, {3})
                assert frames == [
                    *expected_transactions(config, ATOKEN, range(4000, 4006), 3),
                    terminal(3),
                ]


async def test_old_cursor_replays_from_the_oldest_retained_slot() -> None:
    config = ServerConfig(seed=34, retained_slots=5)
    with trio.fail_after(5):
        async with session_on(config, 4000, 4019) as (server, control, session_id):
            await run_to_end(control, 20)
            async with data_plane(server, session_id) as data:
                await data.send(subscribe(1, TOKEN, replay=4000))
                await data.recv_text()
                frames = await read_until_terminals(data, {1})
            assert frames == [
                *expected_transactions(config, TOKEN, range(4015, 4020), 1),
                terminal(1),
            ]


async def test_subscription_started_mid_run_streams_from_the_current_slot() -> None:
    config = ServerConfig(seed=35)
    with trio.fail_after(5):
        async with session_on(config, 4000, 4009) as (server, control, session_id):
            await control.send(cont(4))
            await control.recv_until(lambda t: "readyForContinue" in t)
            async with data_plane(server, session_id) as data:
                await data.send(subscribe(1, TOKEN))
                await data.recv_text()
                await wait_until(lambda: server.sessions[session_id].subscriptions == 1)
                await run_to_end(control, 6)
                frames = await read_until_terminals(data, {1})
            assert frames == [
                *expected_transactions(config, TOKEN, range(4004, 4010), 1),
                terminal(1),
            ]


async def test_unsubscribe_and_rpc_errors() -> None:
    with trio.fail_after(5):
        async with (
            session_on(None, 1, 5) as (server, _control, session_id),
            data_plane(server, session_id) as data,
        ):
            await data.send(subscribe(1, TOKEN))
            await data.expect('{"jsonrpc":"2.0","id":1,"result":1}')
            unsubscribe = '{"jsonrpc":"2.0","id":2,"method":"transactionUnsubscribe","params":[1]}'
            await data.send(unsubscribe)
            await data.expect('{"jsonrpc":"2.0","id":2,"result":true}')
            await data.send(unsubscribe.replace('"id":2', '"id":3'))
            await data.expect('{"jsonrpc":"2.0","id":3,"result":false}')
            await data.send('{"jsonrpc":"2.0","id":4,"method":"slotSubscribe","params":[]}')
            assert orjson.loads(await data.recv_text())["error"]["code"] == -32601
            await data.send('{"jsonrpc":"2.0","id":4,"method":"logsSubscribe","params":[]}')
            assert orjson.loads(await data.recv_text())["error"]["code"] == -32602
            await data.send('{"jsonrpc":"2.0","id":5,"method":"transactionSubscribe"}')
            assert orjson.loads(await data.recv_text())["error"]["code"] == -32602
            await data.send(subscribe(6, "not-a-program"))
            await data.expect(
                '{"jsonrpc":"2.0","id":6,"error":{"code":-32602,"message":"invalid program id"}}'
            )
            await data.send("{{{")
            reply = orjson.loads(await data.recv_text())
            assert reply["id"] is None
            assert reply["error"]["code"] == -32602
            await data.send(subscribe(7, TOKEN))
            await data.expect('{"jsonrpc":"2.0","id":7,"result":2}')


async def test_close_sends_terminals_then_closes_the_data_connection() -> None:
    with trio.fail_after(5):
        async with session_on(None, 1, 50) as (server, control, session_id):
            async with data_plane(server, session_id) as data:
                await data.send(subscribe(1, TOKEN))
                await data.recv_text()
                await wait_until(lambda: server.sessions[session_id].subscriptions == 1)
                await control.send(cont(2))
                await control.recv_until(lambda t: "readyForContinue" in t)
                await control.send('{"method":"closeBacktestSession"}')
                await control.expect('{"method":"success"}')
                frames = await read_until_terminals(data, {1})
                assert frames[-1] == terminal(1)
                reason = await data.expect_closed()
                assert reason is not None
                assert reason.code == 1000
            assert await upgrade_status(server, f"/backtest/{session_id}") == 404


async def test_session_removal_on_disconnect_ends_subscriptions() -> None:
    with trio.fail_after(5):
        async with session_on(None, 1, 50) as (server, control, session_id):
            async with data_plane(server, session_id) as data:
                await data.send(subscribe(1, TOKEN))
                await data.recv_text()
                # No disconnect timeout: closing the control connection removes the session.
                await control.ws.aclose()
                await data.expect(terminal(1))
                await data.expect_closed()
            assert session_id not in server.sessions


async def test_sub_sessions_have_a_data_plane() -> None:
    config = ServerConfig(seed=36)
    with trio.fail_after(5):
        async with serve(config) as server, connect(server) as control:
            await control.send(create(100, 299, parallel=True))
            frames = await control.recv_until(lambda t: "sessionsCreatedV2" in t)
            sub = orjson.loads(frames[-1])["params"]["session_ids"][1]
            async with connect(server, f"/backtest/{sub}") as data:
                await data.send(subscribe(1, TOKEN, replay=200))
                await data.recv_text()
                request = {"sessionId": sub, "request": {"advanceCount": 3}}
                await control.send(
                    orjson.dumps({"method": "continueSessionV1", "params": request}).decode()
                )
                got = []
                for _ in expected_transactions(config, TOKEN, range(200, 203), 1):
                    got.append(await data.recv_text())
                assert got == expected_transactions(config, TOKEN, range(200, 203), 1)


def test_data_log_retention_respects_live_subscriptions() -> None:
    log = DataLog()
    note = LazyNotification(lambda: TransactionNotification(0, 0, {"slot": 0}))
    for s in range(10):
        log.append(("transaction", TOKEN), s, note, 1)
    assert note.text_for(3) == (
        '{"jsonrpc":"2.0","method":"transactionNotification","params":{"subscription":3,'
        '"result":{"slot":0}}}'
    )
    conn = FakeConn()
    sub = Subscription(1, ("transaction", TOKEN), 2, conn)  # type: ignore[arg-type]
    log.subs.add(sub)
    log.trim(8)
    # Slots 2..7 are still owed to the subscription.
    assert log.bucket(("transaction", TOKEN)).base == 2
    assert log.lagging(8)
    conn.stalled = True  # a stalled reader holds nothing back
    assert not log.lagging(8)
    log.trim(8)
    assert log.bucket(("transaction", TOKEN)).base == 8
    event = sub.peek(log)
    assert event is not None
    assert event.slot == 8
    assert sub.overtaken  # what it was owed is gone: not skipped in silence


def test_buckets_nobody_needs_are_dropped_and_renumbered_above_old_positions() -> None:
    log = DataLog()
    note = LazyNotification(lambda: TransactionNotification(0, 0, {"slot": 0}))
    key = ("logs", ATOKEN)
    for s in range(3):
        log.append(key, s, note, 1)
        log.append(("logs", TOKEN), s, note, 1)
    stale = log.end_position(key)
    conn = FakeConn()
    log.subs.add(Subscription(1, ("logs", TOKEN), 0, conn))  # type: ignore[arg-type]
    log.trim(10)
    # The watched bucket stays (empty); the other one is gone.
    assert log.bucket_count == 1
    log.append(key, 11, note, 1)
    sub = Subscription(2, key, stale, conn)  # type: ignore[arg-type]
    event = sub.peek(log)
    assert event is not None
    assert event.slot == 11
