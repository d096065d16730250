"""open_managed_session against scripted fake control servers (exact frame sequences)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from simtrio import events, wire
from simtrio.errors import (
    ContinueSendFailed,
    ControlClosed,
    ControlFailed,
    CreateFailed,
    InvalidParams,
)
from simtrio.managed.config import ConnectionStatus, ManagedConfig
from simtrio.managed.session import ManagedSession, open_managed_session
from simtrio.params import Continue, CreateSession

from .fakes import FakeConnection, control_of, fake_server, frame, request, status_of

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from tests.support.fakeserver import FakeServer, Script

KEY = "sk-test-secret-key-1234"
SID = "backtest_5d1c"
CREATE = CreateSession(4000, end_slot=4003, disconnect_timeout_secs=120, send_summary=True)
CREATE_TEXT = request(CREATE.to_request())
CREATED = frame(wire.SessionCreated(SID, f"/backtest/{SID}", None))
ATTACHED = frame(wire.SessionAttached(SID, f"/backtest/{SID}", None))
RESUME = request(wire.ResumeAttachedSession())
CLOSE = request(wire.CloseBacktestSession())
READY = wire.ReadyForContinue()
SUMMARY = wire.SessionSummary(correct_simulation=9)
CONFIG = ManagedConfig(rng_seed=7)


def attach(last: int | None) -> str:
    return request(wire.AttachBacktestSession(SID, last))


def cont(count: int) -> str:
    return request(wire.ContinueParams(count))


def slot(number: int, seq: int) -> str:
    return frame(wire.SlotNotification(number), seq)


def status(value: wire.BacktestStatus, seq: int | None) -> str:
    return frame(wire.Status(value), seq)


def ready(seq: int) -> str:
    return frame(READY, seq)


def completed(seq: int) -> str:
    return frame(wire.Completed(SUMMARY, None), seq)


async def close_politely(conn: FakeConnection, seq: int | None = None) -> None:
    """The end of every script: answer closeBacktestSession, then wait for the client's Close."""
    await conn.expect(CLOSE)
    await conn.send(frame(wire.Success(), seq))
    assert await conn.wait_gone() == 1000


async def create_and_ready(conn: FakeConnection) -> None:
    """The start of a fresh session: the create request, answered with the session and a
    first readiness."""
    await conn.expect(CREATE_TEXT)
    await conn.send(CREATED, ready(1))


async def resume_and_finish(conn: FakeConnection, completed_seq: int) -> None:
    """After an attach is answered: the resume, the last one-slot continue, the end."""
    await conn.expect(RESUME)
    await conn.expect(cont(1))
    await conn.send(completed(completed_seq))
    await close_politely(conn)


async def drive(session: ManagedSession, counts: Iterable[int]) -> list[events.Event]:
    """Read until the stream ends, answering each readiness with the next advance count."""
    pending = iter(counts)
    seen: list[events.Event] = []
    async for ev in session.events():
        seen.append(ev)
        if isinstance(ev, events.ReadyForContinue | events.Paused):
            await session.send_continue(Continue(next(pending)))
    return seen


FULL_RUN = [
    events.Status(wire.BacktestStatus.PREPARING_BUNDLE),
    events.Slot(4000),
    events.ReadyForContinue(),
    events.Slot(4001),
    events.Slot(4002),
    events.ReadyForContinue(),
    events.Slot(4003),
    events.Completed(SUMMARY, None),
]


async def run_one_slot(
    scripts: Sequence[Script], *, config: ManagedConfig = CONFIG, script_timeout: float = 30.0
) -> FakeServer:
    """Run ``CREATE`` against ``scripts`` continuing by one slot at the one readiness; check
    that the events were exactly slot 4000, that readiness and the completion."""
    async with (
        fake_server(scripts, script_timeout=script_timeout) as server,
        open_managed_session(server.url, KEY, CREATE, config=config) as session,
    ):
        seen = await drive(session, [1])
    assert seen == [events.Slot(4000), events.ReadyForContinue(), events.Completed(SUMMARY, None)]
    return server


