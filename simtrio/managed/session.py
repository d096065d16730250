"""``open_managed_session``: one backtest session that survives connection losses (§6.3).

The control task drives :class:`~simtrio.core.session.ManagedSessionCore`, which decides what
every frame means (dedup by sequence number, readiness holding, handshake replies); this module
only carries the decisions out: events into the session's stream, UP after a handshake, the
resume after an attach, the close on the way out.

With ``recorder=``, the run is recorded as the client saw it: every control frame as decoded
(under the session id once it is known), every request as it is written, every notification
as it enters the driver's stream.
"""

from __future__ import annotations

__all__: list[str] = []

import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

from simtrio.core.discovery import RUN_ON_COUNT
from simtrio.core.phase import Phase
from simtrio.core.session import CloseDone, Deliver, Fail, HandshakeDone, ManagedSessionCore, Retry
from simtrio.errors import (
    ContinueSendFailed,
    InvalidParams,
    ManagedSessionError,
)
from simtrio.managed.config import ManagedConfig, SessionInfo
from simtrio.managed.control import ControlLoop, ControlTarget
from simtrio.managed.discovery import ControlledSession
from simtrio.managed.recording_tap import RecordingTap
from simtrio.managed.sink import EventSink
from simtrio.params import Continue, as_continue_params, as_create_request
from simtrio.wire.codec import encode
from simtrio.wire.types import (
    CloseBacktestSession,
    ContinueToParams,
    CreateBacktestSessionRequest,
    ResumeAttachedSession,
)
from simtrio.wire.urls import http_base_from_ws_url, resolve_rpc_url

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from simtrio.managed.config import ConnectionStatus
    from simtrio.managed.control_connection import ConnectionRun, ContinueItem, Frame
    from simtrio.managed.recording_tap import Recorder
    from simtrio.params import CreateSession
    from simtrio.wire.types import ContinueParams

logger = logging.getLogger(__name__)

_RESUME_REQUEST: Final = ResumeAttachedSession()
_CLOSE_REQUEST: Final = CloseBacktestSession()
_RESUME: Final = encode(_RESUME_REQUEST)
_CLOSE: Final = encode(_CLOSE_REQUEST)


class _SingleControl(ControlLoop):
    """The control loop of one managed session."""

    def __init__(self, target: ControlTarget) -> None:
        self.core = ManagedSessionCore(target.request)
        super().__init__(target, self.core)
        self.sink = EventSink(
            target.config,
            start_slot=target.request.start_slot,
            launcher=self.launcher,
            max_total=self.max_total,
            tap=self.tap,
            redactor=self.redactor,
        )

    @property
    def _recorded_session(self) -> str | None:
        return self.core.session_id

    def _handle(self, run: ConnectionRun, frames: list[Frame]) -> None:
        feed = self.core.feed
        deliver = self.sink.deliver
        for seq, response in frames:
            for decision in feed(seq, response):
                if type(decision) is Deliver:
                    deliver(decision.event)
                elif isinstance(decision, HandshakeDone):
                    self._handshake_done(run, decision)
                elif isinstance(decision, CloseDone):
                    run.close_done = True
                elif isinstance(decision, Retry):
                    run.lose(decision.reason)
                elif isinstance(decision, Fail):
                    self._fail(run, decision.error)
            if run.stopped:
                return

    def _handshake_done(self, run: ConnectionRun, done: HandshakeDone) -> None:
        run.handshake_done = True
        if done.attached:
            run.attached.set()
            return
        base = http_base_from_ws_url(self.url)
        self.sink.info = SessionInfo(
            done.session_id, resolve_rpc_url(base, done.rpc_endpoint), done.task_id
        )
        self._up(run)
        self._started()

    async def _after_attach(self, run: ConnectionRun) -> None:
        """After an attach: subscriptions UP (or failed), then resume, then UP (§6.3)."""
        try:
            await self.sink.wait_all_up()
        except ManagedSessionError as exc:
            logger.info("resuming although a subscription failed: %s", exc)
        if run.over:
            return
        self.core.resume_sent()
        failed = await self._send_request(run, _RESUME_REQUEST, _RESUME)
        if failed is not None:
            run.lose(str(failed))
            return
        self._up(run)

    @property
    def sinks(self) -> tuple[EventSink]:
        return (self.sink,)

    def _check_sendable(self, session_id: str | None) -> None:
        phase = self.core.phase
        if phase is Phase.COMPLETED:
            raise ContinueSendFailed("the session has completed")
        if phase is Phase.FAILED or self.finished:
            raise ContinueSendFailed(self._ended_message())

    def _continue_written(self, item: ContinueItem) -> None:
        self.core.continue_written()

    async def _before_close(self, run: ConnectionRun) -> None:
        """``closeBacktestSession`` on a connection that holds the session, reply bounded."""
        if not run.handshake_done:
            return
        self.core.close_sent()
        failed = await self._send_request(run, _CLOSE_REQUEST, _CLOSE)
        if failed is not None:
            logger.debug("closeBacktestSession not sent: %s", failed)
            return
        await self._read_until(run, self.config.graceful_close_timeout)
        if not run.close_done:
            logger.warning(
                "no reply to closeBacktestSession within %g s", self.config.graceful_close_timeout
            )


