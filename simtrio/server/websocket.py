"""The WebSocket layer under the server's connections: a stream the server owns, and the upgrade.

The server owns every TCP stream and closes it itself: trio-websocket is handed a wrapper
(:class:`ServerStream`) that first replays the HTTP request head the router already read, and
that can be stalled (both directions) or torn down abruptly for fault injection.
:func:`accept_websocket` completes the upgrade on it and runs the WebSocket's reader for as
long as its block lasts.
"""

from __future__ import annotations

__all__: list[str] = []

import contextlib
import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio
import trio_websocket
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection

from simtrio.server.boundaries import WEBSOCKET_GONE

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

logger = logging.getLogger(__name__)


class ServerStream(trio.abc.Stream):
    """A server-owned TCP stream that replays already-read bytes and can be stalled.

    While stalled, both ``receive_some`` and ``send_all`` wait, so trio-websocket neither reads
    requests nor answers Pings, yet the TCP connection stays open.
    """

    def __init__(self, inner: trio.SocketStream, prefix: bytes) -> None:
        self._inner = inner
        self._prefix = prefix
        self._gate: trio.Event | None = None
        self._aborted = False

    @property
    def stalled(self) -> bool:
        return self._gate is not None

    def stall(self) -> None:
        if self._gate is None:
            self._gate = trio.Event()

    def unstall(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.set()

    async def wait_open(self) -> None:
        """Wait while the stream is stalled."""
        while self._gate is not None:
            await self._gate.wait()

    def abort(self) -> None:
        """Close the socket now: no Close frame, whatever is in flight is lost."""
        if not self._aborted:
            self._aborted = True
            self._inner.socket.close()
        self.unstall()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            size = len(self._prefix) if max_bytes is None else max_bytes
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            await trio.lowlevel.checkpoint()
            return data
        await self.wait_open()
        data = await self._inner.receive_some(max_bytes)
        # Bytes that arrive while stalled are held back until the stall ends.
        await self.wait_open()
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.wait_open()
        await self._inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        self._aborted = True
        self.unstall()
        await self._inner.aclose()


class _ServerWebSocket(trio_websocket.WebSocketConnection):
    """A server-side WebSocket that says why before it drops a peer breaking the protocol.

    When wsproto cannot parse what the peer sent (an unmasked frame, a bad opcode, invalid
    UTF-8 in a Text message...), it reports a close with the matching code (1002, 1007) while
    the connection is still open; trio-websocket would then drop TCP without a word. This
    sends that Close frame first, so the peer learns the code and the reason.
    """

    async def _handle_close_connection_event(self, event: CloseConnection) -> None:
        if self._wsproto.state is ConnectionState.OPEN:  # pyright: ignore[reportPrivateUsage]
            logger.info("closing a WebSocket with %d: %s", event.code, event.reason)
            with contextlib.suppress(trio_websocket.ConnectionClosed):
                await self._send(CloseConnection(event.code, event.reason))  # pyright: ignore[reportPrivateUsage]
        await super()._handle_close_connection_event(event)  # pyright: ignore[reportPrivateUsage]


@asynccontextmanager
async def accept_websocket(
    stream: trio.abc.Stream,
    *,
    handshake_timeout: float,
    message_queue_size: int,
    max_message_size: int,
    receive_buffer_size: int,
) -> AsyncGenerator[trio_websocket.WebSocketConnection | None]:
    """The accepted WebSocket over ``stream``, its reader running for the block's duration.

    None when the peer did not finish the upgrade within ``handshake_timeout`` or went away
    meanwhile. Leaving the block stops the reader.
    """
    connection = _ServerWebSocket(
        stream,
        WSConnection(ConnectionType.SERVER),
        message_queue_size=message_queue_size,
        max_message_size=max_message_size,
        receive_buffer_size=receive_buffer_size,
    )
    async with trio.open_nursery() as nursery:
        try:
            nursery.start_soon(connection._reader_task)  # pyright: ignore[reportPrivateUsage]
            accepted: trio_websocket.WebSocketConnection | None = None
            try:
                with trio.fail_after(handshake_timeout):
                    request = await connection._get_request()  # pyright: ignore[reportPrivateUsage]
                    accepted = await request.accept()
            except (trio.TooSlowError, *WEBSOCKET_GONE):
                pass
            yield accepted
        finally:
            nursery.cancel_scope.cancel()
