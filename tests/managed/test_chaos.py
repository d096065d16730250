"""The seeded chaos run in CI, its checker, and regressions for the bugs chaos runs found."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from simtrio import events
from simtrio.errors import ContinueSendFailed
from simtrio.managed.config import ConnectionStatus
from simtrio.managed.coordinator import ReconnectCoordinator, SessionGate
from simtrio.managed.parallel import ParallelSubSession, open_parallel_session
from simtrio.managed.status import StatusCell
from simtrio.params import Continue, CreateSession
from simtrio.server import FaultKind, FaultPlan, Faults, Plane, serve
from simtrio.wire.types import BacktestStatus
from tests.managed.chaos import (
    GAP_MARK,
    STANDALONE,
    _Tally,
    check_control,
    check_stream,
    run_chaos,
)
from tests.managed.configs import FAST
from tests.managed.fakes import control_of

if TYPE_CHECKING:
    from collections.abc import Callable

TOKEN = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
CI_SEED = 20_250_105


@pytest.mark.slow
async def test_chaos_fifty_sub_sessions_two_hundred_faults(
    autojump_clock: trio.testing.MockClock,
) -> None:
    report = await run_chaos(CI_SEED, sub_sessions=50, faults=200)
    assert report.faults_injected >= 200, report.faults_by_kind
    assert {kind.split(":")[0] for kind in report.faults_by_kind} == {"control", "data"}
    assert report.connections["control"] > 2
    assert report.failures == {}
    assert report.lost == 0
    assert report.duplicated == 0
    assert report.out_of_order == 0
    assert report.mismatched == 0
    assert report.control_events_checked >= 50 * 19
    assert report.data_notifications_checked > 1000
    assert report.boundary_duplicates > 0  # replays did happen, and only repeated boundaries


@pytest.mark.slow
@pytest.mark.parametrize(
    ("seed", "sub_sessions", "single", "faults"),
    [
        (994_367_574, 2, False, 20),  # two 400-slot sub-sessions; lost ~1,000 without a barrier
        (622_138_524, 1, True, 15),  # one 400-slot managed session
    ],
)
async def test_chaos_long_sessions_lose_nothing_silently(
    autojump_clock: trio.testing.MockClock,
    seed: int,
    sub_sessions: int,
    single: bool,
    faults: int,
) -> None:
    """Stalls, half-open connections and cuts on 400-slot sessions and a standalone stream.

    Every (sub-)session completes with every notification; the standalone subscription,
    which cannot hold its session back, either gets everything too or reports a gap.
    """
    report = await run_chaos(
        seed, sub_sessions=sub_sessions, slots=400, faults=faults, single=single
    )
    assert report.faults_injected >= faults * 3 // 4, report.faults_by_kind
    assert report.unexpected_failures == {}
    assert set(report.failures) <= {STANDALONE}
    assert all(GAP_MARK in failure for failure in report.failures.values())
    assert report.lost == 0
    assert report.duplicated == 0
    assert report.out_of_order == 0
    assert report.mismatched == 0
    assert report.data_notifications_checked > 1000


# -- the checker itself ------------------------------------------------------------------------

READY = events.ReadyForContinue()
DECODED = events.Status(BacktestStatus.DECODED_TRANSACTIONS)


def control_tally(
    seen: list[events.Event], expected: list[events.Event], attaches: int = 1
) -> _Tally:
    tally = _Tally()
    check_control(seen, expected, tally, attaches=attaches)
    return tally


def test_control_check_tolerates_only_a_repeated_readiness() -> None:
    expected: list[events.Event] = [events.Slot(1), READY, DECODED, events.Slot(2), READY]
    clean = control_tally([events.Slot(1), READY, READY, DECODED, events.Slot(2), READY], expected)
    assert (clean.lost, clean.duplicated, clean.out_of_order, clean.reannounced) == (0, 0, 0, 1)
    no_attach = control_tally(
        [events.Slot(1), READY, READY, DECODED, events.Slot(2), READY], expected, attaches=0
    )
    assert (no_attach.duplicated, no_attach.reannounced) == (1, 0)
    doubled = control_tally(
        [events.Slot(1), READY, DECODED, DECODED, events.Slot(2), READY], expected
    )
    assert doubled.duplicated == 1
    missing = control_tally([events.Slot(1), READY, events.Slot(2), READY], expected)
    assert missing.lost == 1
    swapped = control_tally([events.Slot(1), READY, events.Slot(2), DECODED, READY], expected)
    assert swapped.out_of_order == 1


def stream_tally(seen: list[tuple[int, bytes]], expected: list[tuple[int, bytes]]) -> _Tally:
    tally = _Tally()
    check_stream(seen, expected, tally)
    return tally


def test_stream_check_tolerates_only_boundary_repeats() -> None:
    a, b, c, d = (5, b"a"), (5, b"b"), (6, b"c"), (8, b"d")
    expected = [a, b, c, d]
    replayed = stream_tally([a, b, a, b, c, c, d], expected)
    assert (replayed.lost, replayed.duplicated, replayed.boundary) == (0, 0, 3)
    old_repeat = stream_tally([a, b, c, a, d], expected)  # slot 5 again after slot 6
    assert old_repeat.duplicated == 1
    gap = stream_tally([a, b, d], expected)
    assert gap.lost == 1
    said = _Tally()
    check_stream([a, b], expected, said, raised=True)  # its owner raised: explicit, not lost
    assert (said.lost, said.explicit) == (0, 2)
    late = stream_tally([a, c, b, d], expected)
    assert late.out_of_order == 1
    foreign = stream_tally([a, b, c, (7, b"x"), d], expected)
    assert foreign.mismatched == 1


# -- regressions found by chaos runs -----------------------------------------------------------


async def test_parked_subscription_does_not_wait_for_its_own_session(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """§9.8 parking: a session's other connections must not keep its parked one waiting.

    Each sub-session streams transactions, then adds an account-diff subscription whose first
    three connections are refused, so it parks. Before the fix it waited for every streaming
    sibling connection to end, its own session's (which cannot advance while it is parked)
    included: both sessions waited for each other until their outage budgets ran out.
    """
    refused = {index: Faults(reject_upgrade=503) for index in range(3, 9)}
    create = CreateSession(4000, end_slot=4199, disconnect_timeout_secs=120)
    async with serve(faults=FaultPlan(data_connections=refused)) as server:
        async with open_parallel_session(server.url, "k", create, config=FAST) as parallel:
            subs = parallel.take_sub_sessions()
            assert len(subs) == 2
            for sub in subs:
                sub.subscribe_transactions([TOKEN])
            for sub in subs:
                while not isinstance(await sub.next_event(), events.ReadyForContinue):
                    pass
                await sub.send_continue(Continue(0))  # returns once the subscription is UP
            assert server.connection_count("data") == 2
            for sub in subs:
                sub.subscribe_account_diffs([TOKEN])
            done: list[events.Event] = []

            async def drive(sub: ParallelSubSession) -> None:
                async for event in sub.events():
                    if isinstance(event, events.ReadyForContinue):
                        await sub.send_continue(Continue(100))
                    elif isinstance(event, events.Completed):
                        done.append(event)

            with trio.fail_after(60):
                async with trio.open_nursery() as nursery:
                    for sub in subs:
                        nursery.start_soon(drive, sub)
        assert len(done) == 2
        assert server.connection_count("data") >= 10  # 2 + 6 refused + 2


async def test_session_gate_withdraws_streaming_while_parked() -> None:
    coordinator = ReconnectCoordinator()
    mine, other = SessionGate(coordinator), SessionGate(coordinator)
    mine.stream_started()
    other.stream_started()
    assert coordinator.streaming == 2
    async with trio.open_nursery() as nursery:
        nursery.start_soon(mine.acquire_slot)
        await trio.testing.wait_all_tasks_blocked()
        assert coordinator.streaming == 1  # only the other session's connection counts
        assert coordinator.parked == 1
        other.stream_stopped()
    assert coordinator.slot_taken
    assert coordinator.streaming == 1  # mine counts again once nothing of it is parked
    mine.release_slot()
    mine.stream_stopped()
    assert coordinator.streaming == 0


class FlappingCell(StatusCell):
    """Returns from its first UP wait with the connection already lost again."""

    def __init__(self, value: ConnectionStatus) -> None:
        super().__init__(value)
        self.flaps = 0

    async def wait_until(self, predicate: Callable[[ConnectionStatus], bool]) -> ConnectionStatus:
        value = await super().wait_until(predicate)
        if value is ConnectionStatus.UP and not self.flaps:
            self.flaps += 1
            self.set(ConnectionStatus.RECONNECTING)  # lost during the wake-up's checkpoint
        return self.value


async def test_continue_survives_a_loss_right_after_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A connection lost between a waiter's wake-up and its return is no reason to fail.

    A waiter can find the connection RECONNECTING again by the time it looks (the cell here
    makes that happen); ``send_continue`` raised "the control task has ended" for that.
    """
    create = CreateSession(4000, end_slot=4099, disconnect_timeout_secs=60)
    async with serve() as server:
        async with open_parallel_session(server.url, "k", create, config=FAST) as parallel:
            (sub,) = parallel.take_sub_sessions()
            control = control_of(parallel)
            cell = control.status = FlappingCell(control.status.value)
            while not isinstance(await sub.next_event(), events.ReadyForContinue):
                pass
            cell.set(ConnectionStatus.RECONNECTING)  # so that send_continue waits for UP
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sub.send_continue, Continue(100))
                await trio.testing.wait_all_tasks_blocked()
                cell.set(ConnectionStatus.UP)  # it wakes up to find the connection lost again
                await trio.testing.wait_all_tasks_blocked()
                assert cell.flaps == 1
                cell.set(ConnectionStatus.UP)
            assert cell.flaps == 1
            seen = [event async for event in sub.events()]
        assert seen[-1] == events.Completed(None, None)


