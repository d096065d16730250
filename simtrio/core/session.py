"""Single-session state machines: step accounting, readiness, sequence cursor, managed control.

Nothing here touches a socket or a clock. The plain client feeds each response it reads into a
:class:`StepAccumulator` / :class:`ReadinessTracker`; the managed control loop feeds each decoded
frame into :class:`ManagedSessionCore` and carries out the decisions it returns.
"""

from __future__ import annotations

__all__: list[str] = []

import enum
import logging
from typing import TYPE_CHECKING, Final, TypeAlias

import attrs

from simtrio import events
from simtrio.core.phase import Phase, PhasedCore, log_dropped
from simtrio.errors import ControlFailed, CreateFailed, ManagedSessionError, RemoteError, excerpt
from simtrio.wire import types as wire
from simtrio.wire.backtest_errors import BacktestError
from simtrio.wire.rules import kind_key

if TYPE_CHECKING:
    from collections.abc import Sequence

logger = logging.getLogger(__name__)

READY: Final = events.ReadyForContinue()
"""Shared instance: the event has no fields, so one value serves every delivery."""

_RESUME_SUCCESS: Final = kind_key("resumeSuccess")


# --------------------------------------------------------------------------------------------
# Plain client: step accounting and readiness
# --------------------------------------------------------------------------------------------


class ReadyOutcome(enum.Enum):
    """How ``ensure_ready`` ended."""

    READY = "ready"
    COMPLETED = "completed"


@attrs.frozen
class ContinueResult:
    """What one ``advance`` / ``continue_until_ready`` step produced.

    ``summary`` and ``agent_stats`` are set only when the step ended in ``completed``.
    """

    slot_notifications: int = 0
    last_slot: int | None = None
    statuses: list[wire.BacktestStatus] = attrs.field(factory=list[wire.BacktestStatus])
    ready_for_continue: bool = False
    completed: bool = False
    summary: wire.SessionSummary | None = None
    agent_stats: list[wire.AgentStatsReport] | None = None


class StepAccumulator:
    """Collects the responses of one step of the plain client (protocol §6.1).

    ``advance_count`` given: the step ends at ``completed``, or at a readiness event once that
    many ``slotNotification``s were counted (``advance``). ``None``: it ends at the first
    readiness event or ``completed`` (``continue_until_ready``). Feed every response read after
    the continue was sent; :meth:`feed` returns True when the step is over and raises
    :class:`~simtrio.errors.RemoteError` on an ``error`` response.
    """

    __slots__ = (
        "_advance_count",
        "_agent_stats",
        "_completed",
        "_done",
        "_last_slot",
        "_ready",
        "_slots",
        "_statuses",
        "_summary",
    )

    def __init__(self, advance_count: int | None = None) -> None:
        self._advance_count = advance_count
        self._slots = 0
        self._last_slot: int | None = None
        self._statuses: list[wire.BacktestStatus] = []
        self._ready = False
        self._completed = False
        self._summary: wire.SessionSummary | None = None
        self._agent_stats: list[wire.AgentStatsReport] | None = None
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def feed(self, response: wire.BacktestResponse) -> bool:
        """Account for one response; True once the step has ended."""
        if self._done:
            raise RuntimeError("the step has already ended")
        match response:
            case wire.SlotNotification(slot=slot):
                self._slots += 1
                self._last_slot = slot
            case wire.Status(status=status):
                self._statuses.append(status)
            case wire.ReadyForContinue() | wire.Paused():
                if self._advance_count is None or self._slots >= self._advance_count:
                    self._ready = True
                    self._done = True
                else:
                    logger.debug(
                        "readiness after %d of %d slots; still waiting",
                        self._slots,
                        self._advance_count,
                    )
            case wire.Completed(summary=summary, agent_stats=agent_stats):
                self._completed = True
                self._summary = summary
                self._agent_stats = agent_stats
                self._done = True
            case wire.Error(error=error):
                raise RemoteError(error)
            case wire.UnknownResponse(method=method):
                logger.debug("skipping unknown response %r", excerpt(method))
            case _:
                logger.debug("skipping %s during a step", type(response).__name__)
        return self._done

    def result(self) -> ContinueResult:
        """The step's totals so far (complete once :attr:`done`)."""
        return ContinueResult(
            slot_notifications=self._slots,
            last_slot=self._last_slot,
            statuses=list(self._statuses),
            ready_for_continue=self._ready,
            completed=self._completed,
            summary=self._summary,
            agent_stats=self._agent_stats,
        )


