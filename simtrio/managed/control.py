"""The trio pieces both managed control loops (single and parallel) are made of.

A control loop owns one control connection at a time. This module runs that connection's life
-- connect with backoff, keepalive, the frame pump, the continue writer, the close on the way
out -- and asks the subclass (which drives a sans-IO core) what every frame means. Nothing
here decides anything about the protocol beyond "this connection is lost".

Task model, per connection: a nursery whose body is the frame pump (run by the control task
itself, so it can report ``started``), plus a keepalive task and the continue writer (which
waits until the connection is UP). A loss cancels that nursery; the loop backs off and
reconnects. Errors never travel as exceptions between these tasks: each one records what
happened on the :class:`~simtrio.managed.control_connection.ConnectionRun` and cancels it. A
close request is a direct call on the current connection's run.

Next to the control task, :meth:`ControlLoop.running` runs
:func:`~simtrio.managed.session_subscriptions.serve_subscriptions`, which starts each
(sub-)session's own data-plane service the first time that session subscribes.

With a recorder (:class:`~simtrio.managed.recording_tap.RecordingTap`), every control frame is recorded as the pump decodes
it (duplicates and handshake replies included, before the core sees it) and every request at
the moment its write begins, so the recording holds the exact order in which the core saw
frames and writes.
"""

from __future__ import annotations

__all__: list[str] = []

import abc
import logging
import math
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

import attrs
import trio

from simtrio.core.backoff import ReconnectState
from simtrio.core.groups import unwrapped
from simtrio.core.phase import Phase
from simtrio.errors import (
    ConnectError,
    ConnectionClosed,
    ContinueSendFailed,
    ControlFailed,
    CreateFailed,
    ProtocolError,
    SimtrioError,
)
from simtrio.managed.config import ConnectionStatus, ManagedConfig
from simtrio.managed.control_connection import (
    DECODE_CHUNK,
    ConnectionRun,
    ContinueItem,
    Frame,
    GiveUp,
    decode_batch,
    give_up_message,
    keepalive,
    watch_steps,
)
from simtrio.managed.queue import QueueReceiveChannel, QueueSendChannel, open_queue
from simtrio.managed.recording_tap import RecordingTap
from simtrio.managed.session_subscriptions import SessionSubscriptions, serve_subscriptions
from simtrio.managed.status import StatusCell
from simtrio.transport.connection import connect
from simtrio.wire.codec import encode
from simtrio.wire.redact import redactor_for
from simtrio.wire.types import CreateBacktestSessionRequest
from simtrio.wire.urls import API_KEY_HEADER, normalize_control_url

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Iterable

    from simtrio.core.phase import ControlCore
    from simtrio.errors import ManagedSessionError
    from simtrio.managed.sink import EventSink
    from simtrio.transport.connection import WebSocketConnection
    from simtrio.wire.types import BacktestRequest

logger = logging.getLogger(__name__)


_MIN_CONNECT_TIMEOUT: Final = 0.05
"""Floor of a connect timeout cut short by the outage budget, so the last try is a real one."""

_SHUTDOWN_SLACK: Final = 1.0
"""Margin on top of the two close bounds while a session waits for its control task to end."""

WRITE_BATCH: Final = 256
"""Most continues written together when many are queued (about 30 KiB of frames)."""

_UP: Final = ConnectionStatus.UP
_checkpoint_if_cancelled: Final = trio.lowlevel.checkpoint_if_cancelled
_cancel_shielded_checkpoint: Final = trio.lowlevel.cancel_shielded_checkpoint
_FAILED: Final = ConnectionStatus.FAILED


@attrs.frozen
class ControlTarget:
    """What a control loop connects to and asks for; the key is kept out of the repr."""

    url: str
    api_key: str = attrs.field(repr=False)
    request: CreateBacktestSessionRequest
    config: ManagedConfig
    tap: RecordingTap | None = None


