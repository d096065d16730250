"""The trio shell around :class:`~simtrio.transport.engine.ClientEngine`.

There is no background task: whoever calls :meth:`WebSocketConnection.receive_batch` is the
reader, and each call hands over every message decoded from one ``receive_some``. Sends may come
from other tasks (a keepalive, for one) and are serialised by a FIFO lock. Keepalive, timeouts
and reconnects live above this module.
"""

from __future__ import annotations

__all__: list[str] = []

import logging
from collections import deque
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final, TypeVar

import trio

from simtrio.core.boundary import map_exceptions
from simtrio.errors import ConnectError, ConnectionClosed, InvalidParams, ProtocolError, excerpt
from simtrio.transport.endpoint import parse_url
from simtrio.transport.engine import DEFAULT_MAX_MESSAGE_SIZE, ClientEngine
from simtrio.transport.events import Accepted, Binary, Closed, PongReceived, Rejected, Text
from simtrio.transport.streams import STREAM_ERRORS, open_stream

if TYPE_CHECKING:
    import ssl
    from collections.abc import AsyncGenerator, Callable, Sequence

    from simtrio.transport.events import Event

logger = logging.getLogger(__name__)

RECEIVE_SIZE: Final = 256 * 1024
"""Bytes asked of one ``receive_some``: also the slack of the inbound size limit."""

CONTROL_BURST: Final = 256
"""Control frames (Pings, Pongs) in one read above which the next reads are kept small."""

BURST_RECEIVE_SIZE: Final = 8 * 1024
"""Bytes asked of one ``receive_some`` during a burst of control frames.

A read is processed without a checkpoint, so its size bounds how far a deadline can be overrun:
256 KiB of empty Pings are 128k frames, most of a second of work. Small reads while control
frames flood in keep that to milliseconds; the first read that is not such a burst restores
the normal size.
"""

_FATAL_STATUSES: Final = frozenset({401, 403})
_P = TypeVar("_P")


# --- opening ----------------------------------------------------------------------------------


async def connect(
    url: str,
    *,
    headers: Sequence[tuple[str, str]] = (),
    connect_timeout: float,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ssl_context: ssl.SSLContext | None = None,
) -> WebSocketConnection:
    """Open a WebSocket connection; the caller must :meth:`~WebSocketConnection.aclose` it.

    TCP, TLS and the upgrade together are bounded by ``connect_timeout``. Every failure is a
    :class:`ConnectError`; ``fatal`` marks those a retry cannot fix (HTTP 401/403, certificate
    verification, an unusable URL or header).
    """
    try:
        endpoint = parse_url(url, plain="ws", secure="wss")
        engine = ClientEngine(
            endpoint.host_header,
            endpoint.target,
            extra_headers=headers,
            max_message_size=max_message_size,
        )
        request = engine.initiate()
    except InvalidParams as exc:
        raise ConnectError(f"cannot connect: {exc}", fatal=True) from None
    where = endpoint.display
    with map_exceptions(
        trio.TooSlowError,
        lambda _: ConnectError(f"timed out after {connect_timeout:g} s connecting to {where}"),
        chain=False,
    ):
        with trio.fail_after(connect_timeout):
            stream = await open_stream(endpoint, ssl_context)
            try:
                return await _upgrade(stream, engine, request, where, headers)
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise


async def _upgrade(
    stream: trio.abc.Stream,
    engine: ClientEngine,
    request: bytes,
    where: str,
    headers: Sequence[tuple[str, str]],
) -> WebSocketConnection:
    with (
        map_exceptions(
            STREAM_ERRORS,
            lambda exc: ConnectError(f"connection to {where} failed during the upgrade: {exc}"),
        ),
        map_exceptions(
            ProtocolError,
            lambda exc: ConnectError(f"invalid upgrade response from {where}: {exc}"),
        ),
    ):
        await stream.send_all(request)
        while True:
            events = engine.receive(await stream.receive_some(RECEIVE_SIZE))
            for i, event in enumerate(events):
                if isinstance(event, Accepted):
                    conn = WebSocketConnection(stream, engine, where, events[i + 1 :])
                    outbound = engine.data_to_send()
                    if outbound:
                        await stream.send_all(outbound)
                    return conn
                if isinstance(event, Rejected):
                    raise _rejection(event, where, headers)
                if isinstance(event, Closed):
                    raise ConnectError(f"connection to {where} closed during the upgrade")


def _rejection(event: Rejected, where: str, headers: Sequence[tuple[str, str]]) -> ConnectError:
    body = event.body
    for _, value in headers:
        if value:  # a server echoing our key back must not put it into the message
            body = body.replace(value.encode("ascii", "replace"), b"<redacted>")
    message = f"upgrade to {where} rejected with HTTP {event.status}"
    if body.strip():
        message += f": {excerpt(body.strip())}"
    return ConnectError(message, status=event.status, fatal=event.status in _FATAL_STATUSES)


