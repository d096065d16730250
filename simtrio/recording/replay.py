"""Serving a recorded run on loopback as a backtest server, for offline regression tests.

::

    async with replay_server("runs.db", run_id) as server:
        async with simtrio.open_managed_session(server.url, "", create) as session:
            ...  # the same strategy, the same continues: the same events, byte for byte

The control plane (``/backtest``) answers the recorded create with the recorded handshake and
then executes each session's track (see :mod:`simtrio.recording.script`): recorded frames go
out until the next recorded request, the client's request is compared with it, and so on. A
request that differs is a *divergence*: the client gets an ``error`` ``InvalidRequest`` naming
the step, the session's replay stops, and a :class:`ReplayDivergence` is kept on the server
(and raised when the block ends, unless ``raise_on_divergence=False``). A close the recording
lacks is answered with ``success`` rather than treated as a divergence.

The data plane (``/backtest/<session_id>``) serves subscriptions from the session's recorded
notifications: each notification goes to the subscriptions of its kind and program (entries
recorded without a program go to the first program subscribed for that kind), honouring
``replayFromSlot``, zstd-compressed when asked; every subscription gets ``subscriptionComplete``
once the session's ``completed`` (or a close) has been reached.
"""

from __future__ import annotations

import contextlib
import logging
import math
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, cast

import attrs
import orjson
import trio
import trio_websocket

from simtrio.errors import ProtocolError, excerpt
from simtrio.recording.errors import ReplayDivergence
from simtrio.recording.reader import StoreLike, load_replay_script
from simtrio.recording.script import DataItem, Expect, ReplayScript, SendFrame, Track
from simtrio.server.serving import authority, open_listeners, serving_nursery
from simtrio.wire import backtest_errors, codec, rpc, rpc_server, spellings, types
from simtrio.wire.compression import MAX_MESSAGE_SIZE, ZstdStreamEncoder
from simtrio.wire.urls import CONTROL_PATH

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

__all__ = ["ReplayServer", "replay_server"]

logger = logging.getLogger(__name__)

_SESSION_PREFIX: Final = CONTROL_PATH + "/"
_HANDSHAKE_TIMEOUT: Final = 10.0
_CLOSE_TIMEOUT: Final = 2.0
_CLOSE_METHODS: Final = (types.CloseBacktestSession, types.CloseSessionRequestV1)
_MAX_HEAD: Final = 64 * 1024
_MAX_RPC_BODY: Final = 64 * 1024 * 1024
_RECEIVE_SIZE: Final = 64 * 1024
_DIVERGED: Final = -32000
_NOTIFICATION_OF: Final = {
    rpc.ACCOUNT_DIFF_SUBSCRIBE: rpc.ACCOUNT_DIFF_NOTIFICATION,
    rpc.TRANSACTION_SUBSCRIBE: rpc.TRANSACTION_NOTIFICATION,
    rpc.LOGS_SUBSCRIBE: rpc.LOGS_NOTIFICATION,
}

_Received = tuple["types.BacktestRequest | types.UnknownRequest", str]


