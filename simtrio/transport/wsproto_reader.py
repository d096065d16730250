"""The frame reader backed by wsproto, kept as the reference for simtrio's own decoder.

The engine uses :class:`~simtrio.transport.frames.FrameDecoder` unless asked for this one; the
differential tests feed both the same bytes and compare every call.
"""

from __future__ import annotations

__all__: list[str] = []

from typing import TYPE_CHECKING, Final, cast

from wsproto.connection import ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.utilities import LocalProtocolError

from simtrio.transport.events import Closed, FrameError, PingReceived, PongReceived

if TYPE_CHECKING:
    from collections.abc import Callable

    from wsproto.connection import Connection

    from simtrio.transport.events import Event

CLOSE_MESSAGE_TOO_BIG: Final = 1009
CLOSE_PROTOCOL_ERROR: Final = 1002


class WsprotoReader:
    """The :class:`~simtrio.transport.events.FrameReader` backed by wsproto's frame parser.

    ``ws`` is the open connection wsproto built for the client side; bytes that came with the
    101 response were given to it as its trailing data, and :meth:`collect` turns them into
    events right after the upgrade.
    """

    __slots__ = ("_done", "_limit", "_on_control", "_parts", "_size", "_ws")

    def __init__(self, ws: Connection, max_size: int, on_control: Callable[[Event], None]) -> None:
        self._ws = ws
        self._limit = max_size
        self._on_control = on_control
        self._parts: list[str | bytes] = []
        self._size = 0
        self._done = False

    def feed(self, data: bytes) -> list[Event]:
        if self._done:
            return []
        eof = not data
        try:
            self._ws.receive_data(None if eof else data)
        except LocalProtocolError as exc:  # pragma: no cover - guarded by _done
            raise FrameError(str(exc), CLOSE_PROTOCOL_ERROR) from None
        out: list[Event] = []
        self.collect(out, eof=eof)
        return out

    def collect(self, out: list[Event], *, eof: bool = False) -> None:
        """Append the events wsproto has ready (also used right after the handshake)."""
        for ev in self._ws.events():
            if isinstance(ev, TextMessage):
                data = ev.data
                size = len(data) if data.isascii() else len(data.encode("utf-8"))
                if ev.message_finished and not self._parts:
                    if size > self._limit:
                        raise self._too_big()
                    out.append(data)
                elif self._add(data, size, ev.message_finished):
                    out.append("".join(cast("list[str]", self._take())))
            elif isinstance(ev, BytesMessage):
                payload = bytes(ev.data)
                if ev.message_finished and not self._parts:
                    if len(payload) > self._limit:
                        raise self._too_big()
                    out.append(payload)
                elif self._add(payload, len(payload), ev.message_finished):
                    out.append(b"".join(cast("list[bytes]", self._take())))
            elif isinstance(ev, Ping):
                ping = PingReceived(bytes(ev.payload))
                out.append(ping)
                self._on_control(ping)
            elif isinstance(ev, Pong):
                out.append(PongReceived(bytes(ev.payload)))
            elif isinstance(ev, CloseConnection):
                self._close(ev, out, eof)
                return

    def _add(self, piece: str | bytes, size: int, finished: bool) -> bool:
        """Keep one piece of a fragmented message; True once the message is complete."""
        size += self._size
        if size > self._limit:
            self._take()
            raise self._too_big()
        self._parts.append(piece)
        self._size = size
        return finished

    def _take(self) -> list[str | bytes]:
        parts = self._parts
        self._parts = []
        self._size = 0
        return parts

    def _too_big(self) -> FrameError:
        return FrameError(
            f"inbound message exceeds max_message_size ({self._limit} bytes)",
            CLOSE_MESSAGE_TOO_BIG,
        )

    def _close(self, ev: CloseConnection, out: list[Event], eof: bool) -> None:
        self._done = True
        self._parts = []
        if eof:
            closed = Closed(None, "")
        elif self._ws.state in (ConnectionState.REMOTE_CLOSING, ConnectionState.CLOSED):
            closed = Closed(int(ev.code), ev.reason or "")
        else:
            # wsproto reports a frame it cannot parse as a CloseConnection without changing
            # state; that is our failure, not the peer's close.
            raise FrameError(f"invalid frame: {ev.reason}", int(ev.code))
        out.append(closed)
        self._on_control(closed)
