"""simtrio's frame decoder against wsproto's, on random server byte streams.

A stream is a random sequence of messages (Text with multi-byte characters, Binary, empty,
lengths around the 125/126 and 65535/65536 encodings), fragmented at random byte offsets (so
characters split across frames), with Pings and Pongs between fragments, ending with a Close, an
EOF, a cut mid-frame, or nothing; optionally one fault a client must reject is put somewhere in
it. The stream is cut into random chunks and fed to both readers: every ``feed`` call must give
the same events (and the same error with the same close code), the control callbacks must match,
and two engines, one on each reader, must answer the server with the same frames.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hypothesis import HealthCheck, given, settings, strategies as st

from simtrio.transport.events import Binary, Text
from tests.transport.test_frames import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    assert_same,
    close_payload,
    events_of,
    raw_frame,
    split,
)

if TYPE_CHECKING:
    from hypothesis.strategies import DrawFn

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

BOUNDARY_SIZES = [125, 126, 127, 65535, 65536, 65537]
CHARS = st.sampled_from(["a", "{", "é", "ж", "€", "😀", "\x00", "\u07ff", "\uffff"])


@st.composite
def text_payload(draw: DrawFn) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        size = draw(st.sampled_from(BOUNDARY_SIZES))
        char = draw(CHARS).encode()
        body = char * (size // len(char))
        return body + b"x" * (size - len(body))
    return draw(st.text(CHARS, max_size=40)).encode()


@st.composite
def binary_payload(draw: DrawFn) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return bytes([draw(st.integers(0, 255))]) * draw(st.sampled_from(BOUNDARY_SIZES))
    return draw(st.binary(max_size=40))


def control_frame(draw: DrawFn) -> bytes:
    opcode = draw(st.sampled_from([PING, PONG]))
    return raw_frame(opcode, draw(st.binary(max_size=125)))


@st.composite
def message(draw: DrawFn) -> bytes:
    """One message, maybe fragmented, maybe with control frames between the fragments."""
    opcode = draw(st.sampled_from([TEXT, BINARY]))
    payload = draw(text_payload() if opcode == TEXT else binary_payload())
    cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=3)))
    pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
    out = b""
    for i, piece in enumerate(pieces):
        if i and draw(st.booleans()):
            out += control_frame(draw)
        out += raw_frame(opcode if i == 0 else CONT, piece, fin=i == len(pieces) - 1)
    return out


def fault(draw: DrawFn) -> bytes:
    """One thing a client must reject (or, for close codes and lengths, may accept)."""
    kind = draw(st.integers(0, 13))
    body = draw(st.binary(max_size=8))
    if kind == 0:
        return raw_frame(draw(st.sampled_from([TEXT, BINARY, PING])), body, masked=True)
    if kind == 1:
        rsv = draw(st.sampled_from([0x40, 0x20, 0x10]))
        return raw_frame(draw(st.sampled_from([TEXT, BINARY, CONT, PING])), body, rsv=rsv)
    if kind == 2:
        return raw_frame(draw(st.sampled_from([3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])), body)
    if kind == 3:
        return raw_frame(draw(st.sampled_from([PING, PONG, CLOSE])), body, fin=False)
    if kind == 4:
        return raw_frame(PING, b"p" * draw(st.sampled_from([126, 200, 70000])))
    if kind == 5:
        return raw_frame(CONT, body, fin=draw(st.booleans()))
    if kind == 6:  # a new data frame while a fragmented message is open
        return raw_frame(TEXT, b"a", fin=False) + raw_frame(
            draw(st.sampled_from([TEXT, BINARY])), body, fin=draw(st.booleans())
        )
    if kind == 7:
        bad = draw(st.sampled_from([b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\xc0\xaf", b"\xe2\x82"]))
        head = draw(st.text(CHARS, max_size=5)).encode()
        data = head + bad + body
        cut = draw(st.integers(0, len(data)))
        if cut == len(data):
            return raw_frame(TEXT, data)
        return raw_frame(TEXT, data[:cut], fin=False) + raw_frame(CONT, data[cut:])
    if kind == 8:  # non-minimal lengths
        if draw(st.booleans()):
            return raw_frame(
                draw(st.sampled_from([TEXT, BINARY])), b"z" * draw(st.integers(0, 125)), width=2
            )
        size = draw(st.sampled_from([0, 125, 126, 4096, 65535]))
        return raw_frame(draw(st.sampled_from([TEXT, BINARY])), b"z" * size, width=8)
    if kind == 9:
        return raw_frame(BINARY, body, width=8, length=(1 << 63) | draw(st.integers(0, 1 << 20)))
    if kind == 10:
        return raw_frame(CLOSE, draw(st.binary(min_size=1, max_size=1)))
    if kind == 11:
        code = draw(st.sampled_from([0, 999, 1004, 1005, 1006, 1014, 1015, 1016, 2999, 5000]))
        return raw_frame(CLOSE, close_payload(code, body))
    if kind == 12:
        return raw_frame(CLOSE, close_payload(1000, b"ok\xff"))
    # a frame header announcing more than any limit here, then a little of it
    return raw_frame(draw(st.sampled_from([TEXT, BINARY])), b"", length=1 << 40) + body


def ending(draw: DrawFn) -> bytes:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        code = draw(st.sampled_from([1000, 1001, 1008, 1011, 3000, 4999]))
        reason = draw(st.text(CHARS, max_size=20)).encode()[:123]
        return raw_frame(CLOSE, close_payload(code, reason)) + draw(st.binary(max_size=4))
    if kind == 1:
        return raw_frame(CLOSE)
    return b""


@st.composite
def scenario(draw: DrawFn) -> tuple[int, list[bytes]]:
    items = draw(st.lists(message(), max_size=6))
    stream = b""
    fault_at = draw(st.integers(0, len(items))) if draw(st.integers(0, 2)) == 0 else None
    for i, item in enumerate(items):
        if i == fault_at:
            stream += fault(draw)
        if draw(st.integers(0, 4)) == 0:
            stream += control_frame(draw)
        stream += item
    if fault_at == len(items):
        stream += fault(draw)
    stream += ending(draw)
    if draw(st.integers(0, 4)) == 0:  # the connection drops mid-stream
        stream = stream[: draw(st.integers(0, len(stream)))]
    cuts = draw(st.lists(st.integers(0, len(stream)), max_size=8))
    chunks = split(stream, cuts)
    if draw(st.booleans()):
        chunks.append(b"")  # EOF
    max_size = draw(st.sampled_from([1, 50, 300, 70000, 1 << 20]))
    return max_size, chunks


@SETTINGS
@given(scenario())
def test_same_events_errors_and_replies_as_wsproto(case: tuple[int, list[bytes]]) -> None:
    max_size, chunks = case
    assert_same(max_size, chunks)


@SETTINGS
@given(st.lists(message(), min_size=1, max_size=8), st.data())
def test_valid_streams_decode_to_their_messages(streams: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(streams)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    result = assert_same(1 << 20, split(stream, cuts))
    assert result[-1][1] is None
    messages = [e for e in events_of(result) if isinstance(e, Text | Binary)]
    assert len(messages) == len(streams)


@SETTINGS
@given(st.lists(message(), max_size=3), st.data())
def test_faults_after_valid_traffic(streams: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(streams) + fault(data.draw) + b"".join(streams[:1])
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=6))
    assert_same(data.draw(st.sampled_from([50, 1 << 20])), [*split(stream, cuts), b""])


@SETTINGS
@given(message(), st.integers(-4, 1), st.data())
def test_size_limit_around_the_message_size(frames: bytes, delta: int, data: st.DataObject) -> None:
    """The limit falls within a character or a fragment of the message's own size."""
    (first,) = [
        e for e in events_of(assert_same(1 << 20, [frames])) if isinstance(e, Text | Binary)
    ]
    total = len(first.encode("utf-8")) if isinstance(first, Text) else len(first)
    cuts = data.draw(st.lists(st.integers(0, len(frames)), max_size=6))
    assert_same(max(1, total + delta), split(frames, cuts))
