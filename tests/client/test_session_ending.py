"""BacktestSession against scripted fake servers: raw access, timeouts, loss and closing.

Exact frames in, exact frames out.
"""

from __future__ import annotations

import logging

import pytest
import trio

from simtrio import wire
from simtrio.backtest_session import GRACEFUL_CLOSE_TIMEOUT
from simtrio.client import BacktestClient
from simtrio.core.session import ReadyOutcome
from simtrio.errors import ConnectionClosed, ProtocolError, RemoteError, RequestTimeout
from simtrio.params import Continue
from tests.client.fakes import (
    CREATED,
    READY,
    SUCCESS,
    Peer,
    fake_server,
    numbered,
    slot,
)
from tests.client.helpers import bounded
from tests.client.sessions import (
    CLOSE,
    COMPLETED,
    CONTINUE_2,
    ST,
    UNKNOWN,
    create,
    created_then_dropped,
    opening,
    session_with,
)

# -- raw access ----------------------------------------------------------------------------------


@bounded()
async def test_send_and_next_response_are_raw() -> None:
    third = trio.Event()

    async def script(peer: Peer) -> None:
        await peer.recv()
        await peer.send(CREATED, READY)
        await peer.recv()
        await peer.send(numbered(1, UNKNOWN), '{"method":"paused","params":{"slot":4003}}')
        await peer.recv()
        third.set()

    async with session_with(script) as (session, server):
        assert await session.next_response() == wire.ReadyForContinue()
        assert session.is_ready_for_continue
        await session.send(wire.ContinueToParams(slot=4003, batch_index=None))
        assert not session.is_ready_for_continue
        assert await session.next_response() == wire.UnknownResponse("somethingNew", {"x": 1})
        assert session.last_sequence == 1  # unknown numbered frames count
        paused = await session.next_response()
        assert paused == wire.Paused(wire.PausedEvent(slot=4003, batch_index=None))
        assert session.is_ready_for_continue
        await session.send(Continue(2))
        assert not session.is_ready_for_continue
        with trio.fail_after(1):
            await third.wait()
    assert server.connections[0].received[1:] == [
        '{"method":"continueTo","params":{"slot":4003,"batchIndex":null}}',
        CONTINUE_2,
    ]


@bounded()
async def test_helpers_skip_unknown_responses(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="simtrio")

    async def script(peer: Peer) -> None:
        await peer.recv()
        await peer.send(CREATED, numbered(5, UNKNOWN), READY)

    async with session_with(script) as (session, _):
        assert await session.ensure_ready() is ReadyOutcome.READY
        assert session.last_sequence == 5
    assert any(
        "somethingNew" in r.getMessage() and r.levelno == logging.DEBUG for r in caplog.records
    )


@bounded()
async def test_protocol_error_propagates_and_connection_stays_usable() -> None:
    async def script(peer: Peer) -> None:
        await peer.recv()
        await peer.send(CREATED, "[1,2]", READY)
        await peer.recv()
        await peer.send(slot(4001), '{"no":"method"}', READY)

    async with session_with(script) as (session, _):
        with pytest.raises(ProtocolError):
            await session.ensure_ready()
        assert await session.ensure_ready() is ReadyOutcome.READY
        with pytest.raises(ProtocolError):
            await session.advance(Continue(1))
        assert await session.ensure_ready() is ReadyOutcome.READY


@bounded()
async def test_binary_messages(caplog: pytest.LogCaptureFixture) -> None:
    async def script(peer: Peer) -> None:
        await peer.recv()
        await peer.send(CREATED, b"\xff\xfe not utf-8", slot(4000).encode(), READY.encode())

    async with session_with(script) as (session, _):
        assert await session.next_response() == wire.SlotNotification(4000)
        assert await session.next_response() == wire.ReadyForContinue()
    assert any("not UTF-8" in r.getMessage() for r in caplog.records)


@bounded()
async def test_oversize_message_fails_the_connection() -> None:
    async def script(peer: Peer) -> None:
        await peer.recv()
        await peer.send(CREATED, '{"method":"x","params":"' + "a" * 5000 + '"}')

    async with fake_server(script) as server:
        client = BacktestClient(server.url, max_message_size=1024)
        async with client.create_session(create()) as session:
            with pytest.raises(ProtocolError):
                await session.next_response()
            with pytest.raises(ConnectionClosed):
                await session.next_response()


# -- timeouts and connection loss ----------------------------------------------------------------


@bounded(100)
async def test_request_timeout(autojump_clock: object) -> None:
    async with session_with(opening(""), request_timeout=4) as (session, _):
        assert await session.ensure_ready() is ReadyOutcome.READY
        start = trio.current_time()
        with pytest.raises(RequestTimeout) as info:
            await session.next_response(timeout=3)
        assert isinstance(info.value, TimeoutError)
        assert trio.current_time() - start == pytest.approx(3)
        start = trio.current_time()
        with pytest.raises(RequestTimeout):
            await session.advance(Continue(1))  # request_timeout applies
        assert trio.current_time() - start == pytest.approx(4)


