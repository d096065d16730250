"""The reference server under abuse: every resource a peer can make it hold is bounded."""

from __future__ import annotations

import orjson
import pytest
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request

from simtrio.server import ReferenceServer, control, serve
from simtrio.server.state import FD_RESERVE, connection_cap

from .helpers import TOKEN, connect, create, http, open_raw, open_session, subscribe, wait_until

HUGE = 100_000_000_000


async def _error_of(client_frame: str, **config: object) -> str:
    """The ``InvalidRequest`` message a create gets from a server configured with ``config``."""
    async with serve(**config) as server, connect(server) as client:  # type: ignore[arg-type]
        await client.send(client_frame)
        reply = await client.recv_json()
    assert reply["method"] == "error", reply
    message: str = reply["params"]["InvalidRequest"]["error"]
    return message


async def test_a_huge_parallel_create_is_refused_before_any_range_is_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_split(start: int, end: int, bundle_size: int) -> list[tuple[int, int]]:
        raise AssertionError(f"split {start}..{end} before checking its size")

    monkeypatch.setattr(control, "split_range", no_split)
    with trio.fail_after(5):
        message = await _error_of(create(1000, 1000 + HUGE, parallel=True))
    assert "100000000001 slots" in message
    assert "at most 1000000" in message
    with trio.fail_after(5):
        message = await _error_of(create(0, 200_000, parallel=True), max_session_slots=10**9)
    assert "2001 sub-sessions" in message
    assert "at most 1024" in message


async def test_a_single_session_range_is_bounded() -> None:
    with trio.fail_after(5):
        message = await _error_of(create(10, 10 + 500), max_session_slots=500)
    assert "501 slots" in message
    with trio.fail_after(5):
        async with serve(max_session_slots=500) as server, connect(server) as client:
            await open_session(client, create(10, 509))


def test_count_ranges_matches_split_range() -> None:
    for start, end, size in [(0, 0, 1), (0, 99, 100), (5, 250, 100), (100, 100, 100),
                             (99, 100, 100), (7, 3, 10), (0, 1000, 7)]:  # fmt: skip
        assert control.count_ranges(start, end, size) == len(control.split_range(start, end, size))


async def test_the_session_cap_refuses_creates_past_it() -> None:
    with trio.fail_after(5):
        async with (
            serve(max_sessions=3) as server,
            connect(server) as first,
            connect(server) as second,
            connect(server) as third,
        ):
            await open_session(first, create(0, 9))
            await second.send(create(0, 250, parallel=True))  # three sub-sessions: too many
            reply = await second.recv_json()
            assert "session limit (3)" in reply["params"]["InvalidRequest"]["error"]
            await open_session(second, create(0, 150, parallel=True))  # two: room for them
            await third.send(create(0, 9))
            reply = await third.recv_json()
            assert "session limit (3)" in reply["params"]["InvalidRequest"]["error"]
            assert len(server.sessions) == 3


async def test_detached_sessions_are_capped_oldest_first() -> None:
    with trio.fail_after(5):
        async with serve(max_detached_sessions=2) as server:
            ids = []
            for _ in range(3):
                async with connect(server) as client:
                    ids.append(await open_session(client, create(0, 9, disconnectTimeoutSecs=600)))
                await wait_until(lambda: not server.sessions[ids[-1]].attached)
            await wait_until(lambda: ids[0] not in server.sessions)
            assert set(server.sessions) == set(ids[1:])


async def test_the_disconnect_timeout_is_capped(autojump_clock: trio.abc.Clock) -> None:
    async with serve(max_disconnect_timeout=30) as server:
        async with connect(server) as client:
            session_id = await open_session(client, create(0, 9, disconnectTimeoutSecs=600))
        await trio.sleep(29)
        assert session_id in server.sessions
        await trio.sleep(2)
        assert session_id not in server.sessions


async def test_a_request_head_that_never_ends_is_cut_off(autojump_clock: trio.abc.Clock) -> None:
    async with serve(handshake_timeout=3) as server:
        stream = await open_raw(server)
        async with stream:
            await stream.send_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            with trio.fail_after(60):
                assert await stream.receive_some(1024) == b""
            assert trio.current_time() >= 3


async def test_connections_past_the_cap_get_503_and_the_rest_are_served() -> None:
    with trio.fail_after(5):
        async with serve(max_connections=2) as server:
            idle = [await open_raw(server) for _ in range(2)]
            await wait_until(lambda: server.tcp_connections == 2)
            status, _, body = await http(server, "GET", "/health")
            assert (status, body) == (503, b"too many connections")
            await idle.pop().aclose()
            await wait_until(lambda: server.tcp_connections == 1)
            status, _, body = await http(server, "GET", "/health")
            assert (status, body) == (200, b"ok")
            for stream in idle:
                await stream.aclose()


def test_the_connection_cap_leaves_room_below_the_descriptor_limit() -> None:
    assert connection_cap(4096, 256) == 256 - FD_RESERVE
    assert connection_cap(100, 1_000_000) == 100
    assert connection_cap(100, None) == 100
    assert connection_cap(100, 10) == 1


async def _raw_websocket(
    server: ReferenceServer, path: str
) -> tuple[trio.abc.Stream, WSConnection]:
    stream = await open_raw(server)
    ws = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(ws.send(Request(host="127.0.0.1", target=path)))
    while True:
        ws.receive_data(await stream.receive_some(65536))
        if any(isinstance(event, AcceptConnection) for event in ws.events()):
            return stream, ws


async def _close_code_after(server: ReferenceServer, raw_frame: bytes) -> int | None:
    """Send ``raw_frame`` on a fresh control connection; the code of the server's Close."""
    stream, ws = await _raw_websocket(server, "/backtest")
    async with stream:
        await stream.send_all(raw_frame)
        while data := await stream.receive_some(65536):
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, CloseConnection):
                    return event.code
    return None


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\x81\x02hi", 1002),  # a client frame must be masked
        (b"\x83\x80\x00\x00\x00\x00", 1002),  # reserved opcode
        (b"\x81\x82\x00\x00\x00\x00\xff\xfe", 1007),  # Text that is not UTF-8
    ],
)
async def test_protocol_violations_get_a_close_frame_with_the_code(frame: bytes, code: int) -> None:
    with trio.fail_after(5):
        async with serve() as server:
            assert await _close_code_after(server, frame) == code


async def test_inbound_messages_are_bounded_per_plane() -> None:
    with trio.fail_after(5):
        async with serve(max_request_size=4096) as server:
            async with connect(server) as client:
                await client.send(create(0, 9, pad="x" * 5000))
                reason = await client.expect_closed()
                assert reason is not None
                assert reason.code == 1009
            async with connect(server) as client:
                session_id = await open_session(client, create(0, 9, disconnectTimeoutSecs=60))
            async with connect(server, f"/backtest/{session_id}") as data:
                await data.send(subscribe(1, TOKEN))
                assert orjson.loads(await data.recv_text())["result"] == 1
                await data.send(subscribe(2, TOKEN) + " " * 70_000)  # over the 64 KiB default
                reason = await data.expect_closed()
                assert reason is not None
                assert reason.code == 1009


async def test_a_refused_create_is_a_typed_error_for_the_client() -> None:
    from simtrio import CreateSession, open_managed_session
    from simtrio.errors import CreateFailed

    with trio.fail_after(5):
        async with serve(max_session_slots=1000) as server:
            with pytest.raises(CreateFailed, match="at most 1000 per create"):
                async with open_managed_session(
                    server.control_url, "key", CreateSession(0, slot_count=HUGE, parallel=False)
                ):
                    pass
