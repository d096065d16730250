"""Steps wait for lagging live readers instead of buffering without bound."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio
import trio.testing

from simtrio.server.config import ServerConfig
from simtrio.server.data_log import Subscription
from simtrio.server.session import Session
from simtrio.wire.types import ContinueParams, CreateBacktestSessionRequest

from .helpers import TOKEN, FakeConn, running_state

if TYPE_CHECKING:
    from simtrio.server.state import ServerState


def _session(state: ServerState) -> Session:
    request = CreateBacktestSessionRequest(0, 1000)
    return Session(
        state,
        session_id="backtest_test",
        request=request,
        start_slot=0,
        end_slot=1000,
        numbered=True,
        timeout=60,
    )


async def test_a_lagging_control_reader_holds_the_step() -> None:
    with trio.fail_after(5):
        async with running_state(ServerConfig(control_backlog=5)) as state:
            session = _session(state)
            conn = FakeConn()
            session.ownership.take(conn)  # type: ignore[arg-type]
            session.start()
            session.request_continue(ContinueParams(500))
            await trio.testing.wait_all_tasks_blocked()
            assert session.running
            held_at = session.slot
            assert held_at < 10
            # The reader catches up: the step moves on, then waits again.
            session.note_written(session.log.last_seq)
            await trio.testing.wait_all_tasks_blocked()
            assert held_at < session.slot < held_at + 10
            # A stalled reader does not hold the session back.
            conn.stalled = True
            session.notify_progress()
            await trio.testing.wait_all_tasks_blocked()
            assert session.slot == 500
            assert not session.running


async def test_a_lagging_subscription_holds_the_step() -> None:
    with trio.fail_after(5):
        async with running_state(
            ServerConfig(retained_slots=3, max_transactions_per_slot=2)
        ) as state:
            session = _session(state)
            session.start()
            conn = FakeConn()
            sub = Subscription(1, ("transaction", TOKEN), 0, conn)  # type: ignore[arg-type]
            session.data.subs.add(sub)
            session.request_continue(ContinueParams(200))
            await trio.testing.wait_all_tasks_blocked()
            assert session.running
            first_event = sub.peek(session.data)
            assert first_event is not None
            assert session.slot <= first_event.slot + 3
            # Consuming everything owed lets the step run on.
            sub.position = session.data.end_position(sub.key)
            session.notify_progress()
            await trio.testing.wait_all_tasks_blocked()
            assert session.slot > first_event.slot + 3
            conn.gone = True
            session.notify_progress()
            await trio.testing.wait_all_tasks_blocked()
            assert session.slot == 200


async def test_close_stops_a_waiting_step() -> None:
    with trio.fail_after(5):
        async with running_state(ServerConfig(control_backlog=3)) as state:
            session = _session(state)
            state.add_session(session)
            session.ownership.take(FakeConn())  # type: ignore[arg-type]
            session.start()
            session.request_continue(ContinueParams(100))
            await trio.testing.wait_all_tasks_blocked()
            session.note_written(session.log.last_seq)  # wakes the step...
            session.close()  # ...but the close wins
            await trio.testing.wait_all_tasks_blocked()
            last = session.log.after(session.log.last_seq - 1)
            assert last is not None
            assert type(last[1]).__name__ == "Success"
            assert not session.running
            assert "backtest_test" not in state.sessions
