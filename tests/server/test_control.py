"""Single sessions on the control plane (protocol §12.4): exact frames."""

from __future__ import annotations

import base64
import re

import orjson
import trio

from simtrio.server import chain, serve
from simtrio.server.config import ServerConfig

from .chain_helpers import SOL, b64, keypair, system_account, transfer_tx
from .helpers import (
    READY,
    STATUS_DECODED,
    STATUS_PREPARING,
    STATUS_READY,
    SUCCESS,
    TOKEN,
    connect,
    cont,
    cont_to,
    create,
    open_session,
    session_created,
    slot,
    step,
)

NO_MORE_BLOCKS = '{"method":"error","params":"NoMoreBlocks"}'


def _invalid_request(text: str) -> bool:
    return text.startswith('{"method":"error","params":{"InvalidRequest":{"error":"')


def _executed(
    config: ServerConfig, first: int, last: int, signers: frozenset[str] = frozenset()
) -> int:
    cfg = config.chain
    return sum(
        1
        for s in range(first, last + 1)
        for tx in chain.slot_transactions(cfg, s)
        if tx.fee_payer not in signers
    )


async def test_create_emits_the_opening_frames() -> None:
    with trio.fail_after(5):
        async with serve(seed=3) as server, connect(server) as client:
            await client.send(create(4000, 4003))
            created = orjson.loads(await client.recv_text())
            session_id = created["params"]["session_id"]
            assert session_id.startswith("backtest_")
            assert len(session_id) == len("backtest_") + 32
            await client.expect(STATUS_PREPARING, STATUS_READY, slot(4000), READY)
            assert session_created(session_id) == orjson.dumps(created).decode()
            snapshot = server.sessions[session_id]
            assert (snapshot.start_slot, snapshot.end_slot, snapshot.slot) == (4000, 4003, 4000)
            assert snapshot.attached
            assert not snapshot.numbered


async def test_session_ids_are_deterministic_when_asked() -> None:
    ids = []
    for _ in range(2):
        with trio.fail_after(5):
            async with serve(seed=11, deterministic_ids=True) as server, connect(server) as client:
                ids.append(await open_session(client, create(1, 2)))
    assert ids[0] == ids[1]
    assert len(ids[0]) == len("backtest_") + 16


async def test_session_ids_are_unguessable_by_default() -> None:
    ids = []
    for _ in range(2):
        with trio.fail_after(5):
            async with serve(seed=11) as server, connect(server) as client:
                ids.append(await open_session(client, create(1, 2)))
    assert ids[0] != ids[1]
    assert all(re.fullmatch(r"backtest_[0-9a-f]{32}", session_id) for session_id in ids)


async def test_continue_steps_then_waits() -> None:
    with trio.fail_after(5):
        async with serve() as server, connect(server) as client:
            await open_session(client, create(4000, 4010))
            await client.call(cont(2), *step(4001, 4002))
            await client.call(cont(0), *step())
            await client.call(cont(1), *step(4003))


async def test_completed_without_summary_then_no_more_blocks() -> None:
    with trio.fail_after(5):
        async with serve() as server, connect(server) as client:
            session_id = await open_session(client, create(4000, 4001))
            await client.send(cont(5))
            await client.expect(
                STATUS_DECODED,
                slot(4001),
                '{"method":"completed","params":{"summary":null,"agent_stats":null}}',
            )
            assert server.sessions[session_id].completed
            await client.send(cont(1))
            await client.expect(NO_MORE_BLOCKS)
            await client.send(cont_to(4001, None))
            await client.expect(NO_MORE_BLOCKS)


async def test_completed_with_summary_and_agent_stats() -> None:
    config = ServerConfig(seed=9)
    with trio.fail_after(5):
        async with serve(config) as server, connect(server) as client:
            frame = create(4000, 4002, sendSummary=True, agents=[{"name": "arb"}, {"kind": "x"}])
            await open_session(client, frame)
            payer = keypair(1)
            # One transfer that succeeds and one that fails: each counts by its result.
            good = b64(transfer_tx(payer, keypair(2).pubkey(), SOL))
            bad = b64(transfer_tx(payer, keypair(2).pubkey(), 100 * SOL))
            funded = {str(payer.pubkey()): system_account(10 * SOL)}
            await client.send(cont(3, transactions=[good, bad], modifyAccountStates=funded))
            frames = await client.recv_texts(4)
            assert frames[:3] == [STATUS_DECODED, slot(4001), slot(4002)]
            executed = _executed(config, 4000, 4002) + 1
            zero_stats = (
                '"opportunities_found":0,"opportunities_skipped":0,"no_routes":0,"txs_produced":0,'
                '"expected_gain_by_mint":{},"txs_submitted":0,"txs_failed":0,'
                '"txs_simulation_rejected":0,"txs_simulation_failed":0}'
            )
            assert frames[3] == (
                '{"method":"completed","params":{"summary":{"correct_simulation":'
                + str(executed)
                + ',"incorrect_simulation":1,"execution_errors":0,"balance_diff":0,"log_diff":0},'
                '"agent_stats":[{"name":"arb","slots_processed":3,'
                + zero_stats
                + ',{"name":"agent-1","slots_processed":3,'
                + zero_stats
                + "]}}"
            )


