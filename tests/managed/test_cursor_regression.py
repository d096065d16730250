"""Regressions: per-subscription replay cursors, and the data-plane outage budget.

A server may send a later-subscribed subscription's replay below slots it already sent for an
earlier one on the same connection. A single per-connection cursor then skipped the lagging
subscription's events after a loss; each subscription now replays from its own last slot.
"""

from __future__ import annotations

import trio
import trio.testing

from simtrio import events
from simtrio.errors import SubscriptionFailed
from simtrio.events import Completed
from simtrio.managed.parallel import ParallelSubSession, open_parallel_session
from simtrio.managed.session import ManagedSession, open_managed_session
from simtrio.managed.standalone import open_account_diff_subscription
from simtrio.managed.streams import EventStream
from simtrio.params import CreateSession
from simtrio.server import FaultPlan, Faults, serve
from tests.managed.configs import FAST, QUICK_RETRY as CONFIG
from tests.managed.scripts import BOTH_PROGRAMS, accept, subscribe_request
from tests.managed.test_subscriptions_harness import (
    ATOKEN,
    TOKEN,
    FakeConn,
    fake_server,
    running_subscriptions,
    slots_of,
)


def subscribe(request_id: int, program: str, replay: int) -> str:
    return subscribe_request(program, request_id=request_id, replay=replay)


async def lagging_replay_script(conn: FakeConn) -> None:
    """Connection 2 replays the first subscription far ahead, then drops after the 2nd ack."""
    if conn.index == 1:
        await accept(conn, *BOTH_PROGRAMS)
        await conn.diff(1, 4000)
        await conn.diff(2, 4000)
        conn.drop()
    elif conn.index == 2:
        await conn.expect(subscribe(1, TOKEN, 4000))
        await conn.ack(1, 1)
        for slot in range(4000, 4006):  # held while the second subscribe waits for its ack
            await conn.diff(1, slot)
        await conn.expect(subscribe(2, ATOKEN, 4000))
        await conn.ack(2, 2)
        conn.drop()  # before any of the second subscription's replay went out
    else:
        # Each subscription replays from its own last slot: 4005 and 4000 (it was 4005 twice).
        await accept(conn, subscribe(1, TOKEN, 4005), subscribe(2, ATOKEN, 4000))
        await conn.diff(1, 4005)
        await conn.complete(1)
        for slot in range(4000, 4006):
            await conn.diff(2, slot)
        await conn.complete(2)


async def test_each_subscription_replays_from_its_own_cursor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with (
        fake_server(lagging_replay_script) as server,
        open_account_diff_subscription(server.http_url(), [TOKEN, ATOKEN], config=CONFIG) as sub,
    ):
        got = [item async for item in sub.notifications]
    assert len(server.connections) == 3
    # The fake server's diffs do not carry the owner; split them by connection order instead:
    # 4000 4000 | 4000..4005 (first) | 4005 (first), 4000..4005 (second).
    assert slots_of(got) == [4000, 4000, *range(4000, 4006), 4005, *range(4000, 4006)]


async def test_session_bound_lagging_subscription_falls_back_to_its_start_slot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With nothing delivered for a subscription, it replays from the session start."""

    async def script(conn: FakeConn) -> None:
        if conn.index == 1:
            await accept(conn, *BOTH_PROGRAMS)
            await conn.diff(1, 4001)
            await conn.diff(1, 4002)
            conn.drop()
        else:
            await accept(
                conn,
                subscribe(1, TOKEN, 4002),
                subscribe(2, ATOKEN, 3990),  # the start slot, not 4002
            )
            await conn.complete(1)
            await conn.diff(2, 3995)
            await conn.complete(2)

    stream = EventStream(16)
    async with (
        fake_server(script) as server,
        running_subscriptions(server.http_url(), stream, config=CONFIG, start_slot=3990) as subs,
    ):
        subs.subscribe_account_diffs([TOKEN, ATOKEN])
        await subs.wait_all_up()
        subs.complete_after_drain(Completed())
        got = [event async for event in stream.events()]
    assert isinstance(got[-1], Completed)
    assert slots_of(got[:-1]) == [4001, 4002, 3995]
    (manager,) = subs.managers
    assert manager.cursors == (4002, 3995)


# -- the data-plane outage budget follows the session's disconnect timeout -------------------

REJECTED = FaultPlan(data=Faults(reject_upgrade=503))
"""Every data-plane upgrade is refused: a subscription can only give up."""


async def read_until_a_subscription_gives_up(
    session: ManagedSession | ParallelSubSession,
) -> tuple[float, list[events.Event]]:
    """Subscribe ``session`` to transactions and read its events until that subscription
    gives up; return how long it took and the events read before."""
    started = trio.current_time()
    session.subscribe_transactions([TOKEN])
    seen: list[events.Event] = []
    try:
        async for event in session.events():
            seen.append(event)
    except SubscriptionFailed:
        return trio.current_time() - started, seen
    raise AssertionError("the events ended without a subscription giving up")


async def test_managed_subscription_gives_up_after_the_session_budget(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Before the fix the subscriptions used 900 s whatever the session's timeout was."""
    create = CreateSession(4000, end_slot=4009, disconnect_timeout_secs=20)
    async with (
        serve(faults=REJECTED) as server,
        open_managed_session(server.url, "k", create, config=FAST) as session,
    ):
        took, _ = await read_until_a_subscription_gives_up(session)
    assert 20 <= took < 25


async def test_parallel_subscription_gives_up_after_the_session_budget(
    autojump_clock: trio.testing.MockClock,
) -> None:
    create = CreateSession(4000, end_slot=4199, disconnect_timeout_secs=15)
    async with (
        serve(faults=REJECTED) as server,
        open_parallel_session(server.url, "k", create, config=FAST) as parallel,
    ):
        first, _second = parallel.take_sub_sessions()
        took, seen = await read_until_a_subscription_gives_up(first)
    assert 15 <= took < 20
    assert events.ReadyForContinue() in seen
