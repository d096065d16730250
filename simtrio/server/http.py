"""The single TCP listener: plain HTTP routes, then WebSocket upgrades (protocol §12.1).

Each connection's request head is read and parsed here (with h11) before any WebSocket logic
runs, because trio-websocket only speaks the upgrade. Plain requests are answered one after
another on the same connection (HTTP/1.1 keep-alive, pipelining included) until the peer
closes it or asks to, stays idle ``http_idle_timeout``, or has sent ``http_max_requests``.
Only a connection's first request may be an upgrade: upgrades are routed, checked and handed
to trio-websocket on a :class:`~simtrio.server.websocket.ServerStream` that replays the bytes
already read. The server owns
the TCP stream throughout and always closes it itself.

Abuse is bounded: at most ``max_connections`` connections are served at once (more are
answered 503 at once), a peer has ``handshake_timeout`` to send each request head (and body,
at most 1 MiB) and to finish the upgrade, and inbound WebSocket messages are limited per plane
(``max_request_size`` on control connections, ``max_data_request_size`` on data ones), with
at most ``message_queue_size`` of them buffered per connection.
"""

from __future__ import annotations

__all__: list[str] = []

import contextlib
import hmac
import http
import logging
from typing import TYPE_CHECKING, Final

import h11
import trio

from simtrio.server.boundaries import PEER_GONE
from simtrio.server.conn import Conn
from simtrio.server.control import ControlHandler
from simtrio.server.data import DataHandler
from simtrio.server.faults import FaultKind, Plane
from simtrio.server.paths import SESSION_PREFIX
from simtrio.server.rpc import rpc_reply
from simtrio.server.websocket import ServerStream, accept_websocket
from simtrio.wire.codec import encode_available_ranges
from simtrio.wire.urls import API_KEY_HEADER, CONTROL_PATH

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from simtrio.server.state import ServerState
    from simtrio.wire.types import AvailableRange

logger = logging.getLogger(__name__)

_API_KEY_FIELD: Final = API_KEY_HEADER.lower()
"""The API-key header as the request parser stores it (names lowercased)."""

MAX_HEAD_BYTES: Final = 64 * 1024
MAX_BODY_BYTES: Final = 1024 * 1024
_RECEIVE_BYTES: Final = 64 * 1024
_REFUSE_LINGER: Final = 0.1
_RANGES_PER_CHECKPOINT: Final = 256
_TEXT: Final = "text/plain"
_JSON: Final = "application/json"


class _Request:
    """The parts of a request head the router needs."""

    def __init__(self, event: h11.Request) -> None:
        self.method = event.method.decode("ascii", "replace")
        target = event.target.decode("ascii", "replace")
        self.path = target.split("?", 1)[0]
        self.headers: dict[str, str] = {}
        for name, value in event.headers:
            key = name.decode("ascii", "replace").lower()
            text = value.decode("latin-1")
            self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    @property
    def is_upgrade(self) -> bool:
        return self.method == "GET" and "websocket" in self.headers.get("upgrade", "").lower()


