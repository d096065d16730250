"""Sans-IO client WebSocket engine: bytes in, events out; calls out, bytes to write.

:class:`~simtrio.transport.handshake.UpgradeHandshake` does the opening handshake on h11 and
wsproto builds outbound frames. The receive side of an open connection sits behind a
:class:`~simtrio.transport.events.FrameReader` (simtrio's
:class:`~simtrio.transport.frames.FrameDecoder`, or wsproto's parser for reference) so that the
trio shell and everything above it never see which one runs. This module never imports trio.

Size limit: both readers hand out data-frame payloads piecewise, as the bytes arrive (only
control frames, at most 125 bytes, are kept whole), and the running message size is checked
*before* each piece is kept: a peer announcing or sending a huge message costs at most
``max_message_size`` plus one received chunk before :class:`~simtrio.errors.ProtocolError` is
raised.
"""

from __future__ import annotations

__all__: list[str] = []

import enum
from typing import TYPE_CHECKING, Final

import h11
from wsproto import ConnectionType
from wsproto.connection import Connection, ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from simtrio.errors import ConnectionClosed, InvalidParams, ProtocolError, excerpt
from simtrio.transport.endpoint import encode_headers
from simtrio.transport.events import Accepted, Closed, FrameError, PingReceived
from simtrio.transport.frames import FrameDecoder
from simtrio.transport.handshake import HandshakeError, UpgradeHandshake
from simtrio.transport.wsproto_reader import WsprotoReader

if TYPE_CHECKING:
    from collections.abc import Sequence

    from simtrio.transport.events import Event, FrameReader

DEFAULT_MAX_MESSAGE_SIZE: Final = 64 * 1024 * 1024
"""Inbound message limit (protocol §1.7)."""

_SENDING: Final = (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING)
"""wsproto states in which a Close frame may still be sent."""


