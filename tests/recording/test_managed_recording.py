"""Managed sessions recording themselves (``recorder=``), and the replays of those recordings.

A run is recorded against the reference server by the managed layer itself: every control frame
as decoded, every request as written, every notification as delivered. The same strategy then
runs through ``open_managed_session`` / ``open_parallel_session`` against ``replay_server`` and
must see the same control events and the same notifications, per (sub-)session.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import pytest
import trio
import trio.testing

from simtrio import events
from simtrio.core.backoff import BackoffPolicy
from simtrio.managed.config import ManagedConfig
from simtrio.managed.parallel import ParallelSubSession, open_parallel_session
from simtrio.managed.session import ManagedSession, open_managed_session
from simtrio.params import Continue, CreateSession
from simtrio.recording import (
    Plane,
    Recorder,
    RecordingFailed,
    ReplayDivergence,
    RunStatus,
    get_run,
    open_recorder,
    read_entries,
    replay_server,
)
from simtrio.recording.store import RunStore
from simtrio.server import FaultPlan, Faults, serve
from simtrio.wire import types
from simtrio.wire.types import BacktestStatus
from tests.recording.helpers import PROGRAM_A, SESSION, diff

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from pathlib import Path

KEY = "managed-recording-key-789"
CONFIG = ManagedConfig(rng_seed=3, backoff=BackoffPolicy(initial=0.01, max=0.05))
SINGLE = CreateSession(3000, end_slot=3023, disconnect_timeout_secs=60, send_summary=True)
PARALLEL = CreateSession(
    0, end_slot=99, disconnect_timeout_secs=60, send_summary=True, parallel=True
)
BUNDLE = 25
"""The reference server's bundle size here: a parallel create gets four sub-sessions."""

Events = tuple[list[events.Event], list[events.AccountDiff], list[events.Transaction]]
"""What one (sub-)session's driver saw: its control events, and the notifications of each
subscription. (Two subscriptions are two connections: how their notifications interleave with
each other and with control events depends on scheduling, live as on replay.)"""


async def _drive(session: ManagedSession | ParallelSubSession, step: int) -> Events:
    """Continue by ``step`` at every readiness; stop at ``Completed`` or a server error."""
    control: list[events.Event] = []
    diffs: list[events.AccountDiff] = []
    transactions: list[events.Transaction] = []
    async for event in session.events():
        if isinstance(event, events.AccountDiff):
            diffs.append(event)
            continue
        if isinstance(event, events.Transaction):
            transactions.append(event)
            continue
        control.append(event)
        if isinstance(event, events.ReadyForContinue | events.Paused):
            await session.send_continue(Continue(step))
        elif isinstance(event, events.ErrorEvent):
            break
    return control, diffs, transactions


async def _single(
    url: str, key: str, programs: Sequence[str], recorder: Recorder | None, step: int = 2
) -> dict[Any, Events]:
    with trio.fail_after(10):
        async with open_managed_session(
            url, key, SINGLE, config=CONFIG, recorder=recorder
        ) as session:
            session.subscribe_account_diffs(programs[:1])
            session.subscribe_transactions(programs)
            return {"single": await _drive(session, step)}


async def _parallel(
    url: str, key: str, programs: Sequence[str], recorder: Recorder | None, step: int = 3
) -> dict[Any, Events]:
    seen: dict[Any, Events] = {}

    async def one(sub: ParallelSubSession) -> None:
        seen[sub.range] = await _drive(sub, step)

    with trio.fail_after(10):
        async with open_parallel_session(
            url, key, PARALLEL, config=CONFIG, recorder=recorder
        ) as parallel:
            subs = parallel.take_sub_sessions()
            assert len(subs) == 4
            for sub in subs:
                sub.subscribe_transactions(programs)
                sub.subscribe_account_diffs(programs[:1])
            async with trio.open_nursery() as nursery:
                for sub in subs:
                    nursery.start_soon(one, sub)
    return seen


Strategy: TypeAlias = (
    "Callable[[str, str, Sequence[str], Recorder | None], Awaitable[dict[Any, Events]]]"
)


async def _record(
    path: Path, strategy: Strategy, faults: FaultPlan | None = None
) -> tuple[str, dict[Any, Events], tuple[str, ...]]:
    create = PARALLEL if strategy is _parallel else SINGLE
    async with serve(
        seed=21, api_key=KEY, bundle_size=BUNDLE, faults=faults or FaultPlan()
    ) as server:
        programs = server.config.program_ids
        async with open_recorder(
            path, create_params=create, server_url=server.url, secrets=[KEY]
        ) as rec:
            live = await strategy(server.url, KEY, programs, rec)
    assert get_run(path, rec.run_id).status is RunStatus.ENDED
    return rec.run_id, live, programs


