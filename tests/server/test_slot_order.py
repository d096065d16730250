"""Slot order on one data connection (protocol §12.7, §9.7).

A connection carrying several subscriptions of different kinds must send its notifications in
non-decreasing slot order, and must never skip an event a subscription is owed: across live
streaming, replays and a reader that stalls while the session runs on.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import attrs
import pytest
import trio
import trio_websocket

from simtrio.server import FaultPlan, Faults
from simtrio.server.config import ServerConfig

from .expected import expected_diffs, expected_transactions, slot_of, terminal
from .helpers import (
    ATOKEN,
    TOKEN,
    WsClient,
    cont,
    data_plane,
    logs_subscribe,
    run_to_end,
    session_on,
    subscribe,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


async def subscribe_three(data: WsClient, replay: int | None) -> None:
    """Transactions of TOKEN (1), account diffs of ATOKEN (2), logs of ATOKEN (3)."""
    await data.send(subscribe(1, TOKEN, replay=replay))
    await data.expect('{"jsonrpc":"2.0","id":1,"result":1}')
    await data.send(subscribe(2, ATOKEN, method="accountDiffSubscribe", replay=replay))
    await data.expect('{"jsonrpc":"2.0","id":2,"result":2}')
    await data.send(logs_subscribe(3, ATOKEN, replayFromSlot=replay))
    await data.expect('{"jsonrpc":"2.0","id":3,"result":3}')


def of(frames: list[str], sub: int) -> list[str]:
    return [f for f in frames if f'"subscription":{sub}' in f]


def notified_slots(frames: list[str]) -> list[int]:
    return [slot_of(f) for f in frames if "Notification" in f]


async def read_all(data: WsClient) -> tuple[list[str], trio_websocket.CloseReason | None]:
    """Every message until the connection ends, and how it ended."""
    frames: list[str] = []
    while True:
        try:
            frames.append(await data.recv_text(timeout=600))
        except trio_websocket.ConnectionClosed as exc:
            return frames, exc.reason


@asynccontextmanager
async def stalled_reader(
    config: ServerConfig, stall_after: int, slots: range
) -> AsyncIterator[WsClient]:
    """A data connection with three subscriptions that stalls (for 50 s) after ``stall_after``
    messages, while its session runs ``slots`` to the end."""
    plan = FaultPlan(data=Faults(stall_after=stall_after, stall_for=50.0))
    async with (
        session_on(attrs.evolve(config, faults=plan), slots[0], slots[-1]) as (
            server,
            control,
            session_id,
        ),
        data_plane(server, session_id) as data,
    ):
        await subscribe_three(data, replay=None)
        await control.send(cont(len(slots)))
        await control.recv_until(lambda t: "completed" in t, limit=1_000)
        yield data


async def test_subscriptions_of_three_kinds_share_one_slot_order() -> None:
    config = ServerConfig(seed=41)
    with trio.fail_after(5):
        async with session_on(config, 4000, 4011) as (server, control, session_id):
            async with data_plane(server, session_id) as data:
                await subscribe_three(data, replay=4000)
                await run_to_end(control, 12)
                frames: list[str] = []
                while not all(terminal(n) in frames for n in (1, 2, 3)):
                    frames.append(await data.recv_text())
            slots = range(4000, 4012)
            assert of(frames, 1) == [*expected_transactions(config, TOKEN, slots, 1), terminal(1)]
            assert of(frames, 2) == [*expected_diffs(config, ATOKEN, slots, 2), terminal(2)]
            logs = [slot_of(f) for f in of(frames, 3) if "Notification" in f]
            assert logs == [slot_of(f) for f in expected_transactions(config, ATOKEN, slots, 3)]
            notified = notified_slots(frames)
            assert len(notified) > 30
            assert notified == sorted(notified)


async def test_a_stalled_reader_gets_everything_retained_in_order_when_it_resumes(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Three acks and one notification, then a stall; the session runs on meanwhile (a stalled
    # reader holds nothing back), and everything stays within the retained window.
    config = ServerConfig(seed=42, retained_slots=100)
    slots = range(4000, 4030)
    async with stalled_reader(config, 4, slots) as data:
        frames: list[str] = []
        with trio.fail_after(600):
            while not all(terminal(n) in frames for n in (1, 2, 3)):
                frames.append(await data.recv_text(timeout=600))
        assert of(frames, 1) == [*expected_transactions(config, TOKEN, slots, 1), terminal(1)]
        assert of(frames, 2) == [*expected_diffs(config, ATOKEN, slots, 2), terminal(2)]
        notified = notified_slots(frames)
        assert notified == sorted(notified)


async def test_a_reader_overtaken_while_stalled_is_closed_after_an_in_order_prefix(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Stalled past the retained window: the connection ends (1013) instead of skipping ahead,
    # and what it did send is, per subscription, a gap-free prefix in connection slot order.
    config = ServerConfig(seed=43, retained_slots=10)
    slots = range(4000, 4100)
    async with stalled_reader(config, 6, slots) as data:
        with trio.fail_after(600):
            frames, reason = await read_all(data)
    assert reason is not None
    assert reason.code == 1013
    assert not any("subscriptionComplete" in f for f in frames)
    sent1, sent2 = of(frames, 1), of(frames, 2)
    assert sent1 == expected_transactions(config, TOKEN, slots, 1)[: len(sent1)]
    assert sent2 == expected_diffs(config, ATOKEN, slots, 2)[: len(sent2)]
    notified = notified_slots(frames)
    assert notified
    assert notified == sorted(notified)


async def test_a_replay_after_higher_slots_is_complete_for_its_subscription() -> None:
    # A replay subscription added to a connection that already sent higher slots still gets
    # every retained event of its own from its cursor on, in order.
    config = ServerConfig(seed=44)
    with trio.fail_after(5):
        async with session_on(config, 4000, 4009) as (server, control, session_id):
            await run_to_end(control, 10)
            async with data_plane(server, session_id) as data:
                await data.send(subscribe(1, TOKEN, replay=4000))
                await data.expect('{"jsonrpc":"2.0","id":1,"result":1}')
                first = await data.recv_until(lambda t: t == terminal(1))
                await data.send(subscribe(2, ATOKEN, method="accountDiffSubscribe", replay=4003))
                await data.expect('{"jsonrpc":"2.0","id":2,"result":2}')
                second = await data.recv_until(lambda t: t == terminal(2))
            slots = range(4000, 4010)
            assert first == [*expected_transactions(config, TOKEN, slots, 1), terminal(1)]
            assert second == [
                *expected_diffs(config, ATOKEN, range(4003, 4010), 2),
                terminal(2),
            ]


@pytest.mark.xfail(
    strict=True,
    reason=(
        "protocol §12.7: a subscription added with replayFromSlot below slots the connection"
        " already sent replays its backlog after them"
    ),
)
async def test_a_replay_subscribed_after_higher_slots_keeps_connection_order() -> None:
    config = ServerConfig(seed=45)
    with trio.fail_after(5):
        async with session_on(config, 4000, 4009) as (server, control, session_id):
            await run_to_end(control, 10)
            async with data_plane(server, session_id) as data:
                # As a reconnecting client does: one subscribe at a time, each after its ack.
                await data.send(subscribe(1, TOKEN, replay=4000))
                await data.expect('{"jsonrpc":"2.0","id":1,"result":1}')
                frames = await data.recv_until(lambda t: slot_of_or_none(t) == 4005)
                await data.send(subscribe(2, ATOKEN, method="accountDiffSubscribe", replay=4000))
                frames += await data.recv_until(lambda t: t == terminal(2))
                if terminal(1) not in frames:
                    frames += await data.recv_until(lambda t: t == terminal(1))
    notified = notified_slots(frames)
    assert notified == sorted(notified)


def slot_of_or_none(text: str) -> int | None:
    return slot_of(text) if "Notification" in text else None
