"""Fault injection (protocol §12.9): one test per setting, plus restart and random plans."""

from __future__ import annotations

import orjson
import pytest
import trio
import trio_websocket
import zstandard

from simtrio.server import FaultKind, FaultPlan, Faults, Plane, random_fault_plan, serve
from simtrio.server.config import ServerConfig
from simtrio.server.conn import CORRUPT_MESSAGE, MALFORMED_MESSAGE

from .helpers import (
    READY,
    STATUS_PREPARING,
    STATUS_READY,
    TOKEN,
    ZstdReader,
    ack,
    attach,
    connect,
    cont,
    create,
    data_session,
    numbered,
    open_session,
    session_attached,
    slot,
    subscribe,
    upgrade_status,
    wait_until,
)

ZSTD_SUBSCRIBE = subscribe(1, TOKEN, compression=True)


def _session_id(created: str) -> str:
    return str(orjson.loads(created)["params"]["session_id"])


async def test_drop_after_closes_without_a_close_frame() -> None:
    plan = FaultPlan(control_connections={1: Faults(drop_after=2)})
    with trio.fail_after(5):
        async with serve(faults=plan) as server:
            async with connect(server) as client:
                await client.send(create(1, 9, disconnectTimeoutSecs=30))
                session_id = _session_id(await client.recv_text())
                await client.expect(numbered(1, STATUS_PREPARING))
                reason = await client.expect_closed()
                assert reason is not None
                assert reason.code == 1006  # abnormal closure: no Close frame was sent
            assert session_id in server.sessions
            async with connect(server) as client:  # connection 2 runs clean
                await client.send(attach(session_id, 1))
                await client.expect(
                    numbered(2, STATUS_READY), numbered(3, slot(1)), numbered(4, READY)
                )
                await client.expect(session_attached(session_id))


async def test_drop_after_zero_drops_right_after_the_upgrade() -> None:
    with trio.fail_after(5):
        async with (
            serve(faults=FaultPlan(data=Faults(drop_after=0))) as server,
            connect(server) as control,
        ):
            session_id = await open_session(control, create(1, 9))
            async with connect(server, f"/backtest/{session_id}") as data:
                await data.expect_closed()
            # The control plane is unaffected.
            await control.send(cont(1))
            await control.recv_until(lambda t: t == READY)


async def test_stall_for_holds_messages_and_pongs(autojump_clock: trio.abc.Clock) -> None:
    plan = FaultPlan(control=Faults(stall_after=1, stall_for=10.0))
    with trio.fail_after(60):
        async with serve(faults=plan) as server, connect(server) as client:
            await client.send(create(1, 9))
            await client.recv_text()
            start = trio.current_time()
            await client.ws.ping(b"are-you-there")
            assert trio.current_time() - start >= 10.0
            await client.expect(STATUS_PREPARING, STATUS_READY, slot(1), READY)


async def test_stall_forever_keeps_tcp_open_and_does_not_block_the_session(
    autojump_clock: trio.abc.Clock,
) -> None:
    plan = FaultPlan(data=Faults(stall_after=1))
    with trio.fail_after(600):
        async with data_session(ServerConfig(faults=plan), 1, 400, subscribe(1, TOKEN)) as live:
            await live.control.send(cont(400))
            await live.control.recv_until(lambda t: "completed" in t)
            with trio.move_on_after(100):
                message = await live.data.recv(timeout=200)
                raise AssertionError(f"stalled connection sent {message!r:.60}")
            assert live.server.open_connections == 2
            live.server.restart()
            await live.data.expect_closed()


