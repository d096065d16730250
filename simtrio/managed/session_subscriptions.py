"""The data-plane subscriptions of one (sub-)session, its completion drain, and its service.

:class:`SessionSubscriptions` holds every :class:`~simtrio.managed.subscription.SubscriptionManager`
of one (sub-)session. A ``subscribe_*`` call registers its manager at once (so ``send_continue``
and the completion drain wait for it before it connects) and sends it to the session's service
over a channel; the service (:meth:`SessionSubscriptions.run`) opens the nursery that runs the
managers and the drain, and reports itself started (for ``nursery.start``) once it takes
requests. :meth:`SessionSubscriptions.stop`
cancels that service directly. :func:`serve_subscriptions` starts the services of a whole
(parallel) session as their first subscriptions ask for them.
"""

from __future__ import annotations

__all__: list[str] = []

import logging
import math
from typing import TYPE_CHECKING, TypeAlias

import trio

from simtrio.core.barrier import lags_behind
from simtrio.core.drain import STALLED_MESSAGE, DrainTracker
from simtrio.errors import ContinueSendFailed, ControlClosed, InvalidParams, SubscriptionFailed
from simtrio.events import AccountDiff, ProgramLogs, Transaction
from simtrio.managed.config import ConnectionStatus
from simtrio.managed.coordinator import SessionGate
from simtrio.managed.data_link import SubscriptionObserver
from simtrio.managed.subscription import SubscriptionManager
from simtrio.managed.subscription_kinds import ACCOUNT_DIFFS, LOGS, TRANSACTIONS, E
from simtrio.managed.waiting import Waiters

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from simtrio import events
    from simtrio.managed.config import ManagedConfig
    from simtrio.managed.coordinator import ReconnectCoordinator
    from simtrio.managed.recording_tap import NotificationRecorder
    from simtrio.managed.streams import EventStream
    from simtrio.managed.subscription_kinds import SubscriptionKind
    from simtrio.wire.redact import Redactor

logger = logging.getLogger(__name__)

AnyManager: TypeAlias = (
    SubscriptionManager[AccountDiff]
    | SubscriptionManager[Transaction]
    | SubscriptionManager[ProgramLogs]
)


class _Entry:
    __slots__ = ("done", "manager")

    def __init__(self, manager: AnyManager) -> None:
        self.manager = manager
        self.done = False


class _Drain:
    __slots__ = ("completed", "tracker")

    def __init__(self, tracker: DrainTracker[tuple[int, int]], completed: events.Completed) -> None:
        self.tracker = tracker
        self.completed = completed


_Request: TypeAlias = "_Entry | _Drain"
"""What the service is asked to run: a manager, or the completion drain."""


class _Activity:
    """What the managers of one session report, shared with its drain and ``wait_all_up``."""

    __slots__ = ("delivering", "tracker", "waiters")

    def __init__(self) -> None:
        self.delivering = 0
        """Managers currently handing a notification to the (possibly slow) consumer."""
        self.tracker: DrainTracker[tuple[int, int]] | None = None
        self.waiters = Waiters()

    def wake(self) -> None:
        self.waiters.wake()


class _SessionObserver(SubscriptionObserver):
    __slots__ = ("_activity", "_position")

    def __init__(self, activity: _Activity, position: int) -> None:
        self._activity = activity
        self._position = position

    def delivery_started(self) -> None:
        self._activity.delivering += 1
        self._activity.wake()  # a continue held by the barrier no longer waits for this one

    def delivery_finished(self) -> None:
        self._activity.delivering -= 1
        self.delivered()

    def delivered(self) -> None:
        activity = self._activity
        if activity.tracker is not None:
            activity.tracker.notification(trio.current_time())
        activity.wake()

    def terminal(self, index: int) -> None:
        activity = self._activity
        if activity.tracker is not None:
            activity.tracker.terminal((self._position, index), trio.current_time())
        activity.wake()

    def changed(self) -> None:
        self._activity.wake()


def check_drain_timeout(seconds: float) -> float:
    """``seconds`` as an idle bound of the completion drain; ``InvalidParams`` if unusable."""
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)  # pyright: ignore[reportUnnecessaryIsInstance]
        or not seconds > 0
    ):
        raise InvalidParams(f"completion drain timeout must be > 0, got {seconds!r}")
    return float(seconds)