async def _replay(
    path: Path, run_id: str, strategy: Strategy, programs: Sequence[str]
) -> dict[Any, Events]:
    async with replay_server(path, run_id) as replay:
        replayed = await strategy(replay.url, "", programs, None)
        assert replay.divergence is None
        assert replay.finished
    return replayed


def _kinds(path: Path, run_id: str, plane: Plane) -> list[str]:
    return [d.entry.kind for d in read_entries(path, run_id) if d.entry.plane is plane]


def _store_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


async def test_single_run_recorded_by_the_session_replays(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    run_id, live, programs = await _record(path, _single)
    control, diffs, transactions = live["single"]
    assert isinstance(control[-1], events.Completed)
    assert diffs
    assert transactions

    sent = _kinds(path, run_id, Plane.SENT)
    assert sent[0] == "createBacktestSession"
    assert sent[-1] == "closeBacktestSession"
    assert sent.count("continue") == sum(isinstance(e, events.ReadyForContinue) for e in control)
    received = _kinds(path, run_id, Plane.CONTROL)
    assert received[0] == "sessionCreated"  # the raw handshake reply, not a stand-in
    assert "slotNotification" in received
    assert not any(kind.startswith("event.") for kind in received)
    entries = read_entries(path, run_id)
    notifications = [d.entry for d in entries if d.entry.plane is Plane.DATA]
    assert len(notifications) == len(diffs) + len(transactions)
    assert {n.topic for n in notifications} <= set(programs)
    assert {n.session_id for n in notifications} == {_session_created(entries)}
    assert KEY.encode() not in _store_bytes(path)

    assert await _replay(path, run_id, _single, programs) == live


def _session_created(entries: Sequence[Any]) -> str:
    """The session id the recorded ``sessionCreated`` announced."""
    for decoded in entries:
        if isinstance(decoded.value, types.SessionCreated):
            return str(decoded.value.session_id)
    raise AssertionError("no sessionCreated recorded")


async def test_parallel_run_recorded_by_the_session_replays(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    run_id, live, programs = await _record(path, _parallel)
    assert sorted(live) == [(0, 24), (25, 49), (50, 74), (75, 99)]
    for control, diffs, transactions in live.values():
        assert isinstance(control[-1], events.Completed)
        assert diffs
        assert transactions

    entries = read_entries(path, run_id)
    handshake = [d.value for d in entries if isinstance(d.value, types.SessionsCreatedV2)]
    assert len(handshake) == 1  # the recorded reply makes the run replayable
    sub_ids = set(handshake[0].session_ids)
    data_sessions = {d.entry.session_id for d in entries if d.entry.plane is Plane.DATA}
    assert data_sessions == sub_ids
    sent = [d.value for d in entries if d.entry.plane is Plane.SENT]
    assert isinstance(sent[0], types.CreateBacktestSessionRequest)
    continues = [r for r in sent if isinstance(r, types.ContinueSessionRequestV1)]
    assert {r.session_id for r in continues} == sub_ids
    assert KEY.encode() not in _store_bytes(path)

    assert await _replay(path, run_id, _parallel, programs) == live


async def test_a_different_continue_is_a_divergence_naming_the_step(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    run_id, _, programs = await _record(path, _single)

    async def other(url: str, key: str, p: Sequence[str], rec: Recorder | None) -> Any:
        return await _single(url, key, p, rec, step=3)

    told: list[events.Event] = []

    async def replay() -> None:
        async with replay_server(path, run_id) as server:
            [(control, _, _)] = (await other(server.url, "", programs, None)).values()
            told.append(control[-1])

    with pytest.raises(ReplayDivergence) as caught:
        await replay()
    assert isinstance(told[0], events.ErrorEvent)  # the client was told, too
    divergence = caught.value
    assert divergence.step == 1
    assert "step 1 of session" in str(divergence)
    assert divergence.expected is not None
    assert '"advanceCount":2' in divergence.expected.replace(" ", "")
    assert '"advanceCount":3' in divergence.received.replace(" ", "")


async def test_a_different_continue_of_a_sub_session_is_a_divergence(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    run_id, _, programs = await _record(path, _parallel)

    async def other(url: str, key: str, p: Sequence[str], rec: Recorder | None) -> Any:
        return await _parallel(url, key, p, rec, step=5)

    async with replay_server(path, run_id, raise_on_divergence=False) as replay:
        seen = await other(replay.url, "", programs, None)
    assert len(replay.divergences) == 4  # each sub-session diverges at its first continue
    assert {d.step for d in replay.divergences} == {1}
    assert all(isinstance(control[-1], events.ErrorEvent) for control, _, _ in seen.values())


@pytest.mark.parametrize("drop_after", [9, 26, 33])
async def test_a_run_with_a_dropped_control_connection_replays(
    tmp_path: Path, drop_after: int
) -> None:
    path = tmp_path / "runs.db"
    faults = FaultPlan(control_connections={1: Faults(drop_after=drop_after)})
    run_id, live, programs = await _record(path, _single, faults)
    sent = _kinds(path, run_id, Plane.SENT)
    assert "attachBacktestSession" in sent  # the re-attach is in the recording...
    assert "resumeAttachedSession" in sent
    assert "sessionAttached" in _kinds(path, run_id, Plane.CONTROL)
    control, _, _ = live["single"]
    assert isinstance(control[-1], events.Completed)
    # ... and a replay on one connection still gives the driver what it saw live.
    assert await _replay(path, run_id, _single, programs) == live


async def test_a_parallel_run_with_a_dropped_control_connection_replays(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    faults = FaultPlan(control_connections={1: Faults(drop_after=20)})
    run_id, live, programs = await _record(path, _parallel, faults)
    assert "attachParallelControlSessionV2" in _kinds(path, run_id, Plane.SENT)
    assert "parallelSessionAttachedV2" in _kinds(path, run_id, Plane.CONTROL)
    assert await _replay(path, run_id, _parallel, programs) == live


async def test_a_run_with_dropped_data_connections_replays(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    drops = {1: Faults(drop_after=5), 2: Faults(drop_after=12)}
    run_id, live, programs = await _record(path, _single, FaultPlan(data_connections=drops))
    # What the re-subscriptions delivered (replayed from each subscription's cursor) is what
    # was recorded, and so what the replay delivers.
    assert await _replay(path, run_id, _single, programs) == live


async def _record_reattached_run(path: Path) -> str:
    """A single run whose connection dropped while the driver held a readiness event.

    After the re-attach the server sent one frame again (seq 7), re-announced the readiness
    (seq 9), answered the attach and the resume; a notification of the last step was delivered
    after ``completed``. All of it recorded as the managed layer records it.
    """
    create = SINGLE.to_request()
    step = Continue(2).to_params()
    async with open_recorder(path, create_params=create, server_url="ws://h") as r:
        await r.record_sent(None, create)
        await r.record_control(None, types.SessionCreated(SESSION, f"/backtest/{SESSION}"))
        frames: list[tuple[int, types.BacktestResponse]] = [
            (1, types.Status(BacktestStatus.PREPARING_BUNDLE)),
            (2, types.Status(BacktestStatus.BUNDLE_READY)),
            (3, types.SlotNotification(3000)),
            (4, types.ReadyForContinue()),
        ]
        for seq, frame in frames:
            await r.record_control(SESSION, frame, seq_id=seq)
        await r.record_sent(SESSION, step)
        await r.record_control(SESSION, types.SlotNotification(3001), seq_id=5)
        await r.record_notification(SESSION, diff(3001), program_id=PROGRAM_A)
        decoded = types.Status(BacktestStatus.DECODED_TRANSACTIONS)
        await r.record_control(SESSION, decoded, seq_id=6)
        await r.record_control(SESSION, types.SlotNotification(3002), seq_id=7)
        await r.record_control(SESSION, types.ReadyForContinue(), seq_id=8)
        # The connection drops before the continue is written; a new one attaches.
        await r.record_sent(SESSION, types.AttachBacktestSession(SESSION, 8))
        await r.record_control(SESSION, types.SlotNotification(3002), seq_id=7)
        await r.record_control(SESSION, types.ReadyForContinue(), seq_id=9)
        await r.record_control(SESSION, types.SessionAttached(SESSION, f"/backtest/{SESSION}"))
        await r.record_sent(SESSION, types.ResumeAttachedSession())
        await r.record_control(SESSION, types.Success())
        await r.record_sent(SESSION, step)
        await r.record_control(SESSION, types.SlotNotification(3003), seq_id=10)
        await r.record_control(SESSION, types.Completed(), seq_id=11)
        await r.record_notification(SESSION, diff(3003), program_id=PROGRAM_A)
        await r.record_sent(SESSION, types.CloseBacktestSession())
        await r.record_control(SESSION, types.Success())
        return r.run_id


async def test_re_attach_frames_replay_as_the_client_saw_them(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    run_id = await _record_reattached_run(path)
    async with replay_server(path, run_id) as replay:
        with trio.fail_after(5):
            async with open_managed_session(replay.url, "", SINGLE, config=CONFIG) as session:
                session.subscribe_account_diffs([PROGRAM_A])
                control, diffs, _ = await _drive(session, 2)
    assert control == [
        events.Status(BacktestStatus.PREPARING_BUNDLE),
        events.Status(BacktestStatus.BUNDLE_READY),
        events.Slot(3000),
        events.ReadyForContinue(),
        events.Slot(3001),
        events.Status(BacktestStatus.DECODED_TRANSACTIONS),
        events.Slot(3002),
        events.ReadyForContinue(),  # seq 8; the re-announced seq 9 is not replayed
        events.Slot(3003),
        events.Completed(),
    ]
    assert [e.notification.slot for e in diffs] == [
        3001,
        3003,  # recorded after completed, replayed before the terminal
    ]


async def test_a_writer_failure_stops_the_run_with_recording_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "runs.db"
    original = RunStore.append
    calls = 0

    def failing(self: RunStore, *args: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise OSError(28, "No space left on device")
        original(self, *args, **kwargs)

    monkeypatch.setattr(RunStore, "append", failing)
    with trio.fail_after(10):
        async with serve(seed=21, api_key=KEY, bundle_size=BUNDLE) as server:
            programs = server.config.program_ids
            with pytest.raises(RecordingFailed, match="No space left") as caught:
                async with open_recorder(
                    path, create_params=PARALLEL, server_url=server.url, flush_size=8
                ) as rec:
                    await _parallel(server.url, KEY, programs, rec)
    assert type(caught.value) is RecordingFailed  # plain, not inside an exception group
    assert caught.value.durable >= 1


@pytest.mark.parametrize("strategy", [_single, _parallel], ids=["single", "parallel"])
async def test_a_failing_record_call_ends_the_session_with_recording_failed(
    tmp_path: Path, strategy: Strategy
) -> None:
    path = tmp_path / "runs.db"
    create = PARALLEL if strategy is _parallel else SINGLE
    with trio.fail_after(10):
        async with (
            serve(seed=21, api_key=KEY, bundle_size=BUNDLE) as server,
            open_recorder(path, create_params=create, server_url=server.url) as rec,
        ):
            real = rec.record_control_nowait
            seen = 0

            def flaky(*args: Any, **kwargs: Any) -> None:
                nonlocal seen
                seen += 1
                if seen == 20:
                    raise RecordingFailed("the disk went away")
                real(*args, **kwargs)

            rec.record_control_nowait = flaky  # type: ignore[method-assign]
            with pytest.raises(RecordingFailed, match="the disk went away") as caught:
                await strategy(server.url, KEY, server.config.program_ids, rec)
            assert type(caught.value) is RecordingFailed
    assert get_run(path, rec.run_id).status is RunStatus.ENDED


async def test_the_api_key_is_redacted_even_when_not_given_as_a_secret(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    key = "preparingBundle"  # a key that happens to occur in recorded frames
    async with serve(seed=21, api_key=key) as server:
        programs = server.config.program_ids
        async with open_recorder(path, create_params=SINGLE, server_url=server.url) as rec:
            await _single(server.url, key, programs, rec)
    assert key.encode() not in _store_bytes(path)
    with RunStore.open(path) as store:
        payloads = [entry.payload for entry in store.iter_entries(rec.run_id)]
    assert not any(key.encode() in payload for payload in payloads)
    assert any(b"<redacted>" in payload for payload in payloads)


async def test_a_recorder_waiting_for_the_disk_is_no_keepalive_loss(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "runs.db"
    async with (
        serve(seed=21, api_key=KEY) as server,
        open_recorder(path, create_params=SINGLE, server_url=server.url) as rec,
    ):
        real = rec.wait_for_room
        waits = 0

        async def slow_disk() -> None:
            nonlocal waits
            waits += 1
            if waits == 3:
                await trio.sleep(300)  # far past the 45 s keepalive deadline
            await real()

        rec.wait_for_room = slow_disk  # type: ignore[method-assign]
        seen: list[events.Event] = []
        async with open_managed_session(server.url, KEY, SINGLE, config=CONFIG, recorder=rec) as s:
            async for event in s.events():
                seen.append(event)
                if isinstance(event, events.ReadyForContinue):
                    await s.send_continue(Continue(4))
    assert waits > 3
    assert isinstance(seen[-1], events.Completed)
    assert server.connection_count("control") == 1  # never reconnected
