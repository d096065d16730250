"""Smoke test of the benchmark plumbing: the frame server and two client loops, in-process.

Speed is never asserted; this only keeps ``python -m benchmarks`` from rotting.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

import pytest
import trio

from benchmarks import clients
from benchmarks.server import handle

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def server_port() -> Iterator[int]:
    loop = asyncio.new_event_loop()
    started = threading.Event()
    ports: list[int] = []
    stop: list[asyncio.Event] = []

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        ports.append(server.sockets[0].getsockname()[1])
        stop.append(asyncio.Event())
        started.set()
        async with server:
            await stop[0].wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(5)
    try:
        yield ports[0]
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        thread.join(5)
        loop.close()


def test_frame_server_and_client_loops(server_port: int) -> None:
    url = f"ws://127.0.0.1:{server_port}/blast/4/500/backtest"

    async def both() -> tuple[clients.Timing, clients.Timing]:
        with trio.fail_after(5):
            ours = await clients.simtrio_raw(url, 500)
            floor = await clients.wsproto_loop(url, clients.json_counter(), 500)
        return ours, floor

    ours, floor = trio.run(both)
    assert ours.count == floor.count == 500
    assert ours.rate > 0
