"""The one scripted fake WebSocket server of the test suite.

A :class:`FakeServer` accepts WebSocket upgrades and runs a test-supplied async script for every
accepted connection, recording everything the client sent. Scripts see exact frames: they
receive requests, send canonical responses, send zstd-compressed Binary notifications, drop
the connection abruptly, stall it (no reads, no writes, no Pongs, connection kept open) or
close it with a Close frame. Which script runs (or which HTTP status refuses the upgrade) is
decided per path and per upgrade by the caller: the suites' ``fakes`` modules set that up.

By default the client reaches the fake over in-memory streams (``trio.testing``'s
``memory_stream_pair``), put in place for the block through simtrio's stream-opener seam, so a
test on the virtual clock never races a real socket. ``tcp=True`` serves on 127.0.0.1 instead,
for tests about real sockets. Either way trio-websocket serves the WebSocket side over a
stream the fake owns, so a drop really is abrupt and a stall really stops the Pongs.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal

import orjson
import trio
import trio_websocket

from simtrio.server.serving import abort_stream
from simtrio.wire.compression import ZstdStreamEncoder
from simtrio.wire.rpc import (
    AccountDiffNotification,
    SubscribeAck,
    SubscriptionComplete,
    TransactionNotification,
)
from simtrio.wire.rpc_server import encode_rpc
from simtrio.wire.urls import CONTROL_PATH
from tests.support.inmemory import serve_streams

__all__ = [
    "ACCOUNT",
    "CONTROL_PATH",
    "MAX_MESSAGE_SIZE",
    "ClientGone",
    "FakeConnection",
    "FakeServer",
    "OwnedStream",
    "Reject",
    "Script",
    "complete_text",
    "diff_text",
    "hold",
    "read_request_head",
    "serving",
    "tx_text",
]

MAX_MESSAGE_SIZE = 64 * 1024 * 1024
ACCOUNT = "B6K31RBmUPHnm2xubybB4p9LfJDWykmEnT6bBr5FfsNf"
_SERVE_ERRORS = (trio_websocket.ConnectionClosed, trio.BrokenResourceError, OSError)


class ClientGone(trio_websocket.ConnectionClosed):
    """The client closed or dropped the connection while the script waited or sent."""

    def __init__(self, code: int | None) -> None:
        super().__init__(None)
        self.code = code

    def __str__(self) -> str:
        return f"client gone (code {self.code})"


def diff_text(sub: int, slot: int, *, pad: int = 0) -> str:
    """An account diff; ``pad`` adds that many bytes of base64 data to ``post``."""
    post: Any = {"data": {"data": "A" * pad, "encoding": "base64"}, "lamports": slot}
    return encode_rpc(AccountDiffNotification(sub, slot, ACCOUNT, f"sig{slot}", None, post))


def tx_text(sub: int, slot: int) -> str:
    tx: Any = {"slot": slot, "transaction": {"signatures": [f"sig{slot}"]}, "meta": None}
    return encode_rpc(TransactionNotification(sub, slot, tx))


def complete_text(sub: int) -> str:
    return encode_rpc(SubscriptionComplete(sub))


class OwnedStream(trio.abc.Stream):
    """The stream under trio-websocket: can be stalled (both ways) or torn down abruptly."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self._open = trio.Event()
        self._open.set()
        self._sending = trio.Lock()  # raw writes (send_many) and trio-websocket's alike
        self.after_pong: Callable[[], None] | None = None
        """Called once, right after the next Pong went out (trio-websocket answers Pings)."""

    def stall(self) -> None:
        self._open = trio.Event()

    def unstall(self) -> None:
        self._open.set()

    def abort(self) -> None:
        """Close at once, without a Close frame: the client sees the connection end."""
        abort_stream(self.inner)
        self._open.set()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._open.wait()
        async with self._sending:
            await self.inner.send_all(data)
        if self.after_pong is not None and bytes(data[:1]) == b"\x8a":  # FIN + Pong
            hook, self.after_pong = self.after_pong, None
            hook()

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        await self._open.wait()
        data = await self.inner.receive_some(max_bytes)
        await self._open.wait()  # bytes that arrive during a stall are held back
        return data

    async def aclose(self) -> None:
        self._open.set()
        await self.inner.aclose()


