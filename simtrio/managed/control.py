"""The trio pieces both managed control loops (single and parallel) are made of.

A control loop owns one control connection at a time. This module runs that connection's life
-- connect with backoff, keepalive, the frame pump, the continue writer, the close on the way
out -- and asks the subclass (which drives a sans-IO core) what every frame means. Nothing
here decides anything about the protocol beyond "this connection is lost".

Task model, per connection: a nursery whose body is the frame pump (run by the control task
itself, so it can report ``started``), plus a keepalive task, a close watcher and, once the
connection is UP, the continue writer. A loss cancels that nursery; the loop backs off and
reconnects. Errors never travel as exceptions between these tasks: each one records what
happened on the :class:`ConnectionRun` and cancels it.

With a recorder (:class:`RecordingTap`), every control frame is recorded as the pump decodes
it (duplicates and handshake replies included, before the core sees it) and every request at
the moment its write begins, so the recording holds the exact order in which the core saw
frames and writes.
"""

from __future__ import annotations

import abc
import logging
import math
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Final, TypeAlias, cast

import trio

from simtrio.core.backoff import ReconnectState
from simtrio.core.phase import Phase
from simtrio.errors import (
    ConnectError,
    ConnectionClosed,
    ContinueSendFailed,
    ControlClosed,
    ControlFailed,
    CreateFailed,
    InvalidParams,
    ManagedSessionError,
    ProtocolError,
    SimtrioError,
)
from simtrio.events import Completed, Slot
from simtrio.managed.config import ConnectionStatus
from simtrio.managed.queue import QueueReceiveChannel, QueueSendChannel, open_queue
from simtrio.managed.status import StatusCell
from simtrio.managed.streams import EventIterator, EventStream
from simtrio.transport.connection import connect
from simtrio.wire.codec import decode_frame, encode
from simtrio.wire.redact import redactor_for
from simtrio.wire.urls import normalize_control_url

if TYPE_CHECKING:
    from collections.abc import (
        AsyncGenerator,
        Callable,
        Generator,
        Iterable,
        Iterator,
        Sequence,
    )

    from simtrio.core.phase import ControlCore
    from simtrio.errors import RpcError
    from simtrio.events import Event
    from simtrio.managed.config import ManagedConfig, SessionInfo
    from simtrio.managed.coordinator import ReconnectCoordinator
    from simtrio.managed.subscriptions import NotificationRecorder, SessionSubscriptions
    from simtrio.recording.errors import RecordingFailed
    from simtrio.recording.recorder import Recorder
    from simtrio.rpc.session import RpcObserver
    from simtrio.transport.connection import WebSocketConnection
    from simtrio.wire.redact import Redactor
    from simtrio.wire.rpc import (
        AccountDiffNotification,
        LogsNotification,
        TransactionNotification,
    )
    from simtrio.wire.types import BacktestRequest, BacktestResponse, JsonValue

__all__ = [
    "API_KEY_HEADER",
    "ConnectionRun",
    "ContinueItem",
    "ControlLoop",
    "EventSink",
    "EventIterator",
    "Frame",
    "RecordingTap",
    "SessionEvents",
    "decode_batch",
    "unwrap_groups",
]

logger = logging.getLogger(__name__)

API_KEY_HEADER: Final = "X-API-Key"

_MIN_CONNECT_TIMEOUT: Final = 0.05
"""Floor of a connect timeout cut short by the outage budget, so the last try is a real one."""

_SHUTDOWN_SLACK: Final = 1.0
"""Margin on top of the two close bounds while a session waits for its control task to end."""

DECODE_CHUNK: Final = 64
"""Most messages of one read decoded and routed together."""

WRITE_BATCH: Final = 256
"""Most continues written together when many are queued (about 30 KiB of frames)."""

Frame: TypeAlias = tuple[int | None, "BacktestResponse"]
"""A decoded control frame: its ``seqId`` (None when unnumbered) and its response."""

ContinueItem: TypeAlias = tuple[str | None, str]
"""A queued continue: the sub-session id (None for a single session) and the encoded request."""

