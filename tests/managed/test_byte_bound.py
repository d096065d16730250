"""The data-plane buffers are bounded in bytes: a paused consumer holds little, loses nothing."""

from __future__ import annotations

import trio

from simtrio import CreateSession, open_managed_session
from simtrio.events import Completed, ReadyForContinue, Transaction
from simtrio.managed.config import ManagedConfig
from simtrio.managed.standalone import open_transaction_subscription
from simtrio.server import serve
from simtrio.wire.types import ContinueParams
from tests.managed.reference import reference_session
from tests.server import helpers

MAX_BYTES = 4096
"""A few transaction notifications' worth."""


async def test_a_paused_standalone_consumer_holds_at_most_the_byte_bound(
    autojump_clock: trio.abc.Clock,
) -> None:
    config = ManagedConfig(event_buffer=1024, event_buffer_bytes=MAX_BYTES)
    async with (
        reference_session(0, 59, seed=5) as (_, control, endpoint),
        open_transaction_subscription(endpoint, [helpers.TOKEN], config=config) as sub,
    ):
        await sub.wait_up()
        await control.send(helpers.cont(60))
        await trio.sleep(30)  # the consumer is paused; the server runs as far as it can
        used = sub.notifications.statistics().current_buffer_used
        held = sub.notifications.buffered_bytes
        assert 1 <= used < 10
        assert held <= MAX_BYTES
        received = [n async for n in sub.notifications]
    slots = [n.notification.slot for n in received]
    assert len(received) > 5 * used
    assert slots == sorted(slots)
    assert slots[-1] == 59


async def test_a_paused_session_driver_holds_at_most_the_byte_bound(
    autojump_clock: trio.abc.Clock,
) -> None:
    config = ManagedConfig(event_buffer=1024, event_buffer_bytes=MAX_BYTES)
    create = CreateSession(0, end_slot=59, disconnect_timeout_secs=60)
    async with (
        serve(seed=5) as server,
        open_managed_session(server.control_url, "key", create, config=config) as session,
    ):
        session.subscribe_transactions([helpers.TOKEN])
        stream = session._sink.stream  # what the driver has not read yet
        transactions = 0
        peak = 0
        while True:
            event = await session.next_event()
            if isinstance(event, ReadyForContinue):
                await session.send_continue(ContinueParams(60))
                await trio.sleep(30)  # paused while the whole range runs
                peak = max(peak, stream.buffered_bytes)
                assert 1 <= stream.buffered_data < 10
            elif isinstance(event, Transaction):
                transactions += 1
            elif isinstance(event, Completed):
                break
    assert transactions > 50
    assert 0 < peak <= MAX_BYTES
