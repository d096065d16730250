"""A scripted fake data-plane server for the subscription tests, plus a few checks of it.

Each accepted connection runs a test-supplied script against a :class:`FakeConn`: exact Text
frames in and out, zstd-compressed Binary notifications from a per-connection stream, abrupt
drops and stalls. trio-websocket serves the WebSocket side over a TCP stream the harness owns,
so a drop really is an abrupt close and a stall really stops reading (Pongs included).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import trio
import trio_websocket

from simtrio.wire.compression import ZstdStreamEncoder
from simtrio.wire.rpc import (
    AccountDiffNotification,
    SubscribeAck,
    SubscriptionComplete,
    TransactionNotification,
)
from simtrio.wire.rpc_server import encode_rpc

TOKEN = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
ATOKEN = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL"
ACCOUNT = "B6K31RBmUPHnm2xubybB4p9LfJDWykmEnT6bBr5FfsNf"

_VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "rpc.json"
RPC_VECTORS: dict[str, str] = {
    entry["name"]: entry["json"]
    for entry in json.loads(_VECTORS.read_text(encoding="utf-8"))
    if entry["direction"] == "to_server"
}


def diff_text(sub: int, slot: int, *, pad: int = 0) -> str:
    """An account diff; ``pad`` adds that many bytes of base64 data to ``post``."""
    post: Any = {"data": {"data": "A" * pad, "encoding": "base64"}, "lamports": slot}
    return encode_rpc(AccountDiffNotification(sub, slot, ACCOUNT, f"sig{slot}", None, post))


def tx_text(sub: int, slot: int) -> str:
    tx: Any = {"slot": slot, "transaction": {"signatures": [f"sig{slot}"]}, "meta": None}
    return encode_rpc(TransactionNotification(sub, slot, tx))


def complete_text(sub: int) -> str:
    return encode_rpc(SubscriptionComplete(sub))


class FreezableStream(trio.abc.Stream):
    """A TCP stream that can be frozen: no reads, no writes, the socket stays open."""

    def __init__(self, inner: trio.SocketStream) -> None:
        self.inner = inner
        self._thawed = trio.Event()
        self._thawed.set()
        self._sending = trio.Lock()  # raw writes (FakeConn.send_many) and the library's alike
        self.after_pong: Callable[[], None] | None = None
        """Called once, right after the next Pong went out (trio-websocket answers Pings)."""

    def freeze(self) -> None:
        self._thawed = trio.Event()

    def thaw(self) -> None:
        self._thawed.set()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._thawed.wait()
        async with self._sending:
            await self.inner.send_all(data)
        if self.after_pong is not None and bytes(data[:1]) == b"\x8a":  # FIN + Pong
            hook, self.after_pong = self.after_pong, None
            hook()

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        await self._thawed.wait()
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


class FakeConn:
    """The server side of one accepted data-plane connection."""

    def __init__(
        self, index: int, path: str, ws: trio_websocket.WebSocketConnection, stream: FreezableStream
    ) -> None:
        self.index = index
        self.path = path
        self.ws = ws
        self.stream = stream
        self.encoder = ZstdStreamEncoder()
        self.sent = 0
        self.received: list[str] = []
        self.dropped = False
        self.close_code: int | None = None
        self.closed = trio.Event()

    async def recv(self) -> str:
        message = await self.ws.get_message()
        assert isinstance(message, str), f"expected Text, got {message!r:.80}"
        self.received.append(message)
        return message

    async def expect(self, *texts: str) -> None:
        for text in texts:
            assert await self.recv() == text

    async def quiet_for(self, seconds: float) -> None:
        """Assert that the client sends nothing for ``seconds``."""
        with trio.move_on_after(seconds):
            message = await self.ws.get_message()
            raise AssertionError(f"unexpected message {message!r:.80}")

    async def send(self, text: str) -> None:
        await self.ws.send_message(text)
        self.sent += 1

    async def send_many(self, texts: list[str]) -> None:
        """Send uncompressed Text messages in one write, so they tend to arrive in one read."""
        frames = []
        for text in texts:
            payload = text.encode()
            size = len(payload)
            if size < 126:
                header = bytes((0x81, size))
            elif size < 1 << 16:
                header = bytes((0x81, 126)) + size.to_bytes(2, "big")
            else:
                header = bytes((0x81, 127)) + size.to_bytes(8, "big")
            frames.append(header + payload)
        await self.stream.send_all(b"".join(frames))
        self.sent += len(texts)

    async def send_z(self, text: str) -> None:
        await self.send_binary(self.encoder.encode(text))

    async def send_binary(self, data: bytes) -> None:
        await self.ws.send_message(data)
        self.sent += 1

    async def ack(self, request_id: int, subscription: int) -> None:
        await self.send(encode_rpc(SubscribeAck(request_id, subscription)))

    async def diff(self, sub: int, slot: int, *, compressed: bool = True, pad: int = 0) -> None:
        text = diff_text(sub, slot, pad=pad)
        await (self.send_z(text) if compressed else self.send(text))

    async def tx(self, sub: int, slot: int, *, compressed: bool = True) -> None:
        text = tx_text(sub, slot)
        await (self.send_z(text) if compressed else self.send(text))

    async def complete(self, sub: int, *, compressed: bool = True) -> None:
        text = complete_text(sub)
        await (self.send_z(text) if compressed else self.send(text))

    async def drop(self) -> None:
        """Close the TCP connection abruptly: no Close frame, no terminal."""
        self.dropped = True
        await self.stream.inner.aclose()

    def stall(self) -> None:
        self.stream.freeze()

    async def wait_closed(self) -> int | None:
        """Read (and record) until the client ends the connection; returns its close code."""
        try:
            while True:
                message = await self.ws.get_message()
                if isinstance(message, str):
                    self.received.append(message)
        except trio_websocket.ConnectionClosed as exc:
            self.close_code = exc.reason.code if exc.reason is not None else None
        self.closed.set()
        return self.close_code


Script = Callable[[FakeConn], Awaitable[None]]
Reject = Callable[[str, int], int | None]


class FakeServer:
    """Accepts data-plane upgrades on 127.0.0.1 and runs ``script`` on each connection."""

    def __init__(self, script: Script, reject: Reject | None) -> None:
        self._script = script
        self._reject = reject
        self.port = 0
        self.connections: list[FakeConn] = []
        self.attempts: dict[str, int] = {}
        self.changed = trio.Event()

    def url(self, path: str = "/backtest/s1") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def accepted(self, path: str) -> list[FakeConn]:
        return [conn for conn in self.connections if conn.path == path]

    def _bump(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self.changed.wait()

    async def handle(self, tcp: trio.SocketStream) -> None:
        stream = FreezableStream(tcp)
        try:
            async with trio.open_nursery() as nursery:
                request = await trio_websocket.wrap_server_stream(nursery, stream)
                path = request.path
                attempt = self.attempts[path] = self.attempts.get(path, 0) + 1
                status = self._reject(path, attempt) if self._reject is not None else None
                if status is not None:
                    self._bump()
                    await request.reject(status)
                    nursery.cancel_scope.cancel()
                    return
                ws = await request.accept()
                conn = FakeConn(len(self.connections) + 1, path, ws, stream)
                self.connections.append(conn)
                self._bump()
                try:
                    await self._script(conn)
                    if not conn.dropped:
                        await conn.wait_closed()
                finally:
                    self._bump()
                    nursery.cancel_scope.cancel()
        finally:
            await tcp.aclose()


@asynccontextmanager
async def fake_server(
    script: Script, *, reject: Reject | None = None
) -> AsyncGenerator[FakeServer]:
    server = FakeServer(script, reject)
    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        server.port = listeners[0].socket.getsockname()[1]
        nursery.start_soon(trio.serve_listeners, server.handle, listeners)
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()


async def closed_port() -> int:
    """A local port with nothing listening (connections are refused)."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port: int = listeners[0].socket.getsockname()[1]
    for listener in listeners:
        await listener.aclose()
    return port


def slots_of(items: list[Any]) -> list[int]:
    return [item.notification.slot for item in items]


# -- checks of the harness itself -----------------------------------------------------------


async def test_compressed_frames_share_one_stream() -> None:
    conn_encoder = ZstdStreamEncoder()
    first = conn_encoder.encode(diff_text(1, 4000))
    second = conn_encoder.encode(diff_text(1, 4001))
    assert len(second) < len(first)


def test_vectors_loaded() -> None:
    assert orjson.loads(RPC_VECTORS["account_diff_subscribe_first_connection"])["id"] == 1