_UP: Final = ConnectionStatus.UP
_checkpoint_if_cancelled: Final = trio.lowlevel.checkpoint_if_cancelled
_cancel_shielded_checkpoint: Final = trio.lowlevel.cancel_shielded_checkpoint
_FAILED: Final = ConnectionStatus.FAILED


def decode_batch(
    messages: Sequence[str | bytes], redactor: Redactor | None = None
) -> tuple[list[Frame], ProtocolError | None]:
    """Decode every message of one read, stopping at the first malformed one (protocol §2.4).

    A Binary message that is valid UTF-8 is decoded like Text; one that is not is skipped with a
    warning (§1.7). The frames before a malformed one are returned together with its error, so
    the caller can process them before it drops the connection. With a ``redactor``, the API
    key is taken out of each message before it is decoded.
    """
    frames: list[Frame] = []
    append = frames.append
    for message in messages:
        try:
            append(decode_frame(message if redactor is None else redactor.message(message)))
        except ProtocolError as exc:
            if isinstance(message, bytes) and not _is_utf8(message):
                logger.warning("ignoring a Binary control message that is not UTF-8")
                continue
            return frames, exc
    return frames, None


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@contextmanager
def unwrap_groups() -> Generator[None]:
    """Let a lone exception out of a nursery instead of an ``ExceptionGroup`` around it.

    A group that holds exactly one exception (at any depth), or exactly one simtrio error next
    to nothing but cancellations, is replaced by that exception, its own context kept.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        leaf = _single_leaf(group)
        if leaf is None:
            raise
        context = leaf.__context__
        try:
            raise leaf
        finally:
            leaf.__context__ = context
            del leaf, group


def _single_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    leaves = list(_leaves(group))
    if len(leaves) == 1:
        return leaves[0]
    errors = [leaf for leaf in leaves if isinstance(leaf, SimtrioError)]
    if len(errors) == 1 and all(
        leaf is errors[0] or isinstance(leaf, trio.Cancelled) for leaf in leaves
    ):
        return errors[0]
    return None


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        group = cast("BaseExceptionGroup[BaseException]", exc)
        for inner in group.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


# --------------------------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------------------------


class RecordingTap:
    """A managed session's recorder, and the first error it raised.

    Entries are queued with the recorder's synchronous calls, so recording an item never adds
    a checkpoint between what was seen and what the core did with it; back-pressure is applied
    once per read (:meth:`wait_for_room`). A recording error never travels between tasks as an
    exception: the first one is kept, the session's nursery (``scope``) is cancelled, and the
    session raises it, alone, when its block is left (:meth:`check`).
    """

    __slots__ = ("failure", "recorder", "scope")

    def __init__(self, recorder: Recorder, api_key: str) -> None:
        self.recorder = recorder
        self.failure: RecordingFailed | None = None
        self.scope: trio.CancelScope | None = None
        recorder.add_secrets((api_key,))

    def __repr__(self) -> str:
        return f"<RecordingTap {self.recorder!r} failed={self.failure is not None}>"

    def frames(self, session_id: str | None, frames: Sequence[Frame]) -> None:
        """Record control frames as decoded (``session_id`` None: taken from the frame)."""
        if self.failure is not None:
            return
        record = self.recorder.record_control_nowait
        try:
            for seq, response in frames:
                record(session_id, response, seq_id=seq)
        except SimtrioError as exc:
            self.fail(exc)

    def sent(self, session_id: str | None, request: BacktestRequest | str) -> None:
        """Record a request as its write begins."""
        if self.failure is not None:
            return
        try:
            self.recorder.record_sent_nowait(session_id, request)
        except SimtrioError as exc:
            self.fail(exc)

    def notifications_of(self, session_id: str) -> NotificationRecorder:
        """What a (sub-)session's subscriptions call after handing a notification over."""
        record = self.recorder.record_notification_nowait

        async def notification(
            message: AccountDiffNotification | TransactionNotification | LogsNotification,
            program_id: str,
        ) -> None:
            if self.failure is not None:
                return
            try:
                record(session_id, message, program_id=program_id)
            except SimtrioError as exc:
                self.fail(exc)
                return
            await self.wait_for_room()

        return notification

    def rpc_observer(self, session_id: str) -> RpcObserver:
        """What a (sub-)session's ``SessionRpc`` calls with every answered call."""
        record = self.recorder.record_rpc_nowait

        def exchange(
            method: str, params: JsonValue, result: JsonValue, error: RpcError | None
        ) -> None:
            if self.failure is not None:
                return
            try:
                record(session_id, method, params, result, error)
            except SimtrioError as exc:
                self.fail(exc)

        return exchange

    async def wait_for_room(self) -> None:
        """Back-pressure: wait while too many entries wait for the disk."""
        try:
            await self.recorder.wait_for_room()
        except SimtrioError as exc:
            self.fail(exc)

    def fail(self, exc: SimtrioError) -> None:
        """Keep the first error (as a ``RecordingFailed``) and stop the whole session."""
        if self.failure is None:
            self.failure = _as_recording_failure(exc, self.recorder)
            logger.error("the session is stopped because recording failed: %s", self.failure)
        if self.scope is not None:
            self.scope.cancel()

    def check(self) -> None:
        """Raise the recording failure, if there was one."""
        failure = self.failure
        if failure is not None:
            raise failure