async def test_create_ready_continue_completed(autojump_clock: trio.testing.MockClock) -> None:
    async def script(conn: FakeConnection) -> None:
        await conn.expect(CREATE_TEXT)
        await conn.send(
            CREATED,
            status(wire.BacktestStatus.PREPARING_BUNDLE, 1),
            slot(4000, 2),
            ready(3),
        )
        await conn.expect(cont(2))
        await conn.send(slot(4001, 4), slot(4002, 5), ready(6))
        await conn.expect(cont(1))
        await conn.send(slot(4003, 7), completed(8))
        await close_politely(conn, 9)

    async with fake_server([script]) as server:
        async with open_managed_session(server.url, KEY, CREATE, config=CONFIG) as session:
            assert session.connection_status is ConnectionStatus.UP
            info = session.session_info
            assert info.session_id == SID
            assert info.rpc_endpoint == f"http://127.0.0.1:{server.port}/backtest/{SID}"
            assert info.task_id is None
            assert await drive(session, [2, 1]) == FULL_RUN
            with pytest.raises(ControlClosed):
                await session.next_event()
            with pytest.raises(ContinueSendFailed):
                await session.send_continue(Continue(1))
        assert status_of(session) is ConnectionStatus.DOWN
        conn = server.control[0]
        assert conn.headers["x-api-key"] == KEY
        assert conn.methods == [
            "createBacktestSession",
            "continue",
            "continue",
            "closeBacktestSession",
        ]
        assert len(server.control) == 1


async def test_frames_before_session_created_are_buffered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def script(conn: FakeConnection) -> None:
        await conn.expect(CREATE_TEXT)
        await conn.send(
            status(wire.BacktestStatus.PREPARING_BUNDLE, None),  # before sessionCreated
            status(wire.BacktestStatus.BUNDLE_READY, None),
            CREATED,
            slot(4000, 1),
            ready(2),
        )
        await conn.expect(cont(3))
        await conn.send(slot(4001, 3), slot(4002, 4), slot(4003, 5), completed(6))
        await close_politely(conn)

    async with (
        fake_server([script]) as server,
        open_managed_session(server.url, KEY, CREATE, config=CONFIG) as session,
    ):
        seen = await drive(session, [3])
    assert seen == [
        events.Status(wire.BacktestStatus.PREPARING_BUNDLE),
        events.Status(wire.BacktestStatus.BUNDLE_READY),
        events.Slot(4000),
        events.ReadyForContinue(),
        events.Slot(4001),
        events.Slot(4002),
        events.Slot(4003),
        events.Completed(SUMMARY, None),
    ]


