"""Scripted fake servers for the plain client: exact frames out, everything received recorded.

The WebSocket fake wraps a TCP stream the fake owns with trio-websocket, so the socket is
closed even when the client goes away first. Each accepted connection runs the next script
(the last one repeats); when a script returns, the fake keeps reading (and recording) until
the client closes.
"""

from __future__ import annotations

import socket
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING

import attrs
import trio
import trio_websocket

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable

MAX_MESSAGE = 64 * 1024 * 1024

# Canonical server frames used across the tests.
CREATED = (
    '{"method":"sessionCreated","params":{"session_id":"backtest_1",'
    '"rpc_endpoint":"/backtest/backtest_1","task_id":null}}'
)
ATTACHED = (
    '{"method":"sessionAttached","params":{"session_id":"backtest_1",'
    '"rpc_endpoint":"/backtest/backtest_1","task_id":null}}'
)
READY = '{"method":"readyForContinue"}'
SUCCESS = '{"method":"success"}'


def slot(n: int, seq: int | None = None) -> str:
    return _numbered(seq, f'"method":"slotNotification","params":{n}')


def status(value: str, seq: int | None = None) -> str:
    return _numbered(seq, f'"method":"status","params":{{"status":"{value}"}}')


def ready(seq: int | None = None) -> str:
    return _numbered(seq, '"method":"readyForContinue"')


def numbered(seq: int, frame: str) -> str:
    """Prefix an unnumbered canonical frame with ``seqId``."""
    assert frame.startswith("{")
    return f'{{"seqId":{seq},{frame[1:]}'


def _numbered(seq: int | None, body: str) -> str:
    return f'{{"seqId":{seq},{body}}}' if seq is not None else f"{{{body}}}"


@attrs.define
class Peer:
    """The server side of one accepted connection."""

    ws: trio_websocket.WebSocketConnection
    stream: trio.abc.Stream
    path: str
    headers: list[tuple[str, str]]
    received: list[str | bytes] = attrs.field(factory=list)
    client_closed: trio.Event = attrs.field(factory=trio.Event)

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        assert len(values) <= 1
        return values[0] if values else None

    async def recv(self) -> str | bytes:
        message = await self.ws.get_message()
        self.received.append(message)
        return message

    async def send(self, *frames: str | bytes) -> None:
        for frame in frames:
            await self.ws.send_message(frame)

    async def drop(self) -> None:
        """Close the TCP connection abruptly (no Close frame)."""
        await trio.aclose_forcefully(self.stream)

    async def close(self, code: int = 1000) -> None:
        await self.ws.aclose(code)

    async def hold(self) -> None:
        """Record whatever the client sends until it closes."""
        try:
            while True:
                await self.recv()
        except trio_websocket.ConnectionClosed:
            self.client_closed.set()


@attrs.define
class FakeServer:
    url: str
    port: int
    peers: list[Peer] = attrs.field(factory=list)
    upgrades: list[list[tuple[str, str]]] = attrs.field(factory=list)
    """Headers of every upgrade request, rejected ones included."""


async def _silent(peer: Peer) -> None:
    pass


@asynccontextmanager
async def fake_server(
    *scripts: Callable[[Peer], Awaitable[None]],
    reject: int | None = None,
    reject_body: bytes = b"",
) -> AsyncGenerator[FakeServer]:
    """Serve on 127.0.0.1; yields the server with ``url`` = ``ws://127.0.0.1:<port>``."""
    plan = list(scripts) or [_silent]
    server: FakeServer | None = None

    async def handler(stream: trio.SocketStream) -> None:
        assert server is not None
        index = len(server.upgrades)
        try:
            async with trio.open_nursery() as nursery:
                request = await trio_websocket.wrap_server_stream(
                    nursery, stream, max_message_size=MAX_MESSAGE
                )
                headers = [(k.decode(), v.decode()) for k, v in request.headers]
                server.upgrades.append(headers)
                if reject is not None:
                    await request.reject(reject, body=reject_body or None)
                    nursery.cancel_scope.cancel()
                    return
                ws = await request.accept()
                peer = Peer(ws, stream, request.path, headers)
                server.peers.append(peer)
                try:
                    await plan[min(index, len(plan) - 1)](peer)
                    await peer.hold()
                except trio_websocket.ConnectionClosed:
                    peer.client_closed.set()
                nursery.cancel_scope.cancel()
        finally:
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        server = FakeServer(f"ws://127.0.0.1:{port}", port)
        yield server
        nursery.cancel_scope.cancel()


def refused_port() -> int:
    """A local port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@attrs.define
class HttpFake:
    url: str
    requests: list[bytes] = attrs.field(factory=list)


@asynccontextmanager
async def http_fake(status: int, body: bytes, reason: str = "X") -> AsyncGenerator[HttpFake]:
    """A one-response-per-connection HTTP server recording the raw request heads."""
    fake: HttpFake | None = None

    async def handler(stream: trio.SocketStream) -> None:
        assert fake is not None
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = await stream.receive_some()
                if not chunk:
                    return
                head += chunk
            fake.requests.append(head)
            await stream.send_all(
                f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
        finally:
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        fake = HttpFake(f"ws://127.0.0.1:{port}")
        yield fake
        nursery.cancel_scope.cancel()
