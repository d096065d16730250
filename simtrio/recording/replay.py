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

This module holds the server and its control plane; each session's replay state and the data
plane are in :mod:`~simtrio.recording.replay_session`, the connection plumbing (HTTP sniffing,
the shared control connection) in :mod:`~simtrio.recording.replay_conn`.
"""

from __future__ import annotations

__all__: list[str] = []

import contextlib
import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, cast

import orjson
import trio
import trio_websocket

from simtrio.errors import excerpt
from simtrio.recording.errors import ReplayDivergence
from simtrio.recording.reader import StoreLike, load_replay_script
from simtrio.recording.replay_conn import (
    ControlConn,
    Gone,
    PrefixedStream,
    decode_request,
    error_frame,
    http_response,
    read_head,
    read_http_post,
    request_name,
    rpc_reply,
)
from simtrio.recording.replay_session import SessionReplay, serve_data
from simtrio.recording.script import DataItem, Expect, ReplayScript, SendFrame
from simtrio.server.serving import authority, open_listeners, serving_nursery
from simtrio.wire import backtest_errors, codec, types
from simtrio.wire.compression import MAX_MESSAGE_SIZE
from simtrio.wire.urls import CONTROL_PATH

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

logger = logging.getLogger(__name__)

_SESSION_PREFIX: Final = CONTROL_PATH + "/"
_HANDSHAKE_TIMEOUT: Final = 10.0
_CLOSE_TIMEOUT: Final = 2.0
_CLOSE_METHODS: Final = (types.CloseBacktestSession, types.CloseSessionRequestV1)
_DIVERGED: Final = -32000


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
            sid: SessionReplay(track, script.parallel) for sid, track in script.tracks.items()
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
                head = await read_head(stream)
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
        await self._handle_websocket(PrefixedStream(stream, head))

    async def _serve_rpc(self, stream: trio.SocketStream, head: bytes) -> None:
        """One per-session JSON-RPC request over HTTP, answered from the recording."""
        request = await read_http_post(stream, head)
        if request is None:
            return
        path, body = request
        session = self._session_at(path)
        if session is None:
            await stream.send_all(http_response(404, b"not found", "text/plain"))
            return
        reply = self._answer_rpc(session, body)
        await stream.send_all(http_response(200, reply, "application/json"))

    def _session_at(self, path: str) -> SessionReplay | None:
        """The session whose data plane (or rpc endpoint) ``path`` is, if any."""
        if not path.startswith(_SESSION_PREFIX):
            return None
        return self._sessions.get(path[len(_SESSION_PREFIX) :])

    def _answer_rpc(self, session: SessionReplay, body: bytes) -> bytes:
        try:
            request: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            request = None
        if not isinstance(request, dict):
            return rpc_reply(None, {"error": {"code": -32700, "message": "parse error"}})
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
            return rpc_reply(request_id, orjson.loads(expected.answer))
        if session.rpc_divergence is None:
            session.rpc_divergence = self._diverge_rpc(
                session.track.session_id,
                step,
                None if expected is None else f"{expected.method} {expected.params}",
                received,
            )
        error = {"code": _DIVERGED, "message": str(session.rpc_divergence)}
        return rpc_reply(request_id, {"error": error})

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
                session = self._session_at(path)
                if path != CONTROL_PATH and session is None:
                    await request.reject(404)
                    nursery.cancel_scope.cancel()
                    return
                ws = await request.accept()
                try:
                    if session is None:
                        await self._serve_control(ws)
                    else:
                        await serve_data(ws, session)
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
        conn = ControlConn(ws)
        if not await self._accept_create(conn):
            return
        self._clients += 1
        try:
            await self._serve_tracks(conn)
        finally:
            self._clients -= 1

    async def _serve_tracks(self, conn: ControlConn) -> None:
        async with trio.open_nursery() as nursery:
            with contextlib.suppress(Gone):
                for text in self._script.handshake:
                    await conn.send(text)
                for session in self._sessions.values():
                    nursery.start_soon(self._run_track, session, conn)
                while True:
                    text = await conn.receive()
                    await self._route(conn, text)
            nursery.cancel_scope.cancel()

    async def _accept_create(self, conn: ControlConn) -> bool:
        """Read the create and compare it with the recorded one (step 0)."""
        try:
            text = await conn.receive()
        except Gone:
            return False
        request = decode_request(text)
        script = self._script
        if self._created and self._repeat and self._clients == 0:
            # The previous client has left: the next one gets the run from the start.
            self._sessions = {
                sid: SessionReplay(track, script.parallel) for sid, track in script.tracks.items()
            }
            self._created = False
        if self._created:
            await conn.send(error_frame("this replay server has already served its run"))
        elif request == script.create:
            self._created = True
            return True
        else:
            divergence = self._diverge(None, 0, script.create_text, text)
            await conn.send(error_frame(str(divergence)))
        with contextlib.suppress(Gone):
            while True:
                await conn.receive()
                await conn.send(error_frame("the create did not match the recording"))
        return False

    async def _route(self, conn: ControlConn, text: str) -> None:
        request = decode_request(text)
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
            await conn.send(
                error_frame(f"the replay server does not serve {request_name(request)}")
            )
            return
        session.requests_tx.send_nowait((request, text))

    # -- tracks ----------------------------------------------------------------------------

    async def _run_track(self, session: SessionReplay, conn: ControlConn) -> None:
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
        except Gone:
            pass

    async def _expect(self, session: SessionReplay, conn: ControlConn, item: Expect) -> bool:
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

    async def _close(self, session: SessionReplay, conn: ControlConn) -> None:
        """A close the recording does not have: answer it as a server would."""
        await session.complete_data()
        await conn.send(session.frame(types.Success()))

    async def _reject(
        self,
        session: SessionReplay,
        conn: ControlConn,
        step: int,
        expected: str | None,
        received: str,
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
        await nursery.start(trio.serve_listeners, server._handle_tcp, listeners)  # pyright: ignore[reportPrivateUsage]
        yield server
    if raise_on_divergence:
        server.check()