def _as_recording_failure(exc: SimtrioError, recorder: Recorder) -> RecordingFailed:
    from simtrio.recording.errors import RecordingFailed

    if isinstance(exc, RecordingFailed):
        return exc
    failure = RecordingFailed(
        f"recording of run {recorder.run_id} failed ({type(exc).__name__}: {exc})",
        durable=recorder.entries_durable,
    )
    failure.__cause__ = exc
    return failure


# --------------------------------------------------------------------------------------------
# One (sub-)session's driver-facing side
# --------------------------------------------------------------------------------------------


class EventSink:
    """The driver-facing side of one (sub-)session: its event stream and its subscriptions.

    Subscriptions are created on the first ``subscribe_*`` call, in the (sub-)session's own
    nursery, so a session that never subscribes pays nothing for the data plane. That nursery
    is either given (``nursery``) or opened on that first call (``open_host``, which must
    then call :meth:`hosted`). ``max_total``
    is their outage budget: the session's ``config.max_total_for(disconnect_timeout_secs)``,
    so a data-plane outage is bounded like the control plane's (None: the config default).
    """

    __slots__ = (
        "_closed",
        "_config",
        "_coordinator",
        "_drain_timeout",
        "_max_total",
        "_redactor",
        "_start_slot",
        "_subscriptions",
        "_tap",
        "control_slot",
        "info",
        "nursery",
        "open_host",
        "stream",
    )

    def __init__(
        self,
        config: ManagedConfig,
        *,
        start_slot: int | None,
        redactor: Redactor | None = None,
        coordinator: ReconnectCoordinator | None = None,
        max_total: float | None = None,
        tap: RecordingTap | None = None,
    ) -> None:
        self.stream = EventStream(config.event_buffer, config.event_buffer_bytes)
        self.info: SessionInfo | None = None
        self.nursery: trio.Nursery | None = None
        self.open_host: Callable[[EventSink], None] | None = None
        self._config = config
        self._redactor = redactor
        self._start_slot = start_slot
        self._coordinator = coordinator
        self._max_total = max_total
        self._tap = tap
        self._subscriptions: SessionSubscriptions | None = None
        self._drain_timeout: float | None = None
        self._closed = False
        self.control_slot: int | None = start_slot
        """The slot of the last ``Slot`` event the control plane delivered (the start slot
        before any): what the data-plane barrier compares its subscriptions with."""

    # -- subscriptions ----------------------------------------------------------------------

    def _subs(self) -> SessionSubscriptions:
        if self._closed:
            raise ControlClosed("the session is closed; it takes no new subscriptions")
        subs = self._subscriptions
        if subs is None:
            if self.info is None or (self.nursery is None and self.open_host is None):
                raise ControlClosed("the session is not running")
            from simtrio.managed.subscriptions import SessionSubscriptions

            tap = self._tap
            subs = SessionSubscriptions(
                rpc_endpoint=self.info.rpc_endpoint,
                start_slot=self._start_slot,
                stream=self.stream,
                config=self._config,
                redactor=self._redactor,
                coordinator=self._coordinator,
                nursery=self.nursery,
                max_total=self._max_total,
                record=None if tap is None else tap.notifications_of(self.info.session_id),
                position=self._control_position,
            )
            if self._drain_timeout is not None:
                subs.set_completion_drain_timeout(self._drain_timeout)
            self._subscriptions = subs
            if self.nursery is None:
                assert self.open_host is not None
                self.open_host(self)
        return subs

    def _control_position(self) -> int | None:
        return self.control_slot

    def hosted(self, nursery: trio.Nursery) -> None:
        """The nursery ``open_host`` opened: the subscriptions start in it."""
        self.nursery = nursery
        if self._subscriptions is not None:
            self._subscriptions.attach(nursery)

    def subscribe_account_diffs(self, program_ids: Sequence[str]) -> None:
        """Start an account-diff subscription (the first one creates the subscriptions)."""
        self._subs().subscribe_account_diffs(program_ids)

    def subscribe_transactions(self, program_ids: Sequence[str]) -> None:
        """Start a transaction subscription (the first one creates the subscriptions)."""
        self._subs().subscribe_transactions(program_ids)

    def subscribe_program_logs(self, program_ids: Sequence[str]) -> None:
        """Start a logs subscription (the first one creates the subscriptions)."""
        self._subs().subscribe_program_logs(program_ids)

    def set_completion_drain_timeout(self, seconds: float) -> None:
        """Check and keep the drain's idle bound; subscriptions created later get it too."""
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)  # pyright: ignore[reportUnnecessaryIsInstance]
            or not seconds > 0
        ):
            raise InvalidParams(f"completion drain timeout must be > 0, got {seconds!r}")
        self._drain_timeout = float(seconds)
        if self._subscriptions is not None:
            self._subscriptions.set_completion_drain_timeout(float(seconds))

    def subscriptions_up(self) -> bool:
        """True when :meth:`wait_subscriptions_up` would have nothing to wait for.

        Also probes every data connection at the control plane's slot (the data-plane barrier).
        """
        return self._subscriptions is None or self._subscriptions.ready_to_continue()

    async def wait_subscriptions_up(self) -> None:
        """Until every subscription is UP or finished and none lags too far behind the control
        plane; ``ContinueSendFailed`` if one FAILED."""
        if self._subscriptions is not None:
            await self._subscriptions.wait_all_up()

    def stop_subscriptions(self) -> None:
        """Cancel every subscription task of this (sub-)session."""
        if self._subscriptions is not None:
            self._subscriptions.stop()

    def close(self) -> None:
        """Stop the subscriptions and take no new ones (the stream stays readable)."""
        self._closed = True
        self.stop_subscriptions()

    # -- events -----------------------------------------------------------------------------

    def deliver(self, event: Event) -> None:
        """Hand a control event to the driver; ``Completed`` waits for the drain first."""
        if type(event) is Completed:
            self.complete(event)
        else:
            if type(event) is Slot:
                self.control_slot = event.slot
            self.stream.put_control(event)

    def complete(self, event: Completed) -> None:
        """Deliver ``Completed`` after the subscriptions drained (at once without any)."""
        subs = self._subscriptions
        if subs is None or self._closed:
            self.stream.put_control(event)
        else:
            subs.complete_after_drain(event)

    def fail(self, error: ManagedSessionError) -> None:
        """The control plane gave up: the driver's next read raises ``error``."""
        self.stream.put_failure(error)
        self.stop_subscriptions()

    def was_reported(self, error: BaseException) -> bool:
        """Whether a driver's read has raised ``error``."""
        return self.stream.raised is error

    def end(self) -> None:
        """The (sub-)session's block is left: reads raise ``ControlClosed`` from now on."""
        self._closed = True
        self.stream.close()


