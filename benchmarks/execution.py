"""Benchmark 5: user transactions executed per second by the embedded reference server.

Three ways of executing the same N signed system transfers, in the same run:

* the floor: a bare ``solders.litesvm.LiteSVM`` and ``send_transaction`` in a loop, no server;
* one ``continue`` carrying all N (server-side execution and publication: records, summary,
  transaction / account-diff / logs notifications in the data log), timed from the send to
  ``readyForContinue``;
* N ``sendTransaction`` requests over the per-session HTTP JSON-RPC, one at a time (each a
  new TCP connection: the reference server closes after every reply).

The ratio column is each one's rate over the floor's.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx
import orjson
import trio
import trio_websocket
from solders.account import Account
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import Message
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction

from benchmarks.common import write_result
from simtrio.server import serve

SOL = 1_000_000_000
SYSTEM = Pubkey.from_string("11111111111111111111111111111111")


def _transfers(n: int) -> tuple[Keypair, list[Transaction]]:
    payer = Keypair.from_seed(bytes([7]) * 32)
    recipients = [Keypair.from_seed(bytes([8, k % 256]) * 16).pubkey() for k in range(16)]
    blockhash = LiteSVM().latest_blockhash()
    txs = []
    for k in range(n):
        ix = transfer(
            TransferParams(
                from_pubkey=payer.pubkey(), to_pubkey=recipients[k % 16], lamports=SOL + k
            )
        )
        txs.append(Transaction([payer], Message([ix], payer.pubkey()), blockhash))
    return payer, txs


def _raw_loop(payer: Keypair, txs: list[Transaction]) -> float:
    svm = LiteSVM()
    svm.set_account(payer.pubkey(), Account(10**18, b"", SYSTEM, False, 0))
    started = time.perf_counter()
    for tx in txs:
        svm.send_transaction(tx)
    return time.perf_counter() - started


def _funded(payer: Keypair) -> dict[str, object]:
    """The payer's account, funded for every transaction, as account overrides on the wire."""
    return {
        str(payer.pubkey()): {
            "data": {"data": "", "encoding": "base64"},
            "executable": False,
            "lamports": 10**18,
            "owner": str(SYSTEM),
            "space": 0,
        }
    }


async def _continue(payer: Keypair, txs: list[Transaction]) -> float:
    encoded = [base64.b64encode(bytes(tx)).decode() for tx in txs]
    funded = _funded(payer)
    async with (
        serve(max_transactions_per_slot=0) as server,
        trio_websocket.open_websocket_url(
            server.control_url, max_message_size=256 * 1024 * 1024
        ) as ws,
    ):
        await ws.send_message(
            orjson.dumps(
                {"method": "createBacktestSession", "params": {"startSlot": 1, "endSlot": 9}}
            )
        )
        while "readyForContinue" not in await ws.get_message():
            pass
        # Overrides first, so the timed step is the transactions alone.
        step: dict[str, Any] = {
            "advanceCount": 1,
            "transactions": [],
            "modifyAccountStates": funded,
        }
        await ws.send_message(orjson.dumps({"method": "continue", "params": step}))
        while "readyForContinue" not in await ws.get_message():
            pass
        step = {"advanceCount": 1, "transactions": encoded, "modifyAccountStates": {}}
        frame = orjson.dumps({"method": "continue", "params": step}).decode()
        started = time.perf_counter()
        await ws.send_message(frame)
        while "readyForContinue" not in await ws.get_message():
            pass
        return time.perf_counter() - started


async def _send_transaction(payer: Keypair, txs: list[Transaction]) -> float:
    async with (
        serve(max_transactions_per_slot=0) as server,
        httpx.AsyncClient() as http,
        trio_websocket.open_websocket_url(server.control_url) as ws,
    ):
        await ws.send_message(
            orjson.dumps(
                {"method": "createBacktestSession", "params": {"startSlot": 1, "endSlot": 9}}
            )
        )
        created = orjson.loads(await ws.get_message())
        url = server.http_url + created["params"]["rpc_endpoint"]
        fund = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "modifyAccounts",
            "params": [_funded(payer)],
        }
        (await http.post(url, content=orjson.dumps(fund))).raise_for_status()
        bodies = [
            orjson.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": k,
                    "method": "sendTransaction",
                    "params": [base64.b64encode(bytes(tx)).decode(), {"encoding": "base64"}],
                }
            )
            for k, tx in enumerate(txs)
        ]
        started = time.perf_counter()
        for body in bodies:
            reply = await http.post(url, content=body)
            assert b'"result"' in reply.content, reply.content
        return time.perf_counter() - started


def run(_port: int, *, quick: bool) -> dict[str, Any]:
    n = 100 if quick else 3000
    n_http = 50 if quick else 500
    reps = 1 if quick else 3
    payer, txs = _transfers(n)
    best: dict[str, float] = {}
    counts = {"raw": n, "continue": n, "sendTransaction": n_http}
    for _ in range(reps):
        runs = {
            "raw": lambda: _raw_loop(payer, txs),
            "continue": lambda: trio.run(_continue, payer, txs),
            "sendTransaction": lambda: trio.run(_send_transaction, payer, txs[:n_http]),
        }
        for name, once in runs.items():
            elapsed = once()
            best[name] = min(best.get(name, elapsed), elapsed)
    rates = {name: counts[name] / best[name] for name in best}
    labels = {
        "raw": "raw LiteSVM send_transaction loop (floor)",
        "continue": "embedded server, one continue with all of them",
        "sendTransaction": "embedded server, sendTransaction over HTTP, one at a time",
    }
    print(f"\nexecution: {n:,} signed transfers ({n_http:,} over HTTP), best of {reps}")
    print(f"  {'stack':<60} {'tx/s':>10} {'vs floor':>9}")
    records = []
    for name in ("raw", "continue", "sendTransaction"):
        ratio = rates[name] / rates["raw"]
        print(f"  {labels[name]:<60} {rates[name]:>10,.0f} {ratio:>8.2f}x")
        records.append({"name": labels[name], "tx_per_s": rates[name], "ratio": ratio})
    path = write_result(
        "execution", {"transactions": n, "http": n_http, "reps": reps}, {"rates": records}, quick
    )
    print(f"-> {path.relative_to(path.parent.parent.parent)}")
    return {"rates": records}