class ReplayServer:
    """Handle on a running replay (yielded by :func:`replay_server`)."""

    def __init__(self, script: ReplayScript, host: str, port: int, *, repeat: bool = False) -> None:
        self.run_id = script.run_id
        self.host = host
        self.port = port
        self.url = f"ws://{authority(host, port)}"
        """WebSocket base URL (what a client is given); the control plane is ``control_url``."""
        self.control_url = self.url + CONTROL_PATH
        self.divergences: list[ReplayDivergence] = []
        self._diverged = trio.Event()
        self._script = script
        self._sessions = {
            sid: _Session(track, script.parallel) for sid, track in script.tracks.items()
        }
        self._created = False
        self._repeat = repeat
        self._clients = 0
        """Control connections whose create matched and that are still open."""

    def __repr__(self) -> str:
        return f"<ReplayServer {self.url} run={self.run_id}>"

    @property
    def divergence(self) -> ReplayDivergence | None:
        """The first divergence, if any."""
        return self.divergences[0] if self.divergences else None

    @property
    def finished(self) -> bool:
        """True once every session's track has been replayed to its end."""
        return all(s.finished for s in self._sessions.values())

    async def wait_divergence(self) -> ReplayDivergence:
        """Wait until a client diverges from the recording; return that first divergence."""
        await self._diverged.wait()
        return self.divergences[0]

    def check(self) -> None:
        """Raise the first divergence, if there was one."""
        if self.divergences:
            raise self.divergences[0]

    # -- connections -----------------------------------------------------------------------

    async def _handle_tcp(self, stream: trio.SocketStream) -> None:
        try:
            with trio.fail_after(_HANDSHAKE_TIMEOUT):
                head = await _read_head(stream)
        except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await stream.aclose()
            return
        if head.startswith(b"POST "):
            try:
                with trio.fail_after(_HANDSHAKE_TIMEOUT):
                    await self._serve_rpc(stream, head)
            except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
            except Exception:
                logger.exception("replay rpc handler failed")
            finally:
                await stream.aclose()
            return
        await self._handle_websocket(_Prefixed(stream, head))

    async def _serve_rpc(self, stream: trio.SocketStream, head: bytes) -> None:
        """One per-session JSON-RPC request over HTTP, answered from the recording."""
        header, _, body = head.partition(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        path = parts[1].split("?", 1)[0] if len(parts) > 1 else ""
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length" and value.strip().isdigit():
                length = int(value.strip())
        if length > _MAX_RPC_BODY:
            await stream.send_all(_http(413, b"request body too large", "text/plain"))
            return
        while len(body) < length:
            chunk = await stream.receive_some(_RECEIVE_SIZE)
            if not chunk:
                return
            body += chunk
        session = (
            self._sessions.get(path[len(_SESSION_PREFIX) :])
            if path.startswith(_SESSION_PREFIX)
            else None
        )
        if session is None:
            await stream.send_all(_http(404, b"not found", "text/plain"))
            return
        reply = self._answer_rpc(session, body[:length])
        await stream.send_all(_http(200, reply, "application/json"))

    def _answer_rpc(self, session: _Session, body: bytes) -> bytes:
        try:
            request: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            request = None
        if not isinstance(request, dict):
            return _rpc_reply(None, {"error": {"code": -32700, "message": "parse error"}})
        fields = cast("dict[str, Any]", request)
        request_id = fields.get("id")
        method = fields.get("method")
        params = orjson.dumps(fields.get("params")).decode()
        session.rpc_step += 1
        step = session.rpc_step
        calls = session.track.rpc
        expected = calls[step - 1] if step <= len(calls) else None
        received = f"{method} {params}"
        if (
            session.rpc_divergence is None
            and expected is not None
            and (expected.method, expected.params) == (method, params)
        ):
            return _rpc_reply(request_id, orjson.loads(expected.answer))
        if session.rpc_divergence is None:
            session.rpc_divergence = self._diverge_rpc(
                session.track.session_id,
                step,
                None if expected is None else f"{expected.method} {expected.params}",
                received,
            )
        error = {"code": _DIVERGED, "message": str(session.rpc_divergence)}
        return _rpc_reply(request_id, {"error": error})

    def _diverge_rpc(
        self, session_id: str, step: int, expected: str | None, received: str
    ) -> ReplayDivergence:
        where = f"rpc call {step} of session {session_id}"
        return self._note_divergence(where, "call", session_id, step, expected, received)

    async def _handle_websocket(self, stream: trio.abc.Stream) -> None:
        try:
            async with trio.open_nursery() as nursery:
                try:
                    with trio.fail_after(_HANDSHAKE_TIMEOUT):
                        request = await trio_websocket.wrap_server_stream(
                            nursery, stream, max_message_size=MAX_MESSAGE_SIZE
                        )
                except (
                    trio.TooSlowError,
                    trio_websocket.ConnectionClosed,
                    trio.BrokenResourceError,
                ):
                    nursery.cancel_scope.cancel()
                    return
                path = request.path.split("?", 1)[0]
                session = (
                    self._sessions.get(path[len(_SESSION_PREFIX) :])
                    if path.startswith(_SESSION_PREFIX)
                    else None
                )
                if path != CONTROL_PATH and session is None:
                    await request.reject(404)
                    nursery.cancel_scope.cancel()
                    return
                ws = await request.accept()
                try:
                    if session is None:
                        await self._serve_control(ws)
                    else:
                        await _serve_data(ws, session)
                finally:
                    with trio.move_on_after(_CLOSE_TIMEOUT) as scope:
                        scope.shield = True
                        await ws.aclose()
                    nursery.cancel_scope.cancel()
        except Exception:
            logger.exception("replay connection handler failed")
        finally:
            await stream.aclose()

    async def _serve_control(self, ws: trio_websocket.WebSocketConnection) -> None:
        conn = _Control(ws)
        if not await self._accept_create(conn):
            return
        self._clients += 1
        try:
            await self._serve_tracks(conn)
        finally:
            self._clients -= 1

    async def _serve_tracks(self, conn: _Control) -> None:
        async with trio.open_nursery() as nursery:
            with contextlib.suppress(_Gone):
                for text in self._script.handshake:
                    await conn.send(text)
                for session in self._sessions.values():
                    nursery.start_soon(self._run_track, session, conn)
                while True:
                    text = await conn.receive()
                    await self._route(conn, text)
            nursery.cancel_scope.cancel()

    async def _accept_create(self, conn: _Control) -> bool:
        """Read the create and compare it with the recorded one (step 0)."""
        try:
            text = await conn.receive()
        except _Gone:
            return False
        request = _decode(text)
        script = self._script
        if self._created and self._repeat and self._clients == 0:
            # The previous client has left: the next one gets the run from the start.
            self._sessions = {
                sid: _Session(track, script.parallel) for sid, track in script.tracks.items()
            }
            self._created = False
        if self._created:
            await conn.send(_error_frame("this replay server has already served its run"))
        elif request == script.create:
            self._created = True
            return True
        else:
            divergence = self._diverge(None, 0, script.create_text, text)
            await conn.send(_error_frame(str(divergence)))
        with contextlib.suppress(_Gone):
            while True:
                await conn.receive()
                await conn.send(_error_frame("the create did not match the recording"))
        return False

    async def _route(self, conn: _Control, text: str) -> None:
        request = _decode(text)
        if self._script.parallel:
            if isinstance(
                request,
                types.ContinueSessionRequestV1
                | types.ContinueToSessionRequestV1
                | types.CloseSessionRequestV1,
            ):
                session = self._sessions.get(request.session_id)
                if session is None:
                    missing = codec.encode_response(
                        types.Error(backtest_errors.SessionNotFound(request.session_id))
                    )
                    await conn.send(missing)
                    return
            else:
                session = None
        else:
            session = next(iter(self._sessions.values()))
        if session is None:
            await conn.send(_error_frame(f"the replay server does not serve {_method(request)}"))
            return
        session.requests_tx.send_nowait((request, text))

    # -- tracks ----------------------------------------------------------------------------

    async def _run_track(self, session: _Session, conn: _Control) -> None:
        try:
            for item in session.track.items:
                if isinstance(item, SendFrame):
                    if item.completes:
                        await session.complete_data()
                    await conn.send(item.text)
                    if item.seq_id is not None and item.seq_id > session.last_seq:
                        session.last_seq = item.seq_id  # (a replayed duplicate is lower)
                elif isinstance(item, DataItem):
                    await session.post(item)
                elif not await self._expect(session, conn, item):
                    break
            session.finished = True
            async for request, text in session.requests_rx:
                if isinstance(request, _CLOSE_METHODS):
                    await self._close(session, conn)
                elif session.divergence is not None:
                    await conn.send(session.error_frame(str(session.divergence)))
                else:
                    await self._reject(session, conn, session.step + 1, None, text)
        except _Gone:
            pass

    async def _expect(self, session: _Session, conn: _Control, item: Expect) -> bool:
        """Wait for the step's request; False (after answering) when the client diverged."""
        while True:
            request, text = await session.requests_rx.receive()
            if request == item.request:
                session.step = item.step
                if isinstance(request, _CLOSE_METHODS):
                    await session.complete_data()
                return True
            if isinstance(request, _CLOSE_METHODS):
                await self._close(session, conn)
                continue
            await self._reject(session, conn, item.step, item.text, text)
            return False

    async def _close(self, session: _Session, conn: _Control) -> None:
        """A close the recording does not have: answer it as a server would."""
        await session.complete_data()
        await conn.send(session.frame(types.Success()))

    async def _reject(
        self, session: _Session, conn: _Control, step: int, expected: str | None, received: str
    ) -> None:
        divergence = self._diverge(session.track.session_id, step, expected, received)
        session.divergence = divergence
        await conn.send(session.error_frame(str(divergence)))

    def _diverge(
        self, session_id: str | None, step: int, expected: str | None, received: str
    ) -> ReplayDivergence:
        where = "step 0 (the create)" if step == 0 else f"step {step}"
        if session_id is not None:
            where += f" of session {session_id}"
        divergence = self._note_divergence(where, "step", session_id, step, expected, received)
        self._diverged.set()
        return divergence

    def _note_divergence(
        self,
        where: str,
        what: str,
        session_id: str | None,
        step: int,
        expected: str | None,
        received: str,
    ) -> ReplayDivergence:
        """Make, log and keep the divergence at ``where`` (``what``: the recording's unit)."""
        if expected is None:
            detail = f"the recording has no such {what}; the client sent {excerpt(received, 200)}"
        else:
            detail = (
                f"the recording has {excerpt(expected, 200)} but the client sent "
                f"{excerpt(received, 200)}"
            )
        divergence = ReplayDivergence(
            f"replay of run {self.run_id} diverged at {where}: {detail}",
            session_id=session_id,
            step=step,
            expected=expected,
            received=received,
        )
        logger.warning("%s", divergence)
        self.divergences.append(divergence)
        return divergence


# --------------------------------------------------------------------------------------------
# Per-session state and the data plane
# --------------------------------------------------------------------------------------------


class _Gone(Exception):
    """The peer closed the connection."""


class _Control:
    """The control connection: serialised sends shared by every session's track."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self._ws = ws
        self._lock = trio.StrictFIFOLock()

    async def send(self, text: str) -> None:
        async with self._lock:
            try:
                await self._ws.send_message(text)
            except (trio_websocket.ConnectionClosed, trio.BrokenResourceError) as exc:
                raise _Gone from exc

    async def receive(self) -> str:
        try:
            message = await self._ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            raise _Gone from exc
        return message if isinstance(message, str) else message.decode("utf-8", "replace")


@attrs.define(eq=False)
class _Sub:
    id: int
    kind: str
    program_id: str
    conn: _DataConn
    done: bool = False


@attrs.frozen
class _Out:
    text: str
    notification: bool
    written: trio.Event | None = None


class _DataConn:
    """One data-plane connection: a single sender keeps its messages (and zstd stream) in order."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws
        self.compressed = False
        self.next_id = 1
        self.closed = False
        self._tx, self._rx = trio.open_memory_channel[_Out](math.inf)
        self._encoder: ZstdStreamEncoder | None = None

    def queue(self, text: str, *, notification: bool, wait: bool = False) -> trio.Event | None:
        if self.closed:
            return None
        written = trio.Event() if wait else None
        self._tx.send_nowait(_Out(text, notification, written))
        return written

    async def sender(self) -> None:
        try:
            async for out in self._rx:
                payload: str | bytes = out.text
                if out.notification and self.compressed:
                    if self._encoder is None:
                        self._encoder = ZstdStreamEncoder()
                    payload = self._encoder.encode(out.text)
                await self.ws.send_message(payload)
                if out.written is not None:
                    out.written.set()
        except (trio_websocket.ConnectionClosed, trio.BrokenResourceError):
            pass
        finally:
            self.closed = True
            # Nobody waits forever on a message that can no longer be written.
            with contextlib.suppress(trio.WouldBlock, trio.EndOfChannel):
                while True:
                    out = self._rx.receive_nowait()
                    if out.written is not None:
                        out.written.set()


class _Session:
    """Replay state of one (sub-)session: its track position and its live subscriptions."""

    def __init__(self, track: Track, parallel: bool) -> None:
        self.track = track
        self.parallel = parallel
        self.requests_tx, self.requests_rx = trio.open_memory_channel[_Received](math.inf)
        self.step = 0
        self.last_seq = track.start_seq
        self.finished = False
        self.completed = False
        self.divergence: ReplayDivergence | None = None
        self.posted: list[DataItem] = []
        self.subs: list[_Sub] = []
        self.first_program: dict[str, str] = {}
        self.rpc_step = 0
        self.rpc_divergence: ReplayDivergence | None = None

    def frame(self, response: types.Error | types.Success) -> str:
        """A frame for this session: wrapped and numbered on a parallel connection."""
        if not self.parallel:
            return codec.encode_response(response)
        self.last_seq += 1
        return codec.encode_response(
            types.SessionEventV2(self.track.session_id, self.last_seq, response)
        )

    def error_frame(self, message: str) -> str:
        return self.frame(types.Error(backtest_errors.InvalidRequest(message)))

    def takes(self, sub: _Sub, item: DataItem) -> bool:
        if sub.done or item.kind != sub.kind:
            return False
        if item.topic is not None:
            return item.topic == sub.program_id
        return self.first_program.get(sub.kind) == sub.program_id

    async def post(self, item: DataItem) -> None:
        """Hand a recorded notification to the live subscriptions and wait until it is written."""
        self.posted.append(item)
        waits = [
            sub.conn.queue(_renumbered(item, sub.id), notification=True, wait=True)
            for sub in self.subs
            if self.takes(sub, item)
        ]
        for written in waits:
            if written is not None:
                await written.wait()

    async def complete_data(self) -> None:
        """Terminals for every live subscription (the session has completed or closed)."""
        if self.completed:
            return
        self.completed = True
        waits: list[trio.Event | None] = []
        for sub in self.subs:
            if not sub.done:
                sub.done = True
                terminal = rpc_server.encode_rpc(rpc.SubscriptionComplete(sub.id))
                waits.append(sub.conn.queue(terminal, notification=True, wait=True))
        for written in waits:
            if written is not None:
                await written.wait()

    def subscribe(self, conn: _DataConn, request: rpc.Subscribe) -> None:
        """Ack, catch up on what was posted so far, then go live (all without a checkpoint)."""
        kind = _NOTIFICATION_OF.get(request.method, rpc.TRANSACTION_NOTIFICATION)
        sub = _Sub(conn.next_id, kind, request.program_id, conn)
        conn.next_id += 1
        if request.compression:
            conn.compressed = True
        self.first_program.setdefault(kind, request.program_id)
        conn.queue(rpc_server.encode_rpc(rpc.SubscribeAck(request.id, sub.id)), notification=False)
        start = request.replay_from_slot
        for item in self.posted:
            if self.takes(sub, item) and (start is None or item.slot >= start):
                conn.queue(_renumbered(item, sub.id), notification=True)
        self.subs.append(sub)
        if self.completed:
            sub.done = True
            terminal = rpc_server.encode_rpc(rpc.SubscriptionComplete(sub.id))
            conn.queue(terminal, notification=True)

    def drop(self, conn: _DataConn) -> None:
        self.subs = [sub for sub in self.subs if sub.conn is not conn]


def _renumbered(item: DataItem, subscription: int) -> str:
    """The recorded text, with the subscription id of this connection if it differs."""
    if item.message.subscription == subscription:
        return item.text
    return rpc_server.encode_rpc(attrs.evolve(item.message, subscription=subscription))


async def _serve_data(ws: trio_websocket.WebSocketConnection, session: _Session) -> None:
    conn = _DataConn(ws)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.sender)
            while True:
                try:
                    message = await ws.get_message()
                except trio_websocket.ConnectionClosed:
                    break
                request = rpc_server.decode_rpc_request(message)
                if isinstance(request, rpc.Subscribe):
                    session.subscribe(conn, request)
                elif isinstance(request, rpc_server.Unsubscribe):
                    for sub in session.subs:
                        if sub.conn is conn and sub.id == request.subscription:
                            sub.done = True
                    conn.queue(rpc_server.encode_unsubscribe_reply(request.id), notification=False)
                else:
                    conn.queue(rpc_server.encode_rpc(request.error_reply()), notification=False)
            nursery.cancel_scope.cancel()
    finally:
        session.drop(conn)