class ManagedSession(ControlledSession[_SingleControl]):
    """A backtest session whose control connection reconnects on its own.

    Obtained from :func:`open_managed_session`; valid inside its ``async with`` block.
    """

    __slots__ = ("_run_on_count",)

    def __init__(
        self, control: _SingleControl, sink: EventSink, run_on_count: int = RUN_ON_COUNT
    ) -> None:
        super().__init__(control, sink)
        self._run_on_count = run_on_count

    def __repr__(self) -> str:
        info = self._sink.info
        name = info.session_id if info is not None else "(creating)"
        return f"<ManagedSession {name} {self._control.status.value.name}>"

    @property
    def connection_status(self) -> ConnectionStatus:
        """Status of the control connection (``DOWN``, ``UP``, ``RECONNECTING``, ``FAILED``)."""
        return self._control.status.value

    def _holds_readiness(self) -> bool:
        return self._control.core.holds_readiness

    def _run_on(self) -> Continue:
        return Continue(self._run_on_count)

    async def send_continue(self, cont: Continue | ContinueParams) -> None:
        """Queue a ``continue`` once the control connection and every subscription are UP."""
        text = encode(as_continue_params(cont))
        await self._control.queue_continue(self._sink, None, text)

    async def send_continue_to(self, slot: int, batch_index: int | None = None) -> None:
        """Queue a ``continueTo`` (run up to, not including, that batch) like ``send_continue``."""
        text = encode(ContinueToParams(slot, batch_index))
        await self._control.queue_continue(self._sink, None, text)


@asynccontextmanager
async def open_managed_session(
    url: str,
    api_key: str,
    create: CreateSession | CreateBacktestSessionRequest,
    *,
    config: ManagedConfig | None = None,
    recorder: Recorder | None = None,
) -> AsyncGenerator[ManagedSession]:
    """Create a session and keep its control plane connected until the block is left.

    Entering returns once ``sessionCreated`` arrived. Leaving closes the session on the server
    (if a connection is up), bounded by ``graceful_close_timeout`` twice.

    ``recorder`` (from :func:`simtrio.recording.open_recorder`, one session per recorder)
    records the run so that :func:`simtrio.recording.replay_server` can replay it: every
    control frame as decoded, every request as written, every notification as delivered. The
    API key is added to the recorder's redacted secrets.

    Raises:
        InvalidParams: ``create`` is not usable (or asks for a parallel session).
        CreateFailed: the create could not complete.
        ControlFailed: on leaving, if the control plane failed and no ``next_event`` raised it.
        RecordingFailed: the recorder failed; the session was stopped (not left unrecorded).
    """
    config = ManagedConfig() if config is None else config
    request = as_create_request(create)
    if request.parallel:
        raise InvalidParams("a parallel create needs open_parallel_session")
    tap = RecordingTap(recorder, api_key) if recorder is not None else None
    control = _SingleControl(ControlTarget(url, api_key, request, config, tap))
    async with control.running():
        yield ManagedSession(control, control.sink, request.end_slot - request.start_slot + 1)
