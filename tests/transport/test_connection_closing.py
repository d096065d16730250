"""The trio shell, ending: closing, keepalive, failures of an open connection, floods.

Raw peers run in memory through the stream-opener seam unless a test is about real sockets
(TLS, resets); trio-websocket peers listen on 127.0.0.1.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import pytest
import trio
import trio.lowlevel
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    Pong as PongEvent,
    Request,
    TextMessage,
)

from simtrio.errors import ConnectionClosed, ProtocolError
from simtrio.transport.connection import (
    BURST_RECEIVE_SIZE,
    RECEIVE_SIZE,
    WebSocketConnection,
    connect,
    open_connection,
)
from simtrio.transport.engine import ClientEngine
from simtrio.transport.events import Accepted
from tests.transport.peers import (
    accept_raw,
    drain,
    echo_handler,
    flood,
    late_then_echo,
    recording_close_codes,
    tcp_server,
    ws_server,
)

if TYPE_CHECKING:
    import ssl

    from trio_websocket import WebSocketRequest

    pass

# --- closing --------------------------------------------------------------------------------


async def test_peer_close_after_messages() -> None:
    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        for i in range(5):
            await ws.send_message(f"m{i}")
        await ws.aclose(code=4001, reason="done")

    async with ws_server(handler) as url, open_connection(url, connect_timeout=5) as conn:
        got: list[str | bytes] = []
        with pytest.raises(ConnectionClosed, match="4001"):
            await drain(conn, got)
        assert got == [f"m{i}" for i in range(5)]
        assert conn.closed
        assert conn.close_code == 4001
        with pytest.raises(ConnectionClosed):
            await conn.send_text("late")
        with pytest.raises(ConnectionClosed):
            await conn.receive()


async def test_messages_and_close_in_one_read_are_returned_before_the_error() -> None:
    async def handler(stream: trio.SocketStream) -> None:
        ws, _ = await accept_raw(stream)
        await stream.send_all(
            ws.send(TextMessage(data="a"))
            + ws.send(TextMessage(data="b"))
            + ws.send(CloseConnection(code=1000))
        )
        await stream.receive_some()  # our echo
        await stream.aclose()

    async with (
        tcp_server(handler) as port,
        open_connection(f"ws://127.0.0.1:{port}", connect_timeout=5) as conn,
    ):
        got: list[str | bytes] = []
        while not conn.closed or not got:
            got += await conn.receive_batch()
        assert got == ["a", "b"]
        with pytest.raises(ConnectionClosed):
            await conn.receive_batch()
        assert conn.close_code == 1000


async def test_eof_without_close_frame() -> None:
    async def handler(stream: trio.SocketStream) -> None:
        ws, _ = await accept_raw(stream)
        await stream.send_all(ws.send(TextMessage(data="only")))
        await stream.aclose()

    async with (
        tcp_server(handler) as port,
        open_connection(f"ws://127.0.0.1:{port}", connect_timeout=5) as conn,
    ):
        assert await conn.receive() == "only"
        with pytest.raises(ConnectionClosed, match="without a Close frame"):
            await conn.receive()
        assert conn.close_code is None


async def test_aclose_completes_the_close_handshake() -> None:
    codes: list[int | None] = []
    handler = recording_close_codes(codes, done := trio.Event())

    async with ws_server(handler) as url:
        conn = await connect(url, connect_timeout=5)
        await conn.aclose(code=4000)
        assert conn.closed
        await conn.aclose()  # idempotent
        await conn.abort()
        with pytest.raises(ConnectionClosed):
            await conn.send_text("x")
        with trio.fail_after(5):
            await done.wait()
    assert codes == [4000]


async def test_aclose_is_bounded_when_the_peer_never_echoes(autojump_clock: object) -> None:
    received: list[bytes] = []

    async def deaf(stream: trio.SocketStream) -> None:
        await accept_raw(stream)
        received.append(await stream.receive_some())
        await trio.sleep_forever()

    async with tcp_server(deaf) as port:
        conn = await connect(f"ws://127.0.0.1:{port}", connect_timeout=5)
        start = trio.current_time()
        await conn.aclose(timeout=3)
        assert trio.current_time() - start == pytest.approx(3)
        assert conn.closed
        await conn.aclose()
        assert trio.current_time() - start == pytest.approx(3)
    assert received
    assert received[0][0] == 0x88  # a Close frame went out


async def test_aclose_from_another_task_while_reading() -> None:
    async with ws_server(echo_handler) as url:
        conn = await connect(url, connect_timeout=5)
        outcome: list[str] = []

        async def reader() -> None:
            try:
                await conn.receive_batch()
            except ConnectionClosed:
                outcome.append("closed")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            with trio.fail_after(2):
                await conn.aclose()
        assert outcome == ["closed"]
        assert conn.close_code == 1000  # the server's echo was read by the reader task


async def test_abort_drops_the_socket_without_a_close_frame() -> None:
    codes: list[int | None] = []
    handler = recording_close_codes(codes, done := trio.Event())

    async with ws_server(handler) as url:
        conn = await connect(url, connect_timeout=5)
        await conn.abort()
        assert conn.closed
        assert "aborted" in repr(conn)
        with pytest.raises(ConnectionClosed):
            await conn.receive()
        with pytest.raises(ConnectionClosed):
            await conn.ping()
        await conn.aclose()
        with trio.fail_after(5):
            await done.wait()
    assert codes == [1006]


@pytest.mark.parametrize("secure", [False, True], ids=["plain", "tls"])
async def test_abort_wakes_a_blocked_reader(
    secure: bool, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    async with ws_server(echo_handler, server_tls if secure else None) as url:
        conn = await connect(url, connect_timeout=5, ssl_context=client_tls if secure else None)
        async with trio.open_nursery() as nursery:

            async def reader() -> None:
                with pytest.raises(ConnectionClosed, match="aborted"):
                    await conn.receive()

            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            await conn.abort()


# --- keepalive ------------------------------------------------------------------------------


async def test_server_ping_is_answered() -> None:
    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.ping(b"are you there")  # returns only once our Pong arrived
        await ws.send_message("pong seen")
        await trio.sleep_forever()

    async with ws_server(handler) as url, open_connection(url, connect_timeout=5) as conn:
        assert await conn.receive() == "pong seen"


async def test_pong_updates_last_received(autojump_clock: object) -> None:
    pings: list[bytes] = []

    async def handler(stream: trio.SocketStream) -> None:
        ws, _ = await accept_raw(stream)
        while True:
            ws.receive_data(bytes(await stream.receive_some()))
            for event in ws.events():
                if isinstance(event, Ping):
                    pings.append(bytes(event.payload))
                    await stream.send_all(ws.send(event.response()))

    async with tcp_server(handler) as port:
        conn = await connect(f"ws://127.0.0.1:{port}", connect_timeout=5)
        opened = conn.last_received
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.receive_batch)
            await trio.sleep(10)
            sent_at = trio.current_time()
            await conn.ping(b"k")
            await trio.sleep(1)
            assert pings == [b"k"]
            assert conn.last_received == sent_at
            assert conn.last_received > opened
            nursery.cancel_scope.cancel()
        await conn.aclose(timeout=1)


# --- failures -------------------------------------------------------------------------------


async def test_oversize_message_is_a_protocol_error() -> None:
    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.send_message("ok")
        await ws.send_message("y" * 5000)
        await trio.sleep_forever()

    async with (
        ws_server(handler) as url,
        open_connection(url, connect_timeout=5, max_message_size=1000) as conn,
    ):
        assert await conn.receive() == "ok"
        with pytest.raises(ProtocolError, match="max_message_size"):
            await conn.receive()
        assert conn.closed
        with pytest.raises(ConnectionClosed, match="protocol error"):
            await conn.receive()
        with pytest.raises(ConnectionClosed):
            await conn.send_text("x")


async def test_send_on_a_reset_connection_is_connection_closed() -> None:
    async def handler(stream: trio.SocketStream) -> None:
        await accept_raw(stream)
        stream.socket.setsockopt(
            trio.socket.SOL_SOCKET, trio.socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        await stream.aclose()  # RST

    async with (
        tcp_server(handler, tcp=True) as port,
        open_connection(f"ws://127.0.0.1:{port}", connect_timeout=5) as conn,
    ):
        with pytest.raises(ConnectionClosed):
            await flood(conn)
        assert conn.closed


async def test_reader_keeps_draining_while_aclose_waits(autojump_clock: object) -> None:
    async with tcp_server(late_then_echo) as port:
        conn = await connect(f"ws://127.0.0.1:{port}", connect_timeout=5)
        got: list[str | bytes] = []

        async def reader() -> None:
            with pytest.raises(ConnectionClosed, match="closed locally"):
                await drain(conn, got)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.sleep(1)
            start = trio.current_time()
            await conn.aclose(timeout=5)
            assert trio.current_time() - start == pytest.approx(1)
        assert got == ["late"]
        assert conn.close_code == 1000


async def test_aclose_reads_on_its_own_until_the_echo(autojump_clock: object) -> None:
    async with tcp_server(late_then_echo) as port:
        conn = await connect(f"ws://127.0.0.1:{port}", connect_timeout=5)
        start = trio.current_time()
        await conn.aclose(timeout=5)
        assert trio.current_time() - start == pytest.approx(1)
        assert conn.close_code == 1000
        with pytest.raises(ConnectionClosed):
            await conn.receive()


# --- control-frame floods ---------------------------------------------------------------------


class _ScriptedStream(trio.abc.Stream):
    """Hands out prepared chunks and records the size of every ``receive_some``."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.asked: list[int | None] = []
        self.sent = bytearray()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        self.sent += data

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        self.asked.append(max_bytes)
        chunk = self.chunks.pop(0)
        assert max_bytes is None or len(chunk) <= max_bytes
        return chunk

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


