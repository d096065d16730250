"""Fakes for the plain client: the shared scripted WebSocket server, and a tiny HTTP server.

Canonical control frames, and :func:`fake_server` set up for the plain client: each accepted
connection runs the next script (the last one repeats); when a script returns, the fake keeps
reading (and recording) until the client closes.
"""

from __future__ import annotations

import socket
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import attrs
import trio

from tests.support.fakeserver import (
    FakeConnection,
    FakeServer,
    Script,
    read_request_head,
    serving,
)
from tests.support.inmemory import serve_streams

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

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


Peer = FakeConnection
"""The server side of one accepted connection (the shared fake's connection)."""


@asynccontextmanager
async def fake_server(
    *scripts: Script,
    reject: int | None = None,
    reject_body: bytes = b"",
    tcp: bool = False,
) -> AsyncGenerator[FakeServer]:
    """The shared fake, for the plain client; ``url`` is ``ws://127.0.0.1:<port>``.

    Upgrade ``n`` runs script ``n`` (the last one repeats) and then records until the client
    leaves; ``reject`` refuses every upgrade with that status and ``reject_body``.
    """
    plan = list(scripts) or [_silent]
    server = FakeServer(
        lambda _, index: plan[min(index, len(plan)) - 1],
        reject=None if reject is None else lambda _, __: reject,
        reject_body=reject_body or None,
        then="hold",
    )
    async with serving(server, tcp=tcp):
        yield server


async def _silent(peer: FakeConnection) -> None:
    pass


def answer(*frames: str, close: bool = False) -> Script:
    """A script that takes the client's first message, sends ``frames``, then closes if asked."""

    async def script(peer: FakeConnection) -> None:
        await peer.recv()
        await peer.send(*frames)
        if close:
            await peer.close()

    return script


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
async def http_fake(
    status: int, body: bytes, reason: str = "X", *, tcp: bool = False
) -> AsyncGenerator[HttpFake]:
    """A one-response-per-connection HTTP server recording the raw request heads."""
    fake = HttpFake("")

    async def handler(stream: trio.abc.Stream) -> None:
        try:
            head = await read_request_head(stream)
            if head is None:
                return
            fake.requests.append(head)
            await stream.send_all(
                f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
        finally:
            await trio.aclose_forcefully(stream)

    async with serve_streams(handler, tcp=tcp) as port:
        fake.url = f"ws://127.0.0.1:{port}"
        yield fake