async def test_drop_mid_run_attaches_with_cursor_and_drops_replays(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def first(conn: FakeConnection) -> None:
        await conn.expect(CREATE_TEXT)
        await conn.send(CREATED, status(wire.BacktestStatus.PREPARING_BUNDLE, 1), slot(4000, 2))
        await conn.send(ready(3))
        await conn.expect(cont(2))
        await conn.send(slot(4001, 4))
        conn.drop()

    async def second(conn: FakeConnection) -> None:
        await conn.expect(attach(4))
        # The server replays from an older point: 3 and 4 are duplicates.
        await conn.send(ready(3), slot(4001, 4), slot(4002, 5), ready(6), ATTACHED)
        await conn.expect(RESUME)
        await conn.send(frame(wire.Success()))
        await conn.expect(cont(1))
        await conn.send(slot(4003, 7), completed(8))
        await close_politely(conn, 9)

    async with (
        fake_server([first, second]) as server,
        open_managed_session(server.url, KEY, CREATE, config=CONFIG) as session,
    ):
        statuses: list[ConnectionStatus] = []
        seen = await drive(session, [2, 1])
        statuses.append(session.connection_status)
    assert seen == FULL_RUN
    assert statuses == [ConnectionStatus.UP]
    assert server.control[1].methods == [
        "attachBacktestSession",
        "resumeAttachedSession",
        "continue",
        "closeBacktestSession",
    ]


async def test_status_goes_reconnecting_then_up(autojump_clock: trio.testing.MockClock) -> None:
    resumed = trio.Event()
    release = trio.Event()

    async def first(conn: FakeConnection) -> None:
        await create_and_ready(conn)
        await release.wait()
        conn.drop()

    async def second(conn: FakeConnection) -> None:
        await conn.expect(attach(1))
        await conn.send(ATTACHED)
        await conn.expect(RESUME)
        resumed.set()
        await conn.wait_gone()

    async with (
        fake_server([first, second]) as server,
        open_managed_session(server.url, KEY, CREATE, config=CONFIG) as session,
    ):
        seen: list[ConnectionStatus] = [session.connection_status]

        async def watch() -> None:
            while True:
                await control_of(session).status.wait_until(lambda s: s is not seen[-1])
                seen.append(session.connection_status)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            await trio.testing.wait_all_tasks_blocked()
            release.set()
            await resumed.wait()
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        assert seen == [ConnectionStatus.UP, ConnectionStatus.RECONNECTING, ConnectionStatus.UP]


async def test_readiness_resent_after_lost_continue_is_delivered_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def first(conn: FakeConnection) -> None:
        await conn.expect(CREATE_TEXT)
        await conn.send(CREATED, slot(4000, 1), ready(2))
        await conn.expect(cont(2))  # written by the client, but "lost" here
        conn.drop()

    async def second(conn: FakeConnection) -> None:
        await conn.expect(attach(2))
        await conn.send(ready(3), ATTACHED)  # re-sent readiness (§6.8)
        await conn.expect(RESUME)
        await conn.expect(cont(3))
        await conn.send(slot(4001, 4), slot(4002, 5), slot(4003, 6), completed(7))
        await close_politely(conn)

    async with (
        fake_server([first, second]) as server,
        open_managed_session(server.url, KEY, CREATE, config=CONFIG) as session,
    ):
        seen = await drive(session, [2, 3])
    assert seen == [
        events.Slot(4000),
        events.ReadyForContinue(),
        events.ReadyForContinue(),
        events.Slot(4001),
        events.Slot(4002),
        events.Slot(4003),
        events.Completed(SUMMARY, None),
    ]


async def test_redundant_readiness_is_dropped(autojump_clock: trio.testing.MockClock) -> None:
    resumed = trio.Event()

    async def first(conn: FakeConnection) -> None:
        await create_and_ready(conn)
        await trio.testing.wait_all_tasks_blocked()
        conn.drop()  # the driver still holds the readiness: it has not continued yet

    async def second(conn: FakeConnection) -> None:
        await conn.expect(attach(1))
        await conn.send(ready(2), ATTACHED)  # re-sent, but the driver already holds it
        await conn.expect(RESUME)
        resumed.set()
        await conn.expect(cont(3))
        await conn.send(slot(4001, 3), completed(4))
        await close_politely(conn)

    async with (
        fake_server([first, second]) as server,
        open_managed_session(server.url, KEY, CREATE, config=CONFIG) as session,
    ):
        assert await session.next_event() == events.ReadyForContinue()
        await resumed.wait()
        await session.send_continue(Continue(3))
        rest = [ev async for ev in session.events()]
    assert rest == [events.Slot(4001), events.Completed(SUMMARY, None)]


async def test_terminal_error_fails_the_session(autojump_clock: trio.testing.MockClock) -> None:
    error = wire.Internal("bank exploded")

    async def script(conn: FakeConnection) -> None:
        await create_and_ready(conn)
        await conn.expect(cont(1))
        await conn.send(frame(wire.Error(wire.NoMoreBlocks()), 2))  # non-terminal: an event
        await conn.send(frame(wire.Error(error), 3))
        await conn.wait_gone()

    async with fake_server([script]) as server:
        async with open_managed_session(server.url, KEY, CREATE, config=CONFIG) as session:
            assert await session.next_event() == events.ReadyForContinue()
            await session.send_continue(Continue(1))
            assert await session.next_event() == events.ErrorEvent(wire.NoMoreBlocks())
            with pytest.raises(ControlFailed) as info:
                await session.next_event()
            assert info.value.error == error
            assert status_of(session) is ConnectionStatus.FAILED
            with pytest.raises(ContinueSendFailed):
                await session.send_continue(Continue(1))
            with pytest.raises(ControlClosed):
                await session.next_event()
        # Already raised by next_event: leaving the block does not raise it again.
        assert status_of(session) is ConnectionStatus.FAILED
    assert server.control[0].methods == ["createBacktestSession", "continue"]


async def test_unseen_failure_is_raised_when_the_block_is_left(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def script(conn: FakeConnection) -> None:
        await conn.expect(CREATE_TEXT)
        await conn.send(CREATED, frame(wire.Error(wire.SessionOwnerMismatch()), 1))
        await conn.wait_gone()

    async with fake_server([script]) as server:
        with pytest.raises(ControlFailed) as info:
            async with open_managed_session(server.url, KEY, CREATE, config=CONFIG) as session:
                await control_of(session).done.wait()
        assert info.value.error == wire.SessionOwnerMismatch()


async def test_session_not_found_on_attach_fails(autojump_clock: trio.testing.MockClock) -> None:
    async def first(conn: FakeConnection) -> None:
        await create_and_ready(conn)
        conn.drop()

    async def second(conn: FakeConnection) -> None:
        await conn.expect(attach(1))
        await conn.send(frame(wire.Error(wire.SessionNotFound(SID))))
        await conn.wait_gone()

    async with (
        fake_server([first, second]) as server,
        open_managed_session(server.url, KEY, CREATE, config=CONFIG) as session,
    ):
        assert await session.next_event() == events.ReadyForContinue()
        with pytest.raises(ControlFailed) as info:
            await session.next_event()
        assert info.value.error == wire.SessionNotFound(SID)
        assert status_of(session) is ConnectionStatus.FAILED
    assert len(server.control) == 2


async def test_non_terminal_attach_error_retries(autojump_clock: trio.testing.MockClock) -> None:
    async def first(conn: FakeConnection) -> None:
        await create_and_ready(conn)
        await conn.expect(cont(3))
        conn.drop()  # the step is under way: it goes on while the client re-attaches

    async def busy(conn: FakeConnection) -> None:
        await conn.expect(attach(1))
        await conn.send(frame(wire.Error(wire.InvalidRequest("try again"))))
        await conn.wait_gone()

    async def third(conn: FakeConnection) -> None:
        await conn.expect(attach(1))
        await conn.send(ATTACHED)
        await conn.expect(RESUME)
        await conn.send(slot(4001, 2), completed(3))
        await close_politely(conn)

    async with (
        fake_server([first, busy, third]) as server,
        open_managed_session(server.url, KEY, CREATE, config=CONFIG) as session,
    ):
        seen = await drive(session, [3])
    assert seen == [events.ReadyForContinue(), events.Slot(4001), events.Completed(SUMMARY, None)]
    assert server.control[1].close_code in (1000, 1006)


async def test_create_refused_then_succeeds(autojump_clock: trio.testing.MockClock) -> None:
    async def script(conn: FakeConnection) -> None:
        await conn.expect(CREATE_TEXT)
        await conn.send(CREATED)
        await close_politely(conn)

    def reject(path: str, index: int) -> int | None:
        return 503 if index <= 3 else None

    start = trio.current_time()
    async with (
        fake_server(script, reject=reject) as server,
        open_managed_session(server.url, KEY, CREATE, config=CONFIG) as session,
    ):
        assert session.session_info.session_id == SID
        elapsed = trio.current_time() - start
    assert server.upgrades["/backtest"] == 4
    # Three backoff delays, each at most its ceiling: 0.25 + 0.5 + 1.0.
    assert 0.03 <= elapsed <= 1.75 + 0.01


async def test_refused_tcp_connects_are_retried_until_the_budget_is_spent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = ManagedConfig(rng_seed=1, reconnect_max_total=20.0, first_connect_max_total=None)
    start = trio.current_time()
    with pytest.raises(CreateFailed) as info:
        async with open_managed_session(f"ws://127.0.0.1:{port}", KEY, CREATE, config=config):
            raise AssertionError("not reached")
    assert 20.0 <= trio.current_time() - start <= 21.0
    assert "20 s" in str(info.value)
    assert KEY not in repr(info.value)


async def test_a_refused_first_connection_is_retried_only_briefly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = ManagedConfig(rng_seed=1)  # the default outage budget is 900 s
    start = trio.current_time()
    with pytest.raises(CreateFailed) as info:
        async with open_managed_session(f"ws://127.0.0.1:{port}", KEY, CREATE, config=config):
            raise AssertionError("not reached")
    assert 10.0 <= trio.current_time() - start <= 10.5
    assert "within 10 s" in str(info.value)
    assert "connection refused" in str(info.value)


async def test_budget_spent_on_rejected_upgrades(autojump_clock: trio.testing.MockClock) -> None:
    config = ManagedConfig(rng_seed=1, reconnect_max_total=30.0)
    async with fake_server([], reject=lambda path, index: 502) as server:
        with pytest.raises(CreateFailed) as info:
            async with open_managed_session(server.url, KEY, CREATE, config=config):
                raise AssertionError("not reached")
    assert server.upgrades["/backtest"] > 3
    assert "502" in str(info.value)


async def test_max_retries_ends_the_create(autojump_clock: trio.testing.MockClock) -> None:
    from simtrio.core.backoff import BackoffPolicy

    config = ManagedConfig(rng_seed=1, backoff=BackoffPolicy(max_retries=2))
    async with fake_server([], reject=lambda path, index: 500) as server:
        with pytest.raises(CreateFailed, match="2 failed reconnect attempts"):
            async with open_managed_session(server.url, KEY, CREATE, config=config):
                raise AssertionError("not reached")
    assert server.upgrades["/backtest"] == 3


async def test_unauthorized_is_create_failed_at_once() -> None:
    async with fake_server([], reject=lambda path, index: 401) as server:
        with trio.fail_after(2):
            with pytest.raises(CreateFailed) as info:
                async with open_managed_session(server.url, KEY, CREATE, config=CONFIG):
                    raise AssertionError("not reached")
    assert "401" in str(info.value)
    assert server.upgrades["/backtest"] == 1
    text = repr(info.value) + str(info.value) + repr(info.value.__context__)
    assert KEY not in text


async def test_unusable_url_is_create_failed() -> None:
    with pytest.raises(CreateFailed):
        async with open_managed_session("http://127.0.0.1:1/x", KEY, CREATE, config=CONFIG):
            raise AssertionError("not reached")


async def test_error_reply_to_create_is_create_failed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def script(conn: FakeConnection) -> None:
        await conn.expect(CREATE_TEXT)
        await conn.send(status(wire.BacktestStatus.PREPARING_BUNDLE, None))
        await conn.send(frame(wire.Error(wire.BundleNotFound(4000, 4003))))
        await conn.wait_gone()

    async with fake_server([script]) as server:
        with pytest.raises(CreateFailed, match="server error"):
            async with open_managed_session(server.url, KEY, CREATE, config=CONFIG):
                raise AssertionError("not reached")
    assert len(server.control) == 1


async def test_drop_before_session_created_resends_the_create(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def first(conn: FakeConnection) -> None:
        await conn.expect(CREATE_TEXT)
        await conn.send(status(wire.BacktestStatus.PREPARING_BUNDLE, None))
        conn.drop()

    async def second(conn: FakeConnection) -> None:
        await create_and_ready(conn)
        await close_politely(conn)

    async with (
        fake_server([first, second]) as server,
        open_managed_session(server.url, KEY, CREATE, config=CONFIG) as session,
    ):
        # The status of the abandoned create was discarded with it.
        assert await session.next_event() == events.ReadyForContinue()
    assert len(server.control) == 2


async def test_create_response_timeout_reconnects(autojump_clock: trio.testing.MockClock) -> None:
    config = ManagedConfig(rng_seed=1, create_response_timeout=100.0)

    async def silent(conn: FakeConnection) -> None:
        await conn.expect(CREATE_TEXT)
        await conn.wait_gone()

    async def second(conn: FakeConnection) -> None:
        await conn.expect(CREATE_TEXT)
        await conn.send(CREATED)
        await close_politely(conn)

    start = trio.current_time()
    async with (
        fake_server([silent, second], script_timeout=1000) as server,
        open_managed_session(server.url, KEY, CREATE, config=config),
    ):
        assert 100.0 <= trio.current_time() - start <= 101.0
    assert server.control[0].close_code == 1006  # dropped at once, no close handshake


async def test_keepalive_miss_reconnects(autojump_clock: trio.testing.MockClock) -> None:
    config = ManagedConfig(rng_seed=1, keepalive_interval=10.0, keepalive_miss_deadline=30.0)
    stalled_at: list[float] = []
    replaced = trio.Event()

    async def first(conn: FakeConnection) -> None:
        await create_and_ready(conn)
        await trio.testing.wait_all_tasks_blocked()
        stalled_at.append(trio.current_time())
        conn.stall()
        await replaced.wait()

    async def second(conn: FakeConnection) -> None:
        replaced.set()
        await conn.expect(attach(1))
        await conn.send(ready(2), ATTACHED)  # the continue written into the stall was lost
        await resume_and_finish(conn, 3)

    async with (
        fake_server([first, second], script_timeout=1000) as server,
        open_managed_session(server.url, KEY, CREATE, config=config) as session,
    ):
        assert await session.next_event() == events.ReadyForContinue()
        await session.send_continue(Continue(1))
        assert await session.next_event() == events.ReadyForContinue()
        reconnected_at = trio.current_time()
        await session.send_continue(Continue(1))
        assert await session.next_event() == events.Completed(SUMMARY, None)
    # Lost at the first Ping tick at or after 30 s of silence, then at most 0.25 s of backoff.
    assert 30.0 <= reconnected_at - stalled_at[0] <= 40.0 + 0.25 + 0.01
    assert len(server.control) == 2


async def test_unknown_and_stray_responses_are_ignored(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def first(conn: FakeConnection) -> None:
        await conn.expect(CREATE_TEXT)
        await conn.send(
            CREATED,
            '{"seqId":1,"method":"somethingNew","params":{"x":1}}',
            '{"method":"slotNotification","params":"4000"}',  # does not fit: unknown, ignored
            frame(wire.SessionsCreated(["x"])),  # a stray parallel reply
            frame(wire.SessionAttached(SID, "/x", None)),  # a stray handshake reply
            ready(2),
        )
        await conn.expect(cont(1))
        conn.drop()

    async def second(conn: FakeConnection) -> None:
        await conn.expect(attach(2))  # the unknown frame's number counted
        await conn.send(ready(3), ATTACHED)
        await conn.expect(RESUME)
        await conn.expect(cont(2))
        await conn.send(completed(4))
        await close_politely(conn)

    async with (
        fake_server([first, second]) as server,
        open_managed_session(server.url, KEY, CREATE, config=CONFIG) as session,
    ):
        seen = await drive(session, [1, 2])
    assert seen == [
        events.ReadyForContinue(),
        events.ReadyForContinue(),
        events.Completed(SUMMARY, None),
    ]


async def test_malformed_frame_reconnects_with_the_cursor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def first(conn: FakeConnection) -> None:
        await conn.expect(CREATE_TEXT)
        await conn.send(CREATED, slot(4000, 1), '{"method":"readyForContinue"')
        await conn.wait_gone()

    async def second(conn: FakeConnection) -> None:
        await conn.expect(attach(1))
        await conn.send(ready(2), ATTACHED)
        await resume_and_finish(conn, 3)

    server = await run_one_slot([first, second])
    assert server.control[0].close_code == 1006


async def test_binary_frames(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async def script(conn: FakeConnection) -> None:
        await conn.expect(CREATE_TEXT)
        await conn.send(CREATED.encode(), b"\xff\xfe not utf-8", ready(1).encode())
        await conn.expect(cont(1))
        await conn.send(completed(2))
        await close_politely(conn)

    caplog.set_level(logging.WARNING)
    async with (
        fake_server([script]) as server,
        open_managed_session(server.url, KEY, CREATE, config=CONFIG) as session,
    ):
        seen = await drive(session, [1])
    assert seen == [events.ReadyForContinue(), events.Completed(SUMMARY, None)]
    assert any("not UTF-8" in record.getMessage() for record in caplog.records)
    assert len(server.control) == 1


async def test_continue_to_and_paused(autojump_clock: trio.testing.MockClock) -> None:
    paused = wire.PausedEvent(4001, 2)

    async def script(conn: FakeConnection) -> None:
        await create_and_ready(conn)
        await conn.expect(request(wire.ContinueToParams(4001, 2)))
        await conn.send(frame(wire.Paused(paused), 2))
        await conn.expect(request(wire.ContinueToParams(4002, None)))
        await conn.send(completed(3))
        await close_politely(conn)

    async with (
        fake_server([script]) as server,
        open_managed_session(server.url, KEY, CREATE, config=CONFIG) as session,
    ):
        assert await session.next_event() == events.ReadyForContinue()
        with pytest.raises(InvalidParams):
            await session.send_continue_to(-1)
        await session.send_continue_to(4001, 2)
        assert await session.next_event() == events.Paused(paused)
        await session.send_continue_to(4002)
        assert await session.next_event() == events.Completed(SUMMARY, None)


async def test_continue_waits_for_up(autojump_clock: trio.testing.MockClock) -> None:
    proceed = trio.Event()

    async def first(conn: FakeConnection) -> None:
        await create_and_ready(conn)
        await trio.testing.wait_all_tasks_blocked()
        conn.drop()

    async def second(conn: FakeConnection) -> None:
        await conn.expect(attach(1))
        await proceed.wait()  # hold the attach reply back
        await conn.send(ATTACHED)
        await conn.expect(RESUME)
        await conn.expect(cont(2))  # only after the resume
        await conn.send(completed(2))
        await close_politely(conn)

    async with (
        fake_server([first, second]) as server,
        open_managed_session(server.url, KEY, CREATE, config=CONFIG) as session,
    ):
        assert await session.next_event() == events.ReadyForContinue()
        await server.wait_for(lambda: len(server.control) == 2)
        async with trio.open_nursery() as nursery:
            sent = trio.Event()

            async def send() -> None:
                await session.send_continue(Continue(2))
                sent.set()

            nursery.start_soon(send)
            await trio.testing.wait_all_tasks_blocked()
            assert not sent.is_set()
            assert session.connection_status is ConnectionStatus.RECONNECTING
            proceed.set()
        assert await session.next_event() == events.Completed(SUMMARY, None)


async def test_completed_then_lost_does_not_reconnect(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def script(conn: FakeConnection) -> None:
        await conn.expect(CREATE_TEXT)
        await conn.send(CREATED, completed(1))
        await trio.testing.wait_all_tasks_blocked()
        conn.drop()

    async with (
        fake_server([script]) as server,
        open_managed_session(server.url, KEY, CREATE, config=CONFIG) as session,
    ):
        assert await session.next_event() == events.Completed(SUMMARY, None)
        await control_of(session).done.wait()
        with pytest.raises(ControlClosed):
            await session.next_event()
        assert status_of(session) is ConnectionStatus.DOWN
    assert len(server.control) == 1


async def test_leaving_early_closes_the_session_promptly() -> None:
    async def script(conn: FakeConnection) -> None:
        await create_and_ready(conn)
        await close_politely(conn)

    async with fake_server([script]) as server:
        with trio.fail_after(1):
            async with open_managed_session(server.url, KEY, CREATE, config=CONFIG) as session:
                assert await session.next_event() == events.ReadyForContinue()
            await server.wait_for(lambda: server.control[0].gone.is_set())
    conn = server.control[0]
    assert conn.methods == ["createBacktestSession", "closeBacktestSession"]
    assert conn.close_code == 1000


async def test_close_is_bounded_when_the_server_never_answers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def script(conn: FakeConnection) -> None:
        await create_and_ready(conn)
        await conn.expect(CLOSE)
        conn.stall()  # no reply, no Close echo, TCP stays open
        await trio.sleep_forever()

    config = ManagedConfig(rng_seed=1, graceful_close_timeout=3.0)
    async with fake_server([script], script_timeout=1000) as server:
        async with open_managed_session(server.url, KEY, CREATE, config=config) as session:
            assert await session.next_event() == events.ReadyForContinue()
            left = trio.current_time()
        took = trio.current_time() - left
        assert 3.0 <= took <= 6.0 + 0.01
    assert server.control[0].methods == ["createBacktestSession", "closeBacktestSession"]


async def test_outer_cancellation_still_closes(autojump_clock: trio.testing.MockClock) -> None:
    async def script(conn: FakeConnection) -> None:
        await create_and_ready(conn)
        await close_politely(conn)

    sessions: list[ManagedSession] = []
    async with fake_server([script], script_timeout=1000) as server:
        with trio.move_on_after(50):
            async with open_managed_session(server.url, KEY, CREATE, config=CONFIG) as session:
                sessions.append(session)
                await trio.sleep_forever()
        await server.wait_for(lambda: server.control[0].gone.is_set())
    assert server.control[0].methods == ["createBacktestSession", "closeBacktestSession"]
    assert status_of(sessions[0]) is ConnectionStatus.DOWN


async def test_body_exceptions_are_not_wrapped(autojump_clock: trio.testing.MockClock) -> None:
    async def script(conn: FakeConnection) -> None:
        await conn.expect(CREATE_TEXT)
        await conn.send(CREATED)
        await close_politely(conn)

    async with fake_server([script]) as server:
        with pytest.raises(KeyError, match="mine") as info:
            async with open_managed_session(server.url, KEY, CREATE, config=CONFIG):
                raise KeyError("mine")
        await server.wait_for(lambda: server.control[0].gone.is_set())
    assert type(info.value) is KeyError
    assert server.control[0].methods == ["createBacktestSession", "closeBacktestSession"]


async def test_invalid_arguments() -> None:
    with pytest.raises(InvalidParams):
        async with open_managed_session("ws://x", KEY, object(), config=CONFIG):  # type: ignore[arg-type]
            raise AssertionError("not reached")
    with pytest.raises(InvalidParams):
        async with open_managed_session(
            "ws://x", KEY, CreateSession(1, slot_count=1, parallel=True), config=CONFIG
        ):
            raise AssertionError("not reached")


async def test_repr_hides_the_key(autojump_clock: trio.testing.MockClock) -> None:
    async def script(conn: FakeConnection) -> None:
        await conn.expect(CREATE_TEXT)
        await conn.send(CREATED)
        await close_politely(conn)

    async with (
        fake_server([script]) as server,
        open_managed_session(server.url, KEY, CREATE, config=CONFIG) as session,
    ):
        text = repr(session) + repr(control_of(session))
        assert SID in repr(session)
        assert KEY not in text


async def test_attach_reply_timeout_reconnects(autojump_clock: trio.testing.MockClock) -> None:
    config = ManagedConfig(rng_seed=1, handshake_timeout=20.0)

    async def first(conn: FakeConnection) -> None:
        await conn.expect(CREATE_TEXT)
        await conn.send(CREATED, slot(4000, 1))
        conn.drop()

    async def silent(conn: FakeConnection) -> None:
        await conn.expect(attach(1))
        await conn.send(ready(2))  # a frame resets the silence bound, a reply never comes
        await conn.wait_gone()

    async def third(conn: FakeConnection) -> None:
        await conn.expect(attach(2))
        await conn.send(ATTACHED)
        await resume_and_finish(conn, 3)

    server = await run_one_slot([first, silent, third], config=config, script_timeout=1000)
    assert server.control[1].close_code == 1006


async def test_the_key_never_reaches_the_logs(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    def reject(path: str, index: int) -> int | None:
        return {1: 503, 2: 401}.get(index)

    async with fake_server([], reject=reject) as server:
        with pytest.raises(CreateFailed):
            async with open_managed_session(server.url, KEY, CREATE, config=CONFIG):
                raise AssertionError("not reached")
    assert caplog.records
    for record in caplog.records:
        assert KEY not in record.getMessage()
        assert KEY not in repr(record.args)


async def test_readiness_arriving_while_the_continue_is_written_is_delivered(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fast server may answer a continue before the client's write call has returned."""
    from simtrio.transport.connection import WebSocketConnection

    real_send = WebSocketConnection.send_text

    async def slow_send(self: WebSocketConnection, text: str) -> None:
        await real_send(self, text)
        if '"method":"continue"' in text:
            await trio.sleep(1)  # the write "completes" only after the reply is processed

    monkeypatch.setattr(WebSocketConnection, "send_text", slow_send)

    async def script(conn: FakeConnection) -> None:
        await create_and_ready(conn)
        await conn.expect(cont(1))
        await conn.send(slot(4001, 2), ready(3))
        await conn.expect(cont(2))
        await conn.send(slot(4002, 4), slot(4003, 5), completed(6))
        await close_politely(conn, 7)

    async with (
        fake_server([script]) as server,
        open_managed_session(server.url, KEY, CREATE, config=CONFIG) as session,
    ):
        with trio.fail_after(30):
            seen = await drive(session, [1, 2])
    assert seen == [
        events.ReadyForContinue(),
        events.Slot(4001),
        events.ReadyForContinue(),
        events.Slot(4002),
        events.Slot(4003),
        events.Completed(SUMMARY, None),
    ]
