"""``open_parallel_session``: many sub-sessions multiplexed over one control connection (§6.5).

The control task drives :class:`~simtrio.core.demux.ParallelDemux`, which turns each read's
frames into routing decisions; this module hands every routed event to its sub-session's own
stream (unbounded for control events, so a slow driver never stalls the shared socket) and
writes the continues of all sub-sessions from one shared queue.

With ``recorder=``, the run is recorded as the client saw it: every control frame as decoded
(handshake replies and duplicates included; a ``sessionEventV2`` under its sub-session), every
request as it is written, every notification as it enters its sub-session's stream.
"""

from __future__ import annotations

__all__: list[str] = []

import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import attrs
import trio

from simtrio import events
from simtrio.core.demux import AllCompleted, ParallelAttached, ParallelCreated, ParallelDemux
from simtrio.core.session import Fail, Retry
from simtrio.errors import ContinueSendFailed
from simtrio.events import Slot
from simtrio.managed.config import ManagedConfig, SessionInfo
from simtrio.managed.control import ControlLoop, ControlTarget
from simtrio.managed.coordinator import ReconnectCoordinator
from simtrio.managed.discovery import ControlledSession
from simtrio.managed.recording_tap import RecordingTap
from simtrio.managed.sink import EventSink
from simtrio.params import Continue, as_continue_params, as_create_request
from simtrio.wire.codec import encode, encode_plain_continue
from simtrio.wire.types import (
    ContinueSessionRequestV1,
    ContinueToParams,
    ContinueToSessionRequestV1,
    CreateBacktestSessionRequest,
)
from simtrio.wire.urls import http_base_from_ws_url, resolve_rpc_url

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Iterable

    from simtrio.managed.config import ConnectionStatus
    from simtrio.managed.control_connection import ConnectionRun, ContinueItem, Frame
    from simtrio.managed.recording_tap import Recorder
    from simtrio.params import CreateSession
    from simtrio.wire.types import ContinueParams

logger = logging.getLogger(__name__)


class _ParallelControl(ControlLoop):
    """The control loop of one parallel session and all its sub-sessions."""

    def __init__(self, target: ControlTarget) -> None:
        self.demux = ParallelDemux(target.request)
        super().__init__(target, self.demux)
        self.coordinator = ReconnectCoordinator()
        self.sink_of: dict[str, EventSink] = {}
        """Every sub-session's sink, by session id, in ``sessionsCreatedV2`` order."""
        self.ordered: list[ParallelSubSession] = []

    def _handle(self, run: ConnectionRun, frames: list[Frame]) -> None:
        sinks = self.sink_of
        completed = events.Completed
        for item in self.demux.feed_batch([response for _, response in frames]):
            if type(item) is tuple:
                session_id, event = item
                sink = sinks[session_id]
                if type(event) is completed:
                    sink.complete(event)
                else:
                    if type(event) is Slot:
                        sink.control_slot = event.slot
                    sink.stream.put_control(event)
            elif isinstance(item, ParallelCreated):
                self._created(run, item)
            elif isinstance(item, ParallelAttached):
                run.handshake_done = True
                self._up(run)
            elif isinstance(item, AllCompleted):
                logger.info("every sub-session completed; closing the control connection")
                run.close()
            elif isinstance(item, Retry):
                run.lose(item.reason)
            elif isinstance(item, Fail):
                self._fail(run, item.error)

    def _created(self, run: ConnectionRun, created: ParallelCreated) -> None:
        base = http_base_from_ws_url(self.url)
        for spec in created.sub_sessions:
            sink = EventSink(
                self.config,
                start_slot=spec.start_slot,
                launcher=self.launcher,
                coordinator=self.coordinator,
                max_total=self.max_total,
                tap=self.tap,
                redactor=self.redactor,
            )
            sink.info = SessionInfo(
                spec.session_id, resolve_rpc_url(base, spec.rpc_endpoint), spec.task_id
            )
            self.sink_of[spec.session_id] = sink
            self.ordered.append(ParallelSubSession(self, sink, spec.range))
        # Every sub-session can queue its next continue without waiting: a round in which all
        # of them continue at once would otherwise park most drivers on the shared queue.
        self._continue_tx.ensure_capacity(len(created.sub_sessions))
        run.handshake_done = True
        self._up(run)
        self._started()

    @property
    def sinks(self) -> Iterable[EventSink]:
        return self.sink_of.values()

    def _check_sendable(self, session_id: str | None) -> None:
        assert session_id is not None
        if self.demux.is_completed(session_id):
            raise ContinueSendFailed(f"sub-session {session_id} has completed")
        if self.failure is not None or self.finished:
            raise ContinueSendFailed(self._ended_message())

    def _continue_written(self, item: ContinueItem) -> None:
        session_id = item[0]
        assert session_id is not None
        self.demux.continue_written(session_id)


