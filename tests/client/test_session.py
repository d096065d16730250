"""BacktestSession against scripted fake servers: create, attach and stepping.

Exact frames in, exact frames out.
"""

from __future__ import annotations

import orjson
import pytest
import trio

from simtrio import wire
from simtrio.client import BacktestClient
from simtrio.core.session import ContinueResult, ReadyOutcome
from simtrio.errors import ConnectionClosed, ProtocolError, RemoteError, RequestTimeout
from simtrio.params import Continue
from tests.client.fakes import (
    ATTACHED,
    CREATED,
    READY,
    Peer,
    answer,
    fake_server,
    numbered,
    ready,
    slot,
    status,
)
from tests.client.helpers import KEY, bounded
from tests.client.sessions import (
    COMPLETED,
    CONTINUE_2,
    CREATE_4000,
    ERROR,
    ST,
    UNKNOWN,
    create,
    created_then_dropped,
    opening,
    session_with,
)

# -- create --------------------------------------------------------------------------------------


@bounded()
async def test_create_flow() -> None:
    async with session_with(opening()) as (session, server):
        assert session.session_id == "backtest_1"
        assert session.rpc_endpoint == "/backtest/backtest_1"
        assert not session.is_ready_for_continue  # readyForContinue is buffered, not processed
        assert await session.ensure_ready() is ReadyOutcome.READY
        assert session.is_ready_for_continue
        assert session.last_sequence is None
    assert server.connections[0].received[0] == CREATE_4000


@bounded()
async def test_creation_backlog_is_served_first_and_counted_when_read() -> None:
    async def script(peer: Peer) -> None:
        await peer.recv()
        await peer.send(status("preparingBundle"), CREATED, status("bundleReady", 1))
        await peer.send(slot(4000, 2), ready(3))

    async with session_with(script) as (session, _):
        assert session.last_sequence is None
        assert await session.next_response() == wire.Status(ST.PREPARING_BUNDLE)
        assert session.last_sequence is None
        assert await session.next_response() == wire.Status(ST.BUNDLE_READY)
        assert session.last_sequence == 1
        assert await session.ensure_ready() is ReadyOutcome.READY
        assert session.last_sequence == 3


@bounded()
async def test_create_error_raises_remote_error() -> None:
    async def script(peer: Peer) -> None:
        await peer.recv()
        await peer.send(status("preparingBundle"), '{"method":"error","params":"NoMoreBlocks"}')

    async with fake_server(script) as server:
        with pytest.raises(RemoteError) as info:
            async with BacktestClient(server.url).create_session(create()):
                pytest.fail("unreachable")
        with trio.fail_after(1):
            await server.connections[0].gone.wait()
    assert isinstance(info.value.error, wire.NoMoreBlocks)


@bounded()
async def test_create_connection_closed_before_created() -> None:
    async with fake_server(answer(status("preparingBundle"), close=True)) as server:
        with pytest.raises(ConnectionClosed):
            async with BacktestClient(server.url).create_session(create()):
                pytest.fail("unreachable")


@bounded()
async def test_garbled_frame_before_created_surfaces_when_read() -> None:
    async def script(peer: Peer) -> None:
        await peer.recv()
        await peer.send("not json", CREATED, READY)

    async with session_with(script) as (session, _):
        with pytest.raises(ProtocolError):
            await session.next_response()
        assert await session.ensure_ready() is ReadyOutcome.READY


@bounded(100)
async def test_create_times_out_with_request_timeout(autojump_clock: object) -> None:
    async def script(peer: Peer) -> None:
        await peer.recv()
        await peer.send(status("preparingBundle"))

    async with fake_server(script) as server:
        start = trio.current_time()
        with pytest.raises(RequestTimeout):
            async with BacktestClient(server.url, request_timeout=7).create_session(create()):
                pytest.fail("unreachable")
        assert trio.current_time() - start == pytest.approx(7)


@bounded()
async def test_leaving_the_block_closes_only_the_websocket() -> None:
    async with session_with(opening()) as (session, server):
        await session.ensure_ready()
    with trio.fail_after(1):
        await server.connections[0].gone.wait()
    assert server.connections[0].received == [CREATE_4000]


@bounded()
async def test_leaving_after_the_server_closed_is_not_an_error() -> None:
    async with session_with(created_then_dropped) as (session, _):
        with pytest.raises(ConnectionClosed):
            await session.next_response()