def _phrase(status: int) -> str:
    """The reason phrase of ``status`` ("Unknown" for a code Python does not name)."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _response(status: int, body: bytes = b"", content_type: str = "text/plain") -> bytes:
    head = (
        f"HTTP/1.1 {status} {_phrase(status)}\r\n"
        f"content-type: {content_type}\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


async def _reply(
    stream: trio.SocketStream, status: int, body: bytes = b"", content_type: str = "text/plain"
) -> None:
    with contextlib.suppress(*PEER_GONE):
        await stream.send_all(_response(status, body, content_type))


async def _refuse(stream: trio.SocketStream, linger: float) -> None:
    """Answer 503 without reading the request, then let the peer's request drain a moment.

    Closing a socket with unread bytes in it makes the peer see a reset instead of the reply.
    """
    with trio.move_on_after(linger):
        await _reply(stream, 503, b"too many connections")
        with contextlib.suppress(*PEER_GONE):
            await stream.send_eof()
            received = 0
            while received < MAX_HEAD_BYTES:
                data = await stream.receive_some(_RECEIVE_BYTES)
                if not data:
                    break
                received += len(data)


async def available_ranges_body(state: ServerState) -> bytes:
    """The ``/available-ranges`` body, built on first use with checkpoints, then kept.

    A wide window has many bundles (seconds of work for 100,000): they are made and encoded
    a few hundred at a time so the server keeps serving meanwhile.
    """
    async with state.ranges_lock:
        if state.ranges_body is None:
            parts: list[str] = []
            chunk: list[AvailableRange] = []
            for item in state.config.iter_available_ranges():
                chunk.append(item)
                if len(chunk) == _RANGES_PER_CHECKPOINT:
                    parts.append(encode_available_ranges(chunk)[1:-1])
                    chunk = []
                    await trio.lowlevel.checkpoint()
            if chunk:
                parts.append(encode_available_ranges(chunk)[1:-1])
            state.ranges_body = ("[" + ",".join(parts) + "]").encode("utf-8")
        return state.ranges_body


async def _read_head(
    stream: trio.SocketStream,
    parser: h11.Connection,
    raw: bytearray | None,
    *,
    head_timeout: float,
    idle_timeout: float | None = None,
) -> h11.Request | None:
    """Read until the request head is complete; None if the peer gave up, was too slow or sent
    garbage.

    The head must arrive within ``head_timeout``; with ``idle_timeout`` (a kept-alive
    connection between requests) that clock starts only with the first new bytes, which may
    take up to ``idle_timeout`` to come. The bytes read are added to ``raw`` if given.
    """
    waiting = idle_timeout is not None
    budget = idle_timeout if idle_timeout is not None else head_timeout
    with trio.move_on_after(budget) as scope:
        while True:
            try:
                event = parser.next_event()
            except h11.RemoteProtocolError:
                await _reply(stream, 400, b"bad request")
                return None
            if event is h11.NEED_DATA:
                data = await stream.receive_some(_RECEIVE_BYTES)
                if not data:
                    return None
                if waiting:
                    waiting = False
                    scope.deadline = trio.current_time() + head_timeout
                if raw is not None:
                    raw += data
                parser.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                return event
            return None
    return None


async def _read_body(stream: trio.SocketStream, parser: h11.Connection) -> bytes | None:
    body = bytearray()
    while True:
        try:
            event = parser.next_event()
        except h11.RemoteProtocolError:
            return None
        if event is h11.NEED_DATA:
            data = await stream.receive_some(_RECEIVE_BYTES)
            if not data:
                return None
            parser.receive_data(data)
            continue
        if isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY_BYTES:
                return None
            continue
        if isinstance(event, h11.EndOfMessage):
            return bytes(body)
        return None


async def handle_tcp(state: ServerState, stream: trio.SocketStream) -> None:
    """Serve one TCP connection: plain HTTP requests (kept alive), or one WebSocket."""
    state.tcp_connections += 1
    try:
        if state.tcp_connections > state.connection_cap:
            logger.warning("connection refused: %d connections open", state.tcp_connections - 1)
            await _refuse(stream, min(state.config.handshake_timeout, _REFUSE_LINGER))
            return
        await _serve_connection(state, stream)
    except PEER_GONE:
        pass
    except Exception:
        logger.exception("connection handler failed")
    finally:
        state.tcp_connections -= 1
        await stream.aclose()


async def _serve_connection(state: ServerState, stream: trio.SocketStream) -> None:
    """Requests one after another until the peer closes, idles, or reaches the request cap.

    Only the first request may be a WebSocket upgrade: its bytes are replayed to the
    WebSocket layer, which reads the head again.
    """
    config = state.config
    parser = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
    raw = bytearray()
    served = 0
    while True:
        event = await _read_head(
            stream,
            parser,
            None if served else raw,
            head_timeout=config.handshake_timeout,
            idle_timeout=config.http_idle_timeout if served else None,
        )
        if event is None:
            return
        request = _Request(event)
        if request.is_upgrade:
            if served:
                await _reply(stream, 400, b"a WebSocket upgrade must open its own connection")
            else:
                await _upgrade(state, stream, request, bytes(raw))
            return
        served += 1
        raw.clear()
        body: bytes | None = None
        with trio.move_on_after(config.handshake_timeout):
            body = await _read_body(stream, parser)
        if body is None:
            await _reply(stream, 400, b"bad request body")
            return
        status, payload, content_type = await _route(state, request, body)
        last = served >= config.http_max_requests
        await stream.send_all(
            _keep_alive_response(parser, request, status, payload, content_type, last)
        )
        if parser.our_state is not h11.DONE or parser.their_state is not h11.DONE:
            return
        parser.start_next_cycle()


def _keep_alive_response(
    parser: h11.Connection,
    request: _Request,
    status: int,
    body: bytes,
    content_type: str,
    last: bool,
) -> bytes:
    """The response's bytes; h11 adds ``connection: close`` when the connection must end."""
    headers = [("content-type", content_type), ("content-length", str(len(body)))]
    if last:
        headers.append(("connection", "close"))
    out = parser.send(h11.Response(status_code=status, headers=headers, reason=_phrase(status)))
    if request.method != "HEAD":
        out += parser.send(h11.Data(data=body))
    out += parser.send(h11.EndOfMessage())
    return out


