"""Sans-IO client WebSocket engine: bytes in, events out; calls out, bytes to write.

wsproto does the opening handshake and builds outbound frames. The receive side of an open
connection sits behind :class:`FrameReader` so that a faster hand-written decoder can replace the
wsproto-backed one without touching the trio shell or anything above it. This module never
imports trio.

Size limit: wsproto hands out data-frame payloads piecewise, as the bytes arrive (only control
frames, at most 125 bytes, are buffered whole), so its own buffer never holds more than the
bytes of one ``receive`` call plus a frame header. Reassembly happens here, and the running
message size is checked *before* each piece is kept: a peer announcing or sending a huge
message costs at most ``max_message_size`` plus one received chunk before
:class:`~simtrio.errors.ProtocolError` is raised.
"""

from __future__ import annotations

import enum
import re
from typing import TYPE_CHECKING, Final, Protocol, TypeAlias, cast
from urllib.parse import quote, urlsplit

import attrs
import h11
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from simtrio.errors import ConnectionClosed, InvalidParams, ProtocolError, excerpt

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "REJECT_BODY_LIMIT",
    "Accepted",
    "Binary",
    "ClientEngine",
    "Closed",
    "Endpoint",
    "Event",
    "FrameReader",
    "PingReceived",
    "PongReceived",
    "Rejected",
    "Text",
    "encode_headers",
    "parse_url",
]

DEFAULT_MAX_MESSAGE_SIZE: Final = 64 * 1024 * 1024
"""Inbound message limit (protocol §1.7)."""

REJECT_BODY_LIMIT: Final = 4096
"""Bytes of a rejected upgrade's body kept for the error message."""

_CLOSE_MESSAGE_TOO_BIG: Final = 1009
_CLOSE_PROTOCOL_ERROR: Final = 1002


def _short(value: str | bytes) -> str:
    return repr(excerpt(value, 40))


# --- events ---------------------------------------------------------------------------------


@attrs.frozen
class Accepted:
    """The server accepted the upgrade; frames may follow in the same batch."""


@attrs.frozen
class Rejected:
    """The server answered the upgrade with another status; ``body`` is its head."""

    status: int
    body: bytes = attrs.field(repr=_short)


Text: TypeAlias = str
"""A complete (reassembled) Text message is the plain ``str``.

No wrapper: at control-plane rates one object more per message is measurable, and a thousand
of them alive at once set off the garbage collector.
"""

Binary: TypeAlias = bytes
"""A complete (reassembled) Binary message is the plain ``bytes``."""


@attrs.frozen
class PingReceived:
    """A Ping arrived; its Pong is already queued in :meth:`ClientEngine.data_to_send`."""

    payload: bytes


@attrs.frozen
class PongReceived:
    """A Pong arrived (keepalive evidence)."""

    payload: bytes


@attrs.frozen
class Closed:
    """The connection ended.

    ``code`` is the peer's close code (1005 for a Close frame without one), or ``None`` when the
    transport ended without a Close frame.
    """

    code: int | None
    reason: str


Event: TypeAlias = Accepted | Rejected | Text | Binary | PingReceived | PongReceived | Closed


# --- URLs and headers -------------------------------------------------------------------------


@attrs.frozen
class Endpoint:
    """A parsed ``ws(s)://`` or ``http(s)://`` URL, ready for a socket and a request line."""

    secure: bool
    host: str
    """Host to resolve and to verify the certificate against (IPv6 without brackets)."""
    port: int
    target: str
    """Request target: path (``/`` when empty) plus query."""
    host_header: str
    display: str
    """``scheme://host[:port]/path`` for messages: no user info, no query."""


_BAD_HOST_CHARS: Final = frozenset(' "<>\\^`{|}')
"""Characters no host name or address may hold (besides whitespace and control characters)."""