async def test_signer_filter_and_mismatch_rate_feed_the_summary() -> None:
    config = ServerConfig(seed=4, mismatch_rate=1.0)
    payer = chain.slot_transactions(config.chain, 4000)[0].fee_payer
    with trio.fail_after(5):
        async with serve(config) as server, connect(server) as client:
            await open_session(client, create(4000, 4004, sendSummary=True, signerFilter=[payer]))
            await client.send(cont(5))
            frames = await client.recv_until(lambda t: "completed" in t)
            summary = orjson.loads(frames[-1])["params"]["summary"]
            executed = _executed(config, 4000, 4004, frozenset({payer}))
            assert executed < _executed(config, 4000, 4004)
            assert summary["correct_simulation"] == 0
            assert summary["incorrect_simulation"] == executed
            assert summary["balance_diff"] + summary["log_diff"] == executed


async def test_continue_while_a_step_runs_is_invalid() -> None:
    # A long (real-time) slot delay keeps the first step running; nothing actually waits
    # for it because leaving the block cancels the step.
    with trio.fail_after(5):
        async with serve(slot_delay=60.0) as server, connect(server) as client:
            session_id = await open_session(client, create(4000, 4010))
            await client.send(cont(1))
            await client.send(cont(1))
            await client.expect(STATUS_DECODED)
            assert _invalid_request(await client.recv_text())
            assert server.sessions[session_id].running


async def test_bad_requests_get_invalid_request_and_the_connection_stays_open() -> None:
    with trio.fail_after(5):
        async with serve() as server, connect(server) as client:
            for bad in (
                "not json",
                "[1,2]",
                '{"method":"fly"}',
                '{"method":"continue","params":7}',
            ):
                await client.send(bad)
                assert _invalid_request(await client.recv_text())
            await client.send(cont(1))
            assert await client.recv_text() == (
                '{"method":"error","params":{"InvalidRequest":{"error":"no session on this connection"}}}'
            )
            session_id = await open_session(client, create(1, 3))
            await client.send('{"method":"nope"}')
            assert _invalid_request(await client.recv_text())
            await client.send(create(1, 3))
            assert _invalid_request(await client.recv_text())
            await client.call(cont(1), *step(2))
            assert session_id in server.sessions


async def test_invalid_continue_payloads() -> None:
    with trio.fail_after(5):
        async with serve() as server, connect(server) as client:
            await open_session(client, create(1, 9))
            good = b64(transfer_tx(keypair(1), keypair(2).pubkey(), 1))
            await client.send(cont(1, transactions=[good, "not base64!"]))
            reply = orjson.loads(await client.recv_text())
            error = reply["params"]["InvalidTransactionEncoding"]
            assert error["index"] == 1
            # Valid base64 that is no transaction is refused the same way.
            await client.send(cont(1, transactions=[good, "AAAA"]))
            reply = orjson.loads(await client.recv_text())
            assert reply["params"]["InvalidTransactionEncoding"]["index"] == 1
            account = {
                "data": {"data": "AAEC", "encoding": "base64"},
                "executable": False,
                "lamports": 1,
                "owner": TOKEN,
                "space": 3,
            }
            await client.send(cont(1, modifyAccountStates={"0OIl": account}))
            reply = orjson.loads(await client.recv_text())
            assert reply["params"]["InvalidAccountPubkey"]["address"] == "0OIl"
            await client.send(cont(1, modifyAccountStates={TOKEN: {**account, "owner": "x"}}))
            reply = orjson.loads(await client.recv_text())
            assert reply["params"]["InvalidAccountOwner"]["address"] == TOKEN
            bad_data = {**account, "data": {"data": "***", "encoding": "base64"}}
            await client.send(cont(1, modifyAccountStates={TOKEN: bad_data}))
            reply = orjson.loads(await client.recv_text())
            assert reply["params"]["InvalidAccountEncoding"]["encoding"] == "base64"
            # Still waiting: a valid continue runs.
            await client.send(cont(1, modifyAccountStates={TOKEN: account}))
            await client.expect(STATUS_DECODED, slot(2), READY)


async def test_create_validation() -> None:
    with trio.fail_after(5):
        async with serve(strict_ranges=True, window_end=999) as server, connect(server) as client:
            await client.send(create(10, 5))
            assert _invalid_request(await client.recv_text())
            await client.send(create(150, 160))
            assert await client.recv_text() == (
                '{"method":"error","params":{"BundleNotFound":{"start_slot":150,"end_slot":160}}}'
            )
            await client.send(create(100, 250))
            assert "BundleNotFound" in await client.recv_text()
            await client.send(create(100, 199))
            assert "sessionCreated" in await client.recv_text()


