"""Long computations of the reference server yield to the event loop as they go."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import orjson
import trio

from simtrio.server import chain, serve
from simtrio.server.config import ServerConfig
from simtrio.server.http import available_ranges_body
from simtrio.wire.codec import encode_available_ranges

from .helpers import (
    READY,
    STATUS_PREPARING,
    STATUS_READY,
    TOKEN,
    connect,
    cont,
    cont_to,
    create,
    running_state,
    slot,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable


@asynccontextmanager
async def ticking(while_: Callable[[], bool]) -> AsyncIterator[Callable[[], int]]:
    """Count the turns another task gets, while ``while_()`` holds, during the block."""
    ticks = 0
    done = False

    async def tick() -> None:
        nonlocal ticks
        while not done:
            if while_():
                ticks += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(tick)
        try:
            yield lambda: ticks
        finally:
            done = True


async def test_a_long_discovery_scan_checkpoints() -> None:
    # No transaction ever matches: every announcement scans its full 10,000 slots. Turns
    # other tasks get while a session is busy (a step or a scan) come from its checkpoints.
    with trio.fail_after(30):
        async with serve(max_transactions_per_slot=0) as server, connect(server) as client:

            def busy() -> bool:
                return any(session.running for session in server.sessions.values())

            async with ticking(busy) as ticks:
                await client.send(create(0, 50_000, discoveries=[{"ProgramExecuted": TOKEN}]))
                await client.recv_text()
                await client.expect(STATUS_PREPARING, STATUS_READY, slot(0), READY)
                first = ticks()
                await client.send(cont(1))
                frames = await client.recv_until(lambda t: t == READY)
            assert first > 100
            assert ticks() - first > 100
            assert not any("discoveryBatch" in frame for frame in frames)


async def test_available_ranges_are_built_between_checkpoints_and_kept() -> None:
    config = ServerConfig(window_end=2_999, bundle_size=1)
    async with running_state(config) as state:
        async with ticking(lambda: state.ranges_body is None) as ticks:
            body = await available_ranges_body(state)
        assert ticks() >= 3_000 // 256
        assert body == encode_available_ranges(config.available_ranges()).encode()
        # Kept: asked again, it is the same object, not built anew.
        assert await available_ranges_body(state) is body


def _matches(config: ServerConfig, skip: set[str], start: int, count: int) -> list[tuple[int, int]]:
    """The first ``count`` batches from ``start`` with a TOKEN transaction not in ``skip``."""
    cfg = config.chain
    found: list[tuple[int, int]] = []
    slot_ = start
    while len(found) < count:
        for batch in range(cfg.batches_per_slot):
            txs = chain.batch_transactions(cfg, slot_, batch)
            if any(TOKEN in tx.program_ids for tx in txs if tx.fee_payer not in skip):
                found.append((slot_, batch))
        slot_ += 1
    return found[:count]


async def test_a_scan_across_checkpoints_finds_the_same_batches() -> None:
    # Filtering all fee payers but one makes matches rare: the scans cross checkpoints.
    config = ServerConfig(seed=4, max_transactions_per_slot=1)
    skip = set(chain.fee_payers(config.chain)[1:])
    first, second = _matches(config, skip, 4000, 2)
    assert first[0] - 4000 > 32
    assert second[0] - first[0] > 32
    with trio.fail_after(10):
        async with serve(config) as server, connect(server) as client:
            await client.send(
                create(
                    4000,
                    4500,
                    discoveries=[{"ProgramExecuted": TOKEN}],
                    signerFilter=sorted(skip),
                )
            )
            await client.recv_text()
            await client.expect(STATUS_PREPARING, STATUS_READY, slot(4000), READY)
            announced = orjson.loads(await client.recv_text())["params"]
            assert (announced["slot"], announced["batch_index"]) == first
            await client.send(cont_to(*first))
            await client.recv_until(lambda t: '"method":"paused"' in t)
            announced = orjson.loads(await client.recv_text())["params"]
            assert (announced["slot"], announced["batch_index"]) == second
