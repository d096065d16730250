"""``advance_to_discovery`` on the plain client: the stepper's decisions and a real run."""

from __future__ import annotations

from simtrio import wire
from simtrio.client import BacktestClient
from simtrio.core.discovery import (
    DiscoveryCompleted,
    DiscoveryPaused,
    DiscoveryStepper,
    Next,
)
from simtrio.params import CreateSession
from simtrio.server import serve
from tests.client.helpers import KEY, bounded

TOKEN = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
NOBODY = "Vote111111111111111111111111111111111111111"


def _batch(slot: int, index: int) -> wire.DiscoveryBatchEvent:
    return wire.DiscoveryBatchEvent(slot, index, [wire.ProgramExecuted(TOKEN)], [])


def test_batches_before_readiness_are_kept() -> None:
    stepper = DiscoveryStepper()
    stepper.batch(_batch(4001, 2))
    assert stepper.next() is Next.READ  # not ready yet: the batch waits
    stepper.ready(None)
    assert stepper.next() == _batch(4001, 2)
    stepper.sent()
    assert stepper.next() is Next.READ
    result = stepper.ready(wire.PausedEvent(4001, 2))
    assert result == DiscoveryPaused(_batch(4001, 2), wire.PausedEvent(4001, 2))


def test_no_batch_settles_then_runs_on() -> None:
    stepper = DiscoveryStepper()
    stepper.ready(None)
    assert stepper.next() is Next.SETTLE
    assert stepper.next(settled=True) is Next.RUN_ON
    stepper.sent_run_on()
    assert stepper.next() is Next.READ
    assert stepper.completed(None, None) == DiscoveryCompleted()


def test_stale_batches_are_dropped() -> None:
    stepper = DiscoveryStepper()
    stepper.batch(_batch(4001, 1))
    stepper.batch(_batch(4002, 3))
    stepper.batch(_batch(4003, 0))
    stepper.slot(4002)
    assert stepper.next() is Next.READ
    stepper.ready(wire.PausedEvent(4002, 3))
    assert stepper.next() == _batch(4003, 0)


def test_batches_of_the_current_slot_stay() -> None:
    stepper = DiscoveryStepper()
    stepper.slot(4000)
    stepper.batch(_batch(4000, 1))
    stepper.ready(None)
    assert stepper.next() == _batch(4000, 1)


def test_refused_step_leaves_the_session_ready() -> None:
    stepper = DiscoveryStepper()
    stepper.ready(None)
    stepper.batch(_batch(4001, 0))
    stepper.next()
    stepper.sent()
    stepper.refused()
    assert stepper.is_ready
    assert stepper.next() is Next.SETTLE


@bounded(20)
async def test_advance_to_discovery_steps_through_the_range() -> None:
    async with serve(seed=3, api_key=KEY) as server:
        client = BacktestClient(server.url, KEY, request_timeout=10)
        create = CreateSession(
            4000, end_slot=4004, send_summary=True, discoveries=[wire.ProgramExecuted(TOKEN)]
        )
        async with client.create_session(create) as session:
            seen: list[wire.BacktestResponse] = []
            steps: list[DiscoveryPaused] = []
            while True:
                step = await session.advance_to_discovery(on_response=seen.append)
                if isinstance(step, DiscoveryCompleted):
                    break
                assert step.paused.slot == step.discovery.slot
                assert step.paused.batch_index == step.discovery.batch_index
                assert session.is_ready_for_continue
                steps.append(step)
            assert steps, "the synthetic chain runs the token program in this range"
            positions = [(s.paused.slot, s.paused.batch_index or 0) for s in steps]
            assert positions == sorted(set(positions))
            assert step.summary is not None
            assert any(isinstance(r, wire.Completed) for r in seen)


@bounded(20)
async def test_no_discovery_runs_to_completion() -> None:
    async with serve(seed=3, api_key=KEY) as server:
        client = BacktestClient(server.url, KEY, request_timeout=10)
        create = CreateSession(4000, end_slot=4003, discoveries=[wire.ProgramExecuted(NOBODY)])
        async with client.create_session(create) as session:
            step = await session.advance_to_discovery(settle=0.05)
            assert isinstance(step, DiscoveryCompleted)