def parse_url(url: str, *, plain: str, secure: str) -> Endpoint:
    """Split ``url`` for one of two schemes (e.g. ``ws``/``wss``); raises ``InvalidParams``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidParams(f"invalid URL {excerpt(url)!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in (plain, secure):
        raise InvalidParams(
            f"invalid URL {excerpt(url)!r}: expected {plain}:// or {secure}:// scheme"
        )
    host = parts.hostname
    if not host:
        raise InvalidParams(f"invalid URL {excerpt(url)!r}: no host")
    if any(ch in _BAD_HOST_CHARS or not ch.isprintable() or ch.isspace() for ch in host):
        raise InvalidParams(f"invalid URL {excerpt(url)!r}: not a valid host name")
    is_secure = scheme == secure
    if port is None:
        port = 443 if is_secure else 80
    path = parts.path or "/"
    target = path + ("?" + parts.query if parts.query else "")
    # Non-ASCII or spaces cannot go on the request line; existing %XX escapes are kept.
    target = quote(target, safe="!#$%&'()*+,/:;=?@[]~")
    netloc = f"[{host}]" if ":" in host else host
    if port != (443 if is_secure else 80):
        netloc = f"{netloc}:{port}"
    display = f"{scheme}://{netloc}{quote(path, safe='!#$%&()*+,/:;=@[]~')}"
    return Endpoint(is_secure, host, port, target, netloc, display)


_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE: Final = re.compile(r"(?:[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?)?")

WEBSOCKET_RESERVED_HEADERS: Final = frozenset(
    {
        "host",
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
        "content-length",
        "transfer-encoding",
    }
)


def encode_headers(
    headers: Sequence[tuple[str, str]], *, reserved: frozenset[str] = WEBSOCKET_RESERVED_HEADERS
) -> list[tuple[bytes, bytes]]:
    """Validate and encode extra request headers.

    Checked up front so that an unusable value (say a key with a stray newline) fails with a
    message naming only the header, instead of an h11 error that quotes the value.
    """
    out: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if not _TOKEN.fullmatch(name):
            raise InvalidParams(f"invalid header name {excerpt(name)!r}")
        if name.lower() in reserved:
            raise InvalidParams(f"header {name!r} is set by simtrio and cannot be overridden")
        if not _VALUE.fullmatch(value):
            raise InvalidParams(
                f"invalid value for header {name!r}: printable ASCII without surrounding "
                "whitespace expected"
            )
        out.append((name.encode("ascii"), value.encode("ascii")))
    return out


# --- receive side -----------------------------------------------------------------------------


class _Failure(Exception):
    """Raised by a reader for malformed or oversize input; the engine turns it into
    ``ProtocolError`` after queueing a Close frame with ``code``."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class FrameReader(Protocol):
    """Receive side of an open connection.

    ``feed(data)`` (``b""`` meaning EOF) returns the complete messages and control events of
    ``data``, in order, reassembled and size-checked, ending with a :class:`Closed` once the
    connection is over (and returning nothing after that). ``on_control`` (given at
    construction) is called for every :class:`PingReceived` and :class:`Closed` so the engine
    can queue the reply. Malformed or oversize input raises :class:`_Failure`.
    """

    def feed(self, data: bytes) -> list[Event]: ...


