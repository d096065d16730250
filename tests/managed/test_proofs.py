"""A subscription's proof of receipt cannot be early, and a quiet one can still prove itself.

A server may answer a probe's Ping ahead of notifications it still owes (the reference server
answers Pings from its reader, so after a stall the Pong overtakes the backlog). Such a Pong is
only a claim; the next probe's Pong confirms it. These tests take a connection through the
exact sequence -- an early Pong, then the connection lost before any of the backlog arrived --
and check that nothing is lost without a word. The fake server here keeps, like the reference
server, only the events of the last 100 slots for a replay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
import pytest
import trio
import trio.testing

import simtrio.server
from simtrio.errors import SubscriptionFailed
from simtrio.events import Completed, Transaction
from simtrio.managed.config import ConnectionStatus, ManagedConfig
from simtrio.managed.standalone import DataSubscription, open_transaction_subscription
from simtrio.managed.streams import EventStream
from simtrio.server import FaultPlan, Faults
from tests.managed.test_subscriptions import resubscribe
from tests.managed.test_subscriptions_harness import (
    ATOKEN,
    RPC_VECTORS,
    TOKEN,
    FakeConn,
    fake_server,
    running_subscriptions,
)
from tests.server import helpers

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from simtrio.managed.session_subscriptions import SessionSubscriptions

FIRST = RPC_VECTORS["transaction_subscribe_first_connection"]
RETAINED = 100
START = 4100
QUIET = "US517G5965aydkZ46HS38QLi7UQiSojurfbQfKCELFx"
"""A valid program id that the reference server's synthetic chain never touches."""


def subscriptions(
    url: str, stream: EventStream, control_slot: list[int]
) -> AbstractAsyncContextManager[SessionSubscriptions]:
    return running_subscriptions(
        url,
        stream,
        start_slot=START,
        config=ManagedConfig(rng_seed=1),  # window 50: a probe due every 25 slots
        position=lambda: control_slot[0],
    )


async def early_pong_then_lost(conn: FakeConn, then: trio.Event) -> None:
    """First connection: one transaction, then a stall; the Pong of the probe the client sent
    meanwhile goes out ahead of the backlog, and the connection is lost right after."""
    await conn.expect(FIRST)
    await conn.ack(1, 1)
    await conn.tx(1, START + 1)
    conn.stall()  # no reads, no writes: the backlog and the client's probe wait
    await trio.sleep(5)  # below data_pong_timeout: the client keeps the connection
    conn.stream.after_pong = conn.stall  # the Pong, and then nothing more: no backlog
    conn.unstall()
    await trio.sleep(2)
    await then.wait()
    conn.drop()


async def replay_what_is_retained(conn: FakeConn, control_slot: list[int], cursor: int) -> None:
    """A later connection: replay one transaction per slot from the cursor, as far as a server
    keeping the last 100 slots still can, up to the session's slot, then the terminal."""
    await conn.expect(resubscribe(cursor, method="transactionSubscribe"))
    await conn.ack(1, 1)
    now = control_slot[0]
    for slot in range(max(cursor, now - RETAINED + 1), now + 1):
        await conn.tx(1, slot)
    await conn.complete(1)
    await conn.wait_gone()


async def test_an_early_pong_then_a_drop_loses_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The driver steps 21 slots at a time. The early Pong must not let it run on: had it
    counted, the session would have run 63 slots past it before the drop, more than the 100
    retained slots past the cursor, and the replay would have started too late."""
    control_slot = [START]
    driving = True
    go_on = trio.Event()
    go_on.set()

    async def script(conn: FakeConn) -> None:
        nonlocal driving
        if conn.index == 1:
            await early_pong_then_lost(conn, go_on)
        else:
            driving = False
            await replay_what_is_retained(conn, control_slot, START + 1)

    stream = EventStream(1024)
    async with (
        fake_server(script) as server,
        trio.open_nursery(),
        subscriptions(server.http_url(), stream, control_slot) as subs,
    ):
        subs.subscribe_transactions([TOKEN])
        with trio.fail_after(120):
            while driving:
                await subs.wait_all_up()
                if not driving:
                    break
                control_slot[0] += 21  # the step
                await trio.sleep(0.01)
            subs.complete_after_drain(Completed())
            got = [event async for event in stream.events()]
    slots = sorted({e.notification.slot for e in got if isinstance(e, Transaction)})
    assert slots == list(range(START + 1, control_slot[0] + 1))


async def test_a_claim_the_connection_did_not_confirm_does_not_hide_a_gap(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The same sequence, with the session then run far ahead (one long step, say): the
    re-subscription must see that slots after its cursor may be gone, and say so."""
    control_slot = [START]
    probed = trio.Event()

    async def script(conn: FakeConn) -> None:
        if conn.index == 1:
            await early_pong_then_lost(conn, probed)
        else:
            await conn.expect(resubscribe(START + 1, method="transactionSubscribe"))
            await conn.ack(1, 1)
            await conn.wait_gone()

    async with (
        fake_server(script) as server,
        trio.open_nursery(),
        subscriptions(server.http_url(), EventStream(1024), control_slot) as subs,
    ):
        subs.subscribe_transactions([TOKEN])
        await subs.wait_all_up()
        manager = subs.managers[0]
        control_slot[0] = START + 30
        subs.ready_to_continue()  # a probe for START + 30 goes out, into the stall
        with trio.fail_after(30):
            while manager.probes < 1:
                await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(6)  # the early Pong is in
        control_slot[0] = START + 105
        probed.set()
        with trio.fail_after(60):
            await manager.status.wait_until(lambda s: s is ConnectionStatus.FAILED)
        assert "data-plane gap" in str(manager.failure)
        assert manager.connections == 2
        subs.stop()


