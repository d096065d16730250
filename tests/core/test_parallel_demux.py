"""ParallelDemux: parallel create, routing with dedup, readiness, completion, reattach (§6.5-§7)."""

from __future__ import annotations

import logging
from collections import defaultdict

import pytest
from hypothesis import given, settings, strategies as st

from simtrio import events, wire
from simtrio.core.demux import (
    TOO_OLD_MESSAGE,
    AllCompleted,
    DemuxOutput,
    ParallelAttached,
    ParallelCreated,
    ParallelDemux,
    SubSessionSpec,
)
from simtrio.core.phase import Phase
from simtrio.core.session import Fail, Retry
from simtrio.errors import ControlFailed, CreateFailed

CREATE = wire.CreateBacktestSessionRequest(start_slot=0, end_slot=299, parallel=True)
CONTROL = "parallel_1"
ST = wire.BacktestStatus


def ev(sid: str, seq: int, event: wire.SessionEvent) -> wire.SessionEventV2:
    return wire.SessionEventV2(sid, seq, event)


def slot(sid: str, seq: int, n: int | None = None) -> wire.SessionEventV2:
    return ev(sid, seq, wire.SlotNotification(seq if n is None else n))


def created(*ids: str, control: str = CONTROL) -> wire.SessionsCreatedV2:
    return wire.SessionsCreatedV2(
        control,
        list(ids),
        [None] * len(ids),
        [100 * i for i in range(len(ids))],
        [100 * i + 99 for i in range(len(ids))],
    )


def routed(out: list[DemuxOutput]) -> list[tuple[str, events.Event]]:
    return [item for item in out if isinstance(item, tuple)]


def controls(out: list[DemuxOutput]) -> list[object]:
    return [item for item in out if not isinstance(item, tuple)]


def running(*ids: str) -> ParallelDemux:
    demux = ParallelDemux(CREATE)
    demux.connection_opened()
    batch: list[wire.BacktestResponse] = [wire.SessionCreated(i, f"/backtest/{i}") for i in ids]
    batch.append(created(*ids))
    out = demux.feed_batch(batch)
    assert isinstance(out[0], ParallelCreated)
    assert demux.phase is Phase.RUNNING
    return demux


def phase(demux: ParallelDemux) -> Phase:
    """Read the phase through a call, so type checkers do not keep an earlier narrowing."""
    return demux.phase


def only_fail(out: list[DemuxOutput]) -> Fail:
    (item,) = out
    assert isinstance(item, Fail)
    return item


# -- create handshake --------------------------------------------------------------------------


def test_create_request_is_forced_parallel() -> None:
    demux = ParallelDemux(wire.CreateBacktestSessionRequest(start_slot=1, end_slot=2))
    request = demux.connection_opened()
    assert isinstance(request, wire.CreateBacktestSessionRequest)
    assert request.parallel
    assert demux.creating


def test_create_handshake_and_early_events() -> None:
    demux = ParallelDemux(CREATE)
    assert demux.connection_opened() is CREATE
    out = demux.feed_batch(
        [
            wire.SessionCreated("a", "/backtest/a", "ta"),
            slot("a", 1, 0),
            ev("b", 1, wire.Status(ST.PREPARING_BUNDLE)),  # b not announced yet
            slot("a", 1, 0),  # duplicate
            ev("ghost", 1, wire.ReadyForContinue()),  # never listed
            wire.SessionCreated("b", "/backtest/b"),
            wire.SessionCreated("stray", "/backtest/stray"),  # announced, not listed
            slot("stray", 1),
            wire.Status(ST.BUNDLE_READY),  # other frames are ignored
            wire.SessionsCreatedV2(CONTROL, ["b", "a"], ["tb"], [100, 0], [199, 99]),
            ev("a", 2, wire.ReadyForContinue()),
        ]
    )
    assert out[0] == ParallelCreated(
        CONTROL,
        (
            SubSessionSpec("b", "/backtest/b", "tb", 100, 199),
            SubSessionSpec("a", "/backtest/a", "ta", 0, 99),
        ),
    )
    assert out[1:] == [
        ("a", events.Slot(0)),
        ("b", events.Status(ST.PREPARING_BUNDLE)),
        ("a", events.ReadyForContinue()),
    ]
    assert demux.control_session_id == CONTROL
    assert demux.sub_sessions[0].range == (100, 199)
    assert demux.last_sequences() == {"a": 2, "b": 1}
    assert demux.cursor("a") == 2
    assert demux.phase is Phase.RUNNING