class SessionEvents:
    """The driver's side of a managed session or sub-session: its events and subscriptions.

    Shared by :class:`~simtrio.managed.session.ManagedSession` and
    :class:`~simtrio.managed.parallel.ParallelSubSession`; valid inside the ``async with``
    block that yielded the session.
    """

    __slots__ = ("_sink",)

    def __init__(self, sink: EventSink) -> None:
        self._sink = sink

    @property
    def session_info(self) -> SessionInfo:
        """Session id, absolute RPC endpoint and task id, as the create reported them."""
        info = self._sink.info
        assert info is not None, "the session exists once the block is entered"
        return info

    def subscribe_account_diffs(self, program_ids: Sequence[str]) -> None:
        """Stream account diffs of these programs into this session's events.

        Returns at once; the subscription connects in the background, and ``send_continue``
        and the completion drain wait for it.

        Raises:
            InvalidParams: ``program_ids`` is empty, a single ``str``, or holds a non-``str``.
            ControlClosed: the session was closed, or its block has been left.
        """
        self._sink.subscribe_account_diffs(program_ids)

    def subscribe_transactions(self, program_ids: Sequence[str]) -> None:
        """Stream transactions of these programs into this session's events.

        Returns at once, like :meth:`subscribe_account_diffs`.

        Raises:
            InvalidParams: ``program_ids`` is empty, a single ``str``, or holds a non-``str``.
            ControlClosed: the session was closed, or its block has been left.
        """
        self._sink.subscribe_transactions(program_ids)

    def subscribe_program_logs(self, program_ids: Sequence[str]) -> None:
        """Stream the logs of transactions that mention these programs into this session's
        events, as :class:`~simtrio.events.ProgramLogs` (one ``logsSubscribe`` per program).

        Returns at once, like :meth:`subscribe_account_diffs`; resumes with
        ``replayFromSlot`` across reconnects and drains before ``Completed`` like it.

        Raises:
            InvalidParams: ``program_ids`` is empty, a single ``str``, or holds a non-``str``.
            ControlClosed: the session was closed, or its block has been left.
        """
        self._sink.subscribe_program_logs(program_ids)

    def set_completion_drain_timeout(self, seconds: float) -> None:
        """Idle bound of the subscription drain that precedes ``Completed``.

        The default is the config's ``completion_drain_timeout``.

        Raises:
            InvalidParams: ``seconds`` is not a number above zero.
        """
        self._sink.set_completion_drain_timeout(seconds)

    async def next_event(self) -> Event:
        """The next event of this session.

        Raises:
            ControlClosed: ``Completed`` was delivered already, or the block has been left.
            ControlFailed: the control plane gave up.
            SubscriptionFailed: a subscription gave up, or the completion drain stalled.
        """
        return await self._sink.stream.next_event()

    def events(self) -> EventIterator:
        """``async for`` over the events; ends after ``Completed``, failures raise."""
        return EventIterator(self._sink.stream)


