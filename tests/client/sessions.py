"""Scripted sessions for the plain-client tests: canonical frames and openers."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from simtrio import wire
from simtrio.client import BacktestClient
from simtrio.params import CreateSession
from tests.client.fakes import (
    CREATED,
    READY,
    Peer,
    fake_server,
)
from tests.client.helpers import KEY

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable

    from simtrio.backtest_session import BacktestSession

from tests.client.fakes import FakeServer

ST = wire.BacktestStatus

CREATE_4000 = (
    '{"method":"createBacktestSession","params":{"startSlot":4000,"endSlot":4005,"signerFilter":[],'
    '"sendSummary":true,"capacityWaitTimeoutSecs":null,"disconnectTimeoutSecs":120,'
    '"extraComputeUnits":null,"agents":[],"discoveries":[],"parallel":false}}'
)
CONTINUE_2 = (
    '{"method":"continue","params":{"advanceCount":2,"transactions":[],"modifyAccountStates":{}}}'
)
CLOSE = '{"method":"closeBacktestSession"}'
SUMMARY = (
    '{"correct_simulation":9,"incorrect_simulation":1,"execution_errors":0,"balance_diff":0,'
    '"log_diff":0}'
)
COMPLETED = (
    '{"method":"completed","params":{"summary":' + SUMMARY + ',"agent_stats":[{"name":"arb",'
    '"slots_processed":5}]}}'
)
ERROR = (
    '{"method":"error","params":{"AdvanceSlotFailed":{"slot":4002,"error":"bank hash mismatch"}}}'
)
UNKNOWN = '{"method":"somethingNew","params":{"x":1}}'


def create() -> CreateSession:
    return CreateSession(4000, end_slot=4005, send_summary=True, disconnect_timeout_secs=120)


def opening(*after_create: str) -> Callable[[Peer], Awaitable[None]]:
    """Answer the create with ``CREATED`` + ``READY``, then each later request with a batch."""

    async def script(peer: Peer) -> None:
        await peer.recv()
        await peer.send(CREATED, READY)
        for frames in after_create:
            await peer.recv()
            if frames:
                await peer.send(*frames.split("\n"))

    return script


@asynccontextmanager
async def session_with(
    script: Callable[[Peer], Awaitable[None]], **client_args: float
) -> AsyncGenerator[tuple[BacktestSession, FakeServer]]:
    async with fake_server(script) as server:
        client = BacktestClient(server.url, KEY, **client_args)  # type: ignore[arg-type]
        async with client.create_session(create()) as session:
            yield session, server


async def created_then_dropped(peer: Peer) -> None:
    """Answer the create, then drop the connection without a Close frame."""
    await peer.recv()
    await peer.send(CREATED)
    peer.drop()