def _open_engine() -> tuple[ClientEngine, WSConnection]:
    engine = ClientEngine("x", "/", max_message_size=1 << 20)
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(engine.initiate())
    assert any(isinstance(event, Request) for event in server.events())
    assert engine.receive(server.send(AcceptConnection())) == [Accepted()]
    return engine, server


def test_a_burst_of_pings_is_answered_by_one_pong_for_the_latest() -> None:
    engine, server = _open_engine()
    pings = b"".join(server.send(Ping(payload=str(i).encode())) for i in range(10_000))
    events = engine.receive(pings)
    assert len(events) == 10_000
    server.receive_data(engine.data_to_send())
    assert [(type(e), getattr(e, "payload", None)) for e in server.events()] == [
        (PongEvent, b"9999")
    ]
    assert engine.data_to_send() == b""


def test_no_pong_after_the_peer_closed() -> None:
    engine, server = _open_engine()
    engine.receive(server.send(Ping(payload=b"p")) + server.send(CloseConnection(code=1000)))
    server.receive_data(engine.data_to_send())
    assert [type(e) for e in server.events()] == [CloseConnection]


async def test_reads_stay_small_while_control_frames_flood_in() -> None:
    """A read is processed without a checkpoint: a flood must not make one read long."""
    engine, server = _open_engine()
    flood = server.send(Ping(payload=b"")) * 4000  # 8000 bytes, within a small read
    text = server.send(TextMessage(data="done"))
    stream = _ScriptedStream([flood, flood, text, text])
    conn = WebSocketConnection(stream, engine, "ws://x/")
    assert await conn.receive_batch() == ["done"]
    assert await conn.receive_batch() == ["done"]
    assert stream.asked == [RECEIVE_SIZE, BURST_RECEIVE_SIZE, BURST_RECEIVE_SIZE, RECEIVE_SIZE]
    assert stream.sent.count(b"\x8a") >= 1  # answered, once per read
