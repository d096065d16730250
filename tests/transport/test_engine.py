"""The sans-IO engine, driven by a wsproto server connection (no sockets)."""

from __future__ import annotations

import struct

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event as WsEvent,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from simtrio.errors import ConnectionClosed, InvalidParams, ProtocolError
from simtrio.transport.endpoint import encode_headers, parse_url
from simtrio.transport.engine import ClientEngine
from simtrio.transport.events import (
    Accepted,
    Binary,
    Closed,
    Event,
    PingReceived,
    PongReceived,
    Rejected,
    Text,
)
from simtrio.transport.handshake import REJECT_BODY_LIMIT

KEY = "sk-very-secret-key"


def make_engine(max_size: int = 1 << 20) -> ClientEngine:
    return ClientEngine(
        "example.test:8900",
        "/backtest?x=1",
        extra_headers=[("X-API-Key", KEY)],
        max_message_size=max_size,
    )


def server_for(engine: ClientEngine) -> tuple[WSConnection, Request]:
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(engine.initiate())
    (request,) = list(server.events())
    assert isinstance(request, Request)
    return server, request


def opened(max_size: int = 1 << 20) -> tuple[ClientEngine, WSConnection]:
    engine = make_engine(max_size)
    server, _ = server_for(engine)
    assert engine.receive(server.send(AcceptConnection())) == [Accepted()]
    return engine, server


def server_events(server: WSConnection, data: bytes) -> list[WsEvent]:
    server.receive_data(data)
    return list(server.events())


def frame(opcode: int, payload: bytes, *, fin: bool = True, length: int | None = None) -> bytes:
    """A raw unmasked server frame; ``length`` may lie about the payload size."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([n])
    elif n < 1 << 16:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    return head + payload


# --- handshake ------------------------------------------------------------------------------


def test_upgrade_request_carries_target_host_and_key_but_no_extensions() -> None:
    engine = make_engine()
    data = engine.initiate()
    assert data.startswith(b"GET /backtest?x=1 HTTP/1.1\r\n")
    lowered = data.lower()
    assert b"host: example.test:8900\r\n" in lowered
    assert f"x-api-key: {KEY}\r\n".encode() in lowered
    assert b"sec-websocket-protocol" not in lowered
    assert b"sec-websocket-extensions" not in lowered
    server, request = server_for(make_engine())
    assert request.target == "/backtest?x=1"
    assert request.extensions == []
    assert request.subprotocols == []
    assert server.state.name == "CONNECTING"


def test_initiate_twice_is_refused() -> None:
    engine = make_engine()
    engine.initiate()
    with pytest.raises(InvalidParams):
        engine.initiate()


def test_accept_then_frames_in_the_same_chunk_come_as_one_batch() -> None:
    engine = make_engine()
    server, _ = server_for(engine)
    data = (
        server.send(AcceptConnection())
        + server.send(TextMessage(data="a"))
        + server.send(BytesMessage(data=b"b"))
    )
    assert engine.receive(data) == [Accepted(), Text("a"), Binary(b"b")]
    assert engine.is_open
    assert not engine.finished


def test_reject_with_body() -> None:
    engine = make_engine()
    server, _ = server_for(engine)
    data = server.send(
        RejectConnection(status_code=404, headers=[(b"content-length", b"9")], has_body=True)
    ) + server.send(RejectData(data=b"not found"))
    assert engine.receive(data) == [Rejected(404, b"not found")]
    assert engine.finished
    assert not engine.is_open
    assert engine.receive(b"more") == []


def test_reject_without_body() -> None:
    engine = make_engine()
    engine.initiate()
    events = engine.receive(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n")
    assert events == [Rejected(401, b"")]


def test_reject_body_read_until_eof() -> None:
    engine = make_engine()
    engine.initiate()
    assert engine.receive(b"HTTP/1.1 503 Busy\r\nconnection: close\r\n\r\ntry ") == []
    assert engine.receive(b"later") == []
    assert engine.receive(b"") == [Rejected(503, b"try later")]


def test_reject_body_cut_short_by_eof_still_reports_the_status() -> None:
    engine = make_engine()
    engine.initiate()
    assert engine.receive(b"HTTP/1.1 429 Slow down\r\ncontent-length: 100\r\n\r\nabc") == []
    assert engine.receive(b"") == [Rejected(429, b"abc")]


def test_reject_body_is_bounded_and_reported_without_waiting_for_the_rest() -> None:
    engine = make_engine()
    engine.initiate()
    head = b"HTTP/1.1 500 Oops\r\ncontent-length: 1000000\r\n\r\n"
    events = engine.receive(head + b"x" * (REJECT_BODY_LIMIT + 10))
    assert events == [Rejected(500, b"x" * REJECT_BODY_LIMIT)]


def test_eof_before_any_response() -> None:
    engine = make_engine()
    engine.initiate()
    assert engine.receive(b"") == [Closed(None, "")]
    assert engine.finished


def test_bad_accept_token_is_a_protocol_error() -> None:
    engine = make_engine()
    engine.initiate()
    response = (
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
        b"sec-websocket-accept: bogus\r\n\r\n"
    )
    with pytest.raises(ProtocolError, match="accept token"):
        engine.receive(response)
    assert engine.failed


def accept_response(engine: ClientEngine, *extra: bytes) -> bytes:
    """A valid 101 answer to ``engine``'s upgrade request, plus ``extra`` header lines."""
    server, _ = server_for(engine)
    head, _, _ = server.send(AcceptConnection()).partition(b"\r\n\r\n")
    return head + b"".join(b"\r\n" + line for line in extra) + b"\r\n\r\n"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"Sec-WebSocket-Extensions: permessage-deflate", "unrecognized extension"),
        (b"Sec-WebSocket-Extensions: x\xff", "unrecognized extension"),
        (b"Sec-WebSocket-Protocol: chat", "unrecognized subprotocol"),
        (b"Sec-WebSocket-Protocol: \xe9", "unrecognized subprotocol"),
    ],
)
def test_an_extension_or_subprotocol_nobody_offered_is_a_protocol_error(
    header: bytes, message: str
) -> None:
    engine = make_engine()
    response = accept_response(engine, header)
    with pytest.raises(ProtocolError, match=message):
        engine.receive(response)
    assert engine.failed


