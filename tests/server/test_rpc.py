"""The per-session JSON-RPC, served from the session's LiteSVM: every method, every error path."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import pytest
import trio
from solders.hash import Hash
from solders.pubkey import Pubkey

from .chain_helpers import (
    BLOCKHASH,
    SOL,
    SYSTEM,
    Rpc,
    b64,
    keypair,
    system_account,
    transfer_tx,
)
from .helpers import cont, http, session_on

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from simtrio.server import ReferenceServer


@pytest.fixture
async def session() -> AsyncGenerator[tuple[ReferenceServer, Any, Rpc], None]:
    with trio.fail_after(20):
        async with session_on(None, 4000, 4400, sendSummary=True) as (server, control, session_id):
            yield server, control, Rpc(server, session_id)


def owned_account(owner: str, data: bytes, lamports: int = SOL) -> dict[str, Any]:
    return {
        "data": {"data": base64.b64encode(data).decode(), "encoding": "base64"},
        "executable": False,
        "lamports": lamports,
        "owner": owner,
        "space": len(data),
    }


async def test_latest_blockhash_stays_valid_for_150_executed_slots(session: Any) -> None:
    _, control, rpc = session
    latest = await rpc.call("getLatestBlockhash")
    assert latest == {
        "context": {"slot": 4000},
        "value": {"blockhash": str(BLOCKHASH), "lastValidBlockHeight": 4150},
    }
    payer = keypair(1)
    signed_now = transfer_tx(payer, keypair(2).pubkey(), SOL)
    await rpc.call("modifyAccounts", [{str(payer.pubkey()): system_account(2 * SOL)}])
    await control.send(cont(150))
    await control.recv_until(lambda t: "readyForContinue" in t)
    assert await rpc.call("getSlot") == 4150
    signature = await rpc.call("sendTransaction", [b64(signed_now), {"encoding": "base64"}])
    status = (await rpc.call("getSignatureStatuses", [[signature]]))["value"][0]
    assert status == {
        "slot": 4150,
        "confirmations": None,
        "err": None,
        "status": {"Ok": None},
        "confirmationStatus": "finalized",
    }


async def test_balances_and_accounts(session: Any) -> None:
    _, _, rpc = session
    owner = str(keypair(9).pubkey())
    first, second, absent = (str(keypair(n).pubkey()) for n in (10, 11, 12))
    assert await rpc.call("getBalance", [absent]) == {"context": {"slot": 4000}, "value": 0}
    assert await rpc.call("getAccountInfo", [absent, {"encoding": "base64"}]) == {
        "context": {"slot": 4000},
        "value": None,
    }
    mods = {second: owned_account(owner, b"\x02\x03"), first: owned_account(owner, b"\x01")}
    assert await rpc.call("modifyAccounts", mods) is None
    info = await rpc.call("getAccountInfo", [first])
    assert info["value"] == {
        "data": ["AQ==", "base64"],
        "executable": False,
        "lamports": SOL,
        "owner": owner,
        "rentEpoch": 0,
        "space": 1,
    }
    assert (await rpc.call("getBalance", [second]))["value"] == SOL
    many = await rpc.call("getMultipleAccounts", [[first, absent, second], {"encoding": "base64"}])
    assert [a and a["data"][0] for a in many["value"]] == ["AQ==", None, "AgM="]
    listed = await rpc.call("getProgramAccounts", [owner, {"encoding": "base64"}])
    ordered = sorted([first, second], key=lambda a: bytes(Pubkey.from_string(a)))
    assert [item["pubkey"] for item in listed] == ordered
    wrapped = await rpc.call("getProgramAccounts", [owner, {"withContext": True}])
    assert wrapped["context"] == {"slot": 4000}
    assert wrapped["value"] == listed
    assert await rpc.call("getMinimumBalanceForRentExemption", [0]) == 890_880
    assert await rpc.call("getMinimumBalanceForRentExemption", [165]) == 2_039_280


async def test_simulate_changes_nothing_and_send_executes(session: Any) -> None:
    server, control, rpc = session
    payer, to = keypair(20), keypair(21).pubkey()
    await rpc.call("requestAirdrop", [str(payer.pubkey()), 3 * SOL])
    tx = transfer_tx(payer, to, SOL)
    simulated = await rpc.call("simulateTransaction", [b64(tx), {"encoding": "base64"}])
    assert simulated["value"]["err"] is None
    assert simulated["value"]["unitsConsumed"] == 150
    assert simulated["value"]["logs"][-1] == f"Program {SYSTEM} success"
    assert (await rpc.call("getBalance", [str(to)]))["value"] == 0
    assert (await rpc.call("getSignatureStatuses", [[str(tx.signatures[0])]]))["value"] == [None]
    failing = transfer_tx(payer, to, 10 * SOL)
    simulated = await rpc.call("simulateTransaction", [b64(failing)])
    assert simulated["value"]["err"] == {"InstructionError": [0, {"Custom": 1}]}

    assert await rpc.call("sendTransaction", [b64(tx)]) == str(tx.signatures[0])
    assert await rpc.call("sendTransaction", [b64(failing)]) == str(failing.signatures[0])
    assert (await rpc.call("getBalance", [str(to)]))["value"] == SOL
    fetched = await rpc.call("getTransaction", [str(failing.signatures[0]), {"encoding": "json"}])
    assert fetched["meta"]["err"] == {"InstructionError": [0, {"Custom": 1}]}
    assert fetched["slot"] == 4000
    # Sending the same transaction again is a failure of its own; the record keeps the first.
    await rpc.call("sendTransaction", [b64(tx)])
    fetched = await rpc.call("getTransaction", [str(tx.signatures[0])])
    assert fetched["meta"]["err"] is None
    await control.send(cont(401))
    done = await control.recv_until(lambda t: "completed" in t)
    assert '"incorrect_simulation":2' in done[-1]
    del server


async def test_airdrops_are_real_transfers_and_never_collide(session: Any) -> None:
    _, _, rpc = session
    wallet = str(keypair(30).pubkey())
    first = await rpc.call("requestAirdrop", [wallet, SOL])
    second = await rpc.call("requestAirdrop", [wallet, SOL])
    assert first != second
    assert (await rpc.call("getBalance", [wallet]))["value"] == 2 * SOL
    fetched = await rpc.call("getTransaction", [second])
    assert fetched["meta"]["err"] is None
    assert fetched["transaction"]["message"]["accountKeys"][1:] == [wallet, SYSTEM]
    # Below the rent minimum a new account cannot be funded: a failed airdrop, still reported.
    tiny = await rpc.call("requestAirdrop", [str(keypair(31).pubkey()), 1])
    status = (await rpc.call("getSignatureStatuses", [[tiny]]))["value"][0]
    assert status["err"] == {"InsufficientFundsForRent": {"account_index": 1}}


@pytest.mark.parametrize(
    ("method", "params", "message"),
    [
        ("getBalance", [], "missing address"),
        ("getBalance", ["nope"], "not a 32-byte base58 address: 'nope'"),
        ("getBalance", [7], "an address must be a base58 string"),
        ("getAccountInfo", [SYSTEM, {"encoding": "jsonParsed"}], "unsupported encoding"),
        ("getAccountInfo", [SYSTEM, 3], "the config must be an object"),
        ("getMultipleAccounts", [SYSTEM], "addresses must be an array"),
        ("getMultipleAccounts", [[SYSTEM] * 101], "at most 100 addresses"),
        ("getProgramAccounts", [SYSTEM, {"filters": [{"dataSize": 0}]}], "filters"),
        ("getMinimumBalanceForRentExemption", [-1], "unsigned 64-bit"),
        ("getMinimumBalanceForRentExemption", [True], "unsigned 64-bit"),
        ("getMinimumBalanceForRentExemption", [2**40], "above 10 MiB"),
        ("getSignatureStatuses", [["abc"]], "not a 64-byte base58 signature"),
        ("getSignatureStatuses", ["abc"], "signatures must be an array"),
        ("getTransaction", ["1" * 64, {"encoding": "base64"}], "unsupported encoding"),
        ("getTransaction", [], "missing signature"),
        ("simulateTransaction", ["***"], "invalid base64"),
        ("simulateTransaction", ["AAAA"], "not a bincode transaction"),
        ("sendTransaction", [base64.b64encode(bytes(100)).decode()], "no signature"),
        (
            "sendTransaction",
            [b64(transfer_tx(keypair(1), keypair(2).pubkey(), 1)), {"encoding": "base58"}],
            "unsupported encoding",
        ),
        ("sendTransaction", [5], "base64 text"),
        ("requestAirdrop", [SYSTEM], "missing lamports"),
        ("requestAirdrop", [SYSTEM, 0], "between 1 and 2^63"),
        ("modifyAccounts", [], "missing account map"),
        ("modifyAccounts", [[1]], "expected a map"),
        ("modifyAccounts", [{SYSTEM: 1}], "AccountData object"),
        ("modifyAccounts", [{SYSTEM: {**system_account(1), "lamports": -1}}], "lamports"),
        ("modifyAccounts", [{SYSTEM: {**system_account(1), "owner": 3}}], "owner a string"),
        ("modifyAccounts", [{"x": system_account(1)}], "x: not a 32-byte base58 address"),
        ("modifyAccounts", [{SYSTEM: {**system_account(1), "owner": "y"}}], "owner is not"),
        (
            "modifyAccounts",
            [{SYSTEM: {**system_account(1), "data": {"data": "AA", "encoding": "base58"}}}],
            "unsupported encoding",
        ),
        (
            "modifyAccounts",
            [{SYSTEM: {**system_account(1), "data": {"data": "*", "encoding": "base64"}}}],
            "invalid base64",
        ),
        ("getSlot", {"not": "a list"}, "expected an array"),
    ],
)
async def test_bad_params_are_32602(session: Any, method: str, params: Any, message: str) -> None:
    _, _, rpc = session
    code, text = await rpc.error(method, params)
    assert code == -32602
    assert text.startswith("invalid params: ")
    assert message in text


async def test_unknown_methods_batches_and_closed_sessions(session: Any) -> None:
    server, control, rpc = session
    assert await rpc.error("getBlockProduction") == (-32601, "method not found")
    replies = await rpc.raw(
        b'[{"jsonrpc":"2.0","id":1,"method":"getSlot"},'
        b'{"jsonrpc":"2.0","id":2,"method":"getBalance","params":["x"]},'
        b'{"jsonrpc":"2.0","id":3,"method":"nope"}, 5]'
    )
    assert [r.get("result") for r in replies] == [4000, None, None, None]
    assert [r.get("error", {}).get("code") for r in replies] == [None, -32602, -32601, -32600]
    assert (await rpc.raw(b"[]"))["error"]["code"] == -32600
    assert (await rpc.raw(b'{"id":1}'))["error"]["code"] == -32600
    await control.send('{"method":"closeBacktestSession"}')
    await control.recv_until(lambda t: "success" in t)
    status, _, _ = await http(server, "POST", rpc.path, b'{"id":1,"method":"getSlot"}')
    assert status == 404


async def test_simulation_options_follow_solana(session: Any) -> None:
    _, _, rpc = session
    payer, to = keypair(22), keypair(23).pubkey()
    await rpc.call("requestAirdrop", [str(payer.pubkey()), 3 * SOL])
    raw = bytearray(bytes(transfer_tx(payer, to, SOL)))
    raw[5] ^= 0xFF  # a signature that does not verify
    forged = base64.b64encode(raw).decode()
    # Signatures are not checked unless asked for.
    assert (await rpc.call("simulateTransaction", [forged]))["value"]["err"] is None
    checked = await rpc.call("simulateTransaction", [forged, {"sigVerify": True}])
    assert checked["value"]["err"] == "SignatureFailure"
    stale = b64(transfer_tx(payer, to, SOL, blockhash=Hash(bytes([9]) * 32)))
    assert (await rpc.call("simulateTransaction", [stale]))["value"]["err"] == "BlockhashNotFound"
    replaced = await rpc.call("simulateTransaction", [stale, {"replaceRecentBlockhash": True}])
    assert replaced["value"]["err"] is None
    assert replaced["value"]["replacementBlockhash"] == {
        "blockhash": str(BLOCKHASH),
        "lastValidBlockHeight": 4150,
    }
    both = {"sigVerify": True, "replaceRecentBlockhash": True}
    assert (await rpc.error("simulateTransaction", [stale, both]))[0] == -32602
    assert (await rpc.error("simulateTransaction", [stale, {"sigVerify": 1}]))[0] == -32602
    # Execution still checks signatures.
    signature = await rpc.call("sendTransaction", [forged])
    status = (await rpc.call("getSignatureStatuses", [[signature]]))["value"][0]
    assert status["err"] == "SignatureFailure"