class ControlLoop(abc.ABC):
    """The reconnecting control loop; subclasses drive their sans-IO core through the hooks.

    The loop itself asks ``core`` what a new, lost or abandoned connection means (which
    request opens it, whether to reconnect, how long a handshake may take); the subclass
    feeds it the frames and carries out what it decides.

    ``run`` is the control task (``await nursery.start(loop.run)``): it reports started once
    the create handshake succeeded and raises ``CreateFailed`` if it cannot. Later give-ups
    are stored in :attr:`failure` and reach the drivers through their event streams.
    """

    def __init__(self, target: ControlTarget, core: ControlCore) -> None:
        config = target.config
        self.url = normalize_control_url(target.url)
        self.redactor = redactor_for((target.api_key,))
        """Takes the API key out of everything the server sends (None: no key to protect)."""
        self._core = core
        self.tap = target.tap
        self.config = config
        self.max_total = config.max_total_for(target.request.disconnect_timeout_secs)
        """The outage budget (protocol §8.3): how long the loop keeps trying to reconnect."""
        self.status = StatusCell()
        self.failure: ManagedSessionError | None = None
        self.finished = False
        self.done = trio.Event()
        self._headers = ((API_KEY_HEADER, target.api_key),)
        self._state = ReconnectState(
            config.backoff, self.max_total, first_max_total=config.first_connect_max_total
        )
        self._rng = config.make_rng()
        self._last_connect_error: str | None = None
        # Many drivers queue, one writer takes whatever is queued at once (no task switch each).
        self._continue_tx: QueueSendChannel[ContinueItem]
        self._continue_rx: QueueReceiveChannel[ContinueItem]
        self._continue_tx, self._continue_rx = open_queue(config.continue_channel_capacity)
        self._unsent: ContinueItem | None = None
        self._close_requested = False
        self.launcher: trio.MemorySendChannel[SessionSubscriptions]
        self._launch_rx: trio.MemoryReceiveChannel[SessionSubscriptions]
        self.launcher, self._launch_rx = trio.open_memory_channel[SessionSubscriptions](math.inf)
        """Where a (sub-)session's subscriptions ask for their service to be started."""
        self._run_scope: trio.CancelScope | None = None
        self._active: ConnectionRun | None = None
        self._task_status: trio.TaskStatus[None] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url} {self.status.value.name}>"

    # -- hooks ------------------------------------------------------------------------------

    @property
    def _recorded_session(self) -> str | None:
        """The session id frames and requests are recorded under (None: from the item)."""
        return None

    @abc.abstractmethod
    def _handle(self, run: ConnectionRun, frames: list[Frame]) -> None:
        """Feed decoded frames to the core and carry out its decisions (never blocks)."""

    @property
    @abc.abstractmethod
    def sinks(self) -> Iterable[EventSink]:
        """The driver-facing side of every (sub-)session this loop serves, in order."""

    @abc.abstractmethod
    def _check_sendable(self, session_id: str | None) -> None:
        """Raise ``ContinueSendFailed`` if a continue for this session can never be written."""

    @abc.abstractmethod
    def _continue_written(self, item: ContinueItem) -> None: ...

    async def _before_close(self, run: ConnectionRun) -> None:  # noqa: B027
        """Anything to say before the WebSocket close of an orderly end (default: nothing)."""

    async def _after_attach(self, run: ConnectionRun) -> None:
        """Once ``run.attached`` is set: what brings the connection UP (default: at once)."""
        self._up(run)

    # -- used by subclasses -----------------------------------------------------------------

    def _started(self) -> None:
        """The create succeeded: let ``nursery.start`` return."""
        task_status, self._task_status = self._task_status, None
        if task_status is not None:
            task_status.started()

    def _up(self, run: ConnectionRun) -> None:
        """The connection is UP: reset the outage, publish the status, start writing."""
        run.up = True
        self._state.connection_up(trio.current_time())
        self.status.set(_UP)
        run.came_up.set()

    async def _send_request(
        self, run: ConnectionRun, request: BacktestRequest, text: str | None = None
    ) -> ConnectionClosed | None:
        """Record ``request`` and write it (``text``: already encoded); the error if it failed."""
        if self.tap is not None:
            self.tap.sent(self._recorded_session, request)
        try:
            await run.conn.send_text(encode(request) if text is None else text)
        except ConnectionClosed as exc:
            return exc
        return None

    def _frame_timeout(self) -> float | None:
        """Longest silence allowed right now (a handshake is pending), or None."""
        phase = self._core.phase
        if phase is Phase.CREATING:
            return self.config.create_response_timeout
        if phase is Phase.ATTACHING:
            return self.config.handshake_timeout
        return None

    def _fail(self, run: ConnectionRun | None, error: ManagedSessionError) -> None:
        """Stop for good; a ``CreateFailed`` is raised by :meth:`run`, others reach drivers."""
        if run is not None:
            run.fail(error)
        if isinstance(error, CreateFailed):
            return
        if self.failure is None:
            self.failure = error
            logger.warning("managed control plane failed: %s", error)
            self.status.set(_FAILED, error)
            for sink in self.sinks:
                sink.fail(error)

    # -- public -----------------------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncGenerator[None]:
        """Run the control task for the block: entered once the create succeeded.

        Leaving closes the control connection in order (bounded), ends every (sub-)session's
        stream and cancels its tasks.

        Raises:
            CreateFailed: the create could not complete.
            RecordingFailed: the recorder failed; the session was stopped.
            ControlFailed: on leaving, if the control plane failed and no ``next_event``
                raised it.
        """
        tap = self.tap
        with unwrapped(prefer=SimtrioError, ignoring=trio.Cancelled):
            async with trio.open_nursery() as nursery:
                if tap is not None:
                    tap.scope = nursery.cancel_scope
                await nursery.start(self.run)
                try:
                    await nursery.start(serve_subscriptions, self._launch_rx)
                    yield
                finally:
                    await self.wait_closed()
                    for sink in self.sinks:
                        sink.end()
                    nursery.cancel_scope.cancel()
        if tap is not None:
            tap.check()
        failure = self.failure
        if failure is not None and not any(sink.was_reported(failure) for sink in self.sinks):
            raise failure

    def request_close(self) -> None:
        """End the loop in order: close the current connection (gracefully), no reconnects."""
        self._close_requested = True
        if self._active is not None:
            self._active.close()
        elif self._run_scope is not None:
            self._run_scope.cancel()

    async def wait_closed(self) -> None:
        """Request the close and wait (shielded, bounded) until the control task has ended."""
        self.request_close()
        bound = 2 * self.config.graceful_close_timeout + _SHUTDOWN_SLACK
        with trio.CancelScope(shield=True), trio.move_on_after(bound):
            await self.done.wait()

    async def queue_continue(self, sink: EventSink, session_id: str | None, text: str) -> None:
        """Wait until the control connection and the session's subscriptions are UP, then queue."""
        self._check_sendable(session_id)
        if self.status.value is _UP and sink.ready_to_continue():
            # The common case, kept to one checkpoint: with many sub-sessions continuing at
            # once, every extra scheduling round per continue shows in the round trip.
            await _checkpoint_if_cancelled()
        else:
            await self._wait_up()
            await sink.wait_all_up()
            self._check_sendable(session_id)
        item = (session_id, text)
        tx = self._continue_tx
        try:
            try:
                tx.send_nowait(item)
            except trio.WouldBlock:
                await tx.send(item)
            else:
                # Queued: this scheduling point must not be cancelled, or the caller would
                # think the continue was not sent.
                await _cancel_shielded_checkpoint()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ContinueSendFailed("the control task has ended") from None

    async def _wait_up(self) -> None:
        """Until the connection is UP; ``ContinueSendFailed`` once it never will be again.

        The status may change again between the wake-up and the return (a connection lost
        right after it came up): that is a reason to keep waiting, not a failure.
        """

        def settled(value: ConnectionStatus) -> bool:
            return value is _UP or value is _FAILED or self.finished

        while True:
            status = await self.status.wait_until(settled)
            if self.finished or status is _FAILED:
                raise ContinueSendFailed(self._ended_message())
            if status is _UP:
                return

    def _ended_message(self) -> str:
        if self.failure is not None:
            return f"the control plane failed: {self.failure}"
        return "the control task has ended"

    # -- the control task -------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The control task: connect, serve and reconnect until the core or a close ends it.

        Raises:
            CreateFailed: the create could not complete (before ``started`` is reported).
        """
        self._task_status = task_status
        try:
            with trio.CancelScope() as scope:
                self._run_scope = scope
                if not self._close_requested:
                    await self._loop()
        finally:
            self._run_scope = None
            self._continue_rx.close()
            self.finished = True
            self.status.set(ConnectionStatus.DOWN)
            self.done.set()

    async def _loop(self) -> None:
        retry = False
        core = self._core
        while core.wants_reconnect and not self._close_requested:
            give_up: GiveUp | None = None
            conn: WebSocketConnection | None = None
            try:
                conn = await self._connect(retry=retry)
            except GiveUp as exc:
                give_up = exc
            if conn is None:
                assert give_up is not None
                creating = core.creating
                core.give_up()
                error = (CreateFailed if creating else ControlFailed)(str(give_up))
                error.__cause__ = give_up.cause
                if creating:
                    raise error
                self._fail(None, error)
                return
            retry = True
            run = ConnectionRun(conn)
            self._active = run
            try:
                await self._serve(run)
            finally:
                self._active = None
                with trio.CancelScope(shield=True):
                    await self._finish(run)
            if run.failure is not None:
                if isinstance(run.failure, CreateFailed):
                    raise run.failure
                return
            if run.loss is None:
                return
            core.connection_lost()
            now = trio.current_time()
            if run.up:
                self._state.connection_lost(now, healthy_until=run.stalled_since)
            else:
                self._state.attempt_failed(now)
            self._last_connect_error = run.loss
            self.status.set(ConnectionStatus.RECONNECTING)

    async def _connect(self, *, retry: bool) -> WebSocketConnection:
        """One connection, retried with backoff; ``GiveUp`` when no attempt is left."""
        state = self._state
        config = self.config
        while True:
            if retry:
                delay = state.next_delay(trio.current_time(), self._rng)
                if delay is None:
                    raise GiveUp(
                        give_up_message(self._state, self.config, self._last_connect_error)
                    )
                logger.debug("next control connection attempt in %.3f s", delay)
                await trio.sleep(delay)
            retry = True
            now = trio.current_time()
            state.attempt_started(now)
            timeout = config.connect_timeout
            remaining = state.remaining(now)
            if remaining is not None:
                timeout = max(min(timeout, remaining), _MIN_CONNECT_TIMEOUT)
            try:
                conn = await connect(
                    self.url,
                    headers=self._headers,
                    connect_timeout=timeout,
                    max_message_size=config.max_message_size,
                    ssl_context=config.ssl_context,
                )
            except ConnectError as exc:
                if exc.fatal:
                    raise GiveUp(str(exc), exc) from None
                logger.warning("control connection attempt failed: %s", exc)
                self._last_connect_error = str(exc)
                state.attempt_failed(trio.current_time())
                self.status.set(ConnectionStatus.RECONNECTING)
            else:
                state.connected()
                return conn

    async def _serve(self, run: ConnectionRun) -> None:
        async with trio.open_nursery() as nursery:
            run.scope = nursery.cancel_scope
            nursery.start_soon(keepalive, run, self.config)
            nursery.start_soon(self._writer, run)
            nursery.start_soon(self._bring_up_after_attach, run)
            if self.config.idle_step_timeout is not None:
                nursery.start_soon(watch_steps, run, self.config.idle_step_timeout, self._core)
            failed = await self._send_request(run, self._core.connection_opened())
            if failed is not None:
                run.lose(str(failed))
            else:
                await self._pump(run)
            nursery.cancel_scope.cancel()

    async def _pump(self, run: ConnectionRun) -> None:
        conn = run.conn
        tap = self.tap
        while not run.over:
            timeout = self._frame_timeout()
            messages: list[str | bytes] = []
            try:
                if timeout is None:
                    messages = await conn.receive_batch()
                else:
                    with trio.move_on_after(timeout) as scope:
                        messages = await conn.receive_batch()
                    if scope.cancelled_caught:
                        run.lose(f"no reply within {timeout:g} s")
                        return
            except ConnectionClosed as exc:
                run.lose(str(exc))
                return
            except ProtocolError as exc:
                run.lose(f"protocol error: {exc}")
                return
            run.reads += 1
            routed, error = self._route(run, messages)
            if routed and tap is not None:
                with run.read_pause:
                    await tap.wait_for_room()
            if error is not None:
                run.lose(f"protocol error: {error}")

    def _route(
        self, run: ConnectionRun, messages: list[str | bytes]
    ) -> tuple[bool, ProtocolError | None]:
        """Decode one read's messages and hand their frames on (recorded first, with a tap).

        A slice at a time: the frames of a whole read alive at once would set off the garbage
        collector several times per read. Stops at a malformed message. Returns whether any
        frame was handed on, and the malformed message's error.
        """
        tap = self.tap
        routed = False
        for start in range(0, len(messages), DECODE_CHUNK):
            part = (
                messages
                if len(messages) <= DECODE_CHUNK
                else messages[start : start + DECODE_CHUNK]
            )
            frames, error = decode_batch(part, self.redactor)
            if frames:
                routed = True
                if tap is not None:
                    tap.frames(self._recorded_session, frames)
                self._handle(run, frames)
            if error is not None:
                return routed, error
        return routed, None

    async def _bring_up_after_attach(self, run: ConnectionRun) -> None:
        await run.attached.wait()
        await self._after_attach(run)

    async def _writer(self, run: ConnectionRun) -> None:
        """Write queued continues while the connection is UP (protocol §6.8).

        A continue is held back until a connection can take it; once its write has begun it
        counts as written, even when the write fails part-way, and is never sent again.
        """
        conn = run.conn
        rx = self._continue_rx
        tap = self.tap
        await run.came_up.wait()
        while True:
            item = self._unsent
            if item is None:
                try:
                    item = await rx.receive()
                except (trio.EndOfChannel, trio.ClosedResourceError):
                    return
                self._unsent = item
            if conn.closed:
                return  # the pump reports the loss; the item waits for the next connection
            self._unsent = None
            # Everything else already queued goes out in the same write: with many
            # sub-sessions, one write per continue would cost a scheduling round each.
            batch = [item]
            while len(batch) < WRITE_BATCH:
                try:
                    batch.append(rx.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break
            # Counted as written before the first byte goes out: a readiness event that the
            # server sends while this write is still in progress answers this continue, and
            # must not be mistaken for a redundant one.
            run.written_at = trio.current_time()
            for written in batch:
                self._continue_written(written)
                if tap is not None:
                    tap.sent(written[0] or self._recorded_session, written[1])
            try:
                await conn.send_texts([written[1] for written in batch])
            except ConnectionClosed as exc:
                run.lose(str(exc))
                return

    async def _finish(self, run: ConnectionRun) -> None:
        """Close a connection that ended: at once when lost or failed, else in order (bounded)."""
        conn = run.conn
        if run.stopped:
            await conn.abort()
            return
        try:
            await self._before_close(run)
        finally:
            await conn.aclose(self.config.graceful_close_timeout)

    async def _read_until(self, run: ConnectionRun, seconds: float) -> None:
        """Keep processing frames (outside the pump) until ``run.close_done`` or the bound."""
        conn = run.conn
        with trio.move_on_after(seconds):
            while not run.close_done and not run.stopped:
                try:
                    messages = await conn.receive_batch()
                except (ConnectionClosed, ProtocolError):
                    return
                if self._route(run, messages)[1] is not None:
                    return
