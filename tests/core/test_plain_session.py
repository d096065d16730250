"""Plain-client bookkeeping: step accounting, readiness, the sequence cursor (protocol §6.1)."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from simtrio import events, wire
from simtrio.core.session import (
    ContinueResult,
    ReadinessTracker,
    ReadyOutcome,
    SequenceCursor,
    StepAccumulator,
    event_for,
)
from simtrio.errors import RemoteError

ST = wire.BacktestStatus
SUMMARY = wire.SessionSummary(correct_simulation=3, log_diff=1)
STATS = [wire.AgentStatsReport(name="arb", slots_processed=2)]


def feed_all(acc: StepAccumulator, responses: list[wire.BacktestResponse]) -> int:
    """Feed until done; returns how many responses were consumed."""
    for index, response in enumerate(responses):
        if acc.feed(response):
            return index + 1
    return len(responses)


def test_continue_result_defaults() -> None:
    result = ContinueResult()
    assert result.slot_notifications == 0
    assert result.last_slot is None
    assert result.statuses == []
    assert not result.ready_for_continue
    assert not result.completed
    assert result.summary is None
    assert result.agent_stats is None


def test_advance_counts_slots_and_ends_at_readiness() -> None:
    acc = StepAccumulator(advance_count=2)
    stream: list[wire.BacktestResponse] = [
        wire.Status(ST.EXECUTING_BLOCK_TRANSACTIONS),
        wire.SlotNotification(10),
        wire.UnknownResponse("weird", {"x": 1}),
        wire.DiscoveryBatch(wire.DiscoveryBatchEvent(slot=11, batch_index=0)),
        wire.SlotNotification(11),
        wire.Status(ST("newPhase")),
        wire.ReadyForContinue(),
        wire.SlotNotification(99),
    ]
    assert feed_all(acc, stream) == 7
    assert acc.done
    result = acc.result()
    assert result == ContinueResult(
        slot_notifications=2,
        last_slot=11,
        statuses=[ST.EXECUTING_BLOCK_TRANSACTIONS, ST("newPhase")],
        ready_for_continue=True,
    )


def test_advance_skips_readiness_before_the_count() -> None:
    acc = StepAccumulator(advance_count=3)
    assert not acc.feed(wire.SlotNotification(1))
    assert not acc.feed(wire.ReadyForContinue())
    assert not acc.result().ready_for_continue
    assert not acc.feed(wire.SlotNotification(2))
    assert not acc.feed(wire.SlotNotification(3))
    assert acc.feed(wire.Paused(wire.PausedEvent(slot=3)))
    assert acc.result().ready_for_continue


def test_advance_ends_at_completed_with_summary() -> None:
    acc = StepAccumulator(advance_count=5)
    assert not acc.feed(wire.SlotNotification(7))
    assert acc.feed(wire.Completed(SUMMARY, STATS))
    result = acc.result()
    assert result.completed
    assert not result.ready_for_continue
    assert result.summary == SUMMARY
    assert result.agent_stats == STATS
    assert result.slot_notifications == 1


def test_until_ready_ends_at_first_readiness() -> None:
    acc = StepAccumulator()
    assert acc.feed(wire.ReadyForContinue())
    assert acc.result().ready_for_continue
    assert acc.result().slot_notifications == 0


def test_zero_advance_ends_at_first_readiness() -> None:
    acc = StepAccumulator(advance_count=0)
    assert acc.feed(wire.Paused(wire.PausedEvent(slot=1, batch_index=2)))


def test_error_raises_remote_error() -> None:
    acc = StepAccumulator(advance_count=1)
    error = wire.AdvanceSlotFailed(slot=5, error="bank hash mismatch")
    with pytest.raises(RemoteError) as info:
        acc.feed(wire.Error(error))
    assert info.value.error is error


def test_feeding_after_done_is_a_bug() -> None:
    acc = StepAccumulator()
    acc.feed(wire.ReadyForContinue())
    with pytest.raises(RuntimeError):
        acc.feed(wire.SlotNotification(1))


def test_result_is_a_snapshot() -> None:
    acc = StepAccumulator()
    acc.feed(wire.Status(ST.BUNDLE_READY))
    first = acc.result()
    acc.feed(wire.Status(ST.STARTING_RUNTIME))
    assert first.statuses == [ST.BUNDLE_READY]


@given(
    st.lists(
        st.one_of(
            st.builds(wire.SlotNotification, st.integers(min_value=0, max_value=10**6)),
            st.just(wire.ReadyForContinue()),
            st.just(wire.Success()),
        ),
        max_size=30,
    ),
    st.integers(min_value=0, max_value=10),
)
def test_advance_never_ends_before_the_count(
    stream: list[wire.BacktestResponse], advance_count: int
) -> None:
    acc = StepAccumulator(advance_count)
    for response in stream:
        if acc.feed(response):
            result = acc.result()
            assert result.slot_notifications >= advance_count
            assert isinstance(response, wire.ReadyForContinue)
            return
    assert not acc.done


# -- readiness ---------------------------------------------------------------------------------


def test_readiness_lifecycle() -> None:
    tracker = ReadinessTracker()
    assert tracker.outcome is None
    assert tracker.observe(wire.Status(ST.BUNDLE_READY)) is None
    assert tracker.observe(wire.ReadyForContinue()) is ReadyOutcome.READY
    assert tracker.ready
    assert tracker.outcome is ReadyOutcome.READY
    tracker.continue_sent()
    assert not tracker.ready
    assert tracker.outcome is None
    assert tracker.observe(wire.Paused(wire.PausedEvent(slot=4))) is ReadyOutcome.READY
    assert tracker.ready
    assert tracker.observe(wire.Completed()) is ReadyOutcome.COMPLETED
    assert not tracker.ready
    assert tracker.completed
    assert tracker.outcome is ReadyOutcome.COMPLETED
    # completed is final
    assert tracker.observe(wire.ReadyForContinue()) is None
    assert not tracker.ready


def test_ensure_ready_raises_on_error() -> None:
    tracker = ReadinessTracker()
    assert tracker.feed_ensure_ready(wire.SlotNotification(3)) is None
    with pytest.raises(RemoteError):
        tracker.feed_ensure_ready(wire.Error(wire.NoMoreBlocks()))
    assert tracker.feed_ensure_ready(wire.ReadyForContinue()) is ReadyOutcome.READY


# -- cursor ------------------------------------------------------------------------------------


def test_cursor_dedup() -> None:
    cursor = SequenceCursor()
    assert cursor.value is None
    assert cursor.accept(5)
    assert cursor.value == 5
    assert not cursor.accept(5)
    assert not cursor.accept(2)
    assert cursor.accept(9)
    assert cursor.value == 9
    assert repr(cursor) == "SequenceCursor(9)"
    assert SequenceCursor().accept(0)


@given(st.lists(st.integers(min_value=0, max_value=50)))
def test_cursor_is_running_maximum(seqs: list[int]) -> None:
    cursor = SequenceCursor()
    best: int | None = None
    for seq in seqs:
        accepted = cursor.accept(seq)
        assert accepted == (best is None or seq > best)
        if accepted:
            best = seq
        assert cursor.value == best


# -- mapping -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (wire.SlotNotification(4), events.Slot(4)),
        (wire.Status(ST.BUNDLE_READY), events.Status(ST.BUNDLE_READY)),
        (wire.ReadyForContinue(), events.ReadyForContinue()),
        (wire.Paused(wire.PausedEvent(1, 2)), events.Paused(wire.PausedEvent(1, 2))),
        (
            wire.DiscoveryBatch(wire.DiscoveryBatchEvent(1, None)),
            events.DiscoveryBatch(wire.DiscoveryBatchEvent(1, None)),
        ),
        (wire.Error(wire.Internal(error="x")), events.ErrorEvent(wire.Internal(error="x"))),
        (wire.Completed(SUMMARY, STATS), events.Completed(SUMMARY, STATS)),
        (wire.Success(), None),
        (wire.UnknownSessionEvent({"x": 1}), None),
        (wire.UnknownResponse("m"), None),
    ],
)
def test_event_for(
    response: wire.BacktestResponse | wire.SessionEvent, expected: events.Event | None
) -> None:
    assert event_for(response) == expected
