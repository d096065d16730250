"""Benchmark 6: ``SessionRpc`` round trips against a raw httpx loop, same server, same run.

Both sides ask the embedded reference server for the same account (``getAccountInfo``,
base64) one call at a time: the raw loop posts a prebuilt body with a bare
``httpx.AsyncClient`` and only checks for a result; ``SessionRpc.get_account_info`` builds the
request, posts it, maps errors and decodes the reply into a solders ``Account``. The ratio is
SessionRpc's rate over the raw loop's (1.0 means the typed layer costs nothing measurable).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
import trio

from benchmarks.common import write_result
from simtrio.client import BacktestClient
from simtrio.params import CreateSession
from simtrio.rpc import open_session_rpc
from simtrio.server import serve

ADDRESS = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"


async def _rates(calls: int, reps: int) -> dict[str, float]:
    best: dict[str, float] = {}
    async with serve(max_transactions_per_slot=0) as server:
        client = BacktestClient(server.url, "", request_timeout=30)
        async with client.create_session(CreateSession(1, end_slot=9)) as session:
            await session.ensure_ready()
            url = session.rpc_url
            assert url is not None
            body = orjson.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "getAccountInfo",
                    "params": [ADDRESS, {"encoding": "base64"}],
                }
            )
            headers = {"Content-Type": "application/json"}
            async with httpx.AsyncClient() as http, open_session_rpc(url) as rpc:

                async def raw() -> None:
                    reply = await http.post(url, content=body, headers=headers)
                    assert b'"result"' in reply.content

                async def typed() -> None:
                    assert await rpc.get_account_info(ADDRESS) is not None

                sides = [("raw", raw), ("SessionRpc", typed)]
                for rep in range(reps):
                    # Alternate which side goes first: the machine is shared.
                    for name, once in sides if rep % 2 == 0 else sides[::-1]:
                        started = time.perf_counter()
                        for _ in range(calls):
                            await once()
                        rate = calls / (time.perf_counter() - started)
                        best[name] = max(best.get(name, 0.0), rate)
    return best


def run(_port: int, *, quick: bool) -> dict[str, Any]:
    calls = 30 if quick else 500
    reps = 1 if quick else 3
    rates = trio.run(_rates, calls, reps)
    labels = {
        "raw": "raw httpx.AsyncClient post loop (baseline)",
        "SessionRpc": "SessionRpc.get_account_info",
    }
    print(f"\nrpc: getAccountInfo round trips, {calls:,} per run, best of {reps}")
    print(f"  {'client':<48} {'calls/s':>10} {'vs raw':>8}")
    records = []
    for name in ("raw", "SessionRpc"):
        ratio = rates[name] / rates["raw"]
        print(f"  {labels[name]:<48} {rates[name]:>10,.0f} {ratio:>7.2f}x")
        records.append({"name": labels[name], "calls_per_s": rates[name], "ratio": ratio})
    path = write_result("rpc", {"calls": calls, "reps": reps}, {"rates": records}, quick)
    print(f"-> {path.relative_to(path.parent.parent.parent)}")
    return {"rates": records}
