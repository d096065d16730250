"""The control plane of the reference server (protocol §12.4-§12.6).

One :class:`ControlHandler` per control connection. It reads requests one at a time and
writes handshake replies itself; everything a session emits is written by streamer tasks that
follow the session's response log with a cursor. Handshake writes happen before a streamer
starts, which is what orders ``sessionCreated`` / replay / ``sessionAttached`` against live
traffic without any locking.
"""

from __future__ import annotations

__all__: list[str] = []

import logging
from typing import TYPE_CHECKING, TypeAlias

import trio

from simtrio.errors import ProtocolError
from simtrio.server.conn import ConnectionGone
from simtrio.server.session import ParallelGroup, Session
from simtrio.wire.backtest_errors import (
    BacktestError,
    BundleNotFound,
    InvalidRequest,
    SessionNotFound,
)
from simtrio.wire.codec import decode_request, encode_response
from simtrio.wire.types import (
    AttachBacktestSession,
    AttachParallelControlSessionV2,
    BacktestResponse,
    CloseBacktestSession,
    CloseSessionRequestV1,
    ContinueParams,
    ContinueSessionRequestV1,
    ContinueToParams,
    ContinueToSessionRequestV1,
    CreateBacktestSessionRequest,
    Error,
    ParallelSessionAttachedV2,
    ResumeAttachedSession,
    SessionAttached,
    SessionCreated,
    SessionEventV2,
    SessionsCreatedV2,
    Success,
    UnknownRequest,
)

if TYPE_CHECKING:
    from simtrio.server.conn import Conn
    from simtrio.server.state import ServerState

logger = logging.getLogger(__name__)

_OPENING_EVENTS = 3
"""A sub-session's events sent inside the parallel create handshake: two statuses and a slot."""

TAKEOVER_CLOSE_REASON = "session attached on another connection"

_Streams: TypeAlias = "list[tuple[Session, int]]"
"""Sessions a request bound to the connection, each with the sequence its streaming follows."""


def count_ranges(start: int, end: int, bundle_size: int) -> int:
    """How many sub-ranges :func:`split_range` makes of ``[start, end]``, without making them."""
    if start > end:
        return 0
    return end // bundle_size - start // bundle_size + 1


def split_range(start: int, end: int, bundle_size: int) -> list[tuple[int, int]]:
    """Split ``[start, end]`` at multiples of ``bundle_size`` (bound the count first)."""
    ranges: list[tuple[int, int]] = []
    low = start
    while low <= end:
        high = min(low - low % bundle_size + bundle_size - 1, end)
        ranges.append((low, high))
        low = high + 1
    return ranges