class SessionSubscriptions:
    """All data-plane subscriptions of one (sub-)session.

    Each ``subscribe_*`` call adds one :class:`SubscriptionManager`, run by the session's
    service (:meth:`run`); notifications go to ``stream.put_data``, a give-up to
    ``stream.put_failure``. ``max_total`` is the outage budget of each manager (the session's
    ``config.max_total_for(disconnect_timeout_secs)``; None: ``config.max_total_for(None)``).
    ``record`` (a session's recorder) is given every notification once it is in the stream.
    With a ``launcher``, the first request sends this object there, so that whoever reads it
    starts the service; without one, the owner starts it.
    """

    __slots__ = (
        "_activity",
        "_config",
        "_drain_timeout",
        "_entries",
        "_gate",
        "_launcher",
        "_max_total",
        "_no_more_requests",
        "_pending",
        "_position",
        "_redactor",
        "_requests",
        "_scope",
        "_start_slot",
        "_stopped",
        "_window",
        "record",
        "rpc_endpoint",
        "serving",
        "stream",
    )

    def __init__(
        self,
        *,
        rpc_endpoint: str | None,
        start_slot: int | None,
        stream: EventStream,
        config: ManagedConfig,
        redactor: Redactor | None = None,
        coordinator: ReconnectCoordinator | None,
        max_total: float | None = None,
        record: NotificationRecorder | None = None,
        position: Callable[[], int | None] | None = None,
        launcher: trio.MemorySendChannel[SessionSubscriptions] | None = None,
    ) -> None:
        self.rpc_endpoint = rpc_endpoint
        """Where the managers connect (None: not known yet, and no subscription is taken)."""
        self.record = record
        self._position = position if position is not None else (lambda: start_slot)
        self._window = config.data_lag_window
        self._start_slot = start_slot
        self.stream = stream
        self._config = config
        self._redactor = redactor
        self._gate = SessionGate(coordinator) if coordinator is not None else None
        self._max_total = max_total if max_total is not None else config.max_total_for(None)
        self._entries: list[_Entry] = []
        self._drain_timeout = config.completion_drain_timeout
        self._activity = _Activity()
        self._launcher = launcher
        self._requests: trio.MemorySendChannel[_Request] | None = None
        self._pending: trio.MemoryReceiveChannel[_Request] | None = None
        self._scope = trio.CancelScope()
        self._stopped = False
        self._no_more_requests = False
        self.serving = False
        """Whether the service (:meth:`run`) is running."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} managers={len(self._entries)}>"

    @property
    def managers(self) -> tuple[AnyManager, ...]:
        return tuple(entry.manager for entry in self._entries)

    # -- the service ------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The (sub-)session's data-plane service: runs every requested manager, and the
        drain, in its own nursery; ends once no request can come and they have all ended, or
        at :meth:`stop`."""
        receive = self._receive_side()
        self.serving = True
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    task_status.started()
                    while True:
                        # What is queued already starts in this step, without a checkpoint each.
                        try:
                            request = receive.receive_nowait()
                        except trio.WouldBlock:
                            try:
                                request = await receive.receive()
                            except trio.EndOfChannel:
                                return
                        except trio.EndOfChannel:
                            return
                        if type(request) is _Entry:
                            nursery.start_soon(self._run_entry, request)
                        else:
                            assert isinstance(request, _Drain)
                            nursery.start_soon(self._drain, request.tracker, request.completed)
        finally:
            self.serving = False

    def _receive_side(self) -> trio.MemoryReceiveChannel[_Request]:
        pending = self._pending
        if pending is None:
            requests, pending = trio.open_memory_channel[_Request](math.inf)
            if self._no_more_requests:
                requests.close()
            self._requests, self._pending = requests, pending
        return pending

    def _request(self, request: _Request) -> None:
        if self._pending is None:
            self._receive_side()
            if self._launcher is not None:
                self._launcher.send_nowait(self)
        assert self._requests is not None
        try:
            self._requests.send_nowait(request)
        except trio.ClosedResourceError:
            if type(request) is _Entry:
                request.done = True  # the session has ended: nothing will run it

    def close_requests(self) -> None:
        """No further request: the service ends once what it runs has ended."""
        self._no_more_requests = True
        if self._requests is not None:
            self._requests.close()

    def stop(self) -> None:
        """Cancel every manager task (and the drain) of this (sub-)session."""
        self._stopped = True
        self._scope.cancel()
        for entry in self._entries:
            entry.done = True
        self._activity.wake()

    async def _run_entry(self, entry: _Entry) -> None:
        try:
            await entry.manager.run()
        except SubscriptionFailed as exc:
            self.stream.put_failure(exc)
        finally:
            entry.done = True
            self._activity.wake()

    # -- subscribing ------------------------------------------------------------------------

    def _check_open(self) -> str:
        """The RPC endpoint to subscribe on; ``ControlClosed`` when none is taken now."""
        if self.rpc_endpoint is None:
            raise ControlClosed("the session is not running")
        return self.rpc_endpoint

    def subscribe_account_diffs(self, program_ids: Sequence[str]) -> None:
        """Start an account-diff manager for ``program_ids`` (returns at once)."""
        self._start(self._manager(ACCOUNT_DIFFS, program_ids))

    def subscribe_transactions(self, program_ids: Sequence[str]) -> None:
        """Start a transaction manager for ``program_ids`` (returns at once)."""
        self._start(self._manager(TRANSACTIONS, program_ids))

    def subscribe_program_logs(self, program_ids: Sequence[str]) -> None:
        """Start a logs manager for ``program_ids`` (returns at once)."""
        self._start(self._manager(LOGS, program_ids))

    def _manager(
        self, kind: SubscriptionKind[E], program_ids: Sequence[str]
    ) -> SubscriptionManager[E]:
        return SubscriptionManager(
            rpc_endpoint=self._check_open(),
            kind=kind,
            program_ids=program_ids,
            config=self._config,
            redactor=self._redactor,
            deliver=self.stream.put_data,
            deliver_nowait=self.stream.put_data_nowait,
            start_slot=self._start_slot,
            max_total=self._max_total,
            coordinator=self._gate,
            observer=_SessionObserver(self._activity, len(self._entries)),
            record=self.record,
            position=self._position,
        )

    def _start(self, manager: AnyManager) -> None:
        position = len(self._entries)
        entry = _Entry(manager)
        self._entries.append(entry)
        if self._activity.tracker is not None:
            for index in range(len(manager.program_ids)):
                self._activity.tracker.add((position, index))
        if self._stopped:
            entry.done = True
        else:
            self._request(entry)

    # -- readiness --------------------------------------------------------------------------

    def all_up(self) -> bool:
        """True when every subscription is UP or finished and none gave up (nothing to wait for)."""
        for entry in self._entries:
            manager = entry.manager
            if manager.failure is not None:
                return False
            if not (manager.status.value is ConnectionStatus.UP or manager.finished or entry.done):
                return False
        return True

    def ready_to_continue(self) -> bool:
        """Probe every subscription at the control plane's slot; True if a continue may go.

        That is: every subscription is UP or finished, and none has its proven slot more than
        ``data_lag_window`` behind the control plane's (the data-plane barrier) -- unless it is
        blocked on the consumer: the driver waiting here is that consumer, so waiting for it
        would never end.
        """
        if not self._entries:
            return True
        slot = self._position()
        window = self._window
        ready = True
        for entry in self._entries:
            manager = entry.manager
            if slot is not None:
                manager.probe(slot)
            if entry.done:
                continue
            up = manager.status.value is ConnectionStatus.UP or manager.finished
            # Never for a manager blocked on the consumer: the driver that would wait here is
            # that consumer.
            lagging = (
                lags_behind(slot, manager.proven_position, window) and not manager.consumer_behind
            )
            if not up or lagging:
                ready = False
        return ready

    async def wait_all_up(self) -> None:
        """Wait until every subscription is UP or finished and the barrier lets a continue go.

        Raises:
            ContinueSendFailed: a subscription gave up (chained from its SubscriptionFailed).
        """
        await self._activity.waiters.wait_until(
            lambda: self._failure() is not None or self.ready_to_continue()
        )
        failure = self._failure()
        if failure is not None:
            raise ContinueSendFailed(str(failure)) from failure

    def _failure(self) -> SubscriptionFailed | None:
        for entry in self._entries:
            if entry.manager.failure is not None:
                return entry.manager.failure
        return None

    # -- the completion drain ---------------------------------------------------------------

    def set_completion_drain_timeout(self, seconds: float) -> None:
        """Idle bound of the completion drain; also applies to a drain already running."""
        self._drain_timeout = check_drain_timeout(seconds)
        if self._activity.tracker is not None:
            self._activity.tracker.set_idle_timeout(self._drain_timeout)
            self._activity.wake()

    def complete_after_drain(self, completed: events.Completed) -> None:
        """Drain every subscription to its terminals, then put ``completed`` (protocol §9.9)."""
        if not self._entries:
            self.stream.put_control(completed)
            return
        if self._activity.tracker is not None:
            return
        pending = [
            (position, index)
            for position, entry in enumerate(self._entries)
            for index in entry.manager.incomplete
        ]
        self._activity.tracker = DrainTracker(pending, self._drain_timeout, trio.current_time())
        self._request(_Drain(self._activity.tracker, completed))

    async def _drain(
        self, tracker: DrainTracker[tuple[int, int]], completed: events.Completed
    ) -> None:
        activity = self._activity
        stream = self.stream
        while True:
            if stream.terminal_queued:
                return  # a manager gave up and said so already
            if tracker.is_complete:
                stream.put_control(completed)
                return
            if activity.delivering:
                # The consumer is behind, not the server: no idle clock while it catches up.
                await activity.waiters.wait()
                continue
            with trio.move_on_at(tracker.deadline):
                await activity.waiters.wait()
                continue
            if not activity.delivering and tracker.is_stalled(trio.current_time()):
                logger.warning(
                    "completion drain stalled; %d subscription(s) without terminal",
                    len(tracker.pending),
                )
                stream.put_failure(SubscriptionFailed(STALLED_MESSAGE), after_data=True)
                self.stop()
                return


async def serve_subscriptions(
    receive: trio.MemoryReceiveChannel[SessionSubscriptions],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Start the service of every (sub-)session's subscriptions that ``receive`` brings.

    Each :class:`SessionSubscriptions` given a ``launcher`` sends itself there with its first
    request, so a (sub-)session that never subscribes has no data-plane task: with a thousand
    sub-sessions, a service each up front would cost a task each and delay the first events
    by as much. Every service runs in this task's nursery, so all of them end with it.

    Each service is started with ``nursery.start``: it is up (its own nursery open, its
    requests being taken) before the next one starts.
    """
    async with trio.open_nursery() as services:
        task_status.started()
        async for subscriptions in receive:
            await services.start(subscriptions.run)
