"""``advance_to_discovery`` on managed sessions and sub-sessions, against the reference server."""

from __future__ import annotations

import simtrio.server
from simtrio import events
from simtrio.core.discovery import DiscoveryCompleted, DiscoveryPaused
from simtrio.managed.config import ManagedConfig
from simtrio.managed.parallel import ParallelSubSession, open_parallel_session
from simtrio.managed.session import ManagedSession, open_managed_session
from simtrio.params import CreateSession
from simtrio.wire.types import ProgramExecuted
from tests.client.helpers import bounded

KEY = "discovery-key"
CONFIG = ManagedConfig(rng_seed=5)
TOKEN = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"


async def _walk(
    session: ManagedSession | ParallelSubSession,
) -> tuple[list[DiscoveryPaused], list[events.Event]]:
    seen: list[events.Event] = []
    steps: list[DiscoveryPaused] = []
    while True:
        step = await session.advance_to_discovery(seen.append)
        if isinstance(step, DiscoveryCompleted):
            return steps, seen
        assert (step.paused.slot, step.paused.batch_index) == (
            step.discovery.slot,
            step.discovery.batch_index,
        )
        steps.append(step)


@bounded(30)
async def test_managed_session_steps_through_discoveries() -> None:
    async with simtrio.server.serve(api_key=KEY) as server:
        create = CreateSession(4000, end_slot=4006, discoveries=[ProgramExecuted(TOKEN)])
        async with open_managed_session(server.url, KEY, create, config=CONFIG) as session:
            steps, seen = await _walk(session)
    assert steps
    positions = [(s.paused.slot, s.paused.batch_index or 0) for s in steps]
    assert positions == sorted(set(positions))
    assert isinstance(seen[-1], events.Completed)


@bounded(30)
async def test_driver_read_readiness_first() -> None:
    # The driver took ReadyForContinue itself; the session still knows it may step.
    async with simtrio.server.serve(api_key=KEY) as server:
        create = CreateSession(4000, end_slot=4004, discoveries=[ProgramExecuted(TOKEN)])
        async with open_managed_session(server.url, KEY, create, config=CONFIG) as session:
            while not isinstance(await session.next_event(), events.ReadyForContinue):
                pass
            step = await session.advance_to_discovery()
            assert isinstance(step, DiscoveryPaused | DiscoveryCompleted)


@bounded(30)
async def test_sub_sessions_step_through_discoveries() -> None:
    async with simtrio.server.serve(api_key=KEY) as server:
        create = CreateSession(1000, end_slot=1120, discoveries=[ProgramExecuted(TOKEN)])
        async with open_parallel_session(server.url, KEY, create, config=CONFIG) as run:
            subs = run.take_sub_sessions()
            for sub in subs:
                steps, seen = await _walk(sub)
                assert all(sub.range[0] <= s.paused.slot <= sub.range[1] for s in steps)
                assert isinstance(seen[-1], events.Completed)
