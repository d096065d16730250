"""Receive side of a client WebSocket connection (RFC 6455), without I/O and without wsproto.

The engine's default :class:`~simtrio.transport.events.FrameReader`. wsproto parses one frame at
a time through a generator, copies every payload twice and builds one event object per frame
piece; at control-plane rates (hundreds of thousands of ~150-byte Text frames a second) that is
where a client spends its time. This decoder walks every complete frame of a received chunk in
one loop over the bytes, with a fast path for the overwhelmingly common case (an unfragmented,
unmasked Text or Binary frame with a short length) that costs one slice and one UTF-8 decode:
a message is handed on as the plain ``str`` or ``bytes``.

Behaviour is wsproto's, frame for frame, so that either reader can sit behind the engine (the
differential tests feed both the same byte streams and compare every call):

* Every frame problem a client must reject is fatal, with wsproto's close code: masked server
  frames, RSV bits (no extension is ever negotiated), reserved opcodes, fragmented or oversized
  (> 125 bytes) control frames, non-minimal or MSB-set lengths, continuation frames without a
  message and data frames inside one (1002); invalid UTF-8 in Text messages, checked
  incrementally across frames, and in Close reasons (1007); Close payloads of one byte or with
  a code that may not be sent (1002).
* A data frame whose payload has not fully arrived is consumed piece by piece as bytes come in
  (Text through an incremental UTF-8 decoder), so the decoder never holds more than one received
  chunk plus a frame header beyond the message being assembled, and the message size limit is
  checked as every piece is kept: a peer announcing or sending a huge message costs at most
  ``max_size`` plus one chunk. Like wsproto's reader, a Text message's size counts the UTF-8
  bytes of the characters decoded so far.
* Control frames are handled when complete (they are at most 127 bytes on the wire), in between
  the fragments of a message if need be. Nothing after a Close frame is parsed.
"""

from __future__ import annotations

__all__: list[str] = []

import codecs
from typing import TYPE_CHECKING, Final

from wsproto.frame_protocol import CloseReason, Opcode

from simtrio.transport.events import Closed, FrameError, PingReceived, PongReceived

if TYPE_CHECKING:
    from collections.abc import Callable

    from simtrio.transport.events import Event

# wsproto's names, as plain ints for the hot path's comparisons.
_PROTOCOL_ERROR: Final = int(CloseReason.PROTOCOL_ERROR)
_INVALID_DATA: Final = int(CloseReason.INVALID_FRAME_PAYLOAD_DATA)
_TOO_BIG: Final = int(CloseReason.MESSAGE_TOO_BIG)

_CONTINUATION: Final = int(Opcode.CONTINUATION)
_TEXT: Final = int(Opcode.TEXT)
_CLOSE: Final = int(Opcode.CLOSE)
_PING: Final = int(Opcode.PING)
_PONG: Final = int(Opcode.PONG)
_OPCODES: Final = frozenset(map(int, Opcode))


# Close codes a peer may send (RFC 6455 §7.4): the registered ones below 3000, then 3000-4999.
_SENDABLE_CLOSE_CODES: Final = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013}
)

_utf8_decoder: Final = codecs.getincrementaldecoder("utf-8")


def _utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


