"""``advance_to_discovery`` for managed sessions and sub-sessions: the trio shell of
:class:`~simtrio.core.discovery.DiscoveryStepper` over a session's event stream, and the base
class that both session kinds share for it (and for their RPC endpoint)."""

from __future__ import annotations

__all__: list[str] = []

import abc
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Generic, TypeVar

import trio

from simtrio import events
from simtrio.core.discovery import DISCOVERY_SETTLE, DiscoveryStep, DiscoveryStepper, Next
from simtrio.errors import RemoteError
from simtrio.managed.control import ControlLoop
from simtrio.managed.sink import SessionEvents
from simtrio.rpc.session import SessionRpc, session_rpc

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from simtrio.managed.sink import EventSink
    from simtrio.params import Continue
    from simtrio.wire.types import ContinueParams

OnEvent = Callable[[events.Event], object]
"""Called with every event ``advance_to_discovery`` reads."""


async def step_to_discovery(
    session: SessionEvents,
    stepper: DiscoveryStepper,
    *,
    holds_readiness: bool,
    send_continue_to: Callable[[int, int | None], Awaitable[None]],
    send_continue: Callable[[Continue], Awaitable[None]],
    run_on: Continue,
    on_event: OnEvent | None,
    settle: float,
) -> DiscoveryStep:
    """Carry out the stepper's decisions on ``session``'s events (see ``advance_to_discovery``).

    ``holds_readiness`` is whether the control plane has handed the driver a readiness event it
    has not answered yet (possibly already read by the driver).
    """
    if holds_readiness:
        stepper.is_ready = True
    settled = False
    while True:
        action = stepper.next(settled)
        if not isinstance(action, Next):
            stepper.sent()
            await send_continue_to(action.slot, action.batch_index)
            settled = False
            continue
        if action is Next.RUN_ON:
            stepper.sent_run_on()
            await send_continue(run_on)
            settled = False
            continue
        if action is Next.SETTLE:
            event: events.Event | None = None
            with trio.move_on_after(settle):
                event = await session.next_event()
            if event is None:
                settled = True
                continue
        else:
            event = await session.next_event()
        if on_event is not None:
            on_event(event)
        match event:
            case events.DiscoveryBatch(event=batch):
                stepper.batch(batch)
            case events.Slot(slot=slot):
                stepper.slot(slot)
            case events.Paused(event=paused):
                result = stepper.ready(paused)
                if result is not None:
                    return result
            case events.ReadyForContinue():
                stepper.ready(None)
            case events.Completed(summary=summary, agent_stats=agent_stats):
                return stepper.completed(summary, agent_stats)
            case events.ErrorEvent(error=error) if not stepper.is_ready:
                # The step in flight was refused: the server still waits for a continue.
                stepper.refused()
                raise RemoteError(error)
            case _:
                pass


_Control = TypeVar("_Control", bound=ControlLoop)


class ControlledSession(SessionEvents, Generic[_Control], abc.ABC):
    """What a managed session and a parallel sub-session share beyond their events: discovery
    stepping and the RPC endpoint, over the control loop that serves them.

    Subclasses say how continues are queued and how a discovery run-on looks.
    """

    __slots__ = ("_control", "_stepper")

    def __init__(self, control: _Control, sink: EventSink) -> None:
        super().__init__(sink)
        self._control = control
        self._stepper: DiscoveryStepper | None = None  # made by the first discovery step

    @abc.abstractmethod
    async def send_continue(self, cont: Continue | ContinueParams) -> None:
        """Queue a ``continue`` for this session."""

    @abc.abstractmethod
    async def send_continue_to(self, slot: int, batch_index: int | None = None) -> None:
        """Queue a ``continueTo`` for this session."""

    @abc.abstractmethod
    def _holds_readiness(self) -> bool:
        """Whether the control plane holds a readiness event of this session not yet answered."""

    @abc.abstractmethod
    def _run_on(self) -> Continue:
        """The ``continue`` sent when no further discovery batch is coming."""

    async def advance_to_discovery(
        self,
        on_event: OnEvent | None = None,
        *,
        settle: float = DISCOVERY_SETTLE,
    ) -> DiscoveryStep:
        """Run up to the next announced discovery batch (protocol §6.7).

        Takes the next queued ``DiscoveryBatch`` (waiting for readiness, and for one to be
        announced), sends ``continueTo(slot, batch_index)`` and waits for ``Paused``: returns
        :class:`~simtrio.core.discovery.DiscoveryPaused`. When, once ready, no batch is
        announced within ``settle`` seconds, none is coming: a ``continue`` runs on, and
        :class:`~simtrio.core.discovery.DiscoveryCompleted` is returned at ``Completed``.

        This call reads the session's events itself; each one is passed to ``on_event``
        (notifications included). ``DiscoveryBatch`` events read here before readiness are
        kept for later calls.

        Raises:
            RemoteError: the server refused the step.
            ControlClosed, ControlFailed, SubscriptionFailed: as :meth:`next_event`.
        """
        if self._stepper is None:
            self._stepper = DiscoveryStepper()
        return await step_to_discovery(
            self,
            self._stepper,
            holds_readiness=self._holds_readiness(),
            send_continue_to=self.send_continue_to,
            send_continue=self.send_continue,
            run_on=self._run_on(),
            on_event=on_event,
            settle=settle,
        )

    def rpc(self) -> AbstractAsyncContextManager[SessionRpc]:
        """A :class:`~simtrio.rpc.SessionRpc` on this session's RPC endpoint, for an
        ``async with`` block.

        Each call is bounded by :data:`~simtrio.rpc.DEFAULT_RPC_TIMEOUT`; TLS uses the
        configuration's ``ssl_context``. With a recorder, every answered call is recorded with
        the run, so that a replay can answer it.

        Raises:
            RpcError: the session has no RPC endpoint (raised here, not on entering).
        """
        info = self.session_info
        tap = self._control.tap
        observer = tap.rpc_observer(info.session_id) if tap is not None else None
        return session_rpc(info, self._control.config, observer, self._control.redactor)