def test_a_non_ascii_connection_header_is_read_not_crashed_on() -> None:
    engine = make_engine()
    response = accept_response(engine).replace(b"Connection: Upgrade", b"Connection: Upgrade, \xff")
    assert engine.receive(response) == [Accepted()]


def test_frames_after_the_101_response_reach_the_frame_reader() -> None:
    engine = make_engine()
    response = accept_response(engine) + b"\x81\x02hi" + b"\x82\x01\x00"
    assert engine.receive(response[:-3]) == [Accepted(), "hi"]
    assert engine.receive(response[-3:]) == [b"\x00"]


def test_garbage_response_is_a_protocol_error() -> None:
    engine = make_engine()
    engine.initiate()
    with pytest.raises(ProtocolError):
        engine.receive(b"\x00\x01 definitely not HTTP\r\n\r\n")


def test_receive_before_initiate_is_refused() -> None:
    with pytest.raises(InvalidParams):
        make_engine().receive(b"x")


def test_header_values_never_show_in_repr() -> None:
    engine = make_engine()
    assert KEY not in repr(engine)
    engine.initiate()
    assert KEY not in repr(engine)


@pytest.mark.parametrize("value", [f"{KEY}\r\nX-Evil: 1", f" {KEY}", f"{KEY}\x00", f"{KEY}é"])
def test_unusable_header_value_is_rejected_without_quoting_it(value: str) -> None:
    with pytest.raises(InvalidParams) as info:
        ClientEngine("h", "/", extra_headers=[("X-API-Key", value)], max_message_size=10)
    assert KEY not in str(info.value)
    assert "X-API-Key" in str(info.value)