def test_task_id_from_session_created_when_list_has_none() -> None:
    demux = ParallelDemux(CREATE)
    out = demux.feed_batch(
        [
            wire.SessionCreated("a", "/a", "from-created"),
            wire.SessionsCreatedV2(CONTROL, ["a"], [None], [0], [9]),
        ]
    )
    assert out == [ParallelCreated(CONTROL, (SubSessionSpec("a", "/a", "from-created", 0, 9),))]


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (wire.SessionsCreatedV2(CONTROL, ["a"], [None], [], []), TOO_OLD_MESSAGE),
        (wire.SessionsCreatedV2(CONTROL, ["a"], [None], [0], [9, 19]), TOO_OLD_MESSAGE),
        (wire.SessionsCreated(["a"]), TOO_OLD_MESSAGE),
        (wire.SessionsCreatedV2(CONTROL, [], [], [], []), "the server created no sub-sessions"),
        (
            wire.SessionsCreatedV2(CONTROL, ["a", "a"], [], [0, 0], [9, 9]),
            "the server listed a sub-session twice in sessionsCreatedV2",
        ),
        (
            wire.SessionsCreatedV2(CONTROL, ["a", "b"], [], [0, 10], [9, 19]),
            "the server listed sub-session 'b' without a sessionCreated",
        ),
        (wire.Error(wire.NoMoreBlocks()), "server error: NoMoreBlocks"),
    ],
)
def test_create_failures_are_fatal(reply: wire.BacktestResponse, message: str) -> None:
    demux = ParallelDemux(CREATE)
    demux.connection_opened()
    out = demux.feed_batch([wire.SessionCreated("a", "/a"), slot("a", 1), reply, slot("a", 2)])
    fail = only_fail(out)
    assert isinstance(fail.error, CreateFailed)
    assert str(fail.error) == message
    assert demux.phase is Phase.FAILED
    assert not demux.wants_reconnect


def test_too_old_message_wording() -> None:
    assert "did not report per-sub-session ranges" in TOO_OLD_MESSAGE
    assert "too old for parallel sessions" in TOO_OLD_MESSAGE


def test_lost_create_is_resent_from_scratch() -> None:
    demux = ParallelDemux(CREATE)
    demux.connection_opened()
    demux.feed_batch([wire.SessionCreated("a", "/a"), slot("a", 1)])
    demux.connection_lost()
    assert demux.creating
    assert demux.connection_opened() is CREATE
    fail = only_fail(demux.feed(created("a")))
    assert isinstance(fail.error, CreateFailed)  # "a" belonged to the abandoned create


# -- steady state ------------------------------------------------------------------------------


def test_event_mapping() -> None:
    demux = running("a")
    paused = wire.PausedEvent(slot=5, batch_index=0)
    batch = wire.DiscoveryBatchEvent(slot=5, batch_index=1)
    error = wire.Internal(error="inside")  # terminal kinds inside an event are just events
    summary = wire.SessionSummary(correct_simulation=2)
    stats = [wire.AgentStatsReport(name="x")]
    out = demux.feed_batch(
        [
            slot("a", 1, 7),
            ev("a", 2, wire.Status(ST("brandNew"))),
            ev("a", 3, wire.DiscoveryBatch(batch)),
            ev("a", 4, wire.Paused(paused)),
            ev("a", 5, wire.Error(error)),
            ev("a", 6, wire.Success()),
            ev("a", 7, wire.UnknownSessionEvent({"novel": 1})),
            ev("a", 8, wire.Completed(summary, stats)),
        ]
    )
    assert out == [
        ("a", events.Slot(7)),
        ("a", events.Status(ST("brandNew"))),
        ("a", events.DiscoveryBatch(batch)),
        ("a", events.Paused(paused)),
        ("a", events.ErrorEvent(error)),
        ("a", events.Completed(summary, stats)),
        AllCompleted(),
    ]
    assert demux.last_sequences() == {"a": 8}
    assert demux.phase is Phase.COMPLETED
    assert not demux.wants_reconnect


def test_dedup_and_gap_logging(caplog: pytest.LogCaptureFixture) -> None:
    demux = running("a", "b")
    with caplog.at_level(logging.WARNING, logger="simtrio.core.demux"):
        out = demux.feed_batch(
            [slot("a", 1), slot("a", 1), slot("b", 3), slot("a", 4), slot("a", 2), slot("b", 4)]
        )
    assert routed(out) == [
        ("a", events.Slot(1)),
        ("b", events.Slot(3)),
        ("a", events.Slot(4)),
        ("b", events.Slot(4)),
    ]
    gaps = [r.getMessage() for r in caplog.records if "jumped" in r.getMessage()]
    assert gaps == ["sub-session a: sequence jumped from 1 to 4; events were lost"]


