"""One (sub-)session's driver-facing side: its events and its subscriptions.

:class:`EventSink` is what the control loop hands each (sub-)session's events to, and what
that session's subscriptions deliver into: one object per (sub-)session, with one event stream.
:class:`SessionEvents` is the driver's view of it, shared by
:class:`~simtrio.managed.session.ManagedSession` and
:class:`~simtrio.managed.parallel.ParallelSubSession`.
"""

from __future__ import annotations

__all__: list[str] = []

from typing import TYPE_CHECKING

from simtrio import events
from simtrio.errors import ControlClosed
from simtrio.events import Slot
from simtrio.managed.session_subscriptions import SessionSubscriptions
from simtrio.managed.streams import EventIterator, EventStream

if TYPE_CHECKING:
    from collections.abc import Sequence

    import trio

    from simtrio.errors import ManagedSessionError
    from simtrio.events import Event
    from simtrio.managed.config import ManagedConfig, SessionInfo
    from simtrio.managed.coordinator import ReconnectCoordinator
    from simtrio.managed.recording_tap import RecordingTap
    from simtrio.wire.redact import Redactor


class EventSink(SessionSubscriptions):
    """The driver-facing side of one (sub-)session: its event stream and its subscriptions.

    The subscriptions can be taken once :attr:`info` is known; the first one sends this sink to
    ``launcher``, whose reader starts its service, so a session that never subscribes pays
    nothing for the data plane. ``max_total`` is their outage budget: the session's
    ``config.max_total_for(disconnect_timeout_secs)``, so a data-plane outage is bounded like
    the control plane's (None: the config default).
    """

    __slots__ = ("_closed", "_info", "_tap", "control_slot")

    def __init__(
        self,
        config: ManagedConfig,
        *,
        start_slot: int | None,
        launcher: trio.MemorySendChannel[SessionSubscriptions],
        redactor: Redactor | None = None,
        coordinator: ReconnectCoordinator | None = None,
        max_total: float | None = None,
        tap: RecordingTap | None = None,
    ) -> None:
        super().__init__(
            rpc_endpoint=None,
            start_slot=start_slot,
            stream=EventStream(config.event_buffer, config.event_buffer_bytes),
            config=config,
            redactor=redactor,
            coordinator=coordinator,
            max_total=max_total,
            position=self._control_position,
            launcher=launcher,
        )
        self._tap = tap
        self._info: SessionInfo | None = None
        self._closed = False
        self.control_slot: int | None = start_slot
        """The slot of the last ``Slot`` event the control plane delivered (the start slot
        before any): what the data-plane barrier compares its subscriptions with."""

    @property
    def info(self) -> SessionInfo | None:
        """Identity of the (sub-)session, once the create reported it."""
        return self._info

    @info.setter
    def info(self, info: SessionInfo) -> None:
        self._info = info
        self.rpc_endpoint = info.rpc_endpoint
        if self._tap is not None:
            self.record = self._tap.notifications_of(info.session_id)

    def _control_position(self) -> int | None:
        return self.control_slot

    def _check_open(self) -> str:
        if self._closed:
            raise ControlClosed("the session is closed; it takes no new subscriptions")
        return super()._check_open()

    def close(self) -> None:
        """Stop the subscriptions and take no new ones (the stream stays readable)."""
        self._closed = True
        self.stop()

    # -- events -----------------------------------------------------------------------------

    def deliver(self, event: Event) -> None:
        """Hand a control event to the driver; ``Completed`` waits for the drain first."""
        if type(event) is events.Completed:
            self.complete(event)
        else:
            if type(event) is Slot:
                self.control_slot = event.slot
            self.stream.put_control(event)

    def complete(self, event: events.Completed) -> None:
        """Deliver ``Completed`` after the subscriptions drained (at once without any)."""
        if self._closed:
            self.stream.put_control(event)
        else:
            self.complete_after_drain(event)

    def fail(self, error: ManagedSessionError) -> None:
        """The control plane gave up: the driver's next read raises ``error``."""
        self.stream.put_failure(error)
        self.stop()

    def was_reported(self, error: BaseException) -> bool:
        """Whether a driver's read has raised ``error``."""
        return self.stream.raised is error

    def end(self) -> None:
        """The (sub-)session's block is left: reads raise ``ControlClosed`` from now on."""
        self._closed = True
        self.stream.close()
        self.close_requests()


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