class _Prefixed(trio.abc.Stream):
    """A stream whose first bytes were already read: they are received again first."""

    def __init__(self, stream: trio.SocketStream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            size = len(self._prefix) if max_bytes is None else max_bytes
            out, self._prefix = self._prefix[:size], self._prefix[size:]
            await trio.lowlevel.checkpoint()
            return out
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()


async def _read_head(stream: trio.SocketStream) -> bytes:
    """Bytes up to the end of the HTTP request head (and whatever came with it)."""
    head = b""
    while b"\r\n\r\n" not in head and len(head) < _MAX_HEAD:
        chunk = await stream.receive_some(_RECEIVE_SIZE)
        if not chunk:
            break
        head += chunk
    return head


def _http(status: int, body: bytes, content_type: str) -> bytes:
    reason = {200: "OK", 404: "Not Found", 413: "Payload Too Large"}.get(status, "Error")
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


def _rpc_reply(request_id: Any, answer: dict[str, Any]) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, **answer})


def _decode(text: str) -> types.BacktestRequest | types.UnknownRequest:
    try:
        return codec.decode_request(text)
    except ProtocolError as exc:
        return types.UnknownRequest(None, None, str(exc))


def _method(request: types.BacktestRequest | types.UnknownRequest) -> str:
    if isinstance(request, types.UnknownRequest):
        return request.method or "an unreadable request"
    return spellings.SPELLINGS[type(request)][0] or type(request).__name__


def _error_frame(message: str) -> str:
    return codec.encode_response(types.Error(backtest_errors.InvalidRequest(message)))


@asynccontextmanager
async def replay_server(
    store: StoreLike,
    run_id: str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    raise_on_divergence: bool = True,
    repeat: bool = False,
) -> AsyncGenerator[ReplayServer]:
    """Serve the recorded run ``run_id`` for the duration of the block.

    The run is verified first; the server is listening when the block starts. One run is
    served once: a second create is refused, unless ``repeat`` is true, in which case a client
    connecting after the previous one has left gets the run from the start. When the block ends without an exception and a
    divergence happened, it is raised (unless ``raise_on_divergence=False``).

    Raises:
        RunUnusable: the run is quarantined, still recording, or fails verification.
        RunNotFound, StoreError: no such run, or it cannot be replayed.
        ReplayDivergence: see above.
    """
    script = await trio.to_thread.run_sync(load_replay_script, store, run_id)
    listeners, bound_port = await open_listeners(host, port)
    server = ReplayServer(script, host, bound_port, repeat=repeat)
    async with serving_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, server._handle_tcp, listeners)  # pyright: ignore[reportPrivateUsage]
        yield server
    if raise_on_divergence:
        server.check()
