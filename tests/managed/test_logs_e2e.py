"""Program logs subscriptions (managed, sub-session, standalone) against the reference server."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio

import simtrio.server
from simtrio import events
from simtrio.core.backoff import BackoffPolicy
from simtrio.errors import InvalidParams
from simtrio.managed.config import ManagedConfig
from simtrio.managed.parallel import open_parallel_session
from simtrio.managed.session import open_managed_session
from simtrio.managed.standalone import open_logs_subscription
from simtrio.params import Continue, CreateSession
from simtrio.server import FaultPlan, Faults
from simtrio.server.config import ServerConfig
from tests.client.helpers import bounded

if TYPE_CHECKING:
    import trio.testing

KEY = "logs-key"
CONFIG = ManagedConfig(rng_seed=9)
TOKEN = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"


@bounded(30)
async def test_managed_session_receives_program_logs() -> None:
    config = ServerConfig(seed=41, failure_rate=0.3, api_key=KEY)
    async with simtrio.server.serve(config) as server:
        create = CreateSession(4000, end_slot=4007)
        async with open_managed_session(server.url, KEY, create, config=CONFIG) as session:
            session.subscribe_program_logs([TOKEN])
            logs: list[events.ProgramLogs] = []
            async for ev in session.events():
                if isinstance(ev, events.ReadyForContinue):
                    await session.send_continue(Continue(8))
                elif isinstance(ev, events.ProgramLogs):
                    logs.append(ev)
    assert len(logs) > 4
    assert all(log.program_id == TOKEN for log in logs)
    assert all(log.logs and log.logs[0].startswith("Program ") for log in logs)
    assert any(log.err is not None for log in logs)
    assert [log.slot for log in logs] == sorted(log.slot for log in logs)


@bounded(30)
async def test_sub_session_and_standalone_logs() -> None:
    async with simtrio.server.serve(api_key=KEY) as server:
        create = CreateSession(1000, end_slot=1060)
        async with open_parallel_session(server.url, KEY, create, config=CONFIG) as run:
            sub = run.take_sub_sessions()[0]
            sub.subscribe_program_logs([TOKEN])
            seen = 0
            async with open_logs_subscription(sub.session_info.rpc_endpoint, [TOKEN]) as alone:
                async for ev in sub.events():
                    if isinstance(ev, events.ReadyForContinue):
                        await sub.send_continue(Continue(sub.range[1] - sub.range[0] + 1))
                    elif isinstance(ev, events.ProgramLogs):
                        seen += 1
                standalone = [ev async for ev in alone.notifications]
    assert seen > 0
    assert len(standalone) == seen
    assert all(isinstance(ev, events.ProgramLogs) for ev in standalone)


async def test_bad_program_ids() -> None:
    with pytest.raises(InvalidParams):
        async with open_logs_subscription("http://127.0.0.1:1/backtest/x", TOKEN):
            pass


async def _logs_run(server: simtrio.server.ReferenceServer) -> list[events.ProgramLogs]:
    from tests.server import helpers

    async with helpers.connect(server) as control:
        session_id = await helpers.open_session(
            control, helpers.create(4000, 4019, disconnectTimeoutSecs=60)
        )
        rpc = f"{server.http_url}/backtest/{session_id}"
        got: list[events.ProgramLogs] = []
        config = ManagedConfig(backoff=BackoffPolicy(initial=0.05, jitter="none"))
        async with open_logs_subscription(rpc, [TOKEN], config=config) as sub:
            await sub.wait_up()
            await control.send(helpers.cont(20))
            await control.recv_until(lambda t: '"completed"' in t)
            async for ev in sub.notifications:
                got.append(ev)
    return got


async def test_logs_resume_after_a_dropped_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with simtrio.server.serve(seed=7) as server:
        server.set_faults(FaultPlan(data_connections={1: Faults(drop_after=5)}))
        faulted = await _logs_run(server)
        assert server.connection_count("data") >= 2
        clean = await _logs_run(server)
    key = [(ev.slot, ev.signature) for ev in clean]
    assert len(set(key)) == len(key) > 5
    # Replay repeats (inclusively) only what was delivered: nothing lost, nothing reordered.
    assert list(dict.fromkeys((ev.slot, ev.signature) for ev in faulted)) == key