class FrameDecoder:
    """Decodes the frames a server sends into the engine's events.

    ``feed(data)`` (``b""`` meaning EOF) returns the messages and control events completed by
    ``data``, in order; ``on_control`` is called for every :class:`PingReceived` and
    :class:`Closed` so that the engine can queue the reply. Malformed or oversize input raises
    :class:`~simtrio.transport.events.FrameError` (with the close code to send); the decoder is unusable after that.
    """

    __slots__ = (
        "_chunks",
        "_done",
        "_failed",
        "_fin",
        "_limit",
        "_message",
        "_on_control",
        "_pending",
        "_remaining",
        "_size",
        "_texts",
        "_utf8",
    )

    def __init__(self, max_size: int, on_control: Callable[[Event], None]) -> None:
        self._limit = max_size
        self._on_control = on_control
        self._pending = b""  # an incomplete frame head (or control frame) from the last chunk
        self._message = 0  # opcode of the message being assembled, 0 when there is none
        self._utf8: codecs.IncrementalDecoder | None = None
        self._texts: list[str] = []  # pieces of the Text message being assembled
        self._chunks: list[bytes] = []  # pieces of the Binary message being assembled
        self._size = 0  # bytes of the message kept so far
        self._remaining = 0  # payload bytes still to come for the current data frame
        self._fin = False  # FIN bit of the current data frame
        self._done = False
        self._failed = False

    def feed(self, data: bytes) -> list[Event]:
        """The events completed by ``data`` (see the class docstring)."""
        out: list[Event] = []
        self.feed_into(data, out)
        return out

    def feed_into(self, data: bytes, out: list[Event]) -> None:
        """:meth:`feed`, appending to ``out``: on failure ``out`` keeps the events before it."""
        if self._done:
            return
        if self._failed:
            raise FrameError("connection already failed", _PROTOCOL_ERROR)
        try:
            if not data:
                self._finish(Closed(None, ""), out)
            else:
                self._run(data, out)
        except FrameError:
            self._failed = True
            self._end_message()
            raise

    # -- the loop ------------------------------------------------------------------------------

    def _run(self, data: bytes, out: list[Event]) -> None:
        if self._pending:
            data = self._pending + data
            self._pending = b""
        end = len(data)
        pos = 0
        if self._remaining:
            pos = self._continue_frame(data, out)
            if self._remaining:
                return
        limit = self._limit
        message = self._message
        push = out.append
        while end - pos >= 2:
            head = data[pos]
            if (head == 0x81 or head == 0x82) and not message:
                # Fast path: an unfragmented, unmasked Text/Binary frame with a 7- or 16-bit
                # length, no message in progress. Anything odd falls through to _frame.
                short = data[pos + 1]
                if short < 126:
                    start = pos + 2
                    stop = start + short
                elif short == 126 and end - pos >= 4:
                    start = pos + 4
                    stop = start + ((data[pos + 2] << 8) | data[pos + 3])
                    if stop - start < 126:
                        stop = end + 1
                else:
                    start = stop = end + 1
                if stop <= end:
                    if head == 0x81:
                        try:
                            payload: str | bytes = data[start:stop].decode()
                        except UnicodeDecodeError as exc:
                            raise _invalid_text(exc) from None
                    else:
                        payload = data[start:stop]
                    if stop - start > limit:
                        raise self._too_big()
                    push(payload)
                    pos = stop
                    continue
            pos = self._frame(data, pos, out)
            if pos < 0 or self._done:
                return
            message = self._message
        if pos < end:
            self._pending = data[pos:]

    def _frame(self, data: bytes, pos: int, out: list[Event]) -> int:
        """Handle the frame at ``pos`` in full generality.

        Returns the position after what was consumed, or -1 when the rest of ``data`` (from
        ``pos``) has to wait for more bytes. Checks run in wsproto's order, so a frame is
        rejected in the same ``feed`` call and with the same code as there.
        """
        end = len(data)
        avail = end - pos
        head = data[pos]
        second = data[pos + 1]
        opcode = head & 0x0F
        fin = bool(head & 0x80)
        if opcode not in _OPCODES:
            raise FrameError(f"invalid frame: reserved opcode {opcode:#x}", _PROTOCOL_ERROR)
        control = bool(opcode & 0x08)
        if control and not fin:
            raise FrameError("invalid frame: fragmented control frame", _PROTOCOL_ERROR)
        length = second & 0x7F
        if control and length > 125:
            raise FrameError("invalid frame: control frame longer than 125 bytes", _PROTOCOL_ERROR)
        start = pos + 2
        if length == 126:
            if avail < 4:
                return self._wait(data, pos)
            length = (data[pos + 2] << 8) | data[pos + 3]
            if length < 126:
                raise FrameError("invalid frame: non-minimal 16-bit length", _PROTOCOL_ERROR)
            start = pos + 4
        elif length == 127:
            if avail < 10:
                return self._wait(data, pos)
            length = int.from_bytes(data[pos + 2 : pos + 10], "big")
            if length < 0x10000:
                raise FrameError("invalid frame: non-minimal 64-bit length", _PROTOCOL_ERROR)
            if length >> 63:
                raise FrameError("invalid frame: 64-bit length with the MSB set", _PROTOCOL_ERROR)
            start = pos + 10
        if head & 0x70:
            raise FrameError("invalid frame: reserved bits set", _PROTOCOL_ERROR)
        if second & 0x80:
            raise FrameError("invalid frame: masked frame from a server", _PROTOCOL_ERROR)
        have = end - start
        if control:
            if have < length:
                return self._wait(data, pos)
            stop = start + length
            self._control(opcode, data[start:stop], out)
            return stop
        if length and not have:
            return self._wait(data, pos)
        self._begin_frame(opcode)
        if have >= length:
            stop = start + length
            self._piece(data[start:stop], fin, out)
            return stop
        self._remaining = length - have
        self._fin = fin
        self._piece(data[start:], False, out)
        return end

    def _wait(self, data: bytes, pos: int) -> int:
        self._pending = data[pos:]
        return -1

    def _continue_frame(self, data: bytes, out: list[Event]) -> int:
        """Take the next piece of a data frame whose payload started in an earlier chunk."""
        take = min(self._remaining, len(data))
        self._remaining -= take
        self._piece(data[:take], self._fin and not self._remaining, out)
        return take

    # -- messages ------------------------------------------------------------------------------

    def _begin_frame(self, opcode: int) -> None:
        if not self._message:
            if opcode == _CONTINUATION:
                raise FrameError(
                    "invalid frame: continuation frame without a message", _PROTOCOL_ERROR
                )
            self._message = opcode
        elif opcode != _CONTINUATION:
            raise FrameError(
                "invalid frame: new data frame inside a fragmented message", _PROTOCOL_ERROR
            )
        if opcode == _TEXT:
            self._utf8 = _utf8_decoder()

    def _piece(self, payload: bytes, last: bool, out: list[Event]) -> None:
        """Keep one piece of the current message; ``last`` ends the message."""
        if self._message == _TEXT:
            assert self._utf8 is not None
            try:
                text = self._utf8.decode(payload, last)
            except UnicodeDecodeError as exc:
                raise _invalid_text(exc) from None
            size = self._size + _utf8_size(text)
            if size > self._limit:
                raise self._too_big()
            if last:
                texts = self._texts
                if texts:
                    texts.append(text)
                    text = "".join(texts)
                out.append(text)
                self._end_message()
            else:
                self._texts.append(text)
                self._size = size
        else:
            size = self._size + len(payload)
            if size > self._limit:
                raise self._too_big()
            if last:
                chunks = self._chunks
                if chunks:
                    chunks.append(payload)
                    payload = b"".join(chunks)
                out.append(payload)
                self._end_message()
            else:
                self._chunks.append(payload)
                self._size = size

    def _end_message(self) -> None:
        self._message = 0
        self._utf8 = None
        self._texts = []
        self._chunks = []
        self._size = 0

    def _too_big(self) -> FrameError:
        return FrameError(
            f"inbound message exceeds max_message_size ({self._limit} bytes)", _TOO_BIG
        )

    # -- control frames ------------------------------------------------------------------------

    def _control(self, opcode: int, payload: bytes, out: list[Event]) -> None:
        if opcode == _PING:
            ping = PingReceived(payload)
            out.append(ping)
            self._on_control(ping)
        elif opcode == _PONG:
            out.append(PongReceived(payload))
        else:
            self._finish(_close_event(payload), out)

    def _finish(self, closed: Closed, out: list[Event]) -> None:
        self._done = True
        self._pending = b""
        self._remaining = 0
        self._end_message()
        out.append(closed)
        self._on_control(closed)


def _invalid_text(exc: UnicodeDecodeError) -> FrameError:
    return FrameError(f"invalid UTF-8 in a Text message: {exc.reason}", _INVALID_DATA)


def _close_event(payload: bytes) -> Closed:
    """Validate a Close frame's payload (RFC 6455 §5.5.1, §7.4) the way wsproto does."""
    if not payload:
        return Closed(1005, "")
    if len(payload) == 1:
        raise FrameError("invalid frame: Close frame with a 1-byte payload", _PROTOCOL_ERROR)
    code = (payload[0] << 8) | payload[1]
    if not (3000 <= code <= 4999 or code in _SENDABLE_CLOSE_CODES):
        raise FrameError(f"invalid frame: Close frame with code {code}", _PROTOCOL_ERROR)
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FrameError(f"invalid UTF-8 in a Close reason: {exc.reason}", _INVALID_DATA) from None
    return Closed(code, reason)