class ParallelSubSession(ControlledSession[_ParallelControl]):
    """One sub-session of a parallel run: its own events, subscriptions and continues.

    Obtained from :meth:`~simtrio.managed.parallel.ParallelSession.take_sub_sessions`; valid
    inside the ``async with`` block of :func:`open_parallel_session`.
    """

    __slots__ = ("range",)

    def __init__(
        self, control: _ParallelControl, sink: EventSink, slot_range: tuple[int, int]
    ) -> None:
        super().__init__(control, sink)
        self.range: tuple[int, int] = slot_range
        """``(start_slot, end_slot)``, both inclusive, as ``sessionsCreatedV2`` gave it."""

    def __repr__(self) -> str:
        return f"<ParallelSubSession {self.session_info.session_id} {self.range}>"

    def _holds_readiness(self) -> bool:
        return self._control.demux.holds_readiness(self.session_info.session_id)

    def _run_on(self) -> Continue:
        return Continue(self.range[1] - self.range[0] + 1)

    async def send_continue(self, cont: Continue | ContinueParams) -> None:
        """Queue a ``continueSessionV1`` on the shared control connection."""
        session_id = self.session_info.session_id
        if type(cont) is Continue and not (cont.transactions or cont.modify_account_states):
            text = encode_plain_continue(session_id, cont.advance_count)
        else:
            text = encode(ContinueSessionRequestV1(session_id, as_continue_params(cont)))
        await self._control.queue_continue(self._sink, session_id, text)

    async def send_continue_to(self, slot: int, batch_index: int | None = None) -> None:
        """Queue a ``continueToSessionV1`` on the shared control connection."""
        session_id = self.session_info.session_id
        text = encode(ContinueToSessionRequestV1(session_id, ContinueToParams(slot, batch_index)))
        await self._control.queue_continue(self._sink, session_id, text)

    async def aclose(self) -> None:
        """Stop this sub-session's subscriptions (its siblings and the control plane go on)."""
        self._sink.close()
        await trio.lowlevel.checkpoint()


class ParallelSession:
    """Handle of a parallel run; obtained from :func:`open_parallel_session`."""

    __slots__ = ("_control", "_taken")

    def __init__(self, control: _ParallelControl) -> None:
        self._control = control
        self._taken = False

    def __repr__(self) -> str:
        return (
            f"<ParallelSession {self._control.demux.control_session_id} "
            f"{len(self._control.ordered)} sub-sessions {self._control.status.value.name}>"
        )

    @property
    def control_session_id(self) -> str:
        """Id of the control session the server created for this run."""
        control_id = self._control.demux.control_session_id
        assert control_id is not None
        return control_id

    @property
    def connection_status(self) -> ConnectionStatus:
        """Status of the shared control connection."""
        return self._control.status.value

    def take_sub_sessions(self) -> list[ParallelSubSession]:
        """The sub-sessions in ``sessionsCreatedV2`` order; only the first call gets them."""
        if self._taken:
            return []
        self._taken = True
        return list(self._control.ordered)


@asynccontextmanager
async def open_parallel_session(
    url: str,
    api_key: str,
    create: CreateSession | CreateBacktestSessionRequest,
    *,
    config: ManagedConfig | None = None,
    recorder: Recorder | None = None,
) -> AsyncGenerator[ParallelSession]:
    """Create a parallel session; entering returns once ``sessionsCreatedV2`` arrived.

    Leaving closes the control connection (bounded by ``graceful_close_timeout``), closes no
    session on the server, and cancels and joins every sub-session's tasks.

    ``recorder`` records the whole run, every sub-session included, for
    :func:`simtrio.recording.replay_server` (see :func:`open_managed_session`).

    Raises:
        InvalidParams: ``create`` is not usable.
        CreateFailed: the create could not complete (including a server too old to report
            per-sub-session ranges).
        ControlFailed: on leaving, if the control plane failed and no sub-session's
            ``next_event`` raised it.
        RecordingFailed: the recorder failed; the session was stopped (not left unrecorded).
    """
    config = ManagedConfig() if config is None else config
    request = as_create_request(create)
    if not request.parallel:
        request = attrs.evolve(request, parallel=True)
    tap = RecordingTap(recorder, api_key) if recorder is not None else None
    control = _ParallelControl(ControlTarget(url, api_key, request, config, tap))
    async with control.running():
        yield ParallelSession(control)