@asynccontextmanager
async def open_connection(
    url: str,
    *,
    headers: Sequence[tuple[str, str]] = (),
    connect_timeout: float,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncGenerator[WebSocketConnection]:
    """:func:`connect`, closing the connection (gracefully if possible) on exit."""
    conn = await connect(
        url,
        headers=headers,
        connect_timeout=connect_timeout,
        max_message_size=max_message_size,
        ssl_context=ssl_context,
    )
    try:
        yield conn
    finally:
        await conn.aclose()


# --- the connection ---------------------------------------------------------------------------


_MESSAGE_EVENTS: Final = (Text, Binary)  # the plain str and bytes
"""Built once: ``isinstance`` against a fresh ``X | Y`` union costs a type construction per call."""


class WebSocketConnection:
    """An open client WebSocket connection (see the module docstring for the task model)."""

    __slots__ = (
        "_close_code",
        "_closed",
        "_closer_reading",
        "_ended",
        "_engine",
        "_last_received",
        "_lost",
        "_queue",
        "_read_size",
        "_receiving",
        "_send_broken",
        "_send_lock",
        "_send_lost",
        "_stream",
        "_stream_closed",
        "_where",
        "_why",
        "on_pong",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        engine: ClientEngine,
        where: str,
        pending: Sequence[Event] = (),
    ) -> None:
        self._stream = stream
        self._engine = engine
        self._where = where
        self._send_lock = trio.StrictFIFOLock()
        self._queue: deque[str | bytes] = deque()
        self._closed = False
        self._why = ""
        self._close_code: int | None = None
        self._ended = trio.Event()  # nothing more will be read: peer closed, lost, failed
        self._receiving = False  # a receive_batch call is in receive_some
        self._closer_reading = False  # aclose is reading, waiting for the peer's Close
        self._send_broken = False
        self._stream_closed = False
        self._last_received = trio.current_time()
        self._read_size = RECEIVE_SIZE
        # The boundary of the open connection, built once: the reader enters it on every read.
        self._lost = map_exceptions(STREAM_ERRORS, self._receive_lost)
        self._send_lost = map_exceptions(STREAM_ERRORS, self._send_failed)
        self.on_pong: Callable[[bytes, int], None] | None = None
        """Called for each Pong with its payload and how many messages arrived before it that
        :meth:`receive_batch` has not returned yet."""
        if pending:
            self._queue.extend(self._absorb(pending))

    def __repr__(self) -> str:
        state = f"closed ({self._why})" if self._closed else "open"
        return f"<WebSocketConnection {self._where} {state}>"

    @property
    def closed(self) -> bool:
        """Closing or closed: sends fail.

        Receiving may still return messages that arrived before the end (and, during
        :meth:`aclose`, those the peer sent before it saw our Close).
        """
        return self._closed

    @property
    def close_code(self) -> int | None:
        """The peer's close code, once it sent a Close frame."""
        return self._close_code

    @property
    def last_received(self) -> float:
        """``trio.current_time()`` of the last inbound bytes (any frame, Pongs included)."""
        return self._last_received

    # -- receiving --

    async def receive_batch(self) -> list[str | bytes]:
        """Every message decoded from one read (at least one).

        Raises ``ConnectionClosed`` once the connection is over, after every message that
        arrived before the end was returned; ``ProtocolError`` for malformed or oversize input
        (the connection is then unusable, and messages of that same read are not returned).
        """
        if self._queue:
            out = list(self._queue)
            self._queue.clear()
            return out
        while True:
            if self._ended.is_set():
                raise self._closed_error()
            if self._closer_reading:  # aclose owns the stream until the close handshake ends
                await self._ended.wait()
                continue
            self._receiving = True
            try:
                with self._lost:
                    data = await self._stream.receive_some(self._read_size)
            finally:
                self._receiving = False
            if data:
                self._last_received = trio.current_time()
            try:
                events = self._engine.receive(data)
            except ProtocolError:
                self._mark_closed("failed (protocol error)")
                self._ended.set()
                raise
            out = self._absorb(events)
            if len(events) - len(out) > CONTROL_BURST:
                self._read_size = BURST_RECEIVE_SIZE
            elif self._read_size != RECEIVE_SIZE:
                self._read_size = RECEIVE_SIZE
            if self._engine.has_outbound:
                try:
                    await self._flush()
                except BaseException:
                    self._queue.extend(out)  # never drop a decoded message
                    raise
            if out:
                return out

    async def receive(self) -> str | bytes:
        """One message; a thin layer over :meth:`receive_batch`."""
        if not self._queue:
            self._queue.extend(await self.receive_batch())
        return self._queue.popleft()

    def _absorb(self, events: Sequence[Event]) -> list[str | bytes]:
        out: list[str | bytes] = []
        for event in events:
            if isinstance(event, _MESSAGE_EVENTS):
                out.append(event)
            elif type(event) is PongReceived:
                if self.on_pong is not None:
                    self.on_pong(event.payload, len(out) + len(self._queue))
            elif isinstance(event, Closed):
                self._close_code = event.code
                if event.code is None:
                    self._mark_closed("was closed by the peer without a Close frame")
                else:
                    self._mark_closed(f"was closed by the peer (code {event.code})")
                self._ended.set()
        return out

    def _receive_lost(self, _: BaseException) -> ConnectionClosed:
        self._mark_closed("was lost")
        self._ended.set()
        return self._closed_error()

    def _send_failed(self, _: BaseException) -> ConnectionClosed:
        self._send_broken = True
        self._mark_closed("was lost")
        return self._closed_error()

    def _closed_error(self) -> ConnectionClosed:
        return ConnectionClosed(f"connection to {self._where} {self._why}")

    def _mark_closed(self, why: str) -> None:
        if not self._closed:
            self._closed = True
            self._why = why

    # -- sending --

    async def _flush(self) -> None:
        """Write the engine's own output (Pongs, the Close reply), ignoring a dead socket."""
        await self._take_send_lock()
        try:
            data = self._engine.data_to_send()
            if data and not self._send_broken:
                await self._send_all(data)
        except ConnectionClosed:
            pass
        finally:
            self._send_lock.release()

    async def _take_send_lock(self) -> None:
        """Take the send lock, without a checkpoint when it is free (the common case)."""
        try:
            self._send_lock.acquire_nowait()
        except trio.WouldBlock:
            await self._send_lock.acquire()

    async def _send_all(self, data: bytes) -> None:
        try:
            with self._send_lost:
                await self._stream.send_all(data)
        except ConnectionClosed:
            raise
        except BaseException:
            # Cancelled part-way through a frame: nothing more may be written on this stream.
            self._send_broken = True
            self._mark_closed("was abandoned during a send")
            raise

    async def _send_frame(self, encode: Callable[[_P], bytes], payload: _P) -> None:
        await self._take_send_lock()
        try:
            if self._closed or self._send_broken:
                raise self._closed_error()
            data = encode(payload)
            pending = self._engine.data_to_send()
            await self._send_all(pending + data if pending else data)
        finally:
            self._send_lock.release()

    async def send_text(self, text: str) -> None:
        """Send one Text message; ``ConnectionClosed`` if the connection is gone."""
        await self._send_frame(self._engine.send_text, text)

    async def send_texts(self, texts: Sequence[str]) -> None:
        """Send Text messages, in order, in one write (one syscall for a batch of continues).

        Like :meth:`send_text`: ``ConnectionClosed`` if the connection is gone; cancelled or
        failed part-way, some of them may have been sent and nothing more can be.
        """
        await self._send_frame(self._encode_texts, texts)

    def _encode_texts(self, texts: Sequence[str]) -> bytes:
        encode = self._engine.send_text
        return b"".join([encode(text) for text in texts])

    async def send_binary(self, data: bytes) -> None:
        """Send one Binary message; ``ConnectionClosed`` if the connection is gone."""
        await self._send_frame(self._engine.send_binary, data)

    async def ping(self, payload: bytes = b"") -> None:
        """Send a Ping; its Pong shows up only as a newer :attr:`last_received`."""
        await self._send_frame(self._engine.ping, payload)

    # -- closing --

    async def aclose(
        self,
        timeout: float = 5.0,  # noqa: ASYNC109 - it bounds only the close handshake
        *,
        code: int = 1000,
        reason: str = "",
    ) -> None:
        """Close handshake bounded by ``timeout``, then drop the socket. Idempotent, quiet."""
        if self._stream_closed:
            return
        try:
            if not self._send_broken:
                with trio.move_on_after(timeout):
                    await self._close_handshake(code, reason)
        finally:
            await self._close_stream("was closed locally")

    async def abort(self) -> None:
        """Drop the socket at once, without a Close frame (for a connection declared lost)."""
        await self._close_stream("was aborted")

    async def _close_handshake(self, code: int, reason: str) -> None:
        engine = self._engine
        was_closed = self._closed
        self._mark_closed("was closed locally")
        lock = self._send_lock
        await lock.acquire()
        try:
            data = engine.data_to_send() + engine.close(code, reason)
            if data and not self._send_broken:
                await self._send_all(data)
        except ConnectionClosed:
            return
        finally:
            lock.release()
        if was_closed or engine.finished:
            return
        if self._receiving:  # the reader task will see the peer's Close
            await self._ended.wait()
            return
        self._closer_reading = True
        try:
            while not engine.finished:
                events = engine.receive(await self._stream.receive_some(RECEIVE_SIZE))
                self._absorb(events)  # messages arriving now are dropped: we are closing
        except (*STREAM_ERRORS, ProtocolError):
            pass
        finally:
            self._closer_reading = False

    async def _close_stream(self, why: str) -> None:
        self._mark_closed(why)
        self._ended.set()
        if self._stream_closed:
            return
        self._stream_closed = True
        await trio.aclose_forcefully(self._stream)
