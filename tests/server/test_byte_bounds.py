"""The reference server's outbound buffers are bounded in bytes as well as in count."""

from __future__ import annotations

import orjson
import trio
import trio_websocket

from simtrio.server import FaultPlan, Faults, serve
from simtrio.server.data_log import DataLog, LazyNotification, Subscription
from simtrio.server.response_log import ResponseLog
from simtrio.wire.codec import encode_response
from simtrio.wire.rpc import TransactionNotification
from simtrio.wire.types import SlotNotification

from .chain_helpers import SOL, Rpc, b64, keypair, system_account, transfer_tx
from .helpers import (
    ATOKEN,
    TOKEN,
    FakeConn,
    connect,
    cont,
    create,
    data_plane,
    open_session,
    session_on,
    subscribe,
)

_NOTE = LazyNotification(lambda: TransactionNotification(0, 0, {"slot": 0}))


def test_the_data_log_counts_bytes_and_drops_whole_old_slots() -> None:
    log = DataLog()
    for s in range(5):
        log.append(("transaction", TOKEN), s, _NOTE, 100)
        log.append(("transaction", ATOKEN), s, _NOTE, 50)
    assert (log.bytes, log.slot_bytes(2)) == (750, 150)
    assert log.byte_floor(10_000) == 0
    assert log.byte_floor(450) == 2
    assert log.byte_floor(449) == 3
    assert log.byte_floor(1) == 4  # the newest slot is kept, however large
    log.trim(3)
    assert (log.bytes, log.slot_bytes(2), log.slot_bytes(3)) == (300, 0, 150)
    assert DataLog().byte_floor(1) is None


def test_a_live_subscriber_holds_back_what_the_byte_bound_would_drop() -> None:
    log = DataLog()
    for s in range(5):
        log.append(("transaction", TOKEN), s, _NOTE, 100)
        log.append(("transaction", ATOKEN), s, _NOTE, 50)
    sub = Subscription(1, ("transaction", TOKEN), 0, FakeConn())  # type: ignore[arg-type]
    log.subs.add(sub)
    floor = log.byte_floor(300)
    assert floor == 3
    assert log.lagging(floor)  # the session waits before its next slot
    log.trim(floor)
    # Its own events stay; the other program's old ones go.
    assert log.bytes == 5 * 100 + 2 * 50
    assert not sub.overtaken


def test_the_response_log_knows_the_bytes_of_any_tail() -> None:
    log = ResponseLog(3)
    sizes = {n: len(encode_response(SlotNotification(n))) for n in range(1, 6)}
    for n in range(1, 6):
        log.append(SlotNotification(n))
    assert log.total_bytes == sum(sizes.values())
    assert log.bytes_after(5) == 0
    assert log.bytes_after(3) == sizes[4] + sizes[5]
    # Older than what is retained: what is retained.
    assert log.bytes_after(0) == sizes[3] + sizes[4] + sizes[5]
    assert ResponseLog(3).bytes_after(0) == 0


async def test_a_slow_control_connection_holds_its_session_by_bytes(
    autojump_clock: trio.abc.Clock,
) -> None:
    # A second per message: the session would run all 60 slots ahead without a byte bound.
    plan = FaultPlan(control=Faults(delay=1.0))
    async with (
        serve(faults=plan, control_backlog_bytes=300) as server,
        connect(server) as control,
    ):
        session_id = await open_session(control, create(1000, 1060))
        await control.send(cont(60))
        ahead = 0
        while True:
            message = orjson.loads(await control.recv_text(timeout=600))
            if message["method"] == "slotNotification":
                ahead = max(ahead, server.sessions[session_id].slot - message["params"])
            if message["method"] == "readyForContinue":
                break
        assert 0 < ahead <= 10