def test_empty_header_value_is_allowed() -> None:
    assert encode_headers([("X-API-Key", "")]) == [(b"X-API-Key", b"")]


@pytest.mark.parametrize("name", ["Host", "sec-websocket-key", "Connection", "bad name"])
def test_reserved_or_invalid_header_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidParams):
        encode_headers([(name, "v")])


def test_max_message_size_must_be_positive() -> None:
    with pytest.raises(InvalidParams):
        ClientEngine("h", "/", max_message_size=0)


# --- messages -------------------------------------------------------------------------------


def test_text_binary_and_fragmented_messages() -> None:
    engine, server = opened()
    data = (
        server.send(TextMessage(data="hello"))
        + server.send(BytesMessage(data=b"\x00\xff"))
        + server.send(TextMessage(data="ab", message_finished=False))
        + server.send(TextMessage(data="cé", message_finished=False))
        + server.send(TextMessage(data="d"))
        + server.send(BytesMessage(data=b"12", message_finished=False))
        + server.send(BytesMessage(data=b"34"))
    )
    assert engine.receive(data) == [
        Text("hello"),
        Binary(b"\x00\xff"),
        Text("abcéd"),
        Binary(b"1234"),
    ]


def test_control_frames_between_fragments() -> None:
    engine, server = opened()
    data = (
        server.send(TextMessage(data="ab", message_finished=False))
        + server.send(Ping(payload=b"p"))
        + server.send(TextMessage(data="cd"))
    )
    assert engine.receive(data) == [PingReceived(b"p"), Text("abcd")]


def test_empty_messages() -> None:
    engine, server = opened()
    data = server.send(TextMessage(data="")) + server.send(BytesMessage(data=b""))
    assert engine.receive(data) == [Text(""), Binary(b"")]


def test_ping_is_answered_with_a_queued_pong() -> None:
    engine, server = opened()
    assert not engine.has_outbound
    assert engine.receive(server.send(Ping(payload=b"abc"))) == [PingReceived(b"abc")]
    assert engine.has_outbound
    reply = engine.data_to_send()
    assert engine.data_to_send() == b""
    assert server_events(server, reply) == [Pong(payload=b"abc")]


def test_pong_is_reported() -> None:
    engine, server = opened()
    assert server_events(server, engine.ping(b"k")) == [Ping(payload=b"k")]
    assert engine.receive(server.send(Pong(payload=b"k"))) == [PongReceived(b"k")]
    assert engine.data_to_send() == b""


def test_outbound_frames_reach_the_server() -> None:
    engine, server = opened()
    data = engine.send_text("héllo") + engine.send_binary(b"\x01\x02") + engine.ping()
    assert server_events(server, data) == [
        TextMessage(data="héllo"),
        BytesMessage(data=bytearray(b"\x01\x02")),
        Ping(payload=b""),
    ]


def test_ping_payload_is_limited() -> None:
    engine, _ = opened()
    with pytest.raises(InvalidParams):
        engine.ping(b"x" * 126)


def test_send_before_the_handshake_is_refused() -> None:
    engine = make_engine()
    with pytest.raises(ConnectionClosed):
        engine.send_text("early")
    assert engine.close() == b""


def test_many_frames_in_one_receive_are_one_batch() -> None:
    engine, server = opened()
    data = b"".join(server.send(TextMessage(data=f"m{i}")) for i in range(500))
    events = engine.receive(data)
    assert events == [Text(f"m{i}") for i in range(500)]


# --- closing --------------------------------------------------------------------------------


def test_peer_close_is_reported_and_echoed() -> None:
    engine, server = opened()
    data = server.send(TextMessage(data="last")) + server.send(
        CloseConnection(code=1001, reason="bye")
    )
    assert engine.receive(data) == [Text("last"), Closed(1001, "bye")]
    assert engine.finished
    assert not engine.is_open
    echo = engine.data_to_send()
    assert server_events(server, echo) == [CloseConnection(code=1001, reason="")]
    assert engine.receive(b"\x81\x01x") == []  # bytes after the close are ignored
    assert engine.receive(b"") == []
    assert engine.close() == b""
    with pytest.raises(ConnectionClosed):
        engine.send_text("too late")