def test_first_event_may_be_seq_zero() -> None:
    demux = running("a")
    assert demux.cursor("a") is None
    assert demux.feed(slot("a", 0)) == [("a", events.Slot(0))]
    assert demux.cursor("a") == 0
    assert demux.feed(slot("a", 0)) == []


def test_unknown_ids_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    demux = running("a")
    with caplog.at_level(logging.WARNING, logger="simtrio.core.demux"):
        assert demux.feed_batch([slot("zz", 1), slot("zz", 2), slot("a", 1)]) == [
            ("a", events.Slot(1))
        ]
    assert sum("unknown sub-session" in r.getMessage() for r in caplog.records) == 1


def test_readiness_holding_per_sub_session() -> None:
    demux = running("a", "b")
    ready = wire.ReadyForContinue()
    out = demux.feed_batch([ev("a", 1, ready), ev("b", 1, ready), ev("a", 2, ready)])
    assert out == [("a", events.ReadyForContinue()), ("b", events.ReadyForContinue())]
    assert demux.holds_readiness("a")
    assert demux.cursor("a") == 2
    demux.continue_written("a")
    assert not demux.holds_readiness("a")
    paused = wire.PausedEvent(9)
    out = demux.feed_batch(
        [ev("b", 2, wire.Paused(paused)), ev("a", 3, wire.Paused(paused)), ev("a", 4, ready)]
    )
    assert out == [("a", events.Paused(paused))]


def test_nothing_after_a_sub_sessions_completed() -> None:
    demux = running("a", "b")
    out = demux.feed_batch(
        [ev("a", 1, wire.Completed()), slot("a", 2), ev("a", 3, wire.Completed()), slot("b", 1)]
    )
    assert out == [("a", events.Completed()), ("b", events.Slot(1))]
    assert demux.is_completed("a")
    assert not demux.is_completed("b")
    assert demux.cursor("a") == 3
    assert demux.feed(ev("b", 2, wire.Completed())) == [("b", events.Completed()), AllCompleted()]
    assert demux.feed(slot("b", 3)) == []


def test_top_level_errors() -> None:
    demux = running("a")
    assert demux.feed(wire.Error(wire.NoMoreBlocks())) == []
    assert demux.phase is Phase.RUNNING
    fail = only_fail(demux.feed_batch([wire.Error(wire.SessionNotFound(CONTROL)), slot("a", 1)]))
    assert isinstance(fail.error, ControlFailed)
    assert isinstance(fail.error.error, wire.SessionNotFound)
    assert str(fail.error).startswith("server error: ")
    assert phase(demux) is Phase.FAILED


def test_stray_top_level_frames_are_ignored() -> None:
    demux = running("a")
    out = demux.feed_batch(
        [
            wire.UnknownResponse("x"),
            wire.SessionCreated("a", "/a"),
            created("a"),
            wire.ParallelSessionAttachedV2(CONTROL, ["a"]),
            wire.SessionEventV1("a", wire.SlotNotification(1)),
            wire.ReadyForContinue(),
            slot("a", 1),
        ]
    )
    assert out == [("a", events.Slot(1))]
    assert demux.phase is Phase.RUNNING


def test_give_up() -> None:
    demux = running("a")
    demux.connection_lost()
    demux.give_up()
    assert demux.phase is Phase.FAILED
    assert demux.feed(slot("a", 1)) == []
    with pytest.raises(RuntimeError):
        demux.connection_opened()


# -- reattach ----------------------------------------------------------------------------------


def test_reattach_with_cursors_and_replay() -> None:
    demux = running("a", "b", "c")
    demux.feed_batch([slot("a", 1), slot("a", 2), slot("b", 1)])
    demux.connection_lost()
    assert demux.phase is Phase.ATTACHING
    request = demux.connection_opened()
    assert request == wire.AttachParallelControlSessionV2(CONTROL, {"a": 2, "b": 1})
    out = demux.feed_batch(
        [
            slot("a", 1),
            slot("a", 2),
            slot("a", 3),
            slot("c", 1),
            wire.ParallelSessionAttachedV2(CONTROL, ["a", "b", "c"]),
            slot("b", 2),
        ]
    )
    assert out == [
        ("a", events.Slot(3)),
        ("c", events.Slot(1)),
        ParallelAttached(CONTROL),
        ("b", events.Slot(2)),
    ]
    assert phase(demux) is Phase.RUNNING


