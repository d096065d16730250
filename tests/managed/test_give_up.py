"""Reconnecting components end: a hostile or stalled peer exhausts the outage budget.

Each test would loop (or wait) forever if a connection that comes UP refilled the budget, or
if a server that answers Pings but never answers a step kept the session UP.
"""

from __future__ import annotations

import orjson
import pytest
import trio
import trio.testing

from simtrio import events
from simtrio.core.backoff import BackoffPolicy
from simtrio.errors import ControlFailed, SubscriptionFailed
from simtrio.managed.config import ConnectionStatus, ManagedConfig
from simtrio.managed.session import open_managed_session
from simtrio.managed.standalone import open_account_diff_subscription
from simtrio.params import Continue
from tests.managed.test_subscriptions_harness import (
    TOKEN,
    FakeConn,
    diff_text,
    fake_server as data_server,
)

from .fakes import FakeConnection, fake_server
from .test_session import (
    ATTACHED,
    CREATE,
    KEY,
    RESUME,
    attach,
    close_politely,
    completed,
    cont,
    create_and_ready,
    ready,
    slot,
)

GARBAGE = "{this is not json"
RESET_AFTER = BackoffPolicy().reset_after
STEADY = BackoffPolicy(jitter="none", max=2.0)
"""Retries without jitter, never more than 2 s apart: well below every budget here."""
BUDGET_40 = ManagedConfig(rng_seed=3, reconnect_max_total=40.0, backoff=STEADY)


async def _create_then_attach(conn: FakeConnection) -> None:
    """Create the session on the first connection, attach to it on every later one."""
    if conn.index == 1:
        await create_and_ready(conn)
    else:
        await conn.expect(attach(1))
        await conn.send(ATTACHED)


async def _until_control_failed(
    url: str, config: ManagedConfig, *, deadline: float, step: bool = False
) -> tuple[ControlFailed, ConnectionStatus, float]:
    """Open a session, take its readiness (and continue once if ``step``), then read until it
    fails: the failure, the connection status then, and the time taken."""
    start = trio.current_time()
    with trio.fail_after(deadline):
        async with open_managed_session(url, KEY, CREATE, config=config) as session:
            assert await session.next_event() == events.ReadyForContinue()
            if step:
                await session.send_continue(Continue(1))
            with pytest.raises(ControlFailed) as info:
                await session.next_event()
            status = session.connection_status
    return info.value, status, trio.current_time() - start


async def _until_subscription_failed(
    url: str, config: ManagedConfig, *, deadline: float
) -> tuple[SubscriptionFailed, float]:
    """Read a standalone account-diff subscription until it fails: the failure, time taken."""
    start = trio.current_time()
    with trio.fail_after(deadline), pytest.raises(SubscriptionFailed) as info:  # noqa: PT012
        async with open_account_diff_subscription(url, [TOKEN], config=config) as sub:
            async for _ in sub.notifications:
                pass
    return info.value, trio.current_time() - start


