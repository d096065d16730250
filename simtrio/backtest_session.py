"""The plain client's session: one backtest session on one control connection.

A :class:`BacktestSession` is a thin trio shell over the sans-IO bookkeeping of
:mod:`simtrio.core.session`: it owns the reading (whole batches of one socket read, kept raw
until a method processes them) and the deadlines, and lets the core decide what each response
means (protocol §6.1, §6.2, §6.4). :class:`~simtrio.client.BacktestClient` opens the connection
and hands it over.
"""

from __future__ import annotations

__all__: list[str] = []

import logging
from collections import deque
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import TYPE_CHECKING, Final, TypeAlias

import trio

from simtrio.core.boundary import map_exceptions
from simtrio.core.discovery import (
    DISCOVERY_SETTLE,
    RUN_ON_COUNT,
    DiscoveryStep,
    DiscoveryStepper,
    Next,
)
from simtrio.core.session import ContinueResult, ReadinessTracker, ReadyOutcome, StepAccumulator
from simtrio.errors import (
    ConnectionClosed,
    ProtocolError,
    RemoteError,
    RequestTimeout,
    RpcError,
    excerpt,
)
from simtrio.params import Continue, as_continue_params
from simtrio.rpc.session import SessionRpc, open_session_rpc
from simtrio.wire import types as wire
from simtrio.wire.codec import decode_frame, encode
from simtrio.wire.urls import resolve_rpc_url

if TYPE_CHECKING:
    import ssl
    from collections.abc import Generator

    from simtrio.transport.connection import WebSocketConnection
    from simtrio.wire.backtest_errors import BacktestError
    from simtrio.wire.redact import Redactor

logger = logging.getLogger("simtrio.client")
"""The plain client's logger, whichever of its modules logs."""

GRACEFUL_CLOSE_TIMEOUT: Final = 5.0
"""Default bound on waiting for the close reply, and on the WebSocket close handshake."""

_Frame: TypeAlias = tuple[int | None, wire.BacktestResponse]
_Pending: TypeAlias = str | bytes | _Frame
"""A raw message not decoded yet, or a frame decoded during a handshake but not processed."""

OnResponse: TypeAlias = Callable[[wire.BacktestResponse], object]


def decode_message(message: str | bytes, redactor: Redactor | None) -> _Frame | None:
    """Decode one control message; None for a Binary message that is not UTF-8 (ignored).

    With a ``redactor`` (an API key is configured), the key is taken out of the message first.
    """
    if redactor is not None:
        message = redactor.message(message)
    if isinstance(message, bytes):
        try:
            message = message.decode("utf-8")
        except UnicodeDecodeError:
            logger.warning(
                "ignoring a Binary control message that is not UTF-8 (%d bytes)", len(message)
            )
            return None
    return decode_frame(message)


@contextmanager
def deadline(limit: float | None, what: str) -> Generator[None]:
    """``trio.fail_after`` that surfaces as :class:`RequestTimeout`; ``None`` means no limit."""
    if limit is None:
        yield
        return
    with (
        map_exceptions(
            trio.TooSlowError,
            lambda _: RequestTimeout(f"{what} timed out after {limit:g} s"),
            chain=False,
        ),
        trio.fail_after(limit),
    ):
        yield