def test_unreported_loss_still_attaches() -> None:
    demux = running("a")
    assert isinstance(demux.connection_opened(), wire.AttachParallelControlSessionV2)
    assert demux.phase is Phase.ATTACHING


def test_attach_errors() -> None:
    demux = running("a")
    demux.connection_lost()
    demux.connection_opened()
    (retry,) = demux.feed(wire.Error(wire.InvalidRequest(error="later")))
    assert isinstance(retry, Retry)
    assert retry.error == wire.InvalidRequest(error="later")
    assert demux.phase is Phase.ATTACHING
    demux.connection_lost()
    demux.connection_opened()
    fail = only_fail(demux.feed(wire.Error(wire.SessionOwnershipBusy(reason="taken"))))
    assert isinstance(fail.error, ControlFailed)
    assert str(fail.error).startswith("attach failed: ")


def test_attach_answered_for_another_control_session() -> None:
    demux = running("a")
    demux.connection_lost()
    demux.connection_opened()
    fail = only_fail(demux.feed(wire.ParallelSessionAttachedV2("parallel_other", ["a"])))
    assert isinstance(fail.error, ControlFailed)


def test_attach_reply_with_other_ids_is_accepted(caplog: pytest.LogCaptureFixture) -> None:
    demux = running("a")
    demux.connection_lost()
    demux.connection_opened()
    with caplog.at_level(logging.WARNING, logger="simtrio.core.demux"):
        assert demux.feed(wire.ParallelSessionAttachedV2(CONTROL, ["a", "b"])) == [
            ParallelAttached(CONTROL)
        ]
    assert any("other sub-sessions" in r.getMessage() for r in caplog.records)


def test_lost_continue_reannounced_after_reattach() -> None:
    """§6.8: readiness held across the reconnect drops the re-sent event; a written
    continue lets it through."""
    demux = running("a", "b")
    ready = wire.ReadyForContinue()
    demux.feed_batch([ev("a", 1, ready), ev("b", 1, ready)])
    demux.continue_written("a")
    demux.connection_lost()
    demux.connection_opened()
    out = demux.feed_batch(
        [ev("a", 2, ready), ev("b", 2, ready), wire.ParallelSessionAttachedV2(CONTROL, ["a", "b"])]
    )
    assert out == [("a", events.ReadyForContinue()), ParallelAttached(CONTROL)]


# -- properties --------------------------------------------------------------------------------


@st.composite
def scripts(draw: st.DrawFn) -> tuple[dict[str, int], list[tuple[str, object]]]:
    """Per-session stream lengths and a schedule of sends, reconnects and replays."""
    count = draw(st.integers(min_value=1, max_value=4))
    lengths = {f"s{i}": draw(st.integers(min_value=1, max_value=12)) for i in range(count)}
    steps: list[tuple[str, object]] = draw(
        st.lists(
            st.one_of(
                st.tuples(st.just("send"), st.sampled_from(sorted(lengths))),
                st.tuples(st.just("replay"), st.sampled_from(sorted(lengths))),
                st.tuples(st.just("reconnect"), st.integers(min_value=0, max_value=2**16)),
                st.tuples(st.just("flush"), st.none()),
            ),
            max_size=120,
        )
    )
    return lengths, steps


