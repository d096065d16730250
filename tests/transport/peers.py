"""Peers for the transport tests: trio-websocket and raw servers, TLS material, handlers.

Raw peers run in memory through the stream-opener seam unless a test asks for ``tcp=True``;
trio-websocket peers listen on 127.0.0.1.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.lowlevel
import trio.testing
from trio_websocket import ConnectionClosed as ConnectionClosed_, WebSocketRequest, serve_websocket
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from simtrio.errors import ConnectError
from tests.support.fakeserver import serve_streams

if TYPE_CHECKING:
    import ssl
    from collections.abc import AsyncGenerator, Awaitable, Callable

    from simtrio.transport.connection import WebSocketConnection

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


def sending(count: int) -> Callable[[WebSocketRequest], Awaitable[None]]:
    """A handler that sends ``m0`` ... ``m<count-1>`` and then waits."""

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        for i in range(count):
            await ws.send_message(f"m{i}")
        await trio.sleep_forever()

    return handler


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


async def connect_error(
    attempt: Awaitable[object], *, fatal: bool, match: str | None = None
) -> ConnectError:
    """Await ``attempt``, which must fail with a :class:`ConnectError` whose ``fatal`` flag is
    ``fatal`` (and whose text matches ``match``, if given); return the error."""
    with pytest.raises(ConnectError, match=match) as info:
        await attempt
    assert info.value.fatal is fatal
    return info.value
