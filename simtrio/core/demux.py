"""The parallel-session demultiplexer (protocol §6.5, §6.6, §6.8, §7).

One control connection carries the events of every sub-session. :class:`ParallelDemux` turns
the decoded responses into routing decisions ``(session_id, event)`` and a few control
decisions, keeping per sub-session a sequence cursor (dedup across reconnects), the
readiness-holding flag and completion. It sits on the hot path of every parallel run, so the
steady-state loop is written inline: a type check, one dict lookup, a compare, and the output.
"""

from __future__ import annotations

__all__: list[str] = []

import logging
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import attrs

from simtrio import events
from simtrio.core.phase import Phase, PhasedCore, log_dropped
from simtrio.core.session import READY, Fail, Retry
from simtrio.errors import ControlFailed, CreateFailed, excerpt
from simtrio.wire import types as wire
from simtrio.wire.construct import plain_constructor

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

logger = logging.getLogger(__name__)

TOO_OLD_MESSAGE: Final = (
    "the server did not report per-sub-session ranges (sessionsCreatedV2 start_slots/end_slots "
    "do not match session_ids); it is too old for parallel sessions"
)


@attrs.frozen
class SubSessionSpec:
    """One sub-session as the create handshake announced it (endpoint as the server sent it)."""

    session_id: str
    rpc_endpoint: str
    task_id: str | None
    start_slot: int
    end_slot: int

    @property
    def range(self) -> tuple[int, int]:
        """``(start_slot, end_slot)``, both inclusive."""
        return (self.start_slot, self.end_slot)


@attrs.frozen
class ParallelCreated:
    """The create succeeded: the sub-sessions, in ``sessionsCreatedV2`` order. Status UP.

    Routing decisions for events that arrived during the handshake follow it in the same
    output, so the shell can open the sub-sessions' channels first.
    """

    control_session_id: str
    sub_sessions: tuple[SubSessionSpec, ...]


@attrs.frozen
class ParallelAttached:
    """``parallelSessionAttachedV2`` arrived: publish UP; queued continues may flow."""

    control_session_id: str


@attrs.frozen
class AllCompleted:
    """Every sub-session delivered ``Completed``: close the control connection gracefully."""


Routed: TypeAlias = tuple[str, events.Event]
"""Deliver ``event`` to sub-session ``session_id`` (a ``Completed`` after that sub's drain)."""

DemuxOutput: TypeAlias = Routed | ParallelCreated | ParallelAttached | AllCompleted | Fail | Retry

_ALL_COMPLETED: Final = AllCompleted()

# Local aliases keep the hot loop's global lookups short.
_SessionEventV2: Final = wire.SessionEventV2
_SlotNotification: Final = wire.SlotNotification
_Status: Final = wire.Status
_ReadyForContinue: Final = wire.ReadyForContinue
_Paused: Final = wire.Paused
_DiscoveryBatch: Final = wire.DiscoveryBatch
_Error: Final = wire.Error
_Completed: Final = wire.Completed
_Success: Final = wire.Success
_Slot: Final[Callable[[int], events.Slot]] = plain_constructor(events.Slot)
_EStatus: Final = events.Status
_EPaused: Final = events.Paused
_EDiscoveryBatch: Final = events.DiscoveryBatch
_ErrorEvent: Final = events.ErrorEvent
_ECompleted: Final = events.Completed


class _Sub:
    """Per-sub-session state. ``cursor`` -1 means no event accepted yet."""

    __slots__ = ("completed", "continued", "cursor", "held")

    def __init__(self) -> None:
        self.cursor = -1
        self.held = False
        self.completed = False
        self.continued = False