class ControlHandler:
    """Serves one control connection."""

    def __init__(self, state: ServerState, conn: Conn) -> None:
        self._state = state
        self._conn = conn
        self._single: Session | None = None
        self._group: ParallelGroup | None = None

    async def run(self) -> None:
        """Serve requests until the connection ends; then release what this connection owned.

        A request that binds sessions to the connection returns them, with the position their
        streaming starts after; their streamers run beside the request loop.
        """
        try:
            async with trio.open_nursery() as nursery:
                try:
                    while True:
                        message = await self._conn.receive()
                        for session, after in await self._handle(message):
                            nursery.start_soon(self._stream, session, after, nursery.cancel_scope)
                except ConnectionGone:
                    pass
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            if self._single is not None:
                self._single.ownership.detach(self._conn)
            if self._group is not None:
                self._group.ownership.detach(self._conn)

    # -- sending -----------------------------------------------------------------------------

    async def _send(self, response: BacktestResponse, seq: int | None = None) -> None:
        await self._conn.send_text(encode_response(response, seq))

    async def _reply_error(self, error: BacktestError) -> None:
        """An error about the request itself: numbered in a single session's log, else direct."""
        if self._single is not None:
            self._single.emit(Error(error))
        else:
            await self._send(Error(error))

    # -- dispatch ----------------------------------------------------------------------------

    async def _handle(self, message: str | bytes) -> _Streams:
        """Answer one request; the sessions it bound to this connection, to be streamed."""
        try:
            request = decode_request(message)
        except ProtocolError as exc:
            logger.debug("undecodable control request: %s", exc)
            await self._reply_error(InvalidRequest(f"cannot decode request: {exc}"))
            return []
        match request:
            case UnknownRequest(reason=reason):
                await self._reply_error(InvalidRequest(f"invalid request: {reason}"))
            case CreateBacktestSessionRequest():
                return await self._create(request)
            case AttachBacktestSession():
                return await self._attach(request)
            case AttachParallelControlSessionV2():
                return await self._attach_parallel(request)
            case ResumeAttachedSession():
                await self._send(Success())
            case ContinueParams() | ContinueToParams() | CloseBacktestSession():
                await self._single_request(request)
            case (
                ContinueSessionRequestV1() | ContinueToSessionRequestV1() | CloseSessionRequestV1()
            ):
                await self._routed_request(request)
        return []

    async def _single_request(
        self, request: ContinueParams | ContinueToParams | CloseBacktestSession
    ) -> None:
        session = self._single
        if session is None:
            what = "use continueSessionV1" if self._group is not None else "no session"
            await self._send(Error(InvalidRequest(f"{what} on this connection")))
            return
        match request:
            case ContinueParams():
                session.request_continue(request)
            case ContinueToParams():
                session.request_continue_to(request)
            case CloseBacktestSession():
                session.close()

    async def _routed_request(
        self, request: ContinueSessionRequestV1 | ContinueToSessionRequestV1 | CloseSessionRequestV1
    ) -> None:
        group = self._group
        if group is None:
            await self._reply_error(InvalidRequest("not a parallel control connection"))
            return
        session = group.sub(request.session_id)
        if session is None:
            await self._send(Error(SessionNotFound(request.session_id)))
            return
        match request:
            case ContinueSessionRequestV1():
                session.request_continue(request.request)
            case ContinueToSessionRequestV1():
                session.request_continue_to(request.request)
            case CloseSessionRequestV1():
                session.close()

    # -- create ------------------------------------------------------------------------------

    async def _create(self, request: CreateBacktestSessionRequest) -> _Streams:
        config = self._state.config
        if self._single is not None or self._group is not None:
            await self._reply_error(InvalidRequest("this connection already has a session"))
            return []
        if self._state.draining:
            await self._send(Error(InvalidRequest("the server is draining; no new sessions")))
            return []
        start, end = request.start_slot, request.end_slot
        if start > end:
            await self._send(Error(InvalidRequest("startSlot must not be after endSlot")))
            return []
        if config.strict_ranges and not self._in_bundles(start, end, request.parallel):
            await self._send(Error(BundleNotFound(start, end)))
            return []
        problem = self._over_limits(start, end, parallel=request.parallel)
        if problem is not None:
            logger.info("create refused: %s", problem)
            await self._send(Error(InvalidRequest(problem)))
            return []
        timeout = min(request.disconnect_timeout_secs or 0, config.max_disconnect_timeout)
        if request.parallel:
            return await self._create_parallel(request, timeout)
        session = Session(
            self._state,
            session_id=self._state.new_id("backtest"),
            request=request,
            start_slot=start,
            end_slot=end,
            numbered=timeout > 0,
            timeout=timeout,
        )
        self._state.add_session(session)
        self._bind_single(session)
        session.start()
        logger.info("created session %s for slots %d..%d", session.id, start, end)
        await self._send(SessionCreated(session.id, session.rpc_endpoint, None))
        return [(session, 0)]

    def _over_limits(self, start: int, end: int, *, parallel: bool) -> str | None:
        """Why a create of ``[start, end]`` asks for more than this server gives; None if not.

        Decided from the numbers alone, before anything is allocated.
        """
        config = self._state.config
        slots = end - start + 1
        if slots > config.max_session_slots:
            return (
                f"the range has {slots} slots; this server allows at most"
                f" {config.max_session_slots} per create"
            )
        wanted = count_ranges(start, end, config.bundle_size) if parallel else 1
        if parallel and wanted > config.max_parallel_sessions:
            return (
                f"the range splits into {wanted} sub-sessions; this server allows at most"
                f" {config.max_parallel_sessions}"
            )
        room = self._state.session_room()
        if wanted > room:
            return (
                f"the server is at its session limit ({config.max_sessions}); {wanted} more"
                " would pass it"
            )
        return None

    def _in_bundles(self, start: int, end: int, parallel: bool) -> bool:
        config = self._state.config
        if start % config.bundle_size != 0:
            return False
        if not config.window_start <= start <= config.window_end or end > config.window_end:
            return False
        return parallel or end <= start + config.bundle_size - 1

    async def _create_parallel(
        self, request: CreateBacktestSessionRequest, keep_secs: int
    ) -> _Streams:
        state = self._state
        ranges = split_range(request.start_slot, request.end_slot, state.config.bundle_size)
        group = ParallelGroup(state, state.new_id("parallel"), keep_secs)
        for low, high in ranges:
            sub = Session(
                state,
                session_id=state.new_id("backtest"),
                request=request,
                start_slot=low,
                end_slot=high,
                numbered=True,
                group=group,
            )
            group.subs.append(sub)
            state.add_session(sub)
        state.add_group(group)
        self._group = group
        group.ownership.take(self._conn)
        self._watch(group.subs)
        for sub in group.subs:
            sub.start()
        logger.info("created parallel session %s with %d sub-sessions", group.id, len(group.subs))
        for sub in group.subs:
            await self._send(SessionCreated(sub.id, sub.rpc_endpoint, None))
            for seq, event in sub.log.between(0, _OPENING_EVENTS):
                await self._send(SessionEventV2(sub.id, seq, event))
            sub.note_written(_OPENING_EVENTS)
        await self._send(
            SessionsCreatedV2(
                group.id,
                [sub.id for sub in group.subs],
                [None] * len(group.subs),
                [sub.start_slot for sub in group.subs],
                [sub.end_slot for sub in group.subs],
            )
        )
        return [(sub, _OPENING_EVENTS) for sub in group.subs]

    # -- attach ------------------------------------------------------------------------------

    async def _attach(self, request: AttachBacktestSession) -> _Streams:
        if self._single is not None or self._group is not None:
            await self._reply_error(InvalidRequest("this connection already has a session"))
            return []
        session = self._state.single(request.session_id)
        if session is None:
            await self._send(Error(SessionNotFound(request.session_id)))
            return []
        self._bind_single(session)
        cursor = request.last_sequence
        session.owner_written = cursor or 0
        if session.numbered:
            session.resend_readiness(cursor)
            upto = session.log.last_seq
            for seq, response in session.log.between(cursor or 0, upto):
                await self._send(response, seq)
                session.note_written(seq)
        else:
            upto = session.log.last_seq
        session.note_written(max(session.owner_written, upto))
        logger.info("attached session %s (cursor %s)", session.id, cursor)
        await self._send(SessionAttached(session.id, session.rpc_endpoint, None))
        return [(session, upto)]

    async def _attach_parallel(self, request: AttachParallelControlSessionV2) -> _Streams:
        if self._single is not None or self._group is not None:
            await self._reply_error(InvalidRequest("this connection already has a session"))
            return []
        group = self._state.groups.get(request.control_session_id)
        if group is None:
            await self._send(Error(SessionNotFound(request.control_session_id)))
            return []
        previous = group.ownership.take(self._conn)
        self._group = group
        self._watch(group.subs)
        if previous is not None:
            previous.request_close(TAKEOVER_CLOSE_REASON)
        cursors = request.last_sequences
        upto: dict[str, int] = {}
        for sub in group.subs:
            cursor = cursors.get(sub.id)
            sub.owner_written = cursor or 0
            sub.resend_readiness(cursor)
            upto[sub.id] = sub.log.last_seq
        for sub in group.subs:
            for seq, event in sub.log.between(cursors.get(sub.id, 0), upto[sub.id]):
                await self._send(SessionEventV2(sub.id, seq, event))
                sub.note_written(seq)
            sub.note_written(max(sub.owner_written, upto[sub.id]))
        logger.info("attached parallel session %s", group.id)
        await self._send(
            ParallelSessionAttachedV2(
                group.id, [sub.id for sub in group.subs], [None] * len(group.subs)
            )
        )
        return [(sub, upto[sub.id]) for sub in group.subs]

    def _bind_single(self, session: Session) -> None:
        previous = session.ownership.take(self._conn)
        self._single = session
        self._watch([session])
        if previous is not None:
            previous.request_close(TAKEOVER_CLOSE_REASON)

    def _watch(self, sessions: list[Session]) -> None:
        for session in sessions:
            self._conn.watchers.append(session.notify_progress)

    # -- streaming ---------------------------------------------------------------------------

    async def _stream(self, session: Session, after: int, serving: trio.CancelScope) -> None:
        """Write the session's responses above ``after`` while this connection owns it.

        A write that finds the connection gone ends ``serving`` (the whole connection).
        """
        position = after
        parallel = session.group is not None
        log = session.log
        try:
            while session.owner is self._conn:
                waiter = log.signal.event
                entry = log.after(position)
                if entry is None:
                    await waiter.wait()
                    continue
                seq, response = entry
                if parallel:
                    await self._send(SessionEventV2(session.id, seq, response))
                else:
                    await self._send(response, seq if session.numbered else None)
                position = seq
                session.note_written(seq)
        except ConnectionGone:
            serving.cancel()