class _WsprotoReader:
    """The :class:`FrameReader` backed by wsproto's frame parser."""

    __slots__ = ("_done", "_limit", "_on_control", "_parts", "_size", "_ws")

    def __init__(
        self, ws: WSConnection, max_size: int, on_control: Callable[[Event], None]
    ) -> None:
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
            raise _Failure(str(exc), _CLOSE_PROTOCOL_ERROR) from None
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

    def _too_big(self) -> _Failure:
        return _Failure(
            f"inbound message exceeds max_message_size ({self._limit} bytes)",
            _CLOSE_MESSAGE_TOO_BIG,
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
            raise _Failure(f"invalid frame: {ev.reason}", int(ev.code))
        out.append(closed)
        self._on_control(closed)


def _unparsed_frame_bytes(ws: WSConnection) -> bytes | None:
    """What came after the 101 response, for a reader other than wsproto's.

    wsproto hands those bytes to its frame parser as soon as it accepts the upgrade and parses
    them only when asked for events, so right after the accept they all sit unparsed in its
    buffer. That buffer is private: if it is not laid out as expected, this returns None and the
    engine keeps wsproto's reader for the connection.
    """
    connection = ws.connection
    if connection is None:
        return None
    try:
        decoder = connection._proto._frame_decoder  # pyright: ignore[reportPrivateUsage]
        buffer = decoder.buffer
        if decoder.header is not None or buffer.bytes_used:
            return None
        return bytes(buffer.buffer)
    except AttributeError:
        return None


# --- the engine -------------------------------------------------------------------------------


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
        "_headers",
        "_host",
        "_max",
        "_outbound",
        "_phase",
        "_pong",
        "_reader",
        "_reject_body",
        "_reject_status",
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
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._phase = _Phase.IDLE
        self._outbound = bytearray()
        self._pong: bytes | None = None
        """Payload of the latest Ping not answered yet (one Pong answers a burst of Pings)."""
        self._reader: FrameReader | None = None
        self._reject_status = 0
        self._reject_body = bytearray()
        self._wsproto_reader = wsproto_reader

    def __repr__(self) -> str:
        return f"<ClientEngine {self._host}{self._target} {self._phase.value}>"

    @property
    def is_open(self) -> bool:
        """Handshake done and messages may still be sent."""
        return self._phase is _Phase.OPEN and self._ws.state is ConnectionState.OPEN

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
        request = Request(host=self._host, target=self._target, extra_headers=self._headers)
        try:
            data = self._ws.send(request)
        except (LocalProtocolError, h11.LocalProtocolError, ValueError):
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
            except _Failure as exc:
                raise self._fail(str(exc), exc.code) from None
        if self._phase is _Phase.CONNECTING or self._phase is _Phase.REJECTING:
            return self._receive_handshake(data)
        if self._phase is _Phase.FAILED:
            raise ProtocolError("connection already failed")
        if self._phase is _Phase.IDLE:
            raise InvalidParams("initiate() was not called")
        return []

    def _receive_handshake(self, data: bytes) -> list[Event]:
        rejecting = self._phase is _Phase.REJECTING
        if not data and not rejecting:
            self._phase = _Phase.DONE
            return [Closed(None, "")]
        out: list[Event] = []
        try:
            self._ws.receive_data(data or None)
            for ev in self._ws.events():
                if isinstance(ev, AcceptConnection):
                    return self._accepted(out)
                if isinstance(ev, RejectConnection):
                    self._reject_status = ev.status_code
                    self._phase = _Phase.REJECTING
                    if not ev.has_body:
                        return self._rejected(out)
                elif isinstance(ev, RejectData):
                    room = REJECT_BODY_LIMIT - len(self._reject_body)
                    self._reject_body += ev.data[:room]
                    if ev.body_finished or len(self._reject_body) >= REJECT_BODY_LIMIT:
                        return self._rejected(out)
        except (RemoteProtocolError, LocalProtocolError) as exc:
            if self._phase is _Phase.REJECTING:
                # The rejection is what matters, even if its body was cut short.
                return self._rejected(out)
            raise self._fail(f"invalid upgrade response: {exc}", None) from None
        if not data:
            return self._rejected(out)
        return out

    def _accepted(self, out: list[Event]) -> list[Event]:
        self._phase = _Phase.OPEN
        out.append(Accepted())
        trailing = None if self._wsproto_reader else _unparsed_frame_bytes(self._ws)
        try:
            if trailing is None:
                reader = _WsprotoReader(self._ws, self._max, self._control)
                self._reader = reader
                reader.collect(out)  # frames that came with the 101 response
            else:
                from simtrio.transport.frames import FrameDecoder  # (engine <-> frames cycle)

                decoder = FrameDecoder(self._max, self._control)
                self._reader = decoder
                if trailing:
                    decoder.feed_into(trailing, out)
        except _Failure as exc:
            raise self._fail(str(exc), exc.code) from None
        return out

    def _rejected(self, out: list[Event]) -> list[Event]:
        self._phase = _Phase.DONE
        out.append(Rejected(self._reject_status, bytes(self._reject_body)))
        return out

    def _fail(self, message: str, code: int | None) -> ProtocolError:
        if code is not None and self._ws.state in (
            ConnectionState.OPEN,
            ConnectionState.REMOTE_CLOSING,
        ):
            self._outbound += self._ws.send(CloseConnection(code=code))
        self._pong = None
        self._phase = _Phase.FAILED
        return ProtocolError(message)

    def _control(self, event: Event) -> None:
        state = self._ws.state
        if isinstance(event, PingReceived):
            # RFC 6455 §5.5.3: only the latest of several unanswered Pings needs its Pong. A
            # flood of Pings then costs one Pong per read, not one frame built and sent each.
            if state is ConnectionState.OPEN:
                self._pong = event.payload
        elif isinstance(event, Closed):
            self._phase = _Phase.DONE
            if event.code is None and state is not ConnectionState.CLOSED:
                self._ws.receive_data(None)  # keeps wsproto's send side in step after EOF
            elif event.code is not None and state in (
                ConnectionState.OPEN,
                ConnectionState.REMOTE_CLOSING,
            ):
                self._outbound += self._ws.send(CloseConnection(code=event.code))
            self._pong = None  # the connection is closing: an unanswered Ping needs no Pong

    def _queue_pong(self) -> None:
        """Turn the pending Pong into bytes (while a Pong may still be sent)."""
        payload = self._pong
        if payload is not None:
            self._pong = None
            if self._ws.state is ConnectionState.OPEN:
                self._outbound += self._ws.send(Pong(payload=payload))

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

    def _check_can_send(self) -> None:
        if self._phase is not _Phase.OPEN or self._ws.state is not ConnectionState.OPEN:
            raise ConnectionClosed("the WebSocket connection is not open")

    def send_text(self, text: str) -> bytes:
        """One unfragmented Text frame."""
        self._check_can_send()
        return self._ws.send(TextMessage(data=text))

    def send_binary(self, data: bytes) -> bytes:
        """One unfragmented Binary frame."""
        self._check_can_send()
        return self._ws.send(BytesMessage(data=data))

    def ping(self, payload: bytes = b"") -> bytes:
        """A Ping frame (payload at most 125 bytes)."""
        if len(payload) > 125:
            raise InvalidParams("a ping payload is at most 125 bytes")
        self._check_can_send()
        return self._ws.send(Ping(payload=payload))

    def close(self, code: int = 1000, reason: str = "") -> bytes:
        """Our Close frame, or ``b""`` when one cannot or need not be sent any more."""
        if not 1000 <= code < 5000 or code in (1004, 1005, 1006, 1015):
            raise InvalidParams(f"invalid close code {code}")
        if self._phase not in (_Phase.OPEN, _Phase.DONE) or self._ws.state not in (
            ConnectionState.OPEN,
            ConnectionState.REMOTE_CLOSING,
        ):
            return b""
        return self._ws.send(CloseConnection(code=code, reason=reason))
