"""The receive-side frame decoder: RFC 6455 cases a client must reject, chunking, limits.

Every case runs through both readers (wsproto's and simtrio's) and must come out the same; the
randomised comparison lives in test_frames_differential.py, which reuses the helpers here."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection
from wsproto.events import AcceptConnection, CloseConnection, Request

from simtrio.errors import ProtocolError
from simtrio.transport.engine import ClientEngine
from simtrio.transport.events import (
    Accepted,
    Binary,
    Closed,
    Event,
    FrameError,
    PingReceived,
    PongReceived,
    Text,
)
from simtrio.transport.frames import FrameDecoder
from simtrio.transport.wsproto_reader import WsprotoReader

if TYPE_CHECKING:
    from collections.abc import Sequence

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def raw_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = False,
    width: int | None = None,
    length: int | None = None,
) -> bytes:
    """One frame as a server would send it, with every field overridable.

    ``width`` forces the length encoding (0: 7-bit, 2: 16-bit, 8: 64-bit), ``length`` lies about
    the payload size, ``masked`` sets the mask bit and adds a zero masking key.
    """
    n = len(payload) if length is None else length
    if width is None:
        width = 0 if n < 126 else 2 if n < 0x10000 else 8
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    mask_bit = 0x80 if masked else 0
    if width == 0:
        head += bytes([mask_bit | n])
    elif width == 2:
        head += bytes([mask_bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([mask_bit | 127]) + n.to_bytes(8, "big")
    if masked:
        head += b"\x00\x00\x00\x00"  # a zero key leaves the payload as it is
    return head + payload


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


Trace = list[tuple[list[Event], int | None]]
"""Per fed chunk: the events it produced, and the close code if it failed (then the end)."""

Feeder = Callable[[bytes, list[Event]], None]


class WsprotoSide:
    """The engine's wsproto-backed reader on an open client connection, fed like the decoder."""

    def __init__(self, max_size: int) -> None:
        self.controls: list[Event] = []
        self.ws = Connection(ConnectionType.CLIENT)
        self.reader = WsprotoReader(self.ws, max_size, self.controls.append)

    def feed_into(self, data: bytes, out: list[Event]) -> None:
        if self.reader._done:
            return
        eof = not data
        self.ws.receive_data(None if eof else data)
        self.reader.collect(out, eof=eof)


class DecoderSide:
    def __init__(self, max_size: int) -> None:
        self.controls: list[Event] = []
        self.decoder = FrameDecoder(max_size, self.controls.append)

    def feed_into(self, data: bytes, out: list[Event]) -> None:
        self.decoder.feed_into(data, out)


def trace(feed: Feeder, chunks: Sequence[bytes]) -> Trace:
    result: Trace = []
    for chunk in chunks:
        out: list[Event] = []
        try:
            feed(chunk, out)
        except FrameError as exc:
            result.append((out, exc.code))
            break
        result.append((out, None))
    return result


def both(max_size: int, chunks: Sequence[bytes]) -> tuple[Trace, Trace, WsprotoSide, DecoderSide]:
    ref = WsprotoSide(max_size)
    new = DecoderSide(max_size)
    return trace(ref.feed_into, chunks), trace(new.feed_into, chunks), ref, new


