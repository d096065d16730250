"""One accepted WebSocket connection of either plane: its sends, its stall and its faults.

The connection runs on a :class:`~simtrio.server.websocket.ServerStream`. All outbound
messages go through :meth:`Conn.send_text` / :meth:`Conn.send_compressed`, which is where the
message-count triggers of a :class:`~simtrio.server.faults.Faults` fire.
"""

from __future__ import annotations

__all__: list[str] = []

import contextlib
import logging
import math
from typing import TYPE_CHECKING, Final

import trio

from simtrio.server.boundaries import PEER_GONE, WEBSOCKET_GONE, map_exceptions
from simtrio.server.faults import FaultKind
from simtrio.wire.compression import ZstdStreamEncoder

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import trio_websocket

    from simtrio.server.faults import Faults, Plane
    from simtrio.server.websocket import ServerStream

logger = logging.getLogger(__name__)

MALFORMED_MESSAGE: Final = '{"method":"readyForContinue"'
"""What ``malformed_at`` sends: truncated JSON."""

CORRUPT_MESSAGE: Final = b"\x00\x01not zstd"
"""What ``corrupt_compressed_at`` sends instead of the real Binary message."""

_PAD_METHOD: Final = "simtrioPadding"


class ConnectionGone(Exception):
    """The connection is closed or broken; the handler using it should wind down."""


class Conn:
    """An accepted WebSocket connection of one plane, with its faults applied."""

    def __init__(
        self,
        *,
        plane: Plane,
        index: int,
        stream: ServerStream,
        ws: trio_websocket.WebSocketConnection,
        faults: Faults,
        max_message_size: int,
        close_timeout: float,
        on_fault: Callable[[Plane, FaultKind], None] | None = None,
    ) -> None:
        self.plane = plane
        self.index = index
        self.faults = faults
        self.sent = 0
        self.binary_sent = 0
        self.cancel_scope = trio.CancelScope()
        self._stream = stream
        self._ws = ws
        self._max_message_size = max_message_size
        self._close_timeout = close_timeout
        self._stall_began = trio.Event()
        self._broken = map_exceptions(WEBSOCKET_GONE, self._went_away)
        """The WebSocket boundary: a closed or broken connection is ``ConnectionGone``."""
        self._on_fault = on_fault
        self._lock = trio.StrictFIFOLock()
        self._encoder: ZstdStreamEncoder | None = None
        self._gone = False
        self.watchers: list[Callable[[], None]] = []
        """Called when the connection stalls, resumes or goes (sessions re-check back-pressure)."""
        self.pending_close: tuple[int, str] | None = None

    def __repr__(self) -> str:
        return f"<Conn {self.plane}#{self.index}>"

    @property
    def stalled(self) -> bool:
        """True while a stall fault holds the connection."""
        return self._stream.stalled

    @property
    def gone(self) -> bool:
        return self._gone

    async def serve(self, handler: Callable[[Conn], Awaitable[None]]) -> None:
        """Run ``handler`` on this connection until it returns or the connection is ended.

        The triggers that fire before any message (``drop_after=0``, ``stall_after=0``) are
        applied first; a timed stall is ended by a task beside the handler.
        """
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._end_stall_when_due)
            with self.cancel_scope:
                self._after_send(0)
                await handler(self)
            nursery.cancel_scope.cancel()

    async def receive(self) -> str | bytes:
        """The next inbound message; ``ConnectionGone`` once the peer is gone."""
        with self._broken:
            message = await self._ws.get_message()
        await self._stream.wait_open()
        return message

    async def send_text(self, text: str) -> None:
        """Send one Text message (control responses, acks, uncompressed notifications)."""
        await self._send(text, compressed=False)

    async def send_compressed(self, text: str) -> None:
        """Send one message through the connection's zstd stream, as a Binary message."""
        await self._send(text, compressed=True)

    async def _send(self, text: str, *, compressed: bool) -> None:
        if self._gone:
            raise ConnectionGone
        async with self._lock:
            number = self.sent + 1
            faults = self.faults
            with self._broken:
                if faults.delay:
                    await trio.sleep(faults.delay)
                if faults.malformed_at == number:
                    await self._ws.send_message(MALFORMED_MESSAGE)
                    self._fired(FaultKind.MALFORMED)
                if faults.oversize_at == number:
                    await self._send_oversize(compressed)
                    self._fired(FaultKind.OVERSIZE)
                payload: str | bytes = text
                corrupt = False
                if compressed:
                    data = self._encode(text)
                    self.binary_sent += 1
                    if faults.corrupt_compressed_at == self.binary_sent:
                        data = CORRUPT_MESSAGE
                        corrupt = True
                    payload = data
                await self._ws.send_message(payload)
                if corrupt:
                    self._fired(FaultKind.CORRUPT)
            self.sent = number
            self._after_send(number)

    def _went_away(self, _exc: BaseException) -> ConnectionGone:
        self._gone = True
        return ConnectionGone()

    def _fired(self, kind: FaultKind) -> None:
        """A fault took effect (counted by the server, for chaos tests)."""
        if self._on_fault is not None:
            self._on_fault(self.plane, kind)

    def _encode(self, text: str) -> bytes:
        if self._encoder is None:
            self._encoder = ZstdStreamEncoder()
        return self._encoder.encode(text)

    async def _send_oversize(self, compressed: bool) -> None:
        size = self.faults.oversize_bytes or self._max_message_size + 1
        head = '{"jsonrpc":"2.0","method":"' + _PAD_METHOD + '","params":{"pad":"'
        tail = '"}}'
        pad = "a" * max(0, size - len(head) - len(tail))
        text = head + pad + tail
        logger.info("%r: sending an oversize message of %d bytes (fault)", self, len(text))
        if compressed:
            await self._ws.send_message(self._encode(text))
        else:
            await self._ws.send_message(text)

    def _after_send(self, number: int) -> None:
        faults = self.faults
        if faults.drop_after == number:
            logger.info("%r: dropping the connection after %d messages (fault)", self, number)
            self._fired(FaultKind.DROP)
            self.abort()
        elif faults.stall_after == number:
            logger.info("%r: stalling after %d messages (fault)", self, number)
            self._fired(FaultKind.STALL)
            self._stream.stall()
            self._stall_began.set()
            self._notify_stall()

    async def _end_stall_when_due(self) -> None:
        """End a stall fault once its ``stall_for`` has passed (an endless one never ends)."""
        seconds = self.faults.stall_for
        if self.faults.stall_after is None or seconds is None or math.isinf(seconds):
            return
        await self._stall_began.wait()
        await trio.sleep(seconds)
        self._stream.unstall()
        self._notify_stall()

    def _notify_stall(self) -> None:
        for watcher in self.watchers:
            watcher()

    def request_close(self, reason: str, code: int = 1000) -> None:
        """Stop serving now and close with a Close frame (used when a session is taken over)."""
        self._gone = True
        self.pending_close = (code, reason)
        self.cancel_scope.cancel()
        self._notify_stall()

    def abort(self) -> None:
        """Drop the TCP connection at once (no Close frame) and stop the handler."""
        self._gone = True
        self._stream.abort()
        self.cancel_scope.cancel()
        self._notify_stall()

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close with a Close frame, waiting a bounded time for the echo; then drop TCP."""
        self._gone = True
        with trio.move_on_after(self._close_timeout) as scope:
            scope.shield = True
            with contextlib.suppress(*PEER_GONE):
                await self._ws.aclose(code, reason)
        self._stream.abort()
