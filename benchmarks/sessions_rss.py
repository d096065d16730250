"""Resident memory of K concurrent sessions in the embedded reference server.

``python -m benchmarks.sessions_rss [--sessions K]`` runs the server in this process, creates K
single sessions (one control connection each) and reports the process's RSS at each stage:

1. the K sessions exist (their LiteSVMs are made on first use, so none yet);
2. every session has answered one ``requestAirdrop`` (each now has its own LiteSVM);
3. every session has executed one continue carrying a signed transfer.

RSS is read from ``/proc/self/statm`` (Linux), after a garbage collection.
"""

from __future__ import annotations

import argparse
import base64
import gc
import os
import sys
from typing import Any

import httpx
import orjson
import trio
import trio_websocket
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import Message
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction

from simtrio.server import serve

SOL = 1_000_000_000


def rss_mib() -> float:
    gc.collect()
    with open("/proc/self/statm", encoding="ascii") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


async def _wait_ready(ws: trio_websocket.WebSocketConnection) -> None:
    while "readyForContinue" not in await ws.get_message():
        pass


async def measure(sessions: int) -> dict[str, float]:
    out = {"start": rss_mib()}
    blockhash = LiteSVM().latest_blockhash()
    async with (
        serve(max_transactions_per_slot=2) as server,
        httpx.AsyncClient() as http,
        trio.open_nursery() as nursery,
    ):
        sockets: list[trio_websocket.WebSocketConnection] = []
        urls: list[str] = []
        create = orjson.dumps(
            {"method": "createBacktestSession", "params": {"startSlot": 4000, "endSlot": 4100}}
        )
        for _ in range(sessions):
            ws = await trio_websocket.connect_websocket_url(nursery, server.control_url)
            sockets.append(ws)
            await ws.send_message(create)
            created: Any = orjson.loads(await ws.get_message())
            urls.append(server.http_url + created["params"]["rpc_endpoint"])
            await _wait_ready(ws)
        out["sessions created"] = rss_mib()
        payers = [Keypair.from_seed(bytes([k % 256, k // 256]) * 16) for k in range(sessions)]
        for url, payer in zip(urls, payers, strict=True):
            body = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "requestAirdrop",
                "params": [str(payer.pubkey()), 10 * SOL],
            }
            reply = await http.post(url, content=orjson.dumps(body))
            assert b'"result"' in reply.content, reply.content
        out["one airdrop each (LiteSVM made)"] = rss_mib()
        for ws, payer in zip(sockets, payers, strict=True):
            ix = transfer(
                TransferParams(
                    from_pubkey=payer.pubkey(), to_pubkey=Keypair().pubkey(), lamports=SOL
                )
            )
            tx = Transaction([payer], Message([ix], payer.pubkey()), blockhash)
            step = {
                "advanceCount": 1,
                "transactions": [base64.b64encode(bytes(tx)).decode()],
                "modifyAccountStates": {},
            }
            await ws.send_message(orjson.dumps({"method": "continue", "params": step}))
            await _wait_ready(ws)
        out["one transfer each"] = rss_mib()
        for ws in sockets:
            await ws.aclose()
        nursery.cancel_scope.cancel()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sessions_rss", description=__doc__)
    parser.add_argument("--sessions", type=int, default=100)
    args = parser.parse_args(argv)
    k = args.sessions
    stages = trio.run(measure, k)
    base = stages["start"]
    print(f"embedded reference server, {k} concurrent sessions; RSS of this process")
    print(f"  {'stage':<36} {'RSS MiB':>9} {'+ MiB':>8} {'MiB/session':>12}")
    for stage, value in stages.items():
        print(f"  {stage:<36} {value:>9.1f} {value - base:>8.1f} {(value - base) / k:>12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