# --------------------------------------------------------------------------------------------
# One connection
# --------------------------------------------------------------------------------------------


class ConnectionRun:
    """What happened to one control connection; the first outcome recorded wins.

    ``loss`` (reconnect), ``failure`` (stop for good) and ``closing`` (an orderly end) each
    cancel the connection's nursery.
    """

    __slots__ = (
        "close_done",
        "closing",
        "conn",
        "failure",
        "handshake_done",
        "loss",
        "nursery",
        "reading_paused",
        "reading_resumed",
        "reads",
        "stalled_since",
        "up",
        "written_at",
    )

    def __init__(self, conn: WebSocketConnection) -> None:
        self.conn = conn
        self.nursery: trio.Nursery | None = None
        self.loss: str | None = None
        self.failure: ManagedSessionError | None = None
        self.closing = False
        self.handshake_done = False
        self.up = False
        self.close_done = False
        self.reading_paused = False
        """The pump waits for the recorder's disk, so silence on the socket is not the peer's."""
        self.reading_resumed = -math.inf
        self.reads = 0
        """Reads that brought control frames (a cheap progress mark for the idle-step watch)."""
        self.stalled_since: float | None = None
        """For a loss declared on silence: when the connection stopped making progress."""
        self.written_at = -math.inf
        """When the last batch of continues began to be written on this connection."""

    @property
    def stopped(self) -> bool:
        """Lost or failed: frames still arriving on it are no longer processed."""
        return self.loss is not None or self.failure is not None

    @property
    def over(self) -> bool:
        """Stopped, or closing in order: the pump reads no further frames."""
        return self.closing or self.stopped

    def lose(self, reason: str, *, stalled_since: float | None = None) -> None:
        """The connection is lost (reconnect), unless an outcome was recorded already.

        ``stalled_since``: the loss is a silence that began then; the connection counts as
        healthy only until that moment (see ``ReconnectState.connection_lost``).
        """
        if not self.over:
            self.loss = reason
            self.stalled_since = stalled_since
            logger.warning("control connection lost: %s", reason)
        self._cancel()

    def fail(self, error: ManagedSessionError) -> None:
        """Stop for good with ``error``, unless already lost or failed (it overrides a close)."""
        if not self.stopped:
            self.failure = error
        self._cancel()

    def close(self) -> None:
        """End the connection in order, unless it is already lost, failed or closing."""
        if not self.over:
            self.closing = True
        self._cancel()

    def _cancel(self) -> None:
        if self.nursery is not None:
            self.nursery.cancel_scope.cancel()