class _Phase(enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    REJECTING = "rejecting"
    OPEN = "open"
    DONE = "done"
    FAILED = "failed"


class ClientEngine:
    """Client side of one WebSocket connection, without I/O.

    Feed received bytes to :meth:`receive`, write what :meth:`initiate`, the ``send_*``
    methods and :meth:`data_to_send` return. Header values are never shown in a repr or an
    exception.
    """

    __slots__ = (
        "_handshake",
        "_headers",
        "_host",
        "_max",
        "_outbound",
        "_phase",
        "_pong",
        "_reader",
        "_target",
        "_ws",
        "_wsproto_reader",
    )

    def __init__(
        self,
        host: str,
        target: str,
        *,
        extra_headers: Sequence[tuple[str, str]] = (),
        max_message_size: int,
        wsproto_reader: bool = False,
    ) -> None:
        if max_message_size <= 0:
            raise InvalidParams("max_message_size must be positive")
        self._host = host
        self._target = target
        self._headers = encode_headers(extra_headers)
        self._max = max_message_size
        self._handshake = UpgradeHandshake()
        self._ws: Connection | None = None
        """wsproto's side of the open connection (frames out, close bookkeeping)."""
        self._phase = _Phase.IDLE
        self._outbound = bytearray()
        self._pong: bytes | None = None
        """Payload of the latest Ping not answered yet (one Pong answers a burst of Pings)."""
        self._reader: FrameReader | None = None
        self._wsproto_reader = wsproto_reader

    def __repr__(self) -> str:
        return f"<ClientEngine {self._host}{self._target} {self._phase.value}>"

    def _state(self) -> ConnectionState:
        ws = self._ws
        if ws is not None:
            return ws.state
        return ConnectionState.CLOSED if self._phase is _Phase.DONE else ConnectionState.CONNECTING

    @property
    def is_open(self) -> bool:
        """Handshake done and messages may still be sent."""
        return self._phase is _Phase.OPEN and self._state() is ConnectionState.OPEN

    @property
    def finished(self) -> bool:
        """Nothing more will be received: closed, rejected or failed."""
        return self._phase in (_Phase.DONE, _Phase.FAILED)

    @property
    def failed(self) -> bool:
        """A ``ProtocolError`` was raised; the connection is unusable."""
        return self._phase is _Phase.FAILED

    # -- handshake --

    def initiate(self) -> bytes:
        """The HTTP upgrade request (no subprotocol, no extensions)."""
        if self._phase is not _Phase.IDLE:
            raise InvalidParams("the upgrade request was already built")
        try:
            data = self._handshake.request(self._host, self._target, self._headers)
        except (h11.LocalProtocolError, ValueError):
            # Deliberately unchained: the underlying message may quote a header value.
            raise InvalidParams(
                f"cannot build an upgrade request for {excerpt(self._host + self._target)!r}"
            ) from None
        self._phase = _Phase.CONNECTING
        return data

    def receive(self, data: bytes | bytearray) -> list[Event]:
        """Process received bytes (``b""`` = EOF) and return the resulting events, in order."""
        if type(data) is not bytes:
            data = bytes(data)
        reader = self._reader
        if reader is not None:
            try:
                return reader.feed(data)
            except FrameError as exc:
                raise self._fail(str(exc), exc.code) from None
        if self._phase is _Phase.CONNECTING or self._phase is _Phase.REJECTING:
            return self._receive_handshake(data)
        if self._phase is _Phase.FAILED:
            raise ProtocolError("connection already failed")
        if self._phase is _Phase.IDLE:
            raise InvalidParams("initiate() was not called")
        return []

    def _receive_handshake(self, data: bytes) -> list[Event]:
        handshake = self._handshake
        try:
            outcome = handshake.receive(data)
        except HandshakeError as exc:
            raise self._fail(f"invalid upgrade response: {exc}", None) from None
        if outcome is None:
            if handshake.rejecting:
                self._phase = _Phase.REJECTING
            return []
        if isinstance(outcome, Accepted):
            return self._accepted(outcome, handshake.trailing)
        self._phase = _Phase.DONE
        return [outcome]

    def _accepted(self, accepted: Accepted, trailing: bytes) -> list[Event]:
        self._phase = _Phase.OPEN
        out: list[Event] = [accepted]
        try:
            if self._wsproto_reader:
                self._ws = ws = Connection(ConnectionType.CLIENT, None, trailing)
                reader = WsprotoReader(ws, self._max, self._control)
                self._reader = reader
                reader.collect(out)  # frames that came with the 101 response
            else:
                self._ws = Connection(ConnectionType.CLIENT)
                decoder = FrameDecoder(self._max, self._control)
                self._reader = decoder
                if trailing:
                    decoder.feed_into(trailing, out)
        except FrameError as exc:
            raise self._fail(str(exc), exc.code) from None
        return out

    def _fail(self, message: str, code: int | None) -> ProtocolError:
        ws = self._ws
        if code is not None and ws is not None and ws.state in _SENDING:
            self._outbound += ws.send(CloseConnection(code=code))
        self._pong = None
        self._phase = _Phase.FAILED
        return ProtocolError(message)

    def _control(self, event: Event) -> None:
        ws = self._ws
        assert ws is not None  # a reader exists only once the connection is open
        state = ws.state
        if isinstance(event, PingReceived):
            # RFC 6455 §5.5.3: only the latest of several unanswered Pings needs its Pong. A
            # flood of Pings then costs one Pong per read, not one frame built and sent each.
            if state is ConnectionState.OPEN:
                self._pong = event.payload
        elif isinstance(event, Closed):
            self._phase = _Phase.DONE
            if event.code is None and state is not ConnectionState.CLOSED:
                ws.receive_data(None)  # keeps wsproto's send side in step after EOF
            elif event.code is not None and state in _SENDING:
                self._outbound += ws.send(CloseConnection(code=event.code))
            self._pong = None  # the connection is closing: an unanswered Ping needs no Pong

    def _queue_pong(self) -> None:
        """Turn the pending Pong into bytes (while a Pong may still be sent)."""
        payload = self._pong
        if payload is not None:
            self._pong = None
            ws = self._ws
            if ws is not None and ws.state is ConnectionState.OPEN:
                self._outbound += ws.send(Pong(payload=payload))

    # -- send side --

    @property
    def has_outbound(self) -> bool:
        """Whether :meth:`data_to_send` has something (cheap check for the hot path)."""
        return bool(self._outbound) or self._pong is not None

    def data_to_send(self) -> bytes:
        """Drain bytes the engine produced on its own (Pongs, Close replies)."""
        if self._pong is not None:
            self._queue_pong()
        if not self._outbound:
            return b""
        data = bytes(self._outbound)
        self._outbound.clear()
        return data

    def _sender(self) -> Connection:
        """wsproto's connection while messages may be sent; ``ConnectionClosed`` otherwise."""
        ws = self._ws
        if self._phase is not _Phase.OPEN or ws is None or ws.state is not ConnectionState.OPEN:
            raise ConnectionClosed("the WebSocket connection is not open")
        return ws

    def send_text(self, text: str) -> bytes:
        """One unfragmented Text frame."""
        return self._sender().send(TextMessage(data=text))

    def send_binary(self, data: bytes) -> bytes:
        """One unfragmented Binary frame."""
        return self._sender().send(BytesMessage(data=data))

    def ping(self, payload: bytes = b"") -> bytes:
        """A Ping frame (payload at most 125 bytes)."""
        if len(payload) > 125:
            raise InvalidParams("a ping payload is at most 125 bytes")
        return self._sender().send(Ping(payload=payload))

    def close(self, code: int = 1000, reason: str = "") -> bytes:
        """Our Close frame, or ``b""`` when one cannot or need not be sent any more."""
        if not 1000 <= code < 5000 or code in (1004, 1005, 1006, 1015):
            raise InvalidParams(f"invalid close code {code}")
        ws = self._ws
        if self._phase not in (_Phase.OPEN, _Phase.DONE) or ws is None or ws.state not in _SENDING:
            return b""
        return ws.send(CloseConnection(code=code, reason=reason))