# -- attach --------------------------------------------------------------------------------------


@bounded()
async def test_attach_keeps_the_replay_for_later_reads() -> None:
    async def script(peer: Peer) -> None:
        await peer.recv()
        await peer.send(slot(4002, 7), ready(8), ATTACHED, status("decodedTransactions", 9))

    async with fake_server(script) as server:
        client = BacktestClient(server.url, KEY)
        async with client.attach_session("backtest_1", last_sequence=6) as session:
            assert session.session_id == "backtest_1"
            assert session.last_sequence is None
            assert not session.is_ready_for_continue
            assert await session.next_response() == wire.SlotNotification(4002)
            assert session.last_sequence == 7
            assert await session.ensure_ready() is ReadyOutcome.READY
            assert session.last_sequence == 8
            assert await session.next_response() == wire.Status(ST.DECODED_TRANSACTIONS)
            assert session.last_sequence == 9
    assert server.connections[0].received == [
        '{"method":"attachBacktestSession","params":{"session_id":"backtest_1","last_sequence":6}}'
    ]
    assert server.connections[0].header("X-API-Key") == KEY


@bounded()
async def test_attach_null_cursor_and_numbered_error_in_replay() -> None:
    async def script(peer: Peer) -> None:
        await peer.recv()
        await peer.send(numbered(1, ERROR), ATTACHED)

    async with (
        fake_server(script) as server,
        BacktestClient(server.url).attach_session("backtest_1") as session,
    ):
        response = await session.next_response()
        assert isinstance(response, wire.Error)
        assert session.last_sequence == 1
    sent = orjson.loads(server.connections[0].received[0])
    assert sent["params"] == {"session_id": "backtest_1", "last_sequence": None}


@bounded()
async def test_attach_error_raises_remote_error() -> None:
    async def script(peer: Peer) -> None:
        await peer.recv()
        await peer.send('{"method":"error","params":{"SessionNotFound":{"session_id":"gone"}}}')

    async with fake_server(script) as server:
        with pytest.raises(RemoteError) as info:
            async with BacktestClient(server.url).attach_session("gone", 3):
                pytest.fail("unreachable")
    assert isinstance(info.value.error, wire.SessionNotFound)
    assert info.value.error.is_terminal


# -- ensure_ready --------------------------------------------------------------------------------


@bounded()
async def test_ensure_ready_returns_at_once_when_ready() -> None:
    async with session_with(opening()) as (session, _):
        assert await session.ensure_ready() is ReadyOutcome.READY
        # Nothing else will arrive: a second call must not read.
        assert await session.ensure_ready(timeout=0.5) is ReadyOutcome.READY


@bounded()
async def test_ensure_ready_completed_and_skips_others() -> None:
    async def script(peer: Peer) -> None:
        await peer.recv()
        await peer.send(CREATED, UNKNOWN, slot(4000, 1), numbered(2, COMPLETED))

    async with session_with(script) as (session, _):
        assert await session.ensure_ready() is ReadyOutcome.COMPLETED
        assert session.last_sequence == 2
        assert not session.is_ready_for_continue
        assert await session.ensure_ready() is ReadyOutcome.COMPLETED


@bounded()
async def test_ensure_ready_paused_counts_as_ready() -> None:
    async def script(peer: Peer) -> None:
        await peer.recv()
        await peer.send(CREATED, '{"method":"paused","params":{"slot":4003,"batch_index":2}}')

    async with session_with(script) as (session, _):
        assert await session.ensure_ready() is ReadyOutcome.READY


@bounded()
async def test_ensure_ready_error() -> None:
    async def script(peer: Peer) -> None:
        await peer.recv()
        await peer.send(CREATED, status("bundleReady"), ERROR)

    async with session_with(script) as (session, _):
        with pytest.raises(RemoteError) as info:
            await session.ensure_ready()
        assert isinstance(info.value.error, wire.AdvanceSlotFailed)
        assert info.value.error.slot == 4002


# -- advance / continue_until_ready --------------------------------------------------------------


