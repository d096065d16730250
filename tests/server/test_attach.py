"""Sequencing, disconnects and attach (protocol §12.5, §6.8)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from simtrio.server import serve

from .helpers import (
    READY,
    STATUS_DECODED,
    STATUS_PREPARING,
    STATUS_READY,
    SUCCESS,
    attach,
    connect,
    cont,
    create,
    numbered,
    session_attached,
    session_created,
    slot,
    wait_until,
)

if TYPE_CHECKING:
    from simtrio.server import ReferenceServer

    from .helpers import WsClient


def _not_found(session_id: str) -> str:
    return '{"method":"error","params":{"SessionNotFound":{"session_id":"' + session_id + '"}}}'


async def _detached_numbered_session(server: ReferenceServer) -> str:
    """A numbered session whose control connection has gone (it waits for an attach)."""
    async with connect(server) as client:
        session_id = await _numbered_session(client)
    await wait_until(lambda: not server.sessions[session_id].attached)
    return session_id


async def _numbered_session(client: WsClient, end: int = 4010) -> str:
    await client.send(create(4000, end, disconnectTimeoutSecs=30))
    created = await client.recv_text()
    session_id = created.split('"session_id":"')[1].split('"')[0]
    assert created == session_created(session_id)
    await client.expect(
        numbered(1, STATUS_PREPARING),
        numbered(2, STATUS_READY),
        numbered(3, slot(4000)),
        numbered(4, READY),
    )
    return session_id


async def test_numbered_responses_and_replay_after_a_cursor() -> None:
    with trio.fail_after(5):
        async with serve() as server:
            async with connect(server) as client:
                session_id = await _numbered_session(client)
                await client.send(cont(2))
                await client.expect(
                    numbered(5, STATUS_DECODED),
                    numbered(6, slot(4001)),
                    numbered(7, slot(4002)),
                    numbered(8, READY),
                )
                await client.send('{"method":"resumeAttachedSession"}')
                await client.expect(SUCCESS)
            await wait_until(lambda: not server.sessions[session_id].attached)
            async with connect(server) as client:
                await client.send(attach(session_id, 6))
                # Readiness (seq 8) is above the cursor: replayed, not re-sent.
                await client.expect(
                    numbered(7, slot(4002)), numbered(8, READY), session_attached(session_id)
                )
                await client.send(cont(1))
                await client.expect(
                    numbered(9, STATUS_DECODED), numbered(10, slot(4003)), numbered(11, READY)
                )


async def test_attach_with_null_cursor_replays_everything() -> None:
    with trio.fail_after(5):
        async with serve() as server:
            session_id = await _detached_numbered_session(server)
            async with connect(server) as client:
                await client.send(attach(session_id, None))
                await client.expect(
                    numbered(1, STATUS_PREPARING),
                    numbered(2, STATUS_READY),
                    numbered(3, slot(4000)),
                    numbered(4, READY),
                    session_attached(session_id),
                )


async def test_readiness_already_seen_is_resent_before_the_attach_reply() -> None:
    with trio.fail_after(5):
        async with serve() as server:
            session_id = await _detached_numbered_session(server)
            async with connect(server) as client:
                # The client saw readyForContinue (seq 4) and its continue was lost.
                await client.send(attach(session_id, 4))
                await client.expect(numbered(5, READY), session_attached(session_id))
                await client.send(cont(1))
                await client.expect(
                    numbered(6, STATUS_DECODED), numbered(7, slot(4001)), numbered(8, READY)
                )


async def test_a_step_in_progress_finishes_without_a_connection() -> None:
    with trio.fail_after(5):
        async with serve() as server:
            async with connect(server) as client:
                session_id = await _numbered_session(client, end=4002)
                await client.send(cont(10))
                await client.expect(numbered(5, STATUS_DECODED))
            await wait_until(lambda: server.sessions[session_id].completed)
            await wait_until(lambda: not server.sessions[session_id].attached)
            async with connect(server) as client:
                await client.send(attach(session_id, 5))
                await client.expect(
                    numbered(6, slot(4001)),
                    numbered(7, slot(4002)),
                    numbered(
                        8, '{"method":"completed","params":{"summary":null,"agent_stats":null}}'
                    ),
                    session_attached(session_id),
                )
                await client.send('{"method":"closeBacktestSession"}')
                await client.expect(numbered(9, SUCCESS))


async def test_a_newer_attach_takes_over() -> None:
    with trio.fail_after(5):
        async with serve() as server, connect(server) as first:
            session_id = await _numbered_session(first)
            async with connect(server) as second:
                await second.send(attach(session_id, 4))
                await second.expect(numbered(5, READY), session_attached(session_id))
                reason = await first.expect_closed()
                assert reason is not None
                assert reason.code == 1000
                await second.send(cont(1))
                await second.expect(
                    numbered(6, STATUS_DECODED), numbered(7, slot(4001)), numbered(8, READY)
                )
                assert server.sessions[session_id].attached


async def test_disconnect_timeout_expiry_removes_the_session(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(100):
        async with serve() as server:
            async with connect(server) as client:
                await client.send(create(1, 9, disconnectTimeoutSecs=20))
                session_id = (await client.recv_text()).split('"session_id":"')[1].split('"')[0]
                await client.recv_until(lambda t: "readyForContinue" in t)
            await wait_until(lambda: not server.sessions[session_id].attached)
            await trio.sleep(19)
            assert session_id in server.sessions
            async with connect(server) as client:
                await client.send(attach(session_id, 4))
                await client.expect(numbered(5, READY), session_attached(session_id))
            await wait_until(lambda: not server.sessions[session_id].attached)
            await trio.sleep(19)
            assert session_id in server.sessions  # the timer restarted on the second disconnect
            await trio.sleep(2)
            assert session_id not in server.sessions
            async with connect(server) as client:
                await client.send(attach(session_id, 4))
                await client.expect(_not_found(session_id))


async def test_without_timeout_a_disconnect_removes_the_session_at_once() -> None:
    with trio.fail_after(5):
        async with serve() as server:
            async with connect(server) as client:
                await client.send(create(1, 9, disconnectTimeoutSecs=0))
                session_id = (await client.recv_text()).split('"session_id":"')[1].split('"')[0]
                await client.expect(STATUS_PREPARING, STATUS_READY, slot(1), READY)
            await wait_until(lambda: session_id not in server.sessions)
            async with connect(server) as client:
                await client.send(attach(session_id, None))
                await client.expect(_not_found(session_id))
                await client.send(attach("backtest_missing", 3))
                await client.expect(_not_found("backtest_missing"))


async def test_unnumbered_session_can_be_taken_over_while_open() -> None:
    with trio.fail_after(5):
        async with serve() as server, connect(server) as first:
            await first.send(create(1, 9))
            session_id = (await first.recv_text()).split('"session_id":"')[1].split('"')[0]
            await first.recv_until(lambda t: "readyForContinue" in t)
            async with connect(server) as second:
                await second.send(attach(session_id, None))
                await second.expect(session_attached(session_id))
                await first.expect_closed()
                await second.send(cont(1))
                await second.expect(STATUS_DECODED, slot(2), READY)


async def test_bad_request_in_a_numbered_session_is_numbered() -> None:
    with trio.fail_after(5):
        async with serve() as server, connect(server) as client:
            await _numbered_session(client)
            await client.send("garbage")
            text = await client.recv_text()
            assert text.startswith('{"seqId":5,"method":"error","params":{"InvalidRequest":')