def split(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    points = sorted({min(max(c, 0), len(data)) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


# --- engine-level runner ------------------------------------------------------------------------


def open_engine(
    max_size: int, *, wsproto_reader: bool, first: bytes = b""
) -> tuple[ClientEngine, WSConnection, list[Event]]:
    """An engine past the handshake; ``first`` arrives in the same chunk as the 101."""
    engine = ClientEngine("h", "/", max_message_size=max_size, wsproto_reader=wsproto_reader)
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(engine.initiate())
    (request,) = list(server.events())
    assert isinstance(request, Request)
    events = engine.receive(server.send(AcceptConnection()) + first)
    assert events[0] == Accepted()
    return engine, server, events[1:]


EngineOutcome = tuple[list[list[Event]], int | None, list[object]]


def engine_outcome(
    max_size: int, chunks: Sequence[bytes], *, wsproto_reader: bool
) -> EngineOutcome:
    """Events per ``receive`` call, the close code of a ProtocolError, what the server got back."""
    first, rest = (chunks[0], chunks[1:]) if chunks else (b"", [])
    code: int | None = None
    batches: list[list[Event]] = []
    try:
        engine, server, events = open_engine(max_size, wsproto_reader=wsproto_reader, first=first)
        batches.append(events)
        for chunk in rest:
            batches.append(engine.receive(chunk))
    except ProtocolError:
        code = -1
    else:
        engine.receive(b"")
    replies: list[object] = []
    if "server" in locals():
        server.receive_data(engine.data_to_send())
        replies = [
            (type(ev).__name__, ev.code) if isinstance(ev, CloseConnection) else ev
            for ev in server.events()
        ]
    return batches, code, replies


def assert_same(max_size: int, chunks: Sequence[bytes]) -> Trace:
    """Both readers, and both engines, agree on ``chunks``; returns the decoder's trace."""
    ref, new, ref_side, new_side = both(max_size, chunks)
    assert new == ref
    assert new_side.controls == ref_side.controls
    assert engine_outcome(max_size, chunks, wsproto_reader=False) == engine_outcome(
        max_size, chunks, wsproto_reader=True
    )
    return new


def events_of(result: Trace) -> list[Event]:
    return [event for events, _ in result for event in events]


def error_of(result: Trace) -> int | None:
    return result[-1][1] if result else None


# --- what a client must reject ------------------------------------------------------------------

OK = raw_frame(TEXT, b"ok")

REJECTED = [
    pytest.param(raw_frame(BINARY, b"abc", masked=True), 1002, id="masked-server-frame"),
    pytest.param(raw_frame(TEXT, b"x", rsv=0x40), 1002, id="rsv1"),
    pytest.param(raw_frame(BINARY, b"x", rsv=0x20), 1002, id="rsv2"),
    pytest.param(raw_frame(PING, b"x", rsv=0x10), 1002, id="rsv3-on-control"),
    *(
        pytest.param(raw_frame(op, b"x"), 1002, id=f"reserved-opcode-{op:#x}")
        for op in (0x3, 0x7, 0xB, 0xF)
    ),
    pytest.param(raw_frame(PING, b"p", fin=False), 1002, id="fragmented-ping"),
    pytest.param(raw_frame(CLOSE, b"", fin=False), 1002, id="fragmented-close"),
    pytest.param(raw_frame(PING, b"p" * 126), 1002, id="control-126-bytes"),
    pytest.param(raw_frame(PONG, b"p" * 5, width=2), 1002, id="control-16-bit-length"),
    pytest.param(raw_frame(CONT, b"x"), 1002, id="orphan-continuation"),
    pytest.param(raw_frame(CONT, b""), 1002, id="orphan-empty-continuation"),
    pytest.param(
        raw_frame(TEXT, b"a", fin=False) + raw_frame(TEXT, b"b"), 1002, id="text-inside-message"
    ),
    pytest.param(
        raw_frame(BINARY, b"a", fin=False) + raw_frame(TEXT, b"b", fin=False),
        1002,
        id="new-message-inside-message",
    ),
    pytest.param(raw_frame(BINARY, b"x" * 5, width=2), 1002, id="non-minimal-16-bit"),
    pytest.param(raw_frame(TEXT, b"x" * 125, width=2), 1002, id="non-minimal-16-bit-125"),
    pytest.param(raw_frame(BINARY, b"x" * 300, width=8), 1002, id="non-minimal-64-bit"),
    pytest.param(raw_frame(TEXT, b"x" * 65535, width=8), 1002, id="non-minimal-64-bit-65535"),
    pytest.param(
        raw_frame(BINARY, b"x", width=8, length=(1 << 63) | 0x10000), 1002, id="64-bit-msb-set"
    ),
    pytest.param(raw_frame(TEXT, b"\xff"), 1007, id="invalid-utf8"),
    pytest.param(raw_frame(TEXT, b"ab\xc3"), 1007, id="truncated-utf8"),
    pytest.param(raw_frame(TEXT, b"\xed\xa0\x80"), 1007, id="utf8-surrogate"),
    pytest.param(raw_frame(TEXT, b"\xc0\xaf"), 1007, id="utf8-overlong"),
    pytest.param(
        raw_frame(TEXT, b"\xe2\x82", fin=False) + raw_frame(CONT, b"(x"),
        1007,
        id="invalid-utf8-across-fragments",
    ),
    pytest.param(
        raw_frame(TEXT, b"ok \xe2", fin=False) + raw_frame(CONT, b""),
        1007,
        id="message-ends-inside-a-character",
    ),
    pytest.param(raw_frame(TEXT, b"\xff" + b"x" * 200), 1007, id="invalid-utf8-16-bit"),
    pytest.param(raw_frame(CLOSE, b"\x03"), 1002, id="close-one-byte"),
    *(
        pytest.param(raw_frame(CLOSE, close_payload(code)), 1002, id=f"close-code-{code}")
        for code in (0, 999, 1004, 1005, 1006, 1014, 1015, 1016, 2999, 5000, 65535)
    ),
    pytest.param(raw_frame(CLOSE, close_payload(1000, b"\xff")), 1007, id="close-reason-utf8"),
    pytest.param(raw_frame(BINARY, b"x" * 101), 1009, id="oversize"),
    pytest.param(raw_frame(TEXT, "é".encode() * 51), 1009, id="oversize-text-utf8-bytes"),
    pytest.param(
        raw_frame(BINARY, b"x" * 60, fin=False) + raw_frame(CONT, b"x" * 41),
        1009,
        id="oversize-fragmented",
    ),
    pytest.param(
        raw_frame(TEXT, b"x" * 60, fin=False)
        + raw_frame(PING, b"")
        + raw_frame(CONT, b"x" * 30, fin=False)
        + raw_frame(CONT, b"x" * 11),
        1009,
        id="oversize-over-three-fragments",
    ),
]


@pytest.mark.parametrize(("data", "code"), REJECTED)
def test_a_client_rejects(data: bytes, code: int) -> None:
    result = assert_same(100, [OK, data])
    assert events_of(result)[0] == Text("ok")
    assert error_of(result) == code


@pytest.mark.parametrize(("data", "code"), REJECTED)
def test_rejects_the_same_byte_at_a_time(data: bytes, code: int) -> None:
    chunks = [data[i : i + 1] for i in range(len(data))]
    result = assert_same(100, [OK, *chunks, b""])
    assert error_of(result) == code


@pytest.mark.parametrize(("data", "code"), REJECTED)
def test_engine_sends_the_close_code(data: bytes, code: int) -> None:
    engine, server, _ = open_engine(100, wsproto_reader=False)
    with pytest.raises(ProtocolError):
        engine.receive(data)
    assert engine.failed
    server.receive_data(engine.data_to_send())
    *_, close = list(server.events())  # a Pong may come first
    assert isinstance(close, CloseConnection)
    assert close.code == code
    with pytest.raises(ProtocolError):
        engine.receive(OK)


# --- what a client accepts ----------------------------------------------------------------------


def test_messages_fragments_and_interleaved_control_frames() -> None:
    data = b"".join(
        [
            raw_frame(TEXT, "héllo".encode()),
            raw_frame(BINARY, b"\x00\xff"),
            raw_frame(TEXT, b"ab", fin=False),
            raw_frame(PING, b"p1"),
            raw_frame(CONT, "c\u00e9"[:1].encode() + "é".encode()[:1], fin=False),
            raw_frame(PONG, b""),
            raw_frame(CONT, "é".encode()[1:] + b"d"),
            raw_frame(BINARY, b"", fin=False),
            raw_frame(CONT, b"12", fin=False),
            raw_frame(CONT, b"34"),
            raw_frame(TEXT, b""),
            raw_frame(CLOSE, close_payload(4001, "bye ✓".encode())),
            raw_frame(TEXT, b"after the close"),
        ]
    )
    result = assert_same(1 << 20, [data])
    assert events_of(result) == [
        Text("héllo"),
        Binary(b"\x00\xff"),
        PingReceived(b"p1"),
        PongReceived(b""),
        Text("abcéd"),
        Binary(b"1234"),
        Text(""),
        Closed(4001, "bye ✓"),
    ]


@pytest.mark.parametrize("size", [0, 125, 126, 127, 65535, 65536, 70000])
@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_length_boundaries(size: int, opcode: int) -> None:
    payload = bytes([0x41 + size % 26]) * size
    data = raw_frame(opcode, payload) + raw_frame(opcode, b"z")
    for cuts in ([], [1, 3, 9], [len(data) - 2]):
        events = events_of(assert_same(1 << 20, split(data, cuts)))
        first = Text(payload.decode()) if opcode == TEXT else Binary(payload)
        assert events == [first, Text("z") if opcode == TEXT else Binary(b"z")]


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1011, 1012, 1013, 3000, 4999])
def test_close_codes_a_peer_may_send(code: int) -> None:
    result = assert_same(100, [raw_frame(CLOSE, close_payload(code, b"why"))])
    assert events_of(result) == [Closed(code, "why")]


def test_close_without_payload_is_1005_and_eof_is_none() -> None:
    assert events_of(assert_same(100, [raw_frame(CLOSE)])) == [Closed(1005, "")]
    partial = raw_frame(TEXT, b"abc", fin=False) + raw_frame(CONT, b"xyz")[:3]
    assert events_of(assert_same(100, [partial, b""])) == [Closed(None, "")]


def test_a_ping_is_answered_and_pongs_are_not() -> None:
    engine, server, _ = open_engine(100, wsproto_reader=False)
    events = engine.receive(raw_frame(PING, b"hi") + raw_frame(PONG, b"yo"))
    assert events == [PingReceived(b"hi"), PongReceived(b"yo")]
    server.receive_data(engine.data_to_send())
    assert [type(ev).__name__ for ev in server.events()] == ["Pong"]


def test_frames_after_the_101_in_the_same_chunk_including_a_partial_one() -> None:
    data = raw_frame(TEXT, b"one") + raw_frame(BINARY, b"two" * 100)
    engine, _, events = open_engine(1 << 20, wsproto_reader=False, first=data[:-7])
    assert events == [Text("one")]
    assert engine.receive(data[-7:]) == [Binary(b"two" * 100)]


def test_the_wsproto_reader_can_still_be_chosen() -> None:
    engine, _, _ = open_engine(100, wsproto_reader=True)
    assert isinstance(engine._reader, WsprotoReader)
    engine, _, _ = open_engine(100, wsproto_reader=False)
    assert isinstance(engine._reader, FrameDecoder)


def test_engine_state_after_eof_and_after_a_peer_close() -> None:
    engine, _, _ = open_engine(100, wsproto_reader=False)
    assert engine.receive(b"") == [Closed(None, "")]
    assert engine.close() == b""  # nothing can be sent on a connection that ended
    engine, server, _ = open_engine(100, wsproto_reader=False)
    assert engine.receive(raw_frame(CLOSE, close_payload(1001))) == [Closed(1001, "")]
    server.receive_data(engine.data_to_send())
    assert [(type(ev).__name__, getattr(ev, "code", None)) for ev in server.events()] == [
        ("CloseConnection", 1001)
    ]
    assert engine.close() == b""
    assert engine.receive(OK) == []


# --- bounded buffering --------------------------------------------------------------------------


def test_a_huge_announced_frame_costs_at_most_the_limit_plus_one_chunk() -> None:
    decoder = FrameDecoder(5000, lambda _: None)
    assert decoder.feed(raw_frame(BINARY, b"", length=1 << 40)) == []
    for _ in range(5):
        assert decoder.feed(b"y" * 1000) == []
        assert decoder._pending == b""
    with pytest.raises(FrameError) as info:
        decoder.feed(b"y" * 1000)
    assert info.value.code == 1009
    assert decoder._size == 0
    assert not decoder._chunks


def test_only_an_incomplete_head_is_carried_between_chunks() -> None:
    decoder = FrameDecoder(1 << 20, lambda _: None)
    frame = raw_frame(BINARY, b"q" * 70000)
    carried = []
    events: list[Event] = []
    for i in range(0, len(frame), 4093):
        events += decoder.feed(frame[i : i + 4093])
        carried.append(len(decoder._pending))
    assert events == [Binary(b"q" * 70000)]
    assert max(carried) == 0
    decoder.feed(raw_frame(BINARY, b"x" * 300)[:3])
    assert decoder._pending == raw_frame(BINARY, b"x" * 300)[:3]


def test_everything_after_a_failure_is_refused() -> None:
    decoder = FrameDecoder(100, lambda _: None)
    with pytest.raises(FrameError):
        decoder.feed(raw_frame(TEXT, b"\xff"))
    with pytest.raises(FrameError):
        decoder.feed(OK)
    closed = FrameDecoder(100, lambda _: None)
    assert closed.feed(raw_frame(CLOSE)) == [Closed(1005, "")]
    assert closed.feed(OK) == []
    assert closed.feed(b"") == []