class FakeConnection:
    """The server side of one accepted connection, handed to a script."""

    def __init__(
        self,
        index: int,
        path: str,
        headers: list[tuple[str, str]],
        ws: trio_websocket.WebSocketConnection,
        stream: OwnedStream,
    ) -> None:
        self.index = index
        self.path = path
        self.header_list = headers
        self.headers = {name.lower(): value for name, value in headers}
        self.ws = ws
        self.stream = stream
        self.received: list[str] = []
        """Every message the client sent (Binary ones decoded as UTF-8)."""
        self.sent = 0
        """Messages sent to the client so far."""
        self.close_code: int | None = None
        """The client's close code once it closed (1006 when it vanished)."""
        self.dropped = False
        self.gone = trio.Event()
        self.encoder = ZstdStreamEncoder()
        """This connection's one zstd stream, for compressed Binary notifications."""

    def __repr__(self) -> str:
        return f"<FakeConnection #{self.index} {self.path}>"

    def header(self, name: str) -> str | None:
        """The one value of request header ``name`` (None when absent)."""
        values = [v for k, v in self.header_list if k.lower() == name.lower()]
        assert len(values) <= 1
        return values[0] if values else None

    @property
    def methods(self) -> list[str]:
        """The ``method`` of every JSON message received so far."""
        out: list[str] = []
        for text in self.received:
            try:
                out.append(orjson.loads(text).get("method", "?"))
            except orjson.JSONDecodeError:
                out.append("?")
        return out

    # -- receiving --------------------------------------------------------------------------

    async def _message(self) -> str | bytes:
        try:
            return await self.ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            self._ended(exc)
            raise ClientGone(self.close_code) from None

    async def receive(self) -> str:
        """The next message; ``ClientGone`` once the client has gone."""
        message = await self._message()
        text = message if isinstance(message, str) else message.decode("utf-8")
        self.received.append(text)
        return text

    async def recv(self) -> str:
        """The next message, which must be a Text message."""
        message = await self._message()
        assert isinstance(message, str), f"expected Text, got {message!r:.80}"
        self.received.append(message)
        return message

    async def expect(self, *texts: str) -> None:
        """Receive exactly these Text messages, in order."""
        for text in texts:
            got = await self.recv()
            assert got == text, f"expected {text!r}, got {got!r}"

    async def expect_method(self, method: str) -> Any:
        """Receive one message whose method is ``method``; returns its params."""
        got = orjson.loads(await self.receive())
        assert got.get("method") == method, f"expected {method}, got {got!r:.200}"
        return got.get("params")

    async def quiet_for(self, seconds: float) -> None:
        """Assert that the client sends nothing for ``seconds``."""
        with trio.move_on_after(seconds):
            text = await self.receive()
            raise AssertionError(f"unexpected message {text!r:.200}")

    async def wait_gone(self) -> int | None:
        """Read (and record) until the client ends the connection; returns its close code."""
        with contextlib.suppress(ClientGone):
            while True:
                await self.receive()
        return self.close_code

    def _ended(self, exc: trio_websocket.ConnectionClosed) -> None:
        if not self.gone.is_set():
            reason = exc.reason
            self.close_code = reason.code if reason is not None else None
            self.gone.set()

    # -- sending ----------------------------------------------------------------------------

    async def send(self, *messages: str | bytes) -> None:
        """Send messages in order; ``ClientGone`` once the client has gone."""
        try:
            for message in messages:
                await self.ws.send_message(message)
                self.sent += 1
        except trio_websocket.ConnectionClosed as exc:
            self._ended(exc)
            raise ClientGone(self.close_code) from None

    async def send_json(self, obj: Any) -> None:
        await self.send(orjson.dumps(obj).decode())

    async def send_binary(self, data: bytes) -> None:
        await self.send(data)

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
        """Send ``text`` zstd-compressed, on this connection's one compression stream."""
        await self.send(self.encoder.encode(text))

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

    # -- faults and endings -----------------------------------------------------------------

    def drop(self) -> None:
        """Close the connection abruptly: no Close frame."""
        self.dropped = True
        self.stream.abort()

    def stall(self) -> None:
        """Stop reading and writing (Pongs included) while keeping the connection open."""
        self.stream.stall()

    def unstall(self) -> None:
        self.stream.unstall()

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close with a Close frame (bounded wait for the echo), then drop the connection."""
        with trio.move_on_after(1.0):
            await self.ws.aclose(code, reason)
        self.stream.abort()


Script = Callable[[FakeConnection], Awaitable[None]]
Reject = Callable[[str, int], int | None]
"""``reject(path, index) -> HTTP status`` refuses that upgrade; None accepts it."""
ScriptFor = Callable[[str, int], Script | None]
"""``script_for(path, index)``: the script for that upgrade; None refuses it (503 or 404)."""


async def hold(conn: FakeConnection) -> None:
    """A script that keeps the connection open and records until the client leaves."""
    await conn.wait_gone()


class FakeServer:
    """A running fake; see the module docstring.

    After its script returns, a connection is closed with a Close frame (``then="close"``) or
    kept open, recording, until the client leaves (``then="hold"``), unless it was dropped.
    A connection's ``index`` counts the upgrades of its path, refused ones included
    (``index="upgrade"``), or the connections accepted so far (``index="accepted"``).
    """

    def __init__(
        self,
        script_for: ScriptFor,
        *,
        reject: Reject | None = None,
        reject_body: bytes | None = b"refused by the fake",
        then: Literal["close", "hold"] = "close",
        index: Literal["upgrade", "accepted"] = "upgrade",
        script_timeout: float | None = None,
    ) -> None:
        self._script_for = script_for
        self._reject = reject
        self._reject_body = reject_body
        self._then = then
        self._index = index
        self._script_timeout = script_timeout
        self.port = 0
        self.connections: list[FakeConnection] = []
        """Accepted connections of every path, in order."""
        self.upgrades: dict[str, int] = {}
        """Upgrade requests per path (rejected ones included)."""
        self.refused: list[tuple[str, int]] = []
        self.changed = trio.Event()
        """Set (and replaced) after every accept, refusal and end of a connection."""

    def __repr__(self) -> str:
        return f"<FakeServer {self.url}>"

    @property
    def url(self) -> str:
        """The base URL to hand to a client (``ws://127.0.0.1:<port>``)."""
        return f"ws://127.0.0.1:{self.port}"

    def http_url(self, path: str = "/backtest/s1") -> str:
        """An ``http://`` URL of ``path`` on this server (a session's RPC endpoint, say)."""
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def control(self) -> list[FakeConnection]:
        return [c for c in self.connections if c.path == CONTROL_PATH]

    def data(self, path: str | None = None) -> list[FakeConnection]:
        return [
            c
            for c in self.connections
            if c.path != CONTROL_PATH and (path is None or c.path == path)
        ]

    def accepted(self, path: str) -> list[FakeConnection]:
        return [c for c in self.connections if c.path == path]

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds (checked after every accept and every end)."""
        while not predicate():
            await self.changed.wait()

    def _bump(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def handle(self, inner: trio.abc.Stream) -> None:
        stream = OwnedStream(inner)
        try:
            async with trio.open_nursery() as nursery:
                await self._serve(nursery, stream)
                nursery.cancel_scope.cancel()
        except* _SERVE_ERRORS:
            # trio-websocket's reader task answering a client that is already gone (a request
            # that is not an upgrade, say, dropped before the 400 went out).
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def _serve(self, nursery: trio.Nursery, stream: OwnedStream) -> None:
        try:
            ws_request = await trio_websocket.wrap_server_stream(
                nursery, stream, message_queue_size=64, max_message_size=MAX_MESSAGE_SIZE
            )
        except _SERVE_ERRORS:
            return
        path = ws_request.path
        index = self.upgrades.get(path, 0) + 1
        self.upgrades[path] = index
        status = self._reject(path, index) if self._reject is not None else None
        script = self._script_for(path, index) if status is None else None
        if status is None and script is None:
            status = 503 if path == CONTROL_PATH else 404
        if status is not None:
            self.refused.append((path, status))
            self._bump()
            with contextlib.suppress(*_SERVE_ERRORS):
                await ws_request.reject(status, body=self._reject_body)
            return
        assert script is not None
        try:
            ws = await ws_request.accept()
        except _SERVE_ERRORS:
            return
        headers = [(k.decode(), v.decode()) for k, v in ws_request.headers]
        number = index if self._index == "upgrade" else len(self.connections) + 1
        conn = FakeConnection(number, path, headers, ws, stream)
        self.connections.append(conn)
        self._bump()
        try:
            with trio.fail_after(self._script_timeout or float("inf")):
                await script(conn)
                if not conn.gone.is_set() and not conn.dropped:
                    await (conn.close() if self._then == "close" else conn.wait_gone())
        except ClientGone:
            pass
        finally:
            if not conn.gone.is_set():
                conn.close_code = conn.close_code or 1006
                conn.gone.set()
            self._bump()


async def read_request_head(stream: trio.abc.Stream) -> bytes | None:
    """Read an HTTP request up to its blank line; None when the client left first."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await stream.receive_some()
        if not chunk:
            return None
        head += chunk
    return head


@asynccontextmanager
async def serving(server: FakeServer, *, tcp: bool = False) -> AsyncGenerator[FakeServer]:
    """Run ``server`` for the block, in memory or on 127.0.0.1 (see :func:`serve_streams`)."""
    async with serve_streams(server.handle, tcp=tcp) as port:
        server.port = port
        yield server