class ReadinessTracker:
    """Whether the plain client's session waits for a continue (protocol §6.1 "Readiness").

    Observe every response the session's methods process, and call :meth:`continue_sent`
    after writing a ``continue`` or ``continueTo``. ``completed`` is final.
    """

    __slots__ = ("_completed", "_ready")

    def __init__(self) -> None:
        self._ready = False
        self._completed = False

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def completed(self) -> bool:
        return self._completed

    @property
    def outcome(self) -> ReadyOutcome | None:
        """What ``ensure_ready`` may return at once, or None when it has to read."""
        if self._completed:
            return ReadyOutcome.COMPLETED
        if self._ready:
            return ReadyOutcome.READY
        return None

    def observe(self, response: wire.BacktestResponse) -> ReadyOutcome | None:
        """Update from one processed response; returns the outcome it signals, if any."""
        kind = type(response)
        if kind is wire.ReadyForContinue or kind is wire.Paused:
            if self._completed:
                return None
            self._ready = True
            return ReadyOutcome.READY
        if kind is wire.Completed:
            self._completed = True
            self._ready = False
            return ReadyOutcome.COMPLETED
        return None

    def feed_ensure_ready(self, response: wire.BacktestResponse) -> ReadyOutcome | None:
        """:meth:`observe` for ``ensure_ready``: an ``error`` raises ``RemoteError``."""
        outcome = self.observe(response)
        if isinstance(response, wire.Error):
            raise RemoteError(response.error)
        return outcome

    def continue_sent(self) -> None:
        """A ``continue``/``continueTo`` was written: not ready until the next readiness event."""
        self._ready = False


class SequenceCursor:
    """Highest sequence number accepted so far; ``None`` until the first one."""

    __slots__ = ("value",)

    def __init__(self, value: int | None = None) -> None:
        self.value = value

    def accept(self, seq: int) -> bool:
        """True (and advance) when ``seq`` is new; False for a duplicate at or below the cursor."""
        value = self.value
        if value is not None and seq <= value:
            return False
        self.value = seq
        return True

    def __repr__(self) -> str:
        return f"SequenceCursor({self.value!r})"


def event_for(response: wire.BacktestResponse | wire.SessionEvent) -> events.Event | None:
    """The driver event a response (or session event) maps to; None when it maps to none.

    ``error`` maps to :class:`~simtrio.events.ErrorEvent` whatever its kind: deciding whether
    it is fatal is the caller's business.
    """
    match response:
        case wire.SlotNotification(slot=slot):
            return events.Slot(slot)
        case wire.Status(status=status):
            return events.Status(status)
        case wire.ReadyForContinue():
            return READY
        case wire.Paused(event=paused):
            return events.Paused(paused)
        case wire.DiscoveryBatch(event=batch):
            return events.DiscoveryBatch(batch)
        case wire.Error(error=error):
            return events.ErrorEvent(error)
        case wire.Completed(summary=summary, agent_stats=agent_stats):
            return events.Completed(summary, agent_stats)
        case _:
            return None


# --------------------------------------------------------------------------------------------
# Managed single session
# --------------------------------------------------------------------------------------------


@attrs.frozen
class Deliver:
    """Hand ``event`` to the driver (a ``Completed`` goes through the completion drain first)."""

    event: events.Event


@attrs.frozen
class HandshakeDone:
    """The create or attach reply arrived; ``rpc_endpoint`` is as the server sent it.

    After a create the session is UP at once. After an attach (``attached``) the shell waits
    for the subscriptions, writes ``resumeAttachedSession`` (then calls
    :meth:`ManagedSessionCore.resume_sent`) and publishes UP.
    """

    session_id: str
    rpc_endpoint: str
    task_id: str | None
    attached: bool


@attrs.frozen
class Fail:
    """Stop for good: status FAILED; the shell raises or stores ``error``.

    ``error`` is a ``CreateFailed`` while the create is pending, else a ``ControlFailed``
    (whose ``.error`` is the terminal ``BacktestError``).
    """

    error: ManagedSessionError


@attrs.frozen
class Retry:
    """The handshake failed transiently: drop this connection and reconnect with backoff."""

    reason: str
    error: BacktestError | None = None


@attrs.frozen
class CloseDone:
    """The reply to ``closeBacktestSession`` (or ``completed``, or an ``error``) arrived."""


Decision: TypeAlias = Deliver | HandshakeDone | Fail | Retry | CloseDone

_NOTHING: Final[tuple[Decision, ...]] = ()