# -- plain HTTP -------------------------------------------------------------------------------


async def _route(state: ServerState, request: _Request, body: bytes) -> tuple[int, bytes, str]:
    """Status, body and content type of a plain request's answer."""
    path, method = request.path, request.method
    if method == "GET" and path == "/health":
        return 200, b"ok", _TEXT
    if method == "GET" and path == "/ready":
        return (503, b"draining", _TEXT) if state.draining else (200, b"ready", _TEXT)
    if method == "GET" and path == "/available-ranges":
        return 200, await available_ranges_body(state), _JSON
    if method == "POST" and path.startswith(SESSION_PREFIX):
        session = state.sessions.get(path[len(SESSION_PREFIX) :])
        if session is None:
            return 404, b"unknown session", _TEXT
        return 200, rpc_reply(session, body), _JSON
    return 404, b"not found", _TEXT


# -- WebSocket --------------------------------------------------------------------------------


async def _upgrade(
    state: ServerState, stream: trio.SocketStream, request: _Request, raw: bytes
) -> None:
    headers = request.headers
    if "sec-websocket-key" not in headers or headers.get("sec-websocket-version") != "13":
        await _reply(stream, 400, b"bad WebSocket upgrade")
        return
    path = request.path
    if path == CONTROL_PATH:
        expected = state.config.api_key
        if expected is not None:
            given = headers.get(_API_KEY_FIELD, "")
            if not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
                logger.info("control upgrade refused: missing or wrong API key")
                await _reply(stream, 401, b"unauthorized")
                return
        plane = Plane.CONTROL
        session = None
    elif path.startswith(SESSION_PREFIX):
        session = state.sessions.get(path[len(SESSION_PREFIX) :])
        if session is None:
            await _reply(stream, 404, b"unknown session")
            return
        plane = Plane.DATA
    else:
        await _reply(stream, 404, b"not found")
        return
    index = state.next_connection_index(plane)
    faults = state.faults.for_connection(plane, index)
    if faults.reject_upgrade is not None:
        logger.info("%s upgrade #%d refused with %d (fault)", plane, index, faults.reject_upgrade)
        state.fault_fired(plane, FaultKind.REJECT)
        await _reply(stream, faults.reject_upgrade, b"upgrade refused")
        return

    if session is None:

        async def serve(conn: Conn) -> None:
            await ControlHandler(state, conn).run()
    else:
        bound = session

        async def serve(conn: Conn) -> None:
            await DataHandler(state, conn, bound).run()

    await _run_websocket(state, stream, raw, plane, index, serve)


async def _run_websocket(
    state: ServerState,
    stream: trio.SocketStream,
    raw: bytes,
    plane: Plane,
    index: int,
    serve: Callable[[Conn], Awaitable[None]],
) -> None:
    config = state.config
    server_stream = ServerStream(stream, raw)
    limit = config.max_request_size if plane is Plane.CONTROL else config.max_data_request_size
    async with accept_websocket(
        server_stream,
        handshake_timeout=config.handshake_timeout,
        message_queue_size=config.message_queue_size,
        max_message_size=limit,
        receive_buffer_size=_RECEIVE_BYTES,
    ) as ws:
        if ws is None:
            server_stream.abort()
            return
        conn = Conn(
            plane=plane,
            index=index,
            stream=server_stream,
            ws=ws,
            faults=state.faults.for_connection(plane, index),
            max_message_size=config.max_message_size,
            close_timeout=config.close_timeout,
            on_fault=state.fault_fired,
        )
        state.conns.add(conn)
        logger.debug("%r open", conn)
        try:
            await conn.serve(serve)
        finally:
            state.conns.discard(conn)
            if conn.pending_close is not None:
                code, reason = conn.pending_close
                await conn.close(code, reason)
            server_stream.abort()
            logger.debug("%r closed", conn)
