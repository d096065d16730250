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

from .expected import ended, expected_diffs, expected_transactions, of, slot_of, terminal
from .helpers import (
    ATOKEN,
    RECEIVE_TIMEOUT,
    TOKEN,
    WsClient,
    ack,
    cont,
    data_after_end,
    data_session,
    logs_subscribe,
    run_to_end,
    subscribe,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


def three_kinds(replay: int | None) -> tuple[str, str, str]:
    """Transactions of TOKEN (1), account diffs of ATOKEN (2), logs of ATOKEN (3)."""
    return (
        subscribe(1, TOKEN, replay=replay),
        subscribe(2, ATOKEN, method="accountDiffSubscribe", replay=replay),
        logs_subscribe(3, ATOKEN, replayFromSlot=replay),
    )


def notified_slots(frames: list[str]) -> list[int]:
    return [slot_of(f) for f in frames if "Notification" in f]


async def read_three_terminals(data: WsClient, timeout: float = RECEIVE_TIMEOUT) -> list[str]:
    """Text frames until the terminals of subscriptions 1, 2 and 3 were all among them."""
    frames: list[str] = []
    while not all(terminal(n) in frames for n in (1, 2, 3)):
        frames.append(await data.recv_text(timeout=timeout))
    return frames


def assert_whole_and_ordered(frames: list[str], config: ServerConfig, slots: range) -> None:
    """Subscriptions 1 and 2 got every event of ``slots`` and their terminal, and the
    connection's notifications never went back in slot order."""
    assert of(frames, 1) == ended(expected_transactions(config, TOKEN, slots, 1), 1)
    assert of(frames, 2) == ended(expected_diffs(config, ATOKEN, slots, 2), 2)
    notified = notified_slots(frames)
    assert notified == sorted(notified)


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
    messages, while its session runs ``slots`` to the end; the whole block is bounded (600 s)."""
    plan = FaultPlan(data=Faults(stall_after=stall_after, stall_for=50.0))
    faulty = attrs.evolve(config, faults=plan)
    with trio.fail_after(600):
        async with data_session(faulty, slots[0], slots[-1], *three_kinds(None)) as live:
            await live.control.send(cont(len(slots)))
            await live.control.recv_until(lambda t: "completed" in t, limit=1_000)
            yield live.data


async def test_subscriptions_of_three_kinds_share_one_slot_order() -> None:
    config = ServerConfig(seed=41)
    with trio.fail_after(5):
        async with data_session(config, 4000, 4011, *three_kinds(4000)) as live:
            await run_to_end(live.control, 12)
            frames = await read_three_terminals(live.data)
            slots = range(4000, 4012)
            assert_whole_and_ordered(frames, config, slots)
            logs = [slot_of(f) for f in of(frames, 3) if "Notification" in f]
            assert logs == [slot_of(f) for f in expected_transactions(config, ATOKEN, slots, 3)]
            assert len(notified_slots(frames)) > 30


async def test_a_stalled_reader_gets_everything_retained_in_order_when_it_resumes(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Three acks and one notification, then a stall; the session runs on meanwhile (a stalled
    # reader holds nothing back), and everything stays within the retained window.
    config = ServerConfig(seed=42, retained_slots=100)
    slots = range(4000, 4030)
    async with stalled_reader(config, 4, slots) as data:
        frames = await read_three_terminals(data, timeout=600)
    assert_whole_and_ordered(frames, config, slots)


async def test_a_reader_overtaken_while_stalled_is_closed_after_an_in_order_prefix(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Stalled past the retained window: the connection ends (1013) instead of skipping ahead,
    # and what it did send is, per subscription, a gap-free prefix in connection slot order.
    config = ServerConfig(seed=43, retained_slots=10)
    slots = range(4000, 4100)
    async with stalled_reader(config, 6, slots) as data:
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
        async with data_after_end(config, 4000, 4009) as data:
            await data.call(subscribe(1, TOKEN, replay=4000), ack(1, 1))
            first = await data.recv_until(lambda t: t == terminal(1))
            await data.call(
                subscribe(2, ATOKEN, method="accountDiffSubscribe", replay=4003), ack(2, 2)
            )
            second = await data.recv_until(lambda t: t == terminal(2))
            slots = range(4000, 4010)
            assert first == ended(expected_transactions(config, TOKEN, slots, 1), 1)
            assert second == ended(expected_diffs(config, ATOKEN, range(4003, 4010), 2), 2)


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
        async with data_after_end(config, 4000, 4009) as data:
            # As a reconnecting client does: one subscribe at a time, each after its ack.
            await data.call(subscribe(1, TOKEN, replay=4000), ack(1, 1))
            frames = await data.recv_until(lambda t: slot_of_or_none(t) == 4005)
            await data.send(subscribe(2, ATOKEN, method="accountDiffSubscribe", replay=4000))
            frames += await data.recv_until(lambda t: t == terminal(2))
            if terminal(1) not in frames:
                frames += await data.recv_until(lambda t: t == terminal(1))
    notified = notified_slots(frames)
    assert notified == sorted(notified)


def slot_of_or_none(text: str) -> int | None:
    return slot_of(text) if "Notification" in text else None
