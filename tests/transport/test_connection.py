"""The trio shell against trio-websocket and hand-rolled peers.

Raw peers run in memory through the stream-opener seam unless a test is about real sockets
(TLS, resets, refused ports); trio-websocket peers listen on 127.0.0.1.
"""

from __future__ import annotations

import socket
import ssl
import struct
import tempfile
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.lowlevel
import trio.testing
from trio_websocket import ConnectionClosed as ConnectionClosed_
from trio_websocket import WebSocketRequest, serve_websocket
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Ping, Request, TextMessage
from wsproto.events import Pong as PongEvent

from simtrio.errors import ConnectError, ConnectionClosed, ProtocolError
from simtrio.transport import WebSocketConnection, connect, open_connection
from simtrio.transport.connection import BURST_RECEIVE_SIZE, RECEIVE_SIZE
from simtrio.transport.engine import ClientEngine
from simtrio.transport.events import Accepted
from tests.client.fakes import refused_port
from tests.resolver import install_unknown_hosts
from tests.support.fakeserver import serve_streams

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable

# A self-signed certificate for 127.0.0.1 / localhost, valid 2020-2120, for TLS tests only.
TEST_CERT = """-----BEGIN CERTIFICATE-----
MIIBfzCCASSgAwIBAgICEAAwCgYIKoZIzj0EAwIwFzEVMBMGA1UEAwwMc2ltdHJp
byB0ZXN0MCAXDTIwMDEwMTAwMDAwMFoYDzIxMjAwMTAxMDAwMDAwWjAXMRUwEwYD
VQQDDAxzaW10cmlvIHRlc3QwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAASOQ3wM
58ZwaByRINpd9f0eJG7lVrsmPGpMCVn5yHZCdCgqaP/Bew0kK1P8EYcJjQ53JmtU
cI0RVeXrMTtCXPuYo14wXDAaBgNVHREEEzARhwR/AAABgglsb2NhbGhvc3QwDwYD
VR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8EBAMCAoQwHQYDVR0OBBYEFPHvB1z1B8Y9
d0E3Qd/vhU5mhtD4MAoGCCqGSM49BAMCA0kAMEYCIQC+PvkLxfEWHKuA0Na3hYcZ
SYiaqBAvF5+6Y+8A+DRt7AIhAOxZQlX+9Y/cpKRPpp8IgN9jSP8YxyE2wKnZwB9R
IHk3
-----END CERTIFICATE-----
"""
TEST_KEY = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgSQ8g5HDQcBMwr0VL
L5gxW+0bbwOUxS3VbyUg33UOk9ahRANCAASOQ3wM58ZwaByRINpd9f0eJG7lVrsm
PGpMCVn5yHZCdCgqaP/Bew0kK1P8EYcJjQ53JmtUcI0RVeXrMTtCXPuY
-----END PRIVATE KEY-----
"""

SERVER_MAX_MESSAGE = 64 * 1024 * 1024


@pytest.fixture
def server_tls() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory() as tmp:  # load_cert_chain only reads files
        cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert.write_text(TEST_CERT)
        key.write_text(TEST_KEY)
        context.load_cert_chain(cert, key)
    return context


@pytest.fixture
def client_tls() -> ssl.SSLContext:
    return ssl.create_default_context(cadata=TEST_CERT)


@asynccontextmanager
async def ws_server(
    handler: Callable[[WebSocketRequest], Awaitable[None]],
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncGenerator[str]:
    """A trio-websocket server on 127.0.0.1; yields its base URL."""
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(
                serve_websocket,
                handler,
                "127.0.0.1",
                0,
                ssl_context,
                max_message_size=SERVER_MAX_MESSAGE,
                disconnect_timeout=1,
            )
        )
        scheme = "wss" if ssl_context else "ws"
        yield f"{scheme}://127.0.0.1:{server.port}"
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def tcp_server(
    handler: Callable[[Any], Awaitable[None]], *, tcp: bool = False
) -> AsyncGenerator[int]:
    """A raw server for 127.0.0.1; yields its port (in memory unless ``tcp``)."""
    async with serve_streams(handler, tcp=tcp) as port:
        yield port


async def accept_raw(stream: trio.abc.Stream) -> tuple[WSConnection, Request]:
    """Do the server side of the upgrade by hand, for peers that then misbehave."""
    ws = WSConnection(ConnectionType.SERVER)
    while True:
        ws.receive_data(bytes(await stream.receive_some()))
        for event in ws.events():
            if isinstance(event, Request):
                await stream.send_all(ws.send(AcceptConnection()))
                return ws, event


KEY = "sk-top-secret-0123"


async def echo_handler(request: WebSocketRequest) -> None:
    ws = await request.accept()
    try:
        while True:
            await ws.send_message(await ws.get_message())
    except ConnectionClosed_:
        pass


def recording_close_codes(
    codes: list[int | None], done: trio.Event
) -> Callable[[WebSocketRequest], Awaitable[None]]:
    """A handler that waits for the client to go away and records the close code it saw."""

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            await ws.get_message()
        except ConnectionClosed_ as exc:
            codes.append(exc.reason.code if exc.reason else None)
            done.set()

    return handler


async def drain(conn: WebSocketConnection, into: list[str | bytes]) -> None:
    while True:
        into += await conn.receive_batch()


async def flood(conn: WebSocketConnection) -> None:
    for _ in range(1000):
        await conn.send_binary(b"z" * 65536)
        await trio.lowlevel.checkpoint()


# --- happy path -----------------------------------------------------------------------------


async def test_round_trip_text_and_binary() -> None:
    async with ws_server(echo_handler) as url, open_connection(url, connect_timeout=5) as conn:
        await conn.send_text("héllo")
        assert await conn.receive() == "héllo"
        await conn.send_binary(b"\x00\x01\xff")
        assert await conn.receive() == b"\x00\x01\xff"
        big = "x" * 3_000_000
        await conn.send_text(big)
        assert await conn.receive() == big
        assert not conn.closed
        assert "open" in repr(conn)


async def test_send_texts_sends_every_message_in_order() -> None:
    async with ws_server(echo_handler) as url, open_connection(url, connect_timeout=5) as conn:
        texts = [f"continue {i}" for i in range(50)] + ["y" * 70_000]
        await conn.send_texts(texts)
        got: list[str | bytes] = []
        while len(got) < len(texts):
            got += await conn.receive_batch()
        assert got == texts
        await conn.send_texts([])  # nothing to send is no error
        await conn.aclose()
        with pytest.raises(ConnectionClosed):
            await conn.send_texts(["late"])


def sending(count: int) -> Callable[[WebSocketRequest], Awaitable[None]]:
    """A handler that sends ``m0`` ... ``m<count-1>`` and then waits."""

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        for i in range(count):
            await ws.send_message(f"m{i}")
        await trio.sleep_forever()

    return handler


async def test_receive_batch_returns_everything_in_order() -> None:
    async with ws_server(sending(300)) as url, open_connection(url, connect_timeout=5) as conn:
        got: list[str | bytes] = []
        while len(got) < 300:
            batch = await conn.receive_batch()
            assert batch
            got += batch
        assert got == [f"m{i}" for i in range(300)]


async def test_receive_and_receive_batch_share_the_buffer() -> None:
    async with ws_server(sending(3)) as url, open_connection(url, connect_timeout=5) as conn:
        got = [await conn.receive()]
        while len(got) < 3:
            got += await conn.receive_batch()
        assert got == ["m0", "m1", "m2"]


async def test_headers_path_and_query_reach_the_server() -> None:
    seen: list[tuple[str, list[tuple[bytes, bytes]]]] = []

    async def handler(request: WebSocketRequest) -> None:
        seen.append((request.path, list(request.headers)))
        await echo_handler(request)

    async with ws_server(handler) as url:
        async with open_connection(
            url + "/backtest?a=1", headers=[("X-API-Key", KEY)], connect_timeout=5
        ) as conn:
            await conn.send_text("x")
            assert await conn.receive() == "x"
        async with open_connection(url, connect_timeout=5) as conn:
            await conn.send_text("y")
            assert await conn.receive() == "y"
    (path, headers), (bare_path, _) = seen
    assert path == "/backtest?a=1"
    assert bare_path == "/"
    assert (b"x-api-key", KEY.encode()) in [(k.lower(), v) for k, v in headers]


async def test_tls_round_trip(server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    async with (
        ws_server(echo_handler, server_tls) as url,
        open_connection(url, connect_timeout=5, ssl_context=client_tls) as conn,
    ):
        await conn.send_text("secure")
        assert await conn.receive() == "secure"


# --- connect failures -----------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_rejection_is_fatal_and_never_shows_the_key(status: int) -> None:
    async def handler(request: WebSocketRequest) -> None:
        await request.reject(status, body=f"bad key {KEY}".encode())

    async with ws_server(handler) as url:
        with pytest.raises(ConnectError) as info:
            await connect(url, headers=[("X-API-Key", KEY)], connect_timeout=5)
    assert info.value.fatal
    assert info.value.status == status
    assert str(status) in str(info.value)
    assert "bad key" in str(info.value)
    assert KEY not in str(info.value)


async def test_other_rejections_are_transient_with_status_and_body() -> None:
    async def handler(request: WebSocketRequest) -> None:
        await request.reject(404, body=b"no such route")

    async with ws_server(handler) as url:
        with pytest.raises(ConnectError) as info:
            await connect(url, connect_timeout=5)
    assert not info.value.fatal
    assert info.value.status == 404
    assert "404" in str(info.value)
    assert "no such route" in str(info.value)


async def test_connection_refused_is_transient() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectError) as info:
        await connect(f"ws://127.0.0.1:{port}/", connect_timeout=5)
    assert not info.value.fatal
    assert info.value.status is None


async def test_connect_timeout_when_the_server_never_answers(autojump_clock: object) -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    async with tcp_server(silent) as port:
        start = trio.current_time()
        with pytest.raises(ConnectError, match="timed out") as info:
            await connect(f"ws://127.0.0.1:{port}", connect_timeout=7)
        assert trio.current_time() - start == pytest.approx(7)
    assert not info.value.fatal


async def test_server_closing_during_the_upgrade_is_transient() -> None:
    async def rude(stream: trio.SocketStream) -> None:
        await stream.receive_some()
        await stream.aclose()

    async with tcp_server(rude) as port:
        with pytest.raises(ConnectError, match="closed during the upgrade") as info:
            await connect(f"ws://127.0.0.1:{port}", connect_timeout=5)
    assert not info.value.fatal


async def test_invalid_upgrade_response_is_transient() -> None:
    async def bogus(stream: trio.SocketStream) -> None:
        await stream.receive_some()
        await stream.send_all(
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
            b"connection: upgrade\r\nsec-websocket-accept: nope\r\n\r\n"
        )
        await trio.sleep_forever()

    async with tcp_server(bogus) as port:
        with pytest.raises(ConnectError, match="invalid upgrade response") as info:
            await connect(f"ws://127.0.0.1:{port}", connect_timeout=5)
    assert not info.value.fatal


@pytest.mark.parametrize("url", ["http://127.0.0.1:1/", "127.0.0.1:80", "ws://", "ws://h:x/"])
async def test_unusable_url_is_fatal(url: str) -> None:
    with pytest.raises(ConnectError) as info:
        await connect(url, connect_timeout=5)
    assert info.value.fatal


async def test_unusable_header_value_is_fatal_and_not_shown() -> None:
    with pytest.raises(ConnectError) as info:
        await connect("ws://127.0.0.1:1/", headers=[("X-API-Key", KEY + "\n")], connect_timeout=5)
    assert info.value.fatal
    assert KEY not in str(info.value)
    assert info.value.__cause__ is None


async def test_certificate_failure_is_fatal(server_tls: ssl.SSLContext) -> None:
    async def handler(request: WebSocketRequest) -> None:  # pragma: no cover - never reached
        await request.accept()

    async with ws_server(handler, server_tls) as url:
        with pytest.raises(ConnectError, match="certificate") as info:
            await connect(url, connect_timeout=5)  # the default context does not trust it
    assert info.value.fatal


async def test_tls_against_a_plain_server_is_fatal_with_its_cause() -> None:
    """A plain-text server on a wss:// port answers the same way on every retry."""

    async def plain(stream: trio.SocketStream) -> None:
        await stream.receive_some()
        await stream.send_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")

    async with tcp_server(plain, tcp=True) as port:
        with pytest.raises(ConnectError) as info:
            await connect(f"wss://127.0.0.1:{port}", connect_timeout=5)
    assert info.value.fatal
    message = str(info.value)
    assert message.startswith(f"TLS handshake with wss://127.0.0.1:{port}/ failed: ")
    assert "wrong version number" in message
    assert "ws://" in message