async def test_delay_before_each_message(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(60):
        async with (
            serve(faults=FaultPlan(control=Faults(delay=2.0))) as server,
            connect(server) as client,
        ):
            start = trio.current_time()
            await client.send(create(1, 9))
            await client.recv_texts(5)
            assert trio.current_time() - start >= 10.0


async def test_malformed_at_adds_a_non_json_message() -> None:
    with trio.fail_after(5):
        async with (
            serve(faults=FaultPlan(control=Faults(malformed_at=2))) as server,
            connect(server) as client,
        ):
            await client.send(create(1, 9))
            await client.recv_text()
            await client.expect(MALFORMED_MESSAGE, STATUS_PREPARING, STATUS_READY)
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(MALFORMED_MESSAGE)


async def test_oversize_text_message() -> None:
    plan = FaultPlan(control_connections={1: Faults(oversize_at=1, oversize_bytes=5000)})
    with trio.fail_after(5):
        async with serve(faults=plan, max_message_size=1024 * 1024) as server:
            async with connect(server) as client:
                await client.send(create(1, 9))
                big = await client.recv_text()
                assert len(big) == 5000
                assert orjson.loads(big)["method"] == "simtrioPadding"
                assert '"method":"sessionCreated"' in await client.recv_text()
            # Default size: one byte over the server's own limit (1 MiB here).
            server.set_faults(FaultPlan(control=Faults(oversize_at=1)))
            async with connect(server, max_message_size=1024 * 1024) as client:
                await client.send(create(1, 9))
                reason = await client.expect_closed(timeout=10)
                assert reason is not None
                assert reason.code == 1009  # bigger than the client's limit


async def test_oversize_compressed_message_decodes_past_the_limit() -> None:
    plan = FaultPlan(data=Faults(oversize_at=2, oversize_bytes=200_000))
    with trio.fail_after(5):
        async with data_session(ServerConfig(faults=plan), 1, 9, ZSTD_SUBSCRIBE) as live:
            await live.control.send(cont(9))
            reader = ZstdReader()
            bomb = await live.data.recv_binary()
            assert len(bomb) < 10_000
            assert len(reader.decode(bomb)) == 200_000
            # The stream carries on: the real notification decodes after it.
            real = await live.data.recv_binary()
            assert '"method":"transactionNotification"' in reader.decode(real)


async def test_corrupt_compressed_message() -> None:
    plan = FaultPlan(data=Faults(corrupt_compressed_at=2))
    with trio.fail_after(5):
        async with data_session(ServerConfig(faults=plan), 1, 30, ZSTD_SUBSCRIBE) as live:
            await live.control.send(cont(30))
            reader = ZstdReader()
            first = await live.data.recv_binary()
            assert reader.decode(first).startswith('{"jsonrpc":"2.0"')
            second = await live.data.recv()
            assert second == CORRUPT_MESSAGE
            try:
                decoded = reader.decode(second)
            except zstandard.ZstdError:
                decoded = None
            assert not decoded


async def test_reject_upgrade_per_connection_index() -> None:
    plan = FaultPlan(
        control_connections={1: Faults(reject_upgrade=503)},
        data=Faults(reject_upgrade=429),
    )
    with trio.fail_after(5):
        async with serve(faults=plan) as server:
            assert await upgrade_status(server, "/backtest") == 503
            async with connect(server) as control:
                session_id = await open_session(control, create(1, 9))
                assert await upgrade_status(server, f"/backtest/{session_id}") == 429
                assert await upgrade_status(server, f"/backtest/{session_id}") == 429
            assert server.connection_count(Plane.CONTROL) == 2
            assert server.connection_count("data") == 2


async def test_restart_drops_connections_and_keeps_sessions() -> None:
    with trio.fail_after(5):
        async with serve() as server, connect(server) as control:
            await control.send(create(1, 9, disconnectTimeoutSecs=30))
            session_id = _session_id(await control.recv_text())
            await control.recv_until(lambda t: "readyForContinue" in t)
            async with connect(server, f"/backtest/{session_id}") as data:
                await data.call(subscribe(1, TOKEN), ack(1, 1))
                server.restart()
                reason = await control.expect_closed()
                assert reason is not None
                assert reason.code == 1006
                await data.expect_closed()
            assert session_id in server.sessions
            await wait_until(lambda: server.open_connections == 0)
            async with connect(server) as again:
                await again.send(attach(session_id, 4))
                await again.expect(numbered(5, READY), session_attached(session_id))


async def test_set_faults_applies_to_new_connections() -> None:
    with trio.fail_after(5):
        async with serve() as server, connect(server) as first:
            server.set_faults(FaultPlan(control=Faults(drop_after=0)))
            assert server.faults.control.drop_after == 0
            await first.send(create(1, 2))
            assert '"sessionCreated"' in await first.recv_text()
            async with connect(server) as second:
                await second.expect_closed()


def test_plan_lookup_and_validation() -> None:
    plan = FaultPlan(control=Faults(delay=1.0), data_connections={2: Faults(drop_after=3)})
    assert plan.for_connection(Plane.CONTROL, 5) == Faults(delay=1.0)
    assert plan.for_connection(Plane.DATA, 2) == Faults(drop_after=3)
    assert plan.for_connection(Plane.DATA, 1) == Faults()
    assert not Faults().active
    assert Faults(malformed_at=1).active
    with pytest.raises(ValueError, match="counts from 1"):
        Faults(malformed_at=0)
    with pytest.raises(ValueError, match="HTTP status"):
        Faults(reject_upgrade=200)


def test_random_plans_are_reproducible() -> None:
    a = random_fault_plan(42, connections=6)
    assert a == random_fault_plan(42, connections=6)
    plans = {repr(random_fault_plan(seed, connections=6)) for seed in range(20)}
    assert len(plans) > 10
    assert all(index <= 6 for index in a.control_connections)
    only_data = random_fault_plan(7, planes=[Plane.DATA], probability=1.0, kinds=[FaultKind.DROP])
    assert not only_data.control_connections
    assert len(only_data.data_connections) == 4
    assert all(f.drop_after is not None for f in only_data.data_connections.values())
    every_kind = list(FaultKind)
    plan = random_fault_plan(3, connections=40, probability=1.0, kinds=every_kind)
    assert len(plan.control_connections) == 40


async def test_pings_are_answered_without_faults() -> None:
    with trio.fail_after(5):
        async with serve() as server, connect(server) as client:
            await client.ws.ping(b"p")
            server.restart()
            with pytest.raises(trio_websocket.ConnectionClosed):
                await client.recv()
