"""ManagedSessionCore: the managed single session's control bookkeeping (protocol §6.3, §6.8)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from simtrio import events, wire
from simtrio.core.phase import Phase
from simtrio.core.session import (
    CloseDone,
    Decision,
    Deliver,
    Fail,
    HandshakeDone,
    ManagedSessionCore,
    Retry,
)
from simtrio.errors import ControlFailed, CreateFailed

if TYPE_CHECKING:
    from collections.abc import Sequence

CREATE = wire.CreateBacktestSessionRequest(start_slot=100, end_slot=200, disconnect_timeout_secs=60)
SID = "backtest_1"
ENDPOINT = "/backtest/backtest_1"
ST = wire.BacktestStatus


def phase(core: ManagedSessionCore) -> Phase:
    """Read the phase through a call, so type checkers do not keep an earlier narrowing."""
    return core.phase


def delivered(decisions: Sequence[Decision]) -> list[events.Event]:
    return [d.event for d in decisions if isinstance(d, Deliver)]


def running() -> ManagedSessionCore:
    core = ManagedSessionCore(CREATE)
    assert core.connection_opened() is CREATE
    out = core.feed(None, wire.SessionCreated(SID, ENDPOINT, "task-1"))
    assert out == [HandshakeDone(SID, ENDPOINT, "task-1", attached=False)]
    assert core.phase is Phase.RUNNING
    return core


def reattached(core: ManagedSessionCore) -> None:
    core.connection_lost()
    request = core.connection_opened()
    assert isinstance(request, wire.AttachBacktestSession)
    assert core.feed(None, wire.SessionAttached(SID, ENDPOINT, None)) == (
        HandshakeDone(SID, ENDPOINT, None, attached=True),
    )


# -- create ------------------------------------------------------------------------------------


def test_create_buffers_frames_until_session_created() -> None:
    core = ManagedSessionCore(CREATE)
    assert core.creating
    assert core.wants_reconnect
    assert core.connection_opened() is CREATE
    assert core.feed(None, wire.Status(ST.PREPARING_BUNDLE)) == ()
    assert core.feed(None, wire.SlotNotification(100)) == ()
    assert core.feed(None, wire.UnknownResponse("mystery")) == ()
    out = core.feed(None, wire.SessionCreated(SID, ENDPOINT, None))
    assert out == [
        Deliver(events.Status(ST.PREPARING_BUNDLE)),
        Deliver(events.Slot(100)),
        HandshakeDone(SID, ENDPOINT, None, attached=False),
    ]
    assert core.session_id == SID
    assert core.rpc_endpoint == ENDPOINT
    assert not core.creating


def test_error_before_session_created_fails_the_create() -> None:
    core = ManagedSessionCore(CREATE)
    core.connection_opened()
    core.feed(None, wire.Status(ST.PREPARING_BUNDLE))
    (decision,) = core.feed(None, wire.Error(wire.NoMoreBlocks()))
    assert isinstance(decision, Fail)
    assert isinstance(decision.error, CreateFailed)
    assert str(decision.error) == "server error: NoMoreBlocks"
    assert core.phase is Phase.FAILED
    assert not core.wants_reconnect
    assert core.feed(None, wire.SessionCreated(SID, ENDPOINT, None)) == ()


def test_lost_create_is_resent_and_its_backlog_discarded() -> None:
    core = ManagedSessionCore(CREATE)
    core.connection_opened()
    core.feed(None, wire.Status(ST.PREPARING_BUNDLE))
    core.feed(1, wire.ReadyForContinue())
    core.connection_lost()
    assert core.creating
    assert core.cursor.value is None
    assert not core.holds_readiness
    assert core.connection_opened() is CREATE
    out = core.feed(None, wire.SessionCreated(SID, ENDPOINT, None))
    assert out == [HandshakeDone(SID, ENDPOINT, None, attached=False)]


def test_readiness_in_create_backlog_is_held() -> None:
    core = ManagedSessionCore(CREATE)
    core.connection_opened()
    core.feed(None, wire.ReadyForContinue())
    core.feed(None, wire.ReadyForContinue())  # redundant while held
    out = core.feed(None, wire.SessionCreated(SID, ENDPOINT, None))
    assert delivered(out) == [events.ReadyForContinue()]
    assert core.holds_readiness


def test_completed_in_create_backlog_ends_the_session() -> None:
    core = ManagedSessionCore(CREATE)
    core.connection_opened()
    core.feed(None, wire.Completed())
    out = core.feed(None, wire.SessionCreated(SID, ENDPOINT, None))
    assert delivered(out) == [events.Completed()]
    assert core.phase is Phase.COMPLETED


# -- steady state ------------------------------------------------------------------------------


def test_mapping_of_responses_to_events() -> None:
    core = running()
    paused = wire.PausedEvent(slot=105, batch_index=1)
    batch = wire.DiscoveryBatchEvent(slot=105, batch_index=1)
    error = wire.AdvanceSlotFailed(slot=106, error="boom")
    stream: list[tuple[int | None, wire.BacktestResponse]] = [
        (1, wire.Status(ST.BUNDLE_READY)),
        (2, wire.SlotNotification(100)),
        (3, wire.DiscoveryBatch(batch)),
        (4, wire.ReadyForContinue()),
        (5, wire.UnknownResponse("newThing", [1])),
        (6, wire.Success()),
        (7, wire.SessionEventV2("x", 1, wire.ReadyForContinue())),
        (8, wire.SessionAttached(SID, ENDPOINT)),
        (9, wire.SessionsCreatedV2("c", [])),
        (10, wire.Error(error)),
    ]
    out: list[Decision] = []
    for seq, response in stream:
        out.extend(core.feed(seq, response))
    assert delivered(out) == [
        events.Status(ST.BUNDLE_READY),
        events.Slot(100),
        events.DiscoveryBatch(batch),
        events.ReadyForContinue(),
        events.ErrorEvent(error),
    ]
    assert all(isinstance(d, Deliver) for d in out)
    assert core.cursor.value == 10
    core.continue_written()
    assert delivered(core.feed(11, wire.Paused(paused))) == [events.Paused(paused)]


def test_numbered_duplicates_dropped_unnumbered_kept() -> None:
    core = running()
    assert delivered(core.feed(5, wire.SlotNotification(1))) == [events.Slot(1)]
    assert core.feed(5, wire.SlotNotification(1)) == ()
    assert core.feed(3, wire.SlotNotification(0)) == ()
    assert delivered(core.feed(None, wire.SlotNotification(9))) == [events.Slot(9)]
    assert delivered(core.feed(None, wire.SlotNotification(9))) == [events.Slot(9)]
    assert delivered(core.feed(6, wire.SlotNotification(2))) == [events.Slot(2)]


def test_redundant_readiness_dropped_while_held() -> None:
    core = running()
    assert delivered(core.feed(1, wire.ReadyForContinue())) == [events.ReadyForContinue()]
    assert core.holds_readiness
    assert core.feed(2, wire.ReadyForContinue()) == ()
    assert core.feed(3, wire.Paused(wire.PausedEvent(1))) == ()
    assert core.cursor.value == 3  # dropped after advancing the cursor
    core.continue_written()
    assert not core.holds_readiness
    assert delivered(core.feed(4, wire.ReadyForContinue())) == [events.ReadyForContinue()]


def test_terminal_error_fails_the_control_plane() -> None:
    core = running()
    error = wire.SessionOwnerMismatch()
    (decision,) = core.feed(7, wire.Error(error))
    assert isinstance(decision, Fail)
    assert isinstance(decision.error, ControlFailed)
    assert decision.error.error is error
    assert core.phase is Phase.FAILED
    assert core.feed(8, wire.SlotNotification(1)) == ()


def test_completed_is_last() -> None:
    core = running()
    summary = wire.SessionSummary(correct_simulation=4)
    out = core.feed(9, wire.Completed(summary, None))
    assert out == (Deliver(events.Completed(summary, None)),)
    assert core.phase is Phase.COMPLETED
    assert not core.wants_reconnect
    assert core.feed(10, wire.SlotNotification(1)) == ()
    assert core.feed(None, wire.Error(wire.Internal(error="late"))) == ()
    core.connection_lost()
    assert core.phase is Phase.COMPLETED
    with pytest.raises(RuntimeError):
        core.connection_opened()
    core.give_up()
    assert core.phase is Phase.COMPLETED


def test_give_up() -> None:
    core = running()
    core.connection_lost()
    core.give_up()
    assert core.phase is Phase.FAILED
    assert core.feed(1, wire.SlotNotification(1)) == ()


# -- reconnect ---------------------------------------------------------------------------------


def test_attach_request_carries_the_cursor() -> None:
    core = running()
    core.connection_lost()
    assert core.phase is Phase.ATTACHING
    assert core.connection_opened() == wire.AttachBacktestSession(SID, None)
    core.feed(4, wire.SlotNotification(1))
    core.connection_lost()
    assert core.connection_opened() == wire.AttachBacktestSession(SID, 4)


def test_unreported_loss_still_attaches() -> None:
    core = running()
    assert core.connection_opened() == wire.AttachBacktestSession(SID, None)
    assert core.phase is Phase.ATTACHING


def test_replay_before_attach_reply_is_processed_with_dedup() -> None:
    core = running()
    for seq in (1, 2, 3):
        core.feed(seq, wire.SlotNotification(100 + seq))
    core.connection_lost()
    core.connection_opened()
    out: list[Decision] = []
    for seq in (2, 3, 4, 5):
        out.extend(core.feed(seq, wire.SlotNotification(100 + seq)))
    out.extend(core.feed(None, wire.SessionAttached(SID, "/new", "t")))
    assert out == [
        Deliver(events.Slot(104)),
        Deliver(events.Slot(105)),
        HandshakeDone(SID, "/new", "t", attached=True),
    ]
    assert core.phase is Phase.RUNNING
    assert core.rpc_endpoint == "/new"


def test_attach_errors() -> None:
    core = running()
    core.connection_lost()
    core.connection_opened()
    (retry,) = core.feed(None, wire.Error(wire.InvalidRequest(error="busy")))
    assert retry == Retry(
        "attach failed: InvalidRequest(error='busy')", wire.InvalidRequest("busy")
    )
    assert core.phase is Phase.ATTACHING
    core.connection_lost()
    core.connection_opened()
    (fail,) = core.feed(None, wire.Error(wire.SessionNotFound(session_id=SID)))
    assert isinstance(fail, Fail)
    assert isinstance(fail.error, ControlFailed)
    assert isinstance(fail.error.error, wire.SessionNotFound)
    assert phase(core) is Phase.FAILED


def test_numbered_error_during_attach_is_history() -> None:
    core = running()
    core.connection_lost()
    core.connection_opened()
    error = wire.NoMoreBlocks()
    assert delivered(core.feed(1, wire.Error(error))) == [events.ErrorEvent(error)]
    assert core.phase is Phase.ATTACHING


def test_attach_answered_for_another_session_fails() -> None:
    core = running()
    core.connection_lost()
    core.connection_opened()
    (fail,) = core.feed(None, wire.SessionAttached("other", ENDPOINT))
    assert isinstance(fail, Fail)
    assert isinstance(fail.error, ControlFailed)
    assert core.phase is Phase.FAILED


@pytest.mark.parametrize(
    "reply",
    [wire.Success(), wire.UnknownResponse("resumeSuccess"), wire.UnknownResponse("resume_success")],
)
def test_resume_reply_is_consumed(reply: wire.BacktestResponse) -> None:
    core = running()
    reattached(core)
    core.resume_sent()
    assert core.feed(None, reply) == ()
    assert delivered(core.feed(3, wire.SlotNotification(3))) == [events.Slot(3)]


def test_first_unnumbered_error_after_resume_is_its_reply() -> None:
    core = running()
    reattached(core)
    core.resume_sent()
    error = wire.Internal(error="resume went wrong")  # terminal, but only a resume reply
    assert core.feed(None, wire.Error(error)) == ()
    assert core.phase is Phase.RUNNING
    other = wire.NoMoreBlocks()
    assert delivered(core.feed(None, wire.Error(other))) == [events.ErrorEvent(other)]


def test_numbered_error_after_resume_is_not_its_reply() -> None:
    core = running()
    reattached(core)
    core.resume_sent()
    error = wire.NoMoreBlocks()
    assert delivered(core.feed(8, wire.Error(error))) == [events.ErrorEvent(error)]
    assert core.feed(None, wire.Success()) == ()  # the resume reply, still consumed


def test_lost_continue_is_reannounced() -> None:
    """§6.8: the driver continued, the continue was lost; the re-sent readiness is delivered."""
    core = running()
    core.feed(1, wire.ReadyForContinue())
    core.continue_written()
    core.connection_lost()
    assert core.connection_opened() == wire.AttachBacktestSession(SID, 1)
    assert delivered(core.feed(2, wire.ReadyForContinue())) == [events.ReadyForContinue()]


def test_unanswered_readiness_is_not_redelivered() -> None:
    """§6.8: the driver has not continued yet; the re-sent readiness is redundant."""
    core = running()
    core.feed(1, wire.ReadyForContinue())
    core.connection_lost()
    core.connection_opened()
    assert core.feed(2, wire.ReadyForContinue()) == ()
    assert core.cursor.value == 2
    assert core.holds_readiness


# -- close -------------------------------------------------------------------------------------


def test_close_reply_success() -> None:
    core = running()
    core.close_sent()
    assert core.feed(5, wire.SlotNotification(5)) == (Deliver(events.Slot(5)),)
    assert core.feed(6, wire.Success()) == (CloseDone(),)
    assert core.feed(7, wire.Success()) == ()


def test_close_reply_completed_is_delivered_too() -> None:
    core = running()
    core.close_sent()
    out = core.feed(5, wire.Completed())
    assert out == (Deliver(events.Completed()), CloseDone())


def test_close_reply_error_ends_the_wait() -> None:
    core = running()
    core.close_sent()
    assert core.feed(5, wire.Error(wire.Internal(error="x"))) == (CloseDone(),)
    assert core.phase is Phase.RUNNING


def test_close_after_completed() -> None:
    core = running()
    core.feed(1, wire.Completed())
    core.close_sent()
    assert core.feed(2, wire.Success()) == (CloseDone(),)
    core.close_sent()
    assert core.feed(3, wire.Error(wire.NoMoreBlocks())) == (CloseDone(),)
    core.close_sent()
    assert core.feed(None, wire.Completed()) == (CloseDone(),)


def test_resume_reply_after_completed_is_consumed_before_close() -> None:
    core = running()
    reattached(core)
    core.resume_sent()
    core.feed(1, wire.Completed())
    core.close_sent()
    assert core.feed(None, wire.Success()) == ()  # the resume reply
    assert core.feed(2, wire.Success()) == (CloseDone(),)


def test_resume_error_after_completed_is_consumed() -> None:
    core = running()
    reattached(core)
    core.resume_sent()
    core.feed(1, wire.Completed())
    assert core.feed(None, wire.Error(wire.NoMoreBlocks())) == ()


def test_connection_loss_cancels_pending_replies() -> None:
    core = running()
    core.close_sent()
    core.resume_sent()
    core.connection_lost()
    core.connection_opened()
    core.feed(None, wire.SessionAttached(SID, ENDPOINT))
    assert core.feed(1, wire.Success()) == ()
    error = wire.NoMoreBlocks()
    assert delivered(core.feed(None, wire.Error(error))) == [events.ErrorEvent(error)]


def test_unnumbered_frames_during_attach_are_processed() -> None:
    core = running()
    core.connection_lost()
    core.connection_opened()
    assert delivered(core.feed(None, wire.Status(ST.BUNDLE_READY))) == [
        events.Status(ST.BUNDLE_READY)
    ]
    assert core.phase is Phase.ATTACHING


# -- the idle-step detector's question ---------------------------------------------------------


def test_step_outstanding_from_continue_written_to_readiness() -> None:
    core = running()
    assert not core.step_outstanding  # nothing written yet: waiting for the server is no step
    core.feed(1, wire.ReadyForContinue())
    assert not core.step_outstanding
    core.continue_written()
    assert core.step_outstanding
    core.feed(2, wire.SlotNotification(101))
    assert core.step_outstanding
    core.feed(3, wire.ReadyForContinue())
    assert not core.step_outstanding
    core.continue_written()
    reattached(core)
    assert core.step_outstanding  # still unanswered on the new connection
    core.feed(4, wire.Completed(None, None))
    assert not core.step_outstanding
