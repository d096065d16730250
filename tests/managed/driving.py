"""How the managed tests drive a session to its end, which control-plane faults the
end-to-end tests inject, and how they compare a faulted run with a clean one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from simtrio import events
from simtrio.managed.config import ManagedConfig
from simtrio.params import Continue
from simtrio.server import FaultPlan

if TYPE_CHECKING:
    from collections.abc import Sequence

    from simtrio.managed.parallel import ParallelSubSession
    from simtrio.managed.session import ManagedSession
    from simtrio.server import Faults

KEY = "e2e-key"
"""The API key of the end-to-end tests."""
CONFIG = ManagedConfig(rng_seed=11)
"""The configuration of the end-to-end tests."""


async def drive(session: ManagedSession | ParallelSubSession, step: int) -> list[events.Event]:
    """Every event of ``session``, continuing by ``step`` slots at each readiness."""
    seen: list[events.Event] = []
    async for ev in session.events():
        seen.append(ev)
        if isinstance(ev, events.ReadyForContinue):
            await session.send_continue(Continue(step))
    return seen


def without_reannounced(seen: Sequence[events.Event]) -> tuple[list[events.Event], int]:
    """Drop readiness events that directly follow another one, and count them.

    A continue written into a connection the server has already dropped never arrives; the
    server then re-announces the readiness on the next attach (protocol §6.8) and the driver
    continues again. That second readiness is the only legitimate difference from a clean run.
    """
    out: list[events.Event] = []
    dropped = 0
    for ev in seen:
        if isinstance(ev, events.ReadyForContinue) and out and out[-1] == ev:
            dropped += 1
            continue
        out.append(ev)
    return out, dropped


def on_first_control(faults: Faults) -> FaultPlan:
    """A fault plan that injects ``faults`` on the first control connection only."""
    return FaultPlan(control_connections={1: faults})
