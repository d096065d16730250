"""``advance_to_discovery`` for managed sessions and sub-sessions: the trio shell of
:class:`~simtrio.core.discovery.DiscoveryStepper` over a session's event stream."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from simtrio import events
from simtrio.core.discovery import DiscoveryStep, DiscoveryStepper, Next
from simtrio.errors import RemoteError

if TYPE_CHECKING:
    from simtrio.managed.control import SessionEvents
    from simtrio.params import Continue

__all__ = ["OnEvent", "step_to_discovery"]

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