async def test_continue_still_fails_once_the_control_task_ended(
    autojump_clock: trio.testing.MockClock,
) -> None:
    create = CreateSession(4000, end_slot=4099, disconnect_timeout_secs=60)
    async with (
        serve() as server,
        open_parallel_session(server.url, "k", create, config=FAST) as parallel,
    ):
        (sub,) = parallel.take_sub_sessions()
        control = control_of(parallel)
        control.request_close()
        await control.done.wait()
        with pytest.raises(ContinueSendFailed, match="ended"):
            await sub.send_continue(Continue(1))


async def test_server_counts_only_faults_that_took_effect(
    autojump_clock: trio.testing.MockClock,
) -> None:
    plan = FaultPlan(
        control_connections={
            1: Faults(malformed_at=2),
            2: Faults(stall_after=1, stall_for=0.5, drop_after=3),
            3: Faults(drop_after=100_000),  # never reached
        }
    )
    create = CreateSession(4000, end_slot=4009, disconnect_timeout_secs=60)
    async with serve(faults=plan) as server:
        async with open_parallel_session(server.url, "k", create, config=FAST) as parallel:
            (sub,) = parallel.take_sub_sessions()
            async for event in sub.events():
                if isinstance(event, events.ReadyForContinue):
                    await sub.send_continue(Continue(10))
        assert server.connection_count("control") == 3
        assert server.faults_injected == {
            (Plane.CONTROL, FaultKind.MALFORMED): 1,
            (Plane.CONTROL, FaultKind.STALL): 1,
            (Plane.CONTROL, FaultKind.DROP): 1,
        }
