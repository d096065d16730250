"""No silent data-plane loss: a stalled data connection holds the session back.

The reference server keeps only the last 100 slots of data-plane events for replay. A
session that runs on while one of its data connections is stalled would leave the
subscription's replay with a hole; the session must either deliver every notification of a
fault-free run or raise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio

import simtrio.server
from simtrio import events
from simtrio.errors import ContinueSendFailed, SubscriptionFailed
from simtrio.managed.config import ManagedConfig
from simtrio.managed.session import open_managed_session
from simtrio.managed.standalone import open_transaction_subscription
from simtrio.params import Continue, CreateSession
from simtrio.server import FaultPlan, Faults
from tests.server import helpers

if TYPE_CHECKING:
    import trio.testing

KEY = "barrier-key"
CONFIG = ManagedConfig(rng_seed=5)
RANGE = CreateSession(3000, end_slot=3399, disconnect_timeout_secs=60)


async def run(faults: FaultPlan | None) -> tuple[list[bytes], bool]:
    """Signatures of every transaction (deduplicated, in order), and whether it completed."""
    seen: dict[bytes, None] = {}
    completed = False
    async with (
        simtrio.server.serve(api_key=KEY, faults=faults or FaultPlan()) as server,
        open_managed_session(server.url, KEY, RANGE, config=CONFIG) as session,
    ):
        session.subscribe_transactions([helpers.TOKEN])
        async for event in session.events():
            if isinstance(event, events.ReadyForContinue):
                await session.send_continue(Continue(1))
            elif isinstance(event, events.Transaction):
                seen[repr(event.notification.transaction).encode()] = None
            elif isinstance(event, events.Completed):
                completed = True
    return list(seen), completed


async def test_a_stalled_data_connection_loses_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    clean, clean_completed = await run(None)
    assert clean_completed
    assert len(clean) > 400
    stalled = FaultPlan(data_connections={1: Faults(stall_after=3, stall_for=10.0)})
    got, completed = await run(stalled)
    assert completed
    assert got == clean


async def test_a_step_longer_than_the_retention_reports_the_gap(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """One continue of 300 slots while the data connection is stalled: the server runs past
    its 100 retained slots, so the replay cannot be complete; that must be said."""
    stalled = FaultPlan(data_connections={1: Faults(stall_after=3, stall_for=60.0)})
    got: list[events.Event] = []

    async def drive() -> None:
        async with (
            simtrio.server.serve(api_key=KEY, faults=stalled) as server,
            open_managed_session(server.url, KEY, RANGE, config=CONFIG) as session,
        ):
            session.subscribe_transactions([helpers.TOKEN])
            async for event in session.events():
                got.append(event)
                if isinstance(event, events.ReadyForContinue):
                    await session.send_continue(Continue(300))

    # Raised by the next send_continue (ContinueSendFailed) or next_event (SubscriptionFailed).
    with pytest.raises((SubscriptionFailed, ContinueSendFailed), match="data-plane gap"):
        await drive()
    assert not any(isinstance(event, events.Completed) for event in got)


async def test_standalone_subscription_dropped_before_its_first_notification_resumes_from_its_start(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def run(faults: FaultPlan) -> list[int]:
        async with (
            simtrio.server.serve(seed=3, faults=faults) as server,
            helpers.connect(server) as control,
        ):
            session_id = await helpers.open_session(
                control, helpers.create(5000, 5040, disconnectTimeoutSecs=60)
            )
            rpc = f"{server.http_url}/backtest/{session_id}"
            async with open_transaction_subscription(rpc, [helpers.TOKEN], config=CONFIG) as sub:
                await sub.wait_up()
                # The data connection drops right after its ack; the session runs meanwhile.
                await control.send(helpers.cont(41))
                return [n.notification.slot async for n in sub.notifications]

    clean = await run(FaultPlan())
    dropped = await run(FaultPlan(data_connections={1: Faults(drop_after=1)}))
    assert clean
    assert clean[0] < 5010
    assert sorted(set(dropped)) == sorted(set(clean))
