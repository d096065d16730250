"""Benchmark 4: plain client, continue -> ready round trips on one session."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from benchmarks import clients as c
from benchmarks.common import Row, measure, table, write_result

CONTINUE = (
    '{"method":"continue","params":{"advanceCount":1,"transactions":[],"modifyAccountStates":{}}}'
)
BASELINES = ["websockets asyncio + orjson", "wsproto on trio + orjson"]


def _create() -> str:
    from benchmarks.server import FIRST_SLOT
    from simtrio.params import CreateSession, as_create_request
    from simtrio.wire.codec import encode

    return encode(as_create_request(CreateSession(FIRST_SLOT, slot_count=1000)))


async def wsproto_rtt(url: str, rounds: int) -> c.Timing:
    """Bare floor: wsproto on trio, orjson, wait for readyForContinue after each continue."""
    host, port, path = c._split(url)
    timing = c.Timing()
    loads = orjson.loads
    async with await trio.open_tcp_stream(host, port) as stream:
        ws = WSConnection(ConnectionType.CLIENT)
        await stream.send_all(ws.send(Request(host=f"{host}:{port}", target=path)))
        sent = -1  # the create's readiness first
        while sent < rounds:
            data = await stream.receive_some(c.RECEIVE_SIZE)
            ws.receive_data(data)
            out = b""
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    out += ws.send(TextMessage(data=_create()))
                elif (
                    isinstance(event, TextMessage)
                    and loads(event.data)["method"] == "readyForContinue"
                ):
                    if sent >= 0:
                        timing.tick()
                    sent += 1
                    if sent < rounds:
                        out += ws.send(TextMessage(data=CONTINUE))
            if out:
                await stream.send_all(out)
        await stream.send_all(ws.send(CloseConnection(code=1000)))
    return timing


async def _websockets_rtt(url: str, rounds: int) -> c.Timing:
    from websockets.asyncio.client import connect

    timing = c.Timing()
    loads = orjson.loads
    async with connect(url, max_size=None, compression=None) as ws:
        await ws.send(_create())
        for i in range(rounds + 1):
            while loads(await ws.recv())["method"] != "readyForContinue":
                pass
            if i:
                timing.tick()
            if i < rounds:
                await ws.send(CONTINUE)
    return timing


async def simtrio_rtt(url: str, rounds: int) -> c.Timing:
    try:
        from simtrio.client import BacktestClient
        from simtrio.params import Continue, CreateSession
    except ImportError as exc:
        raise c.Unavailable(f"plain client not importable: {exc}") from None
    from benchmarks.server import FIRST_SLOT

    timing = c.Timing()
    one = Continue(1)
    client = BacktestClient(url, "bench-key")
    async with client.create_session(CreateSession(FIRST_SLOT, slot_count=1000)) as session:
        await session.ensure_ready()
        timing.tick()
        for _ in range(rounds):
            await session.continue_until_ready(one)
            timing.tick()
    return timing


def run(port: int, *, quick: bool) -> dict[str, Any]:
    rounds = 300 if quick else 10_000
    reps = 1 if quick else 3
    url = f"ws://127.0.0.1:{port}/plain/{rounds + 10}/backtest"
    rows = [
        Row("wsproto on trio + orjson", lambda: wsproto_rtt(url, rounds)),
        Row(
            "websockets asyncio + orjson",
            lambda: asyncio.run(_websockets_rtt(url, rounds)),
            trio_based=False,
        ),
        Row("simtrio BacktestSession.continue_until_ready", lambda: simtrio_rtt(url, rounds)),
    ]
    measure(rows, reps, limit=15 if quick else 60)
    records = table(
        f"plain client: {rounds:,} continue -> readyForContinue round trips, best of {reps}",
        rows,
        BASELINES,
        unit="round trips/s",
    )
    path = write_result(
        "plain_client", {"rounds": rounds, "reps": reps}, {"round_trips": records}, quick
    )
    print(f"-> {path.relative_to(path.parent.parent.parent)}")
    return {"round_trips": records}