class _GiveUp(Exception):
    """Internal: no further connection attempt (budget spent, or a fatal connect error)."""

    def __init__(self, message: str, cause: ConnectError | None = None) -> None:
        super().__init__(message)
        self.cause = cause


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


class ControlLoop(abc.ABC):
    """The reconnecting control loop; subclasses drive their sans-IO core through the hooks.

    The loop itself asks ``core`` what a new, lost or abandoned connection means (which
    request opens it, whether to reconnect, how long a handshake may take); the subclass
    feeds it the frames and carries out what it decides.

    ``run`` is the control task (``await nursery.start(loop.run)``): it reports started once
    the create handshake succeeded and raises ``CreateFailed`` if it cannot. Later give-ups
    are stored in :attr:`failure` and reach the drivers through their event streams.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        config: ManagedConfig,
        core: ControlCore,
        *,
        max_total: float | None,
        tap: RecordingTap | None = None,
    ) -> None:
        self.url = normalize_control_url(url)
        self.redactor = redactor_for((api_key,))
        """Takes the API key out of everything the server sends (None: no key to protect)."""
        self._core = core
        self.tap = tap
        self.config = config
        self.status = StatusCell()
        self.failure: ManagedSessionError | None = None
        self.finished = False
        self.done = trio.Event()
        self._headers = ((API_KEY_HEADER, api_key),)
        self._state = ReconnectState(
            config.backoff, max_total, first_max_total=config.first_connect_max_total
        )
        self._rng = config.make_rng()
        self._last_connect_error: str | None = None
        # Many drivers queue, one writer takes whatever is queued at once (no task switch each).
        self._continue_tx: QueueSendChannel[ContinueItem]
        self._continue_rx: QueueReceiveChannel[ContinueItem]
        self._continue_tx, self._continue_rx = open_queue(config.continue_channel_capacity)
        self._unsent: ContinueItem | None = None
        self._close_requested = False
        self._close_event = trio.Event()
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
    async def _host(self, nursery: trio.Nursery) -> None:
        """Once the create succeeded: give the sinks a nursery for their subscriptions."""

    @abc.abstractmethod
    def _check_sendable(self, session_id: str | None) -> None:
        """Raise ``ContinueSendFailed`` if a continue for this session can never be written."""

    @abc.abstractmethod
    def _continue_written(self, item: ContinueItem) -> None: ...

    async def _before_close(self, run: ConnectionRun) -> None:  # noqa: B027
        """Anything to say before the WebSocket close of an orderly end (default: nothing)."""

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
        assert run.nursery is not None
        run.nursery.start_soon(self._writer, run)
        if self.config.idle_step_timeout is not None:
            run.nursery.start_soon(self._watch_steps, run, self.config.idle_step_timeout)

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
        with unwrap_groups():
            async with trio.open_nursery() as nursery:
                if tap is not None:
                    tap.scope = nursery.cancel_scope
                await nursery.start(self.run)
                try:
                    await self._host(nursery)
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
        self._close_event.set()
        if self._active is None and self._run_scope is not None:
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
        if self.status.value is _UP and sink.subscriptions_up():
            # The common case, kept to one checkpoint: with many sub-sessions continuing at
            # once, every extra scheduling round per continue shows in the round trip.
            await _checkpoint_if_cancelled()
        else:
            await self._wait_up()
            await sink.wait_subscriptions_up()
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
            give_up: _GiveUp | None = None
            conn: WebSocketConnection | None = None
            try:
                conn = await self._connect(retry=retry)
            except _GiveUp as exc:
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
        """One connection, retried with backoff; ``_GiveUp`` when no attempt is left."""
        state = self._state
        config = self.config
        while True:
            if retry:
                delay = state.next_delay(trio.current_time(), self._rng)
                if delay is None:
                    raise _GiveUp(self._budget_message())
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
                    raise _GiveUp(str(exc), exc) from None
                logger.warning("control connection attempt failed: %s", exc)
                self._last_connect_error = str(exc)
                state.attempt_failed(trio.current_time())
                self.status.set(ConnectionStatus.RECONNECTING)
            else:
                state.connected()
                return conn

    def _budget_message(self) -> str:
        budget = self._state.budget
        if self._state.gave_up and self.config.backoff.max_retries is not None:
            head = f"gave up after {self.config.backoff.max_retries} failed reconnect attempts"
        elif budget is not None:
            head = f"no usable control connection within {budget:g} s"
        else:
            head = "gave up reconnecting"
        last = self._last_connect_error
        return f"{head} (last error: {last})" if last else head

    async def _serve(self, run: ConnectionRun) -> None:
        async with trio.open_nursery() as nursery:
            run.nursery = nursery
            nursery.start_soon(self._keepalive, run)
            nursery.start_soon(self._watch_close, run)
            request = self._core.connection_opened()
            if self.tap is not None:
                self.tap.sent(self._recorded_session, request)
            try:
                await run.conn.send_text(encode(request))
            except ConnectionClosed as exc:
                run.lose(str(exc))
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
                run.reading_paused = True
                try:
                    await tap.wait_for_room()
                finally:
                    run.reading_paused = False
                    run.reading_resumed = trio.current_time()
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

    async def _keepalive(self, run: ConnectionRun) -> None:
        """Ping every interval (the first at once); a silent peer is a lost connection."""
        conn = run.conn
        interval = self.config.keepalive_interval
        deadline = self.config.keepalive_miss_deadline
        while True:
            silent = trio.current_time() - max(conn.last_received, run.reading_resumed)
            if silent >= deadline and not run.reading_paused:
                run.lose(
                    f"nothing received for {silent:g} s (keepalive)",
                    stalled_since=trio.current_time() - silent,
                )
                return
            with trio.move_on_after(deadline) as scope:
                try:
                    await conn.ping()
                except ConnectionClosed as exc:
                    run.lose(str(exc))
                    return
            if scope.cancelled_caught:
                run.lose("a keepalive Ping could not be sent")
                return
            await trio.sleep(interval)

    async def _watch_steps(self, run: ConnectionRun, limit: float) -> None:
        """The idle-step detector: a connection silent while a step is unanswered is lost.

        A peer that answers Pings (so the keepalive is satisfied) but sends no frame for
        ``limit`` seconds while a written continue waits for its readiness event is treated
        as a lost connection: the loop re-attaches, and the readiness rule of protocol §6.8
        re-announces a continue the server never got. Pongs are not progress; waiting for the
        recorder's disk is not silence. Checked every quarter of ``limit``, from the last read
        that brought frames, so a stall is declared between ``limit`` and 1.25 x ``limit``.
        """
        core = self._core
        tick = limit / 4
        reads = run.reads
        quiet_since = trio.current_time()
        while True:
            await trio.sleep(tick)
            now = trio.current_time()
            if run.reads != reads or run.reading_paused or not core.step_outstanding:
                reads = run.reads
                quiet_since = now
                continue
            quiet_since = max(quiet_since, run.written_at)
            if now - quiet_since >= limit:
                run.lose(
                    f"no reply to an outstanding step for {now - quiet_since:g} s"
                    " though the server answers Pings (idle step)",
                    stalled_since=quiet_since,
                )
                return

    async def _watch_close(self, run: ConnectionRun) -> None:
        await self._close_event.wait()
        run.close()

    async def _writer(self, run: ConnectionRun) -> None:
        """Write queued continues while the connection is UP (protocol §6.8).

        A continue is held back until a connection can take it; once its write has begun it
        counts as written, even when the write fails part-way, and is never sent again.
        """
        conn = run.conn
        rx = self._continue_rx
        tap = self.tap
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
