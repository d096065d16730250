"""User transactions execute on the session's LiteSVM and show up everywhere a user looks."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import orjson
import trio
from solders.compute_budget import request_heap_frame, set_compute_unit_limit
from solders.hash import Hash
from solders.litesvm import LiteSVM
from solders.message import Message
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction, VersionedTransaction

from simtrio.server import chain, compute_budget, serve
from simtrio.server.config import ServerConfig

from .chain_helpers import (
    BLOCKHASH,
    MEMO,
    SOL,
    SYSTEM,
    Rpc,
    b64,
    funded,
    injection,
    invoke_tx,
    keypair,
    memo_elf,
    system_account,
    transfer_tx,
    transfer_v0,
)
from .helpers import (
    READY,
    STATUS_DECODED,
    WsClient,
    ZstdReader,
    collect_binary_until_terminals,
    connect,
    cont,
    create,
    data_plane,
    logs_subscribe,
    open_session,
    session_on,
    slot,
    subscribe,
)

if TYPE_CHECKING:
    from solders.keypair import Keypair


async def read_data(client: WsClient, count: int) -> list[dict[str, Any]]:
    return [orjson.loads(await client.recv_text()) for _ in range(count)]


def by_method(messages: list[dict[str, Any]], method: str) -> list[dict[str, Any]]:
    return [m["params"] for m in messages if m.get("method") == method]


async def test_a_continue_s_transactions_are_reported_everywhere() -> None:
    config = ServerConfig(seed=3)
    payer, to = keypair(1), keypair(2).pubkey()
    good = transfer_tx(payer, to, SOL)
    bad = transfer_tx(payer, to, 100 * SOL)
    with trio.fail_after(10):
        async with session_on(config, 4000, 4003, sendSummary=True) as (
            server,
            control,
            session_id,
        ):
            rpc = Rpc(server, session_id)
            async with data_plane(server, session_id) as data:
                await data.send(subscribe(1, SYSTEM))
                await data.send(subscribe(2, SYSTEM, method="accountDiffSubscribe"))
                await data.send(logs_subscribe(3, SYSTEM))
                assert [m["result"] for m in await read_data(data, 3)] == [1, 2, 3]
                funding = funded(payer, 10 * SOL)
                frame = cont(1, transactions=[b64(good), b64(bad)], modifyAccountStates=funding)
                await control.send(frame)
                await control.expect(STATUS_DECODED, slot(4001), READY)
                # Per transaction: its transaction, its logs, then its diffs (payer first).
                messages = await read_data(data, 7)
                assert [m["method"] for m in messages] == [
                    "transactionNotification",
                    "logsNotification",
                    "accountDiffNotification",
                    "accountDiffNotification",
                    "transactionNotification",
                    "logsNotification",
                    "accountDiffNotification",
                ]
                assert {m["params"]["subscription"] for m in messages[:2]} == {1, 3}

            ok, failed = by_method(messages, "transactionNotification")
            assert ok["result"]["slot"] == 4000
            assert ok["result"]["blockTime"] == chain.block_time(config.chain, 4000)
            assert ok["result"]["transaction"]["signatures"] == [str(good.signatures[0])]
            assert ok["result"]["meta"]["err"] is None
            assert ok["result"]["meta"]["preBalances"] == [10 * SOL, 0, 1]
            assert ok["result"]["meta"]["postBalances"] == [9 * SOL - 5000, SOL, 1]
            assert ok["result"]["version"] == "legacy"
            error = {"InstructionError": [0, {"Custom": 1}]}
            assert failed["result"]["meta"]["err"] == error
            assert failed["result"]["meta"]["fee"] == 5000

            ok_logs, failed_logs = by_method(messages, "logsNotification")
            assert ok_logs["result"]["context"] == {"slot": 4000}
            assert ok_logs["result"]["value"]["signature"] == str(good.signatures[0])
            assert ok_logs["result"]["value"]["logs"] == [
                f"Program {SYSTEM} invoke [1]",
                f"Program {SYSTEM} success",
            ]
            assert failed_logs["result"]["value"]["err"] == error

            diffs = by_method(messages, "accountDiffNotification")
            assert [d["result"]["account"] for d in diffs] == [
                str(payer.pubkey()),
                str(to),
                str(payer.pubkey()),
            ]
            created = diffs[1]["result"]
            assert created["pre"] is None
            assert created["post"] == {
                "data": {"data": "", "encoding": "base64"},
                "executable": False,
                "lamports": SOL,
                "owner": SYSTEM,
                "space": 0,
            }
            assert diffs[2]["result"]["post"]["lamports"] == 9 * SOL - 10_000

            statuses = await rpc.call(
                "getSignatureStatuses", [[str(good.signatures[0]), str(bad.signatures[0])]]
            )
            assert [s["err"] for s in statuses["value"]] == [None, error]
            assert [s["slot"] for s in statuses["value"]] == [4000, 4000]
            fetched = await rpc.call("getTransaction", [str(bad.signatures[0]), "json"])
            assert fetched == failed["result"]
            assert (await rpc.call("getBalance", [str(to)]))["value"] == SOL

            await control.send(cont(10))
            done = await control.recv_until(lambda t: "completed" in t)
            summary = orjson.loads(done[-1])["params"]["summary"]
            historical = sum(
                len(chain.slot_transactions(config.chain, s)) for s in range(4000, 4004)
            )
            assert summary["correct_simulation"] == historical + 1
            assert summary["incorrect_simulation"] == 1


async def test_transactions_run_after_the_first_slot_s_historical_ones() -> None:
    config = ServerConfig(seed=5)
    payer = keypair(3)
    with trio.fail_after(10):
        async with (
            session_on(config, 4000, 4003) as (server, control, session_id),
            data_plane(server, session_id) as data,
        ):
            # The system program's logs and every synthetic program's, on one connection.
            await data.send(logs_subscribe(1, SYSTEM))
            for n, program in enumerate(config.program_ids, start=2):
                await data.send(logs_subscribe(n, program))
            await read_data(data, 1 + len(config.program_ids))
            funding = funded(payer, SOL)
            tx = transfer_tx(payer, keypair(4).pubkey(), 1_000_000)
            await control.send(cont(2, transactions=[b64(tx)], modifyAccountStates=funding))
            await control.recv_until(lambda t: "readyForContinue" in t)
            seen: list[str] = []
            while str(tx.signatures[0]) not in seen:
                message = await data.recv_json()
                seen.append(message["params"]["result"]["value"]["signature"])
    historical = {t.signature for t in chain.slot_transactions(config.chain, 4000)}
    # Everything before the user's transaction is slot 4000's history, all of it.
    assert set(seen[:-1]) == historical


async def test_a_version_0_transaction_executes() -> None:
    payer = keypair(5)
    tx = transfer_v0(payer, keypair(6).pubkey(), 2 * SOL)
    with trio.fail_after(10):
        async with session_on(None, 4000, 4003) as (server, control, session_id):
            rpc = Rpc(server, session_id)
            funding = funded(payer, 3 * SOL)
            await control.send(cont(1, transactions=[b64(tx)], modifyAccountStates=funding))
            await control.recv_until(lambda t: "readyForContinue" in t)
            fetched = await rpc.call("getTransaction", [str(tx.signatures[0])])
            assert fetched["version"] == 0
            assert fetched["transaction"]["message"]["addressTableLookups"] == []
            assert fetched["meta"]["err"] is None
            balance = await rpc.call("getBalance", [str(keypair(6).pubkey())])
            assert balance["value"] == 2 * SOL


async def test_signature_and_blockhash_failures_are_results_too() -> None:
    payer = keypair(7)
    stale = transfer_tx(payer, keypair(8).pubkey(), 5, blockhash=Hash(bytes([7]) * 32))
    forged = transfer_tx(payer, keypair(8).pubkey(), 6)
    raw = bytearray(bytes(forged))
    raw[10] ^= 0xFF  # corrupt the signature itself
    with trio.fail_after(10):
        async with session_on(None, 4000, 4003, sendSummary=True) as (server, control, session_id):
            rpc = Rpc(server, session_id)
            funding = funded(payer, SOL)
            await control.send(
                cont(
                    1,
                    transactions=[b64(stale), base64.b64encode(raw).decode()],
                    modifyAccountStates=funding,
                )
            )
            await control.recv_until(lambda t: "readyForContinue" in t)
            stale_status = await rpc.call("getTransaction", [str(stale.signatures[0])])
            assert stale_status["meta"]["err"] == "BlockhashNotFound"
            assert stale_status["meta"]["fee"] == 0
            forged_signature = str(VersionedTransaction.from_bytes(bytes(raw)).signatures[0])
            statuses = await rpc.call("getSignatureStatuses", [[forged_signature]])
            assert statuses["value"][0]["err"] == "SignatureFailure"
            assert (await rpc.call("getBalance", [str(payer.pubkey())]))["value"] == SOL
            await control.send(cont(5))
            done = await control.recv_until(lambda t: "completed" in t)
            assert orjson.loads(done[-1])["params"]["summary"]["incorrect_simulation"] == 2


async def test_an_injected_program_runs_from_its_real_elf() -> None:
    program = keypair(40).pubkey()
    payer = keypair(41)
    elf = memo_elf()
    call = invoke_tx(payer, program, b"hello")
    with trio.fail_after(10):
        async with session_on(None, 4000, 4010) as (server, control, session_id):
            rpc = Rpc(server, session_id)
            states = {
                **injection(program, elf, deploy_slot=3999),
                str(payer.pubkey()): system_account(SOL),
            }
            await control.send(cont(1, modifyAccountStates=states))
            await control.recv_until(lambda t: "readyForContinue" in t)
            async with data_plane(server, session_id) as data:
                await data.send(subscribe(1, str(program)))
                await data.send(logs_subscribe(2, str(program)))
                await read_data(data, 2)
                await control.send(cont(1, transactions=[b64(call)]))
                await control.recv_until(lambda t: "readyForContinue" in t)
                note, logs = await read_data(data, 2)
            assert note["params"]["result"]["meta"]["err"] is None
            assert logs["params"]["result"]["value"]["logs"] == [
                f"Program {program} invoke [1]",
                "Program log: Memo (len 5)",
                "Program log: hello",
                f"Program {program} consumed 274 of 200000 compute units",
                f"Program {program} success",
            ]
            account = await rpc.call("getAccountInfo", [str(program), {"encoding": "base64"}])
            assert account["value"]["executable"] is True
            assert account["value"]["owner"] == "BPFLoaderUpgradeab1e11111111111111111111111"


async def test_injection_through_modify_accounts_and_an_upgrade_reload() -> None:
    program = keypair(42).pubkey()
    payer = keypair(43)
    svm_token = _token_elf()
    with trio.fail_after(10):
        async with session_on(None, 4000, 4010) as (server, _control, session_id):
            rpc = Rpc(server, session_id)
            await rpc.call("requestAirdrop", [str(payer.pubkey()), SOL])
            # The map itself as params, Program listed before its ProgramData.
            pair = injection(program, memo_elf(), deploy_slot=3999)
            assert await rpc.call("modifyAccounts", dict(reversed(list(pair.items())))) is None
            sig = await rpc.call("sendTransaction", [b64(invoke_tx(payer, program, b"one"))])
            assert (await rpc.call("getTransaction", [sig]))["meta"]["err"] is None
            # Replacing only the ProgramData upgrades the program: the token ELF now answers.
            programdata = next(iter(injection(program, svm_token, deploy_slot=4000)))
            upgrade = {programdata: injection(program, svm_token, deploy_slot=4000)[programdata]}
            assert await rpc.call("modifyAccounts", [upgrade]) is None
            sig = await rpc.call("sendTransaction", [b64(invoke_tx(payer, program, b"two"))])
            fetched = await rpc.call("getTransaction", [sig])
            assert fetched["meta"]["err"] == {"InstructionError": [0, {"Custom": 12}]}


def _token_elf() -> bytes:
    svm = LiteSVM()
    token = svm.get_account(Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"))
    assert token is not None
    programdata = svm.get_account(Pubkey(bytes(token.data[4:36])))
    assert programdata is not None
    return bytes(programdata.data[45:])


async def test_a_program_that_cannot_load_is_refused_and_nothing_changes() -> None:
    program = keypair(44).pubkey()
    broken = injection(program, b"not an elf", deploy_slot=3999)
    with trio.fail_after(10):
        async with session_on(None, 4000, 4010) as (server, control, session_id):
            rpc = Rpc(server, session_id)
            code, message = await rpc.error("modifyAccounts", [broken])
            assert code == -32602
            assert str(program) in message
            for address in broken:
                assert (await rpc.call("getAccountInfo", [address]))["value"] is None
            await control.send(cont(1, modifyAccountStates=broken))
            reply = orjson.loads(await control.recv_text())
            assert reply["params"]["InvalidAccountEncoding"]["address"] == str(program)
            # The session goes on.
            await control.send(cont(1))
            await control.expect(STATUS_DECODED, slot(4001), READY)


async def _run(seed: int) -> list[bytes | str]:
    """One scripted run touching every kind of output: control, data (zstd) and RPC."""
    out: list[bytes | str] = []
    payer, memo = keypair(50), Pubkey.from_string(MEMO)
    airdrop = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "requestAirdrop",
        "params": [str(payer.pubkey()), 5 * SOL],
    }
    async with serve(seed=seed) as server, connect(server) as control:
        session_id = await open_session(control, create(4000, 4004, sendSummary=True))
        rpc = Rpc(server, session_id)
        async with data_plane(server, session_id) as data:
            await data.send(subscribe(1, SYSTEM, compression=True))
            await data.send(subscribe(2, SYSTEM, method="accountDiffSubscribe", compression=True))
            await data.send(logs_subscribe(3, MEMO, compression="zstd"))
            out += [await data.recv() for _ in range(3)]
            out.append(orjson.dumps(await rpc.raw(orjson.dumps(airdrop))).decode())
            txs = [
                b64(transfer_tx(payer, keypair(51).pubkey(), SOL)),
                b64(invoke_tx(payer, memo, b"m")),
            ]
            await control.send(cont(2, transactions=txs))
            out += await control.recv_until(lambda t: "readyForContinue" in t)
            latest = b'{"jsonrpc":"2.0","id":2,"method":"getLatestBlockhash"}'
            out.append(orjson.dumps(await rpc.raw(latest)).decode())
            await control.send(cont(5))
            out += await control.recv_until(lambda t: "completed" in t)
            await collect_binary_until_terminals(data, 3, out)
    return out


async def test_same_requests_give_the_same_bytes() -> None:
    with trio.fail_after(20):
        first = await _run(11)
        second = await _run(11)
    assert first == second
    reader = ZstdReader()
    inflated = "".join(reader.decode(m) for m in first if isinstance(m, bytes))
    assert "Program log: Memo (len 1)" in inflated
    # The system program sees the airdrop and the transfer (the memo call does not use it).
    assert inflated.count("transactionNotification") == 2


async def test_transactions_of_a_zero_slot_continue_wait_for_the_next_slot() -> None:
    payer = keypair(70)
    first = transfer_tx(payer, keypair(71).pubkey(), SOL)
    second = transfer_tx(payer, keypair(72).pubkey(), SOL)
    with trio.fail_after(10):
        async with session_on(None, 4000, 4010) as (server, control, session_id):
            rpc = Rpc(server, session_id)
            funding = funded(payer, 5 * SOL)
            await control.send(cont(0, transactions=[b64(first)], modifyAccountStates=funding))
            await control.expect(STATUS_DECODED, READY)
            signatures = [str(first.signatures[0]), str(second.signatures[0])]
            statuses = await rpc.call("getSignatureStatuses", [signatures])
            assert statuses["value"] == [None, None]
            await control.send(cont(1, transactions=[b64(second)]))
            await control.expect(STATUS_DECODED, slot(4001), READY)
            statuses = await rpc.call("getSignatureStatuses", [signatures])
            assert [s["slot"] for s in statuses["value"]] == [4000, 4000]


async def test_the_server_bounds_the_sessions_holding_a_chain() -> None:
    payer = keypair(80)
    funding = funded(payer, SOL)
    with trio.fail_after(10):
        async with (
            serve(max_chain_sessions=1) as server,
            connect(server) as first,
            connect(server) as second,
        ):
            first_id = await open_session(first, create(4000, 4010))
            second_id = await open_session(second, create(4000, 4010))
            assert (await Rpc(server, first_id).call("getBalance", [SYSTEM]))["value"] == 1
            # The second session cannot have a chain while the first holds the only one...
            code, message = await Rpc(server, second_id).error("getBalance", [SYSTEM])
            assert code == -32005
            assert "limit" in message
            await second.send(cont(1, modifyAccountStates=funding))
            assert "InvalidRequest" in await second.recv_text()
            tx = b64(transfer_tx(payer, keypair(81).pubkey(), 1))
            await second.send(cont(1, transactions=[tx]))
            assert "InvalidRequest" in await second.recv_text()
            # ...and still runs without one; once the first is closed, it gets it.
            await second.send(cont(1))
            await second.expect(STATUS_DECODED, slot(4001), READY)
            await first.send('{"method":"closeBacktestSession"}')
            await first.recv_until(lambda t: "success" in t)
            rpc = Rpc(server, second_id)
            assert (await rpc.call("getBalance", [SYSTEM]))["value"] == 1


async def test_a_slot_takes_a_bounded_number_of_user_transactions() -> None:
    payer = keypair(90)
    txs = [b64(transfer_tx(payer, keypair(91).pubkey(), SOL + n)) for n in range(4)]
    with trio.fail_after(10):
        async with serve(max_user_transactions_per_slot=2) as server, connect(server) as control:
            session_id = await open_session(control, create(4000, 4010))
            rpc = Rpc(server, session_id)
            await rpc.call("modifyAccounts", [funded(payer, 10 * SOL)])
            await rpc.call("sendTransaction", [txs[0]])
            await control.send(cont(0, transactions=[txs[1]]))
            await control.expect(STATUS_DECODED, READY)
            # The slot is full: one sent, one waiting for it.
            code, _ = await rpc.error("sendTransaction", [txs[2]])
            assert code == -32005
            code, _ = await rpc.error("requestAirdrop", [SYSTEM, SOL])
            assert code == -32005
            # A refused continue changes nothing, its account overrides included.
            extra = {str(keypair(92).pubkey()): system_account(SOL)}
            await control.send(cont(1, transactions=[txs[2]], modifyAccountStates=extra))
            assert "InvalidRequest" in await control.recv_text()
            assert (await rpc.call("getBalance", [str(keypair(92).pubkey())]))["value"] == 0
            await control.send(cont(1))
            await control.expect(STATUS_DECODED, slot(4001), READY)
            # The next slot has room again.
            assert await rpc.call("sendTransaction", [txs[3]])
            statuses = await rpc.call("getSignatureStatuses", [[_sig(t) for t in txs]])
            assert [s and s["slot"] for s in statuses["value"]] == [4000, 4000, None, 4001]


def _sig(text: str) -> str:
    return str(VersionedTransaction.from_bytes(base64.b64decode(text)).signatures[0])


def _tight_transfer(payer: Keypair, to: Pubkey, units: int) -> Transaction:
    """A transfer asking for ``units`` compute units (it takes 300: 150 per instruction)."""
    ixs = [
        set_compute_unit_limit(units),
        transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=to, lamports=SOL)),
    ]
    return Transaction([payer], Message(ixs, payer.pubkey()), BLOCKHASH)


async def test_extra_compute_units_raise_every_transactions_limit() -> None:
    payer = keypair(100)
    results: dict[int | None, Any] = {}
    with trio.fail_after(10):
        async with serve() as server:
            for extra in (None, 1_000):
                async with connect(server) as control:
                    session_id = await open_session(
                        control, create(4000, 4010, extraComputeUnits=extra)
                    )
                    rpc = Rpc(server, session_id)
                    await rpc.call("requestAirdrop", [str(payer.pubkey()), 10 * SOL])
                    tx = b64(_tight_transfer(payer, keypair(101).pubkey(), 200))
                    simulated = await rpc.call("simulateTransaction", [tx, {"encoding": "base64"}])
                    sig = await rpc.call("sendTransaction", [tx])
                    fetched = await rpc.call("getTransaction", [sig])
                    results[extra] = (simulated["value"]["err"], fetched["meta"]["err"])
    exceeded = {"InstructionError": [1, "ComputationalBudgetExceeded"]}
    assert results[None] == (exceeded, exceeded)
    assert results[1_000] == (None, None)


def test_the_requested_budget_is_read_from_compute_budget_instructions() -> None:
    payer = keypair(102).pubkey()
    move = transfer(TransferParams(from_pubkey=payer, to_pubkey=keypair(103).pubkey(), lamports=1))
    plain = Message([move, move], payer)
    assert compute_budget.requested_budget(plain) == (400_000, None)
    asked = Message([set_compute_unit_limit(5_000), request_heap_frame(64 * 1024), move], payer)
    assert compute_budget.requested_budget(asked) == (5_000, 64 * 1024)
    many = Message([move] * 10, payer)
    assert compute_budget.requested_budget(many) == (compute_budget.MAX_TRANSACTION_UNITS, None)
