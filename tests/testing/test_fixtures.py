"""The plugin's fixtures used directly by this suite (the plugin is loaded via its entry point)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio

from simtrio import events
from simtrio.server import FaultPlan, Faults, ServerConfig
from tests.testing.helpers import record_run_sync, strategy

if TYPE_CHECKING:
    from collections.abc import Iterator

    from trio.testing import MockClock

    from simtrio.recording import ReplayServer
    from simtrio.server import ReferenceServer

# The replay marker needs the store's path at collection time; the file itself is written by
# the module-scoped fixture below, before any test of this module sets up ``simtrio_replay``.
STORE = Path(tempfile.gettempdir()) / f"simtrio-plugin-test-{os.getpid()}.db"


@pytest.fixture(scope="module")
def recorded_run() -> Iterator[str]:
    run_id = record_run_sync(STORE)
    try:
        yield run_id
    finally:
        for path in STORE.parent.glob(STORE.name + "*"):
            path.unlink()


async def test_server_runs_a_managed_session(simtrio_server: ReferenceServer) -> None:
    with trio.fail_after(10):
        seen = await strategy(simtrio_server.url)
    assert isinstance(seen[-1], events.Completed)
    assert [e.slot for e in seen if isinstance(e, events.Slot)] == list(range(1000, 1012))
    assert simtrio_server.connection_count("control") == 1


@pytest.mark.simtrio_server(seed=4, faults=FaultPlan(control_connections={1: Faults(drop_after=9)}))
async def test_server_marker_injects_faults(
    simtrio_server: ReferenceServer, autojump_clock: MockClock
) -> None:
    assert simtrio_server.config.seed == 4
    seen = await strategy(simtrio_server.url)
    assert isinstance(seen[-1], events.Completed)
    assert simtrio_server.connection_count("control") == 2


async def test_server_ids_are_deterministic(simtrio_server: ReferenceServer) -> None:
    assert simtrio_server.config.deterministic_ids


@pytest.mark.parametrize(
    "simtrio_server", [{"api_key": "k1"}, ServerConfig(api_key="k2", seed=8)], indirect=True
)
async def test_server_indirect_parameters(simtrio_server: ReferenceServer) -> None:
    assert simtrio_server.config.api_key in ("k1", "k2")
    assert simtrio_server.config.seed == (8 if simtrio_server.config.api_key == "k2" else 0)


@pytest.mark.simtrio_replay(store=STORE)
async def test_replay_serves_the_recorded_run(
    recorded_run: str, simtrio_replay: ReplayServer, request: pytest.FixtureRequest
) -> None:
    assert simtrio_replay.run_id == recorded_run
    with trio.fail_after(10):
        seen = await strategy(simtrio_replay.url)
    assert isinstance(seen[-1], events.Completed)
    assert simtrio_replay.divergence is None
    assert request.node.get_closest_marker("simtrio_recorded") is not None


@pytest.mark.simtrio_replay(store=STORE, raise_on_divergence=False)
async def test_replay_keeps_a_divergence_when_asked(
    recorded_run: str, simtrio_replay: ReplayServer
) -> None:
    with trio.fail_after(10):
        seen = await strategy(simtrio_replay.url, step=3)  # the recording stepped by 4
    assert isinstance(seen[-1], events.ErrorEvent)
    assert simtrio_replay.divergence is not None
    assert simtrio_replay.divergence.step == 1