@settings(max_examples=300, deadline=None)
@given(scripts())
def test_each_event_delivered_exactly_once_in_order(
    script: tuple[dict[str, int], list[tuple[str, object]]],
) -> None:
    lengths, steps = script
    ids = sorted(lengths)
    demux = running(*ids)
    sent = dict.fromkeys(ids, 0)  # highest seq the "server" has sent per session
    received: dict[str, list[events.Event]] = defaultdict(list)
    finished: list[AllCompleted] = []
    pending: list[wire.BacktestResponse] = []

    def event_of(sid: str, seq: int) -> wire.SessionEventV2:
        if seq == lengths[sid]:
            return ev(sid, seq, wire.Completed())
        return slot(sid, seq, 1000 + seq)

    def flush() -> None:
        for item in demux.feed_batch(pending):
            if isinstance(item, tuple):
                received[item[0]].append(item[1])
            elif isinstance(item, AllCompleted):
                finished.append(item)
            else:
                assert isinstance(item, ParallelAttached)
        pending.clear()

    def send_next(sid: str) -> None:
        if sent[sid] < lengths[sid]:
            sent[sid] += 1
            pending.append(event_of(sid, sent[sid]))

    for action, arg in steps:
        if demux.phase is Phase.COMPLETED:
            break
        if action == "send":
            assert isinstance(arg, str)
            send_next(arg)
        elif action == "replay":
            # A duplicate of something already sent (e.g. a replay overlapping live traffic).
            assert isinstance(arg, str)
            if sent[arg]:
                pending.append(event_of(arg, max(1, sent[arg] - 1)))
        elif action == "flush":
            flush()
        else:
            assert isinstance(arg, int)
            flush()
            if not demux.wants_reconnect:
                break
            demux.connection_lost()
            request = demux.connection_opened()
            assert isinstance(request, wire.AttachParallelControlSessionV2)
            # The server replays from at or below each cursor (overlap is allowed).
            for index, sid in enumerate(ids):
                cursor = request.last_sequences.get(sid, 0)
                back = (arg >> (2 * index)) % 3
                sent[sid] = max(0, cursor - back)
            for sid in ids:
                while sent[sid] < request.last_sequences.get(sid, 0):
                    send_next(sid)
            pending.append(wire.ParallelSessionAttachedV2(CONTROL, ids))
    # Let the server finish every stream.
    for sid in ids:
        while sent[sid] < lengths[sid]:
            send_next(sid)
    flush()
    for sid in ids:
        expected: list[events.Event] = [events.Slot(1000 + s) for s in range(1, lengths[sid])]
        expected.append(events.Completed())
        assert received[sid] == expected
    assert finished == [AllCompleted()]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=30), max_size=80), st.integers(1, 8))
def test_batch_splitting_does_not_matter(seqs: list[int], chunk: int) -> None:
    frames: list[wire.BacktestResponse] = [slot("a", s) for s in seqs]
    whole = running("a").feed_batch(frames)
    demux = running("a")
    pieces: list[DemuxOutput] = []
    for start in range(0, len(frames), chunk):
        pieces.extend(demux.feed_batch(frames[start : start + chunk]))
    single = running("a")
    one_by_one = [item for frame in frames for item in single.feed(frame)]
    assert whole == pieces == one_by_one
    accepted = [item[1] for item in whole if isinstance(item, tuple)]
    best = 0
    expected: list[events.Event] = []
    for s in seqs:
        if s > best:
            best = s
            expected.append(events.Slot(s))
    assert accepted == expected


def test_steady_state_stays_on_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Routing sub-session events must not fall back to the per-frame slow path."""
    demux = running("a", "b")

    def slow(*_args: object) -> None:
        raise AssertionError("slow path taken")

    monkeypatch.setattr(ParallelDemux, "_slow", slow)
    frames: list[wire.BacktestResponse] = [
        slot("a", 1),
        ev("b", 1, wire.Status(ST.BUNDLE_READY)),
        ev("a", 2, wire.ReadyForContinue()),
        ev("b", 2, wire.Success()),
        slot("a", 1),
    ]
    assert len(demux.feed_batch(frames)) == 3


def test_sub_session_announced_twice_keeps_the_last(caplog: pytest.LogCaptureFixture) -> None:
    demux = ParallelDemux(CREATE)
    with caplog.at_level(logging.WARNING, logger="simtrio.core.demux"):
        out = demux.feed_batch(
            [wire.SessionCreated("a", "/old"), wire.SessionCreated("a", "/new"), created("a")]
        )
    assert out == [ParallelCreated(CONTROL, (SubSessionSpec("a", "/new", None, 0, 99),))]
    assert any("announced twice" in r.getMessage() for r in caplog.records)


def test_step_outstanding_while_any_written_continue_is_unanswered() -> None:
    demux = running("a", "b")
    assert not demux.step_outstanding
    demux.feed(ev("a", 1, wire.ReadyForContinue()))
    demux.feed(ev("b", 1, wire.ReadyForContinue()))
    demux.continue_written("a")
    demux.continue_written("b")
    assert demux.step_outstanding
    demux.feed(ev("a", 2, wire.ReadyForContinue()))
    assert demux.step_outstanding  # b still waits
    demux.feed(ev("b", 2, wire.Completed(None, None)))
    assert not demux.step_outstanding  # a holds readiness, b is done
    demux.continue_written("a")
    assert demux.step_outstanding
    demux.feed(ev("a", 3, wire.Completed(None, None)))
    assert not demux.step_outstanding