# -- standalone subscriptions against the reference server ------------------------------------


async def wait_reconnected(sub: DataSubscription[Transaction]) -> None:
    """Until the connection that was up is replaced and the new one is up."""
    manager = sub._manager  # pyright: ignore[reportPrivateUsage]
    await manager.status.wait_until(lambda s: s is not ConnectionStatus.UP)
    await manager.status.wait_until(lambda s: s is ConnectionStatus.UP)
    assert manager.connections == 2


async def test_a_quiet_standalone_subscription_resumes_without_a_false_gap(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """No notification for 150 slots, then a drop: nothing was missed, so no gap either."""
    async with (
        simtrio.server.serve(seed=3) as server,
        helpers.connect(server) as control,
    ):
        session_id = await helpers.open_session(
            control, helpers.create(5000, 5400, disconnectTimeoutSecs=60)
        )
        rpc = f"{server.http_url}/backtest/{session_id}"
        async with open_transaction_subscription(rpc, [QUIET]) as sub:
            await sub.wait_up()
            await control.send(helpers.cont(150))
            await control.recv_until(lambda t: "readyForContinue" in t)
            await trio.sleep(5)  # the subscription learns the slot and proves it meanwhile
            server.restart()  # every connection dropped; the session stays
            with trio.fail_after(60):
                await wait_reconnected(sub)
            assert sub.cursor is None


async def test_a_standalone_subscription_still_reports_a_real_gap(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Its data connection stalls while the session runs 150 slots: the replay cannot be
    complete, and the subscription says so."""
    faults = FaultPlan(data_connections={1: Faults(stall_after=3)})
    async with (
        simtrio.server.serve(seed=3, faults=faults) as server,
        helpers.connect(server) as control,
    ):
        session_id = await helpers.open_session(
            control, helpers.create(5000, 5400, disconnectTimeoutSecs=60)
        )
        rpc = f"{server.http_url}/backtest/{session_id}"

        async def subscribe_and_run() -> None:
            async with open_transaction_subscription(rpc, [TOKEN]) as sub:
                await sub.wait_up()
                await control.send(helpers.cont(150))
                await control.recv_until(lambda t: "readyForContinue" in t)
                await trio.sleep_forever()

        with pytest.raises(SubscriptionFailed, match="data-plane gap"):
            await subscribe_and_run()


async def test_after_a_re_subscription_a_higher_slot_proves_nothing_until_a_probe_is_confirmed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The second subscription's replay may come after a higher slot of the first one: that
    higher slot must not count as proof for the second subscription."""
    second_replay = orjson.dumps(
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "accountDiffSubscribe",
            "params": [ATOKEN, {"compression": "zstd", "replayFromSlot": START + 10}],
        }
    ).decode()
    release = trio.Event()

    async def script(conn: FakeConn) -> None:
        if conn.index == 1:
            await conn.expect(RPC_VECTORS["account_diff_subscribe_first_connection"])
            await conn.ack(1, 1)
            await conn.expect(RPC_VECTORS["account_diff_subscribe_second_program"])
            await conn.ack(2, 2)
            await conn.diff(1, START + 50)
            await conn.diff(2, START + 10)
            conn.drop()
        else:
            await conn.expect(resubscribe(START + 50, TOKEN))
            await conn.ack(1, 1)
            await conn.expect(second_replay)
            await conn.ack(2, 2)
            await conn.diff(1, START + 60)  # chosen before the second subscription existed
            await release.wait()
            await conn.diff(2, START + 20)  # its replay
            await conn.wait_gone()

    control_slot = [START + 60]
    async with (
        fake_server(script) as server,
        trio.open_nursery(),
        subscriptions(server.http_url(), EventStream(1024), control_slot) as subs,
    ):
        subs.subscribe_account_diffs([TOKEN, ATOKEN])
        manager = subs.managers[0]
        with trio.fail_after(30):
            while manager.cursors != (START + 60, START + 10):  # noqa: ASYNC110 - no event for it
                await trio.sleep(0.01)
        assert manager.connections == 2
        proven = manager.proven
        assert proven is None or proven <= START + 10
        release.set()
        with trio.fail_after(30):
            while manager.cursors != (START + 60, START + 20):  # noqa: ASYNC110 - no event for it
                await trio.sleep(0.01)
        subs.stop()