def test_close_without_status_code() -> None:
    engine, _ = opened()
    assert engine.receive(frame(0x8, b"")) == [Closed(1005, "")]


def test_local_close_handshake() -> None:
    engine, server = opened()
    late = server.send(TextMessage(data="late"))  # in flight while we close
    ours = engine.close(4000, "done")
    assert server_events(server, ours) == [CloseConnection(code=4000, reason="done")]
    assert not engine.is_open
    with pytest.raises(ConnectionClosed):
        engine.send_binary(b"x")
    data = late + server.send(CloseConnection(code=4000))
    assert engine.receive(data) == [Text("late"), Closed(4000, "")]
    assert engine.data_to_send() == b""  # no reply to an echo
    assert engine.finished
    assert engine.close() == b""


def test_invalid_close_code_is_refused() -> None:
    engine, _ = opened()
    with pytest.raises(InvalidParams):
        engine.close(1006)


def test_eof_without_close_frame() -> None:
    engine, server = opened()
    data = server.send(TextMessage(data="a")) + server.send(
        TextMessage(data="b", message_finished=False)
    )
    assert engine.receive(data) == [Text("a")]
    assert engine.receive(b"") == [Closed(None, "")]
    assert engine.data_to_send() == b""
    assert engine.receive(b"") == []


# --- failures -------------------------------------------------------------------------------


def test_oversize_single_frame_message() -> None:
    engine, server = opened(max_size=100)
    assert engine.receive(server.send(BytesMessage(data=b"x" * 100))) == [Binary(b"x" * 100)]
    with pytest.raises(ProtocolError, match="max_message_size"):
        engine.receive(server.send(BytesMessage(data=b"x" * 101)))
    assert engine.failed
    assert server_events(server, engine.data_to_send()) == [CloseConnection(code=1009, reason="")]
    with pytest.raises(ProtocolError):
        engine.receive(b"anything")


def test_text_size_counts_utf8_bytes() -> None:
    engine, server = opened(max_size=100)
    assert engine.receive(server.send(TextMessage(data="é" * 50))) == [Text("é" * 50)]
    with pytest.raises(ProtocolError):
        engine.receive(server.send(TextMessage(data="é" * 51)))


def test_oversize_fragmented_message() -> None:
    engine, server = opened(max_size=100)
    engine.receive(server.send(BytesMessage(data=b"x" * 60, message_finished=False)))
    with pytest.raises(ProtocolError):
        engine.receive(server.send(BytesMessage(data=b"x" * 41)))


def test_huge_announced_frame_fails_as_soon_as_the_limit_is_passed() -> None:
    """A header announcing 1 TiB costs at most the limit plus one chunk before failing."""
    engine, _ = opened(max_size=5000)
    assert engine.receive(frame(0x2, b"", length=1 << 40)) == []
    for _ in range(5):
        assert engine.receive(b"y" * 1000) == []
    with pytest.raises(ProtocolError):
        engine.receive(b"y" * 1000)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(frame(0x3, b"x"), id="reserved-opcode"),
        pytest.param(frame(0x0, b"x"), id="orphan-continuation"),
        pytest.param(frame(0x1, b"a", fin=False) + frame(0x1, b"b"), id="missing-continuation"),
        pytest.param(frame(0x1, b"\xff\xfe"), id="invalid-utf8"),
        pytest.param(frame(0x9, b"p", fin=False), id="fragmented-control"),
        pytest.param(b"\x82\x81abcdx", id="masked-server-frame"),
        pytest.param(b"\xc1\x01x", id="reserved-bit"),
        pytest.param(frame(0x8, b"\x03"), id="one-byte-close"),
        pytest.param(frame(0x8, b"\x03\xed"), id="reserved-close-code"),
    ],
)
def test_malformed_frames_are_protocol_errors(data: bytes) -> None:
    engine, server = opened()
    assert engine.receive(server.send(TextMessage(data="ok"))) == [Text("ok")]
    with pytest.raises(ProtocolError):
        engine.receive(data)
    assert engine.failed
    (close,) = server_events(server, engine.data_to_send())
    assert isinstance(close, CloseConnection)
    assert close.code in (1002, 1007)


