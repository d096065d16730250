"""Managed sessions end to end against the reference server, with injected faults.

Every control event must arrive exactly once and in order whatever the faults: each faulty run
is compared with a fault-free run of the same deterministic chain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio

import simtrio.server
from simtrio import events
from simtrio.errors import ControlFailed
from simtrio.managed.session import open_managed_session
from simtrio.params import Continue, CreateSession
from simtrio.server import FaultPlan, Faults
from tests.managed.driving import CONFIG, KEY, drive, on_first_control, without_reannounced

if TYPE_CHECKING:
    import trio.testing

SINGLE = CreateSession(2000, end_slot=2030, disconnect_timeout_secs=60, send_summary=True)


async def run_single(faults: FaultPlan | None, step: int = 4) -> list[events.Event]:
    async with simtrio.server.serve(api_key=KEY, faults=faults or FaultPlan()) as server:
        async with open_managed_session(server.url, KEY, SINGLE, config=CONFIG) as session:
            seen = await drive(session, step)
        assert server.connection_count("control") >= (2 if faults else 1)
    return seen


@pytest.fixture
async def reference_single() -> list[events.Event]:
    return await run_single(None)


@pytest.mark.parametrize(
    "faults",
    [
        on_first_control(Faults(drop_after=3)),  # during the bundle preparation
        on_first_control(Faults(drop_after=9)),  # right after a continue
        on_first_control(Faults(drop_after=26)),  # mid-run
        FaultPlan(control_connections={1: Faults(drop_after=12), 2: Faults(drop_after=8)}),
        on_first_control(Faults(malformed_at=14)),
    ],
    ids=["drop-3", "drop-9", "drop-26", "drop-twice", "malformed"],
)
async def test_single_run_survives_faults(
    autojump_clock: trio.testing.MockClock,
    reference_single: list[events.Event],
    faults: FaultPlan,
) -> None:
    seen, reannounced = without_reannounced(await run_single(faults))
    assert seen == reference_single
    assert reannounced <= 2
    assert isinstance(seen[-1], events.Completed)
    assert seen[-1].summary is not None
    slots = [ev.slot for ev in seen if isinstance(ev, events.Slot)]
    assert slots == list(range(2000, 2031))


async def test_single_run_survives_a_stall(
    autojump_clock: trio.testing.MockClock, reference_single: list[events.Event]
) -> None:
    seen, reannounced = without_reannounced(
        await run_single(on_first_control(Faults(stall_after=10)))
    )
    assert seen == reference_single
    assert reannounced <= 1


async def test_single_run_survives_a_restart(
    autojump_clock: trio.testing.MockClock, reference_single: list[events.Event]
) -> None:
    async with (
        simtrio.server.serve(api_key=KEY) as server,
        open_managed_session(server.url, KEY, SINGLE, config=CONFIG) as session,
    ):
        seen: list[events.Event] = []
        async for ev in session.events():
            seen.append(ev)
            if isinstance(ev, events.Slot) and ev.slot in (2005, 2017):
                server.restart()
            if isinstance(ev, events.ReadyForContinue):
                await session.send_continue(Continue(4))
    assert without_reannounced(seen)[0] == reference_single


async def test_session_without_disconnect_timeout_fails_on_loss(
    autojump_clock: trio.testing.MockClock,
) -> None:
    create = CreateSession(2000, end_slot=2010)
    async with (
        simtrio.server.serve(faults=on_first_control(Faults(drop_after=6))) as server,
        open_managed_session(server.url, KEY, create, config=CONFIG) as session,
    ):
        with pytest.raises(ControlFailed) as info:
            await drive(session, 2)
    assert info.value.error is not None
    assert info.value.error.kind == "SessionNotFound"


async def test_subscriptions_drain_before_completed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with simtrio.server.serve(faults=on_first_control(Faults(drop_after=15))) as server:
        program = server.config.program_ids[0]
        async with open_managed_session(server.url, KEY, SINGLE, config=CONFIG) as session:
            session.subscribe_transactions([program])
            session.set_completion_drain_timeout(30)
            seen = await drive(session, 5)
        assert server.connection_count("control") == 2
    control = [ev for ev in seen if not isinstance(ev, events.Transaction)]
    assert control[-1] == seen[-1]
    assert isinstance(seen[-1], events.Completed)
    transactions = [ev for ev in seen if isinstance(ev, events.Transaction)]
    assert transactions
    tx_slots = [ev.notification.slot for ev in transactions]
    assert max(tx_slots) >= 2025