async def test_tls_handshake_cut_short_is_transient() -> None:
    async def hang_up(stream: trio.SocketStream) -> None:
        await stream.receive_some()

    async with tcp_server(hang_up, tcp=True) as port:
        with pytest.raises(ConnectError) as info:
            await connect(f"wss://127.0.0.1:{port}", connect_timeout=5)
    assert not info.value.fatal


async def test_unknown_host_is_fatal_with_its_cause() -> None:
    install_unknown_hosts()
    with pytest.raises(ConnectError) as info:
        await connect("ws://no-such-host.invalid:80", connect_timeout=5)
    assert info.value.fatal
    assert str(info.value).startswith("cannot resolve host 'no-such-host.invalid'")


async def test_a_resolver_without_an_answer_yet_is_transient(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def no_answer(host: str, port: int) -> trio.SocketStream:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(trio, "open_tcp_stream", no_answer)
    with pytest.raises(ConnectError) as info:
        await connect("ws://example.test:80", connect_timeout=5)
    assert not info.value.fatal
    assert "Temporary failure in name resolution" in str(info.value)


async def test_refused_is_transient_and_says_so() -> None:
    with pytest.raises(ConnectError) as info:
        await connect(f"ws://127.0.0.1:{refused_port()}", connect_timeout=5)
    assert not info.value.fatal
    assert "connection refused" in str(info.value)


@pytest.mark.parametrize("url", ["wss://not a url/backtest", "ws://a{b}:80/", "ws://a<b/"])
async def test_malformed_host_fails_before_any_io(url: str) -> None:
    with pytest.raises(ConnectError) as info:
        await connect(url, connect_timeout=5)
    assert info.value.fatal
    assert "not a valid host name" in str(info.value)


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


async def late_then_echo(stream: trio.SocketStream) -> None:
    """On our Close: one more message, a pause, then the Close echo."""
    ws, _ = await accept_raw(stream)
    late = ws.send(TextMessage(data="late"))  # encoded now: wsproto refuses once closing
    while True:
        ws.receive_data(bytes(await stream.receive_some()))
        if any(isinstance(event, CloseConnection) for event in ws.events()):
            await stream.send_all(late)
            await trio.sleep(1)
            await stream.send_all(b"\x88\x02\x03\xe8")  # Close, 1000
            await trio.sleep_forever()


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