@bounded(100)
async def test_late_frames_are_kept_after_a_timeout(autojump_clock: object) -> None:
    async def script(peer: Peer) -> None:
        await peer.recv()
        await peer.send(CREATED)
        await trio.sleep(10)
        await peer.send(READY)

    async with session_with(script) as (session, _):
        with pytest.raises(RequestTimeout):
            await session.ensure_ready(timeout=5)
        assert await session.ensure_ready(timeout=10) is ReadyOutcome.READY


@bounded()
async def test_connection_closed_when_the_server_drops_mid_wait() -> None:
    async def script(peer: Peer) -> None:
        await peer.recv()
        await peer.send(CREATED, READY)
        await peer.recv()
        await peer.send(slot(4001))
        peer.drop()

    async with session_with(script) as (session, _):
        await session.ensure_ready()
        with pytest.raises(ConnectionClosed):
            await session.advance(Continue(2))
        with pytest.raises(ConnectionClosed):
            await session.send(Continue(1))


@bounded()
async def test_connection_closed_on_a_clean_server_close() -> None:
    async def script(peer: Peer) -> None:
        await peer.recv()
        await peer.send(CREATED, slot(4000))
        await peer.close()

    async with session_with(script) as (session, _):
        with pytest.raises(ConnectionClosed):
            await session.wait_for_status(ST.BUNDLE_READY)
        # Nothing buffered is lost: the slot was processed before the end was seen.
        with pytest.raises(ConnectionClosed):
            await session.ensure_ready()


# -- close ---------------------------------------------------------------------------------------


@bounded()
async def test_close_success() -> None:
    async with session_with(opening(slot(4001) + "\n" + numbered(9, SUCCESS))) as (session, server):
        await session.close()
        assert session.last_sequence == 9
        with trio.fail_after(1):
            await server.connections[0].gone.wait()
        await session.close()  # repeated: nothing happens
    assert server.connections[0].received[1:] == [CLOSE]


@bounded()
async def test_close_completed_counts_as_reply() -> None:
    async with session_with(opening(COMPLETED)) as (session, server):
        await session.close()
        with trio.fail_after(1):
            await server.connections[0].gone.wait()


@bounded()
async def test_close_error_raises_after_the_socket_is_released() -> None:
    async with session_with(opening('{"method":"error","params":"SessionOwnerMismatch"}')) as (
        session,
        server,
    ):
        with pytest.raises(RemoteError) as info:
            await session.close()
        assert " closed " in repr(session)  # released before the error was raised
        with trio.fail_after(1):
            await server.connections[0].gone.wait()
        with pytest.raises(ConnectionClosed):
            await session.send(Continue(1))
    assert isinstance(info.value.error, wire.SessionOwnerMismatch)


@bounded(100)
async def test_close_without_reply_is_bounded_and_quiet(
    autojump_clock: object, caplog: pytest.LogCaptureFixture
) -> None:
    async with session_with(opening("")) as (session, server):
        start = trio.current_time()
        await session.close()
        assert trio.current_time() - start == pytest.approx(GRACEFUL_CLOSE_TIMEOUT)
        assert server.connections[0].received[1:] == [CLOSE]
    assert any("no reply to closeBacktestSession" in r.getMessage() for r in caplog.records)


@bounded(100)
async def test_close_timeout_defaults(autojump_clock: object) -> None:
    async with session_with(opening(""), request_timeout=2) as (session, _):
        start = trio.current_time()
        await session.close()
        assert trio.current_time() - start == pytest.approx(2)
    async with session_with(opening("")) as (session, _):
        start = trio.current_time()
        await session.close(timeout=1)
        assert trio.current_time() - start == pytest.approx(1)


@bounded(100)
async def test_close_handshake_is_bounded_when_the_server_never_echoes(
    autojump_clock: object,
) -> None:
    async def script(peer: Peer) -> None:
        await peer.recv()
        await peer.send(CREATED, READY)
        await peer.recv()
        await peer.send(SUCCESS)
        await trio.sleep_forever()  # never reads the Close frame, so never echoes it

    async with session_with(script) as (session, _):
        start = trio.current_time()
        await session.close()
        assert trio.current_time() - start <= GRACEFUL_CLOSE_TIMEOUT + 0.01


@bounded()
async def test_close_on_a_dropped_connection_raises_connection_closed() -> None:
    async with session_with(created_then_dropped) as (session, _):
        with pytest.raises(ConnectionClosed):
            await session.next_response()
        with pytest.raises(ConnectionClosed):
            await session.close()