async def test_a_slow_data_connection_holds_its_session_by_bytes(
    autojump_clock: trio.abc.Clock,
) -> None:
    plan = FaultPlan(data=Faults(delay=1.0))
    async with (
        serve(faults=plan, retained_bytes=4 * 4096) as server,
        connect(server) as control,
    ):
        session_id = await open_session(control, create(1000, 1060))
        async with data_plane(server, session_id) as data:
            await data.send(subscribe(1, TOKEN))
            await data.expect('{"jsonrpc":"2.0","id":1,"result":1}')
            await control.send(cont(60))
            ahead = 0
            while True:
                message = orjson.loads(await data.recv_text(timeout=600))
                if message.get("method") != "transactionNotification":
                    break
                slot = message["params"]["result"]["slot"]
                ahead = max(ahead, server.sessions[session_id].slot - slot)
                if slot >= 1050:
                    break
            assert 0 < ahead <= 10


async def test_a_subscriber_overtaken_by_retention_is_closed_not_skipped(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Stalled, the connection holds nothing back; once it resumes, what it was owed is gone.
    plan = FaultPlan(data=Faults(stall_after=1, stall_for=50.0))
    async with serve(faults=plan, retained_slots=10) as server, connect(server) as control:
        session_id = await open_session(control, create(1000, 1100))
        async with data_plane(server, session_id) as data:
            await data.send(subscribe(1, TOKEN))
            await data.expect('{"jsonrpc":"2.0","id":1,"result":1}')
            await control.send(cont(101))
            await control.recv_until(lambda t: "completed" in t, limit=1_000)
            methods: list[str] = []
            with trio.fail_after(600):
                while True:
                    try:
                        methods.append(orjson.loads(await data.recv_text(timeout=600))["method"])
                    except trio_websocket.ConnectionClosed as exc:
                        reason = exc.reason
                        break
            # The notification in flight when it stalled, then a Close that says why, and no
            # subscriptionComplete: the client reconnects and replays what is retained.
            assert methods == ["transactionNotification"]
            assert reason.code == 1013
            assert "retained" in (reason.reason or "")


async def test_a_slot_full_of_user_bytes_takes_no_more_user_transactions() -> None:
    payer = keypair(110)
    with trio.fail_after(10):
        async with serve(retained_bytes=1) as server, connect(server) as control:
            session_id = await open_session(control, create(4000, 4010))
            rpc = Rpc(server, session_id)
            await rpc.call("modifyAccounts", [{str(payer.pubkey()): system_account(10 * SOL)}])
            first = b64(transfer_tx(payer, keypair(111).pubkey(), SOL))
            second = b64(transfer_tx(payer, keypair(112).pubkey(), SOL))
            assert await rpc.call("sendTransaction", [first])
            code, _ = await rpc.error("sendTransaction", [second])
            assert code == -32005
            await control.send(cont(1))
            await control.recv_until(lambda t: "readyForContinue" in t)
            assert await rpc.call("sendTransaction", [second])


async def test_a_replay_the_byte_bound_cut_short_is_refused_as_a_gap() -> None:
    with trio.fail_after(10):
        async with (
            serve(retained_bytes=4 * 4096) as server,
            connect(server) as control,
        ):
            session_id = await open_session(control, create(1000, 1100))
            await control.send(cont(20))
            await control.recv_until(lambda t: "readyForContinue" in t)
            async with data_plane(server, session_id) as data:
                # Slot 1000 is within the 100 slots a client counts on, but its events are gone.
                await data.send(subscribe(1, TOKEN, replay=1000))
                reply = orjson.loads(await data.recv_text())
                assert reply["error"]["code"] == -32602
                assert reply["error"]["message"].startswith("data-plane gap")
                # From the newest slot, everything is there.
                await data.send(subscribe(2, TOKEN, replay=1019))
                assert orjson.loads(await data.recv_text()) == {
                    "jsonrpc": "2.0",
                    "id": 2,
                    "result": 1,
                }


async def test_without_the_byte_bound_in_play_old_replays_are_served() -> None:
    with trio.fail_after(10):
        async with session_on(None, 1000, 1100) as (server, control, session_id):
            await control.send(cont(20))
            await control.recv_until(lambda t: "readyForContinue" in t)
            async with data_plane(server, session_id) as data:
                await data.send(subscribe(1, TOKEN, replay=1000))
                assert "result" in orjson.loads(await data.recv_text())
