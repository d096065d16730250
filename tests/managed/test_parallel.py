"""open_parallel_session against scripted fake control servers (exact frame sequences)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from simtrio import events, wire
from simtrio.core.demux import TOO_OLD_MESSAGE
from simtrio.errors import ContinueSendFailed, ControlClosed, ControlFailed, CreateFailed
from simtrio.managed.config import ConnectionStatus, ManagedConfig
from simtrio.managed.parallel import ParallelSubSession, open_parallel_session
from simtrio.params import Continue, CreateSession
from simtrio.transport.connection import WebSocketConnection

from .driving import drive
from .fakes import (
    FakeConnection,
    FakeServer,
    Script,
    control_of,
    event,
    fake_server,
    frame,
    request,
    status_of,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

KEY = "sk-parallel-secret"
CID = "parallel_91b2"
A = "backtest_a1"
B = "backtest_a2"
CREATE = CreateSession(4000, end_slot=4199, disconnect_timeout_secs=120)
CREATE_TEXT = request(
    CreateSession(4000, end_slot=4199, disconnect_timeout_secs=120, parallel=True).to_request()
)
SESSIONS = frame(wire.SessionsCreatedV2(CID, [A, B], [None, "task-b"], [4000, 4100], [4099, 4199]))
ATTACHED = frame(wire.ParallelSessionAttachedV2(CID, [A, B], [None, None]))
READY = wire.ReadyForContinue()
DONE = wire.Completed(None, None)
CONFIG = ManagedConfig(rng_seed=3)


def created(session_id: str) -> str:
    return frame(wire.SessionCreated(session_id, f"/backtest/{session_id}", None))


def slot(session_id: str, seq: int, number: int) -> str:
    return event(session_id, seq, wire.SlotNotification(number))


def ready(session_id: str, seq: int) -> str:
    return event(session_id, seq, READY)


def completed(session_id: str, seq: int) -> str:
    return event(session_id, seq, DONE)


def cont(session_id: str, count: int) -> str:
    return request(wire.ContinueSessionRequestV1(session_id, wire.ContinueParams(count)))


def attach(last: Mapping[str, int]) -> str:
    return request(wire.AttachParallelControlSessionV2(CID, dict(last)))


async def expect_any_order(conn: FakeConnection, *texts: str) -> None:
    got = [await conn.receive() for _ in texts]
    assert sorted(got) == sorted(texts)


async def handshake(conn: FakeConnection) -> None:
    await conn.expect(CREATE_TEXT)
    await conn.send(created(A), created(B), SESSIONS, ready(A, 1), ready(B, 1))


async def complete_both(conn: FakeConnection) -> None:
    """Both sub-sessions complete (their second event); then wait for the client to go."""
    await conn.send(completed(A, 2), completed(B, 2))
    await conn.wait_gone()


async def drive_all(subs: list[ParallelSubSession]) -> dict[str, list[events.Event]]:
    out: dict[str, list[events.Event]] = {}

    async def one(sub: ParallelSubSession) -> None:
        out[sub.session_info.session_id] = await drive(sub, 1)

    async with trio.open_nursery() as nursery:
        for sub in subs:
            nursery.start_soon(one, sub)
    return out


async def run_to_the_end(
    scripts: Sequence[Script],
) -> tuple[FakeServer, dict[str, list[events.Event]]]:
    """Drive every sub-session to its end against a fake server running ``scripts``."""
    async with (
        fake_server(scripts) as server,
        open_parallel_session(server.url, KEY, CREATE, config=CONFIG) as parallel,
    ):
        seen = await drive_all(parallel.take_sub_sessions())
    return server, seen


async def test_create_handshake_routing_continues_and_graceful_close(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def script(conn: FakeConnection) -> None:
        await conn.expect(CREATE_TEXT)
        await conn.send(
            frame(wire.Status(wire.BacktestStatus.PREPARING_BUNDLE)),  # top-level: ignored
            created(A),
            slot(A, 1, 4000),  # announced: routed once the create is done
            slot(B, 1, 4100),  # not yet announced: held until sessionsCreatedV2
            slot("backtest_zz", 1, 1),  # never listed: dropped
            created(B),
            created("backtest_zz"),
            SESSIONS,
            ready(A, 2),
            ready(B, 2),
        )
        await expect_any_order(conn, cont(A, 1), cont(B, 1))
        await conn.send(slot(B, 3, 4101), slot(A, 3, 4001), completed(A, 4))
        await conn.send(event(B, 4, wire.Error(wire.NoMoreBlocks())), completed(B, 5))
        assert await conn.wait_gone() == 1000  # closed in order, no closeSessionV1

    async with (
        fake_server([script]) as server,
        open_parallel_session(server.url, KEY, CREATE, config=CONFIG) as parallel,
    ):
        assert parallel.control_session_id == CID
        assert parallel.connection_status is ConnectionStatus.UP
        subs = parallel.take_sub_sessions()
        assert parallel.take_sub_sessions() == []
        assert [s.session_info.session_id for s in subs] == [A, B]
        assert [s.range for s in subs] == [(4000, 4099), (4100, 4199)]
        base = f"http://127.0.0.1:{server.port}/backtest/"
        assert [s.session_info.rpc_endpoint for s in subs] == [base + A, base + B]
        assert [s.session_info.task_id for s in subs] == [None, "task-b"]
        seen = await drive_all(subs)
        with pytest.raises(ControlClosed):
            await subs[0].next_event()
        await control_of(parallel).done.wait()
        assert status_of(parallel) is ConnectionStatus.DOWN
    assert seen[A] == [
        events.Slot(4000),
        events.ReadyForContinue(),
        events.Slot(4001),
        events.Completed(None, None),
    ]
    assert seen[B] == [
        events.Slot(4100),
        events.ReadyForContinue(),
        events.Slot(4101),
        events.ErrorEvent(wire.NoMoreBlocks()),
        events.Completed(None, None),
    ]
    assert server.control[0].methods == [
        "createBacktestSession",
        "continueSessionV1",
        "continueSessionV1",
    ]


async def test_mismatched_ranges_fail_the_create(autojump_clock: trio.testing.MockClock) -> None:
    async def script(conn: FakeConnection) -> None:
        await conn.expect(CREATE_TEXT)
        await conn.send(created(A), created(B), frame(wire.SessionsCreatedV2(CID, [A, B])))
        await conn.wait_gone()

    async with fake_server([script]) as server:
        with pytest.raises(CreateFailed) as info:
            async with open_parallel_session(server.url, KEY, CREATE, config=CONFIG):
                raise AssertionError("not reached")
    assert str(info.value) == TOO_OLD_MESSAGE
    assert "too old" in str(info.value)
    assert len(server.control) == 1


async def test_error_during_create_fails_it(autojump_clock: trio.testing.MockClock) -> None:
    async def script(conn: FakeConnection) -> None:
        await conn.expect(CREATE_TEXT)
        await conn.send(created(A), frame(wire.Error(wire.InvalidRequest("no capacity"))))
        await conn.wait_gone()

    async with fake_server([script]) as server:
        with pytest.raises(CreateFailed, match="server error"):
            async with open_parallel_session(server.url, KEY, CREATE, config=CONFIG):
                raise AssertionError("not reached")


async def test_unauthorized_is_create_failed() -> None:
    async with fake_server([], reject=lambda path, index: 403) as server:
        with trio.fail_after(2), pytest.raises(CreateFailed, match="403") as info:
            async with open_parallel_session(server.url, KEY, CREATE, config=CONFIG):
                raise AssertionError("not reached")
    assert KEY not in str(info.value)


async def test_drop_mid_create_resends_the_create(autojump_clock: trio.testing.MockClock) -> None:
    async def first(conn: FakeConnection) -> None:
        await conn.expect(CREATE_TEXT)
        await conn.send(created(A), slot(A, 1, 4000))
        conn.drop()

    async def second(conn: FakeConnection) -> None:
        await handshake(conn)
        await expect_any_order(conn, cont(A, 1), cont(B, 1))
        await complete_both(conn)

    server, seen = await run_to_the_end([first, second])
    # Nothing of the abandoned create leaks into the new one.
    assert seen == {
        A: [events.ReadyForContinue(), events.Completed(None, None)],
        B: [events.ReadyForContinue(), events.Completed(None, None)],
    }
    assert [c.methods[0] for c in server.control] == ["createBacktestSession"] * 2


async def test_reconnect_attaches_with_cursors_and_dedups(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def first(conn: FakeConnection) -> None:
        await handshake(conn)
        await expect_any_order(conn, cont(A, 1), cont(B, 1))
        await conn.send(slot(A, 2, 4001), slot(B, 2, 4101), slot(A, 3, 4002))
        conn.drop()

    async def second(conn: FakeConnection) -> None:
        await conn.expect(attach({A: 3, B: 2}))
        # Replays from older points: everything at or below a cursor is a duplicate.
        await conn.send(
            slot(A, 2, 4001),
            slot(B, 2, 4101),
            slot(A, 3, 4002),
            ready(A, 4),
            slot(B, 3, 4102),
            ATTACHED,
            ready(B, 4),
        )
        await expect_any_order(conn, cont(A, 1), cont(B, 1))
        await conn.send(ready(B, 4), completed(B, 5), completed(A, 5), completed(A, 5))
        await conn.wait_gone()

    server, seen = await run_to_the_end([first, second])
    assert seen == {
        A: [
            events.ReadyForContinue(),
            events.Slot(4001),
            events.Slot(4002),
            events.ReadyForContinue(),
            events.Completed(None, None),
        ],
        B: [
            events.ReadyForContinue(),
            events.Slot(4101),
            events.Slot(4102),
            events.ReadyForContinue(),
            events.Completed(None, None),
        ],
    }
    assert server.control[1].methods == [
        "attachParallelControlSessionV2",
        "continueSessionV1",
        "continueSessionV1",
    ]


async def test_lost_continue_is_reannounced_per_sub_session(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def first(conn: FakeConnection) -> None:
        await handshake(conn)
        await expect_any_order(conn, cont(A, 1), cont(B, 1))
        conn.drop()  # A's continue was lost; B's arrived

    async def second(conn: FakeConnection) -> None:
        await conn.expect(attach({A: 1, B: 1}))
        await conn.send(ready(A, 2), slot(B, 2, 4101), ATTACHED, completed(B, 3))
        await conn.expect(cont(A, 1))
        await conn.send(completed(A, 3))
        await conn.wait_gone()

    _server, seen = await run_to_the_end([first, second])
    assert seen == {
        A: [events.ReadyForContinue(), events.ReadyForContinue(), events.Completed(None, None)],
        B: [events.ReadyForContinue(), events.Slot(4101), events.Completed(None, None)],
    }


async def test_terminal_top_level_error_fails_every_sub_session(
    autojump_clock: trio.testing.MockClock,
) -> None:
    internal = wire.Internal("gone")

    async def script(conn: FakeConnection) -> None:
        await handshake(conn)
        await conn.send(frame(wire.Error(wire.InvalidRequest("ignored"))))  # non-terminal
        await conn.send(slot(A, 2, 4001), frame(wire.Error(internal)))
        await conn.wait_gone()

    async with fake_server([script]) as server:
        async with open_parallel_session(server.url, KEY, CREATE, config=CONFIG) as parallel:
            a, b = parallel.take_sub_sessions()
            assert await a.next_event() == events.ReadyForContinue()
            assert await a.next_event() == events.Slot(4001)
            with pytest.raises(ControlFailed) as info_a:
                await a.next_event()
            assert await b.next_event() == events.ReadyForContinue()  # delivered before it
            with pytest.raises(ControlFailed) as info_b:
                await b.next_event()
            assert info_a.value is info_b.value
            assert info_a.value.error == internal
            assert status_of(parallel) is ConnectionStatus.FAILED
            with pytest.raises(ContinueSendFailed):
                await b.send_continue(Continue(1))
        assert server.control[0].close_code == 1006  # dropped at once


async def test_unseen_failure_is_raised_on_leaving(autojump_clock: trio.testing.MockClock) -> None:
    async def script(conn: FakeConnection) -> None:
        await handshake(conn)
        await conn.send(frame(wire.Error(wire.SessionOwnerMismatch())))
        await conn.wait_gone()

    async with fake_server([script]) as server:
        with pytest.raises(ControlFailed):
            async with open_parallel_session(server.url, KEY, CREATE, config=CONFIG) as parallel:
                await control_of(parallel).done.wait()


async def test_attach_session_not_found_fails(autojump_clock: trio.testing.MockClock) -> None:
    async def first(conn: FakeConnection) -> None:
        await handshake(conn)
        conn.drop()

    async def second(conn: FakeConnection) -> None:
        await conn.expect(attach({A: 1, B: 1}))
        await conn.send(frame(wire.Error(wire.SessionNotFound(CID))))
        await conn.wait_gone()

    async with (
        fake_server([first, second]) as server,
        open_parallel_session(server.url, KEY, CREATE, config=CONFIG) as parallel,
    ):
        for sub in parallel.take_sub_sessions():
            assert await sub.next_event() == events.ReadyForContinue()
            with pytest.raises(ControlFailed):
                await sub.next_event()


async def test_leaving_early_closes_the_connection_and_no_session() -> None:
    async def script(conn: FakeConnection) -> None:
        await handshake(conn)
        await conn.wait_gone()

    async with fake_server([script]) as server:
        with trio.fail_after(1):
            async with open_parallel_session(server.url, KEY, CREATE, config=CONFIG) as parallel:
                sub = parallel.take_sub_sessions()[0]
                assert await sub.next_event() == events.ReadyForContinue()
            await server.wait_for(lambda: server.control[0].gone.is_set())
    assert server.control[0].methods == ["createBacktestSession"]
    assert server.control[0].close_code == 1000
    assert status_of(parallel) is ConnectionStatus.DOWN


async def test_close_is_bounded_against_a_silent_server(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def script(conn: FakeConnection) -> None:
        await handshake(conn)
        conn.stall()
        await trio.sleep_forever()

    config = ManagedConfig(graceful_close_timeout=2.0, keepalive_miss_deadline=1000.0)
    async with fake_server([script], script_timeout=100) as server:
        async with open_parallel_session(server.url, KEY, CREATE, config=config):
            left = trio.current_time()
        assert trio.current_time() - left <= 2.0 + 0.01


async def test_continues_wait_for_up_and_flow_after_reattach(
    autojump_clock: trio.testing.MockClock,
) -> None:
    release = trio.Event()

    async def first(conn: FakeConnection) -> None:
        await handshake(conn)
        conn.drop()

    async def second(conn: FakeConnection) -> None:
        await conn.expect(attach({A: 1, B: 1}))
        await release.wait()
        await conn.send(ATTACHED)
        await conn.expect(cont(B, 7))
        await complete_both(conn)

    async with (
        fake_server([first, second]) as server,
        open_parallel_session(server.url, KEY, CREATE, config=CONFIG) as parallel,
    ):
        a, b = parallel.take_sub_sessions()
        assert await b.next_event() == events.ReadyForContinue()
        await server.wait_for(lambda: len(server.control) == 2)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(b.send_continue, Continue(7))
            await trio.testing.wait_all_tasks_blocked()
            assert parallel.connection_status is ConnectionStatus.RECONNECTING
            release.set()
        assert [ev async for ev in b.events()] == [events.Completed(None, None)]
        assert [ev async for ev in a.events()] == [
            events.ReadyForContinue(),
            events.Completed(None, None),
        ]
        with pytest.raises(ContinueSendFailed):
            await a.send_continue(Continue(1))


async def test_continue_to_is_routed(autojump_clock: trio.testing.MockClock) -> None:
    async def script(conn: FakeConnection) -> None:
        await handshake(conn)
        await conn.expect(
            request(wire.ContinueToSessionRequestV1(B, wire.ContinueToParams(4150, 1)))
        )
        await complete_both(conn)

    async with (
        fake_server([script]) as server,
        open_parallel_session(server.url, KEY, CREATE, config=CONFIG) as parallel,
    ):
        _, b = parallel.take_sub_sessions()
        assert await b.next_event() == events.ReadyForContinue()
        await b.send_continue_to(4150, 1)
        assert await b.next_event() == events.Completed(None, None)


async def test_sub_session_aclose_stops_only_its_own_subscriptions(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def script(conn: FakeConnection) -> None:
        await handshake(conn)
        await conn.wait_gone()

    async def data(conn: FakeConnection) -> None:
        params = await conn.expect_method("transactionSubscribe")
        assert params[0] == "Prog1111111111111111111111111111111111111111"
        await conn.send('{"jsonrpc":"2.0","id":1,"result":1}')
        await conn.wait_gone()

    program = "Prog1111111111111111111111111111111111111111"
    async with fake_server([script], data=data) as server:
        async with open_parallel_session(server.url, KEY, CREATE, config=CONFIG) as parallel:
            a, b = parallel.take_sub_sessions()
            await trio.testing.wait_all_tasks_blocked()
            # A sub-session gets its service (for its subscriptions) when it first subscribes.
            assert not a._sink.serving
            assert not b._sink.serving
            a.subscribe_transactions([program])
            await server.wait_for(lambda: len(server.data()) == 1)
            assert a._sink.serving
            assert not b._sink.serving
            b.subscribe_transactions([program])
            await server.wait_for(lambda: len(server.data()) == 2)
            await a.aclose()
            await server.wait_for(lambda: server.data(f"/backtest/{A}")[0].gone.is_set())
            await trio.testing.wait_all_tasks_blocked()
            assert not server.data(f"/backtest/{B}")[0].gone.is_set()
            assert parallel.connection_status is ConnectionStatus.UP
            with pytest.raises(ControlClosed):
                a.subscribe_transactions([program])
            assert await a.next_event() == events.ReadyForContinue()  # events still flow
        assert server.data(f"/backtest/{B}")[0].gone.is_set()


@pytest.mark.parametrize("capacity", [256, 1])
async def test_continues_queued_behind_a_write_go_out_together(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch, capacity: int
) -> None:
    """Whatever the configured queue size, every sub-session can queue a continue at once."""
    writes: list[list[str]] = []
    first_write_may_finish = trio.Event()
    original = WebSocketConnection.send_texts

    async def send_texts(self: WebSocketConnection, texts: Sequence[str]) -> None:
        writes.append(list(texts))
        if len(writes) == 1:
            await first_write_may_finish.wait()
        await original(self, texts)

    monkeypatch.setattr(WebSocketConnection, "send_texts", send_texts)

    async def script(conn: FakeConnection) -> None:
        await handshake(conn)
        await conn.expect(cont(A, 1), cont(A, 2), cont(B, 3))
        await complete_both(conn)

    config = ManagedConfig(rng_seed=3, continue_channel_capacity=capacity)
    async with (
        fake_server([script]) as server,
        open_parallel_session(server.url, KEY, CREATE, config=config) as parallel,
    ):
        a, b = parallel.take_sub_sessions()
        await a.send_continue(Continue(1))
        await trio.testing.wait_all_tasks_blocked()  # that write has begun, and is stuck
        with trio.move_on_after(1) as waited:
            await a.send_continue(Continue(2))
            await b.send_continue(Continue(3))  # with capacity 1: room for one per sub-session
        assert not waited.cancelled_caught
        first_write_may_finish.set()
        assert [ev async for ev in a.events()][-1] == events.Completed(None, None)
        assert [ev async for ev in b.events()][-1] == events.Completed(None, None)
    assert writes == [[cont(A, 1)], [cont(A, 2), cont(B, 3)]]


async def test_body_exceptions_are_not_wrapped(autojump_clock: trio.testing.MockClock) -> None:
    async def script(conn: FakeConnection) -> None:
        await handshake(conn)
        await conn.wait_gone()

    async with fake_server([script]) as server:
        with pytest.raises(KeyError, match="mine") as info:
            async with open_parallel_session(server.url, KEY, CREATE, config=CONFIG):
                raise KeyError("mine")
        await server.wait_for(lambda: server.control[0].gone.is_set())
    assert type(info.value) is KeyError
    assert server.control[0].methods == ["createBacktestSession"]  # no session is closed


async def test_a_cancelled_send_continue_queues_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def script(conn: FakeConnection) -> None:
        await handshake(conn)
        await conn.expect(cont(B, 2))  # A's continue, cancelled before it was queued, never comes
        await complete_both(conn)

    async with (
        fake_server([script]) as server,
        open_parallel_session(server.url, KEY, CREATE, config=CONFIG) as parallel,
    ):
        a, b = parallel.take_sub_sessions()
        with trio.CancelScope() as scope:
            scope.cancel()
            await a.send_continue(Continue(1))
        assert scope.cancelled_caught
        await b.send_continue(Continue(2))
        assert [ev async for ev in a.events()][-1] == events.Completed(None, None)
        assert [ev async for ev in b.events()][-1] == events.Completed(None, None)
    assert server.control[0].methods == ["createBacktestSession", "continueSessionV1"]


async def test_every_frame_before_a_malformed_one_counts_however_many_came_together(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = 150  # more than one slice of a read is decoded and routed at a time
    malformed = '{"method":"sessionEventV2"'
    original = WebSocketConnection.receive_batch

    async def receive_batch(self: WebSocketConnection) -> list[str | bytes]:
        """As if the frames up to the malformed one had come in one read."""
        batch = await original(self)
        if slot(A, 2, 4002) in batch:
            while malformed not in batch:
                batch += await original(self)
        return batch

    monkeypatch.setattr(WebSocketConnection, "receive_batch", receive_batch)

    async def first(conn: FakeConnection) -> None:
        await handshake(conn)
        await conn.send(*[slot(A, seq, 4000 + seq) for seq in range(2, count + 2)], malformed)
        await conn.wait_gone()

    async def second(conn: FakeConnection) -> None:
        await conn.expect(attach({A: count + 1, B: 1}))
        await conn.send(ATTACHED, completed(A, count + 2), completed(B, 2))
        await conn.wait_gone()

    async with (
        fake_server([first, second]) as server,
        open_parallel_session(server.url, KEY, CREATE, config=CONFIG) as parallel,
    ):
        a, b = parallel.take_sub_sessions()
        seen_a = [ev async for ev in a.events()]
        seen_b = [ev async for ev in b.events()]
    assert seen_a == [
        events.ReadyForContinue(),
        *[events.Slot(4000 + seq) for seq in range(2, count + 2)],
        events.Completed(None, None),
    ]
    assert seen_b == [events.ReadyForContinue(), events.Completed(None, None)]
    assert server.control[0].close_code == 1006


async def test_a_sub_session_step_left_unanswered_is_an_idle_step(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """B's continue gets no answer while A holds readiness: the connection is replaced."""
    lost_after: list[float] = []

    async def zombie(conn: FakeConnection) -> None:
        await handshake(conn)
        await conn.expect(cont(B, 1))
        written = trio.current_time()
        await conn.wait_gone()  # Pongs keep coming meanwhile
        lost_after.append(trio.current_time() - written)

    async def healthy(conn: FakeConnection) -> None:
        await conn.expect(attach({A: 1, B: 1}))
        await conn.send(ready(B, 2), ATTACHED)  # B's readiness re-announced (protocol §6.8)
        await conn.expect(cont(B, 1))
        await complete_both_after(conn)

    async def complete_both_after(conn: FakeConnection) -> None:
        await conn.send(completed(A, 2), completed(B, 3))
        await conn.wait_gone()

    config = ManagedConfig(rng_seed=3, idle_step_timeout=40.0)
    async with (
        fake_server([zombie, healthy], script_timeout=1000) as server,
        open_parallel_session(server.url, KEY, CREATE, config=config) as parallel,
    ):
        a, b = parallel.take_sub_sessions()
        assert await a.next_event() == events.ReadyForContinue()
        assert await b.next_event() == events.ReadyForContinue()
        await b.send_continue(Continue(1))
        assert await b.next_event() == events.ReadyForContinue()
        await b.send_continue(Continue(1))
        assert await b.next_event() == events.Completed(None, None)
        assert await a.next_event() == events.Completed(None, None)
    assert 40.0 <= lost_after[0] <= 40.0 * 1.25 + 1.0
    assert len(server.control) == 2