class BacktestSession:
    """One backtest session on one control connection (yielded by the client's context managers).

    Responses are read only by the methods below; ``last_sequence`` and the readiness flag move
    only when a method has processed a response, never when it merely arrived.
    """

    __slots__ = (
        "_close_done",
        "_conn",
        "_last_sequence",
        "_pending",
        "_readiness",
        "_redactor",
        "_request_timeout",
        "_rpc_base",
        "_rpc_endpoint",
        "_run_on_count",
        "_session_id",
        "_ssl_context",
        "_stepper",
    )

    def __init__(
        self,
        conn: WebSocketConnection,
        request_timeout: float | None,
        redactor: Redactor | None = None,
        *,
        rpc_base: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        run_on_count: int = RUN_ON_COUNT,
    ) -> None:
        self._conn = conn
        self._redactor = redactor
        self._stepper = DiscoveryStepper()
        self._run_on_count = run_on_count
        self._request_timeout = request_timeout
        self._rpc_base = rpc_base
        self._ssl_context = ssl_context
        self._pending: deque[_Pending] = deque()
        self._readiness = ReadinessTracker()
        self._last_sequence: int | None = None
        self._close_done = False
        self._session_id: str | None = None
        self._rpc_endpoint: str | None = None

    def __repr__(self) -> str:
        state = "closed" if self._conn.closed else "open"
        return (
            f"<BacktestSession {self._session_id} {state} "
            f"ready={self.is_ready_for_continue} last_sequence={self._last_sequence}>"
        )

    # -- state ----------------------------------------------------------------------------------

    @property
    def session_id(self) -> str | None:
        """The session id from ``sessionCreated`` / ``sessionAttached``."""
        return self._session_id

    @property
    def rpc_endpoint(self) -> str | None:
        """The session's RPC endpoint exactly as the server sent it (often relative)."""
        return self._rpc_endpoint

    @property
    def rpc_url(self) -> str | None:
        """The absolute ``http(s)://`` URL of the session's RPC endpoint, when it has one."""
        endpoint = self._rpc_endpoint
        if not endpoint:
            return None
        if self._rpc_base is None:
            return endpoint if endpoint.startswith(("http://", "https://")) else None
        return resolve_rpc_url(self._rpc_base, endpoint)

    def rpc(self) -> AbstractAsyncContextManager[SessionRpc]:
        """A :class:`~simtrio.rpc.SessionRpc` on this session's RPC endpoint, for an
        ``async with`` block.

        Each call is bounded by the client's ``request_timeout`` (None: no bound); TLS uses the
        client's ``ssl_context``. For other settings, pass :attr:`rpc_url` to
        :func:`~simtrio.rpc.open_session_rpc`.

        Raises:
            RpcError: the session has no RPC endpoint (raised here, not on entering).
        """
        url = self.rpc_url
        if url is None:
            raise RpcError("session has no rpc endpoint")
        return open_session_rpc(
            url,
            timeout=self._request_timeout,
            ssl_context=self._ssl_context,
            redactor=self._redactor,
        )

    @property
    def last_sequence(self) -> int | None:
        """Highest ``seqId`` among the responses processed so far; None until one was."""
        return self._last_sequence

    @property
    def is_ready_for_continue(self) -> bool:
        """Whether the processed responses say the server waits for a continue."""
        return self._readiness.ready

    # -- reading --------------------------------------------------------------------------------

    async def _next_frame(self) -> _Frame:
        """The next unprocessed frame: buffered ones first, then the socket."""
        pending = self._pending
        while True:
            if not pending:
                pending.extend(await self._conn.receive_batch())
            item = pending.popleft()
            if isinstance(item, tuple):
                return item
            frame = decode_message(item, self._redactor)
            if frame is not None:
                return frame

    def _process(self, frame: _Frame) -> wire.BacktestResponse:
        seq, response = frame
        if seq is not None and (self._last_sequence is None or seq > self._last_sequence):
            self._last_sequence = seq
        self._readiness.observe(response)
        if isinstance(response, wire.SlotNotification):
            self._stepper.slot(response.slot)
        elif isinstance(response, wire.DiscoveryBatch):
            self._stepper.batch(response.event)
        return response

    async def _next(self) -> wire.BacktestResponse:
        return self._process(await self._next_frame())

    def _limit(self, timeout: float | None) -> float | None:
        return timeout if timeout is not None else self._request_timeout

    async def _handshake(
        self, request: str, reply: type[wire.SessionCreated | wire.SessionAttached]
    ) -> None:
        """Send the create/attach request and wait for its reply, keeping everything else.

        Frames that arrive first are kept, unprocessed, for later reads, so they count toward
        ``last_sequence`` and readiness only when read. A frame that cannot be decoded is kept
        raw, so its ``ProtocolError`` surfaces when it is read. For an attach, a numbered
        ``error`` is replayed history, not the reply.
        """
        await self._conn.send_text(request)
        kept: list[_Pending] = []
        pending = self._pending
        while True:
            if not pending:
                pending.extend(await self._conn.receive_batch())
            item = pending.popleft()
            assert not isinstance(item, tuple)
            try:
                frame = decode_message(item, self._redactor)
            except ProtocolError:
                kept.append(item)
                continue
            if frame is None:
                continue
            seq, response = frame
            if isinstance(response, reply):
                self._session_id = response.session_id
                self._rpc_endpoint = response.rpc_endpoint
                pending.extendleft(reversed(kept))
                return
            if isinstance(response, wire.Error) and (seq is None or reply is wire.SessionCreated):
                raise RemoteError(response.error)
            kept.append(frame)

    # -- waiting helpers ------------------------------------------------------------------------

    async def _wait_ready(self, on_response: OnResponse | None = None) -> ReadyOutcome:
        outcome = self._readiness.outcome
        while outcome is None:
            response = await self._next()
            if on_response is not None:
                on_response(response)
            outcome = self._readiness.outcome
            if outcome is not None:
                break
            if isinstance(response, wire.Error):
                raise RemoteError(response.error)
            log_skipped(response, "waiting for readiness")
        return outcome

    async def ensure_ready(self, timeout: float | None = None) -> ReadyOutcome:  # noqa: ASYNC109
        """Return at once when ready, else read until a readiness event or ``completed``.

        Other responses are skipped (``discoveryBatch`` included). Raises ``RemoteError`` on an
        ``error``, ``RequestTimeout``, ``ConnectionClosed``.
        """
        with deadline(self._limit(timeout), "ensure_ready"):
            return await self._wait_ready()

    async def advance(
        self,
        cont: Continue | wire.ContinueParams,
        timeout: float | None = None,  # noqa: ASYNC109
        on_response: OnResponse | None = None,
    ) -> ContinueResult:
        """Send a continue and collect until ready again after ``advance_count`` slots.

        Ends at ``completed`` too. If the session is not known to be ready, the responses up
        to the next readiness event are read first (and passed to ``on_response``, but not
        counted), so a readiness event already in flight is not mistaken for this step's end.
        """
        params = as_continue_params(cont)
        with deadline(self._limit(timeout), "advance"):
            return await self._step(params, StepAccumulator(params.advance_count), on_response)

    async def continue_until_ready(
        self,
        cont: Continue | wire.ContinueParams,
        timeout: float | None = None,  # noqa: ASYNC109
        on_response: OnResponse | None = None,
    ) -> ContinueResult:
        """Send a continue and collect until the first readiness event or ``completed``."""
        params = as_continue_params(cont)
        with deadline(self._limit(timeout), "continue_until_ready"):
            return await self._step(params, StepAccumulator(), on_response)

    async def _step(
        self,
        params: wire.ContinueParams,
        accumulator: StepAccumulator,
        on_response: OnResponse | None,
    ) -> ContinueResult:
        if self._readiness.outcome is None:
            await self._wait_ready(on_response)
        await self._send_text(encode(params), continues=True)
        while True:
            response = await self._next()
            if on_response is not None:
                on_response(response)
            if accumulator.feed(response):
                return accumulator.result()

    async def wait_for_status(
        self,
        status: wire.BacktestStatus | str,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> None:
        """Read until a ``status`` response with that value (compared as wire text) arrives.

        Everything else is skipped; ``completed`` does not end the wait (bound it with
        ``timeout``). Raises ``RemoteError`` on an ``error``.
        """
        with deadline(self._limit(timeout), f"waiting for status {excerpt(str(status))!r}"):
            while True:
                response = await self._next()
                if isinstance(response, wire.Status) and response.status == status:
                    return
                if isinstance(response, wire.Error):
                    raise RemoteError(response.error)
                log_skipped(response, "waiting for a status")

    async def advance_to_discovery(
        self,
        timeout: float | None = None,  # noqa: ASYNC109
        on_response: OnResponse | None = None,
        *,
        settle: float = DISCOVERY_SETTLE,
    ) -> DiscoveryStep:
        """Run up to the next announced discovery batch (protocol §6.7).

        Takes the next queued ``discoveryBatch`` (waiting for readiness, and for one to be
        announced), sends ``continueTo(slot, batch_index)`` and waits for ``paused``:
        returns :class:`~simtrio.core.discovery.DiscoveryPaused`. When, once ready, no batch
        is announced within ``settle`` seconds, none is coming: a plain ``continue`` runs on,
        and :class:`~simtrio.core.discovery.DiscoveryCompleted` is returned at ``completed``
        (or the loop goes on if a batch is announced at a later readiness event).

        ``discoveryBatch`` events read by any method of this session (before readiness
        included) are kept for this call. Every response read here is passed to
        ``on_response``. Raises ``RemoteError`` on an ``error``, ``RequestTimeout``,
        ``ConnectionClosed``.
        """
        with deadline(self._limit(timeout), "advance_to_discovery"):
            return await self._discovery_loop(on_response, settle)

    async def _discovery_loop(self, on_response: OnResponse | None, settle: float) -> DiscoveryStep:
        stepper = self._stepper
        if self._readiness.ready:
            stepper.is_ready = True
        settled = False
        while True:
            action = stepper.next(settled)
            if isinstance(action, wire.DiscoveryBatchEvent):
                stepper.sent()
                request = wire.ContinueToParams(action.slot, action.batch_index)
                await self._send_text(encode(request), continues=True)
                settled = False
                continue
            if action is Next.RUN_ON:
                stepper.sent_run_on()
                await self._send_text(
                    encode(wire.ContinueParams(self._run_on_count)), continues=True
                )
                settled = False
                continue
            if action is Next.SETTLE:
                response: wire.BacktestResponse | None = None
                with trio.move_on_after(settle):
                    response = await self._next()
                if response is None:
                    settled = True
                    continue
            else:
                response = await self._next()
            if on_response is not None:
                on_response(response)
            match response:
                case wire.Paused(event=paused):
                    result = stepper.ready(paused)
                    if result is not None:
                        return result
                case wire.ReadyForContinue():
                    stepper.ready(None)
                case wire.Completed(summary=summary, agent_stats=agent_stats):
                    return stepper.completed(summary, agent_stats)
                case wire.Error(error=error):
                    if not stepper.is_ready:
                        stepper.refused()
                    raise RemoteError(error)
                case _:
                    pass

    # -- raw access -----------------------------------------------------------------------------

    async def send(self, request: wire.BacktestRequest | Continue) -> None:
        """Send any request as is (a ``Continue`` is converted); the reply is not awaited.

        A ``continue`` or ``continueTo`` sent here spends readiness like one sent by
        ``advance``.
        """
        if isinstance(request, Continue):
            request = request.to_params()
        await self._send_text(
            encode(request),
            continues=isinstance(request, wire.ContinueParams | wire.ContinueToParams),
        )

    async def next_response(self, timeout: float | None = None) -> wire.BacktestResponse:  # noqa: ASYNC109
        """The next response, buffered ones first; ``UnknownResponse`` included."""
        with deadline(self._limit(timeout), "next_response"):
            return await self._next()

    async def _send_text(self, text: str, *, continues: bool) -> None:
        if continues:
            # Even a partly written continue may have reached the server.
            self._readiness.continue_sent()
        await self._conn.send_text(text)

    # -- closing --------------------------------------------------------------------------------

    async def close(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Close the session on the server, then the WebSocket.

        Waits for ``success`` (or ``completed``) at most ``timeout`` (default
        ``request_timeout``, else :data:`GRACEFUL_CLOSE_TIMEOUT`), ignoring other responses;
        no reply in time, or the connection ending after the request was written, is logged,
        not raised. An ``error`` reply raises ``RemoteError`` once the socket is released.
        ``ConnectionClosed`` if the request could not be written at all. Repeated calls do
        nothing.
        """
        if self._close_done:
            return
        limit = timeout if timeout is not None else self._request_timeout
        if limit is None:
            limit = GRACEFUL_CLOSE_TIMEOUT
        error: BacktestError | None = None
        try:
            await self._send_text(encode(wire.CloseBacktestSession()), continues=False)
            with trio.move_on_after(limit) as scope:
                error = await self._await_close_reply()
            if scope.cancelled_caught:
                logger.warning(
                    "no reply to closeBacktestSession for %s within %g s", self.session_id, limit
                )
        finally:
            self._close_done = True
            await self._conn.aclose(GRACEFUL_CLOSE_TIMEOUT)
        if error is not None:
            raise RemoteError(error)

    async def _await_close_reply(self) -> BacktestError | None:
        while True:
            try:
                response = await self._next()
            except ProtocolError as exc:
                logger.warning("ignoring an unreadable frame while closing: %s", exc)
                continue
            except ConnectionClosed:
                logger.warning("connection ended before closeBacktestSession was answered")
                return None
            if isinstance(response, wire.Success | wire.Completed):
                return None
            if isinstance(response, wire.Error):
                return response.error
            log_skipped(response, "waiting for the close reply")


def log_skipped(response: wire.BacktestResponse, when: str) -> None:
    if isinstance(response, wire.UnknownResponse):
        logger.debug("skipping unknown response %r while %s", excerpt(response.method), when)
    elif logger.isEnabledFor(logging.DEBUG):
        logger.debug("skipping %s while %s", type(response).__name__, when)