# --- chunking -------------------------------------------------------------------------------


def _script(big: int = 70000) -> tuple[ClientEngine, bytes, list[Event]]:
    engine = make_engine()
    server, _ = server_for(engine)
    data = (
        server.send(AcceptConnection())
        + server.send(TextMessage(data="plain"))
        + server.send(TextMessage(data="fr", message_finished=False))
        + server.send(Ping(payload=b"ping"))
        + server.send(TextMessage(data="agmént"))
        + server.send(BytesMessage(data=bytes(range(200))))
        + server.send(Pong(payload=b""))
        + server.send(TextMessage(data="x" * big))
        + server.send(CloseConnection(code=1000, reason="end"))
    )
    expected: list[Event] = [
        Accepted(),
        Text("plain"),
        PingReceived(b"ping"),
        Text("fragmént"),
        Binary(bytes(range(200))),
        PongReceived(b""),
        Text("x" * big),
        Closed(1000, "end"),
    ]
    return engine, data, expected


def test_split_at_every_boundary() -> None:
    _, data, _ = _script()
    # every split point around the small frames, a sample through the large message
    points = [*range(len(data) - 70100), *range(len(data) - 70100, len(data) + 1, 997)]
    for cut in points:
        engine, data, expected = _script()
        events = [e for part in (data[:cut], data[cut:]) if part for e in engine.receive(part)]
        assert events == expected, cut


def test_byte_at_a_time() -> None:
    engine, data, expected = _script(big=300)
    events: list[Event] = []
    for i in range(len(data)):
        events += engine.receive(data[i : i + 1])
    assert events == expected


def test_bytearray_input() -> None:
    engine, data, expected = _script()
    assert engine.receive(bytearray(data)) == expected


# --- URLs -----------------------------------------------------------------------------------


def test_parse_url_defaults_path_and_keeps_query() -> None:
    ep = parse_url("ws://127.0.0.1:7000", plain="ws", secure="wss")
    assert (ep.secure, ep.host, ep.port, ep.target) == (False, "127.0.0.1", 7000, "/")
    assert ep.host_header == "127.0.0.1:7000"
    ep = parse_url("WSS://Example.COM/backtest/s1?a=1&b=%20#frag", plain="ws", secure="wss")
    assert (ep.secure, ep.host, ep.port) == (True, "example.com", 443)
    assert ep.target == "/backtest/s1?a=1&b=%20"
    assert ep.host_header == "example.com"
    assert ep.display == "wss://example.com/backtest/s1"


def test_parse_url_ipv6_and_default_ports() -> None:
    ep = parse_url("ws://[::1]:9000/x", plain="ws", secure="wss")
    assert (ep.host, ep.host_header) == ("::1", "[::1]:9000")
    assert parse_url("ws://h:80/", plain="ws", secure="wss").host_header == "h"
    assert parse_url("https://h:8443", plain="http", secure="https").host_header == "h:8443"


def test_parse_url_hides_user_info_from_display() -> None:
    ep = parse_url("ws://user:pw@h/p?token=t", plain="ws", secure="wss")
    assert "pw" not in ep.display
    assert "token" not in ep.display


def test_parse_url_quotes_what_cannot_go_on_the_request_line() -> None:
    ep = parse_url("ws://h/a b/é", plain="ws", secure="wss")
    assert ep.target == "/a%20b/%C3%A9"


@pytest.mark.parametrize(
    "url", ["http://h/", "h:80", "", "ws://", "ws://h:99999/", "ws://h:port/", "wss:///path"]
)
def test_parse_url_rejects(url: str) -> None:
    with pytest.raises(InvalidParams):
        parse_url(url, plain="ws", secure="wss")
