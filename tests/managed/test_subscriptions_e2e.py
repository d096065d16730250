"""Subscriptions against the reference server, with and without data-plane faults.

The synthetic chain is a pure function of the slot, so two sessions over the same range see
the same notifications: a faulted run must deliver the fault-free run's notifications, in
order, with nothing missing (replayed boundary slots may repeat).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
import pytest
import trio

from simtrio.core.backoff import BackoffPolicy
from simtrio.events import AccountDiff, Completed, Event, Transaction
from simtrio.managed.config import ManagedConfig
from simtrio.managed.standalone import open_transaction_subscription
from simtrio.managed.streams import EventStream
from simtrio.server import FaultPlan, Faults, ReferenceServer, serve
from tests.managed.test_subscriptions_harness import running_subscriptions
from tests.server import helpers

if TYPE_CHECKING:
    import trio.testing

START, END = 4000, 4019
LIMIT = 256 * 1024
CONFIG = ManagedConfig(max_message_size=LIMIT, backoff=BackoffPolicy(initial=0.05, jitter="none"))


def streams_of(events: list[Event]) -> dict[str, list[bytes]]:
    """Notifications per subscription (transactions; diffs per owning program), in order."""
    out: dict[str, list[bytes]] = {}
    for event in events:
        raw: Any
        if isinstance(event, AccountDiff):
            d = event.notification
            account = d.post if d.post is not None else d.pre
            name = f"diff {account['owner']}"
            raw = [d.slot, d.account, d.signature, d.pre, d.post]
        else:
            assert isinstance(event, Transaction)
            name = "tx"
            raw = [event.notification.slot, event.notification.transaction]
        out.setdefault(name, []).append(orjson.dumps(raw))
    return out


def dedup(items: list[bytes]) -> list[bytes]:
    """Drop replayed repeats (identical to an earlier item), keeping the first order."""
    return list(dict.fromkeys(items))


def is_completed(text: str) -> bool:
    return '"completed"' in text


async def run_session(server: ReferenceServer) -> list[Event]:
    """Create a session, subscribe, run it to the end, drain; returns the data events."""
    async with helpers.connect(server) as control:
        session_id = await helpers.open_session(
            control, helpers.create(START, END, disconnectTimeoutSecs=60)
        )
        rpc = f"{server.http_url}/backtest/{session_id}"
        stream = EventStream(CONFIG.event_buffer)
        got: list[Event] = []
        async with running_subscriptions(rpc, stream, config=CONFIG, start_slot=START) as subs:
            subs.subscribe_transactions([helpers.TOKEN])
            subs.subscribe_account_diffs([helpers.TOKEN, helpers.ATOKEN])
            await subs.wait_all_up()
            await control.send(helpers.cont(END - START + 1))
            await control.recv_until(is_completed)
            subs.complete_after_drain(Completed())
            async for event in stream.events():
                got.append(event)
    assert isinstance(got[-1], Completed)
    return got[:-1]


FAULTS = {
    "drop": Faults(drop_after=9),
    "corrupt": Faults(corrupt_compressed_at=6),
    "oversize": Faults(oversize_at=7, oversize_bytes=LIMIT + 1),
    "stall": Faults(stall_after=8),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_faulted_run_matches_the_clean_run(
    fault: str, autojump_clock: trio.testing.MockClock
) -> None:
    async with serve(seed=7) as server:
        server.set_faults(FaultPlan(data_connections={1: FAULTS[fault], 2: FAULTS[fault]}))
        faulted = await run_session(server)
        assert server.connection_count("data") > 2  # both managers had to reconnect
        clean = await run_session(server)
    clean_streams = streams_of(clean)
    faulted_streams = streams_of(faulted)
    assert set(clean_streams) == {"tx", f"diff {helpers.TOKEN}", f"diff {helpers.ATOKEN}"}
    assert set(faulted_streams) == set(clean_streams)
    for name, items in clean_streams.items():
        assert dedup(items) == items  # a clean run has no repeats
        # Nothing missing, nothing reordered; replay only repeats what was delivered.
        assert dedup(faulted_streams[name]) == items, name
    assert len(faulted) > len(clean)


async def test_standalone_subscription_streams_a_session_to_its_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serve(seed=3) as server, helpers.connect(server) as control:
        session_id = await helpers.open_session(
            control, helpers.create(START, START + 4, disconnectTimeoutSecs=60)
        )
        rpc = f"{server.http_url}/backtest/{session_id}"
        async with open_transaction_subscription(rpc, [helpers.TOKEN], config=CONFIG) as sub:
            await sub.wait_up()
            await control.send(helpers.cont(5))
            got = [n async for n in sub.notifications]
    assert got
    assert all(isinstance(n, Transaction) for n in got)
    slots = [n.notification.slot for n in got]
    assert slots == sorted(slots)
    assert slots[0] >= START
    assert slots[-1] <= START + 4