async def test_control_peer_that_fails_right_after_the_handshake_exhausts_the_budget(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Every connection comes UP, then gets garbage: the outage must still run out."""

    async def script(conn: FakeConnection) -> None:
        await _create_then_attach(conn)
        await trio.sleep(2.0)
        await conn.send(GARBAGE)
        await conn.wait_gone()

    config = ManagedConfig(rng_seed=3, reconnect_max_total=20.0)
    async with fake_server(script) as server:
        # without the fix: reconnects forever
        error, status, elapsed = await _until_control_failed(server.url, config, deadline=600)
    assert status is ConnectionStatus.FAILED
    assert elapsed <= 20.0 + RESET_AFTER
    assert "within 20 s" in str(error)
    assert 2 < len(server.control) < 30


async def test_zombie_server_is_a_lost_connection_and_the_continue_is_reannounced(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Pongs keep coming, no frame does: after the idle-step bound the session re-attaches."""
    lost_at: list[float] = []

    async def zombie(conn: FakeConnection) -> None:
        await create_and_ready(conn)
        await conn.expect(cont(1))
        written = trio.current_time()
        await conn.wait_gone()  # trio-websocket keeps answering the client's Pings meanwhile
        lost_at.append(trio.current_time() - written)

    async def healthy(conn: FakeConnection) -> None:
        await conn.expect(attach(1))
        await conn.send(ready(2), ATTACHED)  # protocol §6.8: the readiness is re-announced
        await conn.expect(RESUME, cont(1))
        await conn.send(slot(4000, 3), completed(4))
        await close_politely(conn, 5)

    config = ManagedConfig(rng_seed=3, idle_step_timeout=40.0)
    async with fake_server([zombie, healthy], script_timeout=1000) as server:
        with trio.fail_after(600):  # without the fix: waits forever
            async with open_managed_session(server.url, KEY, CREATE, config=config) as session:
                seen: list[events.Event] = []
                async for event in session.events():
                    seen.append(event)
                    if isinstance(event, events.ReadyForContinue):
                        await session.send_continue(Continue(1))
    assert [type(e) for e in seen] == [
        events.ReadyForContinue,
        events.ReadyForContinue,
        events.Slot,
        events.Completed,
    ]
    assert 40.0 <= lost_at[0] <= 40.0 * 1.25 + 1.0
    assert len(server.control) == 2


async def test_a_server_that_stays_a_zombie_fails_the_session_past_the_budget(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def script(conn: FakeConnection) -> None:
        await _create_then_attach(conn)  # and never a readiness event again after an attach
        if conn.index == 1:
            await conn.expect(cont(1))
        await conn.wait_gone()

    config = ManagedConfig(rng_seed=3, idle_step_timeout=40.0, reconnect_max_total=100.0)
    async with fake_server(script, script_timeout=1000) as server:
        error, _, elapsed = await _until_control_failed(
            server.url, config, deadline=2000, step=True
        )
    # The outage began with the first attempt; the connection open when it ran out is
    # lost by the detector (at most 1.25 x 40 s later).
    assert 100.0 <= elapsed <= 100.0 + 1.25 * 40.0 + 1.0
    assert "within 100 s" in str(error)
    assert "idle step" in str(error)


async def test_idle_step_detector_leaves_a_quiet_session_without_a_step_alone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Silence while the driver holds readiness (no continue written) is not a stall."""

    async def script(conn: FakeConnection) -> None:
        await create_and_ready(conn)
        await conn.quiet_for(500.0)
        await conn.expect(cont(1))
        await conn.send(completed(2))
        await close_politely(conn, 3)

    config = ManagedConfig(rng_seed=3, idle_step_timeout=40.0)
    async with (
        fake_server([script], script_timeout=1000) as server,
        open_managed_session(server.url, KEY, CREATE, config=config) as session,
    ):
        assert await session.next_event() == events.ReadyForContinue()
        await trio.sleep(500.0)
        assert session.connection_status is ConnectionStatus.UP
        await session.send_continue(Continue(1))
        assert isinstance(await session.next_event(), events.Completed)
    assert len(server.control) == 1


async def test_slow_step_with_progress_is_not_a_stall(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Frames every 30 s during a 200 s step keep a 40 s detector quiet."""

    async def script(conn: FakeConnection) -> None:
        await create_and_ready(conn)
        await conn.expect(cont(1))
        for n in range(7):
            await trio.sleep(30.0)
            await conn.send(slot(4000 + n, 2 + n))
        await conn.send(completed(9))
        await close_politely(conn, 10)

    config = ManagedConfig(rng_seed=3, idle_step_timeout=40.0)
    async with (
        fake_server([script], script_timeout=1000) as server,
        open_managed_session(server.url, KEY, CREATE, config=config) as session,
    ):
        assert await session.next_event() == events.ReadyForContinue()
        await session.send_continue(Continue(1))
        seen = [event async for event in session.events()]
    assert len(seen) == 8
    assert len(server.control) == 1


@pytest.mark.parametrize("poison", ["corrupt", "bomb"])
async def test_data_peer_that_fails_right_after_the_ack_exhausts_the_budget(
    autojump_clock: trio.testing.MockClock, poison: str
) -> None:
    """A standalone subscription whose every connection is acked, then poisoned, gives up."""
    limit = 64 * 1024

    async def script(conn: FakeConn) -> None:
        request = orjson.loads(await conn.recv())
        await conn.ack(request["id"], 1)
        await conn.diff(1, 4000)
        await trio.sleep(1.0)
        if poison == "corrupt":
            await conn.send_binary(b"\x13\x37 definitely not zstd")
        else:
            await conn.send_binary(conn.encoder.encode(diff_text(1, 4001, pad=4 * 1024 * 1024)))
        await conn.wait_gone()

    # Delays stay well below the budget, so only the budget itself can end the loop.
    config = ManagedConfig(
        max_message_size=limit,
        reconnect_max_total=40.0,
        backoff=STEADY,
    )
    async with data_server(script) as server:
        failure, elapsed = await _until_subscription_failed(server.http_url(), config, deadline=600)
    assert elapsed <= 40.0 + RESET_AFTER
    assert "gave up" in str(failure)
    assert len(server.connections) > 2


async def test_data_peer_that_stalls_after_every_ack_exhausts_the_budget(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Healthy for 25 s, then silent until a ping goes unanswered: lost past reset_after (30 s)
    after it came up, yet healthy for less, so still the same outage."""

    async def script(conn: FakeConn) -> None:
        request = orjson.loads(await conn.recv())
        await conn.ack(request["id"], 1)
        await conn.diff(1, 4000)
        await trio.sleep(25.0)  # Pings answered meanwhile
        conn.stall()  # not even Pongs any more
        await conn.wait_gone()

    config = ManagedConfig(reconnect_max_total=100.0, backoff=STEADY)
    async with data_server(script) as server:
        _, elapsed = await _until_subscription_failed(server.http_url(), config, deadline=2000)
    # The connection up when the budget ran out is lost at most 25 s + one keepalive_interval
    # + data_pong_timeout later.
    assert elapsed <= 100.0 + 25.0 + 15.0 + 10.0 + 1.0
    assert len(server.connections) > 1


async def test_control_peer_that_stalls_after_every_attach_exhausts_the_budget(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def script(conn: FakeConnection) -> None:
        await _create_then_attach(conn)
        conn.stall()  # not even Pongs any more
        await conn.wait_gone()

    config = BUDGET_40
    async with fake_server(script, script_timeout=1000) as server:
        error, _, elapsed = await _until_control_failed(server.url, config, deadline=2000)
    assert elapsed <= 40.0 + 45.0 + 15.0 + 1.0
    assert "keepalive" in str(error)


async def test_session_subscription_fed_garbage_after_every_ack_fails_the_session(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The data plane of a managed session is bounded by the same budget."""

    async def control(conn: FakeConnection) -> None:
        await create_and_ready(conn)
        await conn.wait_gone()

    async def data(conn: FakeConnection) -> None:
        await conn.expect_method("transactionSubscribe")
        await conn.send('{"jsonrpc":"2.0","id":1,"result":1}')
        await trio.sleep(1.0)
        await conn.send(b"\x13\x37 definitely not zstd")
        await conn.wait_gone()

    program = "Prog1111111111111111111111111111111111111111"
    config = BUDGET_40
    async with fake_server([control], data=data, script_timeout=1000) as server:
        start = trio.current_time()
        with trio.fail_after(2000):
            async with open_managed_session(server.url, KEY, CREATE, config=config) as session:
                session.subscribe_transactions([program])
                assert await session.next_event() == events.ReadyForContinue()
                with pytest.raises(SubscriptionFailed):
                    await session.next_event()
        elapsed = trio.current_time() - start
    assert elapsed <= 40.0 + RESET_AFTER
    assert len(server.data()) > 2