async def test_draining_refuses_creates() -> None:
    with trio.fail_after(5):
        async with serve(draining=True) as server, connect(server) as client:
            await client.send(create(1, 2))
            assert _invalid_request(await client.recv_text())
            server.draining = False
            await client.send(create(1, 2))
            assert "sessionCreated" in await client.recv_text()


async def test_close_ends_the_session() -> None:
    with trio.fail_after(5):
        async with serve() as server, connect(server) as client:
            session_id = await open_session(client, create(1, 5))
            await client.send('{"method":"closeBacktestSession"}')
            await client.expect(SUCCESS)
            assert session_id not in server.sessions
            await client.send(cont(1))
            await client.expect(NO_MORE_BLOCKS)
            await client.send('{"method":"resumeAttachedSession","params":{}}')
            await client.expect(SUCCESS)


async def test_close_cancels_a_running_step() -> None:
    with trio.fail_after(5):
        async with serve(slot_delay=60.0) as server, connect(server) as client:
            session_id = await open_session(client, create(1, 5))
            await client.send(cont(3))
            await client.expect(STATUS_DECODED)
            await client.send('{"method":"closeBacktestSession","params":null}')
            await client.expect(SUCCESS)
            assert session_id not in server.sessions


async def test_resume_gets_an_unnumbered_success() -> None:
    with trio.fail_after(5):
        async with serve() as server, connect(server) as client:
            await open_session(client, create(1, 5, disconnectTimeoutSecs=5))
            await client.send('{"method":"resumeAttachedSession"}')
            await client.expect(SUCCESS)


def _first_match(
    config: ServerConfig, program: str, start: tuple[int, int], end_slot: int
) -> tuple[int, int]:
    cfg = config.chain
    slot_, batch = start
    while slot_ <= end_slot:
        for b in range(batch, cfg.batches_per_slot):
            if any(program in tx.program_ids for tx in chain.batch_transactions(cfg, slot_, b)):
                return slot_, b
        slot_, batch = slot_ + 1, 0
    raise AssertionError("no match")


async def test_discoveries_and_continue_to() -> None:
    config = ServerConfig(seed=21)
    cfg = config.chain
    with trio.fail_after(5):
        async with serve(config) as server, connect(server) as client:
            frame = create(4000, 4020, discoveries=[{"ProgramExecuted": TOKEN}])
            await client.send(frame)
            await client.recv_text()
            await client.expect(STATUS_PREPARING, STATUS_READY, slot(4000), READY)
            first = _first_match(config, TOKEN, (4000, 0), 4020)
            discovery = orjson.loads(await client.recv_text())
            assert discovery["method"] == "discoveryBatch"
            params = discovery["params"]
            assert (params["slot"], params["batch_index"]) == first
            assert params["matched"] == [{"ProgramExecuted": TOKEN}]
            txs = chain.batch_transactions(cfg, *first)
            assert params["transactions"] == [
                {
                    "data": base64.b64encode(chain.serialize_transaction(cfg, tx)).decode(),
                    "encoding": "base64",
                }
                for tx in txs
            ]
            await client.send(cont_to(*first))
            paused_frames = await client.recv_until(lambda t: '"method":"paused"' in t)
            assert paused_frames[-1] == (
                '{"method":"paused","params":{"slot":'
                + str(first[0])
                + ',"batch_index":'
                + str(first[1])
                + "}}"
            )
            assert paused_frames[:-1] == [slot(s) for s in range(4001, first[0] + 1)]
            second = _first_match(config, TOKEN, (first[0], first[1] + 1), 4020)
            nxt = orjson.loads(await client.recv_text())
            assert (nxt["params"]["slot"], nxt["params"]["batch_index"]) == second
            await client.send(cont_to(9999, None))
            assert _invalid_request(await client.recv_text())
            await client.send(cont_to(first[0] + 1, None))
            frames = await client.recv_until(lambda t: '"method":"paused"' in t)
            assert frames[-1] == (
                '{"method":"paused","params":{"slot":' + str(first[0] + 1) + ',"batch_index":null}}'
            )
            assert slot(first[0] + 2) in frames
            assert server.sessions[next(iter(server.sessions))].slot == first[0] + 2
            # A target behind the current position is refused; the session stays paused.
            await client.recv_text()  # the next discovery
            await client.send(cont_to(first[0] + 1, 0))
            assert _invalid_request(await client.recv_text())
            await client.send(cont(1))
            await client.expect(STATUS_DECODED, slot(first[0] + 3))


async def test_continue_to_the_end_completes() -> None:
    with trio.fail_after(5):
        async with serve() as server, connect(server) as client:
            await open_session(client, create(10, 12))
            await client.send(cont_to(12, None))
            frames = await client.recv_until(lambda t: "completed" in t)
            assert frames == [
                slot(11),
                slot(12),
                '{"method":"completed","params":{"summary":null,"agent_stats":null}}',
            ]
