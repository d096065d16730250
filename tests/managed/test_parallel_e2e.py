"""Parallel sessions end to end against the reference server, with injected faults.

Each faulty run is compared with a fault-free run of the same deterministic chain: every
sub-session's control events must arrive exactly once and in order.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

import simtrio.server
from simtrio import events
from simtrio.managed.parallel import ParallelSubSession, open_parallel_session
from simtrio.params import Continue, CreateSession
from simtrio.server import FaultPlan, Faults
from tests.managed.driving import CONFIG, KEY, drive, on_first_control, without_reannounced

PARALLEL = CreateSession(1000, end_slot=1549, disconnect_timeout_secs=60)


async def run_parallel(faults: FaultPlan | None) -> dict[tuple[int, int], list[events.Event]]:
    out: dict[tuple[int, int], list[events.Event]] = {}
    async with simtrio.server.serve(api_key=KEY, faults=faults or FaultPlan()) as server:
        async with open_parallel_session(server.url, KEY, PARALLEL, config=CONFIG) as parallel:
            subs = parallel.take_sub_sessions()
            assert len(subs) == 6

            async def one(sub: ParallelSubSession, step: int) -> None:
                out[sub.range] = await drive(sub, step)

            async with trio.open_nursery() as nursery:
                for index, sub in enumerate(subs):
                    nursery.start_soon(one, sub, 7 + index)
        assert server.connection_count("control") >= (2 if faults else 1)
    return out


@pytest.mark.parametrize(
    "faults",
    [
        on_first_control(Faults(drop_after=10)),  # during the create: re-sent
        on_first_control(Faults(drop_after=60)),
        FaultPlan(control_connections={1: Faults(drop_after=80), 2: Faults(drop_after=150)}),
        on_first_control(Faults(malformed_at=100)),
    ],
    ids=["drop-in-create", "drop-60", "drop-twice", "malformed"],
)
async def test_parallel_run_survives_faults(
    autojump_clock: trio.testing.MockClock, faults: FaultPlan
) -> None:
    reference = await run_parallel(None)
    seen = await run_parallel(faults)
    assert seen.keys() == reference.keys()
    for key, evs in seen.items():
        normalized, reannounced = without_reannounced(evs)
        assert normalized == reference[key]
        assert reannounced <= 2  # at most one lost continue per lost connection
    for (start, end), evs in seen.items():
        assert evs[-1] == events.Completed(None, None)
        slots = [ev.slot for ev in evs if isinstance(ev, events.Slot)]
        assert slots == list(range(start, end + 1))


async def test_parallel_with_subscriptions_and_faults(
    autojump_clock: trio.testing.MockClock,
) -> None:
    create = CreateSession(3000, end_slot=3399, disconnect_timeout_secs=60)
    plan = FaultPlan(
        control_connections={1: Faults(drop_after=70)},
        data_connections={2: Faults(drop_after=20), 3: Faults(drop_after=5)},
    )
    async with simtrio.server.serve(faults=plan) as server:
        program = server.config.program_ids[0]
        async with open_parallel_session(server.url, KEY, create, config=CONFIG) as parallel:
            subs = parallel.take_sub_sessions()
            assert len(subs) == 4
            for sub in subs:
                sub.subscribe_transactions([program])
                sub.set_completion_drain_timeout(30)
            seen: dict[tuple[int, int], list[events.Event]] = {}

            async def one(sub: ParallelSubSession) -> None:
                seen[sub.range] = await drive(sub, 25)

            async with trio.open_nursery() as nursery:
                for sub in subs:
                    nursery.start_soon(one, sub)
        assert server.connection_count("control") == 2
        assert server.connection_count("data") >= 5
    for (start, end), evs in seen.items():
        assert evs[-1] == events.Completed(None, None)
        slots = [ev.slot for ev in evs if isinstance(ev, events.Slot)]
        assert slots == list(range(start, end + 1))
        tx_slots = [ev.notification.slot for ev in evs if isinstance(ev, events.Transaction)]
        assert tx_slots == sorted(tx_slots)  # replay may repeat a boundary slot, never go back
        assert start <= tx_slots[0] <= start + 1
        assert tx_slots[-1] >= end - 1


async def test_sub_session_aclose_against_the_reference_server(
    autojump_clock: trio.testing.MockClock,
) -> None:
    create = CreateSession(3000, end_slot=3199, disconnect_timeout_secs=60)
    async with simtrio.server.serve() as server:
        program = server.config.program_ids[0]
        async with open_parallel_session(server.url, KEY, create, config=CONFIG) as parallel:
            a, b = parallel.take_sub_sessions()
            a.subscribe_transactions([program])
            b.subscribe_transactions([program])
            while not isinstance(await a.next_event(), events.ReadyForContinue):
                pass
            await a.send_continue(Continue(1))  # waits until its subscription is UP
            # b's subscription comes up on its own schedule: wait for its ack, not a's.
            await b._sink.wait_all_up()  # pyright: ignore[reportPrivateUsage]
            sessions = server.sessions
            assert sessions[a.session_info.session_id].subscriptions == 1
            assert sessions[b.session_info.session_id].subscriptions == 1
            await a.aclose()
            await trio.testing.wait_all_tasks_blocked()
            sessions = server.sessions
            assert sessions[a.session_info.session_id].subscriptions == 0
            assert sessions[b.session_info.session_id].subscriptions == 1
            evs: list[events.Event] = []
            async for ev in a.events():  # control events still flow, without notifications
                evs.append(ev)
                if isinstance(ev, events.ReadyForContinue):
                    await a.send_continue(Continue(50))
            assert evs[-1] == events.Completed(None, None)
            assert not any(isinstance(ev, events.Transaction) for ev in evs)
