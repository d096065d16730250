"""Tests of a strategy against the embedded reference server and against a recorded run."""

import pytest
import simtrio
import trio
import trio.testing
from simtrio import events
from simtrio.recording import ReplayServer
from simtrio.server import FaultPlan, Faults, ReferenceServer

CREATE = simtrio.CreateSession(
    1000, end_slot=1019, send_summary=True, disconnect_timeout_secs=60
)


async def run_strategy(url: str, api_key: str = "") -> list[events.Event]:
    """The code under test: continue by five slots at every readiness until Completed."""
    seen: list[events.Event] = []
    async with simtrio.open_managed_session(url, api_key, CREATE) as session:
        async for event in session.events():
            seen.append(event)
            if isinstance(event, events.ReadyForContinue):
                await session.send_continue(simtrio.Continue(5))
    return seen


async def test_strategy_runs_every_slot(simtrio_server: ReferenceServer) -> None:
    with trio.fail_after(10):
        seen = await run_strategy(simtrio_server.url)
    assert [e.slot for e in seen if isinstance(e, events.Slot)] == list(
        range(1000, 1020)
    )
    assert isinstance(seen[-1], events.Completed)


@pytest.mark.simtrio_server(
    api_key="test-key",
    faults=FaultPlan(control_connections={1: Faults(drop_after=12)}),
)
async def test_strategy_survives_a_dropped_connection(
    simtrio_server: ReferenceServer, autojump_clock: trio.testing.MockClock
) -> None:
    seen = await run_strategy(simtrio_server.url, "test-key")
    assert isinstance(seen[-1], events.Completed)
    assert simtrio_server.connection_count("control") == 2


@pytest.mark.parametrize("simtrio_server", [{"seed": 1}, {"seed": 2}], indirect=True)
async def test_strategy_on_other_chains(simtrio_server: ReferenceServer) -> None:
    with trio.fail_after(10):
        seen = await run_strategy(simtrio_server.url)
    assert isinstance(seen[-1], events.Completed)


@pytest.mark.simtrio_replay(store="runs.db")
async def test_strategy_matches_the_recording(simtrio_replay: ReplayServer) -> None:
    with trio.fail_after(10):
        seen = await run_strategy(simtrio_replay.url)
    assert isinstance(seen[-1], events.Completed)