class ManagedSessionCore(PhasedCore):
    """Control-plane bookkeeping of one managed session across connections (protocol §6.3).

    Driving it, per connection::

        request = core.connection_opened()       # send it (create, or attach with the cursor)
        for seq, response in frames:
            for decision in core.feed(seq, response):
                ...                              # Deliver / HandshakeDone / Fail / Retry / CloseDone
        core.connection_lost()                   # then reconnect while core.wants_reconnect

    and around it: :meth:`resume_sent` after writing ``resumeAttachedSession``,
    :meth:`continue_written` after writing a ``continue``/``continueTo`` (even partially),
    :meth:`close_sent` after writing ``closeBacktestSession``, :meth:`give_up` when the
    reconnect budget is spent.

    Invariants kept here: numbered frames at or below the cursor are dropped (unnumbered ones
    are always processed); a readiness event is dropped while the driver already holds one
    (§6.8); ``Completed`` is the last event delivered; frames before ``sessionCreated`` are
    held back and delivered with the handshake, and discarded if the create must be re-sent.
    """

    __slots__ = (
        "_backlog",
        "_close_pending",
        "_continued",
        "_create",
        "_holds_readiness",
        "_resume_pending",
        "cursor",
        "rpc_endpoint",
        "session_id",
        "task_id",
    )

    def __init__(self, create: wire.CreateBacktestSessionRequest) -> None:
        super().__init__()
        self._create = create
        self.cursor = SequenceCursor()
        self.session_id: str | None = None
        self.rpc_endpoint: str | None = None
        self.task_id: str | None = None
        self._holds_readiness = False
        self._continued = False
        self._backlog: list[Decision] = []
        self._resume_pending = False
        self._close_pending = False

    # -- state ------------------------------------------------------------------------------

    @property
    def holds_readiness(self) -> bool:
        """True while the driver has a readiness event it has not answered with a write."""
        return self._holds_readiness

    @property
    def step_outstanding(self) -> bool:
        """Whether a written continue still waits for its readiness event (or ``completed``)."""
        return self._phase is Phase.RUNNING and self._continued and not self._holds_readiness

    # -- inputs from the shell ----------------------------------------------------------------

    def connection_opened(
        self,
    ) -> wire.CreateBacktestSessionRequest | wire.AttachBacktestSession:
        """A new connection is open: the first request to write on it."""
        self._resume_pending = False
        self._close_pending = False
        if self._opening_creates():
            return self._create
        assert self.session_id is not None
        return wire.AttachBacktestSession(self.session_id, self.cursor.value)

    def connection_lost(self) -> None:
        """The current connection ended (any cause)."""
        self._resume_pending = False
        self._close_pending = False
        if self._lost_while_creating():
            # The next connection re-sends the create: a new session, a new numbering.
            self._backlog.clear()
            self.cursor = SequenceCursor()
            self._holds_readiness = False

    def resume_sent(self) -> None:
        """``resumeAttachedSession`` was written; its reply is consumed when it comes."""
        self._resume_pending = True

    def continue_written(self) -> None:
        """A ``continue``/``continueTo`` was written (even part-way): readiness is spent."""
        self._holds_readiness = False
        self._continued = True

    def close_sent(self) -> None:
        """``closeBacktestSession`` was written; :class:`CloseDone` reports its reply."""
        self._close_pending = True

    def give_up(self) -> None:
        """The shell stopped reconnecting (budget spent or a fatal connect error)."""
        if self._phase is not Phase.COMPLETED:
            self._phase = Phase.FAILED

    def feed(self, seq: int | None, response: wire.BacktestResponse) -> Sequence[Decision]:
        """Process one decoded frame (its ``seqId`` and response); returns what to do."""
        phase = self._phase
        if phase is Phase.FAILED:
            return _NOTHING
        if seq is not None and not self.cursor.accept(seq):
            logger.debug("dropping duplicate frame %d", seq)
            return _NOTHING
        if phase is Phase.CREATING:
            return self._feed_creating(response)
        if phase is Phase.COMPLETED:
            return self._feed_completed(seq, response)
        if phase is Phase.ATTACHING and seq is None:
            # Unnumbered replies here answer the attach; numbered ones are replayed history.
            match response:
                case wire.SessionAttached():
                    return self._attached(response)
                case wire.Error(error=error):
                    return self._attach_error(error)
                case _:
                    pass
        return self._feed_running(seq, response)

    # -- internals ----------------------------------------------------------------------------

    def _feed_creating(self, response: wire.BacktestResponse) -> Sequence[Decision]:
        match response:
            case wire.SessionCreated(session_id=session_id, rpc_endpoint=endpoint, task_id=task):
                self.session_id = session_id
                self.rpc_endpoint = endpoint
                self.task_id = task
                decisions = self._backlog
                self._backlog = []
                completed = any(
                    isinstance(d, Deliver) and isinstance(d.event, events.Completed)
                    for d in decisions
                )
                self._phase = Phase.COMPLETED if completed else Phase.RUNNING
                decisions.append(HandshakeDone(session_id, endpoint, task, attached=False))
                return decisions
            case wire.Error(error=error):
                self._phase = Phase.FAILED
                return (Fail(CreateFailed(f"server error: {error}")),)
            case wire.ReadyForContinue() | wire.Paused() if self._holds_readiness:
                logger.debug("dropping a readiness event the driver already holds")
                return _NOTHING
            case _:
                pass
        event = event_for(response)
        if event is None:
            log_dropped(logger, response, "before sessionCreated")
            return _NOTHING
        if isinstance(event, events.ReadyForContinue | events.Paused):
            self._holds_readiness = True
        self._backlog.append(Deliver(event))
        return _NOTHING

    def _attached(self, response: wire.SessionAttached) -> Sequence[Decision]:
        if response.session_id != self.session_id:
            self._phase = Phase.FAILED
            message = (
                f"attach to {self.session_id!r} was answered for another session "
                f"{excerpt(response.session_id)!r}"
            )
            return (Fail(ControlFailed(message)),)
        self._phase = Phase.RUNNING
        self.rpc_endpoint = response.rpc_endpoint
        self.task_id = response.task_id
        return (
            HandshakeDone(
                response.session_id, response.rpc_endpoint, response.task_id, attached=True
            ),
        )

    def _attach_error(self, error: BacktestError) -> Sequence[Decision]:
        if error.is_terminal:
            self._phase = Phase.FAILED
            return (Fail(ControlFailed(f"attach failed: {error}", error=error)),)
        return (Retry(f"attach failed: {error}", error),)

    def _feed_running(self, seq: int | None, response: wire.BacktestResponse) -> Sequence[Decision]:
        match response:
            case wire.SlotNotification(slot=slot):
                return (Deliver(events.Slot(slot)),)
            case wire.Status(status=status):
                return (Deliver(events.Status(status)),)
            case wire.ReadyForContinue() | wire.Paused():
                if self._holds_readiness:
                    logger.debug("dropping a readiness event the driver already holds")
                    return _NOTHING
                self._holds_readiness = True
                if isinstance(response, wire.Paused):
                    return (Deliver(events.Paused(response.event)),)
                return (Deliver(READY),)
            case wire.DiscoveryBatch(event=batch):
                return (Deliver(events.DiscoveryBatch(batch)),)
            case wire.Completed(summary=summary, agent_stats=agent_stats):
                self._phase = Phase.COMPLETED
                done = Deliver(events.Completed(summary, agent_stats))
                if self._close_pending:
                    self._close_pending = False
                    return (done, CloseDone())
                return (done,)
            case wire.Error(error=error):
                reply = self._error_reply(seq, error)
                if reply is not None:
                    return reply
                if error.is_terminal:
                    self._phase = Phase.FAILED
                    return (Fail(ControlFailed(f"server error: {error}", error=error)),)
                return (Deliver(events.ErrorEvent(error)),)
            case _ if _is_success(response):
                return self._success(seq)
            case _:
                log_dropped(logger, response, "while running")
                return _NOTHING

    def _feed_completed(
        self, seq: int | None, response: wire.BacktestResponse
    ) -> Sequence[Decision]:
        if _is_success(response):
            return self._success(seq)
        if isinstance(response, wire.Error):
            reply = self._error_reply(seq, response.error)
            if reply is not None:
                return reply
        elif isinstance(response, wire.Completed) and self._close_pending:
            self._close_pending = False
            return (CloseDone(),)
        log_dropped(logger, response, "after completed")
        return _NOTHING

    def _error_reply(self, seq: int | None, error: BacktestError) -> Sequence[Decision] | None:
        """Consume an ``error`` that answers the resume or the close; None if it answers neither."""
        if seq is None and self._resume_pending:
            self._resume_pending = False
            logger.warning("resumeAttachedSession was answered with an error: %s", error)
            return _NOTHING
        if self._close_pending:
            self._close_pending = False
            logger.warning("closeBacktestSession was answered with an error: %s", error)
            return (CloseDone(),)
        return None

    def _success(self, seq: int | None) -> Sequence[Decision]:
        if seq is None and self._resume_pending:
            self._resume_pending = False
            return _NOTHING
        if self._close_pending:
            self._close_pending = False
            return (CloseDone(),)
        logger.debug("consumed a success reply")
        return _NOTHING


def _is_success(response: wire.BacktestResponse) -> bool:
    """``success``, or the ``resumeSuccess`` spelling some servers use for the resume reply."""
    if isinstance(response, wire.Success):
        return True
    return (
        isinstance(response, wire.UnknownResponse) and kind_key(response.method) == _RESUME_SUCCESS
    )
