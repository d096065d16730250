"""Scripted fake servers for the managed-session tests.

A :class:`FakeServer` listens on 127.0.0.1 and runs a test-supplied async script for every
accepted WebSocket connection, recording everything the client sent. Scripts see exact text
frames: they receive requests, send canonical responses (built with the helpers below or
written by hand), drop the TCP connection abruptly, stall it (no reads, no writes, no Pongs,
TCP kept open) or close it with a Close frame.

Control connections (path ``/backtest``) take their script from ``control``: a sequence is
used one script per connection in order (connections past its end are refused with HTTP 503),
a single callable serves every connection. Any other path is a data-plane connection and runs
``data`` (refused with 404 when there is none). ``reject`` may refuse an upgrade by index.

trio-websocket serves the WebSocket side on a TCP stream the fake owns, so the socket is
closed even when the peer vanishes, and a stall really stops the Pongs.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import orjson
import trio
import trio_websocket

from simtrio.managed.control import ControlLoop
from simtrio.wire import types as wire
from simtrio.wire.codec import encode, encode_response
from simtrio.wire.urls import CONTROL_PATH

if TYPE_CHECKING:
    from simtrio.managed.config import ConnectionStatus
    from simtrio.managed.parallel import ParallelSession
    from simtrio.managed.session import ManagedSession

__all__ = [
    "ClientGone",
    "control_of",
    "status_of",
    "FakeConnection",
    "FakeServer",
    "Script",
    "event",
    "fake_server",
    "frame",
    "request",
]

MAX_MESSAGE_SIZE = 64 * 1024 * 1024


class ClientGone(Exception):
    """The client closed or dropped the connection while the script waited for a message."""


def frame(response: wire.BacktestResponse, seq: int | None = None) -> str:
    """The canonical text of a response, numbered when ``seq`` is given."""
    return encode_response(response, seq)


def event(session_id: str, seq: int, inner: wire.SessionEvent) -> str:
    """The canonical text of a ``sessionEventV2`` frame."""
    return encode_response(wire.SessionEventV2(session_id, seq, inner))


def request(req: wire.BacktestRequest) -> str:
    """The exact text simtrio sends for a request."""
    return encode(req)


def control_of(session: object) -> ControlLoop:
    """The control loop behind a managed or parallel session (to wait for its end in tests)."""
    control = session._control  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
    assert isinstance(control, ControlLoop)
    return control


def status_of(session: ManagedSession | ParallelSession) -> ConnectionStatus:
    """``connection_status`` read through a call, so type checkers do not narrow it."""
    return session.connection_status


class _OwnedStream(trio.abc.Stream):
    """The TCP stream under trio-websocket: can be stalled (both ways) or torn down abruptly."""

    def __init__(self, inner: trio.SocketStream) -> None:
        self.inner = inner
        self._open = trio.Event()
        self._open.set()

    def stall(self) -> None:
        self._open = trio.Event()

    def unstall(self) -> None:
        self._open.set()

    def abort(self) -> None:
        self.inner.socket.close()
        self._open.set()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._open.wait()
        await self.inner.send_all(data)

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
        headers: Mapping[str, str],
        ws: trio_websocket.WebSocketConnection,
        stream: _OwnedStream,
    ) -> None:
        self.index = index
        self.path = path
        self.headers = headers
        self.ws = ws
        self.stream = stream
        self.received: list[str] = []
        """Every message the client sent (Binary ones decoded as UTF-8)."""
        self.close_code: int | None = None
        """The client's close code once it closed (1006 when it vanished)."""
        self.dropped = False
        self.gone = trio.Event()

    def __repr__(self) -> str:
        return f"<FakeConnection #{self.index} {self.path}>"

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

    async def receive(self) -> str:
        """The next message; ``ClientGone`` once the client has gone."""
        try:
            message = await self.ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            self._ended(exc)
            raise ClientGone(f"client gone (code {self.close_code})") from None
        text = message if isinstance(message, str) else message.decode("utf-8")
        self.received.append(text)
        return text

    async def expect(self, *texts: str) -> None:
        """Receive exactly these texts, in order."""
        for text in texts:
            got = await self.receive()
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
        try:
            while True:
                await self.receive()
        except ClientGone:
            pass
        return self.close_code

    def _ended(self, exc: trio_websocket.ConnectionClosed) -> None:
        if not self.gone.is_set():
            reason = exc.reason
            self.close_code = reason.code if reason is not None else None
            self.gone.set()

    # -- sending and faults -----------------------------------------------------------------

    async def send(self, *texts: str | bytes) -> None:
        """Send messages in order; ``ClientGone`` once the client has gone."""
        try:
            for text in texts:
                await self.ws.send_message(text)
        except trio_websocket.ConnectionClosed as exc:
            self._ended(exc)
            raise ClientGone(f"client gone (code {self.close_code})") from None

    async def send_json(self, obj: Any) -> None:
        await self.send(orjson.dumps(obj).decode())

    def drop(self) -> None:
        """Close the TCP connection abruptly: no Close frame."""
        self.dropped = True
        self.stream.abort()

    def stall(self) -> None:
        """Stop reading and writing (Pongs included) while keeping TCP open."""
        self.stream.stall()

    def unstall(self) -> None:
        self.stream.unstall()

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close with a Close frame (bounded wait for the echo), then drop TCP."""
        with trio.move_on_after(1.0):
            await self.ws.aclose(code, reason)
        self.stream.abort()


Script = Callable[[FakeConnection], Awaitable[None]]
Reject = Callable[[str, int], int | None]
"""``reject(path, index) -> HTTP status`` refuses that upgrade; None accepts it."""


async def hold(conn: FakeConnection) -> None:
    """A script that keeps the connection open and records until the client leaves."""
    await conn.wait_gone()


class FakeServer:
    """A running fake; see the module docstring."""

    def __init__(
        self,
        control: Sequence[Script] | Script,
        data: Script | None,
        reject: Reject | None,
        script_timeout: float,
    ) -> None:
        self._control = control
        self._data = data
        self._reject = reject
        self._script_timeout = script_timeout
        self.port = 0
        self.connections: list[FakeConnection] = []
        """Accepted connections of every path, in order."""
        self.upgrades: dict[str, int] = {}
        """Upgrade requests per path (rejected ones included)."""
        self.refused: list[tuple[str, int]] = []
        self._changed = trio.Event()

    def __repr__(self) -> str:
        return f"<FakeServer {self.url}>"

    @property
    def url(self) -> str:
        """The base URL to hand to a client (it appends ``/backtest``)."""
        return f"ws://127.0.0.1:{self.port}"

    @property
    def control(self) -> list[FakeConnection]:
        return [c for c in self.connections if c.path == CONTROL_PATH]

    def data(self, path: str | None = None) -> list[FakeConnection]:
        return [
            c
            for c in self.connections
            if c.path != CONTROL_PATH and (path is None or c.path == path)
        ]

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds (checked after every accept and every end)."""
        while not predicate():
            await self._changed.wait()

    def _bump(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _script_for(self, path: str, index: int) -> Script | None:
        if path != CONTROL_PATH:
            return self._data
        control = self._control
        if callable(control):
            return control
        return control[index - 1] if index <= len(control) else None

    async def handle(self, tcp: trio.SocketStream) -> None:
        stream = _OwnedStream(tcp)
        try:
            async with trio.open_nursery() as nursery:
                await self._serve(nursery, stream)
                nursery.cancel_scope.cancel()
        finally:
            await trio.aclose_forcefully(stream)

    async def _serve(self, nursery: trio.Nursery, stream: _OwnedStream) -> None:
        try:
            ws_request = await trio_websocket.wrap_server_stream(
                nursery, stream, message_queue_size=64, max_message_size=MAX_MESSAGE_SIZE
            )
        except (trio_websocket.ConnectionClosed, trio.BrokenResourceError, OSError):
            return
        path = ws_request.path
        index = self.upgrades.get(path, 0) + 1
        self.upgrades[path] = index
        status = self._reject(path, index) if self._reject is not None else None
        script = self._script_for(path, index)
        if status is None and script is None:
            status = 503 if path == CONTROL_PATH else 404
        if status is not None:
            self.refused.append((path, status))
            self._bump()
            with contextlib.suppress(
                trio_websocket.ConnectionClosed, trio.BrokenResourceError, OSError
            ):
                await ws_request.reject(status, body=b"refused by the fake")
            return
        assert script is not None
        try:
            ws = await ws_request.accept()
        except (trio_websocket.ConnectionClosed, trio.BrokenResourceError, OSError):
            return
        headers = {k.decode().lower(): v.decode() for k, v in ws_request.headers}
        conn = FakeConnection(index, path, headers, ws, stream)
        self.connections.append(conn)
        self._bump()
        try:
            with trio.fail_after(self._script_timeout):
                await script(conn)
                if not conn.gone.is_set() and not conn.dropped:
                    await conn.close()
        except ClientGone:
            pass
        finally:
            if not conn.gone.is_set():
                conn.close_code = conn.close_code or 1006
                conn.gone.set()
            self._bump()


@asynccontextmanager
async def fake_server(
    control: Sequence[Script] | Script = (),
    *,
    data: Script | None = None,
    reject: Reject | None = None,
    script_timeout: float = 30.0,
) -> AsyncGenerator[FakeServer]:
    """Run a :class:`FakeServer` for the duration of the block.

    Every script runs under ``trio.fail_after(script_timeout)``; an assertion failing inside a
    script fails the test. Leaving the block cancels whatever still runs.
    """
    server = FakeServer(control, data, reject, script_timeout)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1")
        )
        server.port = listeners[0].socket.getsockname()[1]
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()