@bounded()
async def test_advance_counts_slots_until_ready_after_the_count() -> None:
    step = "\n".join(
        [
            status("decodedTransactions", 1),
            slot(4001, 2),
            UNKNOWN,
            ready(3),  # readiness before the count is reached does not end the step
            slot(4002, 4),
            status("executedBlockTransactions", 5),
            ready(6),
        ]
    )
    async with session_with(opening(step)) as (session, server):
        seen: list[wire.BacktestResponse] = []
        assert await session.ensure_ready() is ReadyOutcome.READY
        result = await session.advance(Continue(2), on_response=seen.append)
        assert result == ContinueResult(
            slot_notifications=2,
            last_slot=4002,
            statuses=[ST.DECODED_TRANSACTIONS, ST.EXECUTED_BLOCK_TRANSACTIONS],
            ready_for_continue=True,
        )
        assert len(seen) == 7
        assert wire.UnknownResponse("somethingNew", {"x": 1}) in seen
        assert session.last_sequence == 6
        assert session.is_ready_for_continue
    assert server.connections[0].received[1] == CONTINUE_2


@bounded()
async def test_advance_ends_at_completed_with_summary_and_stats() -> None:
    step = "\n".join([slot(4005, 7), numbered(8, COMPLETED)])
    async with session_with(opening(step)) as (session, _):
        await session.ensure_ready()
        result = await session.advance(wire.ContinueParams(advance_count=10))
        assert result.completed
        assert not result.ready_for_continue
        assert result.slot_notifications == 1
        assert result.summary == wire.SessionSummary(correct_simulation=9, incorrect_simulation=1)
        assert result.agent_stats == [wire.AgentStatsReport(name="arb", slots_processed=5)]
        assert await session.ensure_ready() is ReadyOutcome.COMPLETED


@bounded()
async def test_advance_first_reads_a_buffered_readiness() -> None:
    async def script(peer: Peer) -> None:
        await peer.recv()
        await peer.send(CREATED, status("bundleReady", 1), slot(4000, 2), ready(3))
        await peer.recv()
        await peer.send(slot(4001, 4), ready(5))

    async with session_with(script) as (session, server):
        seen: list[wire.BacktestResponse] = []
        result = await session.advance(Continue(1), on_response=seen.append)
        assert result.slot_notifications == 1
        assert result.last_slot == 4001
        assert result.statuses == []
        assert len(seen) == 5  # the buffered frames went to on_response too, uncounted
        assert session.last_sequence == 5
    assert len(server.connections[0].received) == 2


@bounded()
async def test_advance_error_raises_and_session_stays_usable() -> None:
    async with session_with(opening(ERROR + "\n" + READY, slot(4001) + "\n" + READY)) as (
        session,
        _,
    ):
        await session.ensure_ready()
        with pytest.raises(RemoteError):
            await session.advance(Continue(1))
        assert await session.ensure_ready() is ReadyOutcome.READY
        result = await session.advance(Continue(1))
        assert result.slot_notifications == 1


@bounded()
async def test_continue_until_ready_stops_at_first_readiness() -> None:
    step = "\n".join([slot(4001), READY, slot(4002), READY])
    async with session_with(opening(step)) as (session, server):
        await session.ensure_ready()
        result = await session.continue_until_ready(Continue(3))
        assert result == ContinueResult(
            slot_notifications=1, last_slot=4001, ready_for_continue=True
        )
        # The rest stays buffered for later reads.
        assert await session.next_response() == wire.SlotNotification(4002)
    sent = orjson.loads(server.connections[0].received[1])
    assert sent["params"]["advanceCount"] == 3


@bounded()
async def test_continue_until_ready_completed() -> None:
    async with session_with(opening(COMPLETED)) as (session, _):
        await session.ensure_ready()
        result = await session.continue_until_ready(wire.ContinueParams(5))
        assert result.completed
        assert result.summary is not None
        assert result.summary.correct_simulation == 9


# -- wait_for_status -----------------------------------------------------------------------------


@bounded()
async def test_wait_for_status() -> None:
    async def script(peer: Peer) -> None:
        await peer.recv()
        await peer.send(
            CREATED,
            READY,
            UNKNOWN,
            status("bundleReady", 1),
            status("readyToExecuteUserTransactions", 2),
            status("newPhase", 3),
            slot(4001, 4),
            ERROR,
        )

    async with session_with(script) as (session, _):
        await session.wait_for_status(ST.READY_TO_EXECUTE_USER_TRANSACTIONS)
        assert session.last_sequence == 2
        assert session.is_ready_for_continue
        await session.wait_for_status("newPhase")
        assert session.last_sequence == 3
        with pytest.raises(RemoteError):
            await session.wait_for_status(ST.EXECUTED_BLOCK_TRANSACTIONS)
        assert session.last_sequence == 4