class ParallelDemux(PhasedCore):
    """Routing and bookkeeping of one parallel session across control connections.

    Driving it, per connection::

        request = demux.connection_opened()       # create (until it succeeded) or attach
        for batch in frames:                      # every response of one receive, decoded
            for item in demux.feed_batch(batch):
                if isinstance(item, tuple):       # (session_id, event): route it
                    ...
                else:                             # ParallelCreated / ParallelAttached /
                    ...                           # AllCompleted / Fail / Retry
        demux.connection_lost()                   # then reconnect while demux.wants_reconnect

    plus :meth:`continue_written` after writing a sub-session's continue (even part-way) and
    :meth:`give_up` when the reconnect budget is spent. Per sub-session, an event is accepted
    only when its ``seq_id`` is above the cursor, a readiness event is dropped while the driver
    holds one (§6.8), and nothing follows ``Completed``.
    """

    __slots__ = (
        "_announced",
        "_create",
        "_held",
        "_remaining",
        "_routing",
        "_subs",
        "_unknown_ids",
        "control_session_id",
        "sub_sessions",
    )

    def __init__(self, create: wire.CreateBacktestSessionRequest) -> None:
        super().__init__()
        self._create = create if create.parallel else attrs.evolve(create, parallel=True)
        self._routing = False
        self._subs: dict[str, _Sub] = {}
        self._remaining = 0
        self._announced: dict[str, wire.SessionCreated] = {}
        self._held: list[wire.SessionEventV2] = []
        self._unknown_ids: set[str] = set()
        self.control_session_id: str | None = None
        self.sub_sessions: tuple[SubSessionSpec, ...] = ()

    # -- state ------------------------------------------------------------------------------

    def last_sequences(self) -> dict[str, int]:
        """The cursor of every sub-session that has one (for the attach request)."""
        return {sid: sub.cursor for sid, sub in self._subs.items() if sub.cursor >= 0}

    def cursor(self, session_id: str) -> int | None:
        cursor = self._subs[session_id].cursor
        return cursor if cursor >= 0 else None

    def holds_readiness(self, session_id: str) -> bool:
        return self._subs[session_id].held

    def is_completed(self, session_id: str) -> bool:
        return self._subs[session_id].completed

    @property
    def step_outstanding(self) -> bool:
        """Whether a sub-session's written continue still waits for its readiness event."""
        if self._phase is not Phase.RUNNING:
            return False
        return any(
            sub.continued and not sub.held and not sub.completed for sub in self._subs.values()
        )

    # -- inputs from the shell ----------------------------------------------------------------

    def connection_opened(
        self,
    ) -> wire.CreateBacktestSessionRequest | wire.AttachParallelControlSessionV2:
        """A new connection is open: the first request to write on it."""
        if self._opening_creates():
            return self._create
        assert self.control_session_id is not None
        return wire.AttachParallelControlSessionV2(self.control_session_id, self.last_sequences())

    def connection_lost(self) -> None:
        """The current connection ended (any cause)."""
        if self._lost_while_creating():
            # The create is re-sent on the next connection: a new parallel session.
            self._announced.clear()
            self._held.clear()

    def continue_written(self, session_id: str) -> None:
        """A continue for ``session_id`` was written (even part-way): its readiness is spent."""
        sub = self._subs[session_id]
        sub.held = False
        sub.continued = True

    def give_up(self) -> None:
        """The shell stopped reconnecting (budget spent or a fatal connect error)."""
        if self._phase is not Phase.COMPLETED:
            self._phase = Phase.FAILED
            self._routing = False

    def feed(self, response: wire.BacktestResponse) -> list[DemuxOutput]:
        """Process one response."""
        out: list[DemuxOutput] = []
        self._run((response,), out)
        return out

    def feed_batch(self, responses: Iterable[wire.BacktestResponse]) -> list[DemuxOutput]:
        """Process responses in order (e.g. all frames of one receive)."""
        out: list[DemuxOutput] = []
        self._run(responses, out)
        return out

    # -- internals ----------------------------------------------------------------------------

    def _run(self, responses: Iterable[wire.BacktestResponse], out: list[DemuxOutput]) -> None:
        subs = self._subs
        routing = self._routing
        append = out.append
        for response in responses:
            if not (routing and type(response) is _SessionEventV2):
                self._slow(response, out)
                subs = self._subs
                routing = self._routing
                continue
            sid = response.session_id
            sub = subs.get(sid)
            if sub is None:
                self._unknown_id(sid)
                continue
            seq = response.seq_id
            cursor = sub.cursor
            if seq <= cursor:
                continue
            if seq != cursor + 1 and cursor >= 0:
                logger.warning(
                    "sub-session %s: sequence jumped from %d to %d; events were lost",
                    sid,
                    cursor,
                    seq,
                )
            sub.cursor = seq
            if sub.completed:
                continue
            event: Any = response.event
            kind: Any = event.__class__
            if kind is _SlotNotification:
                append((sid, _Slot(event.slot)))
            elif kind is _Status:
                append((sid, _EStatus(event.status)))
            elif kind is _ReadyForContinue:
                if not sub.held:
                    sub.held = True
                    append((sid, READY))
            elif kind is _Paused:
                if not sub.held:
                    sub.held = True
                    append((sid, _EPaused(event.event)))
            elif kind is _DiscoveryBatch:
                append((sid, _EDiscoveryBatch(event.event)))
            elif kind is _Error:
                append((sid, _ErrorEvent(event.error)))
            elif kind is _Completed:
                sub.completed = True
                append((sid, _ECompleted(event.summary, event.agent_stats)))
                self._remaining -= 1
                if self._remaining == 0:
                    self._phase = Phase.COMPLETED
                    self._routing = routing = False
                    append(_ALL_COMPLETED)
            elif kind is not _Success:
                logger.info(
                    "sub-session %s: dropping unknown event %s", sid, excerpt(repr(event), 120)
                )

    def _slow(self, response: wire.BacktestResponse, out: list[DemuxOutput]) -> None:
        """Everything off the steady-state path: handshakes, top-level frames, final phases."""
        phase = self._phase
        if phase is Phase.CREATING:
            self._creating(response, out)
        elif phase is Phase.ATTACHING or phase is Phase.RUNNING:
            self._top_level(response, out)
        else:
            logger.debug("dropping %s in phase %s", type(response).__name__, phase.name)

    def _creating(self, response: wire.BacktestResponse, out: list[DemuxOutput]) -> None:
        match response:
            case wire.SessionCreated(session_id=sid):
                if sid in self._announced:
                    logger.warning("sub-session %s announced twice", sid)
                self._announced[sid] = response
            case wire.SessionEventV2():
                # Held until sessionsCreatedV2 says which ids are real (§6.5 step 2).
                self._held.append(response)
            case wire.SessionsCreatedV2():
                self._sessions_created(response, out)
            case wire.SessionsCreated():
                self._fail_create(TOO_OLD_MESSAGE, out)
            case wire.Error(error=error):
                self._fail_create(f"server error: {error}", out)
            case _:
                log_dropped(logger, response, "during the parallel create")

    def _fail_create(self, message: str, out: list[DemuxOutput]) -> None:
        self._phase = Phase.FAILED
        self._routing = False
        self._held.clear()
        out.append(Fail(CreateFailed(message)))

    def _sessions_created(self, reply: wire.SessionsCreatedV2, out: list[DemuxOutput]) -> None:
        ids = reply.session_ids
        if not len(ids) == len(reply.start_slots) == len(reply.end_slots):
            self._fail_create(TOO_OLD_MESSAGE, out)
            return
        if not ids:
            self._fail_create("the server created no sub-sessions", out)
            return
        if len(set(ids)) != len(ids):
            self._fail_create("the server listed a sub-session twice in sessionsCreatedV2", out)
            return
        for sid in ids:
            if sid not in self._announced:
                self._fail_create(
                    f"the server listed sub-session {excerpt(sid)!r} without a sessionCreated",
                    out,
                )
                return
        listed = set(ids)
        for sid in self._announced:
            if sid not in listed:
                logger.warning("ignoring sub-session %s: not listed in sessionsCreatedV2", sid)
        task_ids = reply.task_ids
        specs: list[SubSessionSpec] = []
        for index, sid in enumerate(ids):
            created = self._announced[sid]
            task_id = task_ids[index] if index < len(task_ids) else None
            specs.append(
                SubSessionSpec(
                    session_id=sid,
                    rpc_endpoint=created.rpc_endpoint,
                    task_id=task_id if task_id is not None else created.task_id,
                    start_slot=reply.start_slots[index],
                    end_slot=reply.end_slots[index],
                )
            )
        self.control_session_id = reply.control_session_id
        self.sub_sessions = tuple(specs)
        self._subs = {sid: _Sub() for sid in ids}
        self._remaining = len(ids)
        self._phase = Phase.RUNNING
        self._routing = True
        self._announced.clear()
        held = self._held
        self._held = []
        out.append(ParallelCreated(reply.control_session_id, self.sub_sessions))
        for event in held:
            if event.session_id not in self._subs:
                logger.warning(
                    "dropping an event of sub-session %s: not listed in sessionsCreatedV2",
                    event.session_id,
                )
        self._run([e for e in held if e.session_id in self._subs], out)

    def _top_level(self, response: wire.BacktestResponse, out: list[DemuxOutput]) -> None:
        match response:
            case wire.ParallelSessionAttachedV2(control_session_id=control_id):
                if self._phase is not Phase.ATTACHING:
                    log_dropped(logger, response, "outside an attach")
                elif control_id != self.control_session_id:
                    self._phase = Phase.FAILED
                    self._routing = False
                    message = (
                        f"attach to {self.control_session_id!r} was answered for another "
                        f"control session {excerpt(control_id)!r}"
                    )
                    out.append(Fail(ControlFailed(message)))
                else:
                    if set(response.session_ids) != set(self._subs):
                        logger.warning("the attach reply lists other sub-sessions than the create")
                    self._phase = Phase.RUNNING
                    out.append(ParallelAttached(control_id))
            case wire.Error(error=error):
                if error.is_terminal:
                    verb = "attach failed" if self._phase is Phase.ATTACHING else "server error"
                    self._phase = Phase.FAILED
                    self._routing = False
                    out.append(Fail(ControlFailed(f"{verb}: {error}", error=error)))
                elif self._phase is Phase.ATTACHING:
                    out.append(Retry(f"attach failed: {error}", error))
                else:
                    logger.warning("ignoring a non-terminal server error: %s", error)
            case _:
                log_dropped(logger, response, "on a parallel control connection")

    def _unknown_id(self, session_id: str) -> None:
        if session_id not in self._unknown_ids:
            self._unknown_ids.add(session_id)
            logger.warning("dropping events of unknown sub-session %r", excerpt(session_id))
